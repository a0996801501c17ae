// RUN: hasten-opt %s -split-input-file -verify-diagnostics

func.func @rank(%q: tensor<12x5x64xf32>, %k: tensor<1x12x5x64xf32>, %v: tensor<1x12x5x64xf32>) {
  // expected-error @+1 {{'hasten.attention' op operand #0 must be 4D tensor of floating-point values, but got 'tensor<12x5x64xf32>'}}
  %o = hasten.attention %q, %k, %v heads(12, 12) : tensor<12x5x64xf32>, tensor<1x12x5x64xf32>, tensor<1x12x5x64xf32> -> tensor<1x12x5x64xf32>
  return
}

// -----

func.func @wrong_result(%q: tensor<1x12x5x64xf32>, %k: tensor<1x12x5x64xf32>, %v: tensor<1x12x5x32xf32>) {
  // expected-error @+2 {{'hasten.attention' op inferred type(s) 'tensor<1x12x5x32xf32>' are incompatible with return type(s) of operation 'tensor<1x12x5x64xf32>'}}
  // expected-error @+1 {{'hasten.attention' op failed to infer returned types}}
  %o = hasten.attention %q, %k, %v heads(12, 12) : tensor<1x12x5x64xf32>, tensor<1x12x5x64xf32>, tensor<1x12x5x32xf32> -> tensor<1x12x5x64xf32>
  return
}

// -----

func.func @zero_heads(%q: tensor<1x12x5x64xf32>, %k: tensor<1x12x5x64xf32>, %v: tensor<1x12x5x64xf32>) {
  // expected-error @+1 {{'hasten.attention' op num_heads must be positive, got 0}}
  %o = hasten.attention %q, %k, %v heads(0, 12) : tensor<1x12x5x64xf32>, tensor<1x12x5x64xf32>, tensor<1x12x5x64xf32> -> tensor<1x12x5x64xf32>
  return
}

// -----

func.func @zero_kv_heads(%q: tensor<1x12x5x64xf32>, %k: tensor<1x12x5x64xf32>, %v: tensor<1x12x5x64xf32>) {
  // expected-error @+1 {{'hasten.attention' op num_kv_heads must be positive, got 0}}
  %o = hasten.attention %q, %k, %v heads(12, 0) : tensor<1x12x5x64xf32>, tensor<1x12x5x64xf32>, tensor<1x12x5x64xf32> -> tensor<1x12x5x64xf32>
  return
}

// -----

func.func @groups(%q: tensor<1x12x5x64xf32>, %k: tensor<1x5x5x64xf32>, %v: tensor<1x5x5x64xf32>) {
  // expected-error @+1 {{'hasten.attention' op num_heads (12) must be a multiple of num_kv_heads (5)}}
  %o = hasten.attention %q, %k, %v heads(12, 5) : tensor<1x12x5x64xf32>, tensor<1x5x5x64xf32>, tensor<1x5x5x64xf32> -> tensor<1x12x5x64xf32>
  return
}

// -----

func.func @element_types(%q: tensor<1x12x5x64xf32>, %k: tensor<1x12x5x64xf16>, %v: tensor<1x12x5x64xf32>) {
  // expected-error @+1 {{'hasten.attention' op query, key and value must share one element type, got 'f32', 'f16' and 'f32'}}
  %o = hasten.attention %q, %k, %v heads(12, 12) : tensor<1x12x5x64xf32>, tensor<1x12x5x64xf16>, tensor<1x12x5x64xf32> -> tensor<1x12x5x64xf32>
  return
}

// -----

func.func @batch(%q: tensor<2x12x5x64xf32>, %k: tensor<3x12x5x64xf32>, %v: tensor<?x12x5x64xf32>) {
  // expected-error @+1 {{'hasten.attention' op batch sizes of query [2, 12, 5, 64], key [3, 12, 5, 64] and value [?, 12, 5, 64] differ}}
  %o = hasten.attention %q, %k, %v heads(12, 12) : tensor<2x12x5x64xf32>, tensor<3x12x5x64xf32>, tensor<?x12x5x64xf32> -> tensor<2x12x5x64xf32>
  return
}

// -----

func.func @query_heads(%q: tensor<1x8x5x64xf32>, %k: tensor<1x4x5x64xf32>, %v: tensor<1x4x5x64xf32>) {
  // expected-error @+1 {{'hasten.attention' op query has 8 heads but num_heads is 12}}
  %o = hasten.attention %q, %k, %v heads(12, 4) : tensor<1x8x5x64xf32>, tensor<1x4x5x64xf32>, tensor<1x4x5x64xf32> -> tensor<1x8x5x64xf32>
  return
}

