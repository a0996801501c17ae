//===- LinalgOps.cpp - ONNX compute ops to named linalg ops ----------------===//
//
// MatMul, Gemm, Conv, Softmax and the reductions become named linalg ops
// (matmul, batch_matmul, conv_*, softmax, reduce) so that later passes can
// match them; what linalg has no name for becomes a linalg.generic.
//
//===----------------------------------------------------------------------===//

#include "ImporterInternal.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/Matchers.h"

#include <cmath>
#include <map>

using namespace mlir;
using namespace hasten;
using namespace hasten::onnx_import;

namespace {

bool isFloat(Type t) { return isa<FloatType>(t); }

Value addScalars(OpBuilder &b, Location loc, Value x, Value y) {
  return isFloat(x.getType()) ? (Value)arith::AddFOp::create(b, loc, x, y)
                              : (Value)arith::AddIOp::create(b, loc, x, y);
}
Value mulScalars(OpBuilder &b, Location loc, Value x, Value y) {
  return isFloat(x.getType()) ? (Value)arith::MulFOp::create(b, loc, x, y)
                              : (Value)arith::MulIOp::create(b, loc, x, y);
}

Value zeroFilled(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes,
                 Type element) {
  return createFilled(b, loc, sizes, scalarConstant(b, loc, element, 0.0));
}

//===----------------------------------------------------------------------===//
// MatMul, Gemm, Einsum
//===----------------------------------------------------------------------===//

/// Broadcasts `value` to `sizes` (numpy rules, value aligned right).
Value broadcastTo(OpBuilder &b, Location loc, Value value,
                  ArrayRef<OpFoldResult> sizes) {
  auto type = cast<RankedTensorType>(value.getType());
  if (typeFromSizes(sizes, type.getElementType()) == type)
    return value;
  return buildElementwise(
      b, loc, value, type.getElementType(),
      [](OpBuilder &, Location, ValueRange args) { return args[0]; }, sizes);
}

} // namespace

FailureOr<Value> onnx_import::buildMatMul(NodeContext &ctx, Value a, Value bm) {
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  auto aType = cast<RankedTensorType>(a.getType());
  auto bType = cast<RankedTensorType>(bm.getType());
  if (aType.getRank() == 0 || bType.getRank() == 0)
    return (void)ctx.fail("operands must have rank 1 or more"), failure();
  if (aType.getElementType() != bType.getElementType())
    return (ctx.emitError() << "operand types differ: " << aType << " and "
                            << bType),
           failure();
  bool vectorA = aType.getRank() == 1, vectorB = bType.getRank() == 1;
  if (vectorA)
    a = insertUnitDims(b, loc, a, {0});
  if (vectorB)
    bm = insertUnitDims(b, loc, bm, {1});
  aType = cast<RankedTensorType>(a.getType());
  bType = cast<RankedTensorType>(bm.getType());
  int64_t ra = aType.getRank(), rb = bType.getRank();
  int64_t kA = aType.getDimSize(ra - 1), kB = bType.getDimSize(rb - 2);
  if (!ShapedType::isDynamic(kA) && !ShapedType::isDynamic(kB) && kA != kB)
    return (ctx.emitError() << "inner dimensions differ: " << aType << " and "
                            << bType),
           failure();
  Type element = aType.getElementType();
  SmallVector<OpFoldResult> aSizes = tensor::getMixedSizes(b, loc, a);
  SmallVector<OpFoldResult> bSizes = tensor::getMixedSizes(b, loc, bm);
  OpFoldResult m = aSizes[ra - 2], k = aSizes[ra - 1], n = bSizes[rb - 1];
  Value result;
  SmallVector<OpFoldResult> outSizes;
  if (rb == 2) {
    // [batch..., M, K] x [K, N]: one GEMM over the flattened rows.
    Value rows = a;
    if (ra > 2)
      rows = tensor::CollapseShapeOp::create(b, loc, a,
                                             groupsFromBoundaries({0, ra - 1, ra}));
    SmallVector<OpFoldResult> flat = {tensor::getMixedSize(b, loc, rows, 0), n};
    Value init = zeroFilled(b, loc, flat, element);
    result = linalg::MatmulOp::create(b, loc, ValueRange{rows, bm}, ValueRange{init})
                 .getResult(0);
    outSizes.assign(aSizes.begin(), aSizes.end() - 1);
    outSizes.push_back(n);
    if (ra > 2)
      result = tensor::ExpandShapeOp::create(
          b, loc, typeFromSizes(outSizes, element), result,
          groupsFromBoundaries({0, ra - 1, ra}), outSizes);
  } else {
    // Broadcast the batch dimensions, flatten them, batch_matmul.
    SmallVector<Value> batchProbes;
    int64_t batchRank = std::max(ra, rb) - 2;
    // Shapes of the batch parts, via zero-size-free probes of the operands.
    SmallVector<OpFoldResult> batch;
    for (int64_t d = 0; d < batchRank; ++d) {
      int64_t da = d - (batchRank - (ra - 2)), db = d - (batchRank - (rb - 2));
      std::optional<int64_t> sa, sb;
      if (da >= 0)
        sa = aType.getDimSize(da);
      if (db >= 0)
        sb = bType.getDimSize(db);
      if (sa && !ShapedType::isDynamic(*sa) && *sa != 1)
        batch.push_back(aSizes[da]);
      else if (sb && !ShapedType::isDynamic(*sb) && *sb != 1)
        batch.push_back(bSizes[db]);
      else if (sa && ShapedType::isDynamic(*sa))
        batch.push_back(aSizes[da]);
      else if (sb && ShapedType::isDynamic(*sb))
        batch.push_back(bSizes[db]);
      else
        batch.push_back(b.getIndexAttr(1));
    }
    SmallVector<OpFoldResult> aTarget(batch), bTarget(batch);
    aTarget.append({m, k});
    bTarget.append({bSizes[rb - 2], n});
    a = broadcastTo(b, loc, a, aTarget);
    bm = broadcastTo(b, loc, bm, bTarget);
    int64_t r = batchRank + 2;
    Value a3 = a, b3 = bm;
    if (batchRank != 1) {
      auto groups = batchRank == 0 ? SmallVector<ReassociationIndices>{}
                                   : groupsFromBoundaries({0, batchRank, r - 1, r});
      if (batchRank == 0) {
        a3 = insertUnitDims(b, loc, a, {0});
        b3 = insertUnitDims(b, loc, bm, {0});
      } else {
        a3 = tensor::CollapseShapeOp::create(b, loc, a, groups);
        b3 = tensor::CollapseShapeOp::create(b, loc, bm, groups);
      }
    }
    SmallVector<OpFoldResult> out3 = {tensor::getMixedSize(b, loc, a3, 0), m, n};
    Value init = zeroFilled(b, loc, out3, element);
    result = linalg::BatchMatmulOp::create(b, loc, ValueRange{a3, b3}, ValueRange{init})
                 .getResult(0);
    outSizes.assign(batch.begin(), batch.end());
    outSizes.append({m, n});
    if (batchRank == 0)
      result = dropUnitDims(b, loc, result, {0});
    else if (batchRank > 1)
      result = tensor::ExpandShapeOp::create(
          b, loc, typeFromSizes(outSizes, element), result,
          groupsFromBoundaries({0, batchRank, r - 1, r}), outSizes);
  }
  int64_t outRank = cast<RankedTensorType>(result.getType()).getRank();
  SmallVector<int64_t> drop;
  if (vectorA)
    drop.push_back(outRank - 2);
  if (vectorB)
    drop.push_back(outRank - 1);
  if (!drop.empty())
    result = dropUnitDims(b, loc, result, drop);
  return result;
}

namespace {

LogicalResult convertMatMul(NodeContext &ctx) {
  FailureOr<Value> result = buildMatMul(ctx, ctx.input(0), ctx.input(1));
  if (failed(result))
    return failure();
  ctx.setOutput(0, *result);
  return success();
}

Value transpose2D(OpBuilder &b, Location loc, Value value) {
  auto type = cast<RankedTensorType>(value.getType());
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, value);
  Value init = createEmpty(b, loc, {sizes[1], sizes[0]}, type.getElementType());
  return linalg::TransposeOp::create(b, loc, value, init, ArrayRef<int64_t>{1, 0})
      .getResult()[0];
}

LogicalResult convertGemm(NodeContext &ctx) {
  Value a = ctx.input(0), bm = ctx.input(1);
  if (ctx.inputType(0).getRank() != 2 || ctx.inputType(1).getRank() != 2)
    return ctx.emitError() << "A and B must be matrices, got "
                           << ctx.inputType(0) << " and " << ctx.inputType(1);
  if (ctx.getInt("transA", 0))
    a = transpose2D(ctx.b, ctx.loc, a);
  if (ctx.getInt("transB", 0))
    bm = transpose2D(ctx.b, ctx.loc, bm);
  double alpha = ctx.getFloat("alpha", 1.0f), beta = ctx.getFloat("beta", 1.0f);
  FailureOr<Value> product = buildMatMul(ctx, a, bm);
  if (failed(product))
    return failure();
  Value result = *product;
  Type element = cast<RankedTensorType>(result.getType()).getElementType();
  bool hasC = ctx.hasInput(2) && beta != 0.0;
  if (alpha != 1.0 || hasC) {
    SmallVector<Value> inputs = {result};
    if (hasC)
      inputs.push_back(ctx.input(2));
    SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(ctx.b, ctx.loc, result);
    result = buildElementwise(
        ctx.b, ctx.loc, inputs, element,
        [&](OpBuilder &b, Location loc, ValueRange args) {
          Value v = args[0];
          if (alpha != 1.0)
            v = mulScalars(b, loc, v, scalarConstant(b, loc, element, alpha));
          if (args.size() > 1) {
            Value c = args[1];
            if (beta != 1.0)
              c = mulScalars(b, loc, c, scalarConstant(b, loc, element, beta));
            v = addScalars(b, loc, v, c);
          }
          return v;
        },
        ArrayRef<OpFoldResult>(sizes));
  }
  ctx.setOutput(0, result);
  return success();
}

LogicalResult convertEinsum(NodeContext &ctx) {
  std::string equation = ctx.getString("equation", "");
  equation.erase(std::remove(equation.begin(), equation.end(), ' '), equation.end());
  std::string lhs = equation, rhs;
  bool explicitOutput = false;
  if (size_t arrow = equation.find("->"); arrow != std::string::npos) {
    lhs = equation.substr(0, arrow);
    rhs = equation.substr(arrow + 2);
    explicitOutput = true;
  }
  SmallVector<std::string> terms;
  for (size_t start = 0;;) {
    size_t comma = lhs.find(',', start);
    terms.push_back(lhs.substr(start, comma - start));
    if (comma == std::string::npos)
      break;
    start = comma + 1;
  }
  int numInputs = ctx.node.input_size();
  if ((int)terms.size() != numInputs)
    return ctx.fail("equation '" + equation + "' names " +
                    std::to_string(terms.size()) + " operands but the node has " +
                    std::to_string(numInputs));
  // Expand "..." into numbered labels (chars above 127) right-aligned.
  int64_t ellipsisRank = 0;
  for (int i = 0; i < numInputs; ++i) {
    size_t dots = terms[i].find("...");
    if (dots == std::string::npos)
      continue;
    int64_t explicitLabels = terms[i].size() - 3;
    ellipsisRank = std::max(ellipsisRank, ctx.inputType(i).getRank() - explicitLabels);
  }
  auto expand = [&](std::string term, int64_t rank) -> std::string {
    size_t dots = term.find("...");
    if (dots == std::string::npos)
      return term;
    int64_t count = rank - (int64_t)(term.size() - 3);
    std::string labels;
    for (int64_t e = ellipsisRank - count; e < ellipsisRank; ++e)
      labels.push_back(static_cast<char>(200 + e));
    return term.substr(0, dots) + labels + term.substr(dots + 3);
  };
  for (int i = 0; i < numInputs; ++i) {
    terms[i] = expand(terms[i], ctx.inputType(i).getRank());
    if ((int64_t)terms[i].size() != ctx.inputType(i).getRank())
      return ctx.emitError() << "term '" << terms[i] << "' does not match operand #"
                             << i << " of type " << ctx.inputType(i);
  }
  std::string output;
  if (explicitOutput) {
    std::string ellipsis;
    for (int64_t e = 0; e < ellipsisRank; ++e)
      ellipsis.push_back(static_cast<char>(200 + e));
    size_t dots = rhs.find("...");
    output = dots == std::string::npos
                 ? rhs
                 : rhs.substr(0, dots) + ellipsis + rhs.substr(dots + 3);
  } else {
    std::map<char, int> counts;
    for (const std::string &t : terms)
      for (char c : t)
        ++counts[c];
    for (int64_t e = 0; e < ellipsisRank; ++e)
      output.push_back(static_cast<char>(200 + e));
    for (auto [c, n] : counts)
      if (n == 1 && (unsigned char)c < 128)
        output.push_back(c);
  }
  // Loop dimensions: output labels, then the summed ones.
  std::string loops = output;
  for (const std::string &t : terms)
    for (char c : t)
      if (loops.find(c) == std::string::npos)
        loops.push_back(c);
  OpBuilder &b = ctx.b;
  Type element = ctx.inputType(0).getElementType();
  std::map<char, OpFoldResult> sizes;
  for (int i = 0; i < numInputs; ++i) {
    if (ctx.inputType(i).getElementType() != element)
      return ctx.fail("operands must share one element type");
    for (auto [d, c] : llvm::enumerate(terms[i])) {
      int64_t s = ctx.inputType(i).getDimSize(d);
      auto it = sizes.find(c);
      bool haveStatic = it != sizes.end() && getConstantIntValue(it->second) &&
                        *getConstantIntValue(it->second) != 1;
      if (it == sizes.end() || (!haveStatic && s != 1))
        sizes[c] = tensor::getMixedSize(b, ctx.loc, ctx.input(i), d);
    }
  }
  SmallVector<AffineMap> maps;
  SmallVector<Value> inputs;
  for (int i = 0; i < numInputs; ++i) {
    SmallVector<AffineExpr> exprs;
    for (auto [d, c] : llvm::enumerate(terms[i])) {
      int64_t s = ctx.inputType(i).getDimSize(d);
      std::optional<int64_t> full = getConstantIntValue(sizes[c]);
      bool broadcast = s == 1 && (!full || *full != 1);
      exprs.push_back(broadcast ? b.getAffineConstantExpr(0)
                                : b.getAffineDimExpr(loops.find(c)));
    }
    maps.push_back(AffineMap::get(loops.size(), 0, exprs, b.getContext()));
    inputs.push_back(ctx.input(i));
  }
  SmallVector<AffineExpr> outExprs;
  SmallVector<OpFoldResult> outSizes;
  for (char c : output) {
    outExprs.push_back(b.getAffineDimExpr(loops.find(c)));
    outSizes.push_back(sizes[c]);
  }
  maps.push_back(AffineMap::get(loops.size(), 0, outExprs, b.getContext()));
  SmallVector<utils::IteratorType> iterators;
  for (size_t l = 0; l < loops.size(); ++l)
    iterators.push_back(l < output.size() ? utils::IteratorType::parallel
                                          : utils::IteratorType::reduction);
  Value init = zeroFilled(b, ctx.loc, outSizes, element);
  auto generic = linalg::GenericOp::create(
      b, ctx.loc, TypeRange{typeFromSizes(outSizes, element)}, inputs,
      ValueRange{init}, maps, iterators,
      [&](OpBuilder &nb, Location loc, ValueRange args) {
        Value product = args[0];
        for (Value v : args.drop_front().drop_back())
          product = mulScalars(nb, loc, product, v);
        linalg::YieldOp::create(nb, loc, addScalars(nb, loc, args.back(), product));
      });
  ctx.setOutput(0, generic.getResult(0));
  return success();
}

//===----------------------------------------------------------------------===//
// Reductions
//===----------------------------------------------------------------------===//

/// Reduces `value` over `dims` with `combine`, starting from `identity`.
Value reduce(OpBuilder &b, Location loc, Value value, ArrayRef<int64_t> dims,
             Value identity,
             function_ref<Value(OpBuilder &, Location, Value, Value)> combine) {
  auto type = cast<RankedTensorType>(value.getType());
  SmallVector<OpFoldResult> sizes;
  for (int64_t d = 0; d < type.getRank(); ++d)
    if (!llvm::is_contained(dims, d))
      sizes.push_back(tensor::getMixedSize(b, loc, value, d));
  Value init = createFilled(b, loc, sizes, identity);
  auto op = linalg::ReduceOp::create(
      b, loc, ValueRange{value}, ValueRange{init}, dims,
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        linalg::YieldOp::create(nb, nl, combine(nb, nl, args[0], args[1]));
      });
  return op.getResult(0);
}

