//===- HastenOps.cpp - hasten dialect operations ---------------------------===//

#include "hasten/Dialect/Hasten/HastenDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/OpImplementation.h"

#include <cmath>

using namespace mlir;
using namespace hasten;

/// Prints a shape as `[1, ?, 64]` for diagnostics.
static std::string formatShape(ArrayRef<int64_t> shape) {
  std::string text = "[";
  llvm::raw_string_ostream os(text);
  llvm::interleaveComma(shape, os, [&](int64_t dim) {
    if (ShapedType::isDynamic(dim))
      os << "?";
    else
      os << dim;
  });
  os << "]";
  return text;
}

/// Two dimensions agree unless both are static and differ.
static bool dimsAgree(int64_t a, int64_t b) {
  return ShapedType::isDynamic(a) || ShapedType::isDynamic(b) || a == b;
}

//===----------------------------------------------------------------------===//
// AttentionOp
//===----------------------------------------------------------------------===//

LogicalResult AttentionOp::inferReturnTypes(
    MLIRContext *, std::optional<Location>, Adaptor adaptor,
    SmallVectorImpl<Type> &inferredReturnTypes) {
  auto queryType = dyn_cast<RankedTensorType>(adaptor.getQuery().getType());
  auto valueType = dyn_cast<RankedTensorType>(adaptor.getValue().getType());
  // Rank errors are reported by the operand type constraints.
  if (!queryType || !valueType || queryType.getRank() != 4 ||
      valueType.getRank() != 4)
    return failure();
  ArrayRef<int64_t> q = queryType.getShape();
  inferredReturnTypes.push_back(RankedTensorType::get(
      {q[0], q[1], q[2], valueType.getDimSize(3)},
      queryType.getElementType()));
  return success();
}

LogicalResult AttentionOp::verify() {
  RankedTensorType queryType = getQuery().getType();
  RankedTensorType keyType = getKey().getType();
  RankedTensorType valueType = getValue().getType();
  ArrayRef<int64_t> q = queryType.getShape(), k = keyType.getShape(),
                    v = valueType.getShape();
  int64_t numHeads = getNumHeads(), numKvHeads = getNumKvHeads();

  if (numHeads <= 0)
    return emitOpError("num_heads must be positive, got ") << numHeads;
  if (numKvHeads <= 0)
    return emitOpError("num_kv_heads must be positive, got ") << numKvHeads;
  if (numHeads % numKvHeads != 0)
    return emitOpError("num_heads (")
           << numHeads << ") must be a multiple of num_kv_heads ("
           << numKvHeads << ")";
  if (queryType.getElementType() != keyType.getElementType() ||
      queryType.getElementType() != valueType.getElementType())
    return emitOpError("query, key and value must share one element type, got ")
           << queryType.getElementType() << ", " << keyType.getElementType()
           << " and " << valueType.getElementType();
  if (!dimsAgree(q[0], k[0]) || !dimsAgree(q[0], v[0]) || !dimsAgree(k[0], v[0]))
    return emitOpError("batch sizes of query ")
           << formatShape(q) << ", key " << formatShape(k) << " and value "
           << formatShape(v) << " differ";
  if (!dimsAgree(q[1], numHeads))
    return emitOpError("query has ")
           << q[1] << " heads but num_heads is " << numHeads;
  if (!dimsAgree(k[1], numKvHeads))
    return emitOpError("key has ")
           << k[1] << " heads but num_kv_heads is " << numKvHeads;
  if (!dimsAgree(v[1], numKvHeads))
    return emitOpError("value has ")
           << v[1] << " heads but num_kv_heads is " << numKvHeads;
  if (!dimsAgree(q[3], k[3]))
    return emitOpError("query head_dim (")
           << q[3] << ") does not match key head_dim (" << k[3] << ")";
  if (!dimsAgree(k[2], v[2]))
    return emitOpError("key length (")
           << k[2] << ") does not match value length (" << v[2] << ")";

  if (std::optional<APFloat> scale = getScale()) {
    double s = scale->convertToDouble();
    if (!(s > 0.0) || std::isinf(s))
      return emitOpError("scale must be positive and finite, got ") << s;
  }

  if (Value mask = getMask()) {
    auto maskType = cast<RankedTensorType>(mask.getType());
    Type maskElement = maskType.getElementType();
    if (!maskElement.isInteger(1) && maskElement != queryType.getElementType())
      return emitOpError("mask element type must be i1 or the query element "
                         "type ")
             << queryType.getElementType() << ", got " << maskElement;
    if (maskType.getRank() > 4)
      return emitOpError("mask has rank ")
             << maskType.getRank() << " but scores have rank 4";
    // The scores are [batch, num_heads, q_len, kv_len]; the mask broadcasts
    // to them from the right.
    SmallVector<int64_t, 4> scores = {q[0], numHeads, q[2], k[2]};
    ArrayRef<int64_t> m = maskType.getShape();
    for (int64_t i = 0, e = m.size(); i < e; ++i) {
      int64_t maskDim = m[e - 1 - i], scoreDim = scores[3 - i];
      if (maskDim != 1 && !dimsAgree(maskDim, scoreDim))
        return emitOpError("mask shape ")
               << formatShape(m) << " does not broadcast to the scores shape "
               << formatShape(scores);
    }
  }
  return success();
}

