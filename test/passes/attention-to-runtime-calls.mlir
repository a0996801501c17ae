// RUN: hasten-opt %s -split-input-file -hasten-attention-to-runtime-calls | FileCheck %s

// Operands become read-only buffers, the result a fresh buffer: no score
// matrix, no softmax.
// CHECK-LABEL: func.func private @hasten_rt_attention_f32(memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>, memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>, memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>, memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>, memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>, f32, i32) attributes {llvm.emit_c_interface}
// CHECK-LABEL: func.func @masked_gqa(
// CHECK-SAME: %[[Q:.*]]: tensor<1x8x?x16xf32>, %[[K:.*]]: tensor<1x2x?x16xf32>, %[[V:.*]]: tensor<1x2x?x16xf32>, %[[M:.*]]: tensor<1x1x?x?xf32>
// CHECK: %[[QB:.*]] = bufferization.to_buffer %[[Q]] read_only
// CHECK: %[[QA:.*]] = memref.cast %[[QB]]
// CHECK: %[[MB:.*]] = bufferization.to_buffer %[[M]] read_only
// CHECK: %[[MA:.*]] = memref.cast %[[MB]]
// CHECK: %[[S:.*]] = tensor.dim %[[Q]], %{{.*}}
// CHECK: %[[OUT:.*]] = memref.alloc(%[[S]]) : memref<1x8x?x16xf32>
// CHECK: %[[SCALE:.*]] = arith.constant 2.500000e-01 : f32
// CHECK: %[[FLAGS:.*]] = arith.constant 2 : i32
// CHECK: %[[KB:.*]] = bufferization.to_buffer %[[K]] read_only
// CHECK: %[[KA:.*]] = memref.cast %[[KB]]
// CHECK: %[[VB:.*]] = bufferization.to_buffer %[[V]] read_only
// CHECK: %[[VA:.*]] = memref.cast %[[VB]]
// CHECK: %[[OA:.*]] = memref.cast %[[OUT]]
// CHECK: call @hasten_rt_attention_f32(%[[QA]], %[[KA]], %[[VA]], %[[MA]], %[[OA]], %[[SCALE]], %[[FLAGS]])
// CHECK: %[[R:.*]] = bufferization.to_tensor %[[OUT]] restrict writable
// CHECK: return %[[R]]
// CHECK-NOT: hasten.attention
func.func @masked_gqa(%q: tensor<1x8x?x16xf32>, %k: tensor<1x2x?x16xf32>, %v: tensor<1x2x?x16xf32>,
                      %m: tensor<1x1x?x?xf32>) -> tensor<1x8x?x16xf32> {
  %o = hasten.attention %q, %k, %v mask(%m : tensor<1x1x?x?xf32>) heads(8, 2)
      : tensor<1x8x?x16xf32>, tensor<1x2x?x16xf32>, tensor<1x2x?x16xf32> -> tensor<1x8x?x16xf32>
  return %o : tensor<1x8x?x16xf32>
}

// -----

// Causal without a mask: flag 1, and the query stands in for the mask.
// CHECK-LABEL: func.func @causal(
// CHECK-SAME: %[[Q:[^:]*]]: tensor<1x4x8x16xf32>, %[[K:[^:]*]]: tensor<1x4x8x16xf32>, %[[V:[^:]*]]: tensor<1x4x8x16xf32>)
// CHECK: %[[QB:.*]] = bufferization.to_buffer %[[Q]] read_only
// CHECK: %[[QA:.*]] = memref.cast %[[QB]]
// CHECK: %[[FLAGS:.*]] = arith.constant 1 : i32
// CHECK: %[[KB:.*]] = bufferization.to_buffer %[[K]] read_only
// CHECK: %[[KA:.*]] = memref.cast %[[KB]]
// CHECK: %[[VB:.*]] = bufferization.to_buffer %[[V]] read_only
// CHECK: %[[VA:.*]] = memref.cast %[[VB]]
// CHECK: call @hasten_rt_attention_f32(%[[QA]], %[[KA]], %[[VA]], %[[QA]], %{{.*}}, %{{.*}}, %[[FLAGS]])
func.func @causal(%q: tensor<1x4x8x16xf32>, %k: tensor<1x4x8x16xf32>, %v: tensor<1x4x8x16xf32>) -> tensor<1x4x8x16xf32> {
  %o = hasten.attention %q, %k, %v heads(4, 4) causal
      : tensor<1x4x8x16xf32>, tensor<1x4x8x16xf32>, tensor<1x4x8x16xf32> -> tensor<1x4x8x16xf32>
  return %o : tensor<1x4x8x16xf32>
}

// -----

// What the kernel does not take stays: a boolean mask, f16, and a dynamic
// head_dim without an explicit scale.
// CHECK-LABEL: func.func @unsupported(
// CHECK-COUNT-3: hasten.attention
// CHECK-NOT: call
func.func @unsupported(%q: tensor<1x4x8x16xf32>, %b: tensor<1x1x8x8xi1>,
                       %h: tensor<1x4x8x16xf16>, %d: tensor<1x4x8x?xf32>)
    -> (tensor<1x4x8x16xf32>, tensor<1x4x8x16xf16>, tensor<1x4x8x?xf32>) {
  %0 = hasten.attention %q, %q, %q mask(%b : tensor<1x1x8x8xi1>) heads(4, 4)
      : tensor<1x4x8x16xf32>, tensor<1x4x8x16xf32>, tensor<1x4x8x16xf32> -> tensor<1x4x8x16xf32>
  %1 = hasten.attention %h, %h, %h heads(4, 4)
      : tensor<1x4x8x16xf16>, tensor<1x4x8x16xf16>, tensor<1x4x8x16xf16> -> tensor<1x4x8x16xf16>
  %2 = hasten.attention %d, %d, %d heads(4, 4)
      : tensor<1x4x8x?xf32>, tensor<1x4x8x?xf32>, tensor<1x4x8x?xf32> -> tensor<1x4x8x?xf32>
  return %0, %1, %2 : tensor<1x4x8x16xf32>, tensor<1x4x8x16xf16>, tensor<1x4x8x?xf32>
}
