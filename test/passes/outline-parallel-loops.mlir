// RUN: hasten-opt %s -split-input-file -hasten-outline-parallel-loops | FileCheck %s
// RUN: hasten-opt %s -split-input-file -hasten-outline-parallel-loops="min-work=4" | FileCheck %s --check-prefix=SMALL

// A 3-D parallel loop: the first dimension is split across threads, the
// captured memrefs travel in a stack struct (of static ones, only the
// aligned pointer: the body rebuilds the descriptor from the type),
// constants are cloned into the body, and the other dimensions stay an
// inner scf.parallel.
// CHECK-LABEL: func @negate
// CHECK: %[[CTX:.*]] = llvm.alloca %{{.*}} x !llvm.struct<(ptr, ptr)>
// CHECK: %[[A:.*]] = builtin.unrealized_conversion_cast %arg0 : memref<3x4x5xf32> to !llvm.struct
// CHECK: %[[APTR:.*]] = llvm.extractvalue %[[A]][1]
// CHECK: %[[AFIELD:.*]] = llvm.getelementptr %[[CTX]][0, 0]
// CHECK: llvm.store %[[APTR]], %[[AFIELD]]
// CHECK: %[[WORK:.*]] = arith.select %{{.*}}, %{{.*}}, %{{.*}} : index
// CHECK: %[[BODY:.*]] = constant @__hasten_parallel_0 : (index, index, !llvm.ptr) -> ()
// CHECK: call @hasten_rt_parallel_for(%{{.*}}, %[[WORK]], %[[BODY]], %[[CTX]])
// CHECK-NOT: scf.parallel
// CHECK: return
// CHECK: func.func private @hasten_rt_parallel_for(index, index, (index, index, !llvm.ptr) -> (), !llvm.ptr)
// CHECK: func.func private @__hasten_parallel_0(%[[BEGIN:.*]]: index, %[[END:.*]]: index, %[[P:.*]]: !llvm.ptr)
// CHECK: %[[PTR:.*]] = llvm.load %{{.*}} : !llvm.ptr -> !llvm.ptr
// CHECK: llvm.insertvalue %[[PTR]], %{{.*}}[0]
// CHECK: llvm.insertvalue %[[PTR]], %{{.*}}[1]
// CHECK: %[[C20:.*]] = llvm.mlir.constant(20 : index) : i64
// CHECK: llvm.insertvalue %[[C20]], %{{.*}}[4, 0]
// CHECK: builtin.unrealized_conversion_cast %{{.*}} : !llvm.struct<(ptr, ptr, i64, array<3 x i64>, array<3 x i64>)> to memref<3x4x5xf32>
// CHECK: scf.for %[[I:.*]] = %[[BEGIN]] to %[[END]]
// CHECK: scf.parallel (%[[J:.*]], %[[K:.*]]) =
// CHECK: memref.load %{{.*}}[%{{.*}}, %[[J]], %[[K]]]
// CHECK: arith.negf
// CHECK: memref.store
func.func @negate(%a: memref<3x4x5xf32>, %b: memref<3x4x5xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c3 = arith.constant 3 : index
  %c4 = arith.constant 4 : index
  %c5 = arith.constant 5 : index
  scf.parallel (%i, %j, %k) = (%c0, %c0, %c0) to (%c3, %c4, %c5) step (%c1, %c1, %c1) {
    %v = memref.load %a[%i, %j, %k] : memref<3x4x5xf32>
    %n = arith.negf %v : f32
    memref.store %n, %b[%i, %j, %k] : memref<3x4x5xf32>
    scf.reduce
  }
  return
}

// The total work (60 iterations) is compared with min-work: with the default
// 32768 the runtime is told to stay serial (work 0), with min-work=4 not.
// SMALL-LABEL: func @negate
// SMALL: %[[THRESHOLD:.*]] = arith.constant 4 : index
// SMALL: arith.cmpi slt, %{{.*}}, %[[THRESHOLD]]

// -----

// Loops with reductions, and loops nested in another parallel loop, stay.
// CHECK-LABEL: func @reduction
// CHECK: scf.parallel
// CHECK: scf.reduce(
// CHECK-NOT: hasten_rt_parallel_for
func.func @reduction(%a: memref<8xf32>) -> f32 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %zero = arith.constant 0.0 : f32
  %sum = scf.parallel (%i) = (%c0) to (%c8) step (%c1) init (%zero) -> f32 {
    %v = memref.load %a[%i] : memref<8xf32>
    scf.reduce(%v : f32) {
    ^bb0(%x: f32, %y: f32):
      %s = arith.addf %x, %y : f32
      scf.reduce.return %s : f32
    }
  }
  return %sum : f32
}

