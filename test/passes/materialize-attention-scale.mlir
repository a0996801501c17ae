// RUN: hasten-opt %s -split-input-file -hasten-materialize-attention-scale | FileCheck %s
// RUN: hasten-opt %s -split-input-file -hasten-materialize-attention-scale="report-dynamic" -verify-diagnostics | FileCheck %s

// A static head_dim of 64 gets 1/sqrt(64) = 0.125 written into the op.
// CHECK-LABEL: func @static_head_dim
// CHECK: hasten.attention %arg0, %arg1, %arg2 heads(12, 12) scale(1.250000e-01)
func.func @static_head_dim(%q: tensor<1x12x?x64xf32>, %k: tensor<1x12x?x64xf32>, %v: tensor<1x12x?x64xf32>) -> tensor<1x12x?x64xf32> {
  %o = hasten.attention %q, %k, %v heads(12, 12) : tensor<1x12x?x64xf32>, tensor<1x12x?x64xf32>, tensor<1x12x?x64xf32> -> tensor<1x12x?x64xf32>
  return %o : tensor<1x12x?x64xf32>
}

// -----

// An explicit scale is left alone, and the scale follows the query/key head
// size, not the value head size.
// CHECK-LABEL: func @explicit_and_value_dim
// CHECK: hasten.attention %arg0, %arg1, %arg2 heads(4, 2) causal scale(3.000000e+00)
// CHECK: hasten.attention %arg0, %arg1, %arg2 heads(4, 2) causal scale(2.500000e-01)
func.func @explicit_and_value_dim(%q: tensor<1x4x3x16xf32>, %k: tensor<1x2x3x16xf32>, %v: tensor<1x2x3x8xf32>) -> (tensor<1x4x3x8xf32>, tensor<1x4x3x8xf32>) {
  %a = hasten.attention %q, %k, %v heads(4, 2) causal scale(3.0) : tensor<1x4x3x16xf32>, tensor<1x2x3x16xf32>, tensor<1x2x3x8xf32> -> tensor<1x4x3x8xf32>
  %b = hasten.attention %q, %k, %v heads(4, 2) causal : tensor<1x4x3x16xf32>, tensor<1x2x3x16xf32>, tensor<1x2x3x8xf32> -> tensor<1x4x3x8xf32>
  return %a, %b : tensor<1x4x3x8xf32>, tensor<1x4x3x8xf32>
}

// -----

// A dynamic head_dim cannot be resolved at compile time: the op keeps its
// implicit scale (and, with report-dynamic, says why).
// CHECK-LABEL: func @dynamic_head_dim
// CHECK: hasten.attention %arg0, %arg1, %arg2 heads(2, 2) :
// CHECK-NOT: scale
func.func @dynamic_head_dim(%q: tensor<1x2x3x?xf32>, %k: tensor<1x2x3x?xf32>, %v: tensor<1x2x3x?xf32>) -> tensor<1x2x3x?xf32> {
  // expected-remark @+1 {{scale stays implicit: head_dim is dynamic}}
  %o = hasten.attention %q, %k, %v heads(2, 2) : tensor<1x2x3x?xf32>, tensor<1x2x3x?xf32>, tensor<1x2x3x?xf32> -> tensor<1x2x3x?xf32>
  return %o : tensor<1x2x3x?xf32>
}