std::optional<SmallVector<Value>> hasten::sourcesOfFoldableCasts(ValueRange operands) {
  bool changed = false;
  SmallVector<Value> sources;
  for (Value operand : operands) {
    auto cast = operand.getDefiningOp<tensor::CastOp>();
    bool fold = cast && tensor::canFoldIntoConsumerOp(cast);
    sources.push_back(fold ? cast.getSource() : operand);
    changed |= fold;
  }
  if (!changed)
    return std::nullopt;
  return sources;
}

namespace {

/// attention(cast(%q : static -> dynamic), ...) computes on %q directly: the
/// result type is re-inferred and cast back to the type users expect.
struct FoldCastOperandsIntoAttention : public OpRewritePattern<AttentionOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(AttentionOp op, PatternRewriter &rewriter) const override {
    std::optional<SmallVector<Value>> operands = sourcesOfFoldableCasts(op->getOperands());
    if (!operands)
      return failure();
    auto folded = cast<AttentionOp>(rewriter.clone(*op.getOperation()));
    rewriter.modifyOpInPlace(folded, [&] {
      folded->setOperands(*operands);
      SmallVector<Type> inferred;
      if (succeeded(AttentionOp::inferReturnTypes(
              getContext(), folded.getLoc(), folded->getOperands(),
              folded->getAttrDictionary(), folded->getPropertiesStorage(),
              folded->getRegions(), inferred)))
        folded.getResult().setType(cast<RankedTensorType>(inferred.front()));
    });
    Value result = folded.getResult();
    if (result.getType() != op.getType())
      result = tensor::CastOp::create(rewriter, op.getLoc(), op.getType(), result);
    rewriter.replaceOp(op, result);
    return success();
  }
};

} // namespace

void AttentionOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                              MLIRContext *context) {
  results.add<FoldCastOperandsIntoAttention>(context);
}

std::optional<double> AttentionOp::getEffectiveScale() {
  if (std::optional<APFloat> scale = getScale())
    return scale->convertToDouble();
  int64_t headDim = getQuery().getType().getDimSize(3);
  if (ShapedType::isDynamic(headDim))
    return std::nullopt;
  return 1.0 / std::sqrt(static_cast<double>(headDim));
}

//===----------------------------------------------------------------------===//
// KV cache ops
//===----------------------------------------------------------------------===//

/// Checks `layer` against the cache's layer count.
static LogicalResult verifyLayer(Operation *op, KVCacheType cacheType,
                                 int64_t layer) {
  if (layer < 0 || layer >= cacheType.getNumLayers())
    return op->emitOpError("layer ")
           << layer << " is out of range for a cache of "
           << cacheType.getNumLayers() << " layers";
  return success();
}

