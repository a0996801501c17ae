// RUN: hasten-opt %s -split-input-file -verify-diagnostics -hasten-align-shared-memory | FileCheck %s
// RUN: hasten-opt %s -split-input-file -hasten-align-shared-memory=alignment=64 | FileCheck %s --check-prefix=WIDE
// RUN: not hasten-opt %s -split-input-file -hasten-align-shared-memory=alignment=12 2>&1 | FileCheck %s --check-prefix=BAD

// Every workgroup attribution gets 16 bytes; one that asks for more keeps
// it; private attributions and kernels without shared memory are left alone.
// CHECK-LABEL: gpu.func @tiles
// CHECK-SAME: workgroup(%{{.*}} : memref<4096xbf16, #gpu.address_space<workgroup>> {llvm.align = 16 : i64}, %{{.*}} : memref<64xf32, #gpu.address_space<workgroup>> {llvm.align = 32 : i64})
// CHECK-SAME: private(%{{.*}} : memref<4xf32, #gpu.address_space<private>>)
// CHECK-SAME: kernel
// CHECK-LABEL: gpu.func @plain
// CHECK-SAME: () kernel
// WIDE-LABEL: gpu.func @tiles
// WIDE-SAME: {llvm.align = 64 : i64}, %{{.*}} : memref<64xf32, #gpu.address_space<workgroup>> {llvm.align = 64 : i64})
// BAD: hasten-align-shared-memory: alignment 12 is not a power of two
gpu.module @kernels {
  gpu.func @tiles() workgroup(%a : memref<4096xbf16, #gpu.address_space<workgroup>>, %b : memref<64xf32, #gpu.address_space<workgroup>> {llvm.align = 32 : i64}) private(%c : memref<4xf32, #gpu.address_space<private>>) kernel {
    gpu.return
  }
  gpu.func @plain() kernel {
    gpu.return
  }
}
