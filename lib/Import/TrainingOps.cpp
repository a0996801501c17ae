//===- TrainingOps.cpp - ONNX's optimizer ops (ai.onnx.preview.training) --===//
//
// Adagrad, Momentum and Adam: one update of n tensors from their gradients
// and accumulators, each tensor's update one elementwise generic with the
// learning rate R and the update count T read as scalars. The formulas are
// the operator specifications' (step for step: the regularized gradient, the
// decayed rate, the bias-corrected rate of Adam).
//
//===----------------------------------------------------------------------===//

#include "ImporterInternal.h"

#include "mlir/Dialect/Math/IR/Math.h"

using namespace mlir;
using namespace hasten;
using namespace hasten::onnx_import;

namespace {

/// The inputs of an optimizer node: R, T, then `groups` groups of n tensors
/// (X, G, and the accumulators); n, or failure naming the node.
FailureOr<int64_t> tensorsPerGroup(NodeContext &ctx, int64_t groups) {
  int64_t rest = ctx.node.input_size() - 2;
  if (rest <= 0 || rest % groups != 0 || ctx.node.output_size() > rest / groups * (groups - 1)) {
    ctx.emitError() << "expects R, T and " << groups << " groups of equally many tensors, got "
                    << ctx.node.input_size() << " inputs and " << ctx.node.output_size()
                    << " outputs";
    return failure();
  }
  int64_t n = rest / groups;
  for (int64_t i = 0; i < n; ++i) {
    auto x = ctx.inputType(2 + i);
    if (!isa<FloatType>(x.getElementType()))
      return ctx.emitError() << "X" << i + 1 << " must be floating-point, got " << x;
    for (int64_t g = 1; g < groups; ++g)
      if (ctx.inputType(2 + g * n + i) != x)
        return ctx.emitError() << "input " << 2 + g * n + i << " must match X" << i + 1 << " ("
                               << x << "), got " << ctx.inputType(2 + g * n + i);
  }
  return n;
}

/// R and T as `element` and as read (R's type, i64), and whether T is
/// positive.
struct Step {
  Value rate, count, started, givenRate, givenCount;
};

FailureOr<Step> readStep(NodeContext &ctx, Type element) {
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  auto scalar = [&](unsigned i, StringRef what) -> FailureOr<Value> {
    auto type = ctx.inputType(i);
    if (!type.hasStaticShape() || type.getNumElements() != 1)
      return ctx.emitError() << what << " must hold one value, got " << type;
    SmallVector<Value> zeros(type.getRank(), arith::ConstantIndexOp::create(b, loc, 0));
    return Value(tensor::ExtractOp::create(b, loc, ctx.input(i), zeros));
  };
  FailureOr<Value> rate = scalar(0, "R"), count = scalar(1, "T");
  if (failed(rate) || failed(count))
    return failure();
  if (!count->getType().isInteger(64))
    return ctx.emitError() << "T must be int64, got " << count->getType();
  Value started = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt, *count,
                                        arith::ConstantIntOp::create(b, loc, b.getI64Type(), 0));
  return Step{castScalar(b, loc, *rate, element, false, false),
              castScalar(b, loc, *count, element, false, false), started, *rate, *count};
}

/// norm_coefficient * X + G
Value regularized(OpBuilder &b, Location loc, Value x, Value g, double norm) {
  Type t = x.getType();
  return arith::AddFOp::create(b, loc, arith::MulFOp::create(b, loc, scalarConstant(b, loc, t, norm), x), g);
}

/// Runs `update` over group tensors i (X, G, accumulators) for every i;
/// `update` returns X's new value then each accumulator's, which become the
/// node's outputs: X1..Xn, then each accumulator's n new values.
LogicalResult updateAll(NodeContext &ctx, int64_t groups,
                        function_ref<SmallVector<Value>(OpBuilder &, Location, ValueRange,
                                                        const Step &)>
                            update) {
  FailureOr<int64_t> n = tensorsPerGroup(ctx, groups);
  if (failed(n))
    return failure();
  Type element = ctx.inputType(2).getElementType();
  FailureOr<Step> step = readStep(ctx, element);
  if (failed(step))
    return failure();
  int64_t outputs = groups - 1;
  for (int64_t i = 0; i < *n; ++i) {
    SmallVector<Value> ins;
    for (int64_t g = 0; g < groups; ++g)
      ins.push_back(ctx.input(2 + g * *n + i));
    for (int64_t o = 0; o < outputs; ++o) {
      if (!ctx.wantsOutput(o * *n + i))
        continue;
      Value result = buildElementwise(ctx.b, ctx.loc, ins, element,
                                      [&](OpBuilder &nb, Location nl, ValueRange a) {
                                        return update(nb, nl, a, *step)[o];
                                      });
      ctx.setOutput(o * *n + i, result);
    }
  }
  return success();
}

