// RUN: hasten-opt %s -split-input-file -verify-diagnostics -hasten-finalize-gpu-kernels | FileCheck %s

// The barrier calls become gpu.barrier and the declaration goes; the
// workgroup allocas become the launch's workgroup attributions (shared
// memory), private allocas stay.
// CHECK-NOT: func.func private @hasten_gpu_barrier
// CHECK-LABEL: func.func @kernel
// CHECK: gpu.launch {{.*}} workgroup(%[[TILE:.*]] : memref<64x32xf32, #gpu.address_space<workgroup>>)
// CHECK-NOT: memref.alloca() : memref<64x32xf32
// CHECK: %[[ROW:.*]] = memref.alloca() : memref<32xf32>
// CHECK: memref.store %{{.*}}, %[[TILE]]
// CHECK-NEXT: gpu.barrier
// CHECK-NEXT: memref.load %[[TILE]]
// CHECK-NOT: func.call
func.func private @hasten_gpu_barrier()
func.func @kernel(%x: memref<64xf32>) {
  %c1 = arith.constant 1 : index
  %c0 = arith.constant 0 : index
  %f = arith.constant 1.0 : f32
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c1, %sy = %c1, %sz = %c1) {
    %tile = memref.alloca() : memref<64x32xf32, #gpu.address_space<workgroup>>
    %row = memref.alloca() : memref<32xf32>
    memref.store %f, %tile[%tx, %c0] : memref<64x32xf32, #gpu.address_space<workgroup>>
    func.call @hasten_gpu_barrier() : () -> ()
    %v = memref.load %tile[%c0, %c0] : memref<64x32xf32, #gpu.address_space<workgroup>>
    memref.store %v, %row[%c0] : memref<32xf32>
    gpu.terminator
  }
  return
}

// -----

func.func private @hasten_gpu_barrier()
func.func @host() {
  // expected-error @+1 {{a block-wide barrier outside a gpu.launch: there is no block to synchronize}}
  func.call @hasten_gpu_barrier() : () -> ()
  return
}

// -----

func.func @dynamic(%n: index) {
  %c1 = arith.constant 1 : index
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c1, %sy = %c1, %sz = %c1) {
    // expected-error @+1 {{shared memory of a dynamic size: a kernel's workgroup memory must have a static shape}}
    %tile = memref.alloca(%n) : memref<?xf32, #gpu.address_space<workgroup>>
    gpu.terminator
  }
  return
}