LogicalResult KVCacheAppendOp::verify() {
  KVCacheType cacheType = getCache().getType();
  if (failed(verifyLayer(*this, cacheType, getLayer())))
    return failure();
  RankedTensorType keyType = getKey().getType();
  if (keyType != getValue().getType())
    return emitOpError("key type ")
           << keyType << " and value type " << getValue().getType()
           << " must match";
  if (keyType.getElementType() != cacheType.getElementType())
    return emitOpError("key element type ")
           << keyType.getElementType()
           << " does not match the cache element type "
           << cacheType.getElementType();
  ArrayRef<int64_t> shape = keyType.getShape();
  if (!dimsAgree(shape[0], 1))
    return emitOpError("keys must have batch size 1 (a cache holds one "
                       "sequence), got ")
           << shape[0];
  if (!dimsAgree(shape[1], cacheType.getNumKvHeads()))
    return emitOpError("keys have ")
           << shape[1] << " heads but the cache has "
           << cacheType.getNumKvHeads();
  if (!dimsAgree(shape[3], cacheType.getHeadDim()))
    return emitOpError("keys have head_dim ")
           << shape[3] << " but the cache has " << cacheType.getHeadDim();

  int64_t tokens = shape[2];
  if (ShapedType::isDynamic(tokens))
    return success();
  if (tokens > cacheType.getCapacity())
    return emitOpError("appending ")
           << tokens << " tokens exceeds the cache capacity of "
           << cacheType.getCapacity();
  APInt position;
  if (matchPattern(getPosition(), m_ConstantInt(&position))) {
    int64_t pos = position.getSExtValue();
    if (pos < 0)
      return emitOpError("position must be non-negative, got ") << pos;
    if (pos + tokens > cacheType.getCapacity())
      return emitOpError("appending ")
             << tokens << " tokens at position " << pos
             << " exceeds the cache capacity of " << cacheType.getCapacity();
  }
  return success();
}

LogicalResult KVCacheViewOp::inferReturnTypes(
    MLIRContext *, std::optional<Location>, Adaptor adaptor,
    SmallVectorImpl<Type> &inferredReturnTypes) {
  auto cacheType = dyn_cast<KVCacheType>(adaptor.getCache().getType());
  if (!cacheType)
    return failure();
  auto viewType = RankedTensorType::get(
      {1, cacheType.getNumKvHeads(), ShapedType::kDynamic,
       cacheType.getHeadDim()},
      cacheType.getElementType());
  inferredReturnTypes.assign({viewType, viewType});
  return success();
}

LogicalResult KVCacheViewOp::verify() {
  KVCacheType cacheType = getCache().getType();
  if (failed(verifyLayer(*this, cacheType, getLayer())))
    return failure();
  APInt length;
  if (matchPattern(getLength(), m_ConstantInt(&length)) &&
      (length.isNegative() ||
       length.getSExtValue() > cacheType.getCapacity()))
    return emitOpError("length ")
           << length.getSExtValue() << " is outside the cache capacity of "
           << cacheType.getCapacity();
  return success();
}

LogicalResult PagedKVReadOp::verify() {
  MemRefType pool = getPool().getType();
  auto result = cast<RankedTensorType>(getResult().getType());
  if (getPart() != 0 && getPart() != 1)
    return emitOpError("part ") << getPart() << " is neither keys (0) nor values (1)";
  int64_t layer = static_cast<int64_t>(getLayer());
  if (layer < 0 || (!pool.isDynamicDim(1) && layer >= pool.getDimSize(1)))
    return emitOpError("layer ") << getLayer() << " is outside the pool's "
                                 << pool.getDimSize(1) << " layers";
  if (!pool.isDynamicDim(2) && pool.getDimSize(2) != 2)
    return emitOpError("the pool's third dimension must be 2 (keys and values), not ")
           << pool.getDimSize(2);
  if (result.getElementType() != pool.getElementType())
    return emitOpError("result element type ")
           << result.getElementType() << " is not the pool's " << pool.getElementType();
  // [1, kv_heads, length, head_dim] from the pool's kv_heads and head_dim.
  auto matches = [](int64_t a, int64_t b) {
    return ShapedType::isDynamic(a) || ShapedType::isDynamic(b) || a == b;
  };
  if (!matches(result.getDimSize(0), 1) || !matches(result.getDimSize(1), pool.getDimSize(3)) ||
      !matches(result.getDimSize(3), pool.getDimSize(5)))
    return emitOpError("result ") << result << " is not [1, kv_heads, length, head_dim] of the "
                                  << "pool " << pool;
  return success();
}

