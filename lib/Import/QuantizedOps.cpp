//===- QuantizedOps.cpp - ONNX's quantization ops --------------------------===//
//
// QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear as elementwise
// arithmetic with the reference's rounding (half to even) and saturation;
// MatMulInteger and QLinearMatMul (ConvInteger and QLinearConv) as an i32
// matmul (convolution) of operands shifted by their zero points; ONNX Runtime's MatMulNBits as the blocked
// dequantization of its 4-bit weight feeding a MatMul. A constant weight's
// dequantization feeding a MatMul runs on the int8/int4 kernels
// (--hasten-matmul-to-runtime-calls folds it); activation Q/DQ and the
// integer matmuls run as generated loops.
//
//===----------------------------------------------------------------------===//

#include "ImporterInternal.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/DialectResourceBlobManager.h"

#include <cmath>
#include <cstring>
#include <limits>

using namespace mlir;
using namespace hasten;
using namespace hasten::onnx_import;

namespace {

/// [lowest, highest] of a quantized integer type.
std::pair<double, double> quantizedRange(Type element, bool isUnsigned) {
  unsigned width = element.getIntOrFloatBitWidth();
  if (isUnsigned)
    return {0.0, std::ldexp(1.0, width) - 1};
  return {-std::ldexp(1.0, width - 1), std::ldexp(1.0, width - 1) - 1};
}

/// A per-axis parameter (1-D, one value per slice along `axis`, read from
/// the node's `axis` attribute when not given) shaped to broadcast against a
/// tensor of `rank`; a scalar (or one-element) parameter stays as it is.
FailureOr<Value> alongAxis(NodeContext &ctx, Value param, std::optional<int64_t> givenAxis,
                           int64_t rank, StringRef what) {
  auto type = cast<RankedTensorType>(param.getType());
  if (type.getRank() == 0 || (type.getRank() == 1 && type.getDimSize(0) == 1)) {
    ctx.ignoreAttr("axis"); // one value for the tensor: no axis to follow
    return param;           // broadcasts as it is
  }
  if (type.getRank() != 1)
    return (ctx.emitError() << what << " must be a scalar or 1-D, got " << type), failure();
  int64_t axis;
  if (givenAxis) {
    axis = *givenAxis;
  } else {
    FailureOr<int64_t> normalized = ctx.normalizeAxis(ctx.getInt("axis", 1), rank);
    if (failed(normalized))
      return failure();
    axis = *normalized;
  }
  SmallVector<int64_t> units;
  for (int64_t d = 0; d < rank; ++d)
    if (d != axis)
      units.push_back(d);
  return insertUnitDims(ctx.b, ctx.loc, param, units);
}

/// Integer to float (signed or unsigned).
Value toFloat(OpBuilder &b, Location loc, Value v, Type f, bool isUnsigned) {
  if (isa<FloatType>(v.getType()))
    return v.getType() == f ? v : Value(arith::ExtFOp::create(b, loc, f, v));
  return isUnsigned ? Value(arith::UIToFPOp::create(b, loc, f, v))
                    : Value(arith::SIToFPOp::create(b, loc, f, v));
}

/// round-half-to-even(v), saturated to the integer type's range, converted.
Value saturate(OpBuilder &b, Location loc, Value v, Type element, bool isUnsigned) {
  auto [lo, hi] = quantizedRange(element, isUnsigned);
  Type f = v.getType();
  v = math::RoundEvenOp::create(b, loc, v);
  v = arith::MaximumFOp::create(b, loc, v, scalarConstant(b, loc, f, lo));
  v = arith::MinimumFOp::create(b, loc, v, scalarConstant(b, loc, f, hi));
  return isUnsigned ? Value(arith::FPToUIOp::create(b, loc, element, v))
                    : Value(arith::FPToSIOp::create(b, loc, element, v));
}

LogicalResult convertQuantizeLinear(NodeContext &ctx) {
  auto type = ctx.inputType(0);
  Type f = type.getElementType();
  if (!isa<FloatType>(f))
    return ctx.emitError() << "expects a floating-point input, got " << type;
  int64_t rank = type.getRank();
  Type qElement = ctx.b.getIntegerType(8);
  bool isUnsigned = true;
  SmallVector<Value> inputs = {ctx.input(0)};
  FailureOr<Value> scale = alongAxis(ctx, ctx.input(1), std::nullopt, rank, "y_scale");
  if (failed(scale))
    return failure();
  inputs.push_back(*scale);
  if (ctx.hasInput(2)) {
    qElement = ctx.inputType(2).getElementType();
    isUnsigned = ctx.info(2).isUnsigned;
    if (!isa<IntegerType>(qElement) || qElement.getIntOrFloatBitWidth() > 32)
      return ctx.emitError() << "y_zero_point must be an 8 to 32-bit integer, got "
                             << ctx.inputType(2);
    FailureOr<Value> zp = alongAxis(ctx, ctx.input(2), std::nullopt, rank, "y_zero_point");
    if (failed(zp))
      return failure();
    inputs.push_back(*zp);
  }
  bool zpUnsigned = isUnsigned;
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(ctx.b, ctx.loc, ctx.input(0));
  Value result = buildElementwise(
      ctx.b, ctx.loc, inputs, qElement,
      [&](OpBuilder &b, Location loc, ValueRange a) {
        Value v = math::RoundEvenOp::create(b, loc, arith::DivFOp::create(b, loc, a[0], a[1]));
        if (a.size() > 2)
          v = arith::AddFOp::create(b, loc, v, toFloat(b, loc, a[2], f, zpUnsigned));
        return saturate(b, loc, v, qElement, zpUnsigned);
      },
      ArrayRef<OpFoldResult>(sizes));
  ctx.setOutput(0, result, isUnsigned);
  return success();
}

LogicalResult convertDequantizeLinear(NodeContext &ctx) {
  auto type = ctx.inputType(0);
  if (!isa<IntegerType>(type.getElementType()))
    return ctx.emitError() << "expects an integer input, got " << type;
  Type f = ctx.inputType(1).getElementType();
  if (!isa<FloatType>(f))
    return ctx.emitError() << "x_scale must be floating point, got " << ctx.inputType(1);
  int64_t rank = type.getRank();
  bool isUnsigned = ctx.info(0).isUnsigned;
  SmallVector<Value> inputs = {ctx.input(0)};
  FailureOr<Value> scale = alongAxis(ctx, ctx.input(1), std::nullopt, rank, "x_scale");
  if (failed(scale))
    return failure();
  inputs.push_back(*scale);
  if (ctx.hasInput(2)) {
    FailureOr<Value> zp = alongAxis(ctx, ctx.input(2), std::nullopt, rank, "x_zero_point");
    if (failed(zp))
      return failure();
    inputs.push_back(*zp);
  }
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(ctx.b, ctx.loc, ctx.input(0));
  Value result = buildElementwise(
      ctx.b, ctx.loc, inputs, f,
      [&](OpBuilder &b, Location loc, ValueRange a) {
        Value x = toFloat(b, loc, a[0], f, isUnsigned);
        if (a.size() > 2)
          x = arith::SubFOp::create(b, loc, x, toFloat(b, loc, a[2], f, isUnsigned));
        return arith::MulFOp::create(b, loc, x, a[1]).getResult();
      },
      ArrayRef<OpFoldResult>(sizes));
  ctx.setOutput(0, result);
  return success();
}

/// The minimum or maximum of every element of `x` (a rank-0 tensor).
Value reduceAll(OpBuilder &b, Location loc, Value x, bool max) {
  auto type = cast<RankedTensorType>(x.getType());
  SmallVector<int64_t> dims;
  for (int64_t d = 0; d < type.getRank(); ++d)
    dims.push_back(d);
  Type f = type.getElementType();
  Value init = createFilled(b, loc, {}, max ? lowestValue(b, loc, f) : highestValue(b, loc, f));
  return linalg::ReduceOp::create(
             b, loc, ValueRange{x}, ValueRange{init}, dims,
             [&](OpBuilder &nb, Location nl, ValueRange a) {
               Value r = max ? Value(arith::MaximumFOp::create(nb, nl, a[0], a[1]))
                             : Value(arith::MinimumFOp::create(nb, nl, a[0], a[1]));
               linalg::YieldOp::create(nb, nl, r);
             })
      .getResult(0);
}

/// DynamicQuantizeLinear: uint8 with the scale and zero point that map
/// [min(0, min x), max(0, max x)] onto [0, 255].
LogicalResult convertDynamicQuantizeLinear(NodeContext &ctx) {
  auto type = ctx.inputType(0);
  Type f = type.getElementType();
  if (!f.isF32())
    return ctx.emitError() << "expects a float32 input, got " << type;
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Value lo = reduceAll(b, loc, ctx.input(0), false), hi = reduceAll(b, loc, ctx.input(0), true);
  Type u8 = b.getIntegerType(8);
  Value scale = buildElementwise(b, loc, ValueRange{lo, hi}, f,
                                 [&](OpBuilder &nb, Location nl, ValueRange a) {
                                   Value zero = scalarConstant(nb, nl, f, 0);
                                   Value low = arith::MinimumFOp::create(nb, nl, a[0], zero);
                                   Value high = arith::MaximumFOp::create(nb, nl, a[1], zero);
                                   return arith::DivFOp::create(
                                              nb, nl, arith::SubFOp::create(nb, nl, high, low),
                                              scalarConstant(nb, nl, f, 255))
                                       .getResult();
                                 });
  Value zeroPoint = buildElementwise(b, loc, ValueRange{lo, scale}, u8,
                                     [&](OpBuilder &nb, Location nl, ValueRange a) {
                                       Value low = arith::MinimumFOp::create(
                                           nb, nl, a[0], scalarConstant(nb, nl, f, 0));
                                       Value v = arith::NegFOp::create(
                                           nb, nl, arith::DivFOp::create(nb, nl, low, a[1]));
                                       return saturate(nb, nl, v, u8, true);
                                     });
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, ctx.input(0));
  Value y = buildElementwise(
      b, loc, ValueRange{ctx.input(0), scale, zeroPoint}, u8,
      [&](OpBuilder &nb, Location nl, ValueRange a) {
        Value v = math::RoundEvenOp::create(nb, nl, arith::DivFOp::create(nb, nl, a[0], a[1]));
        v = arith::AddFOp::create(nb, nl, v, toFloat(nb, nl, a[2], f, true));
        return saturate(nb, nl, v, u8, true);
      },
      ArrayRef<OpFoldResult>(sizes));
  ctx.setOutput(0, y, true);
  ctx.setOutput(1, scale);
  ctx.setOutput(2, zeroPoint, true);
  return success();
}

