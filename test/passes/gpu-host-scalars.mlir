// RUN: hasten-opt %s -split-input-file -hasten-gpu-host-scalars | FileCheck %s

// An entry's scalar input is read once, at its start; the loop (a kernel
// to be) uses the value. Other arguments and private functions are left
// alone.
// CHECK-LABEL: func.func @decode
// CHECK-SAME: (%[[PAST:.*]]: memref<i64>, %[[X:.*]]: memref<?xf32>)
// CHECK-NEXT: %[[P:.*]] = memref.load %[[PAST]][] : memref<i64>
// CHECK: scf.parallel
// CHECK-NOT: memref.load %[[PAST]]
// CHECK: arith.sitofp %[[P]]
// CHECK-LABEL: func.func private @helper
// CHECK: scf.for
// CHECK: memref.load %{{.*}}[] : memref<i64>
func.func @decode(%past: memref<i64>, %x: memref<?xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %n = memref.dim %x, %c0 : memref<?xf32>
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    %p = memref.load %past[] : memref<i64>
    %f = arith.sitofp %p : i64 to f32
    memref.store %f, %x[%i] : memref<?xf32>
    scf.reduce
  }
  return
}
func.func private @helper(%past: memref<i64>) -> i64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %z = arith.constant 0 : i64
  %r = scf.for %i = %c0 to %c2 step %c1 iter_args(%a = %z) -> i64 {
    %p = memref.load %past[] : memref<i64>
    %s = arith.addi %a, %p : i64
    scf.yield %s : i64
  }
  return %r : i64
}

// -----

// A scalar the entry also writes stays a buffer.
// CHECK-LABEL: func.func @written
// CHECK-NEXT: arith.constant
// CHECK-NEXT: memref.store
// CHECK-NEXT: memref.load
func.func @written(%count: memref<i64>) -> i64 {
  %one = arith.constant 1 : i64
  memref.store %one, %count[] : memref<i64>
  %v = memref.load %count[] : memref<i64>
  return %v : i64
}
