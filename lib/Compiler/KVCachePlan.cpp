//===- KVCachePlan.cpp - the KV cache a decoder's entries get --------------===//

#include "KVCachePlan.h"

#include "hasten/Dialect/Hasten/HastenDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectResourceBlobManager.h"

using namespace mlir;
using namespace hasten;

namespace {

/// The ONNX name of `func`'s argument `index` ("" when it has none).
StringRef onnxName(func::FuncOp func, unsigned index) {
  auto name = func.getArgAttrOfType<StringAttr>(index, HastenDialect::kOnnxNameAttrName);
  return name ? name.getValue() : StringRef();
}

/// The smallest constant table that a decoder entry indexes by position.
///
/// Positions start at the past length (dimension 2 of a past_key_values
/// argument) or at a `position_ids` argument, and stay positions through
/// integer casts, adding or subtracting something that is not a position,
/// clamping, selecting and the tensor ops that move data (reshapes, slices,
/// concatenation, elementwise linalg bodies). Anything else ends them: the
/// difference of two positions (relative-position buckets, which are not
/// bounded by the context), products, comparisons. A constant read at a
/// position (tensor.extract) or sliced at one (tensor.extract_slice) is a
/// table whose rows bound the positions.
class PositionTables {
public:
  struct Table {
    int64_t rows = 0;
    std::string name;
  };

  void visit(func::FuncOp func) {
    for (BlockArgument arg : func.getArguments())
      if (onnxName(func, arg.getArgNumber()) == "position_ids")
        positions.insert(arg);
    visitBlock(func.getBody().front(), func);
  }

  /// The smallest table seen; rows = 0 when none.
  const Table &smallest() const { return best; }

private:
  bool isPosition(Value v) const { return positions.contains(v); }

  void visitBlock(Block &block, func::FuncOp func) {
    for (Operation &op : block)
      visitOp(op, func);
  }

  static bool isPastLength(tensor::DimOp dim, func::FuncOp func) {
    auto arg = dyn_cast<BlockArgument>(dim.getSource());
    std::optional<int64_t> index = dim.getConstantIndex();
    return arg && arg.getOwner()->getParentOp() == func && index == 2 &&
           onnxName(func, arg.getArgNumber()).starts_with("past_key_values.");
  }

  /// Records `source` as a table when it is a constant whose dimension
  /// `dim` is indexed by a position.
  void record(Value source, unsigned dim) {
    auto constant = source.getDefiningOp<arith::ConstantOp>();
    auto type = dyn_cast<RankedTensorType>(source.getType());
    if (!constant || !type || dim >= type.getRank() || type.isDynamicDim(dim))
      return;
    int64_t rows = type.getDimSize(dim);
    if (best.rows != 0 && best.rows <= rows)
      return;
    best.rows = rows;
    if (auto resource = dyn_cast<DenseResourceElementsAttr>(constant.getValue()))
      best.name = resource.getRawHandle().getKey().str();
    else
      best.name.clear();
  }

  void visitOp(Operation &op, func::FuncOp func) {
    auto anyPosition = [&](ValueRange values) { return llvm::any_of(values, [&](Value v) {
      return isPosition(v);
    }); };
    auto markAll = [&](ValueRange values) { positions.insert(values.begin(), values.end()); };

    if (auto linalgOp = dyn_cast<linalg::LinalgOp>(op)) {
      auto generic = dyn_cast<linalg::GenericOp>(op);
      if (!generic) {
        // fill, copy, transpose, broadcast: the inputs' values move.
        if (anyPosition(linalgOp.getDpsInputs()))
          markAll(op.getResults());
        return;
      }
      for (OpOperand *input : generic.getDpsInputOperands())
        if (isPosition(input->get()))
          positions.insert(generic.getMatchingBlockArgument(input));
      visitBlock(*generic.getBody(), func);
      auto yield = cast<linalg::YieldOp>(generic.getBody()->getTerminator());
      for (auto [yielded, result] : llvm::zip_equal(yield.getOperands(), generic.getResults()))
        if (isPosition(yielded))
          positions.insert(result);
      return;
    }
    if (auto dim = dyn_cast<tensor::DimOp>(op)) {
      if (isPastLength(dim, func))
        positions.insert(dim.getResult());
      return;
    }
    if (auto extract = dyn_cast<tensor::ExtractOp>(op)) {
      for (auto [i, index] : llvm::enumerate(extract.getIndices()))
        if (isPosition(index))
          record(extract.getTensor(), i);
      if (isPosition(extract.getTensor()))
        positions.insert(extract.getResult());
      return;
    }
    if (auto slice = dyn_cast<tensor::ExtractSliceOp>(op)) {
      for (auto [i, offset, size] :
           llvm::enumerate(slice.getMixedOffsets(), slice.getMixedSizes())) {
        auto offsetValue = dyn_cast<Value>(offset), sizeValue = dyn_cast<Value>(size);
        if ((offsetValue && isPosition(offsetValue)) || (sizeValue && isPosition(sizeValue)))
          record(slice.getSource(), i);
      }
      if (isPosition(slice.getSource()))
        positions.insert(slice.getResult());
      return;
    }
    if (auto ifOp = dyn_cast<scf::IfOp>(op)) {
      for (Region &region : ifOp->getRegions())
        for (Block &block : region) {
          visitBlock(block, func);
          for (auto [yielded, result] :
               llvm::zip_equal(block.getTerminator()->getOperands(), ifOp.getResults()))
            if (isPosition(yielded))
              positions.insert(result);
        }
      return;
    }
    if (isa<arith::AddIOp>(op)) {
      // A position plus an offset; the sum of two positions is not one.
      if (isPosition(op.getOperand(0)) != isPosition(op.getOperand(1)))
        markAll(op.getResults());
      return;
    }
    if (isa<arith::SubIOp>(op)) {
      if (isPosition(op.getOperand(0)) && !isPosition(op.getOperand(1)))
        markAll(op.getResults());
      return;
    }
    if (isa<arith::IndexCastOp, arith::IndexCastUIOp, arith::ExtSIOp, arith::ExtUIOp,
            arith::TruncIOp, arith::MaxSIOp, arith::MinSIOp, arith::MaxUIOp, arith::MinUIOp,
            tensor::ExpandShapeOp, tensor::CollapseShapeOp, tensor::CastOp, tensor::ConcatOp,
            tensor::InsertSliceOp, tensor::FromElementsOp, tensor::InsertOp, tensor::SplatOp,
            tensor::ReshapeOp>(op)) {
      if (anyPosition(op.getOperands()))
        markAll(op.getResults());
      return;
    }
    if (auto select = dyn_cast<arith::SelectOp>(op)) {
      if (isPosition(select.getTrueValue()) || isPosition(select.getFalseValue()))
        positions.insert(select.getResult());
      return;
    }
    for (Region &region : op.getRegions())
      for (Block &block : region)
        visitBlock(block, func);
  }

