//===- DecoderEntries.cpp - prefill and decode entries of a decoder -------===//
//
// An exported decoder is written for any batch and takes positions and a
// mask from its caller. Generation runs one sequence and knows both from the
// past length, so this pass clones the imported function into the two
// entries generation calls, specialized to that use, and lets the upstream
// folders carry the new static shapes through the body.
//
//===----------------------------------------------------------------------===//

#include "hasten/Dialect/Hasten/HastenDialect.h"
#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/MemRef/Transforms/Transforms.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Tensor/Transforms/Transforms.h"
#include "mlir/IR/Dominance.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Transforms/CSE.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace hasten {
#define GEN_PASS_DEF_DECODERENTRIES
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;
using namespace hasten;

namespace {

/// Where the Optimum decoder-with-past names sit in a function's signature.
struct DecoderSignature {
  unsigned inputIds = 0, pastKey = 0, logits = 0;
  std::optional<unsigned> attentionMask, positionIds;
};

std::optional<unsigned> findArgument(func::FuncOp func, StringRef name) {
  for (unsigned i = 0; i < func.getNumArguments(); ++i)
    if (auto attr = func.getArgAttrOfType<StringAttr>(i, HastenDialect::kOnnxNameAttrName);
        attr && attr.getValue() == name)
      return i;
  return std::nullopt;
}

std::optional<unsigned> findResult(func::FuncOp func, StringRef name) {
  for (unsigned i = 0; i < func.getNumResults(); ++i)
    if (auto attr = func.getResultAttrOfType<StringAttr>(i, HastenDialect::kOnnxNameAttrName);
        attr && attr.getValue() == name)
      return i;
  return std::nullopt;
}

std::optional<DecoderSignature> matchDecoder(func::FuncOp func) {
  if (func.isExternal() || func->hasAttr(HastenDialect::kEntryKindAttrName))
    return std::nullopt;
  std::optional<unsigned> ids = findArgument(func, "input_ids");
  std::optional<unsigned> key = findArgument(func, "past_key_values.0.key");
  std::optional<unsigned> logits = findResult(func, "logits");
  if (!ids || !key || !logits || !findArgument(func, "past_key_values.0.value") ||
      !findResult(func, "present.0.key"))
    return std::nullopt;
  DecoderSignature signature;
  signature.inputIds = *ids;
  signature.pastKey = *key;
  signature.logits = *logits;
  signature.attentionMask = findArgument(func, "attention_mask");
  signature.positionIds = findArgument(func, "position_ids");
  return signature;
}

StringRef argumentName(func::FuncOp func, unsigned index) {
  auto attr = func.getArgAttrOfType<StringAttr>(index, HastenDialect::kOnnxNameAttrName);
  return attr ? attr.getValue() : StringRef("<unnamed>");
}

/// The rank-2 `[batch, n]` integer or float type of a computed input.
FailureOr<RankedTensorType> computedInputType(func::FuncOp func, unsigned index) {
  auto type = dyn_cast<RankedTensorType>(func.getArgumentTypes()[index]);
  if (!type || type.getRank() != 2 || !type.getElementType().isIntOrFloat())
    return func.emitError("decoder entries compute '")
           << argumentName(func, index) << "' as [batch, length], but it is "
           << func.getArgumentTypes()[index];
  return type;
}

/// concat(cast(%past : static -> dynamic), ...) concatenates %past itself, so
/// that the entry's present keys keep the static batch and heads. (Upstream
/// folds such casts into most consumers, but not into tensor.concat.)
struct FoldCastOperandsIntoConcat : public OpRewritePattern<tensor::ConcatOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(tensor::ConcatOp op, PatternRewriter &rewriter) const override {
    std::optional<SmallVector<Value>> inputs = sourcesOfFoldableCasts(op.getInputs());
    if (!inputs)
      return failure();
    RankedTensorType type =
        tensor::ConcatOp::inferResultType(op.getDim(), ValueRange(*inputs).getTypes());
    Value result = tensor::ConcatOp::create(rewriter, op.getLoc(), type, op.getDim(), *inputs);
    if (type != op.getType())
      result = tensor::CastOp::create(rewriter, op.getLoc(), op.getType(), result);
    rewriter.replaceOp(op, result);
    return success();
  }
};

