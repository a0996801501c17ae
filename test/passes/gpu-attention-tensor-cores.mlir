// RUN: hasten-opt %s -split-input-file -verify-diagnostics -hasten-gpu-attention="target=sm_80 precision=bf16" | FileCheck %s
// RUN: hasten-opt %s -split-input-file -hasten-gpu-attention="target=sm_70 precision=f16" 2>/dev/null | FileCheck %s --check-prefix=VOLTA
// RUN: hasten-opt %s -split-input-file -hasten-gpu-attention="target=sm_80 precision=f16" 2>/dev/null | FileCheck %s --check-prefix=F16

// Causal GQA prefill on tensor cores, sm_80's plan (4 warps, tile_q 32: two
// 16-row MMA tiles per warp, so 128 query rows per block; swizzle<64> for
// 64-byte rows). One bf16 shared buffer: the Q block (128 x 32) first, then
// K and V tiles of 64 keys (128 planned, halved to keep the registers).
// Q is staged 8 elements per store (converted to bf16, its 16-byte chunk
// XORed with the row), then each warp loads its Q fragments with ldmatrix
// (2 tiles x 2 k steps), and a barrier hands the buffer to K and V.
// CHECK-LABEL: func.func @causal_gqa
// CHECK-NOT: scf.if
// CHECK: gpu.launch blocks(%{{.*}}, %[[H:.*]], %{{.*}}) in (%{{.*}} = %{{.*}}, %{{.*}} = %c4{{.*}}, %{{.*}} = %{{.*}}) threads(%[[T:.*]], %{{.*}}, %{{.*}}) in (%{{.*}} = %c128{{.*}}, %{{.*}} = %c1{{.*}}, %{{.*}} = %c1{{.*}})
// CHECK: %[[SMEM:.*]] = memref.alloca() : memref<4096xbf16, #gpu.address_space<workgroup>>
// CHECK: scf.for %{{.*}} = %[[T]] to %c512 step %c128
// CHECK-COUNT-8: arith.truncf %{{.*}} : f32 to bf16
// CHECK: vector.from_elements {{.*}} : vector<8xbf16>
// CHECK: arith.xori
// CHECK: vector.store %{{.*}}, %[[SMEM]][%{{.*}}] {alignment = 16 : i64} : memref<4096xbf16, #gpu.address_space<workgroup>>, vector<8xbf16>
// CHECK: func.call @hasten_gpu_barrier()
// CHECK-COUNT-4: nvgpu.ldmatrix %[[SMEM]][%{{.*}}] {numTiles = 4 : i32, transpose = false}
// CHECK: func.call @hasten_gpu_barrier()
// The key loop carries, per MMA tile, the max and sum of the lane's two
// rows and 4 accumulators of 8 value columns.
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c64{{.*}} iter_args({{.*}}) -> (f32, f32, f32, f32, vector<2x2xf32>, vector<2x2xf32>, vector<2x2xf32>, vector<2x2xf32>, f32, f32, f32, f32, vector<2x2xf32>, vector<2x2xf32>, vector<2x2xf32>, vector<2x2xf32>)
// K and V staged (256 chunks each), a barrier, then S = Q K^T: per 16 keys
// and k step one ldmatrix of K serves both of the warp's tiles.
// CHECK: scf.for %{{.*}} = %[[T]] to %c256
// CHECK: vector.store
// CHECK: scf.for %{{.*}} = %[[T]] to %c256
// CHECK: vector.store
// CHECK: func.call @hasten_gpu_barrier()
// CHECK: %[[KF:.*]] = nvgpu.ldmatrix %[[SMEM]][%{{.*}}] {numTiles = 4 : i32, transpose = false}
// CHECK: %[[KLO:.*]] = vector.extract_strided_slice %[[KF]] {offsets = [0, 0], sizes = [2, 2], strides = [1, 1]}
// CHECK: %[[KHI:.*]] = vector.extract_strided_slice %[[KF]] {offsets = [2, 0], sizes = [2, 2], strides = [1, 1]}
// CHECK: nvgpu.mma.sync(%{{.*}}, %[[KLO]], %{{.*}}) {mmaShape = [16, 8, 16]} : (vector<4x2xbf16>, vector<2x2xbf16>, vector<2x2xf32>) -> vector<2x2xf32>
// CHECK: nvgpu.mma.sync(%{{.*}}, %[[KHI]], %{{.*}}) {mmaShape = [16, 8, 16]}
// CHECK: nvgpu.mma.sync
// CHECK: nvgpu.mma.sync
// Scores scaled in f32, then FastAttention's tiling-mask: only the last
// tile (fewer than 64 keys) or one crossing the block's first row's
// diagonal (its last key, start + 63, past first row + kv_len - q_len)
// compares indices and masks the 64 scores of the lane; every other tile
// takes the branch that yields them as they are. Then the row max over
// the four lanes that share a row.
// CHECK: arith.mulf %{{.*}}, %cst{{.*}} : f32
// CHECK: %[[PARTIAL:.*]] = arith.cmpi slt, %[[COUNT:.*]], %c64{{.*}} : index
// CHECK: %[[LASTKEY:.*]] = arith.addi %[[START:.*]], %c63{{.*}} : index
// CHECK: %[[CROSSES:.*]] = arith.cmpi sgt, %[[LASTKEY]], %{{.*}} : index
// CHECK: %[[EDGE:.*]] = arith.ori %[[PARTIAL]], %[[CROSSES]] : i1
// CHECK: scf.if %[[EDGE]] -> (f32, f32,
// CHECK: arith.cmpi sge, %{{.*}}, %[[COUNT]] : index
// CHECK: arith.cmpi sgt
// CHECK: arith.select
// CHECK: } else {
// CHECK-NOT: arith.select
// CHECK: scf.yield
// CHECK: gpu.shuffle  xor %{{.*}}, %c1_i32{{.*}}, %c32_i32
// CHECK: gpu.shuffle  xor %{{.*}}, %c2_i32{{.*}}, %c32_i32
// CHECK: math.exp
// P V: the probabilities become an A operand in registers; V's fragments
// come transposed.
// CHECK: %[[P:.*]] = vector.from_elements {{.*}} : vector<4x2xf32>
// CHECK: %[[PA:.*]] = arith.truncf %[[P]] : vector<4x2xf32> to vector<4x2xbf16>
// CHECK: nvgpu.ldmatrix %[[SMEM]][%{{.*}}] {numTiles = 4 : i32, transpose = true}
// CHECK: nvgpu.mma.sync(%[[PA]], %{{.*}}, %{{.*}}) {mmaShape = [16, 8, 16]}
// CHECK: func.call @hasten_gpu_barrier()
// CHECK: scf.yield
// After the loop: each row's sum over its four lanes, then the outputs.
// CHECK: gpu.shuffle  xor
// CHECK: gpu.shuffle  xor
// CHECK: scf.if
// CHECK: arith.divf
// CHECK: memref.store
// Volta (sm_70's plan: 4 warps of 16 rows, 64-key tiles, rows padded by
// 8): one f16 buffer holds Q, then K and V (64 x 40 each, 5120), and after
// them the P tile (64 x 72). Q's fragments: 4 dims of a row per lane, one
// 8-byte load per 4 dims (8 for head dim 32). S with m8n8k4, A row-major
// and B (K) column-major; a row's max over lanes xor 2 and xor 8; P stored
// in pairs; a barrier; O += P V with both row-major.
// VOLTA-LABEL: func.func @causal_gqa
// VOLTA: gpu.launch {{.*}} threads(%{{.*}}, %{{.*}}, %{{.*}}) in (%{{.*}} = %c128{{.*}}, %{{.*}} = %c1{{.*}}, %{{.*}} = %c1{{.*}})
// VOLTA: %[[SMEM:.*]] = memref.alloca() : memref<9728xf16, #gpu.address_space<workgroup>>
// VOLTA: vector.store %{{.*}}, %[[SMEM]][%{{.*}}] {alignment = 16 : i64} : memref<9728xf16, #gpu.address_space<workgroup>>, vector<8xf16>
// VOLTA: func.call @hasten_gpu_barrier()
// VOLTA-COUNT-8: vector.load %[[SMEM]][%{{.*}}] {alignment = 8 : i64} : memref<9728xf16, #gpu.address_space<workgroup>>, vector<4xf16>
// VOLTA: func.call @hasten_gpu_barrier()
// VOLTA: scf.for %{{.*}} step %c64{{.*}} iter_args
// VOLTA: nvvm.mma.sync A[%{{.*}}, %{{.*}}]  B[%{{.*}}, %{{.*}}]  C[{{.*}}]  {layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>, shape = #nvvm.shape<m = 8, n = 8, k = 4>} : (vector<2xf16>, vector<2xf16>, f32) -> !llvm.struct<(f32, f32, f32, f32, f32, f32, f32, f32)>
// The tiling-mask as on sm_80: 4 blocks of 16 keys x 8 accumulators.
// VOLTA: %[[EDGE:.*]] = arith.ori
// VOLTA: scf.if %[[EDGE]] -> (f32, f32,
// VOLTA: arith.select
// VOLTA: } else {
// VOLTA-NOT: arith.select
// VOLTA: scf.yield
// VOLTA: gpu.shuffle  xor %{{.*}}, %c2_i32{{.*}}, %c32_i32
// VOLTA: gpu.shuffle  xor %{{.*}}, %c8_i32{{.*}}, %c32_i32
// VOLTA: vector.store %{{.*}}, %[[SMEM]][%{{.*}}] {alignment = 4 : i64} : memref<9728xf16, #gpu.address_space<workgroup>>, vector<2xf16>
// VOLTA: func.call @hasten_gpu_barrier()
// VOLTA: nvvm.mma.sync {{.*}} {layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<row>, shape = #nvvm.shape<m = 8, n = 8, k = 4>}
// VOLTA: func.call @hasten_gpu_barrier()
// VOLTA: scf.yield
func.func @causal_gqa(%q: tensor<1x4x?x32xf32>, %k: tensor<1x2x?x32xf32>, %v: tensor<1x2x?x32xf32>) -> tensor<1x4x?x32xf32> {
  %o = hasten.attention %q, %k, %v heads(4, 2) causal : tensor<1x4x?x32xf32>, tensor<1x2x?x32xf32>, tensor<1x2x?x32xf32> -> tensor<1x4x?x32xf32>
  return %o : tensor<1x4x?x32xf32>
}

