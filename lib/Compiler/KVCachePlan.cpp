//===- KVCachePlan.cpp - the KV cache a decoder's entries get --------------===//

#include "KVCachePlan.h"

#include "hasten/Dialect/Hasten/HastenDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

using namespace mlir;
using namespace hasten;

FailureOr<KVCachePlan> hasten::planKVCache(ModuleOp module, const KVCacheOptions &options,
                                           StringRef model) {
  KVCachePlan plan;
  for (auto func : module.getOps<func::FuncOp>()) {
    auto kind = func->getAttrOfType<StringAttr>(HastenDialect::kEntryKindAttrName);
    std::optional<EntryKind> parsed = kind ? symbolizeEntryKind(kind.getValue()) : std::nullopt;
    auto namespaceAttr = func->getAttrOfType<StringAttr>(HastenDialect::kModelAttrName);
    if ((parsed != EntryKind::Prefill && parsed != EntryKind::Decode &&
         parsed != EntryKind::Verify) ||
        (namespaceAttr ? namespaceAttr.getValue() : StringRef()) != model)
      continue;
    plan.decoder = true;
    plan.layers = 0;
    for (unsigned i = 0; i < func.getNumArguments(); ++i) {
      auto name = func.getArgAttrOfType<StringAttr>(i, HastenDialect::kOnnxNameAttrName);
      if (!name || !name.getValue().starts_with("past_key_values.") ||
          !name.getValue().ends_with(".key"))
        continue;
      auto type = cast<RankedTensorType>(func.getArgumentTypes()[i]);
      ++plan.layers;
      plan.kvHeads = type.getDimSize(1);
      plan.headDim = type.getDimSize(3);
      plan.elementBytes = std::max<int64_t>(1, type.getElementTypeBitWidth() / 8);
      plan.elementType = type.getElementType();
    }
  }
  if (!plan.decoder)
    return plan;
  if (ShapedType::isDynamic(plan.kvHeads) || ShapedType::isDynamic(plan.headDim))
    return emitError(module.getLoc(), "the decoder's past_key_values need static "
                                      "kv_heads and head_dim");
  plan.bytesPerToken = plan.layers * 2 * plan.kvHeads * plan.headDim * plan.elementBytes;
  plan.blockSize = options.blockSize;
  int64_t block = std::max<int64_t>(1, options.blockSize);
  plan.budgetBytes = options.budgetBytes;
  plan.budgetTokens = options.budgetBytes / plan.bytesPerToken / block * block;
  if (options.capacity > 0) {
    plan.capacity = options.capacity;
  } else if (options.budgetBytes > 0) {
    plan.capacity = plan.budgetTokens;
    if (plan.capacity == 0)
      return emitError(module.getLoc(), "--kv-budget=")
             << options.budgetBytes << " holds no " << (block > 1 ? "block" : "token")
             << ": one token takes " << plan.bytesPerToken << " bytes";
  }
  if (options.deviceTokens >= 0 && options.blockSize <= 0)
    return emitError(module.getLoc(), "--kv-device-tokens splits a paged KV cache's blocks "
                                      "between device and host memory; add --kv-block-size");
  plan.deviceTokens = options.deviceTokens < 0 ? -1 : options.deviceTokens / block * block;
  if (options.blockSize > 0 && plan.capacity % options.blockSize != 0)
    return emitError(module.getLoc(), "the KV capacity (")
           << plan.capacity << " tokens) must be a multiple of --kv-block-size ("
           << options.blockSize << ")";
  if (options.budgetBytes > 0 &&
      uint64_t(plan.capacity * plan.bytesPerToken) > options.budgetBytes)
    return emitError(module.getLoc(), "--kv-capacity=")
           << plan.capacity << " needs " << plan.capacity * plan.bytesPerToken
           << " bytes of KV cache, more than --kv-budget=" << options.budgetBytes;
  return plan;
}

namespace {
constexpr llvm::StringLiteral kPlansAttr = HastenDialect::kKVPlansAttrName;
const char *const kPlanFields[] = {"layers",   "kv_heads",     "head_dim",     "element_bytes",
                                   "bytes_per_token", "capacity", "block_size", "budget_bytes",
                                   "budget_tokens", "device_tokens"};
} // namespace

void hasten::recordKVCachePlan(ModuleOp module, const KVCachePlan &plan, StringRef model) {
  if (!plan.decoder)
    return;
  Builder b(module.getContext());
  int64_t values[] = {plan.layers,        plan.kvHeads,  plan.headDim,
                      plan.elementBytes,  plan.bytesPerToken, plan.capacity,
                      plan.blockSize,     int64_t(plan.budgetBytes), plan.budgetTokens,
                      plan.deviceTokens};
  SmallVector<NamedAttribute> fields;
  for (auto [name, value] : llvm::zip_equal(kPlanFields, values))
    fields.push_back(b.getNamedAttr(name, b.getI64IntegerAttr(value)));
  fields.push_back(b.getNamedAttr("element_type", TypeAttr::get(plan.elementType)));
  NamedAttrList plans(module->getAttrOfType<DictionaryAttr>(kPlansAttr));
  plans.set(model.empty() ? "main" : model, b.getDictionaryAttr(fields));
  module->setAttr(kPlansAttr, plans.getDictionary(module.getContext()));
}

FailureOr<KVCachePlan> hasten::readKVCachePlan(ModuleOp module, StringRef model) {
  KVCachePlan plan;
  auto plans = module->getAttrOfType<DictionaryAttr>(kPlansAttr);
  auto entry = plans ? plans.getAs<DictionaryAttr>(model.empty() ? "main" : model) : nullptr;
  if (!entry)
    return plan;
  int64_t values[std::size(kPlanFields)];
  for (auto [name, value] : llvm::zip_equal(kPlanFields, values)) {
    auto attr = entry.getAs<IntegerAttr>(name);
    if (!attr)
      return emitError(module.getLoc()) << "the module's " << kPlansAttr << " lacks '" << name
                                        << "' for model '" << model << "'";
    value = attr.getInt();
  }
  auto type = entry.getAs<TypeAttr>("element_type");
  if (!type)
    return emitError(module.getLoc()) << "the module's " << kPlansAttr
                                      << " lacks 'element_type' for model '" << model << "'";
  plan.decoder = true;
  plan.layers = values[0];
  plan.kvHeads = values[1];
  plan.headDim = values[2];
  plan.elementBytes = values[3];
  plan.bytesPerToken = values[4];
  plan.capacity = values[5];
  plan.blockSize = values[6];
  plan.budgetBytes = uint64_t(values[7]);
  plan.budgetTokens = values[8];
  plan.deviceTokens = values[9];
  plan.elementType = type.getValue();
  return plan;
}