Value combineAdd(OpBuilder &b, Location loc, Value x, Value acc) {
  return addScalars(b, loc, x, acc);
}
Value combineMul(OpBuilder &b, Location loc, Value x, Value acc) {
  return mulScalars(b, loc, x, acc);
}
Value combineMax(OpBuilder &b, Location loc, Value x, Value acc) {
  if (isFloat(x.getType()))
    return arith::MaximumFOp::create(b, loc, x, acc);
  return arith::MaxSIOp::create(b, loc, x, acc);
}
Value combineMin(OpBuilder &b, Location loc, Value x, Value acc) {
  if (isFloat(x.getType()))
    return arith::MinimumFOp::create(b, loc, x, acc);
  return arith::MinSIOp::create(b, loc, x, acc);
}

/// The element count of `dims` of `value`, as a scalar of `element` type.
Value countOf(OpBuilder &b, Location loc, Value value, ArrayRef<int64_t> dims,
              Type element) {
  Value count = arith::ConstantIndexOp::create(b, loc, 1);
  for (int64_t d : dims)
    count = b.createOrFold<arith::MulIOp>(
        loc, count,
        getValueOrCreateConstantIndexOp(b, loc, tensor::getMixedSize(b, loc, value, d)));
  Value asInt = b.createOrFold<arith::IndexCastOp>(loc, b.getI64Type(), count);
  if (isFloat(element))
    return b.createOrFold<arith::SIToFPOp>(loc, element, asInt);
  return b.createOrFold<arith::TruncIOp>(loc, element, asInt);
}

/// Applies `body` to every element of `value`.
Value mapElements(OpBuilder &b, Location loc, Value value,
                  function_ref<Value(OpBuilder &, Location, Value)> body) {
  auto type = cast<RankedTensorType>(value.getType());
  return buildElementwise(b, loc, value, type.getElementType(),
                          [&](OpBuilder &nb, Location nl, ValueRange args) {
                            return body(nb, nl, args[0]);
                          });
}

/// `axes` normalized against `rank` (negative ones counted from the end),
/// without repeats, in increasing order; errors name them as `what`.
FailureOr<SmallVector<int64_t>> normalizeAxes(NodeContext &ctx, ArrayRef<int64_t> axes,
                                              int64_t rank, StringRef what) {
  SmallVector<int64_t> dims;
  for (int64_t a : axes) {
    FailureOr<int64_t> axis = ctx.normalizeAxis(a, rank, what);
    if (failed(axis))
      return failure();
    if (!llvm::is_contained(dims, *axis))
      dims.push_back(*axis);
  }
  llvm::sort(dims);
  return dims;
}

LogicalResult convertReduce(NodeContext &ctx) {
  StringRef op = ctx.node.op_type();
  auto type = ctx.inputType(0);
  int64_t rank = type.getRank();
  Type element = type.getElementType();
  std::optional<SmallVector<int64_t>> axes;
  bool axesAsInput = op == "ReduceSum" && ctx.opset >= 13;
  if (axesAsInput) {
    if (ctx.hasInput(1)) {
      axes = ctx.constantInts(1);
      if (!axes)
        return ctx.fail("'axes' must be a constant");
    }
  } else {
    axes = ctx.getInts("axes");
  }
  bool keepDims = ctx.getInt("keepdims", 1) != 0;
  // Read whatever the axes (an explicit 0 with axes given is common).
  bool noopWithEmptyAxes = ctx.getInt("noop_with_empty_axes", 0) != 0;
  if ((!axes || axes->empty()) && noopWithEmptyAxes) {
    ctx.setOutput(0, ctx.input(0), ctx.info(0).isUnsigned);
    return success();
  }
  SmallVector<int64_t> dims;
  if (!axes || axes->empty()) {
    for (int64_t d = 0; d < rank; ++d)
      dims.push_back(d);
  } else {
    FailureOr<SmallVector<int64_t>> normalized = normalizeAxes(ctx, *axes, rank, "axis");
    if (failed(normalized))
      return failure();
    dims = *normalized;
  }
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Value x = ctx.input(0);
  if ((op == "ReduceMean" || op == "ReduceL2" || op == "ReduceLogSum" ||
       op == "ReduceLogSumExp") &&
      !isFloat(element))
    return ctx.emitError() << "expects floating-point input, got " << type;
  Value result;
  if (op == "ReduceSum" || op == "ReduceMean") {
    result = reduce(b, loc, x, dims, scalarConstant(b, loc, element, 0), combineAdd);
    if (op == "ReduceMean") {
      Value count = countOf(b, loc, x, dims, element);
      result = mapElements(b, loc, result, [&](OpBuilder &nb, Location nl, Value v) {
        return arith::DivFOp::create(nb, nl, v, count).getResult();
      });
    }
  } else if (op == "ReduceMax") {
    result = reduce(b, loc, x, dims, lowestValue(b, loc, element), combineMax);
  } else if (op == "ReduceMin") {
    result = reduce(b, loc, x, dims, highestValue(b, loc, element), combineMin);
  } else if (op == "ReduceProd") {
    result = reduce(b, loc, x, dims, scalarConstant(b, loc, element, 1), combineMul);
  } else if (op == "ReduceL1" || op == "ReduceL2" || op == "ReduceSumSquare") {
    bool absolute = op == "ReduceL1";
    Value mapped = mapElements(b, loc, x, [&](OpBuilder &nb, Location nl, Value v) {
      if (absolute)
        return isFloat(element) ? (Value)math::AbsFOp::create(nb, nl, v)
                                : (Value)math::AbsIOp::create(nb, nl, v);
      return mulScalars(nb, nl, v, v);
    });
    result = reduce(b, loc, mapped, dims, scalarConstant(b, loc, element, 0), combineAdd);
    if (op == "ReduceL2")
      result = mapElements(b, loc, result, [](OpBuilder &nb, Location nl, Value v) {
        return math::SqrtOp::create(nb, nl, v).getResult();
      });
  } else if (op == "ReduceLogSum" || op == "ReduceLogSumExp") {
    Value mapped = x;
    Value max;
    if (op == "ReduceLogSumExp") {
      // log(sum(exp(x - max))) + max, for range safety.
      max = reduce(b, loc, x, dims, lowestValue(b, loc, element), combineMax);
      AffineMap project = [&] {
        SmallVector<AffineExpr> exprs;
        for (int64_t d = 0; d < rank; ++d)
          if (!llvm::is_contained(dims, d))
            exprs.push_back(b.getAffineDimExpr(d));
        return AffineMap::get(rank, 0, exprs, b.getContext());
      }();
      Value init = createEmpty(b, loc, tensor::getMixedSizes(b, loc, x), element);
      SmallVector<utils::IteratorType> iterators(rank, utils::IteratorType::parallel);
      mapped = linalg::GenericOp::create(
                   b, loc, TypeRange{init.getType()}, ValueRange{x, max},
                   ValueRange{init},
                   ArrayRef<AffineMap>{b.getMultiDimIdentityMap(rank), project,
                                       b.getMultiDimIdentityMap(rank)},
                   iterators,
                   [&](OpBuilder &nb, Location nl, ValueRange args) {
                     Value shifted = arith::SubFOp::create(nb, nl, args[0], args[1]);
                     linalg::YieldOp::create(
                         nb, nl, math::ExpOp::create(nb, nl, shifted).getResult());
                   })
                   .getResult(0);
    }
    result = reduce(b, loc, mapped, dims, scalarConstant(b, loc, element, 0), combineAdd);
    if (max)
      result = buildElementwise(b, loc, ValueRange{result, max}, element,
                                [](OpBuilder &nb, Location nl, ValueRange args) {
                                  return arith::AddFOp::create(
                                             nb, nl, math::LogOp::create(nb, nl, args[0]),
                                             args[1])
                                      .getResult();
                                });
    else
      result = mapElements(b, loc, result, [](OpBuilder &nb, Location nl, Value v) {
        return math::LogOp::create(nb, nl, v).getResult();
      });
  } else {
    return ctx.fail("unknown reduction");
  }
  if (keepDims)
    result = insertUnitDims(b, loc, result, dims);
  ctx.setOutput(0, result, ctx.info(0).isUnsigned);
  return success();
}

/// The index (i64) of the largest (or smallest) element along `axis`, that
/// dimension dropped: the first one on ties, the last with `lastIndex`.
Value buildArgExtreme(NodeContext &ctx, int64_t axis, bool isMax, bool lastIndex) {
  auto type = ctx.inputType(0);
  int64_t rank = type.getRank();
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Type element = type.getElementType();
  bool isUnsigned = ctx.info(0).isUnsigned;
  SmallVector<OpFoldResult> sizes;
  SmallVector<AffineExpr> outExprs;
  for (int64_t d = 0; d < rank; ++d) {
    if (d == axis)
      continue;
    sizes.push_back(tensor::getMixedSize(b, loc, ctx.input(0), d));
    outExprs.push_back(b.getAffineDimExpr(d));
  }
  Value best = createFilled(b, loc, sizes,
                            isMax ? lowestValue(b, loc, element)
                                  : highestValue(b, loc, element));
  Value index = createFilled(b, loc, sizes, scalarConstant(b, loc, b.getI64Type(), -1));
  AffineMap outMap = AffineMap::get(rank, 0, outExprs, b.getContext());
  SmallVector<utils::IteratorType> iterators(rank, utils::IteratorType::parallel);
  iterators[axis] = utils::IteratorType::reduction;
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{best.getType(), index.getType()}, ValueRange{ctx.input(0)},
      ValueRange{best, index},
      ArrayRef<AffineMap>{b.getMultiDimIdentityMap(rank), outMap, outMap}, iterators,
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value v = args[0], cur = args[1], curIdx = args[2];
        Value j = arith::IndexCastOp::create(nb, nl, nb.getI64Type(),
                                             linalg::IndexOp::create(nb, nl, axis));
        Value better, equal;
        if (isFloat(element)) {
          better = arith::CmpFOp::create(nb, nl,
                                         isMax ? arith::CmpFPredicate::OGT
                                               : arith::CmpFPredicate::OLT,
                                         v, cur);
          equal = arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::OEQ, v, cur);
        } else {
          arith::CmpIPredicate p =
              isMax ? (isUnsigned ? arith::CmpIPredicate::ugt : arith::CmpIPredicate::sgt)
                    : (isUnsigned ? arith::CmpIPredicate::ult : arith::CmpIPredicate::slt);
          better = arith::CmpIOp::create(nb, nl, p, v, cur);
          equal = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::eq, v, cur);
        }
        // The first index wins ties unless lastIndex; an unset index (-1)
        // always takes the first element.
        Value unset = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt, curIdx,
                                            scalarConstant(nb, nl, nb.getI64Type(), 0));
        Value take = arith::OrIOp::create(nb, nl, better, unset);
        if (lastIndex)
          take = arith::OrIOp::create(nb, nl, take, equal);
        linalg::YieldOp::create(
            nb, nl,
            ValueRange{arith::SelectOp::create(nb, nl, take, v, cur),
                       arith::SelectOp::create(nb, nl, take, j, curIdx)});
      });
  return generic.getResult(1);
}

LogicalResult convertArgMinMax(NodeContext &ctx) {
  int64_t rank = ctx.inputType(0).getRank();
  FailureOr<int64_t> axis = ctx.normalizeAxis(ctx.getInt("axis", 0), rank);
  if (failed(axis))
    return failure();
  Value result = buildArgExtreme(ctx, *axis, ctx.node.op_type() == "ArgMax",
                                 ctx.getInt("select_last_index", 0) != 0);
  if (ctx.getInt("keepdims", 1) != 0)
    result = insertUnitDims(ctx.b, ctx.loc, result, {*axis});
  ctx.setOutput(0, result);
  return success();
}

/// LRN: x / (bias + alpha / size * (sum of x^2 over the `size` channels
/// around it))^beta, the window cut at the channel range's ends.
LogicalResult convertLRN(NodeContext &ctx) {
  auto type = ctx.inputType(0);
  if (type.getRank() < 3 || !isFloat(type.getElementType()))
    return ctx.emitError() << "expects a floating-point [N, C, ...] input, got " << type;
  int64_t size = ctx.getInt("size", 0);
  if (size <= 0 || size > 1024)
    return ctx.fail("size must be in [1, 1024], got " + std::to_string(size));
  double alpha = ctx.getFloat("alpha", 1e-4f), beta = ctx.getFloat("beta", 0.75f),
         bias = ctx.getFloat("bias", 1.0f);
  Value x = ctx.input(0);
  Type element = type.getElementType();
  int64_t rank = type.getRank();
  Value channels = tensor::DimOp::create(ctx.b, ctx.loc, x, 1);
  int64_t before = (size - 1) / 2, after = size - 1 - before;
  Value result = buildElementwise(
      ctx.b, ctx.loc, ValueRange{x}, element, [&](OpBuilder &b, Location loc, ValueRange args) {
        SmallVector<Value> coords;
        for (int64_t d = 0; d < rank; ++d)
          coords.push_back(linalg::IndexOp::create(b, loc, d));
        Value c = coords[1];
        Value zero = scalarConstant(b, loc, element, 0);
        Value sum = zero;
        Value lowest = arith::ConstantIndexOp::create(b, loc, 0);
        for (int64_t k = -before; k <= after; ++k) {
          Value at = arith::AddIOp::create(b, loc, c, arith::ConstantIndexOp::create(b, loc, k));
          Value inside = arith::AndIOp::create(
              b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, at, lowest),
              arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, at, channels));
          // Read a valid channel either way, then drop it outside the range.
          SmallVector<Value> neighbour(coords);
          neighbour[1] = arith::SelectOp::create(b, loc, inside, at, c);
          Value v = tensor::ExtractOp::create(b, loc, x, neighbour);
          Value square = arith::MulFOp::create(b, loc, v, v);
          sum = arith::AddFOp::create(b, loc, sum,
                                      arith::SelectOp::create(b, loc, inside, square, zero));
        }
        Value scale = arith::AddFOp::create(
            b, loc, scalarConstant(b, loc, element, bias),
            arith::MulFOp::create(b, loc, scalarConstant(b, loc, element, alpha / double(size)),
                                  sum));
        Value denominator =
            math::PowFOp::create(b, loc, scale, scalarConstant(b, loc, element, beta));
        return arith::DivFOp::create(b, loc, args[0], denominator).getResult();
      });
  ctx.setOutput(0, result);
  return success();
}

/// Hardmax: 1 where an element is the first largest along `axis`, else 0.
LogicalResult convertHardmax(NodeContext &ctx) {
  auto type = ctx.inputType(0);
  int64_t rank = type.getRank();
  if (!isFloat(type.getElementType()))
    return ctx.emitError() << "expects a floating-point input, got " << type;
  FailureOr<int64_t> axis = ctx.normalizeAxis(ctx.getInt("axis", -1), rank);
  if (failed(axis))
    return failure();
  Value argmax = insertUnitDims(ctx.b, ctx.loc, buildArgExtreme(ctx, *axis, true, false),
                                {*axis});
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(ctx.b, ctx.loc, ctx.input(0));
  Type element = type.getElementType();
  int64_t along = *axis;
  Value result = buildElementwise(
      ctx.b, ctx.loc, ValueRange{argmax}, element,
      [&](OpBuilder &b, Location loc, ValueRange args) {
        Value j = arith::IndexCastOp::create(b, loc, b.getI64Type(),
                                             linalg::IndexOp::create(b, loc, along));
        Value hit = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, j, args[0]);
        return arith::SelectOp::create(b, loc, hit, scalarConstant(b, loc, element, 1),
                                       scalarConstant(b, loc, element, 0))
            .getResult();
      },
      ArrayRef<OpFoldResult>(sizes));
  ctx.setOutput(0, result);
  return success();
}

//===----------------------------------------------------------------------===//
// TopK
//===----------------------------------------------------------------------===//