LogicalResult DecodeStepOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  auto callee = symbolTable.lookupNearestSymbolFrom<func::FuncOp>(*this, getCalleeAttr());
  if (!callee)
    return emitOpError("'") << getCallee() << "' is not a function";
  auto kind = callee->getAttrOfType<StringAttr>(HastenDialect::kEntryKindAttrName);
  std::optional<EntryKind> parsed = kind ? symbolizeEntryKind(kind.getValue()) : std::nullopt;
  if (parsed != EntryKind::Prefill && parsed != EntryKind::Decode && parsed != EntryKind::Verify)
    return emitOpError("'") << getCallee()
                            << "' is not a prefill, decode or verify entry (hasten.entry_kind)";
  // The callee's tensors by role: one of each, of compatible types.
  auto roleOf = [&](DictionaryAttr attrs) {
    auto role = attrs ? attrs.getAs<StringAttr>(HastenDialect::kRoleAttrName) : StringAttr();
    return role ? symbolizeTensorRole(role.getValue()) : std::nullopt;
  };
  bool tokens = false, cache = false, past = false, logits = false;
  for (unsigned i = 0; i < callee.getNumArguments(); ++i) {
    Type type = callee.getArgumentTypes()[i];
    switch (roleOf(callee.getArgAttrDict(i)).value_or(TensorRole::None)) {
    case TensorRole::TokenIds:
      tokens = succeeded(verifyCompatibleShape(type, getTokens().getType())) &&
               cast<ShapedType>(type).getElementType() == getTokens().getType().getElementType();
      if (!tokens)
        return emitOpError("tokens ") << getTokens().getType() << " do not fit '" << getCallee()
                                      << "''s token ids " << type;
      break;
    case TensorRole::KVCache:
      cache = type == getCache().getType();
      if (!cache)
        return emitOpError("the cache ") << getCache().getType() << " is not '" << getCallee()
                                         << "''s " << type;
      break;
    case TensorRole::PastLength:
      past = type == getPastLength().getType();
      break;
    default:
      return emitOpError("'") << getCallee() << "' takes argument " << i
                              << " that is not token ids, a KV cache or its past length";
    }
  }
  for (unsigned i = 0; i < callee.getNumResults(); ++i)
    if (roleOf(callee.getResultAttrDict(i)) == TensorRole::Logits) {
      Type type = callee.getResultTypes()[i];
      logits = succeeded(verifyCompatibleShape(type, getLogits().getType())) &&
               cast<ShapedType>(type).getElementType() == getLogits().getType().getElementType();
      if (!logits)
        return emitOpError("logits ") << getLogits().getType() << " do not fit '"
                                      << getCallee() << "''s " << type;
    }
  if (!tokens || !cache || !past || !logits || callee.getNumResults() != 1)
    return emitOpError("'") << getCallee()
                            << "' must take token ids, a KV cache and its past length, and "
                               "return only logits (run --hasten-plan-kv-cache first)";
  return success();
}

//===----------------------------------------------------------------------===//
// GpuGemmOp
//===----------------------------------------------------------------------===//

/// `async [%t0, %t1]` as the gpu dialect's ops write their tokens: `async`
/// when the op returns one, the brackets when it depends on any.
static ParseResult
parseGpuAsyncDependencies(OpAsmParser &parser, Type &asyncTokenType,
                          SmallVectorImpl<OpAsmParser::UnresolvedOperand> &dependencies) {
  if (succeeded(parser.parseOptionalKeyword("async")))
    asyncTokenType = parser.getBuilder().getType<gpu::AsyncTokenType>();
  return parser.parseOperandList(dependencies, OpAsmParser::Delimiter::OptionalSquare);
}

