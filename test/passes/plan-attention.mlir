// RUN: hasten-opt %s --hasten-plan-attention=target=cpu | FileCheck %s --check-prefix=CPU
// RUN: hasten-opt %s --hasten-plan-attention="target=cpu vector-bits=256 l1-bytes=32768" | FileCheck %s --check-prefix=AVX2
// RUN: hasten-opt %s --hasten-plan-attention=target=ascend | FileCheck %s --check-prefix=ASCEND
// RUN: hasten-opt %s --hasten-plan-attention=target=sm_70 | FileCheck %s --check-prefix=SM70
// RUN: hasten-opt %s --hasten-plan-attention=target=sm_80 | FileCheck %s --check-prefix=SM80
// RUN: hasten-opt %s --hasten-plan-attention=target=sm_90 | FileCheck %s --check-prefix=SM90
// RUN: hasten-opt %s --hasten-plan-attention="target=sm_80 print-plan" -o /dev/null | FileCheck %s --check-prefix=PRINT
// RUN: not hasten-opt %s --hasten-plan-attention=target=sm_60 2>&1 | FileCheck %s --check-prefix=BAD

// The tiling each target gets for a causal prefill with head_dim 64, a GQA
// decode step (one query, head_dim 128), and head dims whose rows are 144
// bytes (72 fp16) and 64 bytes (32 fp16) in shared memory.

// On a CPU, K and V tiles of 64 rows fill 32 KiB of the 48 KiB L1; 64-query
// blocks; 16 f32 lanes. Decode: one query, 4096-key tiles (no K or V row is
// reused, so they need not fit the L1), and 32 heads already give every
// thread work, so no key split.
// CPU-LABEL: func.func @prefill
// CPU: tiling(<target = "cpu", block_q = 64, tile_q = 64, tile_kv = 64, kv_splits = 1, skip_masked = true, diagonal_mask = true, warps = 0, mma = "", smem_layout = "row", vector_lanes = 16>)
// CPU-LABEL: func.func @decode
// CPU: block_q = 1, tile_q = 1, tile_kv = 4096, kv_splits = 1,
// A 32 KiB L1 and 256-bit vectors (an AVX2 machine): half the key tile.
// AVX2-LABEL: func.func @head_dim_72
// AVX2: tile_kv = 32, {{.*}} vector_lanes = 8>

// On Ascend, FastAttention's two levels, 4 query tiles of 64 per AI core,
// 256-key tiles sized to the unified buffer, nz fractal operands.
// ASCEND-LABEL: func.func @prefill
// ASCEND: tiling(<target = "ascend", block_q = 256, tile_q = 64, tile_kv = 256, kv_splits = 1, skip_masked = true, diagonal_mask = true, warps = 0, mma = "cube16x16x16", smem_layout = "nz", vector_lanes = 0>)

// Volta: 4 warps of 16 rows, mma.m8n8k4; 128-byte rows (8 chunks of 16
// bytes, an even count) are padded by 8 fp16 so that the 8 rows a fragment
// load reads start in 8 different bank groups; 144-byte rows (9 chunks)
// already do. Decode splits the keys over the 80 SMs' worth of work.
// SM70-LABEL: func.func @prefill
// SM70: tiling(<target = "sm_70", block_q = 64, tile_q = 16, tile_kv = 64, kv_splits = 1, skip_masked = true, diagonal_mask = true, warps = 4, mma = "m8n8k4", smem_layout = "padded<8>", vector_lanes = 0>)
// SM70-LABEL: func.func @decode
// SM70: block_q = 8, tile_q = 8, tile_kv = 64, kv_splits = 2, {{.*}} smem_layout = "padded<8>"
// SM70-LABEL: func.func @head_dim_72
// SM70: smem_layout = "row"
// SM70-LABEL: func.func @head_dim_32
// SM70: smem_layout = "padded<8>"

// sm_80: 128-query blocks, 32 rows per warp, m16n8k16 with ldmatrix, a
// 128-byte XOR swizzle (64-byte for 64-byte rows, none for 144-byte rows,
// which are conflict-free as they are); head_dim 128 halves the key tile.
// SM80-LABEL: func.func @prefill
// SM80: tiling(<target = "sm_80", block_q = 128, tile_q = 32, tile_kv = 128, kv_splits = 1, skip_masked = true, diagonal_mask = true, warps = 4, mma = "m16n8k16", smem_layout = "swizzle<128>", vector_lanes = 0>)
// SM80-LABEL: func.func @decode
// SM80: block_q = 16, tile_q = 16, tile_kv = 64, kv_splits = 3,
// SM80-LABEL: func.func @head_dim_72
// SM80: smem_layout = "row"
// SM80-LABEL: func.func @head_dim_32
// SM80: smem_layout = "swizzle<64>"

