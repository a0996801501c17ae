// RUN: hasten-opt %s -split-input-file -hasten-promote-loop-accumulators | FileCheck %s

// A row's sum of squares (LayerNorm's variance) as convert-linalg-to-
// parallel-loops writes it: the element is loaded once before the loop,
// carried as an iter_arg, stored once after; the sum may reassociate.
// CHECK-LABEL: func @variance
// CHECK: scf.parallel (%[[I:.*]]) =
// CHECK: %[[INIT:.*]] = memref.load %arg2[%[[I]]]
// CHECK: %[[SUM:.*]] = scf.for %{{.*}} = {{.*}} iter_args(%[[ACC:.*]] = %[[INIT]]) -> (f32) {
// CHECK-NOT: memref.store
// CHECK: %[[NEXT:.*]] = arith.addf %[[ACC]], %{{.*}} fastmath<reassoc> : f32
// CHECK: scf.yield %[[NEXT]] : f32
// CHECK: }
// CHECK: memref.store %[[SUM]], %arg2[%[[I]]]
func.func @variance(%x: memref<64x128xf32>, %mean: memref<64xf32>, %out: memref<64xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c64 = arith.constant 64 : index
  %c128 = arith.constant 128 : index
  scf.parallel (%i) = (%c0) to (%c64) step (%c1) {
    scf.for %j = %c0 to %c128 step %c1 {
      %v = memref.load %x[%i, %j] : memref<64x128xf32>
      %m = memref.load %mean[%i] : memref<64xf32>
      %acc = memref.load %out[%i] : memref<64xf32>
      %d = arith.subf %v, %m : f32
      %s = arith.mulf %d, %d : f32
      %r = arith.addf %acc, %s : f32
      memref.store %r, %out[%i] : memref<64xf32>
    }
    scf.reduce
  }
  return
}

// -----

// A contraction over two reduction loops: the accumulator moves out of the
// inner loop, then out of the outer one. A maximum is carried too, and
// keeps its order (only sums reassociate).
// CHECK-LABEL: func @two_loops
// CHECK: %[[INIT:.*]] = memref.load %arg1[]
// CHECK: %[[OUTER:.*]] = scf.for {{.*}} iter_args(%[[A:.*]] = %[[INIT]]) -> (f32) {
// CHECK: %[[INNER:.*]] = scf.for {{.*}} iter_args(%[[B:.*]] = %[[A]]) -> (f32) {
// CHECK: %[[M:.*]] = arith.maximumf %[[B]], %{{.*}} : f32
// CHECK: scf.yield %[[M]] : f32
// CHECK: scf.yield %[[INNER]] : f32
// CHECK: memref.store %[[OUTER]], %arg1[]
func.func @two_loops(%x: memref<8x16xf32>, %out: memref<f32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %c16 = arith.constant 16 : index
  scf.for %i = %c0 to %c8 step %c1 {
    scf.for %j = %c0 to %c16 step %c1 {
      %v = memref.load %x[%i, %j] : memref<8x16xf32>
      %acc = memref.load %out[] : memref<f32>
      %r = arith.maximumf %acc, %v : f32
      memref.store %r, %out[] : memref<f32>
    }
  }
  return
}

// -----

// Views of one arena at disjoint byte offsets (PackStaticBuffers) are told
// apart; a view that overlaps the accumulator's bytes, or one at an offset
// not known, keeps the loop as it is, since its loads could read the
// element.
// CHECK-LABEL: func @arena
// CHECK: scf.for {{.*}} iter_args
// CHECK: scf.for
// CHECK-NOT: iter_args
// CHECK: memref.store
// CHECK: }
// CHECK: memref.view %{{.*}}[%arg0][]
// CHECK-NEXT: scf.for
// CHECK-NOT: iter_args
// CHECK: memref.store
// CHECK: }
func.func @arena(%n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c64 = arith.constant 64 : index
  %c128 = arith.constant 128 : index
  %arena = memref.alloc() : memref<1024xi8>
  %in = memref.view %arena[%c0][] : memref<1024xi8> to memref<32xf32>
  %acc = memref.view %arena[%c128][] : memref<1024xi8> to memref<4xf32>
  %overlap = memref.view %arena[%c64][] : memref<1024xi8> to memref<32xf32>
  %c32 = arith.constant 32 : index
  scf.for %j = %c0 to %c32 step %c1 {
    %v = memref.load %in[%j] : memref<32xf32>
    %a = memref.load %acc[%c0] : memref<4xf32>
    %r = arith.addf %a, %v : f32
    memref.store %r, %acc[%c0] : memref<4xf32>
  }
  scf.for %j = %c0 to %n step %c1 {
    %v = memref.load %overlap[%j] : memref<32xf32>
    %a = memref.load %acc[%c0] : memref<4xf32>
    %r = arith.addf %a, %v : f32
    memref.store %r, %acc[%c0] : memref<4xf32>
  }
  %anywhere = memref.view %arena[%n][] : memref<1024xi8> to memref<32xf32>
  scf.for %j = %c0 to %c32 step %c1 {
    %v = memref.load %anywhere[%j] : memref<32xf32>
    %a = memref.load %acc[%c0] : memref<4xf32>
    %r = arith.addf %a, %v : f32
    memref.store %r, %acc[%c0] : memref<4xf32>
  }
  memref.dealloc %arena : memref<1024xi8>
  return
}

// -----

// Left alone: an index that moves with the loop (a prefix sum), another
// store in the loop, and a call that may write anything.
// CHECK-LABEL: func @left_alone
// CHECK-NOT: iter_args
func.func private @touch(memref<64xf32>)
func.func @left_alone(%x: memref<64xf32>, %y: memref<64xf32>, %out: memref<4xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c64 = arith.constant 64 : index
  scf.for %j = %c1 to %c64 step %c1 {
    %p = arith.subi %j, %c1 : index
    %a = memref.load %y[%p] : memref<64xf32>
    %v = memref.load %x[%j] : memref<64xf32>
    %r = arith.addf %a, %v : f32
    memref.store %r, %y[%j] : memref<64xf32>
  }
  scf.for %j = %c0 to %c64 step %c1 {
    %v = memref.load %x[%j] : memref<64xf32>
    %a = memref.load %out[%c0] : memref<4xf32>
    %r = arith.addf %a, %v : f32
    memref.store %r, %out[%c0] : memref<4xf32>
    memref.store %v, %y[%j] : memref<64xf32>
  }
  scf.for %j = %c0 to %c64 step %c1 {
    %v = memref.load %x[%j] : memref<64xf32>
    %a = memref.load %out[%c0] : memref<4xf32>
    %r = arith.addf %a, %v : f32
    memref.store %r, %out[%c0] : memref<4xf32>
    func.call @touch(%x) : (memref<64xf32>) -> ()
  }
  return
}
