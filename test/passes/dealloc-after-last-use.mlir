// RUN: hasten-opt %s -split-input-file -hasten-dealloc-after-last-use | FileCheck %s

// Each buffer is freed right after its last use, including uses of views.
// CHECK-LABEL: func @straight_line
// CHECK: %[[A:.*]] = memref.alloc()
// CHECK: %[[V:.*]] = memref.subview %[[A]]
// CHECK: linalg.fill {{.*}} outs(%[[V]]
// CHECK-NEXT: memref.dealloc %[[A]]
// CHECK: %[[B:.*]] = memref.alloc()
// CHECK: linalg.fill {{.*}} outs(%[[B]]
// CHECK-NEXT: linalg.copy ins(%[[B]] {{.*}} outs(%arg0
// CHECK-NEXT: memref.dealloc %[[B]]
// CHECK-NEXT: return
func.func @straight_line(%out: memref<64xf32>) {
  %c = arith.constant 1.0 : f32
  %a = memref.alloc() : memref<64xf32>
  %v = memref.subview %a[0] [32] [1] : memref<64xf32> to memref<32xf32, strided<[1]>>
  linalg.fill ins(%c : f32) outs(%v : memref<32xf32, strided<[1]>>)
  %b = memref.alloc() : memref<64xf32>
  linalg.fill ins(%c : f32) outs(%b : memref<64xf32>)
  linalg.copy ins(%b : memref<64xf32>) outs(%out : memref<64xf32>)
  memref.dealloc %a : memref<64xf32>
  memref.dealloc %b : memref<64xf32>
  return
}

// -----

// A use inside a loop keeps the buffer alive until after the loop.
// CHECK-LABEL: func @nested_use
// CHECK: scf.for
// CHECK: }
// CHECK-NEXT: memref.dealloc
// CHECK-NEXT: memref.alloc
func.func @nested_use(%n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %f = arith.constant 0.0 : f32
  %a = memref.alloc() : memref<4xf32>
  scf.for %i = %c0 to %n step %c1 {
    memref.store %f, %a[%c0] : memref<4xf32>
  }
  %b = memref.alloc() : memref<4xf32>
  memref.store %f, %b[%c0] : memref<4xf32>
  memref.dealloc %a : memref<4xf32>
  memref.dealloc %b : memref<4xf32>
  return
}

// -----

// A buffer whose alias is returned keeps its dealloc where it is (here the
// ownership pipeline would not free it at all; an alias flowing through an
// op that yields a memref is not followed).
// CHECK-LABEL: func @escaping_alias
// CHECK: arith.select
// CHECK: linalg.fill
// CHECK-NEXT: memref.dealloc
func.func @escaping_alias(%cond: i1, %other: memref<4xf32>) -> memref<4xf32> {
  %f = arith.constant 0.0 : f32
  %a = memref.alloc() : memref<4xf32>
  %s = arith.select %cond, %a, %other : memref<4xf32>
  linalg.fill ins(%f : f32) outs(%other : memref<4xf32>)
  memref.dealloc %a : memref<4xf32>
  return %s : memref<4xf32>
}
