//===- FuseAttention.cpp - decomposed attention as hasten.attention --------===//
//
// Exporters spell attention as two batched matmuls around a softmax, with
// the scale, masks, head repeats and transposes in between written in many
// ways. Imported op by op, that builds the q_len x kv_len score matrix; as
// one hasten.attention it runs tiled and never does. The match works on the
// imported linalg/tensor IR, so every frontend benefits, and proves each
// step before it rewrites:
//
//   - the anchor is a batch_matmul whose left operand is a softmax over the
//     last axis (linalg.softmax, or max/sub/exp/sum/div written out) of
//     [batch, heads, q_len, kv_len] scores;
//   - between the scores and the softmax, only scalar scales (before any
//     mask) and mask terms: `s + m`, and `select(c, s, k)` or
//     `select(c, k, s)` with k at most -1e30. Those are `s + g(0)` for the
//     chain g (exactly, in f32, because |s| is far below k's ulp), so the
//     masks become one additive mask that evaluates g at 0;
//   - the scores are a batch_matmul of Q and K^T; Q, K and V are followed
//     back through transposes, scalar scales (q * d^-1/4, k * d^-1/4) and
//     head repeats (a broadcast along the heads axis, or Llama's repeat_kv
//     through a rank-5 broadcast and a reshape), each with its dims checked
//     statically or proved equal by value-bounds analysis.
//
//===----------------------------------------------------------------------===//

#include "hasten/Dialect/Hasten/HastenDialect.h"
#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/Transforms/Transforms.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/BuiltinDialect.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"
#include "mlir/Interfaces/FunctionInterfaces.h"
#include "mlir/Interfaces/ValueBoundsOpInterface.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

#include "llvm/ADT/TypeSwitch.h"

#include <cmath>
#include <cstring>