// -----

// A recorded plan is followed: 2 warps of one MMA tile (64 threads, 32
// rows), 32-key tiles, rows padded by 8 elements (40 apart, no swizzle):
// max(32, 2 * 32) rows of 40 in the buffer.
// CHECK-LABEL: func.func @padded
// CHECK: gpu.launch {{.*}} threads(%{{.*}}, %{{.*}}, %{{.*}}) in (%{{.*}} = %c64{{.*}}, %{{.*}} = %c1{{.*}}, %{{.*}} = %c1{{.*}})
// CHECK: memref.alloca() : memref<2560xbf16, #gpu.address_space<workgroup>>
// CHECK-NOT: arith.xori
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c32{{.*}} iter_args({{.*}}) -> (f32, f32, f32, f32, vector<2x2xf32>, vector<2x2xf32>, vector<2x2xf32>, vector<2x2xf32>)
// CHECK-NOT: arith.xori
// CHECK: scf.yield
func.func @padded(%q: tensor<2x2x40x32xf32>, %k: tensor<2x2x40x32xf32>, %v: tensor<2x2x40x32xf32>) -> tensor<2x2x40x32xf32> {
  %o = hasten.attention %q, %k, %v heads(2, 2) tiling(<target = "sm_80", block_q = 32, tile_q = 16, tile_kv = 32, kv_splits = 1, skip_masked = true, diagonal_mask = true, warps = 2, mma = "m16n8k16", smem_layout = "padded<8>", vector_lanes = 0>) : tensor<2x2x40x32xf32>, tensor<2x2x40x32xf32>, tensor<2x2x40x32xf32> -> tensor<2x2x40x32xf32>
  return %o : tensor<2x2x40x32xf32>
}