LogicalResult convertTopK(NodeContext &ctx) {
  auto type = ctx.inputType(0);
  int64_t rank = type.getRank();
  FailureOr<int64_t> axis = ctx.normalizeAxis(ctx.getInt("axis", -1), rank);
  if (failed(axis))
    return failure();
  std::optional<SmallVector<Value>> kValues = ctx.inputElements(1);
  if (!kValues || kValues->size() != 1)
    return ctx.fail("K must be a one-element integer tensor");
  bool largest = ctx.getInt("largest", 1) != 0;
  // sorted=0 leaves the order of the K results unspecified: sorted order is
  // one of the allowed ones.
  ctx.ignoreAttr("sorted");
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Type element = type.getElementType();
  Type i64 = b.getI64Type();
  Value x = ctx.input(0);
  Value k = toIndex(b, loc, (*kValues)[0]);
  if (std::optional<int64_t> kc = getConstantIntValue(getAsOpFoldResult(k))) {
    int64_t n = type.getDimSize(*axis);
    if (!ShapedType::isDynamic(n) && *kc > n)
      return ctx.emitError() << "K = " << *kc << " exceeds the axis size " << n;
  }
  SmallVector<OpFoldResult> outSizes = tensor::getMixedSizes(b, loc, x);
  outSizes[*axis] = getAsOpFoldResult(k);
  SmallVector<OpFoldResult> rowSizes;
  SmallVector<AffineExpr> rowExprs;
  for (int64_t d = 0; d < rank; ++d) {
    if (d == *axis)
      continue;
    rowSizes.push_back(tensor::getMixedSize(b, loc, x, d));
    rowExprs.push_back(b.getAffineDimExpr(d));
  }
  AffineMap rowMap = AffineMap::get(rank, 0, rowExprs, b.getContext());
  Value worst = largest ? lowestValue(b, loc, element) : highestValue(b, loc, element);
  Value beyond = largest ? highestValue(b, loc, element) : lowestValue(b, loc, element);
  Value values = createEmpty(b, loc, outSizes, element);
  Value indices = createEmpty(b, loc, outSizes, i64);
  Value prevValue = createFilled(b, loc, rowSizes, beyond);
  Value prevIndex = createFilled(b, loc, rowSizes, scalarConstant(b, loc, i64, -1));
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  Value one = arith::ConstantIndexOp::create(b, loc, 1);
  // Round r picks, per row, the best element ranked after round r-1's pick in
  // the order (value, then lower index first): K passes of a reduction.
  auto loop = scf::ForOp::create(
      b, loc, zero, k, one, ValueRange{values, indices, prevValue, prevIndex},
      [&](OpBuilder &lb, Location ll, Value round, ValueRange iter) {
        Value bestInit = createFilled(lb, ll, rowSizes, worst);
        Value idxInit = createFilled(lb, ll, rowSizes, scalarConstant(lb, ll, i64, -1));
        SmallVector<utils::IteratorType> iterators(rank, utils::IteratorType::parallel);
        iterators[*axis] = utils::IteratorType::reduction;
        auto pick = linalg::GenericOp::create(
            lb, ll, TypeRange{bestInit.getType(), idxInit.getType()},
            ValueRange{x, iter[2], iter[3]}, ValueRange{bestInit, idxInit},
            ArrayRef<AffineMap>{lb.getMultiDimIdentityMap(rank), rowMap, rowMap,
                                rowMap, rowMap},
            iterators, [&](OpBuilder &nb, Location nl, ValueRange a) {
              Value v = a[0], pv = a[1], pi = a[2], bv = a[3], bi = a[4];
              Value j = arith::IndexCastOp::create(
                  nb, nl, i64, linalg::IndexOp::create(nb, nl, *axis));
              auto before = [&](Value x1, Value y1) -> Value {
                // x1 ranks before y1 (strictly better value).
                if (isFloat(element))
                  return arith::CmpFOp::create(
                      nb, nl, largest ? arith::CmpFPredicate::OGT : arith::CmpFPredicate::OLT,
                      x1, y1);
                return arith::CmpIOp::create(
                    nb, nl, largest ? arith::CmpIPredicate::sgt : arith::CmpIPredicate::slt,
                    x1, y1);
              };
              auto same = [&](Value x1, Value y1) -> Value {
                if (isFloat(element))
                  return arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::OEQ, x1, y1);
                return arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::eq, x1, y1);
              };
              // Still available: ranked after the previous pick.
              Value afterPrev = arith::OrIOp::create(
                  nb, nl, before(pv, v),
                  arith::AndIOp::create(
                      nb, nl, same(v, pv),
                      arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sgt, j, pi)));
              Value unset = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt, bi,
                                                  scalarConstant(nb, nl, i64, 0));
              Value better = arith::OrIOp::create(nb, nl, unset, before(v, bv));
              Value take = arith::AndIOp::create(nb, nl, afterPrev, better);
              linalg::YieldOp::create(
                  nb, nl,
                  ValueRange{arith::SelectOp::create(nb, nl, take, v, bv),
                             arith::SelectOp::create(nb, nl, take, j, bi)});
            });
        SmallVector<OpFoldResult> offsets(rank, lb.getIndexAttr(0));
        offsets[*axis] = round;
        SmallVector<OpFoldResult> sizes = outSizes;
        sizes[*axis] = lb.getIndexAttr(1);
        SmallVector<OpFoldResult> strides(rank, lb.getIndexAttr(1));
        Value newValues = tensor::InsertSliceOp::create(lb, ll, pick.getResult(0), iter[0],
                                                        offsets, sizes, strides);
        Value newIndices = tensor::InsertSliceOp::create(lb, ll, pick.getResult(1), iter[1],
                                                         offsets, sizes, strides);
        scf::YieldOp::create(lb, ll, ValueRange{newValues, newIndices, pick.getResult(0),
                                                pick.getResult(1)});
      });
  ctx.setOutput(0, loop.getResult(0), ctx.info(0).isUnsigned);
  ctx.setOutput(1, loop.getResult(1));
  return success();
}

//===----------------------------------------------------------------------===//
// Softmax family and normalization
//===----------------------------------------------------------------------===//

/// Broadcast map from a tensor of rank `rank` to the tensor with `dims`
/// removed.
AffineMap projectOut(OpBuilder &b, int64_t rank, ArrayRef<int64_t> dims) {
  SmallVector<AffineExpr> exprs;
  for (int64_t d = 0; d < rank; ++d)
    if (!llvm::is_contained(dims, d))
      exprs.push_back(b.getAffineDimExpr(d));
  return AffineMap::get(rank, 0, exprs, b.getContext());
}

/// softmax or log-softmax of `x` over `dims`, numerically stable.
Value buildSoftmax(OpBuilder &b, Location loc, Value x, ArrayRef<int64_t> dims,
                   bool log) {
  auto type = cast<RankedTensorType>(x.getType());
  int64_t rank = type.getRank();
  Type element = type.getElementType();
  Value max = reduce(b, loc, x, dims, lowestValue(b, loc, element), combineMax);
  AffineMap identity = b.getMultiDimIdentityMap(rank);
  AffineMap project = projectOut(b, rank, dims);
  SmallVector<utils::IteratorType> parallel(rank, utils::IteratorType::parallel);
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
  Value shifted = linalg::GenericOp::create(
                      b, loc, TypeRange{type}, ValueRange{x, max},
                      ValueRange{createEmpty(b, loc, sizes, element)},
                      ArrayRef<AffineMap>{identity, project, identity}, parallel,
                      [&](OpBuilder &nb, Location nl, ValueRange a) {
                        linalg::YieldOp::create(
                            nb, nl, arith::SubFOp::create(nb, nl, a[0], a[1]).getResult());
                      })
                      .getResult(0);
  Value exps = mapElements(b, loc, shifted, [](OpBuilder &nb, Location nl, Value v) {
    return math::ExpOp::create(nb, nl, v).getResult();
  });
  Value sum = reduce(b, loc, exps, dims, scalarConstant(b, loc, element, 0), combineAdd);
  return linalg::GenericOp::create(
             b, loc, TypeRange{type}, ValueRange{log ? shifted : exps, sum},
             ValueRange{createEmpty(b, loc, sizes, element)},
             ArrayRef<AffineMap>{identity, project, identity}, parallel,
             [&](OpBuilder &nb, Location nl, ValueRange a) {
               Value r = log ? (Value)arith::SubFOp::create(
                                   nb, nl, a[0], math::LogOp::create(nb, nl, a[1]))
                             : (Value)arith::DivFOp::create(nb, nl, a[0], a[1]);
               linalg::YieldOp::create(nb, nl, r);
             })
      .getResult(0);
}

LogicalResult convertSoftmax(NodeContext &ctx) {
  auto type = ctx.inputType(0);
  if (!isFloat(type.getElementType()))
    return ctx.emitError() << "expects a floating-point input, got " << type;
  int64_t rank = type.getRank();
  bool isLog = ctx.node.op_type() == "LogSoftmax";
  int64_t defaultAxis = ctx.opset >= 13 ? -1 : 1;
  FailureOr<int64_t> axis = ctx.normalizeAxis(ctx.getInt("axis", defaultAxis), rank);
  if (failed(axis))
    return failure();
  SmallVector<int64_t> dims;
  if (ctx.opset >= 13) {
    dims.push_back(*axis);
  } else {
    // Before opset 13 the input is coerced to 2-D at `axis`.
    for (int64_t d = *axis; d < rank; ++d)
      dims.push_back(d);
  }
  Value result;
  if (!isLog && dims.size() == 1) {
    SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(ctx.b, ctx.loc, ctx.input(0));
    Value init = createEmpty(ctx.b, ctx.loc, sizes, type.getElementType());
    result = linalg::SoftmaxOp::create(ctx.b, ctx.loc, type, ctx.input(0), init, dims[0])
                 .getResult()[0];
  } else {
    result = buildSoftmax(ctx.b, ctx.loc, ctx.input(0), dims, isLog);
  }
  ctx.setOutput(0, result);
  return success();
}

/// The negative log-likelihood of `target` classes under `logProb`
/// ([N, C, d1...]): per position -logProb[n, target, d...] * weight[target],
/// 0 where target == ignore_index; then none (that tensor), sum, or mean
/// (the sum over the sum of the weights taken), as NegativeLogLikelihoodLoss
/// and SoftmaxCrossEntropyLoss define.
FailureOr<Value> buildNllLoss(NodeContext &ctx, Value logProb, Value target,
                              std::optional<Value> weight) {
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  auto type = cast<RankedTensorType>(logProb.getType());
  auto targetType = cast<RankedTensorType>(target.getType());
  int64_t rank = type.getRank();
  if (rank < 2 || targetType.getRank() != rank - 1 ||
      !isa<IntegerType>(targetType.getElementType()))
    return ctx.emitError() << "expects scores [N, C, d...] and integer targets [N, d...], got "
                           << type << " and " << targetType;
  std::string reduction = ctx.getString("reduction", "mean");
  if (reduction != "none" && reduction != "sum" && reduction != "mean")
    return ctx.fail("reduction must be none, sum or mean, got '" + reduction + "'");
  std::optional<int64_t> ignore;
  if (ctx.hasAttr("ignore_index"))
    ignore = ctx.getInt("ignore_index", 0);
  Type element = type.getElementType();
  Value classes = tensor::DimOp::create(b, loc, logProb, 1);
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, target);
  int64_t targetRank = targetType.getRank();
  Value lossInit = createEmpty(b, loc, sizes, element);
  Value weightInit = createEmpty(b, loc, sizes, element);
  SmallVector<utils::IteratorType> parallel(targetRank, utils::IteratorType::parallel);
  AffineMap identity = b.getMultiDimIdentityMap(targetRank);
  auto terms = linalg::GenericOp::create(
      b, loc, TypeRange{lossInit.getType(), weightInit.getType()}, ValueRange{target},
      ValueRange{lossInit, weightInit}, ArrayRef<AffineMap>{identity, identity, identity},
      parallel, [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value t = arith::IndexCastOp::create(nb, nl, nb.getIndexType(), args[0]);
        Value zeroIndex = arith::ConstantIndexOp::create(nb, nl, 0);
        Value keep = arith::ConstantIntOp::create(nb, nl, nb.getI1Type(), 1);
        if (ignore)
          keep = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::ne, t,
                                       arith::ConstantIndexOp::create(nb, nl, *ignore));
        // A class outside [0, C) that is not ignored reads class 0 rather
        // than out of bounds (the reference would fail).
        Value valid = arith::AndIOp::create(
            nb, nl, arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sge, t, zeroIndex),
            arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt, t, classes));
        Value safe = arith::SelectOp::create(nb, nl, valid, t, zeroIndex);
        SmallVector<Value> at = {linalg::IndexOp::create(nb, nl, 0), safe};
        for (int64_t d = 1; d < targetRank; ++d)
          at.push_back(linalg::IndexOp::create(nb, nl, d));
        Value w = weight ? Value(tensor::ExtractOp::create(nb, nl, *weight, ValueRange{safe}))
                         : scalarConstant(nb, nl, element, 1);
        Value zero = scalarConstant(nb, nl, element, 0);
        w = arith::SelectOp::create(nb, nl, keep, w, zero);
        Value picked = tensor::ExtractOp::create(nb, nl, logProb, at);
        Value loss = arith::NegFOp::create(nb, nl, arith::MulFOp::create(nb, nl, picked, w));
        linalg::YieldOp::create(nb, nl, ValueRange{loss, w});
      });
  Value loss = terms.getResult(0);
  if (reduction == "none")
    return loss;
  SmallVector<int64_t> all;
  for (int64_t d = 0; d < targetRank; ++d)
    all.push_back(d);
  Value zero = scalarConstant(b, loc, element, 0);
  Value total = reduce(b, loc, loss, all, zero, combineAdd);
  if (reduction == "sum")
    return total;
  Value weights = reduce(b, loc, terms.getResult(1), all, zero, combineAdd);
  return buildElementwise(b, loc, ValueRange{total, weights}, element,
                          [](OpBuilder &nb, Location nl, ValueRange a) {
                            return arith::DivFOp::create(nb, nl, a[0], a[1]).getResult();
                          });
}

LogicalResult convertNllLoss(NodeContext &ctx) {
  if (!isFloat(ctx.inputType(0).getElementType()))
    return ctx.emitError() << "expects floating-point scores, got " << ctx.inputType(0);
  std::optional<Value> weight;
  if (ctx.hasInput(2))
    weight = ctx.input(2);
  FailureOr<Value> loss = buildNllLoss(ctx, ctx.input(0), ctx.input(1), weight);
  if (failed(loss))
    return failure();
  ctx.setOutput(0, *loss);
  return success();
}

LogicalResult convertSoftmaxCrossEntropyLoss(NodeContext &ctx) {
  if (!isFloat(ctx.inputType(0).getElementType()) || ctx.inputType(0).getRank() < 2)
    return ctx.emitError() << "expects floating-point scores [N, C, ...], got "
                           << ctx.inputType(0);
  Value logProb = buildSoftmax(ctx.b, ctx.loc, ctx.input(0), {1}, /*log=*/true);
  std::optional<Value> weight;
  if (ctx.hasInput(2))
    weight = ctx.input(2);
  FailureOr<Value> loss = buildNllLoss(ctx, logProb, ctx.input(1), weight);
  if (failed(loss))
    return failure();
  ctx.setOutput(0, *loss);
  ctx.setOutput(1, logProb);
  return success();
}

/// Mean and 1/sqrt(var + eps) of `x` over `dims`, kept as reduced tensors
/// (dims removed), computed in `compute` precision.
std::pair<Value, Value> meanAndInvStd(OpBuilder &b, Location loc, Value x,
                                      ArrayRef<int64_t> dims, double epsilon) {
  auto type = cast<RankedTensorType>(x.getType());
  int64_t rank = type.getRank();
  Type element = type.getElementType();
  Value count = countOf(b, loc, x, dims, element);
  Value sum = reduce(b, loc, x, dims, scalarConstant(b, loc, element, 0), combineAdd);
  Value mean = mapElements(b, loc, sum, [&](OpBuilder &nb, Location nl, Value v) {
    return arith::DivFOp::create(nb, nl, v, count).getResult();
  });
  AffineMap identity = b.getMultiDimIdentityMap(rank);
  AffineMap project = projectOut(b, rank, dims);
  SmallVector<utils::IteratorType> iterators(rank, utils::IteratorType::parallel);
  for (int64_t d : dims)
    iterators[d] = utils::IteratorType::reduction;
  SmallVector<OpFoldResult> reducedSizes;
  for (int64_t d = 0; d < rank; ++d)
    if (!llvm::is_contained(dims, d))
      reducedSizes.push_back(tensor::getMixedSize(b, loc, x, d));
  Value init = zeroFilled(b, loc, reducedSizes, element);
  Value squares = linalg::GenericOp::create(
                      b, loc, TypeRange{init.getType()}, ValueRange{x, mean},
                      ValueRange{init},
                      ArrayRef<AffineMap>{identity, project, project}, iterators,
                      [&](OpBuilder &nb, Location nl, ValueRange a) {
                        Value d = arith::SubFOp::create(nb, nl, a[0], a[1]);
                        Value sq = arith::MulFOp::create(nb, nl, d, d);
                        linalg::YieldOp::create(
                            nb, nl, arith::AddFOp::create(nb, nl, a[2], sq).getResult());
                      })
                      .getResult(0);
  Value invStd = mapElements(b, loc, squares, [&](OpBuilder &nb, Location nl, Value v) {
    Value var = arith::DivFOp::create(nb, nl, v, count);
    Value shifted = arith::AddFOp::create(nb, nl, var, scalarConstant(nb, nl, element, epsilon));
    return math::RsqrtOp::create(nb, nl, shifted).getResult();
  });
  return {mean, invStd};
}

