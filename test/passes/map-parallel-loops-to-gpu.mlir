// RUN: hasten-opt %s -split-input-file -verify-diagnostics -hasten-map-parallel-loops-to-gpu | FileCheck %s
// RUN: hasten-opt %s -split-input-file -verify-diagnostics -hasten-map-parallel-loops-to-gpu="block-size=128" | FileCheck %s --check-prefix=B128

// A 2-D loop with a dynamic bound and a step of 2: one flat range of
// threads over both dimensions (256 per block, blocks = ceil(total / 256));
// the thread's id is delinearized with the last dimension fastest, then
// scaled by the step and offset by the lower bound. No host-side guard for an empty space: a launch with no blocks
// launches nothing, and an scf.if would make gpu-async-region wait there.
// CHECK-LABEL: func @negate
// CHECK-SAME: (%[[A:.*]]: memref<3x?xf32>, %[[B:.*]]: memref<3x?xf32>, %[[N:.*]]: index)
// CHECK-DAG: %[[C0:.*]] = arith.constant 0 : index
// CHECK-DAG: %[[C1:.*]] = arith.constant 1 : index
// CHECK-DAG: %[[C2:.*]] = arith.constant 2 : index
// CHECK: %[[SPAN:.*]] = arith.subi %[[N]], %[[C1]] : index
// CHECK: %[[DIV:.*]] = arith.ceildivsi %[[SPAN]], %[[C2]] : index
// CHECK: %[[INNER:.*]] = arith.maxsi %[[DIV]], %{{.*}} : index
// CHECK: %[[TOTAL:.*]] = arith.muli %{{.*}}, %[[INNER]] : index
// CHECK: %[[C256:.*]] = arith.constant 256 : index
// CHECK: %[[BLOCKS:.*]] = arith.ceildivsi %[[TOTAL]], %[[C256]] : index
// CHECK-NOT: scf.if
// CHECK: gpu.launch blocks(%[[BX:.*]], %{{.*}}, %{{.*}}) in (%{{.*}} = %[[BLOCKS]], %{{.*}} = %{{.*}}, %{{.*}} = %{{.*}}) threads(%[[TX:.*]], %{{.*}}, %{{.*}}) in (%{{.*}} = %[[C256]],
// CHECK: %[[BASE:.*]] = arith.muli %[[BX]], %[[C256]] : index
// CHECK: %[[ID:.*]] = arith.addi %[[BASE]], %[[TX]] : index
// CHECK: %[[IN:.*]] = arith.cmpi slt, %[[ID]], %[[TOTAL]] : index
// CHECK: scf.if %[[IN]] {
// CHECK: %[[JI:.*]] = arith.remsi %[[ID]], %[[INNER]] : index
// CHECK: %[[II:.*]] = arith.divsi %[[ID]], %[[INNER]] : index
// CHECK: %[[JS:.*]] = arith.muli %[[JI]], %[[C2]] : index
// CHECK: %[[J:.*]] = arith.addi %[[C1]], %[[JS]] : index
// CHECK: %[[IS:.*]] = arith.muli %[[II]], %[[C1]] : index
// CHECK: %[[I:.*]] = arith.addi %[[C0]], %[[IS]] : index
// CHECK: memref.load %[[A]][%[[I]], %[[J]]]
// CHECK: arith.negf
// CHECK: memref.store %{{.*}}, %[[B]][%[[I]], %[[J]]]
// CHECK: gpu.terminator
// CHECK-NOT: scf.parallel
// B128-LABEL: func @negate
// B128: %[[C128:.*]] = arith.constant 128 : index
// B128: gpu.launch {{.*}} threads({{.*}}) in (%{{.*}} = %[[C128]],
func.func @negate(%a: memref<3x?xf32>, %b: memref<3x?xf32>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c3 = arith.constant 3 : index
  scf.parallel (%i, %j) = (%c0, %c1) to (%c3, %n) step (%c1, %c2) {
    %x = memref.load %a[%i, %j] : memref<3x?xf32>
    %y = arith.negf %x : f32
    memref.store %y, %b[%i, %j] : memref<3x?xf32>
    scf.reduce
  }
  return
}