// -----

// Head dims that are not multiples of 16 keep the SIMT kernel; decode keeps
// flash-decoding in f32.
// CHECK-LABEL: func.func @narrow_heads
// CHECK-NOT: nvgpu.mma.sync
// CHECK: memref.alloca() : memref<{{.*}}x8xf32, #gpu.address_space<workgroup>>
// CHECK-NOT: nvgpu.mma.sync
// CHECK-LABEL: func.func @decode
// CHECK-NOT: nvgpu.mma.sync
// CHECK: gpu.shuffle
func.func @narrow_heads(%q: tensor<1x2x20x8xf32>, %k: tensor<1x2x20x8xf32>, %v: tensor<1x2x20x8xf32>) -> tensor<1x2x20x8xf32> {
  // expected-remark @+1 {{SIMT kernel: the tensor-core kernel needs head dims that are multiples of 16, not 8 and 8}}
  %o = hasten.attention %q, %k, %v heads(2, 2) causal : tensor<1x2x20x8xf32>, tensor<1x2x20x8xf32>, tensor<1x2x20x8xf32> -> tensor<1x2x20x8xf32>
  return %o : tensor<1x2x20x8xf32>
}
func.func @decode(%q: tensor<1x2x1x32xf32>, %k: tensor<1x2x?x32xf32>, %v: tensor<1x2x?x32xf32>) -> tensor<1x2x1x32xf32> {
  %o = hasten.attention %q, %k, %v heads(2, 2) causal : tensor<1x2x1x32xf32>, tensor<1x2x?x32xf32>, tensor<1x2x?x32xf32> -> tensor<1x2x1x32xf32>
  return %o : tensor<1x2x1x32xf32>
}

