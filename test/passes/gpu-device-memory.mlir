// RUN: hasten-opt %s -split-input-file -verify-diagnostics -hasten-gpu-device-memory | FileCheck %s

// Host allocations and frees become device ones (static and dynamic
// sizes); views, constants and the kernel itself are left alone.
// CHECK-LABEL: func @scale
// CHECK: %[[W:.*]] = memref.get_global @weights
// CHECK: %[[T:.*]] = gpu.alloc () : memref<4xf32>
// CHECK: %[[D:.*]] = gpu.alloc (%{{.*}}) : memref<?xf32>
// CHECK: memref.subview %[[D]]
// CHECK: gpu.launch
// CHECK: memref.load %[[W]]
// CHECK: gpu.dealloc %[[T]] : memref<4xf32>
// CHECK-NOT: memref.alloc
// CHECK-NOT: memref.dealloc
// CHECK: return %[[D]]
memref.global "private" constant @weights : memref<4xf32> = dense<[1.0, 2.0, 3.0, 4.0]>
func.func @scale(%x: memref<4xf32>, %n: index) -> memref<?xf32> {
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %w = memref.get_global @weights : memref<4xf32>
  %t = memref.alloc() : memref<4xf32>
  %d = memref.alloc(%n) : memref<?xf32>
  %v = memref.subview %d[0] [4] [1] : memref<?xf32> to memref<4xf32, strided<[1]>>
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c4, %sy = %c1, %sz = %c1) {
    %a = memref.load %x[%tx] : memref<4xf32>
    %b = memref.load %w[%tx] : memref<4xf32>
    %p = arith.mulf %a, %b : f32
    memref.store %p, %t[%tx] : memref<4xf32>
    memref.store %p, %v[%tx] : memref<4xf32, strided<[1]>>
    gpu.terminator
  }
  memref.dealloc %t : memref<4xf32>
  return %d : memref<?xf32>
}

// -----

// A host read of a device buffer (a length read on the CPU) is refused by
// name.
func.func @host_read(%lengths: memref<?xi64>, %x: memref<?xf32>) -> index {
  %c0 = arith.constant 0 : index
  // expected-error @+1 {{runs on the host and reads or writes a buffer, which the CUDA target keeps in device memory}}
  %p = memref.load %lengths[%c0] : memref<?xi64>
  %i = arith.index_cast %p : i64 to index
  return %i : index
}

// -----

// So is a call into the runtime's CPU kernels with a buffer.
func.func private @hasten_rt_cpu_kernel(memref<?xf32>)
func.func @cpu_kernel(%x: memref<?xf32>) {
  // expected-error @+1 {{runs on the host and reads or writes a buffer}}
  call @hasten_rt_cpu_kernel(%x) : (memref<?xf32>) -> ()
  return
}

// -----

// A call of another host function of the module is checked there, not here.
// CHECK-LABEL: func @caller
// CHECK: call @callee
func.func private @callee(%x: memref<4xf32>) {
  return
}
func.func @caller(%x: memref<4xf32>) {
  call @callee(%x) : (memref<4xf32>) -> ()
  return
}

// -----

// A stack buffer on the host that a kernel reads has no device address.
func.func @stack(%y: memref<4xf32>) {
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  // expected-error @+1 {{a host stack buffer used by a kernel}}
  %s = memref.alloca() : memref<4xf32>
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c4, %sy = %c1, %sz = %c1) {
    %a = memref.load %s[%tx] : memref<4xf32>
    memref.store %a, %y[%tx] : memref<4xf32>
    gpu.terminator
  }
  return
}

// -----

// A buffer no kernel sees (like the deallocation helper's pointer tables)
// is the host's own: it stays in host memory and the host reads it.
// CHECK-LABEL: func @bookkeeping
// CHECK: %[[TABLE:.*]] = memref.alloc(%{{.*}}) : memref<?xindex>
// CHECK: memref.store %{{.*}}, %[[TABLE]]
// CHECK: memref.load %[[TABLE]]
// CHECK: memref.dealloc %[[TABLE]]
func.func @bookkeeping(%n: index) -> index {
  %c0 = arith.constant 0 : index
  %table = memref.alloc(%n) : memref<?xindex>
  memref.store %n, %table[%c0] : memref<?xindex>
  %v = memref.load %table[%c0] : memref<?xindex>
  memref.dealloc %table : memref<?xindex>
  return %v : index
}

// -----

// An entry's scalar is host memory in the CUDA ABI: a kernel may not use it
// as a buffer.
// expected-error @+1 {{entry input #0 ('memref<i64>') is a scalar, which a CUDA entry reads from host memory, but device code uses it as a buffer}}
func.func @scalar_in_kernel(%past: memref<i64>, %y: memref<4xi64>) {
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c4, %sy = %c1, %sz = %c1) {
    %p = memref.load %past[] : memref<i64>
    memref.store %p, %y[%tx] : memref<4xi64>
    gpu.terminator
  }
  return
}

// -----

// Read on the host, it is fine (the runtime passes it there).
// CHECK-LABEL: func @scalar_on_host
// CHECK: memref.load %{{.*}}[] : memref<i64>
func.func @scalar_on_host(%past: memref<i64>) -> i64 {
  %p = memref.load %past[] : memref<i64>
  return %p : i64
}

// -----

// A buffer a kernel reaches only through a view is device memory too.
// CHECK-LABEL: func @through_a_view
// CHECK: %[[B:.*]] = gpu.alloc () : memref<8xf32>
// CHECK: %[[V:.*]] = memref.subview %[[B]]
// CHECK: gpu.launch
// CHECK: gpu.dealloc %[[B]]
func.func @through_a_view(%x: memref<4xf32>) {
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %b = memref.alloc() : memref<8xf32>
  %v = memref.subview %b[4] [4] [1] : memref<8xf32> to memref<4xf32, strided<[1], offset: 4>>
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c4, %sy = %c1, %sz = %c1) {
    %a = memref.load %x[%tx] : memref<4xf32>
    memref.store %a, %v[%tx] : memref<4xf32, strided<[1], offset: 4>>
    gpu.terminator
  }
  memref.dealloc %b : memref<8xf32>
  return
}

// -----

// A scalar a kernel computed, read on the host (dynamic quantization's
// scale): the host reads a copy, made after the kernel (gpu-async-region
// waits for it before the load). A device buffer of dynamic size read on the
// host stays refused (see @host_read).
// CHECK-LABEL: func @read_back
// CHECK: %[[DEV:.*]] = gpu.alloc () : memref<f32>
// CHECK: gpu.launch
// CHECK: memref.store %{{.*}}, %[[DEV]][]
// CHECK: %[[COPY:.*]] = memref.alloca() : memref<f32>
// CHECK-NEXT: gpu.memcpy %[[COPY]], %[[DEV]] : memref<f32>, memref<f32>
// CHECK-NEXT: memref.load %[[COPY]][] : memref<f32>
// CHECK-NOT: memref.load %[[DEV]]
func.func @read_back() -> f32 {
  %c1 = arith.constant 1 : index
  %scale = memref.alloc() : memref<f32>
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c1, %sy = %c1, %sz = %c1) {
    %f = arith.constant 0.5 : f32
    memref.store %f, %scale[] : memref<f32>
    gpu.terminator
  }
  %v = memref.load %scale[] : memref<f32>
  memref.dealloc %scale : memref<f32>
  return %v : f32
}