// -----

func.func @key_heads(%q: tensor<1x12x5x64xf32>, %k: tensor<1x3x5x64xf32>, %v: tensor<1x4x5x64xf32>) {
  // expected-error @+1 {{'hasten.attention' op key has 3 heads but num_kv_heads is 4}}
  %o = hasten.attention %q, %k, %v heads(12, 4) : tensor<1x12x5x64xf32>, tensor<1x3x5x64xf32>, tensor<1x4x5x64xf32> -> tensor<1x12x5x64xf32>
  return
}

// -----

func.func @value_heads(%q: tensor<1x12x5x64xf32>, %k: tensor<1x4x5x64xf32>, %v: tensor<1x2x5x64xf32>) {
  // expected-error @+1 {{'hasten.attention' op value has 2 heads but num_kv_heads is 4}}
  %o = hasten.attention %q, %k, %v heads(12, 4) : tensor<1x12x5x64xf32>, tensor<1x4x5x64xf32>, tensor<1x2x5x64xf32> -> tensor<1x12x5x64xf32>
  return
}

// -----

func.func @head_dim(%q: tensor<1x12x5x64xf32>, %k: tensor<1x12x5x32xf32>, %v: tensor<1x12x5x64xf32>) {
  // expected-error @+1 {{'hasten.attention' op query head_dim (64) does not match key head_dim (32)}}
  %o = hasten.attention %q, %k, %v heads(12, 12) : tensor<1x12x5x64xf32>, tensor<1x12x5x32xf32>, tensor<1x12x5x64xf32> -> tensor<1x12x5x64xf32>
  return
}

// -----

func.func @kv_length(%q: tensor<1x12x5x64xf32>, %k: tensor<1x12x7x64xf32>, %v: tensor<1x12x8x64xf32>) {
  // expected-error @+1 {{'hasten.attention' op key length (7) does not match value length (8)}}
  %o = hasten.attention %q, %k, %v heads(12, 12) : tensor<1x12x5x64xf32>, tensor<1x12x7x64xf32>, tensor<1x12x8x64xf32> -> tensor<1x12x5x64xf32>
  return
}

// -----

func.func @scale(%q: tensor<1x12x5x64xf32>, %k: tensor<1x12x5x64xf32>, %v: tensor<1x12x5x64xf32>) {
  // expected-error @+1 {{'hasten.attention' op scale must be positive and finite, got -5.000000e-01}}
  %o = hasten.attention %q, %k, %v heads(12, 12) scale(-0.5) : tensor<1x12x5x64xf32>, tensor<1x12x5x64xf32>, tensor<1x12x5x64xf32> -> tensor<1x12x5x64xf32>
  return
}

// -----

func.func @mask_type(%q: tensor<1x12x5x64xf32>, %k: tensor<1x12x5x64xf32>, %v: tensor<1x12x5x64xf32>, %m: tensor<5x5xf16>) {
  // expected-error @+1 {{'hasten.attention' op mask element type must be i1 or the query element type 'f32', got 'f16'}}
  %o = hasten.attention %q, %k, %v mask(%m : tensor<5x5xf16>) heads(12, 12) : tensor<1x12x5x64xf32>, tensor<1x12x5x64xf32>, tensor<1x12x5x64xf32> -> tensor<1x12x5x64xf32>
  return
}

// -----

func.func @mask_rank(%q: tensor<1x12x5x64xf32>, %k: tensor<1x12x5x64xf32>, %v: tensor<1x12x5x64xf32>, %m: tensor<1x1x1x5x5xi1>) {
  // expected-error @+1 {{'hasten.attention' op mask has rank 5 but scores have rank 4}}
  %o = hasten.attention %q, %k, %v mask(%m : tensor<1x1x1x5x5xi1>) heads(12, 12) : tensor<1x12x5x64xf32>, tensor<1x12x5x64xf32>, tensor<1x12x5x64xf32> -> tensor<1x12x5x64xf32>
  return
}

// -----