namespace hasten {
#define GEN_PASS_DEF_FUSEATTENTION
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;
using namespace hasten;

namespace {

/// A masked-out score: exp(k - max) is 0 in f32 for any finite max of
/// real scores, and k + s == k for them.
constexpr double kMaskedScore = -1e30;

using Reason = std::string;

//===----------------------------------------------------------------------===//
// Small facts about values
//===----------------------------------------------------------------------===//

/// The value of a float tensor whose elements are all one constant: a
/// rank-0 or splat constant, a fill of a constant, or a scalar computation
/// on such values (exporters compute `sqrt(head_dim)` in the graph).
std::optional<double> scalarConstant(Value v, int depth = 8) {
  Attribute attr;
  if (matchPattern(v, m_Constant(&attr))) {
    if (auto f = dyn_cast<FloatAttr>(attr))
      return f.getValueAsDouble();
    if (auto i = dyn_cast<IntegerAttr>(attr))
      return (double)i.getValue().getSExtValue();
    if (auto dense = dyn_cast<DenseFPElementsAttr>(attr); dense && dense.isSplat())
      return dense.getSplatValue<APFloat>().convertToDouble();
    if (auto dense = dyn_cast<DenseIntElementsAttr>(attr); dense && dense.isSplat())
      return (double)dense.getSplatValue<APInt>().getSExtValue();
    return std::nullopt;
  }
  if (depth == 0)
    return std::nullopt;
  if (auto fill = v.getDefiningOp<linalg::FillOp>())
    return scalarConstant(fill.getInputs()[0], depth - 1);
  // A scalar computation: no loops, or loops over one element (exports
  // compute sqrt(head_dim) on [1] tensors).
  auto oneElement = [](Type type) {
    auto shaped = dyn_cast<RankedTensorType>(type);
    return shaped && shaped.hasStaticShape() && shaped.getNumElements() == 1;
  };
  auto g = v.getDefiningOp<linalg::GenericOp>();
  if (!g || g.getNumResults() != 1 ||
      (g.getNumLoops() != 0 && !oneElement(g->getResult(0).getType())))
    return std::nullopt;
  Block &body = g.getRegion().front();
  auto yield = cast<linalg::YieldOp>(body.getTerminator());
  if (!llvm::hasSingleElement(body.without_terminator()) || yield.getValues().size() != 1)
    return std::nullopt;
  Operation *op = &body.front();
  SmallVector<double> args;
  for (Value operand : op->getOperands()) {
    auto arg = dyn_cast<BlockArgument>(operand);
    if (!arg || arg.getOwner() != &body || arg.getArgNumber() >= g.getNumDpsInputs())
      return std::nullopt;
    std::optional<double> a = scalarConstant(g.getDpsInputs()[arg.getArgNumber()], depth - 1);
    if (!a)
      return std::nullopt;
    args.push_back(*a);
  }
  return llvm::TypeSwitch<Operation *, std::optional<double>>(op)
      .Case([&](arith::SIToFPOp) { return args[0]; })
      .Case([&](arith::ExtFOp) { return args[0]; })
      .Case([&](math::SqrtOp) { return std::sqrt(args[0]); })
      .Case([&](math::PowFOp) { return std::pow(args[0], args[1]); })
      .Case([&](arith::AddFOp) { return args[0] + args[1]; })
      .Case([&](arith::SubFOp) { return args[0] - args[1]; })
      .Case([&](arith::MulFOp) { return args[0] * args[1]; })
      .Case([&](arith::DivFOp) { return args[0] / args[1]; })
      .Case([&](arith::NegFOp) { return -args[0]; })
      .Default([](Operation *) { return std::nullopt; });
}

OpFoldResult dimOrigin(Value v, int64_t d, int depth = 16);

/// Where an index value comes from: the dim it reads, through index_cast
/// round trips (index -> i64 -> index, as shape arithmetic leaves them).
OpFoldResult indexOrigin(Value index, int depth = 16) {
  while (auto cast = index.getDefiningOp<arith::IndexCastOp>())
    index = cast.getIn();
  if (auto dim = index.getDefiningOp<tensor::DimOp>())
    if (std::optional<int64_t> c = dim.getConstantIndex(); c && depth > 0)
      return dimOrigin(dim.getSource(), *c, depth - 1);
  return index;
}

/// Where dim `d` of `v` comes from: a static size, or the index value that
/// defined it, followed through tensor.dim, tensor.empty, expand_shape's
/// output sizes, collapse groups of one, transposes and the inits of
/// destination-style ops.
OpFoldResult dimOrigin(Value v, int64_t d, int depth) {
  auto type = cast<ShapedType>(v.getType());
  if (!type.isDynamicDim(d))
    return IntegerAttr::get(IndexType::get(v.getContext()), type.getDimSize(d));
  auto origin = [&](Value index) { return indexOrigin(index, depth); };
  // A function argument's dim: its ONNX dim name when it has one (ONNX
  // gives equal-named dims of a graph's inputs one value: input_ids' and
  // the past keys' "batch_size"), else the argument and dim.
  if (auto arg = dyn_cast<BlockArgument>(v)) {
    auto func = dyn_cast<FunctionOpInterface>(arg.getOwner()->getParentOp());
    if (func && arg.getOwner()->isEntryBlock())
      if (auto names = func.getArgAttrOfType<ArrayAttr>(arg.getArgNumber(),
                                                       HastenDialect::kOnnxDimParamsAttrName))
        if (d < (int64_t)names.size())
          if (auto name = dyn_cast<StringAttr>(names[d]); name && !name.empty())
            return StringAttr::get(v.getContext(), "onnx:" + name.getValue());
    return StringAttr::get(v.getContext(), "arg" + std::to_string(arg.getArgNumber()) + "." +
                                               std::to_string(d));
  }
  Operation *def = v.getDefiningOp();
  if (!def || depth == 0)
    return IntegerAttr(); // unknown
  if (auto empty = dyn_cast<tensor::EmptyOp>(def))
    return origin(empty.getDynamicSize(d));
  if (auto expand = dyn_cast<tensor::ExpandShapeOp>(def)) {
    OpFoldResult size = expand.getMixedOutputShape()[d];
    if (auto value = dyn_cast<Value>(size))
      return origin(value);
    return size;
  }
  if (auto collapse = dyn_cast<tensor::CollapseShapeOp>(def)) {
    ReassociationIndices group = collapse.getReassociationIndices()[d];
    if (group.size() == 1)
      return dimOrigin(collapse.getSrc(), group[0], depth - 1);
  }
  if (auto cast = dyn_cast<tensor::CastOp>(def))
    return dimOrigin(cast.getSource(), d, depth - 1);
  if (auto concat = dyn_cast<tensor::ConcatOp>(def); concat && (uint64_t)d != concat.getDim())
    return dimOrigin(concat.getInputs()[0], d, depth - 1);
  if (auto transpose = dyn_cast<linalg::TransposeOp>(def))
    return dimOrigin(transpose.getInput(), transpose.getPermutation()[d], depth - 1);
  if (auto dps = dyn_cast<DestinationStyleOpInterface>(def))
    return dimOrigin(dps.getDpsInits()[cast<OpResult>(v).getResultNumber()], d, depth - 1);
  return IntegerAttr(); // unknown
}

/// Whether dim `da` of `a` and dim `db` of `b` are equal: statically, by
/// a common origin, or proved by value-bounds analysis.
bool sameDim(Value a, int64_t da, Value b, int64_t db) {
  int64_t sa = cast<ShapedType>(a.getType()).getDimSize(da);
  int64_t sb = cast<ShapedType>(b.getType()).getDimSize(db);
  if (!ShapedType::isDynamic(sa) && !ShapedType::isDynamic(sb))
    return sa == sb;
  OpFoldResult oa = dimOrigin(a, da), ob = dimOrigin(b, db);
  if (oa && oa == ob)
    return true;
  FailureOr<bool> equal = ValueBoundsConstraintSet::areEqual(
      ValueBoundsConstraintSet::Variable(a, da), ValueBoundsConstraintSet::Variable(b, db));
  return succeeded(equal) && *equal;
}

int64_t rankOf(Value v) { return cast<ShapedType>(v.getType()).getRank(); }
int64_t dimOf(Value v, int64_t d) { return cast<ShapedType>(v.getType()).getDimSize(d); }

/// `v` with reshapes (collapse, expand, cast) looked through.
Value throughReshapes(Value v) {
  while (Operation *op = v.getDefiningOp()) {
    if (auto c = dyn_cast<tensor::CollapseShapeOp>(op))
      v = c.getSrc();
    else if (auto e = dyn_cast<tensor::ExpandShapeOp>(op))
      v = e.getSrc();
    else if (auto cast = dyn_cast<tensor::CastOp>(op))
      v = cast.getSource();
    else
      break;
  }
  return v;
}

/// Whether `g` is elementwise over its rank-`rank` result: parallel loops,
/// one identity-mapped result.
bool isElementwise(linalg::GenericOp g, int64_t rank) {
  return g && g.getNumDpsInits() == 1 && g.getNumLoops() == rank &&
         g.getNumReductionLoops() == 0 &&
         g.getMatchingIndexingMap(g.getDpsInitOperand(0)).isIdentity();
}

/// The one computation of a generic whose body is `yield op(...)`.
Operation *singleBodyOp(linalg::GenericOp g) {
  Block &body = g.getRegion().front();
  if (!llvm::hasSingleElement(body.without_terminator()))
    return nullptr;
  Operation *op = &body.front();
  auto yield = cast<linalg::YieldOp>(body.getTerminator());
  return yield.getValues().size() == 1 && yield.getValues()[0] == op->getResult(0) ? op
                                                                                  : nullptr;
}

/// The constant a value in `g`'s body stands for: a constant itself, or a
/// block argument of an input that scalarConstant recognizes.
std::optional<double> constantInBody(linalg::GenericOp g, Value v) {
  if (auto arg = dyn_cast<BlockArgument>(v); arg && arg.getOwner() == &g.getRegion().front())
    return arg.getArgNumber() < g.getNumDpsInputs()
               ? scalarConstant(g.getDpsInputs()[arg.getArgNumber()])
               : std::nullopt;
  return scalarConstant(v);
}

/// When `v` is a rank-4 elementwise generic with `inputs` inputs whose
/// body is `OpTy(first input, ...)`, the first input identity-mapped:
/// that generic.
template <typename OpTy>
linalg::GenericOp elementwiseOf(Value v, unsigned inputs) {
  auto g = v.getDefiningOp<linalg::GenericOp>();
  if (!isElementwise(g, 4) || g.getNumDpsInputs() != inputs)
    return {};
  Operation *op = singleBodyOp(g);
  if (!isa_and_nonnull<OpTy>(op) || op->getOperand(0) != g.getRegion().front().getArgument(0) ||
      !g.getMatchingIndexingMap(g.getDpsInputOperand(0)).isIdentity())
    return {};
  return g;
}

/// Whether `g` copies its only input (the body yields it).
bool isCopy(linalg::GenericOp g) {
  if (!g || g.getNumDpsInputs() != 1 || g.getNumDpsInits() != 1)
    return false;
  Block &body = g.getRegion().front();
  auto yield = cast<linalg::YieldOp>(body.getTerminator());
  return &body.front() == yield.getOperation() && yield.getValues().size() == 1 &&
         yield.getValues()[0] == body.getArgument(0);
}

/// torch.onnx's scaled_dot_product_attention replaces NaN probabilities by
/// zeros (`Where(IsNaN(p), 0, p)`): a row whose every key is masked with
/// -inf is 0 / 0. hasten.attention gives such a row zeros itself, so the
/// guard belongs to the attention. When `guarded` is `select(p != p, 0, p)`
/// (the comparison in its own generic, as imported) and p is read by the
/// guard alone: p.
Value nanGuardedProbabilities(Value guarded) {
  auto guard = guarded.getDefiningOp<linalg::GenericOp>();
  if (!isElementwise(guard, 4) || guard.getNumDpsInputs() != 3)
    return {};
  auto select = dyn_cast_or_null<arith::SelectOp>(singleBodyOp(guard));
  if (!select)
    return {};
  Block &body = guard.getRegion().front();
  auto inputOf = [&](Value arg) -> OpOperand * {
    auto a = dyn_cast<BlockArgument>(arg);
    return a && a.getOwner() == &body && a.getArgNumber() < 3
               ? guard.getDpsInputOperand(a.getArgNumber())
               : nullptr;
  };
  OpOperand *isNan = inputOf(select.getCondition()), *zero = inputOf(select.getTrueValue()),
            *probs = inputOf(select.getFalseValue());
  if (!isNan || !zero || !probs || scalarConstant(zero->get()) != std::optional<double>(0.0) ||
      !guard.getMatchingIndexingMap(isNan).isIdentity() ||
      !guard.getMatchingIndexingMap(probs).isIdentity())
    return {};
  auto test = isNan->get().getDefiningOp<linalg::GenericOp>();
  if (!isElementwise(test, 4) || test.getNumDpsInputs() != 1 ||
      test.getDpsInputs()[0] != probs->get() ||
      !test.getMatchingIndexingMap(test.getDpsInputOperand(0)).isIdentity())
    return {};
  auto unordered = dyn_cast_or_null<arith::CmpFOp>(singleBodyOp(test));
  Value p = test.getRegion().front().getArgument(0);
  if (!unordered || unordered.getPredicate() != arith::CmpFPredicate::UNO ||
      unordered.getLhs() != p || unordered.getRhs() != p)
    return {};
  if (!isNan->get().hasOneUse() || !probs->get().hasNUses(2))
    return {};
  return probs->get();
}

/// When `g` multiplies (or divides) its identity-mapped input by a scalar
/// constant: that input and the factor.
std::optional<std::pair<Value, double>> scalarScale(linalg::GenericOp g) {
  if (!isElementwise(g, g ? g.getNumLoops() : 0) || g.getNumDpsInputs() != 2)
    return std::nullopt;
  Operation *op = singleBodyOp(g);
  if (!op || !isa<arith::MulFOp, arith::DivFOp>(op))
    return std::nullopt;
  Block &body = g.getRegion().front();
  for (int data = 0; data < 2; ++data) {
    OpOperand *dataOperand = g.getDpsInputOperand(data);
    OpOperand *factorOperand = g.getDpsInputOperand(1 - data);
    if (!g.getMatchingIndexingMap(dataOperand).isIdentity())
      continue;
    std::optional<double> factor = scalarConstant(factorOperand->get());
    if (!factor)
      continue;
    Value dataArg = body.getArgument(data), factorArg = body.getArgument(1 - data);
    if (isa<arith::MulFOp>(op) && llvm::is_contained(op->getOperands(), dataArg) &&
        llvm::is_contained(op->getOperands(), factorArg))
      return std::make_pair(dataOperand->get(), *factor);
    if (isa<arith::DivFOp>(op) && op->getOperand(0) == dataArg &&
        op->getOperand(1) == factorArg && *factor != 0.0)
      return std::make_pair(dataOperand->get(), 1.0 / *factor);
  }
  return std::nullopt;
}

//===----------------------------------------------------------------------===//
// Q, K and V: [batch, heads, rows, cols] behind reshapes, repeats,
// transposes and scales
//===----------------------------------------------------------------------===//

/// An operand of one of the two batched matmuls, seen as the logical
/// [batch, heads, rows, cols] tensor the matmul multiplies.
struct OperandView {
  /// The tensor the operand reads; its dim `toSource[i]` is logical dim i.
  Value source;
  SmallVector<int64_t, 4> toSource{0, 1, 2, 3};
  /// Heads in `source` (smaller than the logical heads after a repeat).
  int64_t heads = 0;
  double scale = 1.0;
};

/// Whether `x` (rank 4 or 5) holds the rows of `v` ([.., rows, cols], rank 3
/// with batch * heads leading or rank 4) in the same row-major order, with
/// the heads in dims 1 to rank-3 of `x`.
bool sameRowsAndHeads(Value x, Value v, int64_t heads) {
  int64_t rx = rankOf(x), rv = rankOf(v);
  if (rx < 4 || rx > 5 || rv < 3)
    return false;
  int64_t xHeads = 1;
  for (int64_t d = 1; d < rx - 2; ++d)
    xHeads = ShapedType::isDynamic(dimOf(x, d)) || ShapedType::isDynamic(xHeads)
                 ? ShapedType::kDynamic
                 : xHeads * dimOf(x, d);
  if (xHeads != heads)
    return false;
  if (rv == 4 && dimOf(v, 1) != heads)
    return false;
  // v = collapse_shape(x) [[0, 1], [2], [3]] keeps them by construction.
  if (auto c = v.getDefiningOp<tensor::CollapseShapeOp>();
      c && c.getSrc() == x && rx == 4 && rv == 3 &&
      c.getReassociationIndices() == SmallVector<ReassociationIndices>{{0, 1}, {2}, {3}})
    return true;
  // With equal element counts (a reshape keeps them), equal cols and
  // either equal rows or equal batches make the third equal too.
  if (!sameDim(x, rx - 1, v, rv - 1))
    return false;
  if (sameDim(x, rx - 2, v, rv - 2))
    return true;
  if (rv == 4)
    return sameDim(x, 0, v, 0);
  // v's leading dim is batch * heads: a product with the heads constant.
  OpFoldResult batchHeads = dimOrigin(v, 0);
  auto product = dyn_cast_or_null<Value>(batchHeads);
  auto mul = product ? product.getDefiningOp<arith::MulIOp>() : arith::MulIOp();
  if (!mul)
    return false;
  OpFoldResult batch = dimOrigin(x, 0);
  for (int side = 0; side < 2; ++side) {
    std::optional<int64_t> factor = getConstantIntValue(mul->getOperand(1 - side));
    if (factor && *factor == heads && batch && indexOrigin(mul->getOperand(side)) == batch)
      return true;
  }
  return false;
}

/// Llama's repeat_kv: `x` is a rank-5 copy-broadcast of
/// expand_shape(kv [b, kv_heads, t, d]) to [b, kv_heads, 1, t, d] along dim
/// 2. Returns kv.
Value repeatKvSource(Value x) {
  auto g = x.getDefiningOp<linalg::GenericOp>();
  if (!isCopy(g) || rankOf(x) != 5 || !isElementwise(g, 5))
    return {};
  MLIRContext *ctx = x.getContext();
  AffineMap expected = AffineMap::get(
      5, 0,
      {getAffineDimExpr(0, ctx), getAffineDimExpr(1, ctx), getAffineConstantExpr(0, ctx),
       getAffineDimExpr(3, ctx), getAffineDimExpr(4, ctx)},
      ctx);
  if (g.getMatchingIndexingMap(g.getDpsInputOperand(0)) != expected)
    return {};
  auto unsqueeze = g.getDpsInputOperand(0)->get().getDefiningOp<tensor::ExpandShapeOp>();
  if (!unsqueeze || rankOf(unsqueeze.getSrc()) != 4 || dimOf(unsqueeze.getResult(), 2) != 1)
    return {};
  SmallVector<ReassociationIndices> expectedGroups{{0}, {1}, {2, 3}, {4}};
  if (unsqueeze.getReassociationIndices() != expectedGroups)
    return {};
  return unsqueeze.getSrc();
}

/// Follows a batched-matmul operand `v` (rank 3: [batch * heads, rows,
/// cols]) back to the tensor it reads. With `allowRepeat`, one head repeat
/// may be looked through (then `heads` of the view is the source's).
FailureOr<OperandView> viewOperand(Value v, StringRef name, int64_t heads, bool allowRepeat,
                                   Reason &why) {
  OperandView view;
  view.heads = heads;
  Value x = throughReshapes(v);
  bool repeated = false;
  if (rankOf(x) == 4 && sameRowsAndHeads(x, v, heads)) {
    view.source = x;
  } else if (Value kv = allowRepeat && rankOf(x) == 5 && sameRowsAndHeads(x, v, heads)
                            ? repeatKvSource(x)
                            : Value()) {
    view.source = kv;
    view.heads = dimOf(kv, 1);
    repeated = true;
  } else if (!allowRepeat && rankOf(x) == 5 && sameRowsAndHeads(x, v, heads)) {
    // [batch, kv_heads, group, rows, cols] read as the product's operand
    // directly (torch.export's repeat_kv): its heads merged, the repeat
    // kept, when the other operand's repeat could not be looked through.
    OpBuilder b(v.getDefiningOp());
    view.source = tensor::CollapseShapeOp::create(
        b, x.getLoc(), x, SmallVector<ReassociationIndices>{{0}, {1, 2}, {3}, {4}});
  } else {
    why = ("cannot prove that the " + name +
           " are [batch, heads, rows, cols] behind their reshapes").str();
    return failure();
  }

  while (true) {
    Operation *def = view.source.getDefiningOp();
    if (auto t = dyn_cast_or_null<linalg::TransposeOp>(def)) {
      ArrayRef<int64_t> perm = t.getPermutation();
      for (int64_t &d : view.toSource)
        d = perm[d];
      view.source = t.getInput();
      continue;
    }
    auto g = dyn_cast_or_null<linalg::GenericOp>(def);
    if (std::optional<std::pair<Value, double>> s = scalarScale(g)) {
      view.scale *= s->second;
      view.source = s->first;
      continue;
    }
    // MQA: a broadcast of one head along the heads axis.
    if (allowRepeat && !repeated && isCopy(g) && isElementwise(g, 4)) {
      Value in = g.getDpsInputOperand(0)->get();
      AffineMap map = g.getMatchingIndexingMap(g.getDpsInputOperand(0));
      int64_t headsDim = view.toSource[1];
      bool onlyHeads = rankOf(in) == 4 && map.getNumResults() == 4 && dimOf(in, headsDim) == 1;
      for (int64_t d = 0; onlyHeads && d < 4; ++d) {
        AffineExpr e = map.getResult(d);
        onlyHeads = d == headsDim ? e == getAffineConstantExpr(0, g.getContext())
                                  : e == getAffineDimExpr(d, g.getContext());
      }
      if (onlyHeads) {
        view.source = in;
        view.heads = 1;
        repeated = true;
        continue;
      }
    }
    // GQA: repeat_kv behind reshapes of the logical tensor.
    if (allowRepeat && !repeated && isa_and_nonnull<tensor::ExpandShapeOp, tensor::CollapseShapeOp>(def) &&
        view.toSource[0] == 0 && view.toSource[1] == 1) {
      Value x5 = throughReshapes(view.source);
      if (rankOf(x5) == 5 && sameRowsAndHeads(x5, view.source, heads))
        if (Value kv = repeatKvSource(x5)) {
          view.source = kv;
          view.heads = dimOf(kv, 1);
          repeated = true;
          continue;
        }
    }
    break;
  }
  return view;
}

/// `value` with its elements converted to the float type `to` (extended or
/// rounded to nearest even); `value` itself when they already are.
Value convertElements(OpBuilder &b, Location loc, Value value, Type to) {
  auto type = cast<RankedTensorType>(value.getType());
  Type from = type.getElementType();
  if (from == to)
    return value;
  Value init = tensor::EmptyOp::create(b, loc, tensor::getMixedSizes(b, loc, value), to);
  SmallVector<AffineMap> maps(2, b.getMultiDimIdentityMap(type.getRank()));
  SmallVector<utils::IteratorType> iterators(type.getRank(), utils::IteratorType::parallel);
  return linalg::GenericOp::create(
             b, loc, init.getType(), ValueRange{value}, ValueRange{init}, maps, iterators,
             [&](OpBuilder &nb, Location nloc, ValueRange args) {
               Value converted =
                   to.getIntOrFloatBitWidth() > from.getIntOrFloatBitWidth()
                       ? Value(arith::ExtFOp::create(nb, nloc, to, args[0]))
                       : Value(arith::TruncFOp::create(nb, nloc, to, args[0]));
               linalg::YieldOp::create(nb, nloc, converted);
             })
      .getResult(0);
}

/// `view.source` transposed so that logical dims `order` come first to
/// last.
Value materialize(OpBuilder &b, Location loc, const OperandView &view,
                  ArrayRef<int64_t> order) {
  SmallVector<int64_t> perm;
  for (int64_t logical : order)
    perm.push_back(view.toSource[logical]);
  if (llvm::equal(perm, llvm::seq<int64_t>(0, 4)))
    return view.source;
  SmallVector<OpFoldResult> sizes;
  for (int64_t d : perm)
    sizes.push_back(tensor::getMixedSize(b, loc, view.source, d));
  Value init = tensor::EmptyOp::create(
      b, loc, sizes, cast<ShapedType>(view.source.getType()).getElementType());
  return linalg::TransposeOp::create(b, loc, view.source, init, perm)->getResult(0);
}

//===----------------------------------------------------------------------===//
// Softmax and the scores chain
//===----------------------------------------------------------------------===//

/// When `g` reduces the last dim of its rank-4 input into a rank-3 tensor
/// with `Combine`, from a fill of a constant: the input and that constant.
template <typename... Combine>
std::optional<std::pair<Value, double>> lastDimReduction(Value reduced) {
  auto r = reduced.getDefiningOp<linalg::ReduceOp>();
  if (!r || r.getNumDpsInputs() != 1 || r.getDimensions() != ArrayRef<int64_t>{3} ||
      rankOf(r.getInputs()[0]) != 4)
    return std::nullopt;
  Block &body = r.getRegion().front();
  Operation *combine = &body.front();
  if (!isa<Combine...>(combine) || combine->getNextNode() != body.getTerminator())
    return std::nullopt;
  auto fill = r.getInits()[0].getDefiningOp<linalg::FillOp>();
  if (!fill)
    return std::nullopt;
  std::optional<double> init = scalarConstant(fill.getInputs()[0]);
  if (!init)
    return std::nullopt;
  return std::make_pair(r.getInputs()[0], *init);
}

/// `v` is expand_shape(rank-3) to [.., 1] and its use maps it as (d0, d1,
/// d2, 0): the rank-3 value.
Value keptLastDim(linalg::GenericOp g, OpOperand *operand) {
  MLIRContext *ctx = g.getContext();
  AffineMap expected =
      AffineMap::get(4, 0,
                     {getAffineDimExpr(0, ctx), getAffineDimExpr(1, ctx),
                      getAffineDimExpr(2, ctx), getAffineConstantExpr(0, ctx)},
                     ctx);
  if (g.getMatchingIndexingMap(operand) != expected)
    return {};
  auto e = operand->get().getDefiningOp<tensor::ExpandShapeOp>();
  if (!e || rankOf(e.getSrc()) != 3 || dimOf(e.getResult(), 3) != 1)
    return {};
  return e.getSrc();
}

/// The input of a softmax over the last axis of rank-4 `p`, and the ops
/// that compute it (which die with the match).
FailureOr<Value> softmaxInput(Value p, SmallVectorImpl<Operation *> &ops, Reason &why) {
  if (auto s = p.getDefiningOp<linalg::SoftmaxOp>()) {
    if (s.getDimension() != 3) {
      why = "the softmax is over dim " + std::to_string(s.getDimension()) +
            ", not the keys (dim 3)";
      return failure();
    }
    ops.push_back(s);
    return s.getInput();
  }
  // exp(x - max(x)) / sum(exp(x - max(x))), keepdims reductions.
  linalg::GenericOp div = elementwiseOf<arith::DivFOp>(p, 2);
  if (!div) {
    why = "the probabilities are not a softmax";
    return failure();
  }
  Value e = div.getDpsInputOperand(0)->get();
  Value sum = keptLastDim(div, div.getDpsInputOperand(1));
  auto sumOf = sum ? lastDimReduction<arith::AddFOp>(sum) : std::nullopt;
  linalg::GenericOp exp = elementwiseOf<math::ExpOp>(e, 1);
  if (!sumOf || sumOf->first != e || sumOf->second != 0.0 || !exp) {
    why = "the probabilities are a division but not exp(x - max) / sum";
    return failure();
  }
  linalg::GenericOp sub = elementwiseOf<arith::SubFOp>(exp.getDpsInputOperand(0)->get(), 2);
  if (!sub) {
    why = "the softmax does not subtract the row maximum";
    return failure();
  }
  Value x = sub.getDpsInputOperand(0)->get();
  Value max = keptLastDim(sub, sub.getDpsInputOperand(1));
  auto maxOf = max ? lastDimReduction<arith::MaximumFOp, arith::MaxNumFOp>(max) : std::nullopt;
  if (!maxOf || maxOf->first != x || !(maxOf->second <= -3.0e38)) {
    why = "the softmax does not subtract the row maximum";
    return failure();
  }
  // Every intermediate dies with the match: e is read by the sum and the
  // division only, x by the max and the subtraction only.
  if (!sum.hasOneUse() || !max.hasOneUse() || !e.hasNUses(2) ||
      !exp->getResult(0).hasNUses(2) || !sub->getResult(0).hasOneUse() || !x.hasNUses(2)) {
    why = "intermediate values of the softmax have other uses";
    return failure();
  }
  ops.append({div, sum.getDefiningOp(), exp, sub, max.getDefiningOp()});
  return x;
}

/// One step between the scores and the softmax.
struct ScoreStep {
  linalg::GenericOp op;
  /// The operand that carries the scores.
  unsigned scoresOperand;
};

/// What the chain from the QK^T scores to the softmax input does: a scale,
/// then additive terms (`masks`, evaluated at 0 later).
struct ScoreChain {
  Value scores; // rank 4, from the QK^T batch_matmul's expand_shape
  double scale = 1.0;
  SmallVector<ScoreStep> masks;
  SmallVector<Operation *> ops;
};

/// The QK^T scores: expand_shape [[0, 1], [2], [3]] of a batch_matmul.
linalg::BatchMatmulOp scoresMatmul(Value v) {
  auto e = v.getDefiningOp<tensor::ExpandShapeOp>();
  SmallVector<ReassociationIndices> groups{{0, 1}, {2}, {3}};
  if (!e || rankOf(v) != 4 || e.getReassociationIndices() != groups)
    return {};
  auto mm = e.getSrc().getDefiningOp<linalg::BatchMatmulOp>();
  return mm && !mm.hasUserDefinedMaps() ? mm : linalg::BatchMatmulOp();
}

/// Whether `v` comes from the QK^T scores through at most `depth`
/// elementwise generics (along identity-mapped operands).
bool leadsToScores(Value v, int depth) {
  if (scoresMatmul(v))
    return true;
  auto g = v.getDefiningOp<linalg::GenericOp>();
  if (depth == 0 || !isElementwise(g, 4))
    return false;
  return llvm::any_of(g.getDpsInputOperands(), [&](OpOperand *in) {
    return g.getMatchingIndexingMap(in).isIdentity() && leadsToScores(in->get(), depth - 1);
  });
}

/// Walks back from the softmax input `x` to the QK^T scores.
FailureOr<ScoreChain> scoreChain(Value x, Reason &why) {
  ScoreChain chain;
  SmallVector<ScoreStep> steps; // softmax side first
  Value cur = x;
  while (!scoresMatmul(cur)) {
    auto g = cur.getDefiningOp<linalg::GenericOp>();
    if (!isElementwise(g, 4)) {
      why = "the softmax input does not come from a QK^T batch matmul through elementwise ops";
      return failure();
    }
    std::optional<unsigned> scoresOperand;
    for (OpOperand *in : g.getDpsInputOperands()) {
      if (!g.getMatchingIndexingMap(in).isIdentity() || !leadsToScores(in->get(), 8))
        continue;
      if (scoresOperand) {
        why = "two operands of one elementwise op lead back to the scores";
        return failure();
      }
      scoresOperand = in->getOperandNumber();
    }
    if (!scoresOperand) {
      why = "the softmax input does not come from a QK^T batch matmul through elementwise ops";
      return failure();
    }
    if (cur != x && !cur.hasOneUse()) {
      why = "the scores are used elsewhere";
      return failure();
    }
    steps.push_back({g, *scoresOperand});
    chain.ops.push_back(g);
    cur = g.getDpsInputs()[*scoresOperand];
  }
  // (The softmax input's own uses are the caller's to check.)
  if ((cur != x && !cur.hasOneUse()) ||
      !cur.getDefiningOp<tensor::ExpandShapeOp>().getSrc().hasOneUse()) {
    why = "the scores are used elsewhere";
    return failure();
  }
  chain.scores = cur;

  // From the scores outwards: scales, then mask terms.
  for (ScoreStep &step : llvm::reverse(steps)) {
    linalg::GenericOp g = step.op;
    Block &body = g.getRegion().front();
    Value s = body.getArgument(step.scoresOperand);
    if (isCopy(g))
      continue;
    if (std::optional<std::pair<Value, double>> scale = scalarScale(g)) {
      if (!chain.masks.empty()) {
        why = "the scores are scaled after a mask is applied";
        return failure();
      }
      chain.scale *= scale->second;
      continue;
    }
    Operation *op = singleBodyOp(g);
    auto sideArg = [&](Value v) {
      auto arg = dyn_cast<BlockArgument>(v);
      return arg && arg.getOwner() == &body && arg != s &&
             arg.getArgNumber() < g.getNumDpsInputs();
    };
    auto maskedOut = [&](Value v) {
      std::optional<double> c = constantInBody(g, v);
      return c && *c <= kMaskedScore;
    };
    bool additive = op && isa<arith::AddFOp>(op) &&
                    ((op->getOperand(0) == s && sideArg(op->getOperand(1))) ||
                     (op->getOperand(1) == s && sideArg(op->getOperand(0))));
    auto select = dyn_cast_or_null<arith::SelectOp>(op);
    bool replacing = select && sideArg(select.getCondition()) &&
                     ((select.getTrueValue() == s && maskedOut(select.getFalseValue())) ||
                      (select.getFalseValue() == s && maskedOut(select.getTrueValue())));
    if (!additive && !replacing) {
      why = "the scores pass through " +
            (op ? op->getName().getStringRef().str() : std::string("a multi-op body")) +
            ", which is neither a scale nor a mask";
      return failure();
    }
    chain.masks.push_back(step);
  }
  return chain;
}

//===----------------------------------------------------------------------===//
// Causal masks
//===----------------------------------------------------------------------===//

/// A boolean tensor over [rows, cols] (the last two dims) that is a
/// lower-triangular pattern: element (i, j) is kept iff
/// col0 + j <= row0 + i + diagonal, where row0 and col0 are the sums of
/// `rowOffsets` and `colOffsets` (index values or attributes, or the i64
/// starts of Ranges). `keep` says whether true means kept.
struct Triangle {
  SmallVector<OpFoldResult> rowOffsets, colOffsets;
  int64_t diagonal = 0;
  bool keep = true;
};

/// The offsets of a chain of unit-stride extract_slices along the last two
/// dims (appended to `rows` and `cols`, summed later), down to the sliced
/// source; null when a slice strides or drops dims.
Value throughSlices(Value v, SmallVectorImpl<OpFoldResult> &rows,
                    SmallVectorImpl<OpFoldResult> &cols) {
  while (auto slice = v.getDefiningOp<tensor::ExtractSliceOp>()) {
    int64_t rank = slice.getSourceType().getRank();
    if (!slice.hasUnitStride() || slice.getResultType().getRank() != rank)
      return {};
    rows.push_back(slice.getMixedOffsets()[rank - 2]);
    cols.push_back(slice.getMixedOffsets()[rank - 1]);
    v = slice.getSource();
  }
  return v;
}

/// Whether the constant `attr` ([.., n, m], leading dims 1) is nonzero
/// exactly on and below diagonal `k`; returns k.
std::optional<int64_t> lowerTriangle(ElementsAttr attr) {
  auto type = cast<ShapedType>(attr.getType());
  int64_t rank = type.getRank();
  if (rank < 2 || attr.isSplat())
    return std::nullopt;
  for (int64_t d = 0; d < rank - 2; ++d)
    if (type.getDimSize(d) != 1)
      return std::nullopt;
  int64_t rows = type.getDimSize(rank - 2), cols = type.getDimSize(rank - 1);
  // Weights arrive as dense or as resource blobs: read whichever typed
  // view the attribute offers.
  SmallVector<bool> nonzero;
  nonzero.reserve(rows * cols);
  auto collect = [&](auto values, auto isNonzero) {
    if (!values)
      return false;
    for (auto v : *values)
      nonzero.push_back(isNonzero(v));
    return true;
  };
  bool read = collect(attr.tryGetValues<bool>(), [](bool v) { return v; }) ||
              collect(attr.tryGetValues<float>(), [](float v) { return v != 0.0f; }) ||
              collect(attr.tryGetValues<int64_t>(), [](int64_t v) { return v != 0; }) ||
              collect(attr.tryGetValues<int8_t>(), [](int8_t v) { return v != 0; }) ||
              collect(attr.tryGetValues<uint8_t>(), [](uint8_t v) { return v != 0; }) ||
              collect(attr.tryGetValues<APFloat>(), [](const APFloat &v) { return !v.isZero(); }) ||
              collect(attr.tryGetValues<APInt>(), [](const APInt &v) { return !v.isZero(); });
  if (!read)
    if (auto resource = dyn_cast<DenseResourceElementsAttr>(attr))
      if (AsmResourceBlob *blob = resource.getRawHandle().getBlob()) {
        // Imported initializers: raw little-endian elements (bools as bytes).
        ArrayRef<char> data = blob->getData();
        Type element = type.getElementType();
        int64_t bytes = element.isInteger(1) ? 1 : element.getIntOrFloatBitWidth() / 8;
        if (bytes > 0 && bytes <= 8 && (int64_t)data.size() == rows * cols * bytes) {
          // A float is zero when all bits but the sign are (-0.0 too).
          uint64_t valueBits = isa<FloatType>(element) ? (1ull << (8 * bytes - 1)) - 1 : ~0ull;
          for (int64_t e = 0; e < rows * cols; ++e) {
            uint64_t bits = 0;
            std::memcpy(&bits, data.data() + e * bytes, bytes);
            nonzero.push_back((bits & valueBits) != 0);
          }
          read = true;
        }
      }
  if (!read || (int64_t)nonzero.size() != rows * cols)
    return std::nullopt;
  // The diagonal: the count of kept entries in row 0, minus one.
  int64_t k = -1;
  while (k + 1 < cols && nonzero[k + 1])
    ++k;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      if (nonzero[r * cols + c] != (c <= r + k))
        return std::nullopt;
  return k;
}

/// The predicate with its operands exchanged: a < b is b > a.
arith::CmpIPredicate swapOperands(arith::CmpIPredicate p) {
  using P = arith::CmpIPredicate;
  switch (p) {
  case P::slt: return P::sgt;
  case P::sgt: return P::slt;
  case P::sle: return P::sge;
  case P::sge: return P::sle;
  case P::ult: return P::ugt;
  case P::ugt: return P::ult;
  case P::ule: return P::uge;
  case P::uge: return P::ule;
  default: return p;
  }
}

/// When `v` (behind an expand_shape that only adds unit dims) is c, c + 1,
/// c + 2, ...: a rank-1 generic yielding its index (ONNX Range by 1, from 0
/// or from a value defined outside, as cache positions start at the past
/// length): c, null for 0.
std::optional<Value> iotaOffset(Value v) {
  if (auto expand = v.getDefiningOp<tensor::ExpandShapeOp>()) {
    // [n] -> [n, 1] or [1, 1, n, 1] keeps the values in place.
    auto type = cast<ShapedType>(v.getType());
    if (rankOf(expand.getSrc()) != 1 ||
        llvm::count_if(type.getShape(), [](int64_t d) { return d != 1; }) > 1)
      return std::nullopt;
    v = expand.getSrc();
  }
  auto g = v.getDefiningOp<linalg::GenericOp>();
  if (!g || g.getNumDpsInputs() != 0 || g.getNumLoops() != 1)
    return std::nullopt;
  Value yielded = g.getRegion().front().getTerminator()->getOperand(0);
  Value offset;
  if (auto add = yielded.getDefiningOp<arith::AddIOp>()) {
    for (int side = 0; side < 2; ++side)
      if (add->getOperand(side).getParentRegion() != &g.getRegion()) {
        offset = add->getOperand(side);
        yielded = add->getOperand(1 - side);
      }
    if (!offset)
      return std::nullopt;
  }
  if (auto cast = yielded.getDefiningOp<arith::IndexCastOp>())
    yielded = cast.getIn();
  auto index = yielded.getDefiningOp<linalg::IndexOp>();
  if (!index || index.getDim() != 0)
    return std::nullopt;
  return offset;
}

/// Recognizes the causal conditions exports build: a slice of a constant
/// lower-triangular buffer (compared with 0, or boolean), and Trilu of
/// ones (an index comparison), each possibly negated.
std::optional<Triangle> triangle(Value cond, int depth = 4) {
  if (depth == 0 || !cast<ShapedType>(cond.getType()).getElementType().isInteger(1))
    return std::nullopt;
  // A boolean constant, sliced.
  Triangle t;
  if (Value source = throughSlices(cond, t.rowOffsets, t.colOffsets)) {
    ElementsAttr attr;
    if (matchPattern(source, m_Constant(&attr)))
      if (std::optional<int64_t> k = lowerTriangle(attr)) {
        t.diagonal = *k;
        return t;
      }
  }
  auto g = cond.getDefiningOp<linalg::GenericOp>();
  int64_t rank = cast<ShapedType>(cond.getType()).getRank();
  if (!isElementwise(g, rank))
    return std::nullopt;
  Block &body = g.getRegion().front();
  Operation *op = singleBodyOp(g);
  // Not: xori with true.
  if (op && isa<arith::XOrIOp>(op) && g.getNumDpsInputs() == 1 &&
      g.getMatchingIndexingMap(g.getDpsInputOperand(0)).isIdentity()) {
    Value other = op->getOperand(0) == body.getArgument(0) ? op->getOperand(1) : op->getOperand(0);
    if (matchPattern(other, m_One())) {
      std::optional<Triangle> inner = triangle(g.getDpsInputs()[0], depth - 1);
      if (inner)
        inner->keep = !inner->keep;
      return inner;
    }
    return std::nullopt;
  }
  // A comparison of a slice of a constant with zero: C != 0 keeps.
  if (auto cmp = dyn_cast_or_null<arith::CmpFOp>(op); cmp && g.getNumDpsInputs() == 2) {
    for (int data = 0; data < 2; ++data) {
      std::optional<double> zero = scalarConstant(g.getDpsInputs()[1 - data]);
      if (!zero || *zero != 0.0 || !g.getMatchingIndexingMap(g.getDpsInputOperand(data)).isIdentity())
        continue;
      bool eq = cmp.getPredicate() == arith::CmpFPredicate::OEQ ||
                cmp.getPredicate() == arith::CmpFPredicate::UEQ;
      bool ne = cmp.getPredicate() == arith::CmpFPredicate::ONE ||
                cmp.getPredicate() == arith::CmpFPredicate::UNE;
      if (!eq && !ne)
        return std::nullopt;
      Triangle s;
      Value source = throughSlices(g.getDpsInputs()[data], s.rowOffsets, s.colOffsets);
      ElementsAttr attr;
      if (!source || !matchPattern(source, m_Constant(&attr)))
        return std::nullopt;
      std::optional<int64_t> k = lowerTriangle(attr);
      if (!k)
        return std::nullopt;
      s.diagonal = *k;
      s.keep = ne;
      return s;
    }
    return std::nullopt;
  }
  // And with true (transformers' masks start from an all-true tensor).
  if (op && isa<arith::AndIOp>(op) && g.getNumDpsInputs() == 2) {
    for (int in = 0; in < 2; ++in) {
      OpOperand *other = g.getDpsInputOperand(1 - in);
      std::optional<double> c = scalarConstant(g.getDpsInputs()[in]);
      if (c && *c != 0.0 && g.getMatchingIndexingMap(other).isIdentity())
        return triangle(other->get(), depth - 1);
    }
    return std::nullopt;
  }
  // Range and a comparison: cmp(rows[i], cols[j]) with rows and cols
  // r0, r0 + 1, ... and c0, c0 + 1, ... (ONNX Range, torch.arange; cache
  // positions start at the past length) broadcast along the last two axes,
  // every other axis of size 1.
  if (auto cmp = dyn_cast_or_null<arith::CmpIOp>(op); cmp && g.getNumDpsInputs() == 2) {
    MLIRContext *ctx = g.getContext();
    // Which input runs along the rows (d[rank-2]) and which along the cols
    // (d[rank-1]), each constant 0 on every other result.
    int rowsInput = -1, colsInput = -1;
    Triangle s;
    for (int in = 0; in < 2; ++in) {
      AffineMap m = g.getMatchingIndexingMap(g.getDpsInputOperand(in));
      std::optional<Value> offset = iotaOffset(g.getDpsInputs()[in]);
      if (m.getNumResults() != rank || !offset)
        return std::nullopt;
      // Along `dim` only: every other dim constant 0 or of size 1.
      auto inputShape = cast<ShapedType>(g.getDpsInputs()[in].getType()).getShape();
      auto along = [&](int64_t dim) {
        for (int64_t r = 0; r < rank; ++r) {
          bool unit = m.getResult(r) == getAffineConstantExpr(0, ctx) ||
                      (m.getResult(r) == getAffineDimExpr(r, ctx) && inputShape[r] == 1);
          if (r == dim ? m.getResult(r) != getAffineDimExpr(dim, ctx) : !unit)
            return false;
        }
        return true;
      };
      if (along(rank - 2)) {
        rowsInput = in;
        if (*offset)
          s.rowOffsets.push_back(*offset);
      } else if (along(rank - 1)) {
        colsInput = in;
        if (*offset)
          s.colOffsets.push_back(*offset);
      }
    }
    if (rowsInput < 0 || colsInput < 0)
      return std::nullopt;
    // As cmp(j, i): swap the predicate when the rows come first.
    arith::CmpIPredicate pred = cmp.getPredicate();
    if (cmp.getLhs() == body.getArgument(rowsInput) && cmp.getRhs() == body.getArgument(colsInput))
      pred = swapOperands(pred);
    else if (cmp.getLhs() != body.getArgument(colsInput) ||
             cmp.getRhs() != body.getArgument(rowsInput))
      return std::nullopt;
    switch (pred) {
    case arith::CmpIPredicate::sle: // j <= i: kept
    case arith::CmpIPredicate::ule:
      s.diagonal = 0;
      s.keep = true;
      return s;
    case arith::CmpIPredicate::slt: // j < i, i.e. j <= i - 1: kept
    case arith::CmpIPredicate::ult:
      s.diagonal = -1;
      s.keep = true;
      return s;
    case arith::CmpIPredicate::sgt: // j > i: dropped
    case arith::CmpIPredicate::ugt:
      s.diagonal = 0;
      s.keep = false;
      return s;
    case arith::CmpIPredicate::sge: // j >= i: dropped past i - 1
    case arith::CmpIPredicate::uge:
      s.diagonal = -1;
      s.keep = false;
      return s;
    default:
      return std::nullopt;
    }
  }
  // Trilu of ones: select(index(j) - index(i) <= k, in, false) on a fill of
  // true.
  if (auto select = dyn_cast_or_null<arith::SelectOp>(
          body.getTerminator()->getOperand(0).getDefiningOp());
      select && g.getNumDpsInputs() == 1 && rank >= 2) {
    auto fill = g.getDpsInputs()[0].getDefiningOp<linalg::FillOp>();
    if (!fill || !matchPattern(fill.getInputs()[0], m_One()) ||
        select.getTrueValue() != body.getArgument(0) ||
        !matchPattern(select.getFalseValue(), m_Zero()))
      return std::nullopt;
    auto cmp = select.getCondition().getDefiningOp<arith::CmpIOp>();
    auto diff = cmp ? cmp.getLhs().getDefiningOp<arith::SubIOp>() : arith::SubIOp();
    std::optional<int64_t> k = cmp ? getConstantIntValue(cmp.getRhs()) : std::nullopt;
    auto col = diff ? diff.getLhs().getDefiningOp<linalg::IndexOp>() : linalg::IndexOp();
    auto row = diff ? diff.getRhs().getDefiningOp<linalg::IndexOp>() : linalg::IndexOp();
    if (!k || !col || !row || cmp.getPredicate() != arith::CmpIPredicate::sle ||
        (int64_t)col.getDim() != rank - 1 || (int64_t)row.getDim() != rank - 2)
      return std::nullopt;
    Triangle s;
    s.diagonal = *k;
    return s;
  }
  return std::nullopt;
}

/// A mask step that is exactly the causal rule, and the condition, true at
/// run time, under which it is: the triangle's diagonal, kv_len - q_len
/// (the cond's own [rows, cols], which the step's indexing makes the
/// scores'), and for a finite masked value kv_len >= q_len. A step whose
/// mask is the causal rule and-ed with another condition (transformers
/// 4.5x: `select(causal & padding, 0, -inf)` added to the scores) leaves
/// `residual`, the same step with only the other condition.
struct CausalStep {
  unsigned index; // in ScoreChain::masks
  Value holds;    // i1
  std::optional<ScoreStep> residual;
};

/// When `m` is `select(cond, 0, -inf)` elementwise (cond identity-mapped):
/// cond.
Value zeroOrMinusInfinity(Value m) {
  auto g = m.getDefiningOp<linalg::GenericOp>();
  if (!isElementwise(g, rankOf(m)))
    return {};
  auto select = dyn_cast_or_null<arith::SelectOp>(singleBodyOp(g));
  if (!select)
    return {};
  Block &body = g.getRegion().front();
  auto condArg = dyn_cast<BlockArgument>(select.getCondition());
  std::optional<double> kept = constantInBody(g, select.getTrueValue());
  std::optional<double> dropped = constantInBody(g, select.getFalseValue());
  if (!condArg || condArg.getOwner() != &body || condArg.getArgNumber() >= g.getNumDpsInputs() ||
      kept != std::optional<double>(0.0) || !dropped || !std::isinf(*dropped) || *dropped > 0)
    return {};
  OpOperand *cond = g.getDpsInputOperand(condArg.getArgNumber());
  return g.getMatchingIndexingMap(cond).isIdentity() ? cond->get() : Value();
}

/// The additive step `s + select(slice(T & R), 0, -inf)` with T a causal
/// triangle: since -inf absorbs, it is the causal rule plus
/// `select(R', 0, -inf)`, R' being R sliced as the condition was where R
/// varies. Builds that residual step (a clone of `step` reading the new
/// mask, dead once the attention is built) and the causal condition; the
/// caller sets the step's index.
std::optional<CausalStep>
splitCausal(OpBuilder &b, Location loc, ScoreStep step, arith::AddFOp add,
            function_ref<Value(const Triangle &, Value, bool)> causalWhen) {
  MLIRContext *ctx = b.getContext();
  linalg::GenericOp g = step.op;
  Block &body = g.getRegion().front();
  Value s = body.getArgument(step.scoresOperand);
  auto sideArg = dyn_cast<BlockArgument>(add.getLhs() == s ? add.getRhs() : add.getLhs());
  if (!sideArg || sideArg.getOwner() != &body || sideArg.getArgNumber() >= g.getNumDpsInputs())
    return std::nullopt;
  OpOperand *side = g.getDpsInputOperand(sideArg.getArgNumber());
  Value cond = zeroOrMinusInfinity(side->get());
  AffineMap sideMap = g.getMatchingIndexingMap(side);
  if (!cond || rankOf(cond) != 4 || sideMap.getResult(2) != getAffineDimExpr(2, ctx) ||
      sideMap.getResult(3) != getAffineDimExpr(3, ctx))
    return std::nullopt;
  // At most one slice between the condition and the conjunction.
  Triangle sliced;
  auto slice = cond.getDefiningOp<tensor::ExtractSliceOp>();
  Value source = throughSlices(cond, sliced.rowOffsets, sliced.colOffsets);
  if (!source || sliced.rowOffsets.size() > 1)
    return std::nullopt;
  auto conj = source.getDefiningOp<linalg::GenericOp>();
  if (!isElementwise(conj, 4) || conj.getNumDpsInputs() != 2 ||
      !isa_and_nonnull<arith::AndIOp>(singleBodyOp(conj)))
    return std::nullopt;
  for (int which = 0; which < 2; ++which) {
    OpOperand *tri = conj.getDpsInputOperand(which), *rest = conj.getDpsInputOperand(1 - which);
    AffineMap triMap = conj.getMatchingIndexingMap(tri), restMap = conj.getMatchingIndexingMap(rest);
    if (rankOf(tri->get()) != 4 || triMap.getResult(2) != getAffineDimExpr(2, ctx) ||
        triMap.getResult(3) != getAffineDimExpr(3, ctx))
      continue;
    std::optional<Triangle> t = triangle(tri->get());
    if (!t || !t->keep)
      continue;
    // The rest is read along the conjunction's dims or broadcast from size 1.
    auto restType = cast<RankedTensorType>(rest->get().getType());
    bool broadcastOnly = restMap.getNumResults() == 4;
    for (int64_t d = 0; d < 4 && broadcastOnly; ++d)
      broadcastOnly = restMap.getResult(d) == getAffineDimExpr(d, ctx) ||
                      (restMap.getResult(d) == getAffineConstantExpr(0, ctx) &&
                       restType.getDimSize(d) == 1);
    if (!broadcastOnly)
      continue;
    t->rowOffsets.append(sliced.rowOffsets.begin(), sliced.rowOffsets.end());
    t->colOffsets.append(sliced.colOffsets.begin(), sliced.colOffsets.end());
    Value holds = causalWhen(*t, cond, /*infinite=*/true);
    // R sliced as the condition was, along the dims it varies on.
    Value r = rest->get();
    if (slice) {
      SmallVector<OpFoldResult> offsets, sizes;
      for (int64_t d = 0; d < 4; ++d) {
        bool broadcast = restType.getDimSize(d) == 1;
        offsets.push_back(broadcast ? b.getIndexAttr(0) : slice.getMixedOffsets()[d]);
        sizes.push_back(broadcast ? b.getIndexAttr(1) : slice.getMixedSizes()[d]);
      }
      r = tensor::ExtractSliceOp::create(b, loc, r, offsets, sizes,
                                         SmallVector<OpFoldResult>(4, b.getIndexAttr(1)));
    }
    Type element = cast<ShapedType>(side->get().getType()).getElementType();
    Value init = tensor::EmptyOp::create(b, loc, tensor::getMixedSizes(b, loc, r), element);
    AffineMap id = AffineMap::getMultiDimIdentityMap(4, ctx);
    Value residualMask =
        linalg::GenericOp::create(
            b, loc, init.getType(), ValueRange{r}, ValueRange{init}, ArrayRef<AffineMap>{id, id},
            SmallVector<utils::IteratorType>(4, utils::IteratorType::parallel),
            [&](OpBuilder &nb, Location nl, ValueRange args) {
              Value zero = arith::ConstantOp::create(nb, nl, element, nb.getZeroAttr(element));
              Value minusInf = arith::ConstantOp::create(
                  nb, nl, element,
                  nb.getFloatAttr(element, -std::numeric_limits<double>::infinity()));
              linalg::YieldOp::create(
                  nb, nl, arith::SelectOp::create(nb, nl, args[0], zero, minusInf).getResult());
            })
            .getResult(0);
    // The step reading it: the side's map, 0 where R is broadcast.
    SmallVector<AffineExpr> results;
    for (int64_t d = 0; d < 4; ++d)
      results.push_back(restType.getDimSize(d) == 1 ? getAffineConstantExpr(0, ctx)
                                                    : sideMap.getResult(d));
    auto residual = cast<linalg::GenericOp>(b.clone(*g));
    unsigned sideNumber = side->getOperandNumber();
    residual->setOperand(sideNumber, residualMask);
    SmallVector<AffineMap> maps = g.getIndexingMapsArray();
    maps[sideNumber] = AffineMap::get(4, 0, results, ctx);
    residual.setIndexingMapsAttr(b.getAffineMapArrayAttr(maps));
    return CausalStep{0, holds, ScoreStep{residual, step.scoresOperand}};
  }
  return std::nullopt;
}

std::optional<CausalStep> causalStep(OpBuilder &b, Location loc, const ScoreChain &chain) {
  MLIRContext *ctx = b.getContext();
  // Kept iff j <= i + row0 + diagonal - col0: causal iff that offset is
  // kv_len - q_len, the cond's [rows, cols].
  auto causalWhen = [&](const Triangle &t, Value cond, bool infinite) {
    int64_t rank = rankOf(cond);
    // Offsets are index values or attributes, or the i64 starts of Ranges.
    auto asIndex = [&](OpFoldResult ofr) -> Value {
      Value v = getValueOrCreateConstantIndexOp(b, loc, ofr);
      return v.getType().isIndex() ? v
                                   : b.createOrFold<arith::IndexCastOp>(loc, b.getIndexType(), v);
    };
    Value rows = b.createOrFold<tensor::DimOp>(loc, cond, rank - 2);
    Value cols = b.createOrFold<tensor::DimOp>(loc, cond, rank - 1);
    Value offset = arith::ConstantIndexOp::create(b, loc, t.diagonal);
    for (OpFoldResult row : t.rowOffsets)
      offset = b.createOrFold<arith::AddIOp>(loc, offset, asIndex(row));
    for (OpFoldResult col : t.colOffsets)
      offset = b.createOrFold<arith::SubIOp>(loc, offset, asIndex(col));
    Value lengths = b.createOrFold<arith::SubIOp>(loc, cols, rows);
    Value holds = b.createOrFold<arith::CmpIOp>(loc, arith::CmpIPredicate::eq, offset, lengths);
    if (!infinite)
      holds = b.createOrFold<arith::AndIOp>(
          loc, holds,
          b.createOrFold<arith::CmpIOp>(loc, arith::CmpIPredicate::sge, lengths,
                                        arith::ConstantIndexOp::create(b, loc, 0)));
    return holds;
  };
  for (auto [index, step] : llvm::enumerate(chain.masks)) {
    linalg::GenericOp g = step.op;
    Block &body = g.getRegion().front();
    Value s = body.getArgument(step.scoresOperand);
    if (auto add = dyn_cast_or_null<arith::AddFOp>(singleBodyOp(g))) {
      if (std::optional<CausalStep> split = splitCausal(b, loc, step, add, causalWhen)) {
        split->index = index;
        return split;
      }
      continue;
    }
    auto select = dyn_cast_or_null<arith::SelectOp>(singleBodyOp(g));
    if (!select)
      continue;
    auto condArg = dyn_cast<BlockArgument>(select.getCondition());
    if (!condArg || condArg.getOwner() != &body)
      continue;
    OpOperand *condOperand = g.getDpsInputOperand(condArg.getArgNumber());
    Value cond = condOperand->get();
    int64_t rank = rankOf(cond);
    AffineMap map = g.getMatchingIndexingMap(condOperand);
    // The condition varies along the queries and keys only.
    if (rank < 2 || map.getResult(rank - 2) != getAffineDimExpr(2, ctx) ||
        map.getResult(rank - 1) != getAffineDimExpr(3, ctx))
      continue;
    bool keepWhenTrue = select.getTrueValue() == s;
    Value masked = keepWhenTrue ? select.getFalseValue() : select.getTrueValue();
    std::optional<double> value = constantInBody(g, masked);
    if (!value)
      continue;
    // -inf is exactly the causal rule; a finite minimum is only when no other
    // term can bring a row's visible scores down to it.
    bool infinite = std::isinf(*value) && *value < 0;
    if (!infinite && chain.masks.size() != 1)
      continue;
    std::optional<Triangle> t = triangle(cond);
    if (!t || t->keep != keepWhenTrue)
      continue;
    return CausalStep{(unsigned)index, causalWhen(*t, cond, infinite), std::nullopt};
  }
  return std::nullopt;
}

//===----------------------------------------------------------------------===//
// The rewrite
//===----------------------------------------------------------------------===//

/// The additive mask g(0) of the chain's mask steps, over the broadcast of
/// their side operands: [batch or 1, heads or 1, q_len or 1, kv_len or 1].
Value buildMask(OpBuilder &b, Location loc, const ScoreChain &chain, Type element) {
  MLIRContext *ctx = b.getContext();
  SmallVector<Value> inputs;
  SmallVector<AffineMap> maps;
  SmallVector<OpFoldResult> sizes(4, b.getIndexAttr(1));
  SmallVector<bool> sized(4, false);
  for (ScoreStep step : chain.masks)
    for (OpOperand *in : step.op.getDpsInputOperands()) {
      if (in->getOperandNumber() == step.scoresOperand)
        continue;
      AffineMap map = step.op.getMatchingIndexingMap(in);
      inputs.push_back(in->get());
      maps.push_back(map);
      for (auto [pos, e] : llvm::enumerate(map.getResults()))
        if (auto d = dyn_cast<AffineDimExpr>(e); d && !sized[d.getPosition()]) {
          sizes[d.getPosition()] = tensor::getMixedSize(b, loc, in->get(), pos);
          sized[d.getPosition()] = true;
        }
    }
  Value init = tensor::EmptyOp::create(b, loc, sizes, element);
  maps.push_back(AffineMap::getMultiDimIdentityMap(4, ctx));
  SmallVector<utils::IteratorType> iterators(4, utils::IteratorType::parallel);
  auto generic = linalg::GenericOp::create(
      b, loc, init.getType(), inputs, ValueRange{init}, maps, iterators,
      [&](OpBuilder &nb, Location nloc, ValueRange args) {
        Value running = arith::ConstantOp::create(nb, nloc, element, nb.getZeroAttr(element));
        unsigned next = 0;
        for (ScoreStep step : chain.masks) {
          Block &body = step.op.getRegion().front();
          IRMapping mapping;
          for (unsigned i = 0; i < step.op.getNumDpsInputs(); ++i)
            mapping.map(body.getArgument(i), i == step.scoresOperand ? running : args[next++]);
          Operation *op = singleBodyOp(step.op);
          running = nb.clone(*op, mapping)->getResult(0);
        }
        linalg::YieldOp::create(nb, nloc, running);
      });
  return generic.getResult(0);
}

struct FuseAttentionPass : public hasten::impl::FuseAttentionBase<FuseAttentionPass> {
  using Base::Base;

