// RUN: hasten-opt %s -split-input-file -hasten-plan-kv-cache -verify-diagnostics
// RUN: not hasten-opt %s -hasten-plan-kv-cache="capacity=100 block-size=16" 2>&1 | FileCheck %s --check-prefix=BLOCKS

// BLOCKS: error: capacity (100) must be a multiple of block-size (16)
// RUN: not hasten-opt %s -hasten-plan-kv-cache="capacity=64 draft-capacity=40 block-size=16" 2>&1 | FileCheck %s --check-prefix=DRAFT-BLOCKS
// DRAFT-BLOCKS: error: capacity (40) must be a multiple of block-size (16)

// expected-error @+1 {{cannot plan the KV cache: 'past_key_values.0.key' must be used only by one Concat that appends the new tokens after it on axis 2, but it is used by linalg.transpose}}
func.func @read_directly(%pk: tensor<1x2x3x4xf32> {hasten.onnx_name = "past_key_values.0.key"},
                         %pv: tensor<1x2x3x4xf32> {hasten.onnx_name = "past_key_values.0.value"},
                         %init: tensor<1x2x4x3xf32>) -> tensor<1x2x4x3xf32>
    attributes {hasten.entry_kind = "decode"} {
  %t = linalg.transpose ins(%pk : tensor<1x2x3x4xf32>) outs(%init : tensor<1x2x4x3xf32>) permutation = [0, 1, 3, 2]
  return %t : tensor<1x2x4x3xf32>
}

// -----

// expected-error @+1 {{cannot plan the KV cache: 'past_key_values.0.key' is never concatenated with new tokens}}
func.func @unused(%pk: tensor<1x2x?x4xf32> {hasten.onnx_name = "past_key_values.0.key"})
    attributes {hasten.entry_kind = "decode"} {
  return
}

// -----

// expected-error @+1 {{layer 0 has no past value}}
func.func @no_value(%pk: tensor<1x2x?x4xf32> {hasten.onnx_name = "past_key_values.0.key"},
                    %k: tensor<1x2x1x4xf32>) -> tensor<1x2x?x4xf32>
    attributes {hasten.entry_kind = "decode"} {
  %keys = tensor.concat dim(2) %pk, %k : (tensor<1x2x?x4xf32>, tensor<1x2x1x4xf32>) -> tensor<1x2x?x4xf32>
  return %keys : tensor<1x2x?x4xf32>
}

// -----

// expected-error @+1 {{past_key_values must be [batch, kv_heads, past, head_dim] with static kv_heads and head_dim, got 'tensor<1x2x?x?xf32>'}}
func.func @dynamic_head_dim(%pk: tensor<1x2x?x?xf32> {hasten.onnx_name = "past_key_values.0.key"},
                            %pv: tensor<1x2x?x?xf32> {hasten.onnx_name = "past_key_values.0.value"},
                            %k: tensor<1x2x1x?xf32>) -> (tensor<1x2x?x?xf32>, tensor<1x2x?x?xf32>)
    attributes {hasten.entry_kind = "decode"} {
  %keys = tensor.concat dim(2) %pk, %k : (tensor<1x2x?x?xf32>, tensor<1x2x1x?xf32>) -> tensor<1x2x?x?xf32>
  %values = tensor.concat dim(2) %pv, %k : (tensor<1x2x?x?xf32>, tensor<1x2x1x?xf32>) -> tensor<1x2x?x?xf32>
  return %keys, %values : tensor<1x2x?x?xf32>, tensor<1x2x?x?xf32>
}