/// expand_shape(... output_shape [%c1, %n, 96]) -> tensor<?x?x96xf32>: a
/// constant output size makes that result dimension static. (Upstream does
/// this only when the source is a tensor.cast.)
struct StaticExpandShapeSizes : public OpRewritePattern<tensor::ExpandShapeOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(tensor::ExpandShapeOp op,
                                PatternRewriter &rewriter) const override {
    SmallVector<OpFoldResult> sizes = op.getMixedOutputShape();
    SmallVector<int64_t> shape(op.getResultType().getShape());
    bool changed = false;
    for (auto [dim, size] : llvm::zip(shape, sizes)) {
      std::optional<int64_t> constant = getConstantIntValue(size);
      if (!ShapedType::isDynamic(dim) || !constant)
        continue;
      dim = *constant;
      size = rewriter.getIndexAttr(*constant);
      changed = true;
    }
    if (!changed)
      return failure();
    // A group whose sizes are now all known fixes its source dimension too.
    SmallVector<int64_t> sourceShape(op.getSrcType().getShape());
    for (auto [source, group] : llvm::enumerate(op.getReassociationIndices())) {
      int64_t product = 1;
      for (int64_t dim : group)
        product = ShapedType::isDynamic(shape[dim]) || ShapedType::isDynamic(product)
                      ? ShapedType::kDynamic
                      : product * shape[dim];
      if (!ShapedType::isDynamic(product))
        sourceShape[source] = product;
    }
    Value src = op.getSrc();
    auto sourceType = RankedTensorType::get(sourceShape, op.getSrcType().getElementType());
    if (sourceType != op.getSrcType())
      src = tensor::CastOp::create(rewriter, op.getLoc(), sourceType, src);
    auto type = RankedTensorType::get(shape, op.getResultType().getElementType());
    Value expanded = tensor::ExpandShapeOp::create(rewriter, op.getLoc(), type, src,
                                                   op.getReassociationIndices(), sizes);
    rewriter.replaceOpWithNewOp<tensor::CastOp>(op, op.getResultType(), expanded);
    return success();
  }
};

struct DecoderEntriesPass : public hasten::impl::DecoderEntriesBase<DecoderEntriesPass> {
  using Base::Base;