static void printGpuAsyncDependencies(OpAsmPrinter &printer, Operation *, Type asyncTokenType,
                                      OperandRange dependencies) {
  if (asyncTokenType)
    printer << "async";
  if (dependencies.empty())
    return;
  if (asyncTokenType)
    printer << ' ';
  printer << '[' << dependencies << ']';
}

LogicalResult GpuGemmOp::verify() {
  auto lhs = cast<MemRefType>(getLhs().getType());
  auto rhs = cast<MemRefType>(getRhs().getType());
  auto out = cast<MemRefType>(getOut().getType());
  int64_t rank = out.getRank();
  if ((rank != 2 && rank != 3) || lhs.getRank() != rank || rhs.getRank() != rank)
    return emitOpError("takes matrices (rank 2) or batches of them (rank 3) of one rank, got ")
           << lhs << ", " << rhs << " into " << out;
  Type element = lhs.getElementType();
  if (!element.isF32() && !element.isBF16() && !element.isF16())
    return emitOpError("operands must be f32, bf16 or f16, got ") << element;
  if (rhs.getElementType() != element)
    return emitOpError("operands must have one element type, got ")
           << element << " and " << rhs.getElementType();
  if (!out.getElementType().isF32() && out.getElementType() != element)
    return emitOpError("the product must be f32 or ")
           << element << ", got " << out.getElementType();
  if (getTf32() && !element.isF32())
    return emitOpError("tf32 rounds f32 operands; these are ") << element;
  // [.., M, K] x [.., K, N] -> [.., M, N], where the sizes are known.
  auto equal = [](int64_t a, int64_t b) {
    return ShapedType::isDynamic(a) || ShapedType::isDynamic(b) || a == b;
  };
  int64_t m = rank - 2, n = rank - 1;
  if (!equal(lhs.getDimSize(m), out.getDimSize(m)) ||
      !equal(lhs.getDimSize(n), rhs.getDimSize(m)) ||
      !equal(rhs.getDimSize(n), out.getDimSize(n)))
    return emitOpError("shapes do not multiply: ") << lhs << " x " << rhs << " into " << out;
  if (rank == 3)
    for (MemRefType operand : {lhs, rhs})
      if (!equal(operand.getDimSize(0), out.getDimSize(0)) && operand.getDimSize(0) != 1)
        return emitOpError("batch of ") << operand << " does not broadcast to " << out;
  if (Value bias = getBias()) {
    auto type = cast<MemRefType>(bias.getType());
    if (type.getRank() != 1 || !equal(type.getDimSize(0), out.getDimSize(n)) ||
        type.getElementType() != out.getElementType())
      return emitOpError("bias must be one ")
             << out.getElementType() << " per column of the product, got " << type;
  }
  if (std::optional<StringRef> activation = getActivation();
      activation && *activation != "relu" && *activation != "gelu_tanh")
    return emitOpError("activation must be relu or gelu_tanh, got '") << *activation << "'";
  return success();
}

#define GET_OP_CLASSES
#include "hasten/Dialect/Hasten/HastenOps.cpp.inc"

//===----------------------------------------------------------------------===//
// SamplerLoopOp
//===----------------------------------------------------------------------===//

/// The checks both sampler ops share: the prediction fits the rule, and the
/// schedule has one value per timestep and the end, in range.
static LogicalResult verifySchedule(Operation *op, StringRef rule, StringRef prediction,
                                    ArrayRef<double> timesteps, ArrayRef<double> schedule) {
  auto emit = [&] { return op->emitOpError(); };
  if (rule == "euler-flow" ? prediction != "velocity"
                           : prediction != "eps" && prediction != "v" && prediction != "sample")
    return emit() << "a " << rule << " sampler takes "
                  << (rule == "euler-flow" ? "velocity" : "eps, v or sample")
                  << " predictions, not '" << prediction << "'";
  if (timesteps.empty())
    return emit() << "needs at least one timestep";
  if (schedule.size() != timesteps.size() + 1)
    return emit() << "needs " << timesteps.size() + 1
                  << " schedule values (one per timestep and the end), got " << schedule.size();
  for (double value : schedule)
    if (!std::isfinite(value) || (rule != "euler-flow" && (value <= 0 || value > 1)))
      return emit() << "schedule value " << value
                    << (rule == "euler-flow" ? " is not finite" : " is not an alpha in (0, 1]");
  return success();
}