/// Casts a float tensor to `element` (no-op when equal).
Value castTensor(OpBuilder &b, Location loc, Value x, Type element) {
  auto type = cast<RankedTensorType>(x.getType());
  if (type.getElementType() == element)
    return x;
  return buildElementwise(b, loc, x, element, [&](OpBuilder &nb, Location nl, ValueRange a) {
    return castScalar(nb, nl, a[0], element, false, false);
  });
}

/// MeanVarianceNormalization: (x - mean) / std over `axes` (default N, H,
/// W), with ONNX's function body's 1e-9 added to the standard deviation.
LogicalResult convertMeanVarianceNormalization(NodeContext &ctx) {
  auto type = ctx.inputType(0);
  Type element = type.getElementType();
  if (!isFloat(element))
    return ctx.emitError() << "expects a floating-point input, got " << type;
  int64_t rank = type.getRank();
  FailureOr<SmallVector<int64_t>> normalized = normalizeAxes(
      ctx, ctx.getInts("axes").value_or(SmallVector<int64_t>{0, 2, 3}), rank, "axes");
  if (failed(normalized))
    return failure();
  SmallVector<int64_t> dims = *normalized;
  auto [mean, invStd] = meanAndInvStd(ctx.b, ctx.loc, ctx.input(0), dims, 0.0);
  Value meanKept = insertUnitDims(ctx.b, ctx.loc, mean, dims);
  Value invKept = insertUnitDims(ctx.b, ctx.loc, invStd, dims);
  Value result = buildElementwise(
      ctx.b, ctx.loc, ValueRange{ctx.input(0), meanKept, invKept}, element,
      [&](OpBuilder &nb, Location nl, ValueRange a) {
        Value std = arith::DivFOp::create(nb, nl, scalarConstant(nb, nl, element, 1), a[2]);
        Value denominator = arith::AddFOp::create(nb, nl, std, scalarConstant(nb, nl, element, 1e-9));
        return arith::DivFOp::create(nb, nl, arith::SubFOp::create(nb, nl, a[0], a[1]),
                                     denominator)
            .getResult();
      });
  ctx.setOutput(0, result);
  return success();
}

/// Det: Gaussian elimination with partial pivoting on a copy of each
/// matrix, the determinant the product of the pivots with a sign per row
/// swap (as numpy's LU-based det). Static shapes.
LogicalResult convertDet(NodeContext &ctx) {
  auto type = ctx.inputType(0);
  Type f = type.getElementType();
  int64_t rank = type.getRank();
  if (!isFloat(f) || rank < 2 || !type.hasStaticShape() ||
      type.getDimSize(rank - 1) != type.getDimSize(rank - 2))
    return ctx.emitError() << "expects floating-point square matrices [..., M, M] of static "
                              "shape, got " << type;
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  int64_t m = type.getDimSize(rank - 1), batch = 1;
  for (int64_t d = 0; d < rank - 2; ++d)
    batch *= type.getDimSize(d);
  Value all = reshapeTo(b, loc, ctx.input(0),
                        {b.getIndexAttr(batch), b.getIndexAttr(m), b.getIndexAttr(m)});
  auto idx = [&](OpBuilder &nb, Location nl, int64_t v) -> Value {
    return arith::ConstantIndexOp::create(nb, nl, v);
  };
  Value zero = scalarConstant(b, loc, f, 0), one = scalarConstant(b, loc, f, 1);
  Value dets = createFilled(b, loc, {b.getIndexAttr(batch)}, zero);
  auto outer = scf::ForOp::create(
      b, loc, idx(b, loc, 0), idx(b, loc, batch), idx(b, loc, 1), ValueRange{dets},
      [&](OpBuilder &ob, Location ol, Value n, ValueRange outerCarried) {
        auto matrixType = RankedTensorType::get({m, m}, f);
        Value a = tensor::ExtractSliceOp::create(
            ob, ol, matrixType, all, ValueRange{n}, ValueRange{}, ValueRange{},
            ArrayRef<int64_t>{ShapedType::kDynamic, 0, 0}, ArrayRef<int64_t>{1, m, m},
            ArrayRef<int64_t>{1, 1, 1});
        auto columns = scf::ForOp::create(
            ob, ol, idx(ob, ol, 0), idx(ob, ol, m), idx(ob, ol, 1), ValueRange{a, one},
            [&](OpBuilder &kb, Location kl, Value k, ValueRange kc) {
              Value mat = kc[0], det = kc[1];
              // The pivot: the row at or below k with the largest |A[i][k]|.
              auto search = scf::ForOp::create(
                  kb, kl, k, idx(kb, kl, m), idx(kb, kl, 1),
                  ValueRange{k, scalarConstant(kb, kl, f, -1)},
                  [&](OpBuilder &sb, Location sl, Value i, ValueRange sc) {
                    Value v = math::AbsFOp::create(
                        sb, sl, tensor::ExtractOp::create(sb, sl, mat, ValueRange{i, k}));
                    Value better = arith::CmpFOp::create(sb, sl, arith::CmpFPredicate::OGT, v, sc[1]);
                    scf::YieldOp::create(
                        sb, sl, ValueRange{arith::SelectOp::create(sb, sl, better, i, sc[0]),
                                           arith::SelectOp::create(sb, sl, better, v, sc[1])});
                  });
              Value p = search.getResult(0);
              // Swap rows k and p (a swap of a row with itself changes nothing).
              auto swap = scf::ForOp::create(
                  kb, kl, idx(kb, kl, 0), idx(kb, kl, m), idx(kb, kl, 1), ValueRange{mat},
                  [&](OpBuilder &wb, Location wl, Value j, ValueRange wc) {
                    Value rowK = tensor::ExtractOp::create(wb, wl, wc[0], ValueRange{k, j});
                    Value rowP = tensor::ExtractOp::create(wb, wl, wc[0], ValueRange{p, j});
                    Value t = tensor::InsertOp::create(wb, wl, rowP, wc[0], ValueRange{k, j});
                    t = tensor::InsertOp::create(wb, wl, rowK, t, ValueRange{p, j});
                    scf::YieldOp::create(wb, wl, t);
                  });
              mat = swap.getResult(0);
              Value swapped = arith::CmpIOp::create(kb, kl, arith::CmpIPredicate::ne, p, k);
              Value pivot = tensor::ExtractOp::create(kb, kl, mat, ValueRange{k, k});
              Value signedPivot = arith::SelectOp::create(
                  kb, kl, swapped, arith::NegFOp::create(kb, kl, pivot), pivot);
              det = arith::MulFOp::create(kb, kl, det, signedPivot);
              // Eliminate below the pivot; a zero pivot leaves the rows (the
              // determinant is already 0).
              Value isZero = arith::CmpFOp::create(kb, kl, arith::CmpFPredicate::OEQ, pivot,
                                                   scalarConstant(kb, kl, f, 0));
              Value safePivot = arith::SelectOp::create(kb, kl, isZero, scalarConstant(kb, kl, f, 1),
                                                        pivot);
              Value below = arith::AddIOp::create(kb, kl, k, idx(kb, kl, 1));
              auto rows = scf::ForOp::create(
                  kb, kl, below, idx(kb, kl, m), idx(kb, kl, 1), ValueRange{mat},
                  [&](OpBuilder &rb, Location rl, Value i, ValueRange rc) {
                    Value factor = arith::DivFOp::create(
                        rb, rl, tensor::ExtractOp::create(rb, rl, rc[0], ValueRange{i, k}),
                        safePivot);
                    auto cols = scf::ForOp::create(
                        rb, rl, k, idx(rb, rl, m), idx(rb, rl, 1), ValueRange{rc[0]},
                        [&](OpBuilder &cb, Location cl, Value j, ValueRange cc) {
                          Value aij = tensor::ExtractOp::create(cb, cl, cc[0], ValueRange{i, j});
                          Value akj = tensor::ExtractOp::create(cb, cl, cc[0], ValueRange{k, j});
                          Value updated = arith::SubFOp::create(
                              cb, cl, aij, arith::MulFOp::create(cb, cl, factor, akj));
                          scf::YieldOp::create(
                              cb, cl, tensor::InsertOp::create(cb, cl, updated, cc[0],
                                                               ValueRange{i, j})
                                          .getResult());
                        });
                    scf::YieldOp::create(rb, rl, cols.getResult(0));
                  });
              scf::YieldOp::create(kb, kl, ValueRange{rows.getResult(0), det});
            });
        scf::YieldOp::create(ob, ol,
                             tensor::InsertOp::create(ob, ol, columns.getResult(1),
                                                      outerCarried[0], ValueRange{n})
                                 .getResult());
      });
  SmallVector<OpFoldResult> outSizes;
  for (int64_t d = 0; d < rank - 2; ++d)
    outSizes.push_back(b.getIndexAttr(type.getDimSize(d)));
  ctx.setOutput(0, reshapeTo(b, loc, outer.getResult(0), outSizes));
  return success();
}

/// Upsample exists before opset 10 only; ONNX's version converter has made
/// it a Resize by the time a node is imported, so reaching it here means a
/// model the converter could not upgrade.
LogicalResult convertUpsample(NodeContext &ctx) {
  return ctx.fail("Upsample is imported as the Resize ONNX's version converter makes of it; "
                  "this model's could not be converted");
}

LogicalResult convertLayerNorm(NodeContext &ctx) {
  auto type = ctx.inputType(0);
  Type element = type.getElementType();
  if (!isFloat(element))
    return ctx.emitError() << "expects a floating-point input, got " << type;
  int64_t rank = type.getRank();
  FailureOr<int64_t> axis = ctx.normalizeAxis(ctx.getInt("axis", -1), rank);
  if (failed(axis))
    return failure();
  double epsilon = ctx.getFloat("epsilon", 1e-5f);
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  // Statistics in f32 at least: stash_type 1 (float, the default) asks for
  // that; any other stash type would be computed less precisely, so
  // refuse it rather than answer differently.
  if (int64_t stash = ctx.getInt("stash_type", 1); stash != 1)
    return ctx.emitError() << "stash_type " << stash << " is not supported (1, float, is)";
  Type compute = element.getIntOrFloatBitWidth() < 32 ? b.getF32Type() : element;
  Value x = castTensor(b, loc, ctx.input(0), compute);
  SmallVector<int64_t> dims;
  for (int64_t d = *axis; d < rank; ++d)
    dims.push_back(d);
  auto [mean, invStd] = meanAndInvStd(b, loc, x, dims, epsilon);
  Value meanKept = insertUnitDims(b, loc, mean, dims);
  Value invKept = insertUnitDims(b, loc, invStd, dims);
  SmallVector<Value> inputs = {x, meanKept, invKept, ctx.input(1)};
  bool hasBias = ctx.hasInput(2);
  if (hasBias)
    inputs.push_back(ctx.input(2));
  Value y = buildElementwise(
      b, loc, inputs, element, [&](OpBuilder &nb, Location nl, ValueRange a) {
        Value normalized = arith::MulFOp::create(
            nb, nl, arith::SubFOp::create(nb, nl, a[0], a[1]), a[2]);
        Value r = castScalar(nb, nl, normalized, element, false, false);
        r = arith::MulFOp::create(nb, nl, r, a[3]);
        if (hasBias)
          r = arith::AddFOp::create(nb, nl, r, a[4]);
        return r;
      });
  ctx.setOutput(0, y);
  ctx.setOutput(1, meanKept);
  ctx.setOutput(2, invKept);
  return success();
}

/// Reshapes a per-channel vector [C] to [C, 1, ..., 1] for broadcasting
/// against [N, C, spatial...].
Value perChannel(OpBuilder &b, Location loc, Value v, int64_t spatialRank) {
  SmallVector<int64_t> positions;
  for (int64_t d = 1; d <= spatialRank; ++d)
    positions.push_back(d);
  return insertUnitDims(b, loc, v, positions);
}

LogicalResult convertInstanceNorm(NodeContext &ctx) {
  auto type = ctx.inputType(0);
  int64_t rank = type.getRank();
  if (rank < 3)
    return ctx.emitError() << "expects [N, C, spatial...], got " << type;
  Type element = type.getElementType();
  double epsilon = ctx.getFloat("epsilon", 1e-5f);
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  SmallVector<int64_t> dims;
  for (int64_t d = 2; d < rank; ++d)
    dims.push_back(d);
  auto [mean, invStd] = meanAndInvStd(b, loc, ctx.input(0), dims, epsilon);
  Value meanKept = insertUnitDims(b, loc, mean, dims);
  Value invKept = insertUnitDims(b, loc, invStd, dims);
  Value scale = perChannel(b, loc, ctx.input(1), rank - 2);
  Value bias = perChannel(b, loc, ctx.input(2), rank - 2);
  Value y = buildElementwise(
      b, loc, ValueRange{ctx.input(0), meanKept, invKept, scale, bias}, element,
      [&](OpBuilder &nb, Location nl, ValueRange a) {
        Value n = arith::MulFOp::create(nb, nl, arith::SubFOp::create(nb, nl, a[0], a[1]), a[2]);
        return arith::AddFOp::create(nb, nl, arith::MulFOp::create(nb, nl, n, a[3]), a[4])
            .getResult();
      });
  ctx.setOutput(0, y);
  return success();
}

/// Per channel (dimension 1) of x: the mean of f(x, channel's mean) over
/// the other dimensions, f(x) = x for the mean itself.
Value channelMean(OpBuilder &b, Location loc, Value x, Value centre) {
  auto type = cast<RankedTensorType>(x.getType());
  int64_t rank = type.getRank();
  Type element = type.getElementType();
  Value zeros = createFilled(b, loc, {tensor::getMixedSize(b, loc, x, 1)},
                             scalarConstant(b, loc, element, 0));
  SmallVector<utils::IteratorType> iterators(rank, utils::IteratorType::reduction);
  iterators[1] = utils::IteratorType::parallel;
  AffineMap channel = AffineMap::get(rank, 0, {b.getAffineDimExpr(1)}, b.getContext());
  SmallVector<Value> ins = {x};
  SmallVector<AffineMap> maps = {b.getMultiDimIdentityMap(rank)};
  if (centre) {
    ins.push_back(centre);
    maps.push_back(channel);
  }
  maps.push_back(channel);
  Value sum = linalg::GenericOp::create(
                  b, loc, TypeRange{zeros.getType()}, ins, ValueRange{zeros}, maps, iterators,
                  [&](OpBuilder &nb, Location nl, ValueRange a) {
                    Value v = a[0];
                    if (centre) {
                      Value d = arith::SubFOp::create(nb, nl, a[0], a[1]);
                      v = arith::MulFOp::create(nb, nl, d, d);
                    }
                    linalg::YieldOp::create(
                        nb, nl, ValueRange{arith::AddFOp::create(nb, nl, v, a.back())});
                  })
                  .getResult(0);
  Value count = arith::ConstantOp::create(
      b, loc, b.getFloatAttr(element, double(type.getNumElements() / type.getDimSize(1))));
  return buildElementwise(b, loc, ValueRange{sum}, element,
                          [&](OpBuilder &nb, Location nl, ValueRange a) {
                            return arith::DivFOp::create(nb, nl, a[0], count).getResult();
                          });
}

LogicalResult convertBatchNorm(NodeContext &ctx) {
  auto type = ctx.inputType(0);
  int64_t spatial = type.getRank() - 2;
  if (spatial < 0)
    return ctx.emitError() << "expects [N, C, ...], got " << type;
  double epsilon = ctx.getFloat("epsilon", 1e-5f);
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Type element = type.getElementType();
  // Training mode normalizes with the batch's own statistics (population
  // variance) and returns the running statistics moved towards them.
  bool training = ctx.getInt("training_mode", 0) != 0;
  // momentum only moves the running statistics, which inference does not.
  if (!training)
    ctx.ignoreAttr("momentum");
  Value mean = ctx.input(3), variance = ctx.input(4);
  if (training) {
    if (!type.hasStaticShape() || !isa<FloatType>(element))
      return ctx.emitError() << "training mode needs a static floating-point input, got "
                             << type;
    double momentum = ctx.getFloat("momentum", 0.9f);
    Value batchMean = channelMean(b, loc, ctx.input(0), Value());
    Value batchVariance = channelMean(b, loc, ctx.input(0), batchMean);
    auto running = [&](Value stored, Value batch) {
      return buildElementwise(
          b, loc, ValueRange{stored, batch}, element,
          [&](OpBuilder &nb, Location nl, ValueRange a) {
            return arith::AddFOp::create(
                       nb, nl,
                       arith::MulFOp::create(nb, nl, a[0],
                                             scalarConstant(nb, nl, element, momentum)),
                       arith::MulFOp::create(nb, nl, a[1],
                                             scalarConstant(nb, nl, element, 1.0 - momentum)))
                .getResult();
          });
    };
    if (ctx.wantsOutput(1))
      ctx.setOutput(1, running(ctx.input(3), batchMean));
    if (ctx.wantsOutput(2))
      ctx.setOutput(2, running(ctx.input(4), batchVariance));
    mean = batchMean;
    variance = batchVariance;
  }
  SmallVector<Value> inputs = {ctx.input(0)};
  for (Value v : {ctx.input(1), ctx.input(2), mean, variance})
    inputs.push_back(perChannel(b, loc, v, spatial));
  Value y = buildElementwise(
      b, loc, inputs, element, [&](OpBuilder &nb, Location nl, ValueRange a) {
        // (x - mean) / sqrt(var + eps) * scale + bias
        Value inv = math::RsqrtOp::create(
            nb, nl, arith::AddFOp::create(nb, nl, a[4], scalarConstant(nb, nl, element, epsilon)));
        Value n = arith::MulFOp::create(nb, nl, arith::SubFOp::create(nb, nl, a[0], a[3]), inv);
        return arith::AddFOp::create(nb, nl, arith::MulFOp::create(nb, nl, n, a[1]), a[2])
            .getResult();
      });
  ctx.setOutput(0, y);
  return success();
}