// -----

// A leading dimension of one iteration (batch 1) is not the one to share:
// the body fixes it at its lower bound and splits the rows. The inner
// reduction over 768 columns counts toward the work (512 x 768 = 393216,
// above the default min-work), so the loop runs in parallel.
// CHECK-LABEL: func @row_sums
// CHECK: %[[C512:.*]] = arith.constant 512 : index
// CHECK: %[[TRIPS:.*]] = arith.ceildivsi %{{.*}}, %{{.*}} : index
// CHECK: %[[ROWS:.*]] = arith.muli %[[TRIPS]], %{{.*}} : index
// CHECK: %[[INNER:.*]] = arith.constant 768 : index
// CHECK: %[[WORK:.*]] = arith.muli %[[ROWS]], %[[INNER]] : index
// CHECK: arith.cmpi slt, %[[WORK]], %{{.*}} : index
// CHECK: func.func private @__hasten_parallel_{{[0-9]+}}(%[[BEGIN:.*]]: index, %[[END:.*]]: index
// CHECK: %[[ZERO:.*]] = arith.constant 0 : index
// CHECK: scf.for %[[R:.*]] = %[[BEGIN]] to %[[END]]
// CHECK-NOT: scf.parallel
// CHECK: scf.for
// CHECK: memref.load %{{.*}}[%[[ZERO]], %{{.*}}, %{{.*}}] : memref<1x512x768xf32>
func.func @row_sums(%a: memref<1x512x768xf32>, %b: memref<1x512xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c512 = arith.constant 512 : index
  %c768 = arith.constant 768 : index
  %zero = arith.constant 0.0 : f32
  scf.parallel (%n, %r) = (%c0, %c0) to (%c1, %c512) step (%c1, %c1) {
    %sum = scf.for %k = %c0 to %c768 step %c1 iter_args(%acc = %zero) -> f32 {
      %v = memref.load %a[%n, %r, %k] : memref<1x512x768xf32>
      %s = arith.addf %acc, %v : f32
      scf.yield %s : f32
    }
    memref.store %sum, %b[%n, %r] : memref<1x512xf32>
    scf.reduce
  }
  return
}

// -----

// A sequential loop whose trip count is known only at run time (tiled
// attention's loop over key tiles, say) counts as 64 iterations in the work
// estimate, instead of one.
// CHECK-LABEL: func @dynamic_inner
// CHECK: %[[TRIPS:.*]] = arith.ceildivsi
// CHECK: %[[WORK:.*]] = arith.muli %[[TRIPS]], %c64
// CHECK: %[[BELOW:.*]] = arith.cmpi slt, %[[WORK]], %c32768
// CHECK: arith.select %[[BELOW]], %{{.*}}, %[[WORK]]
func.func @dynamic_inner(%a: memref<12x?xf32>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c12 = arith.constant 12 : index
  scf.parallel (%i) = (%c0) to (%c12) step (%c1) {
    scf.for %j = %c0 to %n step %c1 {
      %v = memref.load %a[%i, %j] : memref<12x?xf32>
      %w = arith.negf %v : f32
      memref.store %w, %a[%i, %j] : memref<12x?xf32>
    }
    scf.reduce
  }
  return
}

// -----

// The same loop on other buffers (a model's layers: weights arrive through
// the context) shares one body; a loop that differs (negf, not absf) gets
// its own.
// CHECK-LABEL: func @layers
// CHECK: constant @[[SHARED:__hasten_parallel_[0-9]+]]
// CHECK: constant @[[SHARED]]
// CHECK: constant @[[OTHER:__hasten_parallel_[0-9]+]]
// CHECK: func.func private @[[SHARED]](
// CHECK: math.absf
// CHECK-NOT: func.func private @[[SHARED]](
// CHECK: func.func private @[[OTHER]](
// CHECK: arith.negf
func.func @layers(%a: memref<64xf32>, %b: memref<64xf32>, %c: memref<64xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c64 = arith.constant 64 : index
  scf.parallel (%i) = (%c0) to (%c64) step (%c1) {
    %v = memref.load %a[%i] : memref<64xf32>
    %n = math.absf %v : f32
    memref.store %n, %b[%i] : memref<64xf32>
    scf.reduce
  }
  scf.parallel (%i) = (%c0) to (%c64) step (%c1) {
    %v = memref.load %b[%i] : memref<64xf32>
    %n = math.absf %v : f32
    memref.store %n, %c[%i] : memref<64xf32>
    scf.reduce
  }
  scf.parallel (%i) = (%c0) to (%c64) step (%c1) {
    %v = memref.load %c[%i] : memref<64xf32>
    %n = arith.negf %v : f32
    memref.store %n, %a[%i] : memref<64xf32>
    scf.reduce
  }
  return
}

