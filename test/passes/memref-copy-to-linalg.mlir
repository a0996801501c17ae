// RUN: hasten-opt %s -hasten-memref-copy-to-linalg | FileCheck %s
// RUN: hasten-opt %s -hasten-memref-copy-to-linalg -convert-linalg-to-loops | FileCheck %s --check-prefix=LOOPS

// A copy out of a strided view becomes linalg.copy, and then loops: no call
// to the runner utilities' memrefCopy remains.
// CHECK-LABEL: func @strided_copy
// CHECK-NOT: memref.copy
// CHECK: linalg.copy ins(%{{.*}} : memref<4x?xf32, strided<[?, 1], offset: ?>>) outs(%arg1 : memref<4x?xf32>)
// LOOPS-LABEL: func @strided_copy
// LOOPS: scf.for
// LOOPS: scf.for
// LOOPS: memref.load
// LOOPS: memref.store
// LOOPS-NOT: memref.copy
func.func @strided_copy(%a: memref<8x?xf32>, %b: memref<4x?xf32>, %n: index) {
  %c2 = arith.constant 2 : index
  %view = memref.subview %a[%c2, 0] [4, %n] [1, 1] : memref<8x?xf32> to memref<4x?xf32, strided<[?, 1], offset: ?>>
  memref.copy %view, %b : memref<4x?xf32, strided<[?, 1], offset: ?>> to memref<4x?xf32>
  return
}
