//===- HastenBase.td - the hasten dialect and its enums ------*- tablegen -*-===//
//
// The hasten dialect holds only what upstream MLIR lacks for generative-model
// inference: attention, KV caches, decode steps, speculation, samplers and
// runtime calls. Primitive math stays in linalg, tensor, arith and math.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_BASE_TD
#define HASTEN_BASE_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

def Hasten_Dialect : Dialect {
  let name = "hasten";
  let cppNamespace = "::hasten";
  let summary = "Inference-level ops for generative models: attention and KV caches";
  let description = [{
    The `hasten` dialect models what upstream dialects have no words for:
    fused attention with GQA/MQA head sharing and causal masking, and
    preallocated KV caches that decode steps append to in place. Everything
    that is plain math (matmul, softmax, elementwise chains, reshapes) is
    expressed with upstream `linalg`, `tensor`, `arith` and `math` ops so that
    upstream transformations keep working on it.

    The compiler and the runtime agree through typed roles, never tensor
    names. The dialect declares, and verifies, the discardable attributes
    the passes read and the manifest records:

    - `hasten.entry_kind` on a `func.func`: what the runtime calls it for,
      one of `main`, `prefill`, `decode`, `verify`, `spec_step`, `generate`,
      `sampler_stream`.
    - `hasten.model` on a `func.func`: the model namespace the entry belongs
      to (a target and its draft in one module), a string; absent is `""`.
    - `hasten.role` on a function argument or result: what the tensor is,
      one of `token_ids`, `past_length`, `kv_cache`, `kv_block_pool`,
      `kv_block_table`, `logits`, `draft_kv_cache`, `draft_past_length`,
      `draft_kv_block_table`, `accepted_tokens`, `temperature`, `uniforms`,
      `sampler_noise`,
      `sampler_state`, or for the parts
      of an ONNX sequence, optional or string tensor, `sequence_data`,
      `sequence_shapes`, `optional_present`, `string_bytes`,
      `string_lengths`.
    - `hasten.onnx_name` (string), `hasten.onnx_elem_type` (the ONNX
      TensorProto data type) and `hasten.onnx_dim_params` (the symbolic
      dimension names, "" for a static one) on a function argument or
      result: the graph input or output it was imported from.
    - `hasten.arena_bytes`, `hasten.arena_buffers` on a `func.func`: the
      activation arena `hasten-pack-static-buffers` built (non-negative
      integers).
    - `hasten.onnx.opset` (integer) and `hasten.onnx.producer` (string) on
      the module: where the imported model came from.
    - `hasten.stage` on the module: the stage hasten-compile wrote it at
      (`import`, `tensor` or `buffer`), which it resumes from when given the
      module back.
    - `hasten.kv_plans` on the module: the KV cache planned for each model
      namespace (`main`, `draft`), a dictionary of integer fields
      (`layers`, `kv_heads`, `head_dim`, `capacity`, `block_size`, ...) and
      the `element_type`.
  }];
  // hasten.gpu_gemm threads the gpu dialect's async tokens.
  let dependentDialects = ["::mlir::gpu::GPUDialect"];
  let useDefaultTypePrinterParser = 1;
  let useDefaultAttributePrinterParser = 1;
  let hasOperationAttrVerify = 1;
  let hasRegionArgAttrVerify = 1;
  let hasRegionResultAttrVerify = 1;
  let extraClassDeclaration = [{
    static constexpr ::llvm::StringLiteral kEntryKindAttrName = "hasten.entry_kind";
    static constexpr ::llvm::StringLiteral kModelAttrName = "hasten.model";
    /// The model namespace of a pair's draft (hasten-compile --draft).
    static constexpr ::llvm::StringLiteral kDraftModelName = "draft";
    static constexpr ::llvm::StringLiteral kRoleAttrName = "hasten.role";
    static constexpr ::llvm::StringLiteral kOnnxNameAttrName = "hasten.onnx_name";
    static constexpr ::llvm::StringLiteral kOnnxElemTypeAttrName = "hasten.onnx_elem_type";
    static constexpr ::llvm::StringLiteral kOnnxDimParamsAttrName = "hasten.onnx_dim_params";
    static constexpr ::llvm::StringLiteral kArenaBytesAttrName = "hasten.arena_bytes";
    static constexpr ::llvm::StringLiteral kArenaBuffersAttrName = "hasten.arena_buffers";
    static constexpr ::llvm::StringLiteral kStageAttrName = "hasten.stage";
    /// On a generate entry: the denoiser calls its sampler makes.
    static constexpr ::llvm::StringLiteral kSamplerStepsAttrName = "hasten.sampler_steps";
    static constexpr ::llvm::StringLiteral kKVPlansAttrName = "hasten.kv_plans";
    /// On a constant memref.global the matmul pass packed: the layout
    /// (include/hasten/WeightLayout.h) and the logical [K, N].
    static constexpr ::llvm::StringLiteral kWeightFormatAttrName = "hasten.weight_format";
    static constexpr ::llvm::StringLiteral kWeightDimsAttrName = "hasten.weight_dims";
    /// On the module after --hasten-externalize-weights: the segment.
    static constexpr ::llvm::StringLiteral kWeightSegmentAttrName = "hasten.weight_segment";
  }];
}