//===----------------------------------------------------------------------===//
// Convolution
//===----------------------------------------------------------------------===//

struct ConvGeometry {
  SmallVector<int64_t> kernel, strides, dilations, padBegin, padEnd;
};

/// Reads kernel/strides/dilations/pads (with auto_pad) for `spatial` dims of
/// input `x` and kernel shape `kernel`.
FailureOr<ConvGeometry> readGeometry(NodeContext &ctx, RankedTensorType x,
                                     ArrayRef<int64_t> kernel, bool transposed) {
  int64_t spatial = kernel.size();
  // A convolution's kernel comes from its weight; kernel_shape, where given,
  // must agree (ONNX's reference would use the weight's, so a model whose
  // attribute differs is malformed).
  if (std::optional<SmallVector<int64_t>> given = ctx.getInts("kernel_shape");
      given && ArrayRef<int64_t>(*given) != kernel) {
    InFlightDiagnostic diag = ctx.emitError() << "kernel_shape [";
    llvm::interleaveComma(*given, diag);
    diag << "] differs from the kernel's spatial size [";
    llvm::interleaveComma(kernel, diag);
    diag << "]";
    return failure();
  }
  ConvGeometry g;
  g.kernel.assign(kernel.begin(), kernel.end());
  g.strides = ctx.getInts("strides").value_or(SmallVector<int64_t>(spatial, 1));
  g.dilations = ctx.getInts("dilations").value_or(SmallVector<int64_t>(spatial, 1));
  SmallVector<int64_t> pads =
      ctx.getInts("pads").value_or(SmallVector<int64_t>(2 * spatial, 0));
  if ((int64_t)g.strides.size() != spatial || (int64_t)g.dilations.size() != spatial ||
      (int64_t)pads.size() != 2 * spatial) {
    (void)ctx.fail("strides, dilations and pads do not match the kernel rank");
    return failure();
  }
  auto positive = [](int64_t v) { return v > 0; };
  if (!llvm::all_of(g.strides, positive) || !llvm::all_of(g.dilations, positive) ||
      !llvm::all_of(kernel, positive) ||
      !llvm::all_of(pads, [](int64_t v) { return v >= 0; })) {
    (void)ctx.fail("kernel sizes, strides and dilations must be positive and pads "
                   "non-negative");
    return failure();
  }
  g.padBegin.assign(pads.begin(), pads.begin() + spatial);
  g.padEnd.assign(pads.begin() + spatial, pads.end());
  std::string autoPad = ctx.getString("auto_pad", "NOTSET");
  if (autoPad == "VALID") {
    g.padBegin.assign(spatial, 0);
    g.padEnd.assign(spatial, 0);
  } else if (autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER") {
    if (transposed)
      return g; // handled by the ConvTranspose converter
    for (int64_t d = 0; d < spatial; ++d) {
      int64_t in = x.getDimSize(2 + d);
      if (ShapedType::isDynamic(in)) {
        (void)ctx.fail("auto_pad needs static spatial dimensions");
        return failure();
      }
      int64_t out = (in + g.strides[d] - 1) / g.strides[d];
      int64_t total = std::max<int64_t>(
          (out - 1) * g.strides[d] + (kernel[d] - 1) * g.dilations[d] + 1 - in, 0);
      int64_t small = total / 2;
      g.padBegin[d] = autoPad == "SAME_UPPER" ? small : total - small;
      g.padEnd[d] = total - g.padBegin[d];
    }
  } else if (autoPad != "NOTSET") {
    (void)ctx.fail("auto_pad '" + autoPad + "' is not supported");
    return failure();
  }
  return g;
}

/// Zero-pads the spatial dims of [N, C, spatial...] `x`.
Value padSpatial(OpBuilder &b, Location loc, Value x, ArrayRef<int64_t> begin,
                 ArrayRef<int64_t> end, Value padValue) {
  if (llvm::all_of(begin, [](int64_t p) { return p == 0; }) &&
      llvm::all_of(end, [](int64_t p) { return p == 0; }))
    return x;
  auto type = cast<RankedTensorType>(x.getType());
  SmallVector<OpFoldResult> low = {b.getIndexAttr(0), b.getIndexAttr(0)};
  SmallVector<OpFoldResult> high = low;
  SmallVector<int64_t> shape(type.getShape());
  for (size_t d = 0; d < begin.size(); ++d) {
    low.push_back(b.getIndexAttr(begin[d]));
    high.push_back(b.getIndexAttr(end[d]));
    if (!ShapedType::isDynamic(shape[2 + d]))
      shape[2 + d] += begin[d] + end[d];
  }
  return tensor::PadOp::create(b, loc, RankedTensorType::get(shape, type.getElementType()),
                               x, low, high, padValue)
      .getResult();
}

/// Output spatial size of a convolution/pooling window.
OpFoldResult windowOutput(OpBuilder &b, Location loc, Value padded, int64_t dim,
                          int64_t kernel, int64_t stride, int64_t dilation) {
  int64_t span = (kernel - 1) * dilation + 1;
  auto type = cast<RankedTensorType>(padded.getType());
  if (!type.isDynamicDim(dim))
    return b.getIndexAttr((type.getDimSize(dim) - span) / stride + 1);
  Value size = tensor::DimOp::create(b, loc, padded, dim);
  Value r = arith::AddIOp::create(
      b, loc,
      arith::DivSIOp::create(b, loc,
                             arith::SubIOp::create(b, loc, size,
                                                   arith::ConstantIndexOp::create(b, loc, span)),
                             arith::ConstantIndexOp::create(b, loc, stride)),
      arith::ConstantIndexOp::create(b, loc, 1));
  return r;
}

LogicalResult convertConv(NodeContext &ctx) {
  FailureOr<Value> result =
      buildConvolution(ctx, ctx.input(0), ctx.input(1), ctx.hasInput(2) ? ctx.input(2) : Value());
  if (failed(result))
    return failure();
  ctx.setOutput(0, *result);
  return success();
}

} // namespace

FailureOr<Value> onnx_import::buildConvolution(NodeContext &ctx, Value input, Value filter,
                                               Value biasValue) {
  auto xType = cast<RankedTensorType>(input.getType()),
       wType = cast<RankedTensorType>(filter.getType());
  int64_t rank = xType.getRank();
  int64_t spatial = rank - 2;
  if (spatial < 1 || spatial > 3 || wType.getRank() != rank)
    return (ctx.emitError() << "expects 1-D to 3-D convolution operands, got " << xType
                            << " and " << wType),
           failure();
  if (xType.getElementType() != wType.getElementType())
    return (ctx.emitError() << "operand types differ: " << xType << " and " << wType), failure();
  SmallVector<int64_t> kernel(wType.getShape().begin() + 2, wType.getShape().end());
  if (llvm::any_of(kernel, ShapedType::isDynamic))
    return (void)ctx.fail("the kernel must have static spatial dimensions"), failure();
  FailureOr<ConvGeometry> g = readGeometry(ctx, xType, kernel, false);
  if (failed(g))
    return failure();
  int64_t group = ctx.getInt("group", 1);
  int64_t channels = xType.getDimSize(1), filters = wType.getDimSize(0);
  if (group < 1 || (!ShapedType::isDynamic(channels) && channels % group != 0) ||
      (!ShapedType::isDynamic(filters) && filters % group != 0))
    return (ctx.emitError() << "group " << group << " must be positive and divide the "
                            << channels << " input channels and " << filters << " filters"),
           failure();
  if (biasValue) {
    auto biasType = cast<RankedTensorType>(biasValue.getType());
    if (biasType.getRank() != 1 || biasType.getElementType() != xType.getElementType() ||
        (!biasType.isDynamicDim(0) && !ShapedType::isDynamic(filters) &&
         biasType.getDimSize(0) != filters))
      return (ctx.emitError() << "the bias must be a vector of " << filters << " "
                              << xType.getElementType() << ", got " << biasType),
             failure();
  }
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Type element = xType.getElementType();
  Value x = padSpatial(b, loc, input, g->padBegin, g->padEnd, scalarConstant(b, loc, element, 0));
  Value w = filter;
  SmallVector<OpFoldResult> outSizes = {tensor::getMixedSize(b, loc, x, 0),
                                        tensor::getMixedSize(b, loc, w, 0)};
  for (int64_t d = 0; d < spatial; ++d)
    outSizes.push_back(windowOutput(b, loc, x, 2 + d, kernel[d], g->strides[d],
                                    g->dilations[d]));
  // The bias, broadcast over batch and space, is the accumulator's start.
  Value init;
  if (biasValue) {
    Value bias = perChannel(b, loc, biasValue, spatial);
    init = broadcastTo(b, loc, bias, outSizes);
  } else {
    init = zeroFilled(b, loc, outSizes, element);
  }
  RankedTensorType outType = cast<RankedTensorType>(init.getType());
  auto strides = b.getI64TensorAttr(g->strides);
  auto dilations = b.getI64TensorAttr(g->dilations);
  Value result;
  if (group == 1) {
    SmallVector<Value> ins = {x, w};
    if (spatial == 1)
      result = linalg::Conv1DNcwFcwOp::create(b, loc, outType, ins, init, strides, dilations)
                   .getResult(0);
    else if (spatial == 2)
      result = linalg::Conv2DNchwFchwOp::create(b, loc, outType, ins, init, strides, dilations)
                   .getResult(0);
    else
      result = linalg::Conv3DNcdhwFcdhwOp::create(b, loc, outType, ins, init, strides, dilations)
                   .getResult(0);
  } else {
    // Grouped (and depthwise) convolution as one generic:
    // out[n, m, o...] += x[n, (m / (M/G)) * (C/G) + c, o*s + k*d] * w[m, c, k...]
    int64_t cPerGroup = wType.getDimSize(1);
    int64_t mTotal = wType.getDimSize(0);
    if (ShapedType::isDynamic(mTotal) || mTotal % group != 0 ||
        ShapedType::isDynamic(cPerGroup))
      return (void)ctx.fail("grouped convolution needs static channel counts divisible by group"),
             failure();
    int64_t mPerGroup = mTotal / group;
    // Loops: n, m, o_0..o_s-1 (parallel), c, k_0..k_s-1 (reduction).
    int64_t loops = 2 + spatial + 1 + spatial;
    auto dim = [&](int64_t i) { return b.getAffineDimExpr(i); };
    SmallVector<AffineExpr> xExprs = {dim(0), dim(1).floorDiv(mPerGroup) * cPerGroup +
                                                  dim(2 + spatial)};
    SmallVector<AffineExpr> wExprs = {dim(1), dim(2 + spatial)};
    SmallVector<AffineExpr> oExprs = {dim(0), dim(1)};
    for (int64_t d = 0; d < spatial; ++d) {
      xExprs.push_back(dim(2 + d) * g->strides[d] + dim(3 + spatial + d) * g->dilations[d]);
      wExprs.push_back(dim(3 + spatial + d));
      oExprs.push_back(dim(2 + d));
    }
    SmallVector<AffineMap> maps = {AffineMap::get(loops, 0, xExprs, b.getContext()),
                                   AffineMap::get(loops, 0, wExprs, b.getContext()),
                                   AffineMap::get(loops, 0, oExprs, b.getContext())};
    SmallVector<utils::IteratorType> iterators(2 + spatial, utils::IteratorType::parallel);
    iterators.append(spatial + 1, utils::IteratorType::reduction);
    result = linalg::GenericOp::create(
                 b, loc, TypeRange{outType}, ValueRange{x, w}, ValueRange{init}, maps,
                 iterators,
                 [&](OpBuilder &nb, Location nl, ValueRange a) {
                   linalg::YieldOp::create(
                       nb, nl, addScalars(nb, nl, a[2], mulScalars(nb, nl, a[0], a[1])));
                 })
                 .getResult(0);
  }
  return result;
}