/// `x` widened to i32 with `zeroPoint` subtracted (both may be absent or
/// broadcast: a per-row zero point of A is given `rowAxis`).
FailureOr<Value> shiftedI32(NodeContext &ctx, unsigned input, std::optional<unsigned> zeroPoint,
                            std::optional<int64_t> rowAxis) {
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  auto type = ctx.inputType(input);
  if (!isa<IntegerType>(type.getElementType()) || type.getElementTypeBitWidth() > 8)
    return (ctx.emitError() << "expects 8-bit integer operands, got " << type), failure();
  bool isUnsigned = ctx.info(input).isUnsigned;
  SmallVector<Value> inputs = {ctx.input(input)};
  bool zpUnsigned = isUnsigned;
  if (zeroPoint && ctx.hasInput(*zeroPoint)) {
    Value zp = ctx.input(*zeroPoint);
    zpUnsigned = ctx.info(*zeroPoint).isUnsigned;
    auto zpType = cast<RankedTensorType>(zp.getType());
    if (rowAxis && zpType.getRank() == 1 && zpType.getDimSize(0) != 1) {
      FailureOr<Value> shaped = alongAxis(ctx, zp, rowAxis, type.getRank(), "zero point");
      if (failed(shaped))
        return failure();
      zp = *shaped;
    }
    inputs.push_back(zp);
  }
  Type i32 = b.getI32Type();
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, ctx.input(input));
  return buildElementwise(
      b, loc, inputs, i32,
      [&](OpBuilder &nb, Location nl, ValueRange a) {
        auto widen = [&](Value v, bool u) -> Value {
          return u ? Value(arith::ExtUIOp::create(nb, nl, i32, v))
                   : Value(arith::ExtSIOp::create(nb, nl, i32, v));
        };
        Value x = widen(a[0], isUnsigned);
        if (a.size() > 1)
          x = arith::SubIOp::create(nb, nl, x, widen(a[1], zpUnsigned));
        return x;
      },
      ArrayRef<OpFoldResult>(sizes));
}