// -----

// Head dim 256: the accumulators alone take 128 registers, so Q's
// fragments stay in shared memory and are reloaded at each use; Q, K and V
// then share the buffer side by side: 2 warps (32 rows) and 16-key tiles
// fit 40 KB (32 x 256 + 2 x 16 x 256 bf16).
// CHECK-LABEL: func.func @wide_heads
// CHECK: gpu.launch {{.*}} threads(%{{.*}}, %{{.*}}, %{{.*}}) in (%{{.*}} = %c64{{.*}}, %{{.*}} = %c1{{.*}}, %{{.*}} = %c1{{.*}})
// CHECK: memref.alloca() : memref<16384xbf16, #gpu.address_space<workgroup>>
// CHECK: func.call @hasten_gpu_barrier()
// CHECK-NOT: nvgpu.ldmatrix
// CHECK: scf.for %{{.*}} step %c16{{.*}} iter_args
// CHECK: func.call @hasten_gpu_barrier()
// CHECK: %[[K:.*]] = nvgpu.ldmatrix {{.*}} {numTiles = 4 : i32, transpose = false}
// CHECK: %[[KLO:.*]] = vector.extract_strided_slice %[[K]]
// CHECK: %[[Q:.*]] = nvgpu.ldmatrix {{.*}} {numTiles = 4 : i32, transpose = false}
// CHECK: nvgpu.mma.sync(%[[Q]], %[[KLO]], %{{.*}})
func.func @wide_heads(%q: tensor<1x2x40x256xf32>, %k: tensor<1x1x50x256xf32>, %v: tensor<1x1x50x256xf32>) -> tensor<1x2x40x256xf32> {
  %o = hasten.attention %q, %k, %v heads(2, 1) causal : tensor<1x2x40x256xf32>, tensor<1x1x50x256xf32>, tensor<1x1x50x256xf32> -> tensor<1x2x40x256xf32>
  return %o : tensor<1x2x40x256xf32>
}

// -----