namespace {

/// An ungrouped ConvTranspose as what it is: every input position times the
/// filter (one matmul, [n i..., c] x [c, m k...]), then each output summing
/// the products that land on it: out[n, m, o] += cols[n, i, m, k] where
/// o + padBegin - k * dilation == i * stride.
Value convTransposeByMatmul(OpBuilder &b, Location loc, Value x, Value w, Value init,
                            const ConvGeometry &g, ArrayRef<int64_t> kernel) {
  auto xType = cast<RankedTensorType>(x.getType());
  auto wType = cast<RankedTensorType>(w.getType());
  auto outType = cast<RankedTensorType>(init.getType());
  Type element = xType.getElementType();
  int64_t spatial = xType.getRank() - 2;
  int64_t n = xType.getDimSize(0), c = xType.getDimSize(1), m = wType.getDimSize(1);
  ArrayRef<int64_t> in = xType.getShape().drop_front(2);
  int64_t positions = n, taps = m;
  for (int64_t d = 0; d < spatial; ++d) {
    positions *= in[d];
    taps *= kernel[d];
  }
  // [n, c, i...] -> [n, i..., c] -> [n i..., c]
  SmallVector<int64_t> toRows{0};
  SmallVector<int64_t> rowsShape{n};
  for (int64_t d = 0; d < spatial; ++d) {
    toRows.push_back(2 + d);
    rowsShape.push_back(in[d]);
  }
  toRows.push_back(1);
  rowsShape.push_back(c);
  Value xRows = linalg::TransposeOp::create(
                    b, loc, x, tensor::EmptyOp::create(b, loc, rowsShape, element), toRows)
                    .getResult()[0];
  SmallVector<ReassociationIndices> rowGroups{{}, {spatial + 1}};
  for (int64_t d = 0; d <= spatial; ++d)
    rowGroups[0].push_back(d);
  Value lhs = tensor::CollapseShapeOp::create(b, loc, xRows, rowGroups);
  SmallVector<ReassociationIndices> wGroups{{0}, {}};
  for (int64_t d = 1; d < wType.getRank(); ++d)
    wGroups[1].push_back(d);
  Value rhs = tensor::CollapseShapeOp::create(b, loc, w, wGroups);
  Value zero = arith::ConstantOp::create(b, loc, b.getZeroAttr(element));
  Value acc = linalg::FillOp::create(
                  b, loc, zero,
                  tensor::EmptyOp::create(b, loc, ArrayRef<int64_t>{positions, taps}, element)
                      .getResult())
                  .getResult(0);
  Value cols = linalg::MatmulOp::create(b, loc, TypeRange{acc.getType()}, ValueRange{lhs, rhs},
                                        ValueRange{acc})
                   .getResult(0);
  // cols as [n, i..., m, k...]
  SmallVector<int64_t> colShape(rowsShape.begin(), rowsShape.end() - 1);
  colShape.push_back(m);
  llvm::append_range(colShape, kernel);
  SmallVector<ReassociationIndices> colGroups{{}, {}};
  for (int64_t d = 0; d <= spatial; ++d)
    colGroups[0].push_back(d);
  for (int64_t d = spatial + 1; d < int64_t(colShape.size()); ++d)
    colGroups[1].push_back(d);
  Value colsNd = tensor::ExpandShapeOp::create(
      b, loc, RankedTensorType::get(colShape, element), cols, colGroups);

  // Loops: n, m, o... (parallel), k... (reduction).
  int64_t loops = 2 + 2 * spatial;
  SmallVector<AffineExpr> outExprs, kExprs;
  for (int64_t i = 0; i < 2 + spatial; ++i)
    outExprs.push_back(b.getAffineDimExpr(i));
  for (int64_t i = 2 + spatial; i < loops; ++i)
    kExprs.push_back(b.getAffineDimExpr(i));
  // Without dilation (and with a non-negative leading pad), only every
  // stride-th tap lands on an output: the reduction runs over those,
  // ceil(k / stride) of them, instead of all k.
  auto stridedTaps = [&](int64_t d) { return g.dilations[d] == 1 && g.padBegin[d] >= 0; };
  SmallVector<OpFoldResult> tapSizes;
  for (int64_t d = 0; d < spatial; ++d)
    tapSizes.push_back(b.getIndexAttr(stridedTaps(d)
                                          ? (kernel[d] + g.strides[d] - 1) / g.strides[d]
                                          : kernel[d]));
  Value bounds = createEmpty(b, loc, tapSizes, b.getI1Type());
  SmallVector<utils::IteratorType> iterators(2 + spatial, utils::IteratorType::parallel);
  iterators.append(spatial, utils::IteratorType::reduction);
  return linalg::GenericOp::create(
             b, loc, TypeRange{outType}, ValueRange{bounds}, ValueRange{init},
             ArrayRef<AffineMap>{AffineMap::get(loops, 0, kExprs, b.getContext()),
                                 AffineMap::get(loops, 0, outExprs, b.getContext())},
             iterators,
             [&](OpBuilder &nb, Location nl, ValueRange a) {
               auto idx = [&](int64_t i) { return linalg::IndexOp::create(nb, nl, i).getResult(); };
               auto cst = [&](int64_t v) {
                 return arith::ConstantIndexOp::create(nb, nl, v).getResult();
               };
               Value valid = arith::ConstantIntOp::create(nb, nl, 1, 1);
               SmallVector<Value> coords{idx(0)}, taps;
               for (int64_t d = 0; d < spatial; ++d) {
                 auto lessThan = [&](Value v, int64_t bound) {
                   return arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt, v, cst(bound))
                       .getResult();
                 };
                 auto clamp = [&](Value v, int64_t high) {
                   return arith::MinSIOp::create(
                              nb, nl, arith::MaxSIOp::create(nb, nl, v, cst(0)), cst(high))
                       .getResult();
                 };
                 if (stridedTaps(d)) {
                   // p = o + padBegin; tap j is k = p % s + j s, read at
                   // i = p / s - j: valid iff k < kernel and 0 <= i < in.
                   Value p = arith::AddIOp::create(nb, nl, idx(2 + d), cst(g.padBegin[d]));
                   Value j = idx(2 + spatial + d);
                   Value k = arith::AddIOp::create(
                       nb, nl, arith::RemSIOp::create(nb, nl, p, cst(g.strides[d])),
                       arith::MulIOp::create(nb, nl, j, cst(g.strides[d])));
                   Value i = arith::SubIOp::create(
                       nb, nl, arith::DivSIOp::create(nb, nl, p, cst(g.strides[d])), j);
                   Value nonNegative =
                       arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sge, i, cst(0));
                   valid = arith::AndIOp::create(
                       nb, nl, valid,
                       arith::AndIOp::create(
                           nb, nl, lessThan(k, kernel[d]),
                           arith::AndIOp::create(nb, nl, nonNegative, lessThan(i, in[d]))));
                   // Clamped, so that the discarded reads stay inside.
                   coords.push_back(clamp(i, in[d] - 1));
                   taps.push_back(clamp(k, kernel[d] - 1));
                   continue;
                 }
                 Value k = idx(2 + spatial + d);
                 // t = o + padBegin - k * dilation: valid iff t >= 0, t % s == 0
                 // and t / s < in.
                 Value t = arith::SubIOp::create(
                     nb, nl, arith::AddIOp::create(nb, nl, idx(2 + d), cst(g.padBegin[d])),
                     arith::MulIOp::create(nb, nl, k, cst(g.dilations[d])));
                 Value nonNegative =
                     arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sge, t, cst(0));
                 Value divisible = arith::CmpIOp::create(
                     nb, nl, arith::CmpIPredicate::eq,
                     arith::RemSIOp::create(nb, nl, t, cst(g.strides[d])), cst(0));
                 Value i = arith::DivSIOp::create(nb, nl, t, cst(g.strides[d]));
                 Value inRange =
                     arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt, i, cst(in[d]));
                 valid = arith::AndIOp::create(
                     nb, nl, valid,
                     arith::AndIOp::create(nb, nl, nonNegative,
                                           arith::AndIOp::create(nb, nl, divisible, inRange)));
                 // Clamped, so that the discarded read stays inside.
                 coords.push_back(arith::MinSIOp::create(
                     nb, nl, arith::MaxSIOp::create(nb, nl, i, cst(0)), cst(in[d] - 1)));
                 taps.push_back(k);
               }
               coords.push_back(idx(1));
               llvm::append_range(coords, taps);
               Value v = tensor::ExtractOp::create(nb, nl, colsNd, coords);
               Value term = arith::SelectOp::create(nb, nl, valid, v,
                                                    scalarConstant(nb, nl, element, 0));
               linalg::YieldOp::create(nb, nl, addScalars(nb, nl, a[1], term));
             })
      .getResult(0);
}

LogicalResult convertConvTranspose(NodeContext &ctx) {
  auto xType = ctx.inputType(0), wType = ctx.inputType(1);
  int64_t rank = xType.getRank();
  int64_t spatial = rank - 2;
  if (spatial < 1 || spatial > 3 || wType.getRank() != rank)
    return ctx.emitError() << "expects 1-D to 3-D operands, got " << xType << " and "
                           << wType;
  if (!xType.hasStaticShape() || !wType.hasStaticShape())
    return ctx.fail("ConvTranspose needs static shapes");
  SmallVector<int64_t> kernel(wType.getShape().begin() + 2, wType.getShape().end());
  FailureOr<ConvGeometry> g = readGeometry(ctx, xType, kernel, true);
  if (failed(g))
    return failure();
  int64_t group = ctx.getInt("group", 1);
  SmallVector<int64_t> outputPadding =
      ctx.getInts("output_padding").value_or(SmallVector<int64_t>(spatial, 0));
  std::optional<SmallVector<int64_t>> outputShape = ctx.getInts("output_shape");
  std::string autoPad = ctx.getString("auto_pad", "NOTSET");
  int64_t cIn = xType.getDimSize(1);
  int64_t mPerGroup = wType.getDimSize(1);
  int64_t mTotal = mPerGroup * group;
  int64_t cPerGroup = cIn / group;
  SmallVector<int64_t> outShape = {xType.getDimSize(0), mTotal};
  for (int64_t d = 0; d < spatial; ++d) {
    int64_t in = xType.getDimSize(2 + d);
    int64_t full = g->strides[d] * (in - 1) + outputPadding[d] +
                   (kernel[d] - 1) * g->dilations[d] + 1;
    int64_t out;
    if (outputShape) {
      out = (*outputShape)[outputShape->size() - spatial + d];
      int64_t total = full - out;
      bool upper = autoPad != "SAME_LOWER";
      g->padBegin[d] = upper ? total / 2 : total - total / 2;
      g->padEnd[d] = total - g->padBegin[d];
    } else if (autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER") {
      out = in * g->strides[d];
      int64_t total = full - out;
      g->padBegin[d] = autoPad == "SAME_UPPER" ? total / 2 : total - total / 2;
      g->padEnd[d] = total - g->padBegin[d];
    } else {
      out = full - g->padBegin[d] - g->padEnd[d];
    }
    outShape.push_back(out);
  }
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Type element = xType.getElementType();
  SmallVector<OpFoldResult> outSizes;
  for (int64_t s : outShape)
    outSizes.push_back(b.getIndexAttr(s));
  Value init;
  if (ctx.hasInput(2))
    init = broadcastTo(b, loc, perChannel(b, loc, ctx.input(2), spatial), outSizes);
  else
    init = zeroFilled(b, loc, outSizes, element);
  Value x = ctx.input(0), w = ctx.input(1);
  if (group == 1 && xType.hasStaticShape() && wType.hasStaticShape()) {
    ctx.setOutput(0, convTransposeByMatmul(b, loc, x, w, init, *g, kernel));
    return success();
  }
  // Gather form: out[n, m, o] += x[n, c_g, i] * w[c_g, m % M/G, k] where
  // o + padBegin - k*dilation == i*stride for some in-range i.
  int64_t loops = 2 + spatial + 1 + spatial;
  auto identityOut = [&] {
    SmallVector<AffineExpr> e;
    for (int64_t i = 0; i < 2 + spatial; ++i)
      e.push_back(b.getAffineDimExpr(i));
    return AffineMap::get(loops, 0, e, b.getContext());
  }();
  SmallVector<utils::IteratorType> iterators(2 + spatial, utils::IteratorType::parallel);
  iterators.append(spatial + 1, utils::IteratorType::reduction);
  // A dummy input carries the reduction bounds: [C/G, k...].
  SmallVector<OpFoldResult> boundSizes = {b.getIndexAttr(cPerGroup)};
  for (int64_t k : kernel)
    boundSizes.push_back(b.getIndexAttr(k));
  Value bounds = createEmpty(b, loc, boundSizes, b.getI1Type());
  SmallVector<AffineExpr> boundExprs;
  for (int64_t i = 2 + spatial; i < loops; ++i)
    boundExprs.push_back(b.getAffineDimExpr(i));
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{init.getType()}, ValueRange{bounds}, ValueRange{init},
      ArrayRef<AffineMap>{AffineMap::get(loops, 0, boundExprs, b.getContext()),
                          identityOut},
      iterators, [&](OpBuilder &nb, Location nl, ValueRange a) {
        auto idx = [&](int64_t i) { return linalg::IndexOp::create(nb, nl, i).getResult(); };
        auto c = [&](int64_t v) { return arith::ConstantIndexOp::create(nb, nl, v).getResult(); };
        Value m = idx(1);
        Value groupIndex = arith::DivUIOp::create(nb, nl, m, c(mPerGroup));
        Value channel = arith::AddIOp::create(
            nb, nl, arith::MulIOp::create(nb, nl, groupIndex, c(cPerGroup)), idx(2 + spatial));
        Value valid = arith::ConstantIntOp::create(nb, nl, 1, 1);
        SmallVector<Value> xCoords = {idx(0), channel};
        SmallVector<Value> wCoords = {channel, arith::RemUIOp::create(nb, nl, m, c(mPerGroup))};
        for (int64_t d = 0; d < spatial; ++d) {
          Value k = idx(3 + spatial + d);
          // t = o + padBegin - k * dilation; valid iff t >= 0, t % s == 0, t/s < in.
          Value t = arith::SubIOp::create(
              nb, nl, arith::AddIOp::create(nb, nl, idx(2 + d), c(g->padBegin[d])),
              arith::MulIOp::create(nb, nl, k, c(g->dilations[d])));
          Value nonNegative = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sge, t, c(0));
          Value divisible = arith::CmpIOp::create(
              nb, nl, arith::CmpIPredicate::eq,
              arith::RemSIOp::create(nb, nl, t, c(g->strides[d])), c(0));
          Value i = arith::DivSIOp::create(nb, nl, t, c(g->strides[d]));
          Value inRange = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt, i,
                                                c(xType.getDimSize(2 + d)));
          valid = arith::AndIOp::create(
              nb, nl, valid,
              arith::AndIOp::create(nb, nl, nonNegative,
                                    arith::AndIOp::create(nb, nl, divisible, inRange)));
          // Clamp so that the (discarded) read stays inside the tensor.
          Value safe = arith::MinSIOp::create(
              nb, nl, arith::MaxSIOp::create(nb, nl, i, c(0)), c(xType.getDimSize(2 + d) - 1));
          xCoords.push_back(safe);
          wCoords.push_back(k);
        }
        Value xv = tensor::ExtractOp::create(nb, nl, x, xCoords);
        Value wv = tensor::ExtractOp::create(nb, nl, w, wCoords);
        Value term = arith::SelectOp::create(nb, nl, valid, mulScalars(nb, nl, xv, wv),
                                             scalarConstant(nb, nl, element, 0));
        linalg::YieldOp::create(nb, nl, addScalars(nb, nl, a[1], term));
      });
  ctx.setOutput(0, generic.getResult(0));
  return success();
}

//===----------------------------------------------------------------------===//
// Pooling
//===----------------------------------------------------------------------===//