// sm_90: two warpgroups of 64 rows (wgmma), 128-key tiles.
// SM90-LABEL: func.func @prefill
// SM90: tiling(<target = "sm_90", block_q = 128, tile_q = 64, tile_kv = 128, kv_splits = 1, skip_masked = true, diagonal_mask = true, warps = 8, mma = "wgmma.m64nNk16", smem_layout = "swizzle<128>", vector_lanes = 0>)
// SM90-LABEL: func.func @decode
// SM90: block_q = 64, tile_q = 64, tile_kv = 128, kv_splits = 4,

// PRINT: attention prefill at
// PRINT-NEXT: q tensor<1x12x?x64xf32>, k tensor<1x12x?x64xf32>, heads 12/12, causal
// PRINT-NEXT: tiling #hasten.attention_tiling<target = "sm_80", block_q = 128,
// PRINT-NEXT: on-chip working set per block: 132096 bytes, independent of the sequence lengths; scores exist only as 32x128 tiles

// BAD: unknown attention target 'sm_60' (expected cpu, ascend, sm_70, sm_80 or sm_90)

func.func @prefill(%q: tensor<1x12x?x64xf32>, %k: tensor<1x12x?x64xf32>, %v: tensor<1x12x?x64xf32>) -> tensor<1x12x?x64xf32> {
  %o = hasten.attention %q, %k, %v heads(12, 12) causal : tensor<1x12x?x64xf32>, tensor<1x12x?x64xf32>, tensor<1x12x?x64xf32> -> tensor<1x12x?x64xf32>
  return %o : tensor<1x12x?x64xf32>
}
func.func @decode(%q: tensor<1x32x1x128xf32>, %k: tensor<1x8x?x128xf32>, %v: tensor<1x8x?x128xf32>) -> tensor<1x32x1x128xf32> {
  %o = hasten.attention %q, %k, %v heads(32, 8) : tensor<1x32x1x128xf32>, tensor<1x8x?x128xf32>, tensor<1x8x?x128xf32> -> tensor<1x32x1x128xf32>
  return %o : tensor<1x32x1x128xf32>
}
func.func @head_dim_72(%q: tensor<1x4x?x72xf32>, %k: tensor<1x4x?x72xf32>, %v: tensor<1x4x?x72xf32>) -> tensor<1x4x?x72xf32> {
  %o = hasten.attention %q, %k, %v heads(4, 4) : tensor<1x4x?x72xf32>, tensor<1x4x?x72xf32>, tensor<1x4x?x72xf32> -> tensor<1x4x?x72xf32>
  return %o : tensor<1x4x?x72xf32>
}
func.func @head_dim_32(%q: tensor<1x4x?x32xf32>, %k: tensor<1x4x?x32xf32>, %v: tensor<1x4x?x32xf32>) -> tensor<1x4x?x32xf32> {
  %o = hasten.attention %q, %k, %v heads(4, 4) : tensor<1x4x?x32xf32>, tensor<1x4x?x32xf32>, tensor<1x4x?x32xf32> -> tensor<1x4x?x32xf32>
  return %o : tensor<1x4x?x32xf32>
}

// A tiling already on the op is the compiler engineer's decision: kept.
// CPU-LABEL: func.func @hand_tiled
// CPU: tiling(<target = "cpu", block_q = 8, tile_q = 8, tile_kv = 16,
// SM90-LABEL: func.func @hand_tiled
// SM90: tiling(<target = "cpu", block_q = 8, tile_q = 8, tile_kv = 16,
func.func @hand_tiled(%q: tensor<1x4x?x32xf32>, %k: tensor<1x4x?x32xf32>, %v: tensor<1x4x?x32xf32>) -> tensor<1x4x?x32xf32> {
  %o = hasten.attention %q, %k, %v heads(4, 4) tiling(#hasten.attention_tiling<target = "cpu", block_q = 8, tile_q = 8, tile_kv = 16, kv_splits = 1, skip_masked = false, diagonal_mask = false, warps = 0, mma = "", smem_layout = "row", vector_lanes = 16>) : tensor<1x4x?x32xf32>, tensor<1x4x?x32xf32>, tensor<1x4x?x32xf32> -> tensor<1x4x?x32xf32>
  return %o : tensor<1x4x?x32xf32>
}