// The values match runtime/manifest.fbs and include/hasten/runtime.h, which
// the compiler checks with static_asserts.
def Hasten_EntryKind : I32EnumAttr<"EntryKind",
    "What an entry point of a compiled module is for", [
      I32EnumAttrCase<"Main", 0, "main">,
      I32EnumAttrCase<"Prefill", 1, "prefill">,
      I32EnumAttrCase<"Decode", 2, "decode">,
      I32EnumAttrCase<"Verify", 3, "verify">,
      I32EnumAttrCase<"SpecStep", 4, "spec_step">,
      I32EnumAttrCase<"Generate", 5, "generate">,
      I32EnumAttrCase<"SamplerStream", 6, "sampler_stream">
    ]> {
  let cppNamespace = "::hasten";
  let genSpecializedAttr = 0;
}

def Hasten_TensorRole : I32EnumAttr<"TensorRole",
    "What an entry's input or output is, for the runtime", [
      I32EnumAttrCase<"None", 0, "none">,
      I32EnumAttrCase<"TokenIds", 1, "token_ids">,
      I32EnumAttrCase<"PastLength", 2, "past_length">,
      I32EnumAttrCase<"KVCache", 3, "kv_cache">,
      I32EnumAttrCase<"KVBlockPool", 4, "kv_block_pool">,
      I32EnumAttrCase<"KVBlockTable", 5, "kv_block_table">,
      I32EnumAttrCase<"Logits", 6, "logits">,
      I32EnumAttrCase<"DraftKVCache", 7, "draft_kv_cache">,
      I32EnumAttrCase<"DraftPastLength", 8, "draft_past_length">,
      I32EnumAttrCase<"AcceptedTokens", 9, "accepted_tokens">,
      I32EnumAttrCase<"SamplerNoise", 10, "sampler_noise">,
      I32EnumAttrCase<"SamplerState", 11, "sampler_state">,
      I32EnumAttrCase<"SequenceData", 12, "sequence_data">,
      I32EnumAttrCase<"SequenceShapes", 13, "sequence_shapes">,
      I32EnumAttrCase<"OptionalPresent", 14, "optional_present">,
      I32EnumAttrCase<"StringBytes", 15, "string_bytes">,
      I32EnumAttrCase<"StringLengths", 16, "string_lengths">,
      I32EnumAttrCase<"Temperature", 17, "temperature">,
      I32EnumAttrCase<"Uniforms", 18, "uniforms">,
      I32EnumAttrCase<"DraftKVBlockTable", 19, "draft_kv_block_table">
    ]> {
  let cppNamespace = "::hasten";
  let genSpecializedAttr = 0;
}

def Hasten_KVCacheLayout : I32EnumAttr<"KVCacheLayout",
    "How the tokens of a KV cache are laid out in memory", [
      I32EnumAttrCase<"Contiguous", 0, "contiguous">,
      I32EnumAttrCase<"Paged", 1, "paged">
    ]> {
  let cppNamespace = "::hasten";
  let genSpecializedAttr = 0;
}

#endif // HASTEN_BASE_TD
