// RUN: hasten-opt %s -split-input-file | FileCheck %s
// RUN: hasten-opt %s -split-input-file | hasten-opt -split-input-file | FileCheck %s
// RUN: hasten-opt %s -split-input-file -mlir-print-op-generic | hasten-opt -split-input-file | FileCheck %s

// Multi-head attention with the default scale.
// CHECK-LABEL: func @mha
// CHECK: %[[O:.*]] = hasten.attention %arg0, %arg1, %arg2 heads(12, 12) : tensor<1x12x?x64xf32>, tensor<1x12x?x64xf32>, tensor<1x12x?x64xf32> -> tensor<1x12x?x64xf32>
// CHECK: return %[[O]]
func.func @mha(%q: tensor<1x12x?x64xf32>, %k: tensor<1x12x?x64xf32>, %v: tensor<1x12x?x64xf32>) -> tensor<1x12x?x64xf32> {
  %o = hasten.attention %q, %k, %v heads(12, 12) : tensor<1x12x?x64xf32>, tensor<1x12x?x64xf32>, tensor<1x12x?x64xf32> -> tensor<1x12x?x64xf32>
  return %o : tensor<1x12x?x64xf32>
}

// -----

// Grouped-query attention, causal, with an explicit scale and a value head
// size that differs from the query/key head size.
// CHECK-LABEL: func @gqa_causal
// CHECK: hasten.attention %arg0, %arg1, %arg2 heads(32, 8) causal scale(1.250000e-01) : tensor<2x32x7x64xf16>, tensor<2x8x?x64xf16>, tensor<2x8x?x32xf16> -> tensor<2x32x7x32xf16>
func.func @gqa_causal(%q: tensor<2x32x7x64xf16>, %k: tensor<2x8x?x64xf16>, %v: tensor<2x8x?x32xf16>) -> tensor<2x32x7x32xf16> {
  %o = hasten.attention %q, %k, %v heads(32, 8) causal scale(0.125) : tensor<2x32x7x64xf16>, tensor<2x8x?x64xf16>, tensor<2x8x?x32xf16> -> tensor<2x32x7x32xf16>
  return %o : tensor<2x32x7x32xf16>
}

// -----

// Multi-query attention with a boolean mask that broadcasts over batch and
// heads, and an additive float mask.
// CHECK-LABEL: func @mqa_masks
// CHECK: hasten.attention %arg0, %arg1, %arg2 mask(%arg3 : tensor<1x1x4x9xi1>) heads(4, 1) : tensor<1x4x4x16xf32>, tensor<1x1x9x16xf32>, tensor<1x1x9x16xf32> -> tensor<1x4x4x16xf32>
// CHECK: hasten.attention %arg0, %arg1, %arg2 mask(%arg4 : tensor<4x9xf32>) heads(4, 1) causal : tensor<1x4x4x16xf32>, tensor<1x1x9x16xf32>, tensor<1x1x9x16xf32> -> tensor<1x4x4x16xf32>
func.func @mqa_masks(%q: tensor<1x4x4x16xf32>, %k: tensor<1x1x9x16xf32>, %v: tensor<1x1x9x16xf32>, %bool: tensor<1x1x4x9xi1>, %add: tensor<4x9xf32>) -> (tensor<1x4x4x16xf32>, tensor<1x4x4x16xf32>) {
  %a = hasten.attention %q, %k, %v mask(%bool : tensor<1x1x4x9xi1>) heads(4, 1) : tensor<1x4x4x16xf32>, tensor<1x1x9x16xf32>, tensor<1x1x9x16xf32> -> tensor<1x4x4x16xf32>
  %b = hasten.attention %q, %k, %v mask(%add : tensor<4x9xf32>) heads(4, 1) causal : tensor<1x4x4x16xf32>, tensor<1x1x9x16xf32>, tensor<1x1x9x16xf32> -> tensor<1x4x4x16xf32>
  return %a, %b : tensor<1x4x4x16xf32>, tensor<1x4x4x16xf32>
}

// -----

!cache = !hasten.kv_cache<layers = 2, kv_heads = 4, head_dim = 64, capacity = 128, f32>

