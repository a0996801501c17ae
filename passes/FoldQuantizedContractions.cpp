//===- FoldQuantizedContractions.cpp - QDQ matmuls as integer matmuls ------------===//
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
#define GEN_PASS_DEF_FOLDQUANTIZEDCONTRACTIONS
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
  /// One scale for the tensor, or (`perChannel`) one per index of q's
  /// channel dimension (a matmul weight's columns, a filter's outputs).
  std::vector<double> scales;
  bool perChannel = false;
  /// One zero point (0 when absent), as q's type reads it; or, when it is
  /// computed at run time (DynamicQuantizeLinear's), the one-element
  /// tensor that holds it.
  int64_t zeroPoint = 0;
  Value runtimeZeroPoint;
};

/// The values of input `operand` of `g` over the iteration space, if it is
/// a constant: per-tensor values must all be equal; with a `channel` loop
/// dimension, values are read along it and may not depend on the others.
FailureOr<std::vector<double>> constantParameter(linalg::GenericOp g, OpOperand *operand,
                                                 std::optional<unsigned> channel, bool isUnsigned,
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
  if (!channel || !varies) {
    if (varies)
      return (why = what + " is not one value for the tensor"), failure();
    return std::vector<double>{read(known->elements.front())};
  }
  SmallVector<int64_t> ranges = g.getStaticLoopRanges();
  for (unsigned d = 0; d < loops; ++d)
    if (d != *channel && ranges[d] != 1 && map.isFunctionOfDim(d))
      return (why = what + " varies along more than the output channels"), failure();
  int64_t channels = ranges[*channel];
  if (ShapedType::isDynamic(channels))
    return (why = "the weight has a dynamic channel count"), failure();
  ArrayRef<int64_t> shape = known->type.getShape();
  std::vector<double> values;
  for (int64_t c = 0; c < channels; ++c) {
    SmallVector<int64_t> point(loops, 0);
    point[*channel] = c;
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
FailureOr<Dequantization> matchDequantization(Value v, std::optional<unsigned> channel,
                                              bool integer, std::string &why) {
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
    std::string operand = channel ? "the weight's" : "the activation's";
    if (scaleOperand) {
      FailureOr<std::vector<double>> scales = constantParameter(
          g, scaleOperand, channel, /*isUnsigned=*/false, operand + " scale", why);
      if (failed(scales))
        return failure();
      result.scales = std::move(*scales);
    }
    result.perChannel = result.scales.size() > 1;
    if (zero) {
      Value zp = zero->first->get();
      auto zpType = cast<RankedTensorType>(zp.getType());
      if (!matchPattern(zp, m_Constant()) && zpType.hasStaticShape() &&
          zpType.getNumElements() == 1 && zpType.getElementType().isInteger(8)) {
        result.runtimeZeroPoint = zp; // one value, known at run time
        return result;
      }
      FailureOr<std::vector<double>> zeros = constantParameter(
          g, zero->first, std::nullopt, result.isUnsigned, operand + " zero point", why);
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

/// The f32 result of an integer product `acc` (i32, the shape of `init`):
/// init + acc * (scale_a * scale_w[channel]), the init dropped when it is
/// zeros; the weight's scales broadcast along result dimension `channel`.
Value scaledResult(OpBuilder &b, Location loc, Value acc, Value init, const Dequantization &a,
                   const Dequantization &w, unsigned channel) {
  auto resultType = cast<RankedTensorType>(init.getType());
  int64_t rank = resultType.getRank();
  std::vector<float> multipliers;
  for (double s : w.scales)
    multipliers.push_back(float(a.scales.front() * s));
  bool zeroInit = false;
  if (auto fill = init.getDefiningOp<linalg::FillOp>()) {
    FloatAttr value;
    zeroInit = matchPattern(fill.getInputs()[0], m_Constant(&value)) && value.getValue().isZero();
  }
  SmallVector<Value> inputs = {acc};
  AffineMap identity = b.getMultiDimIdentityMap(rank);
  SmallVector<AffineMap> maps = {identity};
  if (w.perChannel) {
    auto scaleType = RankedTensorType::get({int64_t(multipliers.size())}, b.getF32Type());
    inputs.push_back(arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(scaleType, ArrayRef<float>(multipliers))));
    maps.push_back(AffineMap::get(rank, 0, {b.getAffineDimExpr(channel)}, b.getContext()));
  }
  if (!zeroInit) {
    inputs.push_back(init);
    maps.push_back(identity);
  }
  maps.push_back(identity);
  Value output =
      tensor::EmptyOp::create(b, loc, tensor::getMixedSizes(b, loc, init), b.getF32Type());
  Value scalar =
      w.perChannel
          ? Value()
          : Value(arith::ConstantOp::create(b, loc, b.getF32FloatAttr(multipliers.front())));
  return linalg::GenericOp::create(
             b, loc, TypeRange{resultType}, inputs, ValueRange{output}, maps,
             SmallVector<utils::IteratorType>(rank, utils::IteratorType::parallel),
             [&](OpBuilder &nb, Location nl, ValueRange args) {
               Value y = arith::SIToFPOp::create(nb, nl, nb.getF32Type(), args[0]);
               y = arith::MulFOp::create(nb, nl, y, w.perChannel ? args[1] : scalar);
               if (!zeroInit)
                 y = arith::AddFOp::create(nb, nl, y, args[w.perChannel ? 2 : 1]);
               linalg::YieldOp::create(nb, nl, y);
             })
      .getResult(0);
}

/// Zeros of i32 in the shape of `like`.
Value zerosLike(OpBuilder &b, Location loc, Value like) {
  Type i32 = b.getI32Type();
  return linalg::FillOp::create(
             b, loc, ValueRange{arith::ConstantIntOp::create(b, loc, i32, 0)},
             ValueRange{tensor::EmptyOp::create(b, loc, tensor::getMixedSizes(b, loc, like), i32)})
      .getResult(0);
}

struct FoldQuantizedContractionsPass
    : public hasten::impl::FoldQuantizedContractionsBase<FoldQuantizedContractionsPass> {
  using Base::Base;

  void runOnOperation() override {
    SmallVector<linalg::LinalgOp> ops;
    getOperation().walk([&](linalg::LinalgOp op) {
      if (!op.hasPureTensorSemantics() || op->getNumResults() != 1)
        return;
      Type element = cast<RankedTensorType>(op->getResultTypes()[0]).getElementType();
      if (auto matmul = dyn_cast<linalg::MatmulOp>(op.getOperation()))
        if (!matmul.hasUserDefinedMaps() && (element.isF32() || element.isInteger(32)))
          ops.push_back(op);
      if (isa<linalg::Conv2DNchwFchwOp>(op.getOperation()) &&
          (element.isF32() || element.isInteger(32)))
        ops.push_back(op);
    });
    IRRewriter rewriter(&getContext());
    for (linalg::LinalgOp op : ops) {
      std::string why;
      bool conv = isa<linalg::Conv2DNchwFchwOp>(op.getOperation());
      LogicalResult folded = conv ? foldConvolution(rewriter, op, why)
                                  : foldMatmul(rewriter, cast<linalg::MatmulOp>(op), why);
      if (failed(folded) && reportUnfolded && !why.empty())
        op.emitRemark(conv ? "convolution" : "matmul")
            << " of dequantized operands left as it is: " << why;
    }
  }

  LogicalResult foldMatmul(IRRewriter &b, linalg::MatmulOp matmul, std::string &why) {
    Value lhs = matmul.getDpsInputOperand(0)->get(), rhs = matmul.getDpsInputOperand(1)->get();
    // A [batch..., M, K] activation reaches the matmul collapsed to rows.
    auto collapse = lhs.getDefiningOp<tensor::CollapseShapeOp>();
    if (collapse)
      lhs = collapse.getSrc();
    if (!lhs.getDefiningOp<linalg::GenericOp>() && !rhs.getDefiningOp<linalg::GenericOp>())
      return failure(); // an ordinary matmul: nothing to say
    bool integer =
        cast<RankedTensorType>(matmul.getResultTypes()[0]).getElementType().isInteger(32);
    FailureOr<Dequantization> a = matchDequantization(lhs, std::nullopt, integer, why);
    if (failed(a))
      return failure();
    FailureOr<Dequantization> w = matchDequantization(rhs, /*channel=*/1, integer, why);
    if (failed(w))
      return failure();

    Location loc = matmul.getLoc();
    b.setInsertionPoint(matmul);
    Value qa = flipSignBitIf(b, loc, a->q, a->isUnsigned);
    Value qb = flipSignBitIf(b, loc, w->q, w->isUnsigned);
    Value za = zeroPointFor(b, loc, *a), zb = zeroPointFor(b, loc, *w);
    if (collapse)
      qa = tensor::CollapseShapeOp::create(b, loc, qa, collapse.getReassociationIndices());

    // acc = sum_k (qa - za) (qb - zb), in i32: into the matmul's own init
    // for an integer matmul (which is then replaced), into zeros otherwise.
    Value init = matmul.getDpsInitOperand(0)->get();
    Value zeros = integer ? init : zerosLike(b, loc, init);
    Value acc = linalg::QuantizedMatmulOp::create(b, loc, TypeRange{zeros.getType()},
                                                  ValueRange{qa, qb, za, zb}, ValueRange{zeros})
                    .getResult(0);
    b.replaceOp(matmul, integer ? acc : scaledResult(b, loc, acc, init, *a, *w, 1));
    return success();
  }

  /// conv(pad(DQ(x), 0), DQ(w)) as the integer convolution of x padded with
  /// its zero point (which dequantizes to the 0 the f32 graph pads with);
  /// likewise the i32 convolution of zero-point-shifted operands that
  /// ConvInteger and QLinearConv import to.
  LogicalResult foldConvolution(IRRewriter &b, linalg::LinalgOp conv, std::string &why) {
    Value x = conv.getDpsInputOperand(0)->get(), filter = conv.getDpsInputOperand(1)->get();
    bool integer = cast<RankedTensorType>(conv->getResultTypes()[0]).getElementType().isInteger(32);
    auto pad = x.getDefiningOp<tensor::PadOp>();
    if (pad) {
      Value padding = pad.getConstantPaddingValue();
      Attribute value;
      bool zero = padding && matchPattern(padding, m_Constant(&value)) &&
                  (integer ? cast<IntegerAttr>(value).getValue().isZero()
                           : cast<FloatAttr>(value).getValue().isZero());
      if (!zero)
        return (why = "the input is padded with a value other than 0"), failure();
      x = pad.getSource();
    }
    if (!x.getDefiningOp<linalg::GenericOp>() && !filter.getDefiningOp<linalg::GenericOp>())
      return failure(); // an ordinary convolution
    FailureOr<Dequantization> a = matchDequantization(x, std::nullopt, integer, why);
    if (failed(a))
      return failure();
    FailureOr<Dequantization> w = matchDequantization(filter, /*channel=*/0, integer, why);
    if (failed(w))
      return failure();

    Location loc = conv.getLoc();
    b.setInsertionPoint(conv);
    Value qx = flipSignBitIf(b, loc, a->q, a->isUnsigned);
    Value qw = flipSignBitIf(b, loc, w->q, w->isUnsigned);
    Value zx = zeroPointFor(b, loc, *a), zw = zeroPointFor(b, loc, *w);
    if (pad) {
      Value fill = arith::TruncIOp::create(b, loc, b.getI8Type(), zx);
      auto paddedType = RankedTensorType::get(pad.getResultType().getShape(), b.getI8Type());
      qx = tensor::PadOp::create(b, loc, paddedType, qx, pad.getMixedLowPad(),
                                 pad.getMixedHighPad(), fill);
    }
    auto plain = cast<linalg::Conv2DNchwFchwOp>(conv.getOperation());
    // Into the convolution's own init (its bias) for the i32 form, which
    // is then replaced; into zeros, scaled after, otherwise.
    Value init = conv.getDpsInitOperand(0)->get();
    Value zeros = integer ? init : zerosLike(b, loc, init);
    Value acc =
        linalg::Conv2DNchwFchwQOp::create(
            b, loc, TypeRange{zeros.getType()}, ValueRange{qx, qw, zx, zw}, ValueRange{zeros},
            ArrayRef<NamedAttribute>{b.getNamedAttr("strides", plain.getStrides()),
                                     b.getNamedAttr("dilations", plain.getDilations())})
            .getResult(0);
    b.replaceOp(conv, integer ? acc : scaledResult(b, loc, acc, init, *a, *w, 1));
    return success();
  }
};

} // namespace