  void runOnOperation() override {
    // Sizes read with tensor.dim from the score matrix (imports read many)
    // would keep it alive after the fusion: read them from the operands.
    RewritePatternSet dims(&getContext());
    memref::populateResolveRankedShapedTypeResultDimsPatterns(dims);
    if (failed(applyPatternsGreedily(getOperation(), std::move(dims))))
      return signalPassFailure();
    SmallVector<linalg::BatchMatmulOp> candidates;
    getOperation()->walk([&](linalg::BatchMatmulOp mm) { candidates.push_back(mm); });
    for (linalg::BatchMatmulOp pv : candidates) {
      // Only batch matmuls of softmax probabilities are attention; others
      // are left alone silently.
      auto collapse = pv.getDpsInputs()[0].getDefiningOp<tensor::CollapseShapeOp>();
      if (!collapse || rankOf(collapse.getSrc()) != 4)
        continue;
      Value probs = collapse.getSrc();
      Value guarded = nanGuardedProbabilities(probs);
      if (guarded)
        probs = guarded;
      Operation *def = probs.getDefiningOp();
      bool softmaxLike = isa_and_nonnull<linalg::SoftmaxOp>(def) ||
                         (isa_and_nonnull<linalg::GenericOp>(def) &&
                          isa_and_nonnull<arith::DivFOp>(
                              singleBodyOp(cast<linalg::GenericOp>(def))));
      if (!softmaxLike) {
        // Probabilities changed after a softmax (a bias added to them, say)
        // are not attention's; say so, since it looks like attention.
        auto after = dyn_cast_or_null<linalg::GenericOp>(def);
        if (reportUnfused && isElementwise(after, 4) &&
            llvm::any_of(after.getDpsInputs(),
                         [](Value in) { return in.getDefiningOp<linalg::SoftmaxOp>(); })) {
          Operation *op = singleBodyOp(after);
          pv.emitRemark("attention not fused: the probabilities pass through ")
              << (op ? op->getName().getStringRef() : StringRef("a multi-op body"))
              << " after the softmax";
        }
        continue;
      }
      Reason why;
      if (failed(fuse(pv, collapse, probs, why)) && reportUnfused)
        pv.emitRemark("attention not fused: ") << why;
    }
  }

