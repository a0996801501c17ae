//===- PlanKVCache.cpp - past/present concats to in-place cache appends ----===//
//
// An exported decoder copies its whole KV cache every step: the present keys
// are Concat(past, new). In the decoder entries this pass swaps the
// past/present pairs for one preallocated !hasten.kv_cache written in place.
//
//===----------------------------------------------------------------------===//

#include "hasten/Dialect/Hasten/HastenDialect.h"
#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Dominance.h"

#include "llvm/ADT/StringExtras.h"

#include <map>

namespace hasten {
#define GEN_PASS_DEF_PLANKVCACHE
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;
using namespace hasten;

namespace {

/// ONNX element type codes, for the argument attributes the manifest reads.
constexpr int32_t kOnnxFloat = 1;
constexpr int32_t kOnnxInt64 = 7;

/// Prefill, decode and verify entries (hasten.entry_kind) are the ones planned.
bool isDecoderEntry(func::FuncOp func) {
  auto kind = func->getAttrOfType<StringAttr>(HastenDialect::kEntryKindAttrName);
  std::optional<EntryKind> parsed = kind ? symbolizeEntryKind(kind.getValue()) : std::nullopt;
  return parsed == EntryKind::Prefill || parsed == EntryKind::Decode ||
         parsed == EntryKind::Verify;
}

/// Parses "<prefix><layer>.<key|value>".
std::optional<std::pair<int64_t, bool>> parseKVName(StringRef name, StringRef prefix) {
  if (!name.consume_front(prefix))
    return std::nullopt;
  auto [layerText, kind] = name.split('.');
  int64_t layer;
  if (layerText.getAsInteger(10, layer) || (kind != "key" && kind != "value"))
    return std::nullopt;
  return std::make_pair(layer, kind == "key");
}

StringRef onnxName(func::FuncOp func, unsigned arg) {
  auto name = func.getArgAttrOfType<StringAttr>(arg, HastenDialect::kOnnxNameAttrName);
  return name ? name.getValue() : StringRef();
}

/// One layer's past arguments and the concats that grow them.
struct LayerKV {
  BlockArgument pastKey, pastValue;
  tensor::ConcatOp keyConcat, valueConcat;
};

struct PlanKVCachePass : public hasten::impl::PlanKVCacheBase<PlanKVCachePass> {
  using Base::Base;

  void runOnOperation() override {
    if (capacity <= 0) {
      getOperation().emitError("capacity must be positive, got ") << int64_t(capacity);
      return signalPassFailure();
    }
    if (draftCapacity < 0) {
      getOperation().emitError("draft-capacity must not be negative, got ")
          << int64_t(draftCapacity);
      return signalPassFailure();
    }
    for (int64_t tokens : {int64_t(capacity), int64_t(draftCapacity)})
      if (blockSize < 0 || (blockSize > 0 && tokens % blockSize != 0)) {
        getOperation().emitError("capacity (")
            << tokens << ") must be a multiple of block-size (" << int64_t(blockSize) << ")";
        return signalPassFailure();
      }
    for (auto func : llvm::make_early_inc_range(getOperation().getOps<func::FuncOp>()))
      if (isDecoderEntry(func) && failed(plan(func)))
        return signalPassFailure();
  }

  /// The capacity of the cache that `func`'s model reads.
  int64_t capacityOf(func::FuncOp func) {
    auto model = func->getAttrOfType<StringAttr>(HastenDialect::kModelAttrName);
    bool draft = model && model.getValue() == HastenDialect::kDraftModelName;
    return draft && draftCapacity > 0 ? int64_t(draftCapacity) : int64_t(capacity);
  }

