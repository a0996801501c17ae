//===- SignalOps.cpp - ONNX's signal processing ops ------------------------===//
//
// DFT and STFT as a contraction with constant twiddle tables (cos and sin of
// 2 pi k n / L, computed in double at import), one linalg.generic each: the
// front ends of audio models (a vocoder's or Whisper's spectrogram) are a few
// hundred points, where a direct product is what an FFT library would not
// beat by much, and it stays one fusable loop nest. MelWeightMatrix, whose
// inputs are constants, is computed at import as ONNX's reference does.
//
//===----------------------------------------------------------------------===//

#include "ImporterInternal.h"

#include <cmath>

using namespace mlir;
using namespace hasten;
using namespace hasten::onnx_import;

namespace {

/// The twiddle tables [K, N] of a length-L transform: cos(theta) and, with
/// the sign that makes real = xr cos - xi s and imag = xi cos + xr s, s =
/// -sin(theta) forward, +sin(theta) inverse; theta = 2 pi k n / L; times
/// 1 / L for the inverse.
std::pair<Value, Value> twiddles(NodeContext &ctx, Type element, int64_t k, int64_t n, int64_t l,
                                 bool inverse) {
  std::vector<float> cosines(size_t(k * n)), sines(size_t(k * n));
  double scale = inverse ? 1.0 / double(l) : 1.0;
  for (int64_t row = 0; row < k; ++row)
    for (int64_t column = 0; column < n; ++column) {
      // k n mod L keeps the angle small, so that it is exact for large k n.
      double theta = 2.0 * M_PI * double((row * column) % l) / double(l);
      cosines[size_t(row * n + column)] = float(std::cos(theta) * scale);
      sines[size_t(row * n + column)] = float((inverse ? 1.0 : -1.0) * std::sin(theta) * scale);
    }
  auto type = RankedTensorType::get({k, n}, ctx.b.getF32Type());
  auto make = [&](const std::vector<float> &values) -> Value {
    Value table = arith::ConstantOp::create(
        ctx.b, ctx.loc,
        DenseElementsAttr::get(type, ArrayRef<float>(values.data(), values.size())));
    if (element.isF32())
      return table;
    return buildElementwise(ctx.b, ctx.loc, ValueRange{table}, element,
                            [&](OpBuilder &b, Location loc, ValueRange a) {
                              return castScalar(b, loc, a[0], element, false, false);
                            });
  };
  return {make(cosines), make(sines)};
}

/// out[..., c] = sum_n x(n)[...] (c = 0: xr cos - xi s; c = 1: xi cos + xr
/// s) [* window[n]], over an iteration space of `loops` dims: the output's
/// (`cDim`, the component, last) and the reduction `nDim` (last of all).
/// `xExprs` index x without its component dim; `kDim` indexes the tables.
Value fourier(NodeContext &ctx, Value x, ArrayRef<AffineExpr> xExprs, int64_t loops,
              int64_t kDim, Value cosines, Value sines, Value window,
              ArrayRef<OpFoldResult> outSizes) {
  OpBuilder &b = ctx.b;
  MLIRContext *context = b.getContext();
  auto xType = cast<RankedTensorType>(x.getType());
  Type element = xType.getElementType();
  bool complex = xType.getDimSize(xType.getRank() - 1) == 2;
  int64_t nDim = loops - 1;
  auto component = [&](int64_t c) {
    SmallVector<AffineExpr> exprs(xExprs.begin(), xExprs.end());
    exprs.push_back(getAffineConstantExpr(c, context));
    return AffineMap::get(loops, 0, exprs, context);
  };
  SmallVector<Value> inputs = {x};
  SmallVector<AffineMap> maps = {component(0)};
  if (complex) {
    inputs.push_back(x);
    maps.push_back(component(1));
  }
  AffineMap table = AffineMap::get(
      loops, 0, {getAffineDimExpr(kDim, context), getAffineDimExpr(nDim, context)}, context);
  inputs.append({cosines, sines});
  maps.append({table, table});
  if (window) {
    inputs.push_back(window);
    maps.push_back(AffineMap::get(loops, 0, {getAffineDimExpr(nDim, context)}, context));
  }
  SmallVector<AffineExpr> outExprs;
  for (int64_t d = 0; d + 1 < loops; ++d)
    outExprs.push_back(getAffineDimExpr(d, context));
  maps.push_back(AffineMap::get(loops, 0, outExprs, context));
  SmallVector<utils::IteratorType> iterators(loops - 1, utils::IteratorType::parallel);
  iterators.push_back(utils::IteratorType::reduction);
  Value init = createFilled(b, ctx.loc, outSizes, scalarConstant(b, ctx.loc, element, 0));
  return linalg::GenericOp::create(
             b, ctx.loc, TypeRange{init.getType()}, inputs, ValueRange{init}, maps, iterators,
             [&](OpBuilder &nb, Location nl, ValueRange a) {
               unsigned next = 0;
               Value xr = a[next++];
               Value xi = complex ? a[next++] : Value();
               Value cosine = a[next++], sine = a[next++];
               Value w = window ? a[next++] : Value();
               Value acc = a[next];
               auto mul = [&](Value p, Value q) { return arith::MulFOp::create(nb, nl, p, q).getResult(); };
               if (w)
                 xr = mul(xr, w), xi = xi ? mul(xi, w) : xi;
               Value real = mul(xr, cosine), imag = mul(xr, sine);
               if (xi) {
                 real = arith::SubFOp::create(nb, nl, real, mul(xi, sine));
                 imag = arith::AddFOp::create(nb, nl, mul(xi, cosine), imag);
               }
               Value c = linalg::IndexOp::create(nb, nl, loops - 2);
               Value first = arith::CmpIOp::create(
                   nb, nl, arith::CmpIPredicate::eq, c,
                   arith::ConstantIndexOp::create(nb, nl, 0));
               Value term = arith::SelectOp::create(nb, nl, first, real, imag);
               linalg::YieldOp::create(nb, nl, arith::AddFOp::create(nb, nl, acc, term).getResult());
             })
      .getResult(0);
}

/// A constant scalar input as an integer, or none.
std::optional<int64_t> scalarInt(NodeContext &ctx, unsigned i) {
  std::optional<SmallVector<int64_t>> values = ctx.hasInput(i) ? ctx.constantInts(i) : std::nullopt;
  if (!values || values->size() != 1)
    return std::nullopt;
  return (*values)[0];
}

/// DFT (opset 17): along `axis` of x [batch, signal..., 1 or 2], length
/// dft_length (the signal cut or zero-padded to it), forward or inverse
/// (scaled by 1 / L), all bins or the onesided first L / 2 + 1.
LogicalResult convertDFT(NodeContext &ctx) {
  auto xType = ctx.inputType(0);
  int64_t rank = xType.getRank();
  if (rank < 3 || !xType.hasStaticShape() || xType.getDimSize(rank - 1) > 2 ||
      !isa<FloatType>(xType.getElementType()))
    return ctx.emitError() << "expects a static float [batch, signal..., 1 or 2], got " << xType;
  int64_t axis = ctx.getInt("axis", 1);
  if (axis < 0)
    axis += rank;
  if (axis < 1 || axis >= rank - 1)
    return ctx.emitError() << "axis " << ctx.getInt("axis", 1) << " is not a signal axis of "
                           << xType;
  bool inverse = ctx.getInt("inverse", 0) != 0, onesided = ctx.getInt("onesided", 0) != 0;
  if (onesided && (inverse || xType.getDimSize(rank - 1) == 2))
    return ctx.fail("onesided needs a real forward transform");
  int64_t n = xType.getDimSize(axis), l = n;
  if (ctx.hasInput(1)) {
    std::optional<int64_t> given = scalarInt(ctx, 1);
    if (!given || *given < 1)
      return ctx.fail("dft_length must be a positive constant");
    l = *given;
  }
  int64_t bins = onesided ? l / 2 + 1 : l, used = std::min(n, l);
  Value x = ctx.input(0);
  if (used < n) {
    SmallVector<OpFoldResult> offsets(rank, ctx.b.getIndexAttr(0)), sizes, strides(rank, ctx.b.getIndexAttr(1));
    for (int64_t d = 0; d < rank; ++d)
      sizes.push_back(ctx.b.getIndexAttr(d == axis ? used : xType.getDimSize(d)));
    x = tensor::ExtractSliceOp::create(ctx.b, ctx.loc, x, offsets, sizes, strides);
  }
  auto [cosines, sines] = twiddles(ctx, xType.getElementType(), bins, used, l, inverse);
  // Loops: the signal dims (bins at `axis`), the component, n.
  int64_t loops = rank + 1;
  SmallVector<AffineExpr> xExprs;
  SmallVector<OpFoldResult> outSizes;
  for (int64_t d = 0; d < rank - 1; ++d) {
    xExprs.push_back(ctx.b.getAffineDimExpr(d == axis ? rank : d));
    outSizes.push_back(ctx.b.getIndexAttr(d == axis ? bins : xType.getDimSize(d)));
  }
  outSizes.push_back(ctx.b.getIndexAttr(2));
  ctx.setOutput(0, fourier(ctx, x, xExprs, loops, axis, cosines, sines, Value(), outSizes));
  return success();
}

/// STFT (opset 17): frames of frame_length samples every frame_step of
/// signal [batch, length, 1 or 2], times the window, each transformed:
/// [batch, frames, bins, 2].
LogicalResult convertSTFT(NodeContext &ctx) {
  auto xType = ctx.inputType(0);
  if (xType.getRank() != 3 || !xType.hasStaticShape() || xType.getDimSize(2) > 2 ||
      !isa<FloatType>(xType.getElementType()))
    return ctx.emitError() << "expects a static float signal [batch, length, 1 or 2], got "
                           << xType;
  std::optional<int64_t> step = scalarInt(ctx, 1);
  if (!step || *step < 1)
    return ctx.fail("frame_step must be a positive constant");
  Value window = ctx.hasInput(2) ? ctx.input(2) : Value();
  int64_t length = 0;
  if (ctx.hasInput(3)) {
    std::optional<int64_t> given = scalarInt(ctx, 3);
    if (!given || *given < 1)
      return ctx.fail("frame_length must be a positive constant");
    length = *given;
  }
  if (window) {
    auto windowType = ctx.inputType(2);
    if (windowType.getRank() != 1 || windowType.isDynamicDim(0) ||
        windowType.getElementType() != xType.getElementType() ||
        (length && windowType.getDimSize(0) != length))
      return ctx.emitError() << "window must be a 1-D " << xType.getElementType()
                             << " tensor of frame_length values, got " << windowType;
    length = windowType.getDimSize(0);
  }
  if (!length)
    return ctx.fail("needs a window or a frame_length");
  bool onesided = ctx.getInt("onesided", 1) != 0;
  if (onesided && xType.getDimSize(2) == 2)
    return ctx.fail("onesided needs a real signal");
  int64_t samples = xType.getDimSize(1);
  if (samples < length)
    return ctx.emitError() << "the signal (" << samples << " samples) is shorter than a frame ("
                           << length << ")";
  int64_t frames = (samples - length) / *step + 1, bins = onesided ? length / 2 + 1 : length;
  auto [cosines, sines] = twiddles(ctx, xType.getElementType(), bins, length, length, false);
  // Loops: batch, frame, bin, component, n; x[b, f * step + n].
  OpBuilder &b = ctx.b;
  SmallVector<AffineExpr> xExprs = {b.getAffineDimExpr(0),
                                    b.getAffineDimExpr(1) * *step + b.getAffineDimExpr(4)};
  SmallVector<OpFoldResult> outSizes = {b.getIndexAttr(xType.getDimSize(0)), b.getIndexAttr(frames),
                                        b.getIndexAttr(bins), b.getIndexAttr(2)};
  ctx.setOutput(0, fourier(ctx, ctx.input(0), xExprs, 5, 2, cosines, sines, window, outSizes));
  return success();
}

/// MelWeightMatrix (opset 17): [dft_length / 2 + 1, num_mel_bins]
/// triangular filters between lower and upper edge, in the mel scale
/// 2595 log10(1 + f / 700), as ONNX's reference computes them (mel steps
/// of the range over num_mel_bins + 2, bins floored). All inputs constant.
LogicalResult convertMelWeightMatrix(NodeContext &ctx) {
  std::optional<int64_t> mels = scalarInt(ctx, 0), dft = scalarInt(ctx, 1), rate = scalarInt(ctx, 2);
  std::optional<SmallVector<double>> lower = ctx.constantFloats(3), upper = ctx.constantFloats(4);
  if (!mels || !dft || !rate || !lower || !upper || lower->size() != 1 || upper->size() != 1 ||
      *mels < 1 || *dft < 1 || *rate < 1)
    return ctx.fail("needs constant scalar inputs (num_mel_bins, dft_length, sample_rate > 0, "
                    "lower and upper edge in hertz)");
  int32_t dtype = int32_t(ctx.getInt("output_datatype", onnx::TensorProto::FLOAT));
  FailureOr<Type> element = getElementType(ctx.b.getContext(), dtype);
  if (failed(element) || !isa<FloatType>(*element))
    return ctx.fail("output_datatype must be a floating-point type");
  int64_t spectrogramBins = *dft / 2 + 1;
  auto toMel = [](double hz) { return 2595.0 * std::log10(1.0 + hz / 700.0); };
  double low = toMel((*lower)[0]), high = toMel((*upper)[0]);
  double step = (high - low) / double(*mels + 2);
  std::vector<int64_t> points(size_t(*mels + 2));
  for (int64_t i = 0; i < *mels + 2; ++i) {
    double hz = 700.0 * (std::pow(10.0, (double(i) * step + low) / 2595.0) - 1.0);
    points[size_t(i)] = int64_t(std::floor(double(*dft + 1) * hz / double(*rate)));
  }
  std::vector<double> weights(size_t(spectrogramBins * *mels), 0.0);
  auto at = [&](int64_t bin, int64_t mel) -> double * {
    if (bin < 0 || bin >= spectrogramBins)
      return nullptr;
    return &weights[size_t(bin * *mels + mel)];
  };
  for (int64_t m = 0; m < *mels; ++m) {
    int64_t left = points[size_t(m)], center = points[size_t(m + 1)], right = points[size_t(m + 2)];
    if (center == left) {
      if (double *w = at(center, m))
        *w = 1.0;
    } else {
      for (int64_t j = left; j <= center; ++j)
        if (double *w = at(j, m))
          *w = double(j - left) / double(center - left);
    }
    if (right > center)
      for (int64_t j = center; j < right; ++j)
        if (double *w = at(j, m))
          *w = double(right - j) / double(right - center);
  }
  auto type = RankedTensorType::get({spectrogramBins, *mels}, *element);
  SmallVector<APFloat> values;
  for (double w : weights) {
    APFloat v(w);
    bool lost;
    v.convert(cast<FloatType>(*element).getFloatSemantics(), APFloat::rmNearestTiesToEven, &lost);
    values.push_back(v);
  }
  ctx.setOutput(0, arith::ConstantOp::create(ctx.b, ctx.loc, DenseElementsAttr::get(type, values)));
  return success();
}

} // namespace

void onnx_import::registerSignalConverters(ConverterTable &table) {
  table["DFT"] = convertDFT;
  table["STFT"] = convertSTFT;
  table["MelWeightMatrix"] = convertMelWeightMatrix;
}