  llvm::DenseSet<Value> positions;
  Table best;
};

} // namespace

FailureOr<KVCachePlan> hasten::planKVCache(ModuleOp module, const KVCacheOptions &options,
                                           StringRef model) {
  KVCachePlan plan;
  for (auto func : module.getOps<func::FuncOp>()) {
    auto kind = func->getAttrOfType<StringAttr>(HastenDialect::kEntryKindAttrName);
    std::optional<EntryKind> parsed = kind ? symbolizeEntryKind(kind.getValue()) : std::nullopt;
    auto namespaceAttr = func->getAttrOfType<StringAttr>(HastenDialect::kModelAttrName);
    StringRef funcModel = namespaceAttr ? namespaceAttr.getValue() : StringRef();
    if (parsed != EntryKind::Prefill && parsed != EntryKind::Decode &&
        parsed != EntryKind::Verify)
      continue;
    if (funcModel != model)
      continue;
    // The model's own positions bound its capacity.
    PositionTables tables;
    tables.visit(func);
    const PositionTables::Table &table = tables.smallest();
    if (table.rows != 0 && (plan.positionRows == 0 || table.rows < plan.positionRows)) {
      plan.positionRows = table.rows;
      plan.positionTable = table.name;
      plan.positionModel = funcModel.str();
    }
    plan.decoder = true;
    plan.layers = 0;
    for (unsigned i = 0; i < func.getNumArguments(); ++i) {
      StringRef name = onnxName(func, i);
      if (!name.starts_with("past_key_values.") || !name.ends_with(".key"))
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
  std::string whosePositions =
      plan.positionModel.empty() ? "the decoder's" : "the " + plan.positionModel + " model's";
  std::string table =
      plan.positionTable.empty() ? "(a constant)" : "'" + plan.positionTable + "'";
  if (options.capacity > 0) {
    plan.capacity = options.capacity;
    if (plan.positionRows != 0 && plan.capacity > plan.positionRows && !options.lowerToPositions)
      return emitError(module.getLoc(), "--kv-capacity=")
             << plan.capacity << " is more than the " << plan.positionRows << " positions "
             << whosePositions << " position table " << table
             << " holds: later tokens would all read its last row";
  } else if (options.budgetBytes > 0) {
    plan.capacity = plan.budgetTokens;
    if (plan.capacity == 0)
      return emitError(module.getLoc(), "--kv-budget=")
             << options.budgetBytes << " holds no " << (block > 1 ? "block" : "token")
             << ": one token takes " << plan.bytesPerToken << " bytes";
  }
  if ((options.capacity == 0 || options.lowerToPositions) && plan.positionRows != 0 &&
      plan.capacity > plan.positionRows) {
    // A default (or a budget's) capacity stops at the last position the
    // model knows, in whole blocks.
    plan.capacity = plan.positionRows / block * block;
    if (plan.capacity == 0)
      return emitError(module.getLoc(), "--kv-block-size=")
             << options.blockSize << " is more than the " << plan.positionRows << " positions "
             << whosePositions << " position table " << table << " holds";
    emitRemark(module.getLoc(), "the KV cache holds ")
        << plan.capacity << " tokens: " << whosePositions << " positions index the "
        << plan.positionRows << " rows of " << table;
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
  if (plan.positionRows > 0)
    fields.push_back(b.getNamedAttr("position_rows", b.getI64IntegerAttr(plan.positionRows)));
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
  if (auto rows = entry.getAs<IntegerAttr>("position_rows"))
    plan.positionRows = rows.getInt();
  plan.elementType = type.getValue();
  return plan;
}