// An f16 model: K and V (and Q) already have the buffer's type, so on
// sm_80 each 16-byte chunk is a cp.async, when the operand's rows are
// contiguous at run time (else converted and stored as before), rows past
// the tile zero-filled; each thread waits for its copies before the
// barrier that publishes the tile. Volta has no cp.async.
// F16-LABEL: func.func @f16_model
// F16: %[[BASE:.*]], %{{.*}}, %{{.*}}:4, %[[STRIDES:.*]]:4 = memref.extract_strided_metadata %{{.*}} : memref<1x2x64x32xf16, strided<[?, ?, ?, ?], offset: ?>>
// F16: %[[UNIT:.*]] = arith.cmpi eq, %[[STRIDES]]#3, %c1
// F16: scf.if %[[UNIT]] {
// F16: %[[ROWS:.*]] = memref.cast %{{.*}} : memref<1x2x64x32xf16, strided<[?, ?, ?, ?], offset: ?>> to memref<1x2x64x32xf16, strided<[?, ?, ?, 1], offset: ?>>
// F16: %[[N:.*]] = arith.select %{{.*}}, %c8{{.*}}, %c0
// F16: %[[COPY:.*]] = nvgpu.device_async_copy %[[ROWS]][%{{.*}}], %{{.*}}[%{{.*}}], 8, %[[N]] {bypassL1}
// F16: nvgpu.device_async_create_group %[[COPY]]
// F16: } else {
// F16: vector.store
// F16: %[[GROUP:.*]] = nvgpu.device_async_create_group{{ *$}}
// F16: nvgpu.device_async_wait %[[GROUP]] {numGroups = 0 : i32}
// F16-NEXT: func.call @hasten_gpu_barrier()
// VOLTA-LABEL: func.func @f16_model
// VOLTA-NOT: nvgpu.device_async
// VOLTA: nvvm.mma.sync
// VOLTA-NOT: nvgpu.device_async
// VOLTA: return
func.func @f16_model(%q: tensor<1x2x64x32xf16>, %k: tensor<1x2x64x32xf16>, %v: tensor<1x2x64x32xf16>) -> tensor<1x2x64x32xf16> {
  %o = hasten.attention %q, %k, %v heads(2, 2) causal : tensor<1x2x64x32xf16>, tensor<1x2x64x32xf16>, tensor<1x2x64x32xf16> -> tensor<1x2x64x32xf16>
  return %o : tensor<1x2x64x32xf16>
}

// -----

// A paged bf16 cache on tensor cores: K and V tiles are copied with
// cp.async straight from the pool (unit-stride rows of [block, layer, part,
// kv head, slot, dim]), each key's block looked up in the table; nothing
// gathers the blocks.
// CHECK-LABEL: func.func @paged_bf16
// CHECK-SAME: %[[POOL:[^:]*]]: memref<?x2x2x2x16x32xbf16>, %[[TABLE:[^:]*]]: memref<8xi32>
// CHECK-NOT: tensor.generate
// CHECK: %[[ROWS:.*]] = memref.cast %[[POOL]] : memref<?x2x2x2x16x32xbf16> to memref<?x2x2x2x16x32xbf16, strided<[?, ?, ?, ?, ?, 1], offset: ?>>
// CHECK: memref.load %[[TABLE]]
// CHECK: nvgpu.device_async_copy %[[ROWS]][%{{.*}}, %[[LAYER:c1[_0-9]*]], %[[KEYS:c0[_0-9]*]], %{{.*}}, %{{.*}}, %{{.*}}], %{{.*}}, 8, %{{.*}} {bypassL1}
// CHECK: memref.load %[[TABLE]]
// CHECK: nvgpu.device_async_copy %{{.*}}[%{{.*}}, %[[LAYER]], %[[VALUES:c1[_0-9]*]], %{{.*}}, %{{.*}}, %{{.*}}], %{{.*}}, 8, %{{.*}} {bypassL1}
// CHECK: nvgpu.mma.sync
// CHECK-NOT: tensor.generate
func.func @paged_bf16(%q: tensor<1x4x?x32xbf16>, %pool: memref<?x2x2x2x16x32xbf16>,
                      %table: memref<8xi32>, %len: index) -> tensor<1x4x?x32xbf16> {
  %k = hasten.paged_kv.read %pool[layer 1, part 0] table %table length %len
      : memref<?x2x2x2x16x32xbf16>, memref<8xi32> -> tensor<1x2x?x32xbf16>
  %v = hasten.paged_kv.read %pool[layer 1, part 1] table %table length %len
      : memref<?x2x2x2x16x32xbf16>, memref<8xi32> -> tensor<1x2x?x32xbf16>
  %o = hasten.attention %q, %k, %v heads(4, 2) causal
      : tensor<1x4x?x32xbf16>, tensor<1x2x?x32xbf16>, tensor<1x2x?x32xbf16> -> tensor<1x4x?x32xbf16>
  return %o : tensor<1x4x?x32xbf16>
}
