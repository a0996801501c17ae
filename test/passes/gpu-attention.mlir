// RUN: hasten-opt %s -split-input-file -verify-diagnostics -hasten-gpu-attention=target=sm_80 | FileCheck %s

// Causal GQA: one block per (query block, head, batch), 128 threads (sm_80's
// planned block_q), one query row each. K and V tiles (128 keys: the plan's
// tile_kv, which fits 40 KB in f32 at head dim 32) in workgroup memory, the
// row's query, accumulator and scores private. The key loop ends at the
// last key the block's last row may see and carries the row's max and sum;
// each tile is staged, then a barrier, then scored, rescaled once and
// accumulated, then a barrier. Query head h reads K/V head h / 2. No guard
// on the host (an empty grid launches nothing).
// CHECK-LABEL: func.func @causal_gqa
// CHECK-DAG: %[[Q:.*]] = bufferization.to_buffer %arg0 read_only
// CHECK-DAG: %[[K:.*]] = bufferization.to_buffer %arg1 read_only
// CHECK-DAG: %[[V:.*]] = bufferization.to_buffer %arg2 read_only
// CHECK: %[[OUT:.*]] = memref.alloc(%{{.*}}) : memref<1x4x?x32xf32>
// CHECK-NOT: scf.if
// CHECK: gpu.launch blocks(%[[QB:.*]], %[[H:.*]], %[[B:.*]]) in (%{{.*}} = %{{.*}}, %{{.*}} = %c4{{.*}}, %{{.*}} = %{{.*}}) threads(%[[T:.*]], %{{.*}}, %{{.*}}) in (%{{.*}} = %c128{{.*}}, %{{.*}} = %c1{{.*}}, %{{.*}} = %c1{{.*}})
// CHECK-DAG: %[[KS:.*]] = memref.alloca() : memref<128x32xf32, #gpu.address_space<workgroup>>
// CHECK-DAG: %[[VS:.*]] = memref.alloca() : memref<128x32xf32, #gpu.address_space<workgroup>>
// CHECK-DAG: %[[QROW:.*]] = memref.alloca() : memref<32xf32>
// CHECK-DAG: %[[ACC:.*]] = memref.alloca() : memref<32xf32>
// CHECK-DAG: %[[SCORES:.*]] = memref.alloca() : memref<128xf32>
// CHECK: %[[KVH:.*]] = arith.divui %[[H]], %c2
// CHECK: arith.minsi
// CHECK: %[[END:.*]] = arith.maxsi
// CHECK: scf.for %[[START:.*]] = %{{.*}} to %[[END]] step %{{.*}} iter_args(%[[M:.*]] = %cst{{.*}}, %[[L:.*]] = %cst{{.*}}) -> (f32, f32)
// CHECK: scf.for %{{.*}} = %[[T]] to
// CHECK: memref.load %[[K]][%[[B]], %[[KVH]],
// CHECK: memref.store %{{.*}}, %[[KS]]
// CHECK: scf.for %{{.*}} = %[[T]] to
// CHECK: memref.load %[[V]][%[[B]], %[[KVH]],
// CHECK: func.call @hasten_gpu_barrier()
// CHECK: scf.if %{{.*}} -> (f32, f32)
// CHECK: math.fma
// CHECK: arith.cmpi sgt
// CHECK: arith.select %{{.*}}, %cst{{.*}}, %{{.*}} : f32
// CHECK: memref.store %{{.*}}, %[[SCORES]]
// CHECK: arith.maximumf
// CHECK: math.exp
// CHECK: arith.mulf
// CHECK: memref.store %{{.*}}, %[[ACC]]
// CHECK: math.exp
// CHECK: memref.load %[[VS]]
// CHECK: math.fma
// CHECK: scf.yield
// CHECK: } else {
// CHECK-NEXT: scf.yield %[[M]], %[[L]]
// CHECK: func.call @hasten_gpu_barrier()
// CHECK: arith.divf
// CHECK: memref.store %{{.*}}, %[[OUT]][%[[B]], %[[H]],
// CHECK: gpu.terminator
// CHECK: bufferization.to_tensor %[[OUT]] restrict writable
// CHECK-NOT: hasten.attention
func.func @causal_gqa(%q: tensor<1x4x?x32xf32>, %k: tensor<1x2x?x32xf32>, %v: tensor<1x2x?x32xf32>) -> tensor<1x4x?x32xf32> {
  %o = hasten.attention %q, %k, %v heads(4, 2) causal : tensor<1x4x?x32xf32>, tensor<1x2x?x32xf32>, tensor<1x2x?x32xf32> -> tensor<1x4x?x32xf32>
  return %o : tensor<1x4x?x32xf32>
}

