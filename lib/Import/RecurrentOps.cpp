//===- RecurrentOps.cpp - ONNX's RNN, GRU and LSTM --------------------------===//
//
// Each direction is an scf.for over the time steps carrying the hidden
// state (and LSTM's cell state) and the outputs written so far; a step is
// two matmuls (the input's and the hidden state's contributions to every
// gate) and one elementwise generic per state update. Static shapes, every
// activation function ONNX defines (with activation_alpha/beta) and clip,
// both layouts, forward, reverse and bidirectional, sequence_lens
// (forward), initial states, LSTM peepholes and GRU's linear_before_reset
// are supported; an unknown activation is refused by name.
//
//===----------------------------------------------------------------------===//

#include "ImporterInternal.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <cmath>

using namespace mlir;
using namespace hasten;
using namespace hasten::onnx_import;

namespace {

enum class Cell { RNN, GRU, LSTM };

struct RecurrentShape {
  int64_t seq, batch, input, hidden, gates, dirs;
};

Value sliceOf(OpBuilder &b, Location loc, Value v, ArrayRef<int64_t> offsets,
              ArrayRef<int64_t> sizes, ArrayRef<int64_t> resultShape) {
  auto type = cast<RankedTensorType>(v.getType());
  SmallVector<int64_t> strides(offsets.size(), 1);
  auto resultType = RankedTensorType::get(resultShape, type.getElementType());
  return tensor::ExtractSliceOp::create(b, loc, resultType, v, ValueRange{}, ValueRange{},
                                        ValueRange{}, offsets, sizes, strides);
}

Value insertInto(OpBuilder &b, Location loc, Value part, Value into, ArrayRef<int64_t> offsets,
                 ArrayRef<int64_t> sizes) {
  SmallVector<int64_t> strides(offsets.size(), 1);
  return tensor::InsertSliceOp::create(b, loc, part, into, ValueRange{}, ValueRange{},
                                       ValueRange{}, offsets, sizes, strides);
}

Value transposed(OpBuilder &b, Location loc, Value v, ArrayRef<int64_t> perm) {
  auto type = cast<RankedTensorType>(v.getType());
  SmallVector<int64_t> shape;
  for (int64_t p : perm)
    shape.push_back(type.getDimSize(p));
  Value init = tensor::EmptyOp::create(b, loc, shape, type.getElementType());
  return linalg::TransposeOp::create(b, loc, v, init, perm).getResult()[0];
}

Value sigmoid(OpBuilder &b, Location loc, Value x) {
  Type t = x.getType();
  Value one = scalarConstant(b, loc, t, 1.0);
  return arith::DivFOp::create(
      b, loc, one,
      arith::AddFOp::create(b, loc, one,
                            math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, x))));
}

/// One of the activation functions ONNX's recurrent ops take by name, with
/// its alpha and beta where it has them.
struct Activation {
  std::string name;
  double alpha = 0, beta = 0;

  Value apply(OpBuilder &b, Location loc, Value x) const {
    Type t = x.getType();
    auto c = [&](double v) { return scalarConstant(b, loc, t, v); };
    auto mul = [&](Value p, Value q) { return arith::MulFOp::create(b, loc, p, q).getResult(); };
    auto add = [&](Value p, Value q) { return arith::AddFOp::create(b, loc, p, q).getResult(); };
    if (name == "Sigmoid")
      return sigmoid(b, loc, x);
    if (name == "Tanh")
      return math::TanhOp::create(b, loc, x);
    if (name == "Relu")
      return arith::MaximumFOp::create(b, loc, x, c(0));
    if (name == "Affine")
      return add(mul(c(alpha), x), c(beta));
    if (name == "ScaledTanh")
      return mul(c(alpha), math::TanhOp::create(b, loc, mul(c(beta), x)));
    if (name == "HardSigmoid")
      return arith::MaximumFOp::create(
          b, loc, c(0), arith::MinimumFOp::create(b, loc, c(1), add(mul(c(alpha), x), c(beta))));
    if (name == "Softsign")
      return arith::DivFOp::create(b, loc, x, add(c(1), math::AbsFOp::create(b, loc, x)));
    if (name == "Softplus")
      return math::LogOp::create(b, loc, add(c(1), math::ExpOp::create(b, loc, x)));
    Value positive = arith::CmpFOp::create(
        b, loc, name == "ThresholdedRelu" ? arith::CmpFPredicate::OGT : arith::CmpFPredicate::OGE,
        x, name == "ThresholdedRelu" ? c(alpha) : c(0));
    Value otherwise;
    if (name == "LeakyRelu")
      otherwise = mul(c(alpha), x);
    else if (name == "ThresholdedRelu")
      otherwise = c(0);
    else // Elu
      otherwise = mul(c(alpha), arith::SubFOp::create(b, loc, math::ExpOp::create(b, loc, x), c(1)));
    return arith::SelectOp::create(b, loc, positive, x, otherwise);
  }
};

