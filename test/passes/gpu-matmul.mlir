// RUN: hasten-opt %s -split-input-file -hasten-gpu-matmul | FileCheck %s

// C += A B: one block of 256 threads per 64 x 64 tile of C (grid: columns,
// rows), A's and B's 16 x 64 tiles in workgroup memory, a K loop of 16-deep
// steps carrying each thread's 4 x 4 accumulators, staged tiles between two
// barriers, 16 multiply-adds per k, then C += the piece where it is inside C.
// CHECK-LABEL: func.func @matmul
// CHECK-SAME: (%[[A:.*]]: memref<?x45xf32>, %[[B:.*]]: memref<45x70xf32>, %[[C:.*]]: memref<?x70xf32>)
// CHECK: %[[M:.*]] = memref.dim %[[A]], %c0
// CHECK: %[[NB:.*]] = arith.ceildivsi %{{.*}}, %c64
// CHECK: %[[MB:.*]] = arith.ceildivsi %[[M]], %c64
// CHECK-NOT: scf.if
// CHECK: gpu.launch blocks(%{{.*}}, %{{.*}}, %{{.*}}) in (%{{.*}} = %[[NB]], %{{.*}} = %[[MB]], %{{.*}} = %c1{{.*}}) threads(%{{.*}}, %{{.*}}, %{{.*}}) in (%{{.*}} = %c256{{.*}}, %{{.*}} = %c1{{.*}}, %{{.*}} = %c1{{.*}}) workgroup(%[[AT:.*]] : memref<16x64xf32, #gpu.address_space<workgroup>>, %[[BT:.*]] : memref<16x64xf32, #gpu.address_space<workgroup>>)
// CHECK: %[[ACC:.*]]:16 = scf.for %{{.*}} = %c0{{.*}} to %{{.*}} step %c16{{.*}} iter_args(
// CHECK-COUNT-4: memref.load %[[A]]
// CHECK-COUNT-4: memref.load %[[B]]
// CHECK: gpu.barrier
// CHECK: scf.for %{{.*}} = %c0{{.*}} to %c16{{.*}} step %c1{{.*}} iter_args(
// CHECK-COUNT-4: memref.load %[[AT]]
// CHECK-COUNT-16: math.fma
// CHECK: gpu.barrier
// CHECK: scf.if
// CHECK: %[[OLD:.*]] = memref.load %[[C]]
// CHECK: arith.addf %[[OLD]], %[[ACC]]#0
// CHECK: memref.store %{{.*}}, %[[C]]
// CHECK-NOT: linalg.matmul
func.func @matmul(%a: memref<?x45xf32>, %b: memref<45x70xf32>, %c: memref<?x70xf32>) {
  linalg.matmul ins(%a, %b : memref<?x45xf32>, memref<45x70xf32>) outs(%c : memref<?x70xf32>)
  return
}

// -----

// Batched: the batch is the grid's third dim, and every access leads with it;
// bf16 operands are computed in f32 and the result rounded back.
// CHECK-LABEL: func.func @batched_bf16
// CHECK: %[[BATCH:.*]] = memref.dim %arg0, %c0
// CHECK: gpu.launch blocks(%{{.*}}, %{{.*}}, %[[BZ:.*]]) in (%{{.*}} = %{{.*}}, %{{.*}} = %{{.*}}, %{{.*}} = %[[BATCH]])
// CHECK: memref.load %arg0[%[[BZ]],
// CHECK: arith.extf %{{.*}} : bf16 to f32
// CHECK: arith.truncf %{{.*}} : f32 to bf16
// CHECK: memref.store %{{.*}}, %arg2[%[[BZ]],
func.func @batched_bf16(%a: memref<?x40x16xbf16>, %b: memref<?x16x8xbf16>, %c: memref<?x40x8xbf16>) {
  linalg.batch_matmul ins(%a, %b : memref<?x40x16xbf16>, memref<?x16x8xbf16>) outs(%c : memref<?x40x8xbf16>)
  return
}

// -----

// A matmul with other indexing maps (B transposed), integer operands, and
// tensors are left to the generic lowering.
// CHECK-LABEL: func.func @left_alone
// CHECK-NOT: gpu.launch
// CHECK: linalg.matmul indexing_maps
// CHECK: linalg.matmul ins(%{{.*}} : memref<4x8xi32>
func.func @left_alone(%a: memref<4x8xf32>, %bt: memref<6x8xf32>, %c: memref<4x6xf32>,
                      %ai: memref<4x8xi32>, %bi: memref<8x6xi32>, %ci: memref<4x6xi32>) {
  linalg.matmul indexing_maps = [affine_map<(m, n, k) -> (m, k)>, affine_map<(m, n, k) -> (n, k)>, affine_map<(m, n, k) -> (m, n)>]
      ins(%a, %bt : memref<4x8xf32>, memref<6x8xf32>) outs(%c : memref<4x6xf32>)
  linalg.matmul ins(%ai, %bi : memref<4x8xi32>, memref<8x6xi32>) outs(%ci : memref<4x6xi32>)
  return
}

// -----

// One row (a decode step): the generic kernel reads B coalesced, a 64-row
// tile would compute 63 masked rows.
// CHECK-LABEL: func.func @one_row
// CHECK-NOT: gpu.launch
// CHECK: linalg.matmul
func.func @one_row(%a: memref<1x128xf32>, %b: memref<128x384xf32>, %c: memref<1x384xf32>) {
  linalg.matmul ins(%a, %b : memref<1x128xf32>, memref<128x384xf32>) outs(%c : memref<1x384xf32>)
  return
}