  LogicalResult initialize(MLIRContext *context) override {
    // Canonicalization carries the static shapes through the entry; the
    // bubbling patterns move the last-position slice up through the LM head.
    RewritePatternSet set(context);
    for (Dialect *dialect : context->getLoadedDialects())
      dialect->getCanonicalizationPatterns(set);
    for (RegisteredOperationName op : context->getRegisteredOperations())
      op.getCanonicalizationPatterns(set, context);
    memref::populateResolveRankedShapedTypeResultDimsPatterns(set);
    tensor::populateBubbleUpExtractSliceOpPatterns(set);
    linalg::populateBubbleUpExtractSliceOpPatterns(set);
    linalg::populateSwapExtractSliceWithFillPatterns(set);
    tensor::populateFoldTensorEmptyPatterns(set);
    set.add<FoldCastOperandsIntoConcat, StaticExpandShapeSizes>(context);
    patterns = std::make_shared<FrozenRewritePatternSet>(std::move(set));
    return success();
  }

  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<std::pair<func::FuncOp, DecoderSignature>> decoders;
    for (auto func : module.getOps<func::FuncOp>())
      if (std::optional<DecoderSignature> signature = matchDecoder(func))
        decoders.push_back({func, *signature});
    if (decoders.empty()) {
      if (!require)
        return;
      module.emitError("decoder entries were requested, but no function has the "
                       "arguments 'input_ids' and 'past_key_values.0.key/value' and the "
                       "results 'present.0.key' and 'logits'");
      return signalPassFailure();
    }
    if (decoders.size() > 1) {
      module.emitError("decoder entries need one decoder function, found ")
          << decoders.size() << " ('" << decoders[0].first.getName() << "', '"
          << decoders[1].first.getName() << "')";
      return signalPassFailure();
    }
    auto [graph, signature] = decoders.front();
    SymbolTable symbols(module);
    func::FuncOp after = graph;
    SmallVector<EntryKind> kinds = {EntryKind::Prefill, EntryKind::Decode};
    if (verify)
      kinds.push_back(EntryKind::Verify);
    for (EntryKind kind : kinds) {
      FailureOr<func::FuncOp> entry = addEntry(symbols, graph, after, signature, kind);
      if (failed(entry))
        return signalPassFailure();
      after = *entry;
    }
  }

  /// Adds the entry of this kind after `after`.
  FailureOr<func::FuncOp> addEntry(SymbolTable &symbols, func::FuncOp graph, func::FuncOp after,
                                   const DecoderSignature &signature, EntryKind kind) {
    StringRef name = stringifyEntryKind(kind);
    if (symbols.lookup(name))
      return graph.emitError("cannot add the '")
             << name << "' entry: the module already has a symbol of that name";
    auto entry = cast<func::FuncOp>(graph->clone());
    entry.setName(name);
    entry->setAttr(HastenDialect::kEntryKindAttrName,
                   StringAttr::get(entry.getContext(), name));
    symbols.insert(entry, std::next(Block::iterator(after)));
    if (failed(specializeArguments(entry, signature, kind)) ||
        failed(computeInputs(entry, signature, kind)))
      return failure();
    // Verification scores every token it is given; the others feed
    // generation, which reads the last position only.
    if (kind != EntryKind::Verify)
      sliceLastPosition(entry, signature.logits);
    // The last-position slice bubbles up one producer per sweep, so a deep
    // entry (a Llama's RoPE and RMSNorm chains) takes more sweeps than the
    // driver's default ten; a cycle would still stop at the bound.
    GreedyRewriteConfig config;
    config.setMaxIterations(64);
    if (failed(applyPatternsGreedily(entry, *patterns, config)))
      return entry.emitError("the specialized shapes did not settle");
    refineResultTypes(entry);
    // The folders leave one tensor.dim per former cast; keep one of each.
    IRRewriter rewriter(entry.getContext());
    DominanceInfo dominance(entry);
    eliminateCommonSubExpressions(rewriter, dominance, entry);
    setRoles(entry);
    return entry;
  }

  /// Batch 1 everywhere, one token in `input_ids` when decoding. The body
  /// still sees the declared types through casts until the folders run.
  LogicalResult specializeArguments(func::FuncOp entry, const DecoderSignature &signature,
                                    EntryKind kind) {
    Block &body = entry.front();
    OpBuilder b = OpBuilder::atBlockBegin(&body);
    for (BlockArgument arg : body.getArguments()) {
      unsigned index = arg.getArgNumber();
      if (index == signature.attentionMask || index == signature.positionIds)
        continue;
      auto type = dyn_cast<RankedTensorType>(arg.getType());
      if (!type || type.getRank() == 0)
        continue;
      SmallVector<int64_t> shape(type.getShape());
      if (shape[0] != 1 && !ShapedType::isDynamic(shape[0]))
        return entry.emitError("decoder entries run one sequence, but '")
               << argumentName(entry, index) << "' has batch " << shape[0];
      shape[0] = 1;
      if (index == signature.inputIds) {
        if (type.getRank() != 2)
          return entry.emitError("'input_ids' must be [batch, sequence], got ") << type;
        shape[1] = kind == EntryKind::Decode ? 1 : shape[1];
      }
      auto specialized = RankedTensorType::get(shape, type.getElementType());
      if (specialized == type)
        continue;
      if (kind == EntryKind::Decode && index == signature.inputIds && !type.isDynamicDim(1) &&
          type.getDimSize(1) != 1)
        return entry.emitError("a decode entry takes one token, but 'input_ids' is ") << type;
      arg.setType(specialized);
      auto cast = tensor::CastOp::create(b, arg.getLoc(), type, arg);
      arg.replaceAllUsesExcept(cast, cast);
    }
    entry.setType(FunctionType::get(entry.getContext(), body.getArgumentTypes(),
                                    entry.getResultTypes()));
    return success();
  }

  /// position_ids = past + [0, seq) and attention_mask = ones(past + seq),
  /// where past is the length of the first past key; both arguments go.
  LogicalResult computeInputs(func::FuncOp entry, const DecoderSignature &signature,
                              EntryKind kind) {
    Block &body = entry.front();
    OpBuilder b = OpBuilder::atBlockBegin(&body);
    Location loc = NameLoc::get(b.getStringAttr("decoder_positions"), entry.getLoc());
    Value past = tensor::DimOp::create(b, loc, body.getArgument(signature.pastKey), 2);
    Value seq = kind == EntryKind::Decode
                    ? Value(arith::ConstantIndexOp::create(b, loc, 1))
                    : Value(tensor::DimOp::create(b, loc, body.getArgument(signature.inputIds), 1));
    llvm::BitVector erase(entry.getNumArguments());

    if (signature.positionIds) {
      FailureOr<RankedTensorType> type = computedInputType(entry, *signature.positionIds);
      if (failed(type))
        return failure();
      Type element = type->getElementType();
      Value empty = tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{b.getIndexAttr(1), seq},
                                            element);
      auto positions = linalg::GenericOp::create(
          b, loc, empty.getType(), ValueRange{}, ValueRange{empty},
          ArrayRef<AffineMap>{b.getMultiDimIdentityMap(2)},
          ArrayRef<utils::IteratorType>{utils::IteratorType::parallel,
                                        utils::IteratorType::parallel},
          [&](OpBuilder &nb, Location nl, ValueRange) {
            Value index = linalg::IndexOp::create(nb, nl, 1);
            Value position = arith::AddIOp::create(nb, nl, past, index);
            linalg::YieldOp::create(
                nb, nl, convertScalarToDtype(nb, nl, position, element, /*isUnsignedCast=*/false));
          });
      Value cast = tensor::CastOp::create(b, loc, *type, positions.getResult(0));
      body.getArgument(*signature.positionIds).replaceAllUsesWith(cast);
      erase.set(*signature.positionIds);
    }
    if (signature.attentionMask) {
      FailureOr<RankedTensorType> type = computedInputType(entry, *signature.attentionMask);
      if (failed(type))
        return failure();
      Value total = arith::AddIOp::create(b, loc, past, seq);
      Value empty = tensor::EmptyOp::create(
          b, loc, ArrayRef<OpFoldResult>{b.getIndexAttr(1), total}, type->getElementType());
      Value one = arith::ConstantOp::create(b, loc, b.getOneAttr(type->getElementType()));
      Value mask = linalg::FillOp::create(b, loc, one, empty).getResult(0);
      Value cast = tensor::CastOp::create(b, loc, *type, mask);
      body.getArgument(*signature.attentionMask).replaceAllUsesWith(cast);
      erase.set(*signature.attentionMask);
    }
    return entry.eraseArguments(erase);
  }

  /// Generation reads the last position's logits only: returning that row
  /// lets the bubbling patterns shrink the LM head to one row.
  void sliceLastPosition(func::FuncOp entry, unsigned logitsIndex) {
    Operation *ret = entry.front().getTerminator();
    Value logits = ret->getOperand(logitsIndex);
    auto type = dyn_cast<RankedTensorType>(logits.getType());
    if (!type || type.getRank() != 3)
      return;
    OpBuilder b(ret);
    Location loc = NameLoc::get(b.getStringAttr("last_position_logits"), entry.getLoc());
    Value length = tensor::DimOp::create(b, loc, logits, 1);
    Value last = arith::SubIOp::create(b, loc, length, arith::ConstantIndexOp::create(b, loc, 1));
    SmallVector<OpFoldResult> offsets = {b.getIndexAttr(0), last, b.getIndexAttr(0)};
    SmallVector<OpFoldResult> sizes = {b.getIndexAttr(1), b.getIndexAttr(1),
                                       tensor::getMixedSize(b, loc, logits, 2)};
    SmallVector<OpFoldResult> strides(3, b.getIndexAttr(1));
    Value row = tensor::ExtractSliceOp::create(b, loc, logits, offsets, sizes, strides);
    ret->setOperand(logitsIndex, row);
  }

  /// The results keep the shapes the body now knows, not the declared ones.
  void refineResultTypes(func::FuncOp entry) {
    Operation *ret = entry.front().getTerminator();
    for (OpOperand &operand : ret->getOpOperands())
      if (auto cast = operand.get().getDefiningOp<tensor::CastOp>();
          cast && tensor::preservesStaticInformation(cast.getType(), cast.getSource().getType()))
        operand.set(cast.getSource());
    for (Operation &op : llvm::make_early_inc_range(llvm::reverse(entry.front())))
      if (isa<tensor::CastOp>(op) && op.use_empty())
        op.erase();
    entry.setType(FunctionType::get(entry.getContext(), entry.getArgumentTypes(),
                                    ret->getOperandTypes()));
  }

  void setRoles(func::FuncOp entry) {
    auto role = [&](TensorRole value) {
      return StringAttr::get(entry.getContext(), stringifyTensorRole(value));
    };
    if (std::optional<unsigned> ids = findArgument(entry, "input_ids"))
      entry.setArgAttr(*ids, HastenDialect::kRoleAttrName, role(TensorRole::TokenIds));
    if (std::optional<unsigned> logits = findResult(entry, "logits"))
      entry.setResultAttr(*logits, HastenDialect::kRoleAttrName, role(TensorRole::Logits));
  }

  std::shared_ptr<const FrozenRewritePatternSet> patterns;
};

} // namespace