  LogicalResult plan(func::FuncOp func) {
    Block &body = func.getBody().front();
    std::map<int64_t, LayerKV> layers;
    for (unsigned i = 0; i < func.getNumArguments(); ++i) {
      auto parsed = parseKVName(onnxName(func, i), "past_key_values.");
      if (!parsed)
        continue;
      BlockArgument arg = body.getArgument(i);
      LayerKV &layer = layers[parsed->first];
      (parsed->second ? layer.pastKey : layer.pastValue) = arg;
      // The only uses a past may have: the concat that grows it, and dims.
      tensor::ConcatOp concat;
      for (Operation *user : arg.getUsers()) {
        if (isa<tensor::DimOp>(user))
          continue;
        auto c = dyn_cast<tensor::ConcatOp>(user);
        if (!c || c.getDim() != 2 || c.getInputs().size() != 2 || c.getInputs()[0] != arg ||
            concat) {
          InFlightDiagnostic diag = func.emitError("cannot plan the KV cache: '")
                                    << onnxName(func, i)
                                    << "' must be used only by one Concat that appends the new "
                                       "tokens after it on axis 2, but it is used by "
                                    << user->getName();
          // ONNX Runtime's quantize_static puts QuantizeLinear on every
          // Concat input by default, the past included.
          if (user->getNumResults() == 1 &&
              getElementTypeOrSelf(user->getResult(0).getType()).isInteger(8))
            diag << " (it is quantized: quantize only the MatMuls, as with ONNX Runtime's "
                    "op_types_to_quantize=['MatMul'], or keep only 'main' with "
                    "--no-decoder-entries)";
          return diag;
        }
        concat = c;
      }
      if (!concat)
        return func.emitError("cannot plan the KV cache: '")
               << onnxName(func, i) << "' is never concatenated with new tokens";
      (parsed->second ? layer.keyConcat : layer.valueConcat) = concat;
    }
    if (layers.empty())
      return func.emitError("a decoder entry without past_key_values arguments");

    // All layers share one cache type.
    auto pastType = cast<RankedTensorType>(layers.begin()->second.pastKey
                                               ? layers.begin()->second.pastKey.getType()
                                               : layers.begin()->second.pastValue.getType());
    int64_t numLayers = layers.size();
    for (auto &[index, layer] : layers) {
      if (index < 0 || index >= numLayers)
        return func.emitError("past_key_values layers must be numbered 0 to ")
               << numLayers - 1 << ", found layer " << index;
      if (!layer.pastKey || !layer.pastValue)
        return func.emitError("layer ") << index << " has no past "
                                        << (layer.pastKey ? "value" : "key");
      for (BlockArgument arg : {layer.pastKey, layer.pastValue})
        if (arg.getType() != pastType)
          return func.emitError("past_key_values of layer ")
                 << index << " is " << arg.getType() << ", layer 0 has " << pastType;
    }
    if (pastType.getRank() != 4 || pastType.isDynamicDim(1) || pastType.isDynamicDim(3))
      return func.emitError("past_key_values must be [batch, kv_heads, past, head_dim] "
                            "with static kv_heads and head_dim, got ")
             << pastType;
    auto cacheType = KVCacheType::getChecked(
        [&] { return func.emitError(); }, func.getContext(), numLayers,
        pastType.getDimSize(1), pastType.getDimSize(3), capacityOf(func),
        pastType.getElementType(),
        blockSize ? KVCacheLayout::Paged : KVCacheLayout::Contiguous, int64_t(blockSize));
    if (!cacheType)
      return failure();

    // New arguments: the cache and the number of tokens already in it.
    OpBuilder b(func.getContext());
    unsigned cacheIndex = func.getNumArguments();
    auto i64Scalar = RankedTensorType::get({}, b.getI64Type());
    if (failed(func.insertArguments({cacheIndex, cacheIndex}, {cacheType, i64Scalar},
                                    {}, {func.getLoc(), func.getLoc()})))
      return failure();
    Value cache = body.getArgument(cacheIndex);
    Value pastArg = body.getArgument(cacheIndex + 1);
    func.setArgAttr(cacheIndex, HastenDialect::kOnnxNameAttrName, b.getStringAttr("kv_cache"));
    func.setArgAttr(cacheIndex + 1, HastenDialect::kOnnxNameAttrName,
                    b.getStringAttr("past_length"));
    func.setArgAttr(cacheIndex, HastenDialect::kRoleAttrName,
                    b.getStringAttr(stringifyTensorRole(TensorRole::KVCache)));
    func.setArgAttr(cacheIndex + 1, HastenDialect::kRoleAttrName,
                    b.getStringAttr(stringifyTensorRole(TensorRole::PastLength)));
    func.setArgAttr(cacheIndex + 1, HastenDialect::kOnnxElemTypeAttrName,
                    b.getI32IntegerAttr(kOnnxInt64));
    func.setArgAttr(cacheIndex, HastenDialect::kOnnxElemTypeAttrName,
                    b.getI32IntegerAttr(kOnnxFloat));

    b.setInsertionPointToStart(&body);
    Location loc = func.getLoc();
    Value pastLength = arith::IndexCastOp::create(
        b, loc, b.getIndexType(), tensor::ExtractOp::create(b, loc, pastArg, ValueRange{}));

    DominanceInfo dominance(func);
    for (auto &[index, layer] : layers) {
      // The append goes where both new tensors exist.
      Value newKeys = layer.keyConcat.getInputs()[1];
      Value newValues = layer.valueConcat.getInputs()[1];
      Operation *keyDef = newKeys.getDefiningOp(), *valueDef = newValues.getDefiningOp();
      Operation *later = !keyDef ? valueDef
                         : !valueDef ? keyDef
                         : dominance.properlyDominates(keyDef, valueDef) ? valueDef
                                                                         : keyDef;
      if (later)
        b.setInsertionPointAfter(later);
      else
        b.setInsertionPointAfter(pastLength.getDefiningOp());
      for (tensor::ConcatOp concat : {layer.keyConcat, layer.valueConcat})
        for (Operation *user : concat->getUsers())
          if (later && !dominance.properlyDominates(later, user))
            return concat.emitError("cannot plan the KV cache of layer ")
                   << index << ": the cache is read before both its new keys and "
                               "values are computed";
      Location layerLoc = layer.keyConcat.getLoc();
      KVCacheAppendOp::create(b, layerLoc, newKeys, newValues, cache, index, pastLength);
      Value tokens = tensor::DimOp::create(b, layerLoc, newKeys, 2);
      Value length = arith::AddIOp::create(b, layerLoc, pastLength, tokens);
      auto view = KVCacheViewOp::create(b, layerLoc, cache, index, length);
      auto replace = [&](tensor::ConcatOp concat, Value viewed) {
        Value result = viewed;
        if (viewed.getType() != concat.getType())
          result = tensor::CastOp::create(b, layerLoc, concat.getType(), viewed);
        concat.getResult().replaceAllUsesWith(result);
        concat.erase();
      };
      replace(layer.keyConcat, view.getKeys());
      replace(layer.valueConcat, view.getValues());
    }

    // Remaining uses of the pasts are their sizes.
    BitVector erase(func.getNumArguments());
    for (auto &[index, layer] : layers) {
      for (BlockArgument arg : {layer.pastKey, layer.pastValue}) {
        for (Operation *user : llvm::make_early_inc_range(arg.getUsers())) {
          auto dim = cast<tensor::DimOp>(user);
          b.setInsertionPoint(dim);
          std::optional<int64_t> axis = dim.getConstantIndex();
          Value size;
          if (axis && *axis == 2)
            size = pastLength;
          else if (axis && !pastType.isDynamicDim(*axis))
            size = arith::ConstantIndexOp::create(b, dim.getLoc(), pastType.getDimSize(*axis));
          else if (axis && *axis == 0)
            size = arith::ConstantIndexOp::create(b, dim.getLoc(), 1);
          else
            return dim.emitError("cannot plan the KV cache: unsupported size query of '")
                   << onnxName(func, arg.getArgNumber()) << "'";
          dim.getResult().replaceAllUsesWith(size);
          dim.erase();
        }
        erase.set(arg.getArgNumber());
      }
    }
    if (failed(func.eraseArguments(erase)))
      return failure();

    // The presents are in the cache now.
    auto ret = cast<func::ReturnOp>(body.getTerminator());
    BitVector eraseResults(func.getNumResults());
    for (unsigned i = 0; i < func.getNumResults(); ++i) {
      auto name = func.getResultAttrOfType<StringAttr>(i, HastenDialect::kOnnxNameAttrName);
      if (name && parseKVName(name.getValue(), "present."))
        eraseResults.set(i);
    }
    SmallVector<Value> kept;
    for (unsigned i = 0; i < ret.getNumOperands(); ++i)
      if (!eraseResults.test(i))
        kept.push_back(ret.getOperand(i));
    ret->setOperands(kept);
    if (failed(func.eraseResults(eraseResults)))
      return failure();
    return success();
  }
};
} // namespace
