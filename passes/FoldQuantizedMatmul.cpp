//===- FoldQuantizedMatmul.cpp - QDQ matmuls as integer matmuls ------------===//
//
// A QDQ model (ONNX Runtime's quantizer, QuantFormat.QDQ) spells an int8
// matmul as a MatMul of two DequantizeLinear results. Imported node by node,
// that dequantizes both operands to f32 and multiplies in f32. Because
//
//   sum_k (sa (a - za)) (sb[n] (b - zb)) = sa sb[n] sum_k (a - za) (b - zb)
//
// the product is the integer matmul of the stored values scaled once per
// output, which is what this pass writes: `linalg.quantized_matmul` of the
// i8 operands into i32 and one elementwise `linalg.generic` that scales it.
// The integer matmul then runs on the runtime's int8 kernels
// (--hasten-matmul-to-runtime-calls), and no f32 copy of the weight is kept.
//
// linalg.quantized_matmul widens its operands as signed; a uint8 operand
// becomes int8 by flipping its top bit, which subtracts 128 from the value
// and from its zero point and so leaves (a - za) as it was. Constant
// weights are flipped here, at compile time.
//
//===----------------------------------------------------------------------===//

#include "TensorEvaluator.h"
#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"

#include <cmath>

namespace hasten {
#define GEN_PASS_DEF_FOLDQUANTIZEDMATMUL
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;

namespace {

/// What a DequantizeLinear imports to, (itofp(q) - itofp(zp)) * scale, read
/// back from its linalg.generic: the stored values, their signedness, and
/// the parameters as constants.
struct Dequantization {
  Value q;
  bool isUnsigned = false;
  /// One scale for the tensor, or (`perColumn`) one per index of q's last
  /// dimension.
  std::vector<double> scales;
  bool perColumn = false;
  /// One zero point (0 when absent), as q's type reads it; or, when it is
  /// computed at run time (DynamicQuantizeLinear's), the one-element
  /// tensor that holds it.
  int64_t zeroPoint = 0;
  Value runtimeZeroPoint;
};

/// The values of input `operand` of `g` over the iteration space, if it is
/// a constant: per-tensor values must all be equal; per-column values are
/// read along the last loop dimension and may not depend on the others.
FailureOr<std::vector<double>> constantParameter(linalg::GenericOp g, OpOperand *operand,
                                                 bool perColumn, bool isUnsigned,
                                                 const std::string &what, std::string &why) {
  // A per-axis parameter arrives reshaped to broadcast ([N] as [1, N]);
  // reshapes keep the row-major order.
  Value source = operand->get();
  while (isa_and_present<tensor::ExpandShapeOp, tensor::CollapseShapeOp>(source.getDefiningOp()))
    source = source.getDefiningOp()->getOperand(0);
  Attribute attr;
  if (!matchPattern(source, m_Constant(&attr)))
    return (why = what + " is not a constant"), failure();
  std::optional<hasten::KnownTensor> known = hasten::TensorEvaluator::fromAttribute(attr);
  if (!known || known->elements.empty())
    return (why = what + " could not be read"), failure();
  known->type = cast<RankedTensorType>(operand->get().getType());
  auto read = [&](double v) {
    return isUnsigned && v < 0 ? v + std::ldexp(1.0, known->type.getElementTypeBitWidth()) : v;
  };
  AffineMap map = g.getMatchingIndexingMap(operand);
  unsigned loops = map.getNumDims();
  bool varies =
      llvm::any_of(known->elements, [&](double v) { return v != known->elements.front(); });
  if (!perColumn || !varies) {
    if (varies)
      return (why = what + " is not one value for the tensor"), failure();
    return std::vector<double>{read(known->elements.front())};
  }
  for (unsigned d = 0; d + 1 < loops; ++d)
    if (map.isFunctionOfDim(d))
      return (why = what + " varies along rows"), failure();
  int64_t columns = g.getStaticLoopRanges().back();
  if (ShapedType::isDynamic(columns))
    return (why = "the weight has a dynamic column count"), failure();
  ArrayRef<int64_t> shape = known->type.getShape();
  std::vector<double> values;
  for (int64_t c = 0; c < columns; ++c) {
    SmallVector<int64_t> point(loops, 0);
    point.back() = c;
    SmallVector<int64_t> index = map.compose(point);
    int64_t flat = 0;
    for (auto [i, size] : llvm::zip_equal(index, shape))
      flat = flat * size + i;
    values.push_back(read(known->elements[flat]));
  }
  return values;
}

/// Reads `v` as a dequantization of i8 values with constant parameters:
/// with `integer`, the i32 form that MatMulInteger and the QLinear ops
/// import to, ext(q) - ext(zp) (one scale, 1); otherwise the f32 form.
FailureOr<Dequantization> matchDequantization(Value v, bool allowPerColumn, bool integer,
                                              std::string &why) {
  auto g = v.getDefiningOp<linalg::GenericOp>();
  if (!g || g->getNumResults() != 1 || g.getNumReductionLoops() != 0 ||
      !g.getMatchingIndexingMap(g.getDpsInitOperand(0)).isIdentity())
    return (why = "an operand is not a dequantization"), failure();
  Block &body = g.getRegion().front();
  Value yielded = cast<linalg::YieldOp>(body.getTerminator()).getValues()[0];
  if (!yielded.getType().isInteger(32) && !yielded.getType().isF32())
    return (why = "an operand is not an f32 dequantization"), failure();
  // The block argument an input feeds, with its operand.
  auto inputOf = [&](Value value) -> OpOperand * {
    auto arg = dyn_cast<BlockArgument>(value);
    if (!arg || arg.getOwner() != &body || arg.getArgNumber() >= g.getNumDpsInputs())
      return nullptr;
    return g.getDpsInputOperand(arg.getArgNumber());
  };
  // itofp(input) or ext(input): the operand and its signedness.
  auto widened = [&](Value value) -> std::optional<std::pair<OpOperand *, bool>> {
    Operation *def = value.getDefiningOp();
    if (!def || (integer ? !isa<arith::ExtSIOp, arith::ExtUIOp>(def)
                         : !isa<arith::SIToFPOp, arith::UIToFPOp>(def)))
      return std::nullopt;
    OpOperand *operand = inputOf(def->getOperand(0));
    if (!operand)
      return std::nullopt;
    return std::make_pair(operand, isa<arith::UIToFPOp, arith::ExtUIOp>(def));
  };
  // x, scale: (yielded, none) for the integer form, the product's two
  // operands in either order for the f32 form.
  SmallVector<std::pair<Value, OpOperand *>> candidates;
  if (integer) {
    candidates.push_back({yielded, nullptr});
  } else if (auto mul = yielded.getDefiningOp<arith::MulFOp>()) {
    for (int side = 0; side < 2; ++side)
      if (OpOperand *scale = inputOf(mul->getOperand(1 - side)))
        candidates.push_back({mul->getOperand(side), scale});
  }
  for (auto [x, scaleOperand] : candidates) {
    Value quantized = x;
    std::optional<std::pair<OpOperand *, bool>> zero;
    Operation *sub = x.getDefiningOp();
    if (isa_and_present<arith::SubFOp, arith::SubIOp>(sub)) {
      quantized = sub->getOperand(0);
      zero = widened(sub->getOperand(1));
      if (!zero)
        continue;
    }
    std::optional<std::pair<OpOperand *, bool>> values = widened(quantized);
    if (!values || (zero && zero->second != values->second))
      continue;
    OpOperand *qOperand = values->first;
    auto qType = dyn_cast<RankedTensorType>(qOperand->get().getType());
    if (!qType || !qType.getElementType().isInteger(8) ||
        !g.getMatchingIndexingMap(qOperand).isIdentity())
      return (why = "an operand dequantizes values other than 8-bit integers"), failure();
    Dequantization result;
    result.q = qOperand->get();
    result.isUnsigned = values->second;
    result.scales = {1.0};
    std::string operand = allowPerColumn ? "the weight's" : "the activation's";
    if (scaleOperand) {
      FailureOr<std::vector<double>> scales = constantParameter(
          g, scaleOperand, allowPerColumn, /*isUnsigned=*/false, operand + " scale", why);
      if (failed(scales))
        return failure();
      result.scales = std::move(*scales);
    }
    result.perColumn = result.scales.size() > 1;
    if (zero) {
      Value zp = zero->first->get();
      auto zpType = cast<RankedTensorType>(zp.getType());
      if (!matchPattern(zp, m_Constant()) && zpType.hasStaticShape() &&
          zpType.getNumElements() == 1 && zpType.getElementType().isInteger(8)) {
        result.runtimeZeroPoint = zp; // one value, known at run time
        return result;
      }
      FailureOr<std::vector<double>> zeros = constantParameter(
          g, zero->first, /*perColumn=*/false, result.isUnsigned, operand + " zero point", why);
      if (failed(zeros))
        return failure();
      result.zeroPoint = int64_t(zeros->front());
    }
    return result;
  }
  return (why = "an operand is not a dequantization"), failure();
}

/// `q` (i8) with its top bit flipped: uint8 values read as int8, 128 less.
Value flipSignBit(OpBuilder &b, Location loc, Value q) {
  Attribute attr;
  if (matchPattern(q, m_Constant(&attr))) {
    if (std::optional<hasten::KnownTensor> known = hasten::TensorEvaluator::fromAttribute(attr)) {
      std::vector<int8_t> flipped;
      flipped.reserve(known->elements.size());
      for (double v : known->elements)
        flipped.push_back(int8_t(uint8_t(int64_t(v)) ^ 0x80));
      return arith::ConstantOp::create(
          b, loc, DenseElementsAttr::get(known->type, ArrayRef<int8_t>(flipped)));
    }
  }
  auto type = cast<RankedTensorType>(q.getType());
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, q);
  Value init = tensor::EmptyOp::create(b, loc, sizes, type.getElementType());
  AffineMap identity = b.getMultiDimIdentityMap(type.getRank());
  SmallVector<utils::IteratorType> parallel(type.getRank(), utils::IteratorType::parallel);
  Value signBit = arith::ConstantIntOp::create(b, loc, b.getI8Type(), -128);
  return linalg::GenericOp::create(b, loc, TypeRange{type}, ValueRange{q}, ValueRange{init},
                                   ArrayRef<AffineMap>{identity, identity}, parallel,
                                   [&](OpBuilder &nb, Location nl, ValueRange args) {
                                     linalg::YieldOp::create(
                                         nb, nl,
                                         Value(arith::XOrIOp::create(nb, nl, args[0], signBit)));
                                   })
      .getResult(0);
}

/// `q`, flipped when it holds uint8 values.
Value flipSignBitIf(OpBuilder &b, Location loc, Value q, bool isUnsigned) {
  return isUnsigned ? flipSignBit(b, loc, q) : q;
}

/// The zero point as the i32 that linalg.quantized_matmul subtracts from
/// the (flipped) operand: 128 less for uint8 values.
Value zeroPointFor(OpBuilder &b, Location loc, const Dequantization &d) {
  Type i32 = b.getI32Type();
  int64_t shift = d.isUnsigned ? 128 : 0;
  if (!d.runtimeZeroPoint)
    return arith::ConstantIntOp::create(b, loc, i32, d.zeroPoint - shift);
  auto type = cast<RankedTensorType>(d.runtimeZeroPoint.getType());
  SmallVector<Value> origin(type.getRank(), arith::ConstantIndexOp::create(b, loc, 0));
  Value zp = tensor::ExtractOp::create(b, loc, d.runtimeZeroPoint, origin);
  zp = d.isUnsigned ? Value(arith::ExtUIOp::create(b, loc, i32, zp))
                    : Value(arith::ExtSIOp::create(b, loc, i32, zp));
  if (shift)
    zp = arith::SubIOp::create(b, loc, zp, arith::ConstantIntOp::create(b, loc, i32, shift));
  return zp;
}

struct FoldQuantizedMatmulPass
    : public hasten::impl::FoldQuantizedMatmulBase<FoldQuantizedMatmulPass> {
  using Base::Base;

  void runOnOperation() override {
    SmallVector<linalg::MatmulOp> matmuls;
    getOperation().walk([&](linalg::MatmulOp op) {
      Type element = cast<RankedTensorType>(op.getResultTypes()[0]).getElementType();
      if (op.hasPureTensorSemantics() && !op.hasUserDefinedMaps() &&
          (element.isF32() || element.isInteger(32)))
        matmuls.push_back(op);
    });
    IRRewriter rewriter(&getContext());
    for (linalg::MatmulOp matmul : matmuls) {
      std::string why;
      if (failed(fold(rewriter, matmul, why)) && reportUnfolded && !why.empty())
        matmul.emitRemark("matmul of dequantized operands left as it is: ") << why;
    }
  }

  LogicalResult fold(IRRewriter &b, linalg::MatmulOp matmul, std::string &why) {
    Value lhs = matmul.getDpsInputOperand(0)->get(), rhs = matmul.getDpsInputOperand(1)->get();
    // A [batch..., M, K] activation reaches the matmul collapsed to rows.
    auto collapse = lhs.getDefiningOp<tensor::CollapseShapeOp>();
    if (collapse)
      lhs = collapse.getSrc();
    bool lhsDequantized = lhs.getDefiningOp<linalg::GenericOp>() != nullptr;
    if (!lhsDequantized && !rhs.getDefiningOp<linalg::GenericOp>())
      return failure(); // an ordinary f32 matmul: nothing to say
    bool integer =
        cast<RankedTensorType>(matmul.getResultTypes()[0]).getElementType().isInteger(32);
    FailureOr<Dequantization> a = matchDequantization(lhs, /*allowPerColumn=*/false, integer, why);
    if (failed(a))
      return failure();
    FailureOr<Dequantization> w = matchDequantization(rhs, /*allowPerColumn=*/true, integer, why);
    if (failed(w))
      return failure();

    Location loc = matmul.getLoc();
    b.setInsertionPoint(matmul);
    Value qa = flipSignBitIf(b, loc, a->q, a->isUnsigned);
    Value qb = flipSignBitIf(b, loc, w->q, w->isUnsigned);
    Type i32 = b.getI32Type();
    Value za = zeroPointFor(b, loc, *a), zb = zeroPointFor(b, loc, *w);
    if (collapse)
      qa = tensor::CollapseShapeOp::create(b, loc, qa, collapse.getReassociationIndices());

    // acc = sum_k (qa - za) (qb - zb), in i32: into the matmul's own init
    // for an integer matmul (which is then replaced), into zeros otherwise.
    Value init = matmul.getDpsInitOperand(0)->get();
    SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, init);
    Value zeros = integer ? init
                          : linalg::FillOp::create(
                                b, loc, ValueRange{arith::ConstantIntOp::create(b, loc, i32, 0)},
                                ValueRange{tensor::EmptyOp::create(b, loc, sizes, i32)})
                                .getResult(0);
    Value acc = linalg::QuantizedMatmulOp::create(b, loc, TypeRange{zeros.getType()},
                                                  ValueRange{qa, qb, za, zb}, ValueRange{zeros})
                    .getResult(0);
    if (integer) {
      b.replaceOp(matmul, acc);
      return success();
    }

    // y = init + acc * (sa sb[n]); the init is dropped when it is zeros.
    SmallVector<double> multipliers;
    for (double s : w->scales)
      multipliers.push_back(a->scales.front() * s);
    bool zeroInit = false;
    if (auto fill = init.getDefiningOp<linalg::FillOp>()) {
      FloatAttr value;
      zeroInit = matchPattern(fill.getInputs()[0], m_Constant(&value)) && value.getValue().isZero();
    }
    auto resultType = cast<RankedTensorType>(matmul.getResultTypes()[0]);
    int64_t columns = resultType.getDimSize(1);
    SmallVector<Value> inputs = {acc};
    AffineMap identity = b.getMultiDimIdentityMap(2);
    SmallVector<AffineMap> maps = {identity};
    if (w->perColumn) {
      auto scaleType = RankedTensorType::get({columns}, b.getF32Type());
      std::vector<float> values(multipliers.begin(), multipliers.end());
      inputs.push_back(arith::ConstantOp::create(
          b, loc, DenseElementsAttr::get(scaleType, ArrayRef<float>(values))));
      maps.push_back(AffineMap::get(2, 0, {b.getAffineDimExpr(1)}, b.getContext()));
    }
    if (!zeroInit) {
      inputs.push_back(init);
      maps.push_back(identity);
    }
    maps.push_back(identity);
    Value output = tensor::EmptyOp::create(b, loc, sizes, b.getF32Type());
    SmallVector<utils::IteratorType> parallel(2, utils::IteratorType::parallel);
    Value scalar = w->perColumn ? Value()
                                : Value(arith::ConstantOp::create(
                                      b, loc, b.getF32FloatAttr(float(multipliers.front()))));
    auto scaled = linalg::GenericOp::create(
        b, loc, TypeRange{resultType}, inputs, ValueRange{output}, maps, parallel,
        [&](OpBuilder &nb, Location nl, ValueRange args) {
          Value y = arith::SIToFPOp::create(nb, nl, nb.getF32Type(), args[0]);
          y = arith::MulFOp::create(nb, nl, y, w->perColumn ? args[1] : scalar);
          if (!zeroInit)
            y = arith::AddFOp::create(nb, nl, y, args[w->perColumn ? 2 : 1]);
          linalg::YieldOp::create(nb, nl, y);
        });
    b.replaceOp(matmul, scaled.getResult(0));
    return success();
  }
};

} // namespace