LogicalResult SamplerLoopOp::verify() {
  StringRef rule = getRule(), prediction = getPrediction(), cfg = getCfg();
  if (rule != "euler-flow" && rule != "ddim" && rule != "consistency")
    return emitOpError("rule '") << rule << "' is not euler-flow, ddim or consistency";
  if (failed(verifySchedule(*this, rule, prediction, getTimesteps(), getSchedule())))
    return failure();
  size_t steps = getTimesteps().size();
  if (cfg != "none" && cfg != "full" && cfg != "rcfg-self" && cfg != "rcfg-onetime")
    return emitOpError("cfg '") << cfg << "' is not none, full, rcfg-self or rcfg-onetime";
  if (cfg.starts_with("rcfg") && (rule == "euler-flow" || prediction != "eps"))
    return emitOpError("residual CFG needs eps prediction (a ddim or consistency sampler)");
  bool negative = cfg == "full" || cfg == "rcfg-onetime";
  if (getNegative().size() != (negative ? getConditioning().size() : 0))
    return emitOpError("cfg '") << cfg << "' takes "
                                << (negative ? getConditioning().size() : 0)
                                << " negative conditioning tensors, got " << getNegative().size();
  for (auto [cond, neg] : llvm::zip(getConditioning(), getNegative()))
    if (cond.getType() != neg.getType())
      return emitOpError("negative conditioning ")
             << neg.getType() << " is not of its conditioning's type " << cond.getType();
  bool renoises = rule == "consistency" && steps > 1;
  if (bool(getRenoise()) != renoises)
    return emitOpError(renoises ? "a multi-step consistency sampler needs its renoise tensor"
                                : "only a multi-step consistency sampler takes renoise");
  auto sample = cast<RankedTensorType>(getSample().getType());
  if (getRenoise()) {
    SmallVector<int64_t> shape{int64_t(steps) - 1};
    llvm::append_range(shape, sample.getShape());
    if (cast<ShapedType>(getRenoise().getType()).getShape() != ArrayRef<int64_t>(shape))
      return emitOpError("renoise must be [steps - 1, sample...], got ")
             << getRenoise().getType();
  }
  if (getResult().getType() != sample)
    return emitOpError("the result ") << getResult().getType() << " is not the sample's type";
  if (getSampleIndex() == getTimeIndex())
    return emitOpError("the sample and time arguments must differ");
  return success();
}

/// Checks a sampler op's denoiser: it takes the sample, the time and the
/// conditioning (at `factor` times their batch), and returns one prediction
/// of the sample's type. `what` names the op's use ("sampler", "stream").
static LogicalResult verifyDenoiser(Operation *op, SymbolTableCollection &symbolTable,
                                    FlatSymbolRefAttr name, Type sample, ValueRange conditioning,
                                    uint64_t sampleIndex, uint64_t timeIndex, int64_t factor,
                                    bool scalarTime, StringRef what) {
  auto emit = [&] { return op->emitOpError(); };
  auto denoiser = symbolTable.lookupNearestSymbolFrom<func::FuncOp>(op, name);
  if (!denoiser)
    return emit() << "'" << name.getValue() << "' is not a function";
  FunctionType type = denoiser.getFunctionType();
  size_t args = type.getNumInputs();
  if (args != conditioning.size() + 2 || sampleIndex >= args || timeIndex >= args)
    return emit() << "'" << name.getValue() << "' takes " << args
                  << " arguments: the sample, the time and " << conditioning.size()
                  << " conditioning tensors do not fit";
  if (type.getNumResults() != 1)
    return emit() << "'" << name.getValue() << "' must return one prediction, returns "
                  << type.getNumResults();
  auto batched = [&](Type t) {
    auto tensor = cast<RankedTensorType>(t);
    SmallVector<int64_t> shape(tensor.getShape());
    if (!shape.empty())
      shape[0] *= factor;
    return RankedTensorType::get(shape, tensor.getElementType());
  };
  Type sampleType = batched(sample);
  if (type.getInput(sampleIndex) != sampleType || type.getResult(0) != sampleType)
    return emit() << "'" << name.getValue() << "' takes and returns samples of type "
                  << type.getInput(sampleIndex) << ", the " << what << " needs " << sampleType;
  auto time = dyn_cast<RankedTensorType>(type.getInput(timeIndex));
  int64_t batch = cast<RankedTensorType>(sampleType).getDimSize(0);
  if (!time || time.getRank() > 1 || (!scalarTime && time.getRank() == 0) ||
      (time.getRank() == 1 && time.getDimSize(0) != batch) ||
      !time.getElementType().isIntOrFloat())
    return emit() << "the time argument of '" << name.getValue() << "' is "
                  << type.getInput(timeIndex) << ", not " << (scalarTime ? "a scalar or " : "")
                  << "one value per batch element";
  unsigned next = 0;
  for (size_t i = 0; i < args; ++i) {
    if (i == sampleIndex || i == timeIndex)
      continue;
    Value cond = conditioning[next++];
    if (type.getInput(i) != batched(cond.getType()))
      return emit() << "conditioning " << next - 1 << " " << cond.getType()
                    << " does not fit argument " << i << " " << type.getInput(i) << " of '"
                    << name.getValue() << "'";
  }
  return success();
}