// A decode step: append one token, then view everything up to it.
// CHECK-LABEL: func @append_then_view
// CHECK: hasten.kv_cache.append %arg1, %arg2 into %arg0[layer 1] at %arg3 : tensor<1x4x1x64xf32>, tensor<1x4x1x64xf32> into !hasten.kv_cache<layers = 2, kv_heads = 4, head_dim = 64, capacity = 128, f32>
// CHECK: %[[K:.*]], %[[V:.*]] = hasten.kv_cache.view %arg0[layer 1] length %{{.*}} : !hasten.kv_cache<layers = 2, kv_heads = 4, head_dim = 64, capacity = 128, f32>
// CHECK: return %[[K]], %[[V]] : tensor<1x4x?x64xf32>, tensor<1x4x?x64xf32>
func.func @append_then_view(%cache: !cache, %k: tensor<1x4x1x64xf32>, %v: tensor<1x4x1x64xf32>, %pos: index) -> (tensor<1x4x?x64xf32>, tensor<1x4x?x64xf32>) {
  hasten.kv_cache.append %k, %v into %cache[layer 1] at %pos : tensor<1x4x1x64xf32>, tensor<1x4x1x64xf32> into !cache
  %c1 = arith.constant 1 : index
  %len = arith.addi %pos, %c1 : index
  %keys, %values = hasten.kv_cache.view %cache[layer 1] length %len : !cache
  return %keys, %values : tensor<1x4x?x64xf32>, tensor<1x4x?x64xf32>
}

// -----

// A prefill of a dynamic number of tokens into a paged cache, at a constant
// position that leaves room for it.
// CHECK-LABEL: func @paged_prefill
// CHECK: hasten.kv_cache.append %arg1, %arg1 into %arg0[layer 0] at %{{.*}} : tensor<1x2x?x8xf16>, tensor<1x2x?x8xf16> into !hasten.kv_cache<layers = 1, kv_heads = 2, head_dim = 8, capacity = 64, f16, paged<block_size = 16>>
func.func @paged_prefill(%cache: !hasten.kv_cache<layers = 1, kv_heads = 2, head_dim = 8, capacity = 64, f16, paged<block_size = 16>>, %kv: tensor<1x2x?x8xf16>) {
  %c0 = arith.constant 0 : index
  hasten.kv_cache.append %kv, %kv into %cache[layer 0] at %c0 : tensor<1x2x?x8xf16>, tensor<1x2x?x8xf16> into !hasten.kv_cache<layers = 1, kv_heads = 2, head_dim = 8, capacity = 64, f16, paged<block_size = 16>>
  return
}

// -----

// A tiling plan on the op round-trips (short form inside the op).
// CHECK-LABEL: func.func @tiled
// CHECK: hasten.attention %arg0, %arg1, %arg2 heads(8, 2) causal tiling(<target = "sm_70", block_q = 64, tile_q = 16, tile_kv = 64, kv_splits = 1, skip_masked = true, diagonal_mask = true, warps = 4, mma = "m8n8k4", smem_layout = "padded<8>", vector_lanes = 0>)
func.func @tiled(%q: tensor<1x8x?x64xf16>, %k: tensor<1x2x?x64xf16>, %v: tensor<1x2x?x64xf16>) -> tensor<1x8x?x64xf16> {
  %o = hasten.attention %q, %k, %v heads(8, 2) causal tiling(#hasten.attention_tiling<target = "sm_70", block_q = 64, tile_q = 16, tile_kv = 64, kv_splits = 1, skip_masked = true, diagonal_mask = true, warps = 4, mma = "m8n8k4", smem_layout = "padded<8>", vector_lanes = 0>) : tensor<1x8x?x64xf16>, tensor<1x2x?x64xf16>, tensor<1x2x?x64xf16> -> tensor<1x8x?x64xf16>
  return %o : tensor<1x8x?x64xf16>
}

// -----

// A paged cache's keys of layer 1, read through the block table.
// CHECK-LABEL: func @paged_read
// CHECK: hasten.paged_kv.read %arg0[layer 1, part 0] table %arg1 length %arg2 : memref<?x2x2x4x16x64xf32>, memref<8xi32> -> tensor<1x4x?x64xf32>
func.func @paged_read(%pool: memref<?x2x2x4x16x64xf32>, %t: memref<8xi32>, %n: index) -> tensor<1x4x?x64xf32> {
  %k = hasten.paged_kv.read %pool[layer 1, part 0] table %t length %n : memref<?x2x2x4x16x64xf32>, memref<8xi32> -> tensor<1x4x?x64xf32>
  return %k : tensor<1x4x?x64xf32>
}