LogicalResult convertPool(NodeContext &ctx) {
  StringRef op = ctx.node.op_type();
  auto xType = ctx.inputType(0);
  int64_t rank = xType.getRank();
  int64_t spatial = rank - 2;
  if (spatial < 1)
    return ctx.emitError() << "expects [N, C, spatial...], got " << xType;
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Type element = xType.getElementType();
  bool isMax = op == "MaxPool" || op == "GlobalMaxPool";
  bool global = op.starts_with("Global");
  SmallVector<int64_t> kernel;
  if (global) {
    for (int64_t d = 0; d < spatial; ++d) {
      if (xType.isDynamicDim(2 + d))
        return ctx.fail("global pooling needs static spatial dimensions");
      kernel.push_back(xType.getDimSize(2 + d));
    }
  } else {
    kernel = ctx.getInts("kernel_shape").value_or(SmallVector<int64_t>{});
    if ((int64_t)kernel.size() != spatial)
      return ctx.fail("kernel_shape must have one entry per spatial dimension");
  }
  bool withIndices = ctx.wantsOutput(1);
  if (withIndices && (!isMax || global || !xType.hasStaticShape()))
    return ctx.fail("the Indices output needs MaxPool of a static input");
  int64_t storageOrder = ctx.getInt("storage_order", 0);
  if (storageOrder != 0 && storageOrder != 1)
    return ctx.emitError() << "storage_order must be 0 or 1, got " << storageOrder;
  FailureOr<ConvGeometry> g = readGeometry(ctx, xType, kernel, false);
  if (failed(g))
    return failure();
  bool ceilMode = ctx.getInt("ceil_mode", 0) != 0;
  SmallVector<int64_t> padEnd = g->padEnd;
  if (ceilMode) {
    for (int64_t d = 0; d < spatial; ++d) {
      int64_t in = xType.getDimSize(2 + d);
      if (ShapedType::isDynamic(in))
        return ctx.fail("ceil_mode needs static spatial dimensions");
      int64_t span = (kernel[d] - 1) * g->dilations[d] + 1;
      int64_t padded = in + g->padBegin[d] + g->padEnd[d];
      int64_t out = (padded - span + g->strides[d] - 1) / g->strides[d] + 1;
      // The last window must start inside the input or left padding.
      if ((out - 1) * g->strides[d] >= in + g->padBegin[d])
        --out;
      padEnd[d] = std::max<int64_t>((out - 1) * g->strides[d] + span - in - g->padBegin[d],
                                    g->padEnd[d]);
    }
  }
  Value padValue = isMax ? lowestValue(b, loc, element) : scalarConstant(b, loc, element, 0);
  Value x = padSpatial(b, loc, ctx.input(0), g->padBegin, padEnd, padValue);
  SmallVector<OpFoldResult> outSizes = {tensor::getMixedSize(b, loc, x, 0),
                                        tensor::getMixedSize(b, loc, x, 1)};
  for (int64_t d = 0; d < spatial; ++d)
    outSizes.push_back(windowOutput(b, loc, x, 2 + d, kernel[d], g->strides[d],
                                    g->dilations[d]));
  // One generic for every rank: out[n, c, o] = reduce over k of x[n, c, o*s + k*d].
  int64_t loops = 2 + 2 * spatial;
  auto dim = [&](int64_t i) { return b.getAffineDimExpr(i); };
  SmallVector<AffineExpr> xExprs = {dim(0), dim(1)}, oExprs = {dim(0), dim(1)},
                          kExprs;
  for (int64_t d = 0; d < spatial; ++d) {
    xExprs.push_back(dim(2 + d) * g->strides[d] + dim(2 + spatial + d) * g->dilations[d]);
    oExprs.push_back(dim(2 + d));
    kExprs.push_back(dim(2 + spatial + d));
  }
  SmallVector<OpFoldResult> kernelSizes;
  for (int64_t k : kernel)
    kernelSizes.push_back(b.getIndexAttr(k));
  Value window = createEmpty(b, loc, kernelSizes, b.getI1Type());
  SmallVector<utils::IteratorType> iterators(2 + spatial, utils::IteratorType::parallel);
  iterators.append(spatial, utils::IteratorType::reduction);
  SmallVector<AffineMap> maps = {AffineMap::get(loops, 0, xExprs, b.getContext()),
                                 AffineMap::get(loops, 0, kExprs, b.getContext()),
                                 AffineMap::get(loops, 0, oExprs, b.getContext())};
  Value init = createFilled(b, loc, outSizes, padValue);
  if (withIndices) {
    // Max and where it was: the flat index into X of the first largest
    // element of the window (row-major, or column-major in the spatial
    // dims with storage_order 1), as ONNX's reference.
    Type i64 = b.getI64Type();
    Value indexInit = createFilled(b, loc, outSizes, arith::ConstantIntOp::create(b, loc, i64, 0));
    SmallVector<int64_t> extent(xType.getShape().begin(), xType.getShape().end());
    auto results = linalg::GenericOp::create(
        b, loc, TypeRange{init.getType(), indexInit.getType()}, ValueRange{x, window},
        ValueRange{init, indexInit},
        ArrayRef<AffineMap>{maps[0], maps[1], maps[2], maps[2]}, iterators,
        [&](OpBuilder &nb, Location nl, ValueRange a) {
          auto index = [&](int64_t dim) {
            return arith::IndexCastOp::create(nb, nl, i64, linalg::IndexOp::create(nb, nl, dim))
                .getResult();
          };
          auto constant = [&](int64_t v) {
            return arith::ConstantIntOp::create(nb, nl, i64, v).getResult();
          };
          // The element's position in X: n, c, then o * s + k * d - pad.
          SmallVector<Value> position = {index(0), index(1)};
          for (int64_t d = 0; d < spatial; ++d) {
            Value at = arith::AddIOp::create(
                nb, nl, arith::MulIOp::create(nb, nl, index(2 + d), constant(g->strides[d])),
                arith::MulIOp::create(nb, nl, index(2 + spatial + d), constant(g->dilations[d])));
            position.push_back(arith::SubIOp::create(nb, nl, at, constant(g->padBegin[d])));
          }
          SmallVector<int64_t> order;
          for (int64_t d = 0; d < 2 + spatial; ++d)
            order.push_back(d);
          if (storageOrder == 1)
            std::reverse(order.begin() + 2, order.end());
          Value flat = constant(0);
          for (int64_t d : order)
            flat = arith::AddIOp::create(
                nb, nl, arith::MulIOp::create(nb, nl, flat, constant(extent[d])), position[d]);
          Value greater =
              isFloat(a[0].getType())
                  ? (Value)arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::OGT, a[0], a[2])
                  : (Value)arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sgt, a[0], a[2]);
          linalg::YieldOp::create(
              nb, nl,
              ValueRange{arith::SelectOp::create(nb, nl, greater, a[0], a[2]),
                         arith::SelectOp::create(nb, nl, greater, flat, a[3])});
        });
    ctx.setOutput(0, results.getResult(0));
    ctx.setOutput(1, results.getResult(1));
    return success();
  }
  Value pooled = linalg::GenericOp::create(
                     b, loc, TypeRange{init.getType()}, ValueRange{x, window},
                     ValueRange{init}, maps, iterators,
                     [&](OpBuilder &nb, Location nl, ValueRange a) {
                       Value r = isMax ? combineMax(nb, nl, a[0], a[2])
                                       : addScalars(nb, nl, a[0], a[2]);
                       linalg::YieldOp::create(nb, nl, r);
                     })
                     .getResult(0);
  if (!isMax) {
    bool includePad = ctx.getInt("count_include_pad", 0) != 0;
    int64_t fullCount = 1;
    for (int64_t k : kernel)
      fullCount *= k;
    bool anyPad = llvm::any_of(g->padBegin, [](int64_t p) { return p != 0; }) ||
                  llvm::any_of(padEnd, [](int64_t p) { return p != 0; });
    if (!anyPad || (includePad && !ceilMode)) {
      pooled = mapElements(b, loc, pooled, [&](OpBuilder &nb, Location nl, Value v) {
        return arith::DivFOp::create(nb, nl, v, scalarConstant(nb, nl, element, fullCount))
            .getResult();
      });
    } else {
      // Count the in-bounds elements of each window (the explicit pads too
      // with count_include_pad).
      SmallVector<int64_t> countBegin(spatial, 0), countEnd(spatial, 0);
      SmallVector<OpFoldResult> ones = {b.getIndexAttr(1), b.getIndexAttr(1)};
      for (int64_t d = 0; d < spatial; ++d) {
        ones.push_back(tensor::getMixedSize(b, loc, ctx.input(0), 2 + d));
        countBegin[d] = includePad ? 0 : g->padBegin[d];
        countEnd[d] = includePad ? padEnd[d] - g->padEnd[d] : padEnd[d];
      }
      Value one = createFilled(b, loc, ones, scalarConstant(b, loc, element, 1));
      if (includePad)
        one = padSpatial(b, loc, one, g->padBegin, g->padEnd,
                         scalarConstant(b, loc, element, 1));
      Value padded = padSpatial(b, loc, one, countBegin, countEnd,
                                scalarConstant(b, loc, element, 0));
      SmallVector<OpFoldResult> countSizes = {b.getIndexAttr(1), b.getIndexAttr(1)};
      countSizes.append(outSizes.begin() + 2, outSizes.end());
      Value countInit = zeroFilled(b, loc, countSizes, element);
      Value counts = linalg::GenericOp::create(
                         b, loc, TypeRange{countInit.getType()}, ValueRange{padded, window},
                         ValueRange{countInit}, maps, iterators,
                         [&](OpBuilder &nb, Location nl, ValueRange a) {
                           linalg::YieldOp::create(nb, nl, addScalars(nb, nl, a[0], a[2]));
                         })
                         .getResult(0);
      pooled = buildElementwise(b, loc, ValueRange{pooled, counts}, element,
                                [](OpBuilder &nb, Location nl, ValueRange a) {
                                  return arith::DivFOp::create(nb, nl, a[0], a[1]).getResult();
                                });
    }
  }
  ctx.setOutput(0, pooled);
  return success();
}

/// MaxUnpool: zeros of the shape the pooling geometry gives with each X
/// value written at its flat index from I, in order (a later duplicate
/// wins, as the reference's assignment; an index outside writes nothing),
/// then padded with zeros at the end up to output_shape when given (the
/// indices stay those of the pooling geometry, as ONNX's cases have it).
LogicalResult convertMaxUnpool(NodeContext &ctx) {
  auto xType = ctx.inputType(0), iType = ctx.inputType(1);
  int64_t rank = xType.getRank(), spatial = rank - 2;
  if (spatial < 1 || !xType.hasStaticShape() || iType.getShape() != xType.getShape() ||
      !iType.getElementType().isInteger(64))
    return ctx.emitError() << "expects a static X [N, C, spatial...] and int64 indices of its "
                              "shape, got "
                           << xType << " and " << iType;
  SmallVector<int64_t> kernel = ctx.getInts("kernel_shape").value_or(SmallVector<int64_t>{});
  if ((int64_t)kernel.size() != spatial)
    return ctx.fail("kernel_shape must have one entry per spatial dimension");
  SmallVector<int64_t> strides = ctx.getInts("strides").value_or(SmallVector<int64_t>(spatial, 1));
  SmallVector<int64_t> pads = ctx.getInts("pads").value_or(SmallVector<int64_t>(2 * spatial, 0));
  if ((int64_t)strides.size() != spatial || (int64_t)pads.size() != 2 * spatial)
    return ctx.fail("strides and pads must have one (two) entries per spatial dimension");
  SmallVector<int64_t> outShape = {xType.getDimSize(0), xType.getDimSize(1)};
  for (int64_t d = 0; d < spatial; ++d)
    outShape.push_back((xType.getDimSize(2 + d) - 1) * strides[d] - pads[d] - pads[spatial + d] +
                       kernel[d]);
  SmallVector<int64_t> padded = outShape;
  if (ctx.hasInput(2)) {
    std::optional<SmallVector<int64_t>> given = ctx.constantInts(2);
    if (!given || (int64_t)given->size() != rank)
      return ctx.fail("output_shape must be a constant with one size per dimension");
    for (int64_t d = 0; d < rank; ++d)
      if ((*given)[d] < outShape[d])
        return ctx.emitError() << "output_shape dimension " << d << " (" << (*given)[d]
                               << ") is smaller than the unpooled size " << outShape[d];
    padded.assign(given->begin(), given->end());
  }
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Type element = xType.getElementType();
  int64_t total = 1, count = xType.getNumElements();
  for (int64_t size : outShape)
    total *= size;
  SmallVector<ReassociationIndices> all(1);
  for (int64_t d = 0; d < rank; ++d)
    all[0].push_back(d);
  Value values = tensor::CollapseShapeOp::create(b, loc, ctx.input(0), all);
  Value indices = tensor::CollapseShapeOp::create(b, loc, ctx.input(1), all);
  Value zeros = createFilled(b, loc, {b.getIndexAttr(total)}, scalarConstant(b, loc, element, 0));
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  auto loop = scf::ForOp::create(
      b, loc, zero, arith::ConstantIndexOp::create(b, loc, count),
      arith::ConstantIndexOp::create(b, loc, 1), ValueRange{zeros},
      [&](OpBuilder &lb, Location ll, Value e, ValueRange iter) {
        Value v = tensor::ExtractOp::create(lb, ll, values, ValueRange{e});
        Value at = tensor::ExtractOp::create(lb, ll, indices, ValueRange{e});
        Type i64 = lb.getI64Type();
        Value inside = arith::AndIOp::create(
            lb, ll,
            arith::CmpIOp::create(lb, ll, arith::CmpIPredicate::sge, at,
                                  arith::ConstantIntOp::create(lb, ll, i64, 0)),
            arith::CmpIOp::create(lb, ll, arith::CmpIPredicate::slt, at,
                                  arith::ConstantIntOp::create(lb, ll, i64, total)));
        Value safe = arith::IndexCastOp::create(
            lb, ll, lb.getIndexType(),
            arith::SelectOp::create(lb, ll, inside, at, arith::ConstantIntOp::create(lb, ll, i64, 0)));
        Value kept = tensor::ExtractOp::create(lb, ll, iter[0], ValueRange{safe});
        Value written = tensor::InsertOp::create(
            lb, ll, arith::SelectOp::create(lb, ll, inside, v, kept), iter[0], ValueRange{safe});
        scf::YieldOp::create(lb, ll, written);
      });
  auto outType = RankedTensorType::get(outShape, element);
  Value result = tensor::ExpandShapeOp::create(b, loc, outType, loop.getResult(0), all);
  if (padded != outShape) {
    SmallVector<OpFoldResult> low(rank, b.getIndexAttr(0)), high;
    for (int64_t d = 0; d < rank; ++d)
      high.push_back(b.getIndexAttr(padded[d] - outShape[d]));
    result = tensor::PadOp::create(b, loc, RankedTensorType::get(padded, element), result, low,
                                   high, scalarConstant(b, loc, element, 0));
  }
  ctx.setOutput(0, result);
  return success();
}

//===----------------------------------------------------------------------===//
// Resize
//===----------------------------------------------------------------------===//

LogicalResult convertResize(NodeContext &ctx) {
  auto xType = ctx.inputType(0);
  int64_t rank = xType.getRank();
  if (!xType.hasStaticShape())
    return ctx.fail("Resize needs a static input shape");
  std::string mode = ctx.getString("mode", "nearest");
  std::string transform = ctx.getString("coordinate_transformation_mode", "half_pixel");
  std::string nearestMode = ctx.getString("nearest_mode", "round_prefer_floor");
  if (mode != "nearest" && mode != "linear" && mode != "cubic")
    return ctx.fail("mode '" + mode + "' is not supported (nearest, linear and cubic are)");
  if (ctx.getInt("antialias", 0) != 0 && mode != "nearest")
    return ctx.fail("antialias is not supported");
  double cubicA = ctx.getFloat("cubic_coeff_a", -0.75f);
  bool excludeOutside = ctx.getInt("exclude_outside", 0) != 0;
  // tf_crop_and_resize samples the region of interest (start and end per
  // dimension, normalized) and gives the extrapolation value outside X.
  bool crop = transform == "tf_crop_and_resize";
  SmallVector<double> roi;
  if (crop) {
    std::optional<SmallVector<double>> given =
        ctx.hasInput(1) ? ctx.constantFloats(1) : std::nullopt;
    if (!given || (int64_t)given->size() != 2 * rank)
      return ctx.fail("tf_crop_and_resize needs 'roi' as a constant of 2 x rank values");
    roi = *given;
  }
  double extrapolation = ctx.getFloat("extrapolation_value", 0.0f);
  SmallVector<double> scales;
  SmallVector<int64_t> outShape;
  // align_corners divides by the resized length before flooring when the
  // model gives scales (ONNX's reference does), by the size otherwise.
  SmallVector<double> resizedLength;
  if (ctx.hasInput(3) && ctx.inputType(3).getNumElements() != 0) {
    std::optional<SmallVector<int64_t>> sizes = ctx.constantInts(3);
    if (!sizes || (int64_t)sizes->size() != rank)
      return ctx.fail("'sizes' must be a constant with one entry per dimension");
    outShape = *sizes;
    for (int64_t d = 0; d < rank; ++d) {
      scales.push_back((double)outShape[d] / xType.getDimSize(d));
      resizedLength.push_back(outShape[d]);
    }
  } else {
    std::optional<SmallVector<double>> given =
        ctx.hasInput(2) ? ctx.constantFloats(2) : std::nullopt;
    if (!given || (int64_t)given->size() != rank)
      return ctx.fail("'scales' must be a constant with one entry per dimension");
    scales = *given;
    for (int64_t d = 0; d < rank; ++d) {
      outShape.push_back((int64_t)std::floor(xType.getDimSize(d) * scales[d]));
      resizedLength.push_back(xType.getDimSize(d) * scales[d]);
    }
  }
  SmallVector<int64_t> resized;
  for (int64_t d = 0; d < rank; ++d)
    if (outShape[d] != xType.getDimSize(d) || scales[d] != 1.0 ||
        (crop && (roi[d] != 0.0 || roi[rank + d] != 1.0)))
      resized.push_back(d);
  if (mode != "nearest" && resized.size() > 3)
    return ctx.fail(mode + " resize of more than 3 dimensions is not supported");
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Type element = xType.getElementType();
  Type f64 = b.getF64Type();
  Value x = ctx.input(0);
  SmallVector<OpFoldResult> outSizes;
  for (int64_t s : outShape)
    outSizes.push_back(b.getIndexAttr(s));
  Value init = createEmpty(b, loc, outSizes, element);
  SmallVector<utils::IteratorType> iterators(rank, utils::IteratorType::parallel);
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{init.getType()}, ValueRange{}, ValueRange{init},
      ArrayRef<AffineMap>{b.getMultiDimIdentityMap(rank)}, iterators,
      [&](OpBuilder &nb, Location nl, ValueRange) {
        auto f = [&](double v) { return scalarConstant(nb, nl, f64, v); };
        auto ci = [&](int64_t v) { return arith::ConstantIndexOp::create(nb, nl, v).getResult(); };
        SmallVector<Value> base;  // nearest / lower corner per dim (index)
        SmallVector<Value> upper; // upper corner (index), linear only
        SmallVector<Value> weight;
        // cubic: per dim, the four taps (indices clamped to the edge) and
        // their weights.
        SmallVector<SmallVector<Value, 4>> taps(rank), tapWeights(rank);
        Value outside; // tf_crop_and_resize: a coordinate outside X
        for (int64_t d = 0; d < rank; ++d) {
          Value o = linalg::IndexOp::create(nb, nl, d);
          if (!llvm::is_contained(resized, d)) {
            base.push_back(o);
            upper.push_back(o);
            weight.push_back(Value());
            continue;
          }
          int64_t in = xType.getDimSize(d), out = outShape[d];
          double scale = scales[d];
          Value of = arith::SIToFPOp::create(
              nb, nl, f64, arith::IndexCastOp::create(nb, nl, nb.getI64Type(), o));
          Value coord;
          if (crop) {
            double start = roi[d], end = roi[rank + d];
            coord = out > 1 ? (Value)arith::AddFOp::create(
                                  nb, nl, f(start * (in - 1)),
                                  arith::MulFOp::create(
                                      nb, nl, of, f((end - start) * (in - 1) / double(out - 1))))
                            : f(0.5 * (start + end) * (in - 1));
            Value beyond = arith::OrIOp::create(
                nb, nl, arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::OLT, coord, f(0)),
                arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::OGT, coord,
                                      f(double(in - 1))));
            outside = outside ? (Value)arith::OrIOp::create(nb, nl, outside, beyond) : beyond;
          } else if (transform == "align_corners") {
            double length = resizedLength[d];
            coord = length <= 1.0 ? f(0)
                                  : (Value)arith::MulFOp::create(
                                        nb, nl, of, f((double)(in - 1) / (length - 1)));
          } else if (transform == "asymmetric") {
            coord = arith::DivFOp::create(nb, nl, of, f(scale));
          } else if (transform == "tf_half_pixel_for_nn") {
            coord = arith::DivFOp::create(nb, nl, arith::AddFOp::create(nb, nl, of, f(0.5)),
                                          f(scale));
          } else if (transform == "pytorch_half_pixel" && out == 1) {
            // ONNX's reference samples -0.5: the same as 0 for linear (which
            // clamps), not for cubic.
            coord = f(mode == "cubic" ? -0.5 : 0.0);
          } else {
            coord = arith::SubFOp::create(
                nb, nl,
                arith::DivFOp::create(nb, nl, arith::AddFOp::create(nb, nl, of, f(0.5)),
                                      f(scale)),
                f(0.5));
          }
          auto toIdx = [&](Value v) {
            Value i = arith::FPToSIOp::create(nb, nl, nb.getI64Type(), v);
            Value idx = arith::IndexCastOp::create(nb, nl, nb.getIndexType(), i);
            return arith::MinSIOp::create(nb, nl, arith::MaxSIOp::create(nb, nl, idx, ci(0)),
                                          ci(in - 1))
                .getResult();
          };
          if (mode == "nearest") {
            Value r;
            if (nearestMode == "floor") {
              r = math::FloorOp::create(nb, nl, coord);
            } else if (nearestMode == "ceil") {
              r = math::CeilOp::create(nb, nl, coord);
            } else if (nearestMode == "round_prefer_ceil") {
              r = math::FloorOp::create(nb, nl, arith::AddFOp::create(nb, nl, coord, f(0.5)));
            } else {
              r = math::CeilOp::create(nb, nl, arith::SubFOp::create(nb, nl, coord, f(0.5)));
            }
            base.push_back(toIdx(r));
            upper.push_back(Value());
            weight.push_back(Value());
          } else if (mode == "cubic") {
            // As ONNX's reference: the taps are the four samples nearest the
            // coordinate, the left one preferred (first = ceil(x) - 2, so
            // that t = x - (first + 1) is in (0, 1]), read with edge
            // padding; Keys' cubic with coefficient a. exclude_outside
            // drops the taps outside the input and renormalizes.
            Value first = arith::SubFOp::create(nb, nl, math::CeilOp::create(nb, nl, coord), f(2));
            Value t = arith::SubFOp::create(nb, nl, coord,
                                            arith::AddFOp::create(nb, nl, first, f(1)));
            auto poly = [&](Value u, bool outer) -> Value {
              // outer (|u| in [1, 2]): ((a u - 5a) u + 8a) u - 4a;
              // inner (|u| <= 1):      ((a + 2) u - (a + 3)) u u + 1.
              auto mul = [&](Value p, Value q) { return arith::MulFOp::create(nb, nl, p, q).getResult(); };
              auto add = [&](Value p, Value q) { return arith::AddFOp::create(nb, nl, p, q).getResult(); };
              double a = cubicA;
              if (outer)
                return add(mul(add(mul(add(mul(f(a), u), f(-5 * a)), u), f(8 * a)), u), f(-4 * a));
              return add(mul(mul(add(mul(f(a + 2), u), f(-(a + 3))), u), u), f(1));
            };
            Value oneMinus = arith::SubFOp::create(nb, nl, f(1), t);
            SmallVector<Value, 4> w = {poly(arith::AddFOp::create(nb, nl, t, f(1)), true),
                                       poly(t, false), poly(oneMinus, false),
                                       poly(arith::AddFOp::create(nb, nl, oneMinus, f(1)), true)};
            Value total = f(0);
            for (int k = 0; k < 4; ++k) {
              Value raw = arith::AddFOp::create(nb, nl, first, f(k));
              if (excludeOutside) {
                Value inside = arith::AndIOp::create(
                    nb, nl,
                    arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::OGE, raw, f(0)),
                    arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::OLE, raw,
                                          f((double)(in - 1))));
                w[k] = arith::SelectOp::create(nb, nl, inside, w[k], f(0));
                total = arith::AddFOp::create(nb, nl, total, w[k]);
              }
              taps[d].push_back(toIdx(raw));
            }
            for (int k = 0; k < 4; ++k)
              tapWeights[d].push_back(excludeOutside
                                          ? (Value)arith::DivFOp::create(nb, nl, w[k], total)
                                          : w[k]);
            base.push_back(Value());
            upper.push_back(Value());
            weight.push_back(Value());
          } else {
            Value clamped = arith::MinimumFOp::create(
                nb, nl, arith::MaximumFOp::create(nb, nl, coord, f(0)), f((double)(in - 1)));
            Value lo = math::FloorOp::create(nb, nl, clamped);
            base.push_back(toIdx(lo));
            upper.push_back(arith::MinSIOp::create(
                nb, nl, arith::AddIOp::create(nb, nl, toIdx(lo), ci(1)), ci(in - 1)));
            weight.push_back(arith::SubFOp::create(nb, nl, clamped, lo));
          }
        }
        Value result;
        if (mode == "nearest") {
          result = tensor::ExtractOp::create(nb, nl, x, base);
        } else if (mode == "cubic") {
          // The sum over every combination of the resized dims' taps.
          Value acc = f(0);
          int64_t combinations = 1;
          for (size_t i = 0; i < resized.size(); ++i)
            combinations *= 4;
          for (int64_t combination = 0; combination < combinations; ++combination) {
            SmallVector<Value> coords(base);
            Value w = f(1);
            int64_t rest = combination;
            for (int64_t d : resized) {
              int64_t k = rest % 4;
              rest /= 4;
              coords[d] = taps[d][k];
              w = arith::MulFOp::create(nb, nl, w, tapWeights[d][k]);
            }
            Value v = castScalar(nb, nl, tensor::ExtractOp::create(nb, nl, x, coords), f64,
                                 false, false);
            acc = arith::AddFOp::create(nb, nl, acc, arith::MulFOp::create(nb, nl, w, v));
          }
          result = castScalar(nb, nl, acc, element, false, ctx.info(0).isUnsigned);
        } else {
          Value acc = f(0);
          for (int64_t corner = 0; corner < (1 << resized.size()); ++corner) {
            SmallVector<Value> coords(base);
            Value w = f(1);
            for (auto [bit, d] : llvm::enumerate(resized)) {
              bool high = corner & (1 << bit);
              coords[d] = high ? upper[d] : base[d];
              Value wd = high ? weight[d]
                              : (Value)arith::SubFOp::create(nb, nl, f(1), weight[d]);
              w = arith::MulFOp::create(nb, nl, w, wd);
            }
            Value v = castScalar(nb, nl, tensor::ExtractOp::create(nb, nl, x, coords), f64,
                                 false, false);
            acc = arith::AddFOp::create(nb, nl, acc, arith::MulFOp::create(nb, nl, w, v));
          }
          result = castScalar(nb, nl, acc, element, false, ctx.info(0).isUnsigned);
        }
        if (outside)
          result = arith::SelectOp::create(nb, nl, outside,
                                           scalarConstant(nb, nl, element, extrapolation), result);
        linalg::YieldOp::create(nb, nl, result);
      });
  ctx.setOutput(0, generic.getResult(0), ctx.info(0).isUnsigned);
  return success();
}