// -----

// A boolean padding mask [batch, 1, 1, keys] broadcast by index (a dim of
// extent 1 reads index 0), bf16 operands computed in f32, and head dim 128:
// the plan's 64-key tile would take 64 KB of f32 K and V, so the kernel
// halves it to 32 keys. No causal masking, so no early end.
// CHECK-LABEL: func.func @bool_mask_bf16
// CHECK: %[[MASK:.*]] = bufferization.to_buffer %arg3
// CHECK: %[[BC1:.*]] = arith.cmpi eq, %{{.*}}, %c1
// CHECK: gpu.launch
// CHECK-DAG: memref.alloca() : memref<32x128xf32, #gpu.address_space<workgroup>>
// CHECK-DAG: memref.alloca() : memref<32xf32>
// CHECK-NOT: arith.cmpi sgt
// CHECK: arith.extf %{{.*}} : bf16 to f32
// CHECK: arith.select %[[BC1]], %c0{{.*}}, %{{.*}} : index
// CHECK: %[[KEEP:.*]] = memref.load %[[MASK]]
// CHECK: arith.select %[[KEEP]], %{{.*}}, %cst{{.*}} : f32
// CHECK: arith.truncf %{{.*}} : f32 to bf16
func.func @bool_mask_bf16(%q: tensor<2x4x?x128xbf16>, %k: tensor<2x4x?x128xbf16>, %v: tensor<2x4x?x128xbf16>, %m: tensor<2x1x1x?xi1>) -> tensor<2x4x?x128xbf16> {
  %o = hasten.attention %q, %k, %v mask(%m : tensor<2x1x1x?xi1>) heads(4, 4) : tensor<2x4x?x128xbf16>, tensor<2x4x?x128xbf16>, tensor<2x4x?x128xbf16> -> tensor<2x4x?x128xbf16>
  return %o : tensor<2x4x?x128xbf16>
}

// -----