/// The node's activation functions, `perDirection` for each direction (the
/// defaults when the attribute is absent; one direction's list serves both
/// when a bidirectional node gives only that). Alphas and betas are taken in
/// order by the functions that have them (ONNX Runtime's reading), each
/// function's default where the list runs out.
FailureOr<SmallVector<Activation>> parseActivations(NodeContext &ctx, ArrayRef<StringRef> defaults,
                                                    int64_t dirs) {
  SmallVector<std::string> names;
  if (const onnx::AttributeProto *given = ctx.attr("activations")) {
    for (const std::string &name : given->strings())
      names.push_back(name);
  } else {
    for (StringRef name : defaults)
      names.push_back(name.str());
  }
  int64_t count = defaults.size();
  if ((int64_t)names.size() == count && dirs == 2)
    names.append(SmallVector<std::string>(names));
  if ((int64_t)names.size() != count * dirs) {
    ctx.emitError() << "activations must name " << count * dirs << " functions (" << count
                    << " per direction), got " << names.size();
    return failure();
  }
  SmallVector<float> alphas = ctx.getFloats("activation_alpha").value_or(SmallVector<float>{});
  SmallVector<float> betas = ctx.getFloats("activation_beta").value_or(SmallVector<float>{});
  size_t nextAlpha = 0, nextBeta = 0;
  // Name -> (has alpha, default alpha, has beta, default beta); NaN: required.
  static const llvm::StringMap<std::tuple<bool, double, bool, double>> known = {
      {"Relu", {false, 0, false, 0}},       {"Tanh", {false, 0, false, 0}},
      {"Sigmoid", {false, 0, false, 0}},    {"Softsign", {false, 0, false, 0}},
      {"Softplus", {false, 0, false, 0}},   {"LeakyRelu", {true, 0.01, false, 0}},
      {"ThresholdedRelu", {true, 1.0, false, 0}}, {"Elu", {true, 1.0, false, 0}},
      {"HardSigmoid", {true, 0.2, true, 0.5}},    {"Affine", {true, NAN, true, NAN}},
      {"ScaledTanh", {true, NAN, true, NAN}}};
  SmallVector<Activation> result;
  for (const std::string &name : names) {
    // ONNX's names, in any case (exporters differ).
    auto it = llvm::find_if(known, [&](const auto &entry) {
      return StringRef(entry.getKey()).equals_insensitive(name);
    });
    if (it == known.end()) {
      ctx.emitError() << "unknown activation function '" << name
                      << "' (Relu, Tanh, Sigmoid, Affine, LeakyRelu, ThresholdedRelu, "
                         "ScaledTanh, HardSigmoid, Elu, Softsign and Softplus are defined)";
      return failure();
    }
    auto [hasAlpha, alpha, hasBeta, beta] = it->getValue();
    Activation activation{it->getKey().str()};
    if (hasAlpha)
      activation.alpha = nextAlpha < alphas.size() ? alphas[nextAlpha++] : alpha;
    if (hasBeta)
      activation.beta = nextBeta < betas.size() ? betas[nextBeta++] : beta;
    if (std::isnan(activation.alpha) || std::isnan(activation.beta)) {
      ctx.emitError() << "activation '" << name
                      << "' needs its alpha and beta (activation_alpha, activation_beta)";
      return failure();
    }
    result.push_back(activation);
  }
  return result;
}