//===----------------------------------------------------------------------===//
// GridSample
//===----------------------------------------------------------------------===//

/// GridSample (opset 16, 4-D): out[n, c, i, j] samples X[n, c] at the
/// normalized point grid[n, i, j] = (x, y) in [-1, 1], as
/// torch.nn.functional.grid_sample does (ONNX's definition): bilinear,
/// nearest (half to even) or bicubic (a = -0.75) interpolation; zeros,
/// border or reflection padding; align_corners. Coordinates in f64.
LogicalResult convertGridSample(NodeContext &ctx) {
  auto xType = ctx.inputType(0), gridType = ctx.inputType(1);
  if (xType.getRank() != 4 || gridType.getRank() != 4 || gridType.getDimSize(3) != 2)
    return ctx.emitError() << "supports X [N, C, H, W] and grid [N, H_out, W_out, 2], got "
                           << xType << " and " << gridType;
  if (!xType.hasStaticShape() || !gridType.hasStaticShape())
    return ctx.fail("GridSample needs static shapes");
  if (!isa<FloatType>(xType.getElementType()) || !isa<FloatType>(gridType.getElementType()))
    return ctx.fail("X and grid must be floating point");
  std::string mode = ctx.getString("mode", "bilinear");
  std::string padding = ctx.getString("padding_mode", "zeros");
  bool alignCorners = ctx.getInt("align_corners", 0) != 0;
  if (mode != "bilinear" && mode != "nearest" && mode != "bicubic")
    return ctx.fail("mode '" + mode + "' is not supported (bilinear, nearest and bicubic are)");
  if (padding != "zeros" && padding != "border" && padding != "reflection")
    return ctx.fail("padding_mode '" + padding + "' is not supported");
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Type element = xType.getElementType(), f64 = b.getF64Type();
  Value x = ctx.input(0), grid = ctx.input(1);
  int64_t height = xType.getDimSize(2), width = xType.getDimSize(3);
  SmallVector<OpFoldResult> outSizes = {
      b.getIndexAttr(xType.getDimSize(0)), b.getIndexAttr(xType.getDimSize(1)),
      b.getIndexAttr(gridType.getDimSize(1)), b.getIndexAttr(gridType.getDimSize(2))};
  Value init = createEmpty(b, loc, outSizes, element);
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{init.getType()}, ValueRange{}, ValueRange{init},
      ArrayRef<AffineMap>{b.getMultiDimIdentityMap(4)},
      SmallVector<utils::IteratorType>(4, utils::IteratorType::parallel),
      [&](OpBuilder &nb, Location nl, ValueRange) {
        auto f = [&](double v) { return scalarConstant(nb, nl, f64, v); };
        auto ci = [&](int64_t v) { return arith::ConstantIndexOp::create(nb, nl, v).getResult(); };
        auto add = [&](Value p, Value q) { return arith::AddFOp::create(nb, nl, p, q).getResult(); };
        auto sub = [&](Value p, Value q) { return arith::SubFOp::create(nb, nl, p, q).getResult(); };
        auto mul = [&](Value p, Value q) { return arith::MulFOp::create(nb, nl, p, q).getResult(); };
        auto clip = [&](Value v, int64_t size) {
          return arith::MinimumFOp::create(nb, nl, arith::MaximumFOp::create(nb, nl, v, f(0)),
                                           f(double(size - 1)))
              .getResult();
        };
        Value n = linalg::IndexOp::create(nb, nl, 0), c = linalg::IndexOp::create(nb, nl, 1),
              i = linalg::IndexOp::create(nb, nl, 2), j = linalg::IndexOp::create(nb, nl, 3);
        auto gridAt = [&](int64_t component) {
          Value v = tensor::ExtractOp::create(nb, nl, grid, ValueRange{n, i, j, ci(component)});
          return castScalar(nb, nl, v, f64, false, false);
        };
        // [-1, 1] to pixel coordinates.
        auto unnormalize = [&](Value g, int64_t size) {
          if (alignCorners)
            return mul(add(g, f(1)), f(0.5 * double(size - 1)));
          return mul(sub(mul(add(g, f(1)), f(double(size))), f(1)), f(0.5));
        };
        // A coordinate reflected into [low, high] (twice the bounds given),
        // as torch's reflect_coordinates.
        auto reflect = [&](Value v, double twiceLow, double twiceHigh) -> Value {
          if (twiceLow == twiceHigh)
            return f(0);
          double low = twiceLow / 2, span = (twiceHigh - twiceLow) / 2;
          Value distance = math::AbsFOp::create(nb, nl, sub(v, f(low)));
          Value extra = arith::RemFOp::create(nb, nl, distance, f(span));
          Value flips = math::FloorOp::create(nb, nl, arith::DivFOp::create(nb, nl, distance, f(span)));
          Value even = arith::CmpFOp::create(
              nb, nl, arith::CmpFPredicate::OEQ,
              arith::RemFOp::create(nb, nl, flips, f(2)), f(0));
          return arith::SelectOp::create(nb, nl, even, add(extra, f(low)),
                                         add(sub(f(span), extra), f(low)));
        };
        // The padding mode applied to a coordinate (zeros: as it is).
        auto pad = [&](Value v, int64_t size) -> Value {
          if (padding == "border")
            return clip(v, size);
          if (padding == "reflection")
            return clip(alignCorners ? reflect(v, 0, 2.0 * double(size - 1))
                                     : reflect(v, -1, 2.0 * double(size) - 1),
                        size);
          return v;
        };
        // X[n, c, yy, xx] for integral f64 coordinates, 0 outside.
        auto sample = [&](Value yy, Value xx) -> Value {
          auto inRange = [&](Value v, int64_t size) {
            return arith::AndIOp::create(
                nb, nl, arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::OGE, v, f(0)),
                arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::OLE, v, f(double(size - 1))));
          };
          Value inside = arith::AndIOp::create(nb, nl, inRange(yy, height), inRange(xx, width));
          auto index = [&](Value v, int64_t size) {
            Value safe = clip(v, size);
            return arith::IndexCastOp::create(
                nb, nl, nb.getIndexType(), arith::FPToSIOp::create(nb, nl, nb.getI64Type(), safe));
          };
          Value value = tensor::ExtractOp::create(
              nb, nl, x, ValueRange{n, c, index(yy, height), index(xx, width)});
          return arith::SelectOp::create(nb, nl, inside, castScalar(nb, nl, value, f64, false, false),
                                         f(0));
        };
        Value gx = unnormalize(gridAt(0), width), gy = unnormalize(gridAt(1), height);
        Value result;
        if (mode == "nearest") {
          result = sample(math::RoundEvenOp::create(nb, nl, pad(gy, height)),
                          math::RoundEvenOp::create(nb, nl, pad(gx, width)));
        } else if (mode == "bilinear") {
          Value px = pad(gx, width), py = pad(gy, height);
          Value x0 = math::FloorOp::create(nb, nl, px), y0 = math::FloorOp::create(nb, nl, py);
          Value x1 = add(x0, f(1)), y1 = add(y0, f(1));
          Value wx1 = sub(px, x0), wy1 = sub(py, y0);
          Value wx0 = sub(f(1), wx1), wy0 = sub(f(1), wy1);
          result = add(add(mul(mul(wy0, wx0), sample(y0, x0)), mul(mul(wy0, wx1), sample(y0, x1))),
                       add(mul(mul(wy1, wx0), sample(y1, x0)), mul(mul(wy1, wx1), sample(y1, x1))));
        } else {
          // Bicubic: four taps a side of the unpadded coordinate, each tap
          // padded on its own (torch's get_value_bounded).
          constexpr double a = -0.75;
          auto inner = [&](Value u) { // |u| <= 1
            return add(mul(mul(sub(mul(f(a + 2), u), f(a + 3)), u), u), f(1));
          };
          auto outer = [&](Value u) { // 1 <= |u| <= 2
            return sub(mul(add(mul(sub(mul(f(a), u), f(5 * a)), u), f(8 * a)), u), f(4 * a));
          };
          auto coefficients = [&](Value t) {
            Value rest = sub(f(1), t);
            return SmallVector<Value, 4>{outer(add(t, f(1))), inner(t), inner(rest),
                                         outer(add(rest, f(1)))};
          };
          Value x0 = math::FloorOp::create(nb, nl, gx), y0 = math::FloorOp::create(nb, nl, gy);
          SmallVector<Value, 4> wx = coefficients(sub(gx, x0)), wy = coefficients(sub(gy, y0));
          result = f(0);
          for (int r = 0; r < 4; ++r) {
            Value row = f(0);
            Value yy = pad(add(y0, f(r - 1)), height);
            for (int k = 0; k < 4; ++k)
              row = add(row, mul(wx[k], sample(yy, pad(add(x0, f(k - 1)), width))));
            result = add(result, mul(wy[r], row));
          }
        }
        linalg::YieldOp::create(nb, nl, castScalar(nb, nl, result, element, false, false));
      });
  ctx.setOutput(0, generic.getResult(0));
  return success();
}

} // namespace

void onnx_import::registerLinalgConverters(ConverterTable &table) {
  table["GridSample"] = convertGridSample;
  table["MatMul"] = convertMatMul;
  table["Gemm"] = convertGemm;
  table["Einsum"] = convertEinsum;
  for (const char *op : {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd",
                         "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSum",
                         "ReduceLogSumExp"})
    table[op] = convertReduce;
  table["ArgMax"] = convertArgMinMax;
  table["ArgMin"] = convertArgMinMax;
  table["Hardmax"] = convertHardmax;
  table["LRN"] = convertLRN;
  table["NegativeLogLikelihoodLoss"] = convertNllLoss;
  table["SoftmaxCrossEntropyLoss"] = convertSoftmaxCrossEntropyLoss;
  table["TopK"] = convertTopK;
  table["Softmax"] = convertSoftmax;
  table["LogSoftmax"] = convertSoftmax;
  table["LayerNormalization"] = convertLayerNorm;
  table["InstanceNormalization"] = convertInstanceNorm;
  table["BatchNormalization"] = convertBatchNorm;
  table["Conv"] = convertConv;
  table["ConvTranspose"] = convertConvTranspose;
  table["MaxUnpool"] = convertMaxUnpool;
  for (const char *op : {"MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool"})
    table[op] = convertPool;
  table["Resize"] = convertResize;
  table["Upsample"] = convertUpsample;
  table["Det"] = convertDet;
  table["MeanVarianceNormalization"] = convertMeanVarianceNormalization;
}