/// (A - a_zero_point) @ (B - b_zero_point) in i32, from the inputs at the
/// given positions (A's zero point may be per row).
FailureOr<Value> integerProduct(NodeContext &ctx, unsigned a, unsigned aZero, unsigned b,
                                unsigned bZero) {
  int64_t rankA = ctx.inputType(a).getRank();
  FailureOr<Value> lhs = shiftedI32(ctx, a, aZero, rankA >= 2 ? std::optional<int64_t>(rankA - 2)
                                                               : std::nullopt);
  FailureOr<Value> rhs = shiftedI32(ctx, b, bZero, std::nullopt);
  if (failed(lhs) || failed(rhs))
    return failure();
  return buildMatMul(ctx, *lhs, *rhs);
}

LogicalResult convertMatMulInteger(NodeContext &ctx) {
  FailureOr<Value> product = integerProduct(ctx, 0, 2, 1, 3);
  if (failed(product))
    return failure();
  ctx.setOutput(0, *product);
  return success();
}

/// QLinearMatMul: the i32 product of the shifted operands, scaled by
/// a_scale * b_scale / y_scale, rounded, shifted by y's zero point and
/// saturated to y's type.
/// The output of a QLinear op from its i32 product `acc`: acc * (x_scale *
/// w_scale / y_scale), rounded half to even, plus y's zero point, saturated
/// to y's type. x_scale, y_scale and y's zero point are the node's inputs
/// 1, 6 and 7, one value each; `wScale` broadcasts against acc (one value,
/// or one per output channel).
void setRequantized(NodeContext &ctx, Value acc, Value wScale) {
  Type f = ctx.inputType(1).getElementType();
  Type yElement = ctx.inputType(7).getElementType();
  bool yUnsigned = ctx.info(7).isUnsigned;
  auto scalar = [&](unsigned i) {
    auto t = ctx.inputType(i);
    SmallVector<Value> zeros(t.getRank(), arith::ConstantIndexOp::create(ctx.b, ctx.loc, 0));
    return tensor::ExtractOp::create(ctx.b, ctx.loc, ctx.input(i), zeros).getResult();
  };
  Value xScale = scalar(1), yScale = scalar(6), yZero = scalar(7);
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(ctx.b, ctx.loc, acc);
  Value result = buildElementwise(
      ctx.b, ctx.loc, ValueRange{acc, wScale}, yElement,
      [&](OpBuilder &b, Location loc, ValueRange args) {
        Value multiplier =
            arith::DivFOp::create(b, loc, arith::MulFOp::create(b, loc, xScale, args[1]), yScale);
        Value v = arith::MulFOp::create(b, loc, arith::SIToFPOp::create(b, loc, f, args[0]),
                                        multiplier);
        v = arith::AddFOp::create(b, loc, math::RoundEvenOp::create(b, loc, v),
                                  toFloat(b, loc, yZero, f, yUnsigned));
        return saturate(b, loc, v, yElement, yUnsigned);
      },
      ArrayRef<OpFoldResult>(sizes));
  ctx.setOutput(0, result, yUnsigned);
}