  /// Fuses the attention whose probabilities `probs` reach the PV product
  /// through `probsCollapse`, directly or through a NaN guard.
  LogicalResult fuse(linalg::BatchMatmulOp pv, tensor::CollapseShapeOp probsCollapse,
                     Value probs, Reason &why) {
    SmallVector<ReassociationIndices> groups{{0, 1}, {2}, {3}};
    bool guarded = probs != probsCollapse.getSrc();
    if (pv.hasUserDefinedMaps() || probsCollapse.getReassociationIndices() != groups) {
      why = "the probabilities are not collapsed as [batch * heads, q_len, kv_len]";
      return failure();
    }
    int64_t heads = dimOf(probs, 1);
    if (ShapedType::isDynamic(heads)) {
      why = "the number of heads is dynamic";
      return failure();
    }
    if ((!guarded && !probs.hasOneUse()) || !probsCollapse.getSrc().hasOneUse() ||
        !probsCollapse->hasOneUse()) {
      why = "the probabilities are used elsewhere";
      return failure();
    }
    SmallVector<Operation *> dead;
    FailureOr<Value> x = softmaxInput(probs, dead, why);
    if (failed(x))
      return failure();
    if (!x->hasOneUse() && !isa<linalg::GenericOp>(probs.getDefiningOp())) {
      why = "the scores are used elsewhere";
      return failure();
    }
    FailureOr<ScoreChain> chain = scoreChain(*x, why);
    if (failed(chain))
      return failure();
    linalg::BatchMatmulOp qk = scoresMatmul(chain->scores);
    if (dimOf(chain->scores, 1) != heads) {
      why = "the scores and the probabilities have different heads";
      return failure();
    }

    // Q [b, h, s, d], K^T [b, h, d, t], V [b, h, t, dv], each behind its
    // transposes, scales and (for K and V) head repeats.
    FailureOr<OperandView> q = viewOperand(qk.getDpsInputs()[0], "queries", heads, false, why);
    if (failed(q))
      return failure();
    FailureOr<OperandView> k = viewOperand(qk.getDpsInputs()[1], "keys", heads, true, why);
    FailureOr<OperandView> v = succeeded(k) ? viewOperand(pv.getDpsInputs()[1], "values", heads, true, why)
                                            : FailureOr<OperandView>(failure());
    if (succeeded(k) && succeeded(v) && k->heads != v->heads) {
      // Only one of them repeats: read both with their repeats.
      k = viewOperand(qk.getDpsInputs()[1], "keys", heads, false, why);
      v = viewOperand(pv.getDpsInputs()[1], "values", heads, false, why);
    }
    if (failed(k) || failed(v))
      return failure();
    if (v->scale != 1.0) {
      // A scale on V scales the output, which the op cannot express.
      v = viewOperand(pv.getDpsInputs()[1], "values", heads, false, why);
      if (failed(v) || v->scale != 1.0) {
        why = "the values are scaled";
        return failure();
      }
    }
    double scale = q->scale * k->scale * chain->scale;
    if (!(scale > 0.0) || !std::isfinite(scale)) {
      why = "the combined scale " + std::to_string(scale) + " is not positive and finite";
      return failure();
    }
    Type element = cast<ShapedType>(probs.getType()).getElementType();
    if (!element.isF32() && !element.isBF16() && !element.isF16()) {
      why = "only f32, bf16 and f16 attention is fused (the op computes in f32)";
      return failure();
    }

    // A bf16 or f16 attention computes in f32 (scores, softmax and
    // accumulation; the kernel and the tiled code are f32): its operands
    // are widened on the way in and its result rounded on the way out,
    // which is at least as accurate as the unfused half-precision chain.
    OpBuilder b(pv);
    Location loc = pv.getLoc();
    Type f32 = b.getF32Type();
    Value query = convertElements(b, loc, materialize(b, loc, *q, {0, 1, 2, 3}), f32);
    Value key = convertElements(b, loc, materialize(b, loc, *k, {0, 1, 3, 2}), f32);
    Value value = convertElements(b, loc, materialize(b, loc, *v, {0, 1, 2, 3}), f32);
    auto attentionWith = [&](const ScoreChain &masks, bool causal) {
      Value mask = masks.masks.empty()
                       ? Value()
                       : convertElements(b, loc, buildMask(b, loc, masks, element), f32);
      Value out = AttentionOp::create(b, loc, query, key, value, mask, heads, k->heads, causal,
                                      b.getF32FloatAttr(scale), /*tiling=*/nullptr)
                      .getResult();
      return convertElements(b, loc, out, element);
    };
    // A causal mask becomes the op's causal rule (tiles above the diagonal
    // are then never computed, and no mask is stored); when that holds
    // only for some lengths, both forms are kept behind the run-time test.
    Value result;
    if (std::optional<CausalStep> causal = causalStep(b, loc, *chain)) {
      ScoreChain rest = *chain;
      if (causal->residual)
        rest.masks[causal->index] = *causal->residual;
      else
        rest.masks.erase(rest.masks.begin() + causal->index);
      if (matchPattern(causal->holds, m_One())) {
        result = attentionWith(rest, true);
      } else {
        auto branch = scf::IfOp::create(
            b, loc, causal->holds,
            [&](OpBuilder &nb, Location) {
              OpBuilder::InsertionGuard guard(b);
              b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
              scf::YieldOp::create(b, loc, attentionWith(rest, true));
            },
            [&](OpBuilder &nb, Location) {
              OpBuilder::InsertionGuard guard(b);
              b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
              scf::YieldOp::create(b, loc, attentionWith(*chain, false));
            });
        result = branch.getResult(0);
      }
    } else {
      result = attentionWith(*chain, false);
    }

    // The result replaces the [b, h, s, dv] view of the PV product.
    Value pvResult = pv->getResult(0);
    auto expand = pvResult.hasOneUse()
                      ? dyn_cast<tensor::ExpandShapeOp>(*pvResult.getUsers().begin())
                      : tensor::ExpandShapeOp();
    if (expand && expand.getReassociationIndices() == groups && dimOf(expand, 1) == heads) {
      if (result.getType() != expand.getType())
        result = tensor::CastOp::create(b, loc, expand.getType(), result);
      expand.getResult().replaceAllUsesWith(result);
      expand.erase();
    } else {
      Value flat = tensor::CollapseShapeOp::create(b, loc, result, groups);
      if (flat.getType() != pvResult.getType())
        flat = tensor::CastOp::create(b, loc, pvResult.getType(), flat);
      pvResult.replaceAllUsesWith(flat);
    }
    // The PV product, the softmax and the scores chain are now dead; the
    // canonicalizer that follows erases them and their inputs.
    return success();
  }
};

} // namespace
