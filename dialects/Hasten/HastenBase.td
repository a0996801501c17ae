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
  }];
  let useDefaultTypePrinterParser = 1;
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