LogicalResult convertQLinearMatMul(NodeContext &ctx) {
  FailureOr<Value> product = integerProduct(ctx, 0, 2, 3, 5);
  if (failed(product))
    return failure();
  for (unsigned scale : {1u, 4u, 6u})
    if (ctx.inputType(scale).getNumElements() != 1)
      return ctx.emitError() << "per-row or per-column scales are not supported yet (input "
                             << scale << " is " << ctx.inputType(scale) << ")";
  setRequantized(ctx, *product, ctx.input(4));
  return success();
}

/// ConvInteger: (x - x_zero_point) conv (w - w_zero_point) in i32; the
/// filter's zero point may be per output channel. Shifted first, then padded
/// with 0 (the pads hold the zero point, as the reference's).
LogicalResult convertConvInteger(NodeContext &ctx) {
  FailureOr<Value> x = shiftedI32(ctx, 0, 2, std::nullopt);
  FailureOr<Value> w = shiftedI32(ctx, 1, 3, 0);
  if (failed(x) || failed(w))
    return failure();
  FailureOr<Value> y = buildConvolution(ctx, *x, *w, Value());
  if (failed(y))
    return failure();
  ctx.setOutput(0, *y);
  return success();
}

/// QLinearConv: the i32 convolution of the shifted operands (+ the i32
/// bias), scaled by x_scale * w_scale / y_scale (w_scale per output channel
/// or one), rounded half to even, shifted by y's zero point, saturated.
LogicalResult convertQLinearConv(NodeContext &ctx) {
  FailureOr<Value> x = shiftedI32(ctx, 0, 2, std::nullopt);
  FailureOr<Value> w = shiftedI32(ctx, 3, 5, 0);
  if (failed(x) || failed(w))
    return failure();
  Value bias;
  if (ctx.hasInput(8)) {
    if (!ctx.inputType(8).getElementType().isInteger(32))
      return ctx.emitError() << "B must be int32, got " << ctx.inputType(8);
    bias = ctx.input(8);
  }
  FailureOr<Value> acc = buildConvolution(ctx, *x, *w, bias);
  if (failed(acc))
    return failure();
  int64_t rank = cast<RankedTensorType>(acc->getType()).getRank();
  for (unsigned scale : {1u, 6u})
    if (ctx.inputType(scale).getNumElements() != 1)
      return ctx.emitError() << "x_scale and y_scale must be one value, got "
                             << ctx.inputType(scale);
  FailureOr<Value> wScale = alongAxis(ctx, ctx.input(4), 1, rank, "w_scale");
  if (failed(wScale))
    return failure();
  setRequantized(ctx, *acc, *wScale);
  return success();
}