// -----

// The same ops wired differently (a - b, then b - a) are two bodies.
// CHECK-LABEL: func @wiring
// CHECK: constant @[[FIRST:__hasten_parallel_[0-9]+]]
// CHECK-NOT: constant @[[FIRST]]
// CHECK: constant @[[SECOND:__hasten_parallel_[0-9]+]]
// CHECK: func.func private @[[FIRST]](
// CHECK: %[[X:.*]] = memref.load
// CHECK: %[[Y:.*]] = memref.load
// CHECK: arith.subf %[[X]], %[[Y]]
// CHECK: func.func private @[[SECOND]](
// CHECK: %[[X2:.*]] = memref.load
// CHECK: %[[Y2:.*]] = memref.load
// CHECK: arith.subf %[[Y2]], %[[X2]]
func.func @wiring(%a: memref<64xf32>, %b: memref<64xf32>, %c: memref<64xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c64 = arith.constant 64 : index
  scf.parallel (%i) = (%c0) to (%c64) step (%c1) {
    %x = memref.load %a[%i] : memref<64xf32>
    %y = memref.load %b[%i] : memref<64xf32>
    %d = arith.subf %x, %y : f32
    memref.store %d, %c[%i] : memref<64xf32>
    scf.reduce
  }
  scf.parallel (%i) = (%c0) to (%c64) step (%c1) {
    %x = memref.load %a[%i] : memref<64xf32>
    %y = memref.load %b[%i] : memref<64xf32>
    %d = arith.subf %y, %x : f32
    memref.store %d, %c[%i] : memref<64xf32>
    scf.reduce
  }
  return
}

// -----

// Of a memref whose type leaves sizes, strides or the offset dynamic, the
// context carries the aligned pointer and those: here the rows and the
// offset of a strided view (its row stride, 16, and column stride are in
// the type); the loop's bound follows as a value of its own.
// CHECK-LABEL: func @dynamic_view
// CHECK: %[[CTX:.*]] = llvm.alloca %{{.*}} x !llvm.struct<(ptr, i64, i64, i64)>
// CHECK: %[[V:.*]] = builtin.unrealized_conversion_cast %arg0 : memref<?x8xf32, strided<[16, 1], offset: ?>> to !llvm.struct<(ptr, ptr, i64, array<2 x i64>, array<2 x i64>)>
// CHECK: %[[VPTR:.*]] = llvm.extractvalue %[[V]][1]
// CHECK: %[[ROWS:.*]] = llvm.extractvalue %[[V]][3, 0]
// CHECK: %[[OFFSET:.*]] = llvm.extractvalue %[[V]][2]
// CHECK: llvm.store %[[VPTR]]
// CHECK: llvm.store %[[ROWS]]
// CHECK: llvm.store %[[OFFSET]]
// CHECK: func.func private @__hasten_parallel_{{[0-9]+}}(
// CHECK: %[[P:.*]] = llvm.load %{{.*}} : !llvm.ptr -> !llvm.ptr
// CHECK: %[[R:.*]] = llvm.load %{{.*}} : !llvm.ptr -> i64
// CHECK: %[[O:.*]] = llvm.load %{{.*}} : !llvm.ptr -> i64
// CHECK: llvm.insertvalue %[[R]], %{{.*}}[3, 0]
// CHECK: %[[C8:.*]] = llvm.mlir.constant(8 : index) : i64
// CHECK: llvm.insertvalue %[[C8]], %{{.*}}[3, 1]
// CHECK: %[[C16:.*]] = llvm.mlir.constant(16 : index) : i64
// CHECK: llvm.insertvalue %[[C16]], %{{.*}}[4, 0]
// CHECK: llvm.insertvalue %[[O]], %{{.*}}[2]
// CHECK: to memref<?x8xf32, strided<[16, 1], offset: ?>>
func.func @dynamic_view(%v: memref<?x8xf32, strided<[16, 1], offset: ?>>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %rows = memref.dim %v, %c0 : memref<?x8xf32, strided<[16, 1], offset: ?>>
  %zero = arith.constant 0.0 : f32
  scf.parallel (%i, %j) = (%c0, %c0) to (%rows, %c8) step (%c1, %c1) {
    memref.store %zero, %v[%i, %j] : memref<?x8xf32, strided<[16, 1], offset: ?>>
    scf.reduce
  }
  return
}