LogicalResult SamplerLoopOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  // With full CFG the denoiser sees the conditional and negative halves.
  return verifyDenoiser(*this, symbolTable, getDenoiserAttr(), getSample().getType(),
                        getConditioning(), getSampleIndex(), getTimeIndex(),
                        getCfg() == "full" ? 2 : 1, /*scalarTime=*/true, "sampler");
}

//===----------------------------------------------------------------------===//
// SamplerStreamOp
//===----------------------------------------------------------------------===//

/// `type` with a leading dimension of `frames`.
static RankedTensorType framesOf(Type type, int64_t frames) {
  auto tensor = cast<RankedTensorType>(type);
  SmallVector<int64_t> shape{frames};
  llvm::append_range(shape, tensor.getShape());
  return RankedTensorType::get(shape, tensor.getElementType());
}

LogicalResult SamplerStreamOp::verify() {
  StringRef rule = getRule();
  if (rule != "euler-flow" && rule != "ddim")
    return emitOpError("a stream batch runs ddim or euler-flow samplers, not '") << rule << "'";
  if (failed(verifySchedule(*this, rule, getPrediction(), getTimesteps(), getSchedule())))
    return failure();
  int64_t steps = getTimesteps().size();
  if (steps < 2)
    return emitOpError("a stream batch needs at least two steps");
  if (getState().getType() != framesOf(getSample().getType(), steps - 1))
    return emitOpError("the state must be [steps - 1, sample...] = ")
           << framesOf(getSample().getType(), steps - 1) << ", got " << getState().getType();
  if (getStateConditioning().size() != getConditioning().size() ||
      getNewStateConditioning().size() != getConditioning().size())
    return emitOpError("needs one state (and one new state) per conditioning tensor");
  for (auto [cond, state, next] :
       llvm::zip(getConditioning(), getStateConditioning(), getNewStateConditioning()))
    if (state.getType() != framesOf(cond.getType(), steps - 1) || next.getType() != state.getType())
      return emitOpError("conditioning state ")
             << state.getType() << " is not " << framesOf(cond.getType(), steps - 1);
  if (getResult().getType() != getSample().getType() ||
      getNewState().getType() != getState().getType())
    return emitOpError("the results must be a sample and the state, of their types");
  if (getSampleIndex() == getTimeIndex())
    return emitOpError("the sample and time arguments must differ");
  return success();
}

LogicalResult SamplerStreamOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  // Every frame in flight is a batch of rows, each at its own timestep.
  return verifyDenoiser(*this, symbolTable, getDenoiserAttr(), getSample().getType(),
                        getConditioning(), getSampleIndex(), getTimeIndex(),
                        getTimesteps().size(), /*scalarTime=*/false, "stream");
}