LogicalResult convertRecurrent(NodeContext &ctx) {
  StringRef op = ctx.node.op_type();
  Cell cell = op == "RNN" ? Cell::RNN : op == "GRU" ? Cell::GRU : Cell::LSTM;
  int64_t gates = cell == Cell::RNN ? 1 : cell == Cell::GRU ? 3 : 4;
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  for (unsigned i = 0; i < 3; ++i)
    if (!ctx.inputType(i).hasStaticShape() || !isa<FloatType>(ctx.inputType(i).getElementType()))
      return ctx.emitError() << "input " << i << " must be a floating-point tensor of static "
                                "shape, got " << ctx.inputType(i);
  std::string direction = ctx.getString("direction", "forward");
  if (direction != "forward" && direction != "reverse" && direction != "bidirectional")
    return ctx.fail("direction must be forward, reverse or bidirectional, got '" + direction +
                    "'");
  // f (gates), g (candidate) and h (output) of each direction.
  SmallVector<StringRef> defaults = cell == Cell::RNN   ? SmallVector<StringRef>{"Tanh"}
                                    : cell == Cell::GRU ? SmallVector<StringRef>{"Sigmoid", "Tanh"}
                                                        : SmallVector<StringRef>{"Sigmoid", "Tanh",
                                                                                 "Tanh"};
  FailureOr<SmallVector<Activation>> activations =
      parseActivations(ctx, defaults, direction == "bidirectional" ? 2 : 1);
  if (failed(activations))
    return failure();
  if (cell == Cell::LSTM && ctx.getInt("input_forget", 0) != 0)
    return ctx.fail("input_forget is not supported");
  bool batchFirst = ctx.getInt("layout", 0) == 1;
  bool linearBeforeReset = ctx.getInt("linear_before_reset", 0) != 0;
  std::optional<double> clip;
  if (ctx.hasAttr("clip"))
    clip = ctx.getFloat("clip", 0);

  Value x = ctx.input(0);
  if (batchFirst)
    x = transposed(b, loc, x, {1, 0, 2});
  auto xType = cast<RankedTensorType>(x.getType());
  Type f = xType.getElementType();
  RecurrentShape s{xType.getDimSize(0), xType.getDimSize(1), xType.getDimSize(2),
                   ctx.getInt("hidden_size", 0), gates, direction == "bidirectional" ? 2 : 1};
  auto wType = ctx.inputType(1), rType = ctx.inputType(2);
  if (s.hidden <= 0 || wType.getShape() != ArrayRef<int64_t>{s.dirs, gates * s.hidden, s.input} ||
      rType.getShape() != ArrayRef<int64_t>{s.dirs, gates * s.hidden, s.hidden})
    return ctx.emitError() << "W must be [" << s.dirs << ", " << gates * s.hidden << ", "
                           << s.input << "] and R [" << s.dirs << ", " << gates * s.hidden
                           << ", " << s.hidden << "] for hidden_size " << s.hidden << ", got "
                           << wType << " and " << rType;
  int64_t gh = gates * s.hidden;
  auto zeros = [&](ArrayRef<int64_t> shape) {
    return createFilled(b, loc, llvm::map_to_vector(shape, [&](int64_t d) -> OpFoldResult {
                          return b.getIndexAttr(d);
                        }),
                        scalarConstant(b, loc, f, 0));
  };
  Value bias = ctx.hasInput(3) ? ctx.input(3) : zeros({s.dirs, 2 * gh});
  std::optional<Value> lens;
  if (ctx.hasInput(4)) {
    if (direction != "forward")
      return ctx.fail("sequence_lens is supported for the forward direction only");
    lens = ctx.input(4);
  }
  auto stateInput = [&](unsigned i) -> Value {
    if (!ctx.hasInput(i))
      return zeros({s.dirs, s.batch, s.hidden});
    Value v = ctx.input(i);
    return batchFirst ? transposed(b, loc, v, {1, 0, 2}) : v;
  };
  Value initialH = stateInput(5);
  Value initialC = cell == Cell::LSTM ? stateInput(6) : Value();
  Value peep = cell == Cell::LSTM && ctx.hasInput(7) ? ctx.input(7) : Value();

  Value yAll = zeros({s.seq, s.dirs, s.batch, s.hidden});
  Value hAll = zeros({s.dirs, s.batch, s.hidden});
  Value cAll = zeros({s.dirs, s.batch, s.hidden});
  for (int64_t d = 0; d < s.dirs; ++d) {
    bool reverse = direction == "reverse" || d == 1;
    ArrayRef<Activation> act =
        ArrayRef<Activation>(*activations).slice(d * defaults.size(), defaults.size());
    const Activation &fAct = act[0];
    const Activation &gAct = act.size() > 1 ? act[1] : act[0];
    const Activation &hAct = act.size() > 2 ? act[2] : act[0];
    Value wT = transposed(b, loc, sliceOf(b, loc, ctx.input(1), {d, 0, 0}, {1, gh, s.input},
                                          {gh, s.input}),
                          {1, 0});
    Value rT = transposed(b, loc, sliceOf(b, loc, ctx.input(2), {d, 0, 0}, {1, gh, s.hidden},
                                          {gh, s.hidden}),
                          {1, 0});
    Value wb = sliceOf(b, loc, bias, {d, 0}, {1, gh}, {gh});
    Value rb = sliceOf(b, loc, bias, {d, gh}, {1, gh}, {gh});
    auto gateOf = [&](OpBuilder &nb, Location nl, Value v, int64_t g) {
      auto t = cast<RankedTensorType>(v.getType());
      if (t.getRank() == 1)
        return sliceOf(nb, nl, v, {g * s.hidden}, {s.hidden}, {s.hidden});
      return sliceOf(nb, nl, v, {0, g * s.hidden}, {s.batch, s.hidden}, {s.batch, s.hidden});
    };
    Value h0 = sliceOf(b, loc, initialH, {d, 0, 0}, {1, s.batch, s.hidden}, {s.batch, s.hidden});
    Value c0 = cell == Cell::LSTM ? sliceOf(b, loc, initialC, {d, 0, 0}, {1, s.batch, s.hidden},
                                            {s.batch, s.hidden})
                                  : h0;
    Value y0 = zeros({s.seq, s.batch, s.hidden});
    Value lower = arith::ConstantIndexOp::create(b, loc, 0);
    Value upper = arith::ConstantIndexOp::create(b, loc, s.seq);
    Value step = arith::ConstantIndexOp::create(b, loc, 1);
    auto loop = scf::ForOp::create(
        b, loc, lower, upper, step, ValueRange{h0, c0, y0},
        [&](OpBuilder &lb, Location ll, Value t, ValueRange carried) {
          Value h = carried[0], c = carried[1], y = carried[2];
          Value at = reverse ? Value(arith::SubIOp::create(
                                   lb, ll, arith::ConstantIndexOp::create(lb, ll, s.seq - 1), t))
                             : t;
          auto xType2 = RankedTensorType::get({s.batch, s.input}, f);
          SmallVector<int64_t> dyn = {ShapedType::kDynamic, 0, 0};
          Value xt = tensor::ExtractSliceOp::create(
              lb, ll, xType2, x, ValueRange{at}, ValueRange{}, ValueRange{}, dyn,
              ArrayRef<int64_t>{1, s.batch, s.input}, ArrayRef<int64_t>{1, 1, 1});
          // The importer's matmul builder works on the node's builder.
          OpBuilder::InsertionGuard guard(ctx.b);
          ctx.b.setInsertionPoint(lb.getInsertionBlock(), lb.getInsertionPoint());
          Value xw = *buildMatMul(ctx, xt, wT);
          Value hr = *buildMatMul(ctx, h, rT);
          OpBuilder &eb = ctx.b;
          auto clipped = [&](OpBuilder &nb, Location nl, Value v) -> Value {
            if (!clip)
              return v;
            v = arith::MaximumFOp::create(nb, nl, v, scalarConstant(nb, nl, f, -*clip));
            return arith::MinimumFOp::create(nb, nl, v, scalarConstant(nb, nl, f, *clip));
          };
          Value newH, newC = c;
          if (cell == Cell::RNN) {
            newH = buildElementwise(eb, ll, ValueRange{xw, hr, wb, rb}, f,
                                    [&](OpBuilder &nb, Location nl, ValueRange a) {
                                      Value v = arith::AddFOp::create(
                                          nb, nl, arith::AddFOp::create(nb, nl, a[0], a[1]),
                                          arith::AddFOp::create(nb, nl, a[2], a[3]));
                                      return fAct.apply(nb, nl, clipped(nb, nl, v));
                                    });
          } else if (cell == Cell::LSTM) {
            // Gates in ONNX's order: input, output, forget, cell.
            SmallVector<Value> in = {h, c};
            for (int64_t g = 0; g < 4; ++g) {
              in.push_back(gateOf(eb, ll, xw, g));
              in.push_back(gateOf(eb, ll, hr, g));
              in.push_back(gateOf(eb, ll, wb, g));
              in.push_back(gateOf(eb, ll, rb, g));
            }
            Value pi, po, pf;
            if (peep) {
              pi = sliceOf(eb, ll, peep, {d, 0}, {1, s.hidden}, {s.hidden});
              po = sliceOf(eb, ll, peep, {d, s.hidden}, {1, s.hidden}, {s.hidden});
              pf = sliceOf(eb, ll, peep, {d, 2 * s.hidden}, {1, s.hidden}, {s.hidden});
            } else {
              pi = po = pf = zeros({s.hidden});
            }
            in.append({pi, po, pf});
            auto pre = [&](OpBuilder &nb, Location nl, ValueRange a, int64_t g) -> Value {
              Value v = arith::AddFOp::create(nb, nl, a[2 + 4 * g], a[3 + 4 * g]);
              return arith::AddFOp::create(
                  nb, nl, v, arith::AddFOp::create(nb, nl, a[4 + 4 * g], a[5 + 4 * g]));
            };
            newC = buildElementwise(eb, ll, in, f, [&](OpBuilder &nb, Location nl, ValueRange a) {
              Value cPrev = a[1];
              Value i = fAct.apply(nb, nl, clipped(nb, nl, arith::AddFOp::create(
                  nb, nl, pre(nb, nl, a, 0), arith::MulFOp::create(nb, nl, a[18], cPrev))));
              Value fg = fAct.apply(nb, nl, clipped(nb, nl, arith::AddFOp::create(
                  nb, nl, pre(nb, nl, a, 2), arith::MulFOp::create(nb, nl, a[20], cPrev))));
              Value cand = gAct.apply(nb, nl, clipped(nb, nl, pre(nb, nl, a, 3)));
              return arith::AddFOp::create(nb, nl, arith::MulFOp::create(nb, nl, fg, cPrev),
                                           arith::MulFOp::create(nb, nl, i, cand))
                  .getResult();
            });
            in.push_back(newC);
            newH = buildElementwise(eb, ll, in, f, [&](OpBuilder &nb, Location nl, ValueRange a) {
              Value cNew = a[21];
              Value o = fAct.apply(nb, nl, clipped(nb, nl, arith::AddFOp::create(
                  nb, nl, pre(nb, nl, a, 1), arith::MulFOp::create(nb, nl, a[19], cNew))));
              return arith::MulFOp::create(nb, nl, o, hAct.apply(nb, nl, cNew)).getResult();
            });
          } else {
            // GRU, gates in ONNX's order: update (z), reset (r), hidden (h).
            auto gatePre = [&](int64_t g) {
              return buildElementwise(
                  eb, ll,
                  ValueRange{gateOf(eb, ll, xw, g), gateOf(eb, ll, hr, g), gateOf(eb, ll, wb, g),
                             gateOf(eb, ll, rb, g)},
                  f, [&](OpBuilder &nb, Location nl, ValueRange a) {
                    Value v = arith::AddFOp::create(
                        nb, nl, arith::AddFOp::create(nb, nl, a[0], a[1]),
                        arith::AddFOp::create(nb, nl, a[2], a[3]));
                    return fAct.apply(nb, nl, clipped(nb, nl, v));
                  });
            };
            Value z = gatePre(0), r = gatePre(1);
            Value candidate;
            if (linearBeforeReset) {
              candidate = buildElementwise(
                  eb, ll,
                  ValueRange{gateOf(eb, ll, xw, 2), gateOf(eb, ll, hr, 2), gateOf(eb, ll, wb, 2),
                             gateOf(eb, ll, rb, 2), r},
                  f, [&](OpBuilder &nb, Location nl, ValueRange a) {
                    Value v = arith::AddFOp::create(
                        nb, nl, arith::AddFOp::create(nb, nl, a[0], a[2]),
                        arith::MulFOp::create(nb, nl, a[4],
                                              arith::AddFOp::create(nb, nl, a[1], a[3])));
                    return gAct.apply(nb, nl, clipped(nb, nl, v));
                  });
            } else {
              Value rh = buildElementwise(eb, ll, ValueRange{r, h}, f,
                                          [&](OpBuilder &nb, Location nl, ValueRange a) {
                                            return arith::MulFOp::create(nb, nl, a[0], a[1])
                                                .getResult();
                                          });
              Value rhT = sliceOf(eb, ll, rT, {0, 2 * s.hidden}, {s.hidden, s.hidden},
                                  {s.hidden, s.hidden});
              Value rhr = *buildMatMul(ctx, rh, rhT);
              candidate = buildElementwise(
                  eb, ll,
                  ValueRange{gateOf(eb, ll, xw, 2), rhr, gateOf(eb, ll, wb, 2),
                             gateOf(eb, ll, rb, 2)},
                  f, [&](OpBuilder &nb, Location nl, ValueRange a) {
                    Value v = arith::AddFOp::create(
                        nb, nl, arith::AddFOp::create(nb, nl, a[0], a[1]),
                        arith::AddFOp::create(nb, nl, a[2], a[3]));
                    return gAct.apply(nb, nl, clipped(nb, nl, v));
                  });
            }
            newH = buildElementwise(eb, ll, ValueRange{z, candidate, h}, f,
                                    [&](OpBuilder &nb, Location nl, ValueRange a) {
                                      Value one = scalarConstant(nb, nl, f, 1.0);
                                      return arith::AddFOp::create(
                                                 nb, nl,
                                                 arith::MulFOp::create(
                                                     nb, nl,
                                                     arith::SubFOp::create(nb, nl, one, a[0]),
                                                     a[1]),
                                                 arith::MulFOp::create(nb, nl, a[0], a[2]))
                                          .getResult();
                                    });
          }
          Value yStep = newH;
          if (lens) {
            // Past a batch item's length its state stays and its output is
            // 0. The lengths ([batch]) get a unit dim to broadcast.
            Value lengths = insertUnitDims(eb, ll, *lens, {1});
            Value tI64 = arith::IndexCastOp::create(eb, ll, eb.getI64Type(), t);
            auto masked = [&](Value next, Value prev, bool zero) {
              return buildElementwise(
                  eb, ll, ValueRange{lengths, next, prev}, f,
                  [&](OpBuilder &nb, Location nl, ValueRange a) {
                    Value len = a[0].getType() == nb.getI64Type()
                                    ? a[0]
                                    : Value(arith::ExtSIOp::create(nb, nl, nb.getI64Type(), a[0]));
                    Value live = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt, tI64, len);
                    return arith::SelectOp::create(nb, nl, live, a[1],
                                                   zero ? scalarConstant(nb, nl, f, 0) : a[2])
                        .getResult();
                  },
                  ArrayRef<OpFoldResult>{eb.getIndexAttr(s.batch), eb.getIndexAttr(s.hidden)});
            };
            yStep = masked(newH, newH, true);
            newH = masked(newH, h, false);
            if (cell == Cell::LSTM)
              newC = masked(newC, c, false);
          }
          SmallVector<OpFoldResult> offsets = {at, eb.getIndexAttr(0), eb.getIndexAttr(0)};
          SmallVector<OpFoldResult> sizes = {eb.getIndexAttr(1), eb.getIndexAttr(s.batch),
                                             eb.getIndexAttr(s.hidden)};
          SmallVector<OpFoldResult> strides(3, eb.getIndexAttr(1));
          Value yNext = tensor::InsertSliceOp::create(eb, ll, yStep, y, offsets, sizes, strides);
          scf::YieldOp::create(eb, ll, ValueRange{newH, newC, yNext});
        });
    Value yDir = loop.getResult(2);
    yAll = insertInto(b, loc, insertUnitDims(b, loc, yDir, {1}), yAll, {0, d, 0, 0},
                      {s.seq, 1, s.batch, s.hidden});
    hAll = insertInto(b, loc, insertUnitDims(b, loc, loop.getResult(0), {0}), hAll, {d, 0, 0},
                      {1, s.batch, s.hidden});
    if (cell == Cell::LSTM)
      cAll = insertInto(b, loc, insertUnitDims(b, loc, loop.getResult(1), {0}), cAll, {d, 0, 0},
                        {1, s.batch, s.hidden});
  }
  if (batchFirst) {
    yAll = transposed(b, loc, yAll, {2, 0, 1, 3});
    hAll = transposed(b, loc, hAll, {1, 0, 2});
    cAll = transposed(b, loc, cAll, {1, 0, 2});
  }
  ctx.setOutput(0, yAll);
  ctx.setOutput(1, hAll);
  if (cell == Cell::LSTM)
    ctx.setOutput(2, cAll);
  return success();
}

} // namespace

void onnx_import::registerRecurrentConverters(ConverterTable &table) {
  table["RNN"] = convertRecurrent;
  table["GRU"] = convertRecurrent;
  table["LSTM"] = convertRecurrent;
}
