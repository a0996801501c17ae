// RUN: hasten-opt %s -split-input-file -gpu-to-llvm | FileCheck %s

// gpu-to-llvm lowers hasten.gpu_gemm (through the hasten dialect's
// ConvertToLLVMPatternInterface) to one call of the runtime's
// hasten_cuda_gemm on the stream its async dependency became: the flags
// (f32 operands 0, bf16 1, f16 2, the product's type two bits up;
// accumulate 16, tf32 32, bias 64, ReLU 128, tanh-GELU 256), batch, M, N, K, then each matrix's first
// element and its batch, row and column strides, the bias before the
// product's. The token after it is that stream.
// CHECK-LABEL: llvm.func @bias
// CHECK: %[[STREAM:.*]] = llvm.call @mgpuStreamCreate()
// CHECK-DAG: %[[FLAGS:.*]] = llvm.mlir.constant(321 : i32) : i32
// CHECK-DAG: %[[ONE:.*]] = llvm.mlir.constant(1 : i64) : i64
// CHECK-DAG: %[[M:.*]] = llvm.extractvalue %{{.*}}[3, 0] : !llvm.struct<(ptr, ptr, i64, array<2 x i64>, array<2 x i64>)>
// CHECK: llvm.call @hasten_cuda_gemm(%[[STREAM]], %[[FLAGS]], %[[ONE]], %[[M]],
// CHECK-SAME: -> ()
// CHECK-NEXT: llvm.call @mgpuStreamSynchronize(%[[STREAM]])
// CHECK: llvm.func @hasten_cuda_gemm(!llvm.ptr, i32, i64, i64, i64, i64, !llvm.ptr, i64, i64, i64, !llvm.ptr, i64, i64, i64, !llvm.ptr, !llvm.ptr, i64, i64, i64)
func.func @bias(%a: memref<?x4xbf16>, %w: memref<4x6xbf16>, %b: memref<6xf32>, %c: memref<?x6xf32>) {
  %t0 = gpu.wait async
  %t1 = hasten.gpu_gemm async [%t0] %a, %w bias(%b : memref<6xf32>) into %c activation "gelu_tanh" : memref<?x4xbf16>, memref<4x6xbf16> into memref<?x6xf32>
  gpu.wait [%t1]
  return
}

// -----

// A batch: its size from the product; an operand with a batch of one
// broadcasts (stride 0, chosen at run time from its size), the others pass
// their batch strides; accumulate, tf32 and ReLU in the flags, no bias (null).
// CHECK-LABEL: llvm.func @batched
// CHECK: %[[FLAGS:.*]] = llvm.mlir.constant(176 : i32) : i32
// CHECK: %[[BATCH:.*]] = llvm.extractvalue %[[C:.*]][3, 0]
// CHECK: llvm.select
// CHECK: %[[WPTR:.*]] = llvm.extractvalue %[[W:.*]][1]
// CHECK: %[[ONE:.*]] = llvm.mlir.constant(1 : i64)
// CHECK: %[[WB:.*]] = llvm.extractvalue %[[W]][3, 0]
// CHECK: %[[SINGLE:.*]] = llvm.icmp "eq" %[[WB]], %[[ONE]]
// CHECK: %[[ZERO:.*]] = llvm.mlir.constant(0 : i64)
// CHECK: %[[WS:.*]] = llvm.extractvalue %[[W]][4, 0]
// CHECK: %[[WSTRIDE:.*]] = llvm.select %[[SINGLE]], %[[ZERO]], %[[WS]]
// CHECK: %[[NULL:.*]] = llvm.mlir.zero : !llvm.ptr
// CHECK: llvm.call @hasten_cuda_gemm(%{{.*}}, %[[FLAGS]], %[[BATCH]], %{{[^,]*}}, %{{[^,]*}}, %{{[^,]*}}, %{{[^,]*}}, %{{[^,]*}}, %{{[^,]*}}, %{{[^,]*}}, %[[WPTR]], %[[WSTRIDE]], %{{[^,]*}}, %{{[^,]*}}, %[[NULL]],
func.func @batched(%a: memref<3x?x4xf32>, %w: memref<1x4x6xf32>, %c: memref<3x?x6xf32>) {
  %t0 = gpu.wait async
  %t1 = hasten.gpu_gemm async [%t0] %a, %w into %c accumulate tf32 activation "relu" : memref<3x?x4xf32>, memref<1x4x6xf32> into memref<3x?x6xf32>
  gpu.wait [%t1]
  return
}

// -----

// Without a token (gpu-async-region did not run) the product is
// synchronous, as a gpu op without one is: a stream of its own, waited for.
// CHECK-LABEL: llvm.func @sync
// CHECK: %[[STREAM:.*]] = llvm.call @mgpuStreamCreate()
// CHECK: llvm.call @hasten_cuda_gemm(%[[STREAM]],
// CHECK-NEXT: llvm.call @mgpuStreamSynchronize(%[[STREAM]])
// CHECK-NEXT: llvm.call @mgpuStreamDestroy(%[[STREAM]])
func.func @sync(%a: memref<2x4xf32>, %w: memref<4x6xf32>, %c: memref<2x6xf32>) {
  hasten.gpu_gemm %a, %w into %c : memref<2x4xf32>, memref<4x6xf32> into memref<2x6xf32>
  return
}