// -----

// A nested parallel loop stays inside the kernel (each thread runs it), and
// the sequential loop of a reduction too: only the outermost loop maps.
// CHECK-LABEL: func @row_sums
// CHECK: gpu.launch
// CHECK: scf.if
// CHECK: scf.for
// CHECK: arith.addf
// CHECK: gpu.terminator
// CHECK-NOT: gpu.launch
func.func @row_sums(%a: memref<8x16xf32>, %s: memref<8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %c16 = arith.constant 16 : index
  scf.parallel (%i) = (%c0) to (%c8) step (%c1) {
    scf.for %j = %c0 to %c16 step %c1 {
      %x = memref.load %a[%i, %j] : memref<8x16xf32>
      %acc = memref.load %s[%i] : memref<8xf32>
      %sum = arith.addf %acc, %x : f32
      memref.store %sum, %s[%i] : memref<8xf32>
    }
    scf.reduce
  }
  return
}

// -----

// Reductions carried by the loop have no mapping: an error, not a race.
func.func @carried(%a: memref<8xf32>) -> f32 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %zero = arith.constant 0.0 : f32
  // expected-error @+1 {{a parallel loop with reductions has no GPU mapping yet}}
  %r = scf.parallel (%i) = (%c0) to (%c8) step (%c1) init (%zero) -> f32 {
    %x = memref.load %a[%i] : memref<8xf32>
    scf.reduce(%x : f32) {
    ^bb0(%l: f32, %r: f32):
      %s = arith.addf %l, %r : f32
      scf.reduce.return %s : f32
    }
  }
  return %r : f32
}

// -----

// A reduction to one value has no parallel loop: its serial loop nest runs
// as a kernel of one thread (its result feeds a kernel), and the store that
// initializes it too. The host's own table, which no kernel reads, stays.
// CHECK-LABEL: func @total
// CHECK: %[[TABLE:.*]] = memref.alloc() : memref<2xindex>
// CHECK-NEXT: memref.store %{{.*}}, %[[TABLE]]
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %[[ONE:.*]], %{{.*}} = %[[ONE]], %{{.*}} = %[[ONE]]) threads({{.*}}) in (%{{.*}} = %[[ONE]], %{{.*}} = %[[ONE]], %{{.*}} = %[[ONE]])
// CHECK-NEXT: memref.store %{{.*}}, %[[SUM:.*]][] : memref<f32>
// CHECK: gpu.launch
// CHECK-NEXT: scf.for
// CHECK: memref.load %[[SUM]][]
// CHECK: gpu.launch
// CHECK: memref.load %[[SUM]][]
// CHECK: arith.divf
func.func @total(%a: memref<64xf32>, %out: memref<64xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c64 = arith.constant 64 : index
  %zero = arith.constant 0.0 : f32
  %table = memref.alloc() : memref<2xindex>
  memref.store %c64, %table[%c0] : memref<2xindex>
  %sum = memref.alloc() : memref<f32>
  memref.store %zero, %sum[] : memref<f32>
  scf.for %i = %c0 to %c64 step %c1 {
    %x = memref.load %a[%i] : memref<64xf32>
    %s = memref.load %sum[] : memref<f32>
    %t = arith.addf %s, %x : f32
    memref.store %t, %sum[] : memref<f32>
  }
  scf.parallel (%i) = (%c0) to (%c64) step (%c1) {
    %x = memref.load %a[%i] : memref<64xf32>
    %s = memref.load %sum[] : memref<f32>
    %y = arith.divf %x, %s : f32
    memref.store %y, %out[%i] : memref<64xf32>
    scf.reduce
  }
  return
}
