// RUN: hasten-opt %s -split-input-file -hasten-expand-shape-to-reinterpret-cast | FileCheck %s
// RUN: hasten-opt %s -split-input-file -hasten-expand-shape-to-reinterpret-cast -expand-strided-metadata | FileCheck %s --check-prefix=LOWERED

// [?x192] -> [?x?x192]: two dynamic sizes in one group. The view keeps the
// source's base and offset; the outer stride is the source stride times the
// inner size.
// CHECK-LABEL: func @two_dynamic
// CHECK: %[[BASE:.*]], %[[OFF:.*]], %{{.*}}:2, %[[STRIDES:.*]]:2 = memref.extract_strided_metadata %arg0
// CHECK: %[[OUTER:.*]] = arith.muli %[[STRIDES]]#0, %arg2 : index
// CHECK: memref.reinterpret_cast %[[BASE]] to offset: [0], sizes: [%arg1, %arg2, 192], strides: [%[[OUTER]], 192, 1] : memref<f32> to memref<?x?x192xf32>
// CHECK-NOT: memref.expand_shape
// LOWERED-LABEL: func @two_dynamic
// LOWERED: memref.reinterpret_cast
func.func @two_dynamic(%a: memref<?x192xf32>, %b: index, %s: index) -> memref<?x?x192xf32> {
  %e = memref.expand_shape %a [[0, 1], [2]] output_shape [%b, %s, 192] : memref<?x192xf32> into memref<?x?x192xf32>
  return %e : memref<?x?x192xf32>
}

// -----

// One dynamic size per group is left to expand-strided-metadata.
// CHECK-LABEL: func @one_dynamic
// CHECK: memref.expand_shape
func.func @one_dynamic(%a: memref<?x192xf32>, %s: index) -> memref<1x?x192xf32> {
  %e = memref.expand_shape %a [[0, 1], [2]] output_shape [1, %s, 192] : memref<?x192xf32> into memref<1x?x192xf32>
  return %e : memref<1x?x192xf32>
}