/// The bytes of a constant input (dense, splat or a resource blob), or none.
std::optional<std::vector<char>> constantBytes(NodeContext &ctx, unsigned i) {
  auto constant = ctx.input(i).getDefiningOp<arith::ConstantOp>();
  if (!constant)
    return std::nullopt;
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(constant.getValue())) {
    AsmResourceBlob *blob = resource.getRawHandle().getBlob();
    if (!blob)
      return std::nullopt;
    return std::vector<char>(blob->getData().begin(), blob->getData().end());
  }
  auto dense = dyn_cast<DenseElementsAttr>(constant.getValue());
  if (!dense || dense.getElementType().isInteger(1))
    return std::nullopt;
  ArrayRef<char> raw = dense.getRawData();
  std::vector<char> bytes;
  for (int64_t e = 0, n = dense.isSplat() ? dense.getNumElements() : 1; e < n; ++e)
    bytes.insert(bytes.end(), raw.begin(), raw.end());
  return bytes;
}

/// ONNX Runtime's MatMulNBits (com.microsoft): Y = A @ W^T (+ bias) for a
/// weight W[N][K] stored as 4-bit values in blocks of `block_size` along K,
/// each block with a scale and a zero point (8 when none are given):
/// W[n][k] = (q - zp) * scale. Imported as what it means, the blocked
/// DequantizeLinear of its values feeding a MatMul: the values unpacked to
/// an i8 constant [K / block, block, N], the scales and zero points
/// [K / block, 1, N], the dequantization one elementwise op, reshaped to
/// [K, N]. --hasten-matmul-to-runtime-calls recognizes that form and packs
/// the values and scales for the int4 kernels as given.
LogicalResult convertMatMulNBits(NodeContext &ctx) {
  int64_t k = ctx.getInt("K", 0), n = ctx.getInt("N", 0), bits = ctx.getInt("bits", 4),
          block = ctx.getInt("block_size", 0);
  if (bits != 4)
    return ctx.emitError() << "only bits=4 is supported, got bits=" << bits;
  if (k <= 0 || n <= 0)
    return ctx.emitError() << "needs positive K and N attributes, got K=" << k << " N=" << n;
  if (block < 16 || (block & (block - 1)))
    return ctx.emitError() << "block_size must be a power of 2 and at least 16, got " << block;
  if (ctx.hasInput(4))
    return ctx.fail("g_idx (act-order GPTQ) is not supported");
  auto aType = ctx.inputType(0);
  Type f = aType.getElementType();
  if (!f.isF32())
    return ctx.emitError() << "supports f32 activations, got " << aType;
  if (aType.getDimSize(aType.getRank() - 1) != k)
    return ctx.emitError() << "A's last dimension must be K=" << k << ", got " << aType;
  int64_t blocks = (k + block - 1) / block, blobBytes = block / 2;
  auto bType = ctx.inputType(1);
  std::optional<std::vector<char>> packed = constantBytes(ctx, 1);
  if (!bType.getElementType().isInteger(8) || !packed ||
      int64_t(packed->size()) != n * blocks * blobBytes)
    return ctx.emitError() << "B must be a constant uint8 tensor of " << n << " x " << blocks
                           << " x " << blobBytes << " bytes, got " << bType;
  std::optional<std::vector<char>> scaleBytes = constantBytes(ctx, 2);
  if (!ctx.inputType(2).getElementType().isF32() || !scaleBytes ||
      int64_t(scaleBytes->size()) != n * blocks * 4)
    return ctx.emitError() << "scales must be a constant f32 tensor of " << n * blocks
                           << " values, got " << ctx.inputType(2);
  std::optional<std::vector<char>> zeroBytes;
  int64_t zeroStride = (blocks + 1) / 2; // bytes of one column's packed zero points
  if (ctx.hasInput(3)) {
    zeroBytes = constantBytes(ctx, 3);
    if (!ctx.inputType(3).getElementType().isInteger(8) || !zeroBytes ||
        int64_t(zeroBytes->size()) != n * zeroStride)
      return ctx.emitError() << "zero_points must be a constant uint8 tensor of " << n * zeroStride
                             << " bytes (4-bit, packed), got " << ctx.inputType(3);
  }

  // Values [blocks][block][N] (rows past K hold 8, zero after the shift),
  // scales and zero points [blocks][1][N].
  std::vector<char> values(size_t(blocks * block * n)), zeros(size_t(blocks * n));
  std::vector<float> scales(size_t(blocks * n));
  for (int64_t c = 0; c < n; ++c)
    for (int64_t g = 0; g < blocks; ++g) {
      const char *blob = packed->data() + (c * blocks + g) * blobBytes;
      for (int64_t r = 0; r < block; ++r) {
        uint8_t byte = uint8_t(blob[r / 2]);
        values[size_t((g * block + r) * n + c)] = char(r % 2 ? byte >> 4 : byte & 15);
      }
      std::memcpy(&scales[size_t(g * n + c)], scaleBytes->data() + (c * blocks + g) * 4, 4);
      uint8_t zero = 8;
      if (zeroBytes) {
        uint8_t byte = uint8_t((*zeroBytes)[c * zeroStride + g / 2]);
        zero = g % 2 ? byte >> 4 : byte & 15;
      }
      zeros[size_t(g * n + c)] = char(zero);
    }
  MLIRContext *context = ctx.b.getContext();
  Type i8 = IntegerType::get(context, 8);
  std::string base = ctx.node.input(1);
  auto constant = [&](ArrayRef<int64_t> shape, Type element, ArrayRef<char> bytes,
                      StringRef suffix) -> Value {
    auto type = RankedTensorType::get(shape, element);
    return arith::ConstantOp::create(
        ctx.b, ctx.loc, makeElementsAttr(type, bytes, ctx.inlineConstantLimit(), base + suffix.str()));
  };
  Value q = constant({blocks, block, n}, i8, values, "_q4");
  Value scale = constant({blocks, 1, n}, f,
                         ArrayRef<char>(reinterpret_cast<const char *>(scales.data()),
                                        scales.size() * 4),
                         "_scales");
  Value zero = constant({blocks, 1, n}, i8, zeros, "_zero_points");
  Value w = buildElementwise(ctx.b, ctx.loc, ValueRange{q, scale, zero}, f,
                             [&](OpBuilder &b, Location loc, ValueRange a) {
                               Value x = arith::SubFOp::create(b, loc, toFloat(b, loc, a[0], f, false),
                                                               toFloat(b, loc, a[2], f, false));
                               return arith::MulFOp::create(b, loc, x, a[1]).getResult();
                             });
  SmallVector<ReassociationIndices> rows = {{0, 1}, {2}};
  w = tensor::CollapseShapeOp::create(ctx.b, ctx.loc, w, rows);
  if (blocks * block != k)
    w = tensor::ExtractSliceOp::create(
        ctx.b, ctx.loc, w, ArrayRef<OpFoldResult>{ctx.b.getIndexAttr(0), ctx.b.getIndexAttr(0)},
        ArrayRef<OpFoldResult>{ctx.b.getIndexAttr(k), ctx.b.getIndexAttr(n)},
        ArrayRef<OpFoldResult>{ctx.b.getIndexAttr(1), ctx.b.getIndexAttr(1)});
  FailureOr<Value> product = buildMatMul(ctx, ctx.input(0), w);
  if (failed(product))
    return failure();
  Value y = *product;
  if (ctx.hasInput(5)) {
    if (ctx.inputType(5) != RankedTensorType::get({n}, f))
      return ctx.emitError() << "bias must be f32 of N=" << n << " values, got "
                             << ctx.inputType(5);
    y = buildElementwise(ctx.b, ctx.loc, ValueRange{y, ctx.input(5)}, f,
                         [](OpBuilder &b, Location loc, ValueRange a) {
                           return arith::AddFOp::create(b, loc, a[0], a[1]).getResult();
                         });
  }
  ctx.setOutput(0, y);
  return success();
}

} // namespace

void onnx_import::registerQuantizedConverters(ConverterTable &table) {
  table["com.microsoft::MatMulNBits"] = convertMatMulNBits;
  table["QuantizeLinear"] = convertQuantizeLinear;
  table["DequantizeLinear"] = convertDequantizeLinear;
  table["DynamicQuantizeLinear"] = convertDynamicQuantizeLinear;
  table["MatMulInteger"] = convertMatMulInteger;
  table["QLinearMatMul"] = convertQLinearMatMul;
  table["ConvInteger"] = convertConvInteger;
  table["QLinearConv"] = convertQLinearConv;
}
