// RUN: hasten-opt %s -split-input-file -verify-diagnostics -hasten-externalize-weights | FileCheck %s
// RUN: hasten-opt %s -split-input-file -verify-diagnostics -hasten-externalize-weights="min-bytes=4096" | FileCheck %s --check-prefix=LARGE

// Constants of 64 bytes and more move into the segment at 64-byte aligned
// offsets (@w: 128 bytes at 0, @v: 64 bytes at 128); their addresses become
// the runtime-set base plus the offset. Small constants and mutable globals
// stay in the code.
// CHECK: module attributes {hasten.weight_segment = {bytes = 192 : i64, weights = [{name = "w", offset = 0 : i64, value = dense<1.000000e+00> : tensor<4x8xf32>}, {name = "v", offset = 128 : i64, value = dense<[1.000000e+00, 2.000000e+00,
// CHECK: llvm.mlir.global external @hasten_weights_base() {{.*}}alignment = 8 : i64{{.*}} : !llvm.ptr {
// CHECK-NEXT: %[[NULL:.*]] = llvm.mlir.zero : !llvm.ptr
// CHECK-NEXT: llvm.return %[[NULL]]
// CHECK-NOT: llvm.mlir.global internal constant @w(
// CHECK-NOT: llvm.mlir.global internal constant @v(
// CHECK: llvm.mlir.global internal constant @small(
// CHECK: llvm.mlir.global internal @scratch(
// CHECK-LABEL: llvm.func @f
// CHECK: %[[SLOT:.*]] = llvm.mlir.addressof @hasten_weights_base : !llvm.ptr
// CHECK: %[[BASE:.*]] = llvm.load %[[SLOT]] {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// CHECK: %[[OFF0:.*]] = llvm.mlir.constant(0 : i64) : i64
// CHECK: %[[W:.*]] = llvm.getelementptr inbounds %[[BASE]][%[[OFF0]]] : (!llvm.ptr, i64) -> !llvm.ptr, i8
// CHECK: llvm.mlir.addressof @small
// CHECK: %[[BASE2:.*]] = llvm.load
// CHECK: %[[OFF128:.*]] = llvm.mlir.constant(128 : i64) : i64
// CHECK: %[[V:.*]] = llvm.getelementptr inbounds %[[BASE2]][%[[OFF128]]] : (!llvm.ptr, i64) -> !llvm.ptr, i8
// CHECK: llvm.getelementptr %[[V]][0, 3]
// CHECK: llvm.load %[[W]] : !llvm.ptr -> f32
// With a threshold above every constant nothing moves and no base is added.
// LARGE-NOT: hasten.weight_segment
// LARGE-NOT: hasten_weights_base
// LARGE: llvm.mlir.global internal constant @w(
module {
  llvm.mlir.global internal constant @w(dense<1.0> : tensor<4x8xf32>) {addr_space = 0 : i32, alignment = 64 : i64} : !llvm.array<4 x array<8 x f32>>
  llvm.mlir.global internal constant @small(dense<[1, 2]> : tensor<2xi64>) {addr_space = 0 : i32} : !llvm.array<2 x i64>
  llvm.mlir.global internal constant @v(dense<[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0]> : tensor<16xf32>) {addr_space = 0 : i32, alignment = 16 : i64} : !llvm.array<16 x f32>
  llvm.mlir.global internal @scratch(dense<0.0> : tensor<64xf32>) {addr_space = 0 : i32} : !llvm.array<64 x f32>
  llvm.func @f() -> f32 {
    %0 = llvm.mlir.addressof @w : !llvm.ptr
    %1 = llvm.mlir.addressof @small : !llvm.ptr
    %2 = llvm.mlir.addressof @v : !llvm.ptr
    %3 = llvm.getelementptr %2[0, 3] : (!llvm.ptr) -> !llvm.ptr, !llvm.array<16 x f32>
    %4 = llvm.load %3 : !llvm.ptr -> f32
    %5 = llvm.load %0 : !llvm.ptr -> f32
    %6 = llvm.fadd %4, %5 : f32
    llvm.return %6 : f32
  }
}

// -----

// Offsets past 256 MiB (a 124M-parameter model's segment is 500 MB) are i64
// values: a GEP's constant indices hold only 29 bits.
// CHECK: hasten.weight_segment = {bytes = 268435520 : i64, weights = [{name = "big", offset = 0 : i64{{.*}}}, {name = "after", offset = 268435456 : i64
// CHECK-LABEL: llvm.func @far
// CHECK: %[[OFF:.*]] = llvm.mlir.constant(268435456 : i64) : i64
// CHECK: llvm.getelementptr inbounds %{{.*}}[%[[OFF]]] : (!llvm.ptr, i64) -> !llvm.ptr, i8
module {
  llvm.mlir.global internal constant @big(dense<1.0> : tensor<67108864xf32>) {addr_space = 0 : i32, alignment = 64 : i64} : !llvm.array<67108864 x f32>
  llvm.mlir.global internal constant @after(dense<2.0> : tensor<16xf32>) {addr_space = 0 : i32, alignment = 64 : i64} : !llvm.array<16 x f32>
  llvm.func @far() -> f32 {
    %0 = llvm.mlir.addressof @after : !llvm.ptr
    %1 = llvm.load %0 : !llvm.ptr -> f32
    llvm.return %1 : f32
  }
}

// -----

// Weights are moved once: a second run would lose the first segment.
// expected-error @below {{the module's weights are already externalized}}
module attributes {hasten.weight_segment = {bytes = 0 : i64, weights = []}} {
}

// -----

// Booleans are one byte each in memory but bits in the attribute: the
// segment holds them as i8 0/1 (a causal mask of 8x8 booleans, 64 bytes;
// min-bytes=1 as the CUDA target runs it, so that kernels read every
// constant from the device copy).
// RUN: hasten-opt %s -split-input-file -verify-diagnostics -hasten-externalize-weights="min-bytes=1" | FileCheck %s --check-prefix=BOOL
// BOOL: hasten.weight_segment = {bytes = 64 : i64, weights = [{name = "mask", offset = 0 : i64, value = dense<{{\[\[}}1, 0, 0, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0],{{.*}}> : tensor<8x8xi8>}]}
// BOOL-NOT: llvm.mlir.global internal constant @mask
module {
  llvm.mlir.global internal constant @mask(dense<[[true, false, false, false, false, false, false, false], [true, true, false, false, false, false, false, false], [true, true, true, false, false, false, false, false], [true, true, true, true, false, false, false, false], [true, true, true, true, true, false, false, false], [true, true, true, true, true, true, false, false], [true, true, true, true, true, true, true, false], [true, true, true, true, true, true, true, true]]> : tensor<8x8xi1>) {addr_space = 0 : i32} : !llvm.array<8 x array<8 x i1>>
  llvm.func @g() -> i1 {
    %0 = llvm.mlir.addressof @mask : !llvm.ptr
    %1 = llvm.load %0 : !llvm.ptr -> i1
    llvm.return %1 : i1
  }
}