/// Adagrad: r = R / (1 + T decay), H' = H + G_r^2, X' = X - r G_r / (sqrt(H') + eps).
LogicalResult convertAdagrad(NodeContext &ctx) {
  double decay = ctx.getFloat("decay_factor", 0), epsilon = ctx.getFloat("epsilon", 1e-6f);
  double norm = ctx.getFloat("norm_coefficient", 0);
  return updateAll(ctx, 3, [&](OpBuilder &b, Location loc, ValueRange a, const Step &step) {
    Type t = a[0].getType();
    auto c = [&](double v) { return scalarConstant(b, loc, t, v); };
    Value rate = arith::DivFOp::create(
        b, loc, step.rate,
        arith::AddFOp::create(b, loc, c(1), arith::MulFOp::create(b, loc, step.count, c(decay))));
    Value g = regularized(b, loc, a[0], a[1], norm);
    Value h = arith::AddFOp::create(b, loc, a[2], arith::MulFOp::create(b, loc, g, g));
    Value adaptive = arith::AddFOp::create(b, loc, math::SqrtOp::create(b, loc, h), c(epsilon));
    Value x = arith::SubFOp::create(
        b, loc, a[0],
        arith::DivFOp::create(b, loc, arith::MulFOp::create(b, loc, rate, g), adaptive));
    return SmallVector<Value>{x, h};
  });
}

/// Momentum: V' = alpha V + beta' G_r (beta' = 1 on the first update), X' = X
/// - R V' (standard) or X - R (G_r + alpha V') (nesterov).
LogicalResult convertMomentum(NodeContext &ctx) {
  double alpha = ctx.getFloat("alpha", 0), beta = ctx.getFloat("beta", 0);
  double norm = ctx.getFloat("norm_coefficient", 0);
  std::string mode = ctx.getString("mode", "standard");
  if (mode != "standard" && mode != "nesterov")
    return ctx.fail("mode must be 'standard' or 'nesterov', got '" + mode + "'");
  return updateAll(ctx, 3, [&](OpBuilder &b, Location loc, ValueRange a, const Step &step) {
    Type t = a[0].getType();
    auto c = [&](double v) { return scalarConstant(b, loc, t, v); };
    Value g = regularized(b, loc, a[0], a[1], norm);
    Value betaNow = arith::SelectOp::create(b, loc, step.started, c(beta), c(1));
    Value v = arith::AddFOp::create(b, loc, arith::MulFOp::create(b, loc, c(alpha), a[2]),
                                    arith::MulFOp::create(b, loc, betaNow, g));
    Value direction = mode == "standard"
                          ? v
                          : Value(arith::AddFOp::create(
                                b, loc, g, arith::MulFOp::create(b, loc, c(alpha), v)));
    Value x = arith::SubFOp::create(b, loc, a[0],
                                    arith::MulFOp::create(b, loc, step.rate, direction));
    return SmallVector<Value>{x, v};
  });
}

/// Adam: V' = alpha V + (1 - alpha) G_r, H' = beta H + (1 - beta) G_r^2,
/// R' = R sqrt(1 - beta^T) / (1 - alpha^T) after the first update, X' =
/// (1 - norm_post) (X - R' V' / (sqrt(H') + eps)).
LogicalResult convertAdam(NodeContext &ctx) {
  double alpha = ctx.getFloat("alpha", 0.9f), beta = ctx.getFloat("beta", 0.999f);
  double epsilon = ctx.getFloat("epsilon", 1e-6f), norm = ctx.getFloat("norm_coefficient", 0);
  double normPost = ctx.getFloat("norm_coefficient_post", 0);
  return updateAll(ctx, 4, [&](OpBuilder &b, Location loc, ValueRange a, const Step &step) {
    Type t = a[0].getType();
    auto c = [&](double v) { return scalarConstant(b, loc, t, v); };
    auto mul = [&](Value p, Value q) { return arith::MulFOp::create(b, loc, p, q).getResult(); };
    auto add = [&](Value p, Value q) { return arith::AddFOp::create(b, loc, p, q).getResult(); };
    auto sub = [&](Value p, Value q) { return arith::SubFOp::create(b, loc, p, q).getResult(); };
    Value g = regularized(b, loc, a[0], a[1], norm);
    Value v = add(mul(c(alpha), a[2]), mul(c(1 - alpha), g));
    Value h = add(mul(c(beta), a[3]), mul(c(1 - beta), mul(g, g)));
    Value hSqrt = add(math::SqrtOp::create(b, loc, h), c(epsilon));
    // The bias correction in double, as the reference computes it (1 -
    // beta^T is a difference of nearly equal numbers: f32 lost 0.3% of it).
    Type f64 = b.getF64Type();
    auto d = [&](double value) { return scalarConstant(b, loc, f64, value); };
    Value count = castScalar(b, loc, step.givenCount, f64, false, false);
    Value rate64 = castScalar(b, loc, step.givenRate, f64, false, false);
    auto sub64 = [&](Value p, Value q) { return arith::SubFOp::create(b, loc, p, q).getResult(); };
    Value corrected64 = arith::DivFOp::create(
        b, loc,
        arith::MulFOp::create(
            b, loc, rate64,
            math::SqrtOp::create(b, loc, sub64(d(1), math::PowFOp::create(b, loc, d(beta), count)))),
        sub64(d(1), math::PowFOp::create(b, loc, d(alpha), count)));
    Value corrected = castScalar(b, loc, corrected64, t, false, false);
    Value rate = arith::SelectOp::create(b, loc, step.started, corrected, step.rate);
    Value x = sub(a[0], mul(rate, arith::DivFOp::create(b, loc, v, hSqrt)));
    return SmallVector<Value>{mul(c(1 - normPost), x), v, h};
  });
}

} // namespace

void hasten::onnx_import::registerTrainingConverters(ConverterTable &table) {
  table["ai.onnx.preview.training::Adagrad"] = convertAdagrad;
  table["ai.onnx.preview.training::Momentum"] = convertMomentum;
  table["ai.onnx.preview.training::Adam"] = convertAdam;
}