// A recorded tiling is followed: 8 queries per block round up to a warp of
// threads, 16-key tiles. An additive mask is added to the scores.
// CHECK-LABEL: func.func @recorded_tiling
// CHECK: gpu.launch {{.*}} threads({{.*}}) in (%{{.*}} = %c32{{.*}}, %{{.*}} = %c1{{.*}}, %{{.*}} = %c1{{.*}})
// CHECK: memref.alloca() : memref<16x16xf32, #gpu.address_space<workgroup>>
// CHECK: arith.addf
func.func @recorded_tiling(%q: tensor<1x2x40x16xf32>, %k: tensor<1x2x40x16xf32>, %v: tensor<1x2x40x16xf32>, %m: tensor<1x1x40x40xf32>) -> tensor<1x2x40x16xf32> {
  %o = hasten.attention %q, %k, %v mask(%m : tensor<1x1x40x40xf32>) heads(2, 2)
      tiling(#hasten.attention_tiling<target = "cpu", block_q = 8, tile_q = 8, tile_kv = 16, kv_splits = 1, skip_masked = true, diagonal_mask = true, warps = 0, mma = "", smem_layout = "row", vector_lanes = 16>)
      : tensor<1x2x40x16xf32>, tensor<1x2x40x16xf32>, tensor<1x2x40x16xf32> -> tensor<1x2x40x16xf32>
  return %o : tensor<1x2x40x16xf32>
}

// -----

// A dynamic head dim has no static private arrays or tiles: left alone.
// CHECK-LABEL: func.func @dynamic_head_dim
// CHECK: hasten.attention
// CHECK-NOT: gpu.launch
func.func @dynamic_head_dim(%q: tensor<1x2x8x?xf32>, %k: tensor<1x2x8x?xf32>, %v: tensor<1x2x8x?xf32>) -> tensor<1x2x8x?xf32> {
  // expected-remark @+1 {{left to --hasten-tile-attention: its head dim is dynamic}}
  %o = hasten.attention %q, %k, %v heads(2, 2) scale(0.25) : tensor<1x2x8x?xf32>, tensor<1x2x8x?xf32>, tensor<1x2x8x?xf32> -> tensor<1x2x8x?xf32>
  return %o : tensor<1x2x8x?xf32>
}

// -----

// One query (decode): flash-decoding. sm_80's plan splits the keys into
// 108 SMs / 12 heads = 9 parts; one block of 128 threads per (part, head,
// batch), each thread with its own online softmax over keys tid, tid + 128,
// ...; the warp's lanes merged by butterfly shuffles (16 down to 1), the
// warps' states through shared memory into the part's partials
// (accumulator, max, sum); then a second kernel merges the parts.
// CHECK-LABEL: func.func @decode
// CHECK: %[[PARTIALS:.*]] = memref.alloc(%{{.*}}) : memref<?x12x9x66xf32>
// CHECK-NOT: scf.if
// CHECK: %[[CHUNK:.*]] = arith.ceildivsi %{{.*}}, %c9
// CHECK-NOT: scf.if
// CHECK: gpu.launch blocks(%[[PART:.*]], %{{.*}}, %{{.*}}) in (%{{.*}} = %c9{{.*}}, %{{.*}} = %c12{{.*}}, %{{.*}} = %{{.*}}) threads(%[[T:.*]], %{{.*}}, %{{.*}}) in (%{{.*}} = %c128{{.*}},
// CHECK-DAG: memref.alloca() : memref<64xf32, #gpu.address_space<workgroup>>
// CHECK-DAG: memref.alloca() : memref<4x64xf32, #gpu.address_space<workgroup>>
// CHECK: %[[START:.*]] = arith.muli %[[PART]], %[[CHUNK]]
// CHECK: func.call @hasten_gpu_barrier()
// CHECK: %[[FIRST:.*]] = arith.addi %[[START]], %[[T]]
// CHECK: scf.for %{{.*}} = %[[FIRST]] to %{{.*}} step %c128{{.*}} iter_args({{.*}}) -> (f32, f32)
// CHECK: gpu.shuffle xor %{{.*}}, %c16_i32
// CHECK: gpu.shuffle xor %{{.*}}, %c8_i32
// CHECK: gpu.shuffle xor %{{.*}}, %c4_i32
// CHECK: gpu.shuffle xor %{{.*}}, %c2_i32
// CHECK: gpu.shuffle xor %{{.*}}, %c1_i32
// CHECK: func.call @hasten_gpu_barrier()
// CHECK: memref.store %{{.*}}, %[[PARTIALS]]
// CHECK: gpu.terminator
// CHECK: gpu.launch blocks(%{{.*}}, %{{.*}}, %{{.*}}) in (%{{.*}} = %c12{{.*}}, %{{.*}} = %{{.*}}, %{{.*}} = %c1{{.*}}) threads({{.*}}) in (%{{.*}} = %c64{{.*}},
// CHECK: memref.load %[[PARTIALS]]
// CHECK: arith.divf
// CHECK: gpu.terminator
func.func @decode(%q: tensor<?x12x1x64xf32>, %k: tensor<?x12x?x64xf32>, %v: tensor<?x12x?x64xf32>) -> tensor<?x12x1x64xf32> {
  %o = hasten.attention %q, %k, %v heads(12, 12) causal : tensor<?x12x1x64xf32>, tensor<?x12x?x64xf32>, tensor<?x12x?x64xf32> -> tensor<?x12x1x64xf32>
  return %o : tensor<?x12x1x64xf32>
}

// -----

// Decode on a paged cache (the reads --hasten-lower-kv-cache{keep-paged-reads}
// leaves): the kernel reads each key and value in place, slot j mod 16 of
// pool block table[j / 16], layer 1, keys (part 0) and values (part 1);
// nothing gathers the blocks, and the keys' count is the reads' length.
// CHECK-LABEL: func.func @paged_decode
// CHECK-SAME: (%[[Q:.*]]: tensor<1x4x1x32xf32>, %[[POOL:.*]]: memref<?x2x2x2x16x32xf32>, %[[TABLE:.*]]: memref<8xi32>, %[[LEN:.*]]: index)
// CHECK-NOT: tensor.generate
// CHECK-NOT: hasten.paged_kv.read
// CHECK: %[[CHUNK:.*]] = arith.ceildivsi %[[LEN]], %c
// CHECK: gpu.launch
// CHECK: scf.for %[[J:.*]] = %{{.*}} to %{{.*}} step %c128{{.*}} iter_args
// CHECK: %[[KB:.*]] = arith.divui %[[J]], %[[BS:.*]] : index
// CHECK: %[[KS:.*]] = arith.remui %[[J]], %[[BS]] : index
// CHECK: %[[KE:.*]] = memref.load %[[TABLE]][%[[KB]]] : memref<8xi32>
// CHECK: %[[KBLOCK:.*]] = arith.index_cast %[[KE]] : i32 to index
// CHECK: scf.for
// CHECK: memref.load %[[POOL]][%[[KBLOCK]], %[[LAYER:.*]], %[[C0:.*]], %{{.*}}, %[[KS]], %{{.*}}] : memref<?x2x2x2x16x32xf32>
// The block is looked up once per key, for its key and its value.
// CHECK-NOT: memref.load %[[TABLE]]
// CHECK: memref.load %[[POOL]][%[[KBLOCK]], %[[LAYER]], %[[C1:.*]], %{{.*}}, %[[KS]], %{{.*}}] : memref<?x2x2x2x16x32xf32>
// CHECK: gpu.terminator
// CHECK-NOT: tensor.generate
func.func @paged_decode(%q: tensor<1x4x1x32xf32>, %pool: memref<?x2x2x2x16x32xf32>,
                        %table: memref<8xi32>, %len: index) -> tensor<1x4x1x32xf32> {
  %k = hasten.paged_kv.read %pool[layer 1, part 0] table %table length %len
      : memref<?x2x2x2x16x32xf32>, memref<8xi32> -> tensor<1x2x?x32xf32>
  %v = hasten.paged_kv.read %pool[layer 1, part 1] table %table length %len
      : memref<?x2x2x2x16x32xf32>, memref<8xi32> -> tensor<1x2x?x32xf32>
  %o = hasten.attention %q, %k, %v heads(4, 2) scale(0.25)
      : tensor<1x4x1x32xf32>, tensor<1x2x?x32xf32>, tensor<1x2x?x32xf32> -> tensor<1x4x1x32xf32>
  return %o : tensor<1x4x1x32xf32>
}

// -----

// Prefill on a paged cache: the kernel stages its K and V tiles from the
// pool in place, each key's row through the table (slot j mod 16 of block
// table[j / 16], layer 0, part 0 then 1); nothing gathers the blocks.
// CHECK-LABEL: func.func @paged_prefill
// CHECK-SAME: (%[[Q:.*]]: tensor<1x4x?x32xf32>, %[[POOL:.*]]: memref<?x2x2x2x16x32xf32>, %[[TABLE:.*]]: memref<8xi32>, %[[LEN:.*]]: index)
// CHECK-NOT: tensor.generate
// CHECK-NOT: hasten.paged_kv.read
// CHECK: gpu.launch
// CHECK: %[[KB:.*]] = arith.divui %[[KEY:.*]], %c16 : index
// CHECK: %[[KS:.*]] = arith.remui %[[KEY]], %c16 : index
// CHECK: %[[KE:.*]] = memref.load %[[TABLE]][%[[KB]]] : memref<8xi32>
// CHECK: %[[KBLOCK:.*]] = arith.index_cast %[[KE]] : i32 to index
// CHECK: memref.load %[[POOL]][%[[KBLOCK]], %[[LAYER:.*]], %[[PART0:c0[_0-9]*]], %{{.*}}, %[[KS]], %{{.*}}] : memref<?x2x2x2x16x32xf32>
// CHECK: %[[VE:.*]] = memref.load %[[TABLE]]
// CHECK: %[[VBLOCK:.*]] = arith.index_cast %[[VE]] : i32 to index
// CHECK: memref.load %[[POOL]][%[[VBLOCK]], %[[LAYER]], %[[PART1:c1[_0-9]*]], %{{.*}}] : memref<?x2x2x2x16x32xf32>
// CHECK: gpu.terminator
// CHECK-NOT: tensor.generate
func.func @paged_prefill(%q: tensor<1x4x?x32xf32>, %pool: memref<?x2x2x2x16x32xf32>,
                         %table: memref<8xi32>, %len: index) -> tensor<1x4x?x32xf32> {
  %k = hasten.paged_kv.read %pool[layer 0, part 0] table %table length %len
      : memref<?x2x2x2x16x32xf32>, memref<8xi32> -> tensor<1x2x?x32xf32>
  %v = hasten.paged_kv.read %pool[layer 0, part 1] table %table length %len
      : memref<?x2x2x2x16x32xf32>, memref<8xi32> -> tensor<1x2x?x32xf32>
  %o = hasten.attention %q, %k, %v heads(4, 2) causal
      : tensor<1x4x?x32xf32>, tensor<1x2x?x32xf32>, tensor<1x2x?x32xf32> -> tensor<1x4x?x32xf32>
  return %o : tensor<1x4x?x32xf32>
}