func.func @mask_shape(%q: tensor<1x12x5x64xf32>, %k: tensor<1x12x?x64xf32>, %v: tensor<1x12x?x64xf32>, %m: tensor<1x3x5x?xi1>) {
  // expected-error @+1 {{'hasten.attention' op mask shape [1, 3, 5, ?] does not broadcast to the scores shape [1, 12, 5, ?]}}
  %o = hasten.attention %q, %k, %v mask(%m : tensor<1x3x5x?xi1>) heads(12, 12) : tensor<1x12x5x64xf32>, tensor<1x12x?x64xf32>, tensor<1x12x?x64xf32> -> tensor<1x12x5x64xf32>
  return
}

// -----

func.func @tiling_unknown_target(%q: tensor<1x4x8x16xf32>, %k: tensor<1x4x8x16xf32>, %v: tensor<1x4x8x16xf32>) {
  // expected-error @+1 {{unknown attention tiling target 'tpu' (expected cpu, ascend, sm_70, sm_80 or sm_90)}}
  %o = hasten.attention %q, %k, %v heads(4, 4) tiling(#hasten.attention_tiling<target = "tpu", block_q = 64, tile_q = 64, tile_kv = 64, kv_splits = 1, skip_masked = true, diagonal_mask = true, warps = 0, mma = "", smem_layout = "row", vector_lanes = 16>) : tensor<1x4x8x16xf32>, tensor<1x4x8x16xf32>, tensor<1x4x8x16xf32> -> tensor<1x4x8x16xf32>
  return
}

// -----

func.func @tiling_block_not_multiple(%q: tensor<1x4x8x16xf32>, %k: tensor<1x4x8x16xf32>, %v: tensor<1x4x8x16xf32>) {
  // expected-error @+1 {{block_q (48) must be a multiple of tile_q (32)}}
  %o = hasten.attention %q, %k, %v heads(4, 4) tiling(#hasten.attention_tiling<target = "cpu", block_q = 48, tile_q = 32, tile_kv = 64, kv_splits = 1, skip_masked = true, diagonal_mask = true, warps = 0, mma = "", smem_layout = "row", vector_lanes = 16>) : tensor<1x4x8x16xf32>, tensor<1x4x8x16xf32>, tensor<1x4x8x16xf32> -> tensor<1x4x8x16xf32>
  return
}

// -----

func.func @tiling_diagonal_without_skip(%q: tensor<1x4x8x16xf32>, %k: tensor<1x4x8x16xf32>, %v: tensor<1x4x8x16xf32>) {
  // expected-error @+1 {{diagonal_mask needs skip_masked: a tile above the diagonal would run unmasked}}
  %o = hasten.attention %q, %k, %v heads(4, 4) tiling(#hasten.attention_tiling<target = "cpu", block_q = 64, tile_q = 64, tile_kv = 64, kv_splits = 1, skip_masked = false, diagonal_mask = true, warps = 0, mma = "", smem_layout = "row", vector_lanes = 16>) : tensor<1x4x8x16xf32>, tensor<1x4x8x16xf32>, tensor<1x4x8x16xf32> -> tensor<1x4x8x16xf32>
  return
}

// -----

func.func @tiling_unknown_layout(%q: tensor<1x4x8x16xf32>, %k: tensor<1x4x8x16xf32>, %v: tensor<1x4x8x16xf32>) {
  // expected-error @+1 {{unknown operand layout 'diagonal' (expected row, padded<N>, swizzle<B> or nz)}}
  %o = hasten.attention %q, %k, %v heads(4, 4) tiling(#hasten.attention_tiling<target = "sm_80", block_q = 64, tile_q = 64, tile_kv = 64, kv_splits = 1, skip_masked = true, diagonal_mask = true, warps = 0, mma = "", smem_layout = "diagonal", vector_lanes = 16>) : tensor<1x4x8x16xf32>, tensor<1x4x8x16xf32>, tensor<1x4x8x16xf32> -> tensor<1x4x8x16xf32>
  return
}

// -----

func.func @tiling_zero_tile(%q: tensor<1x4x8x16xf32>, %k: tensor<1x4x8x16xf32>, %v: tensor<1x4x8x16xf32>) {
  // expected-error @+1 {{block_q, tile_q, tile_kv and kv_splits must be positive}}
  %o = hasten.attention %q, %k, %v heads(4, 4) tiling(#hasten.attention_tiling<target = "cpu", block_q = 0, tile_q = 64, tile_kv = 64, kv_splits = 1, skip_masked = true, diagonal_mask = true, warps = 0, mma = "", smem_layout = "row", vector_lanes = 16>) : tensor<1x4x8x16xf32>, tensor<1x4x8x16xf32>, tensor<1x4x8x16xf32> -> tensor<1x4x8x16xf32>
  return
}
