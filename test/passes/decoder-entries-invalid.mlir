// RUN: hasten-opt %s -split-input-file -hasten-decoder-entries=require -verify-diagnostics

// expected-error @+1 {{decoder entries were requested, but no function has the arguments 'input_ids' and 'past_key_values.0.key/value' and the results 'present.0.key' and 'logits'}}
module {
  func.func @add(%a: tensor<4xf32> {hasten.onnx_name = "a"}) -> (tensor<4xf32> {hasten.onnx_name = "y"}) {
    return %a : tensor<4xf32>
  }
}

// -----

// Positions are computed as [batch, seq]; 3-D (multimodal) positions are not.
// expected-error @+1 {{decoder entries compute 'position_ids' as [batch, length], but it is 'tensor<3x?x?xi64>'}}
func.func @main(%ids: tensor<?x?xi64> {hasten.onnx_name = "input_ids"},
                %pos: tensor<3x?x?xi64> {hasten.onnx_name = "position_ids"},
                %pk: tensor<?x2x?x4xf32> {hasten.onnx_name = "past_key_values.0.key"},
                %pv: tensor<?x2x?x4xf32> {hasten.onnx_name = "past_key_values.0.value"})
    -> (tensor<?x?x8xf32> {hasten.onnx_name = "logits"},
        tensor<?x2x?x4xf32> {hasten.onnx_name = "present.0.key"}) {
  %l = tensor.empty() : tensor<1x1x8xf32>
  %c = tensor.cast %l : tensor<1x1x8xf32> to tensor<?x?x8xf32>
  return %c, %pk : tensor<?x?x8xf32>, tensor<?x2x?x4xf32>
}

// -----

// A graph exported for a fixed batch of 2 cannot run one sequence.
// expected-error @+1 {{decoder entries run one sequence, but 'past_key_values.0.key' has batch 2}}
func.func @main(%ids: tensor<?x?xi64> {hasten.onnx_name = "input_ids"},
                %pk: tensor<2x2x?x4xf32> {hasten.onnx_name = "past_key_values.0.key"},
                %pv: tensor<2x2x?x4xf32> {hasten.onnx_name = "past_key_values.0.value"})
    -> (tensor<?x?x8xf32> {hasten.onnx_name = "logits"},
        tensor<2x2x?x4xf32> {hasten.onnx_name = "present.0.key"}) {
  %l = tensor.empty() : tensor<1x1x8xf32>
  %c = tensor.cast %l : tensor<1x1x8xf32> to tensor<?x?x8xf32>
  return %c, %pk : tensor<?x?x8xf32>, tensor<2x2x?x4xf32>
}

// -----

// A decode entry takes one token; a graph fixed to 4 tokens cannot decode.
// expected-error @+1 {{a decode entry takes one token, but 'input_ids' is 'tensor<?x4xi64>'}}
func.func @main(%ids: tensor<?x4xi64> {hasten.onnx_name = "input_ids"},
                %pk: tensor<?x2x?x4xf32> {hasten.onnx_name = "past_key_values.0.key"},
                %pv: tensor<?x2x?x4xf32> {hasten.onnx_name = "past_key_values.0.value"})
    -> (tensor<?x?x8xf32> {hasten.onnx_name = "logits"},
        tensor<?x2x?x4xf32> {hasten.onnx_name = "present.0.key"}) {
  %l = tensor.empty() : tensor<1x1x8xf32>
  %c = tensor.cast %l : tensor<1x1x8xf32> to tensor<?x?x8xf32>
  return %c, %pk : tensor<?x?x8xf32>, tensor<?x2x?x4xf32>
}

// -----

// The entry names are taken.
// expected-error @+1 {{cannot add the 'prefill' entry: the module already has a symbol of that name}}
func.func @main(%ids: tensor<?x?xi64> {hasten.onnx_name = "input_ids"},
                %pk: tensor<?x2x?x4xf32> {hasten.onnx_name = "past_key_values.0.key"},
                %pv: tensor<?x2x?x4xf32> {hasten.onnx_name = "past_key_values.0.value"})
    -> (tensor<?x?x8xf32> {hasten.onnx_name = "logits"},
        tensor<?x2x?x4xf32> {hasten.onnx_name = "present.0.key"}) {
  %l = tensor.empty() : tensor<1x1x8xf32>
  %c = tensor.cast %l : tensor<1x1x8xf32> to tensor<?x?x8xf32>
  return %c, %pk : tensor<?x?x8xf32>, tensor<?x2x?x4xf32>
}
func.func private @prefill()
