// RUN: hasten-opt %s -split-input-file -verify-diagnostics -hasten-gather-gpu-kernels | FileCheck %s

// Three outlined kernels, each alone in a module and named after its host
// function: one module remains, each kernel named after the module it came
// from, and every launch points at it.
// CHECK-LABEL: module attributes {gpu.container_module}
// CHECK: func.func @main
// CHECK: gpu.launch_func @main_kernel::@main_kernel blocks
// CHECK: gpu.launch_func @main_kernel::@main_kernel_0 blocks
// CHECK: gpu.launch_func @main_kernel::@main_kernel_1 blocks
// CHECK: gpu.module @main_kernel {
// CHECK-DAG: gpu.func @main_kernel(%{{.*}}: memref<4xf32>) kernel
// CHECK-DAG: gpu.func @main_kernel_0(%{{.*}}: memref<4xf32>) kernel
// CHECK-DAG: gpu.func @main_kernel_1(%{{.*}}: memref<4xf32>) kernel
// CHECK-NOT: gpu.module
module attributes {gpu.container_module} {
  func.func @main(%x: memref<4xf32>) {
    %c1 = arith.constant 1 : index
    %c4 = arith.constant 4 : index
    gpu.launch_func @main_kernel::@main_kernel blocks in (%c1, %c1, %c1) threads in (%c4, %c1, %c1) args(%x : memref<4xf32>)
    gpu.launch_func @main_kernel_0::@main_kernel blocks in (%c1, %c1, %c1) threads in (%c4, %c1, %c1) args(%x : memref<4xf32>)
    gpu.launch_func @main_kernel_1::@main_kernel blocks in (%c1, %c1, %c1) threads in (%c4, %c1, %c1) args(%x : memref<4xf32>)
    return
  }
  gpu.module @main_kernel {
    gpu.func @main_kernel(%a: memref<4xf32>) kernel {
      gpu.return
    }
  }
  gpu.module @main_kernel_0 {
    gpu.func @main_kernel(%a: memref<4xf32>) kernel {
      %t = gpu.thread_id x
      %v = memref.load %a[%t] : memref<4xf32>
      %n = arith.negf %v : f32
      memref.store %n, %a[%t] : memref<4xf32>
      gpu.return
    }
  }
  gpu.module @main_kernel_1 {
    gpu.func @main_kernel(%a: memref<4xf32>) kernel {
      gpu.return
    }
  }
}

// -----

// Modules for different targets are not merged.
module attributes {gpu.container_module} {
  gpu.module @a [#nvvm.target<chip = "sm_80">] {
    gpu.func @a() kernel {
      gpu.return
    }
  }
  // expected-error @+1 {{kernels with another target than 'a' cannot be gathered}}
  gpu.module @b [#nvvm.target<chip = "sm_90">] {
    gpu.func @b() kernel {
      gpu.return
    }
  }
}
