// RUN: hasten-opt %s -split-input-file -verify-diagnostics

// The contract attributes, well formed, verify.
module attributes {hasten.onnx.opset = 17 : i64, hasten.onnx.producer = "pytorch"} {
  func.func @decode(%ids: tensor<1x1xi64> {hasten.role = "token_ids", hasten.onnx_name = "input_ids",
                                           hasten.onnx_elem_type = 7 : i32,
                                           hasten.onnx_dim_params = ["batch", "seq"]},
                    %past: tensor<i64> {hasten.role = "past_length"})
      -> (tensor<1x1x8xf32> {hasten.role = "logits"})
      attributes {hasten.entry_kind = "decode", hasten.model = "draft",
                  hasten.arena_bytes = 64 : i64, hasten.arena_buffers = 2 : i64} {
    %0 = tensor.empty() : tensor<1x1x8xf32>
    return %0 : tensor<1x1x8xf32>
  }
}

// -----

// expected-error @+1 {{'hasten.entry_kind' must be one of "main", "prefill", "decode", "verify", "spec_step", "generate", "sampler_stream", got "decoder"}}
func.func @f() attributes {hasten.entry_kind = "decoder"} {
  return
}

// -----

// expected-error @+1 {{argument 0: 'hasten.role' must be one of "token_ids", "past_length", "kv_cache", "kv_block_pool", "kv_block_table", "logits", "draft_kv_cache", "draft_past_length", "accepted_tokens", "sampler_noise", "sampler_state", "sequence_data", "sequence_shapes", "optional_present", "string_bytes", "string_lengths", "temperature", "uniforms", "draft_kv_block_table", got "kv"}}
func.func @f(%x: tensor<i64> {hasten.role = "kv"}) {
  return
}

// -----

// expected-error @+1 {{result 0: 'hasten.role' must be one of}}
func.func @f() -> (tensor<i64> {hasten.role = 3 : i64}) {
  %0 = arith.constant dense<0> : tensor<i64>
  return %0 : tensor<i64>
}

// -----

// expected-error @+1 {{argument 0: unknown hasten attribute 'hasten.name' on a function argument or result (expected 'hasten.role', 'hasten.onnx_name', 'hasten.onnx_elem_type' or 'hasten.onnx_dim_params')}}
func.func @f(%x: tensor<i64> {hasten.name = "past_length"}) {
  return
}

// -----

// expected-error @+1 {{unknown hasten attribute 'hasten.decoder_entry'}}
func.func @f() attributes {hasten.decoder_entry = "decode"} {
  return
}

// -----

// expected-error @+1 {{'hasten.arena_bytes' must be a non-negative integer}}
func.func @f() attributes {hasten.arena_bytes = -4 : i64} {
  return
}

// -----

// expected-error @+1 {{'hasten.entry_kind' belongs on a function}}
module attributes {hasten.entry_kind = "main"} {
}

// -----

// expected-error @+1 {{'hasten.onnx.opset' must be an integer}}
module attributes {hasten.onnx.opset = "17"} {
}

// -----

// expected-error @+1 {{argument 0: 'hasten.onnx_dim_params' must be an array of strings}}
func.func @f(%x: tensor<2xf32> {hasten.onnx_dim_params = [1]}) {
  return
}

// -----

// The stage and KV plans hasten-compile --compile-to records, well formed.
module attributes {hasten.stage = "tensor",
                   hasten.kv_plans = {main = {layers = 2 : i64, capacity = 64 : i64,
                                              element_type = f32}}} {
}

// -----

// expected-error @+1 {{'hasten.stage' must be "import", "tensor" or "buffer"}}
module attributes {hasten.stage = "llvm"} {
}

// -----

// expected-error @+1 {{'hasten.stage' belongs on the module}}
func.func @f() attributes {hasten.stage = "tensor"} {
  return
}

// -----

// expected-error @+1 {{'hasten.kv_plans' must map model names to dictionaries of integers and types}}
module attributes {hasten.kv_plans = {main = {layers = "two"}}} {
}
