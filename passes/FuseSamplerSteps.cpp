//===- FuseSamplerSteps.cpp - few-step samplers compiled into one program -===//
//
// Replaces each hasten.sampler_loop by its steps, unrolled: every step calls
// one step function, which is the denoiser with
//
//   - its timestep-only subgraph (time embeddings, time MLPs, adaLN
//     modulation) removed: those values are evaluated here for each step's
//     timestep and passed in as constants;
//   - the conditional and negative CFG passes batched into one call (full
//     CFG), or the negative pass replaced by a residual noise it carries
//     (residual CFG);
//   - the sampler's update (x <- a x + b eps, the flow's Euler step, the
//     consistency re-noising) fused into the denoiser's last elementwise
//     op, with the step's coefficients as an argument.
//
// Every update rule is linear in the sample, the predictions and the fresh
// noise, so one step function serves all steps; the coefficients are
// computed here, in double.
//
//===----------------------------------------------------------------------===//

#include "TensorEvaluator.h"
#include "hasten/Dialect/Hasten/HastenDialect.h"
#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Tensor/Transforms/Transforms.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "mlir/Transforms/RegionUtils.h"

#include <array>
#include <cmath>

namespace hasten {
#define GEN_PASS_DEF_FUSESAMPLERSTEPS
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;
using namespace hasten;

namespace {

/// The step's update, linear in the sample x, the conditional prediction p,
/// the other prediction q (CFG's negative half, or the residual noise) and
/// the fresh noise z:
///   x' = a x + bp p + bq q + c z,   residual' = a2 x + bp2 p + bq2 q + c2 z.
using Coefficients = std::array<double, 8>;

/// The clean-sample and noise estimates as linear combinations of x and the
/// (guided) prediction g: x0 = A x + B g, eps = C x + D g.
struct Estimates {
  double A, B, C, D;
};

Estimates estimates(StringRef prediction, double alpha) {
  double sa = std::sqrt(alpha), sb = std::sqrt(1 - alpha);
  if (prediction == "eps")
    return {1 / sa, -sb / sa, 0, 1};
  if (prediction == "v")
    return {sa, -sb, sb, sa};
  // A clean-sample prediction; at alpha = 1 the noise estimate is moot.
  return {0, 1, sb > 0 ? 1 / sb : 0, sb > 0 ? -sa / sb : 0};
}

/// What both sampler ops say about the sampler.
struct SamplerSpec {
  func::FuncOp denoiser;
  StringRef rule, prediction, cfg;
  ArrayRef<double> timesteps, schedule;
  unsigned sampleIndex, timeIndex;
  double scale;

  template <typename Op>
  static SamplerSpec of(Op op, func::FuncOp denoiser, StringRef cfg, double scale) {
    return {denoiser,        op.getRule(),     op.getPrediction(),
            cfg,             op.getTimesteps(), op.getSchedule(),
            unsigned(op.getSampleIndex()), unsigned(op.getTimeIndex()), scale};
  }
};

/// The coefficients of step `i`, as (x, g, z) first, then g split into the
/// conditional and the other prediction by the guidance scale.
Coefficients stepCoefficients(const SamplerSpec &spec, size_t i) {
  ArrayRef<double> schedule = spec.schedule;
  size_t steps = spec.timesteps.size();
  double x = 0, g = 0, z = 0, x2 = 0, g2 = 0, z2 = 0;
  if (spec.rule == "euler-flow") {
    x = 1;
    g = schedule[i + 1] - schedule[i];
  } else {
    Estimates e = estimates(spec.prediction, schedule[i]);
    double next = schedule[i + 1];
    double san = std::sqrt(next), sbn = std::sqrt(1 - next);
    if (spec.rule == "consistency") {
      // LCM's boundary condition on the clean estimate, then re-noising.
      constexpr double kSigmaData = 0.5, kTimestepScaling = 10;
      double scaled = spec.timesteps[i] * kTimestepScaling;
      double denom = scaled * scaled + kSigmaData * kSigmaData;
      double cSkip = kSigmaData * kSigmaData / denom, cOut = scaled / std::sqrt(denom);
      double A = cSkip + cOut * e.A, B = cOut * e.B;
      bool renoise = i + 1 < steps;
      x = san * A;
      g = san * B;
      z = renoise ? sbn : 0;
      // The residual noise x' carries beyond sqrt(alpha') x0 is z itself.
      z2 = renoise ? 1 : 0;
    } else {
      x = san * e.A + sbn * e.C;
      g = san * e.B + sbn * e.D;
      // (x' - sqrt(alpha') x0) / sqrt(1 - alpha') is the noise estimate.
      x2 = e.C;
      g2 = e.D;
    }
  }
  bool guided = spec.cfg != "none";
  double s = guided ? spec.scale : 1;
  return {x, g * s, guided ? g * (1 - s) : 0, z, x2, g2 * s, guided ? g2 * (1 - s) : 0, z2};
}

/// Whether every use of `op`'s results is the function's return, directly
/// or through reshapes.
bool feedsReturn(Operation *op) {
  for (Value result : op->getResults())
    for (Operation *user : result.getUsers()) {
      if (isa<func::ReturnOp>(user))
        continue;
      if (isa<tensor::ExpandShapeOp, tensor::CollapseShapeOp>(user) && feedsReturn(user))
        continue;
      return false;
    }
  return true;
}

/// What `op` reads: its operands and the values its regions use from
/// outside (a linalg body may read a tensor with tensor.extract).
SmallVector<Value> inputsOf(Operation *op) {
  SmallVector<Value> inputs(op->getOperands());
  llvm::SetVector<Value> captured;
  getUsedValuesDefinedAbove(op->getRegions(), captured);
  llvm::append_range(inputs, captured);
  return inputs;
}

bool isElementwiseGeneric(Operation *op) {
  auto generic = dyn_cast_or_null<linalg::GenericOp>(op);
  return generic && generic.getNumLoops() == generic.getNumParallelLoops();
}

struct FuseSamplerStepsPass : public hasten::impl::FuseSamplerStepsBase<FuseSamplerStepsPass> {
  using Base::Base;

  void runOnOperation() override {
    SmallVector<Operation *> ops;
    getOperation().walk([&](Operation *op) {
      if (isa<SamplerLoopOp, SamplerStreamOp>(op))
        ops.push_back(op);
    });
    SymbolTable symbols(getOperation());
    for (Operation *op : ops) {
      LogicalResult result = isa<SamplerLoopOp>(op)
                                 ? fuse(cast<SamplerLoopOp>(op), symbols)
                                 : fuseStream(cast<SamplerStreamOp>(op), symbols);
      if (failed(result))
        return signalPassFailure();
    }
  }

  /// The denoiser's timestep-only ops that evaluate for every time value,
  /// and the values each evaluation gives those the rest of the denoiser
  /// reads.
  struct TimeFolding {
    llvm::DenseSet<Operation *> folded;
    SmallVector<Value> frontier;
    /// [evaluation][frontier value]
    SmallVector<SmallVector<DenseElementsAttr>> values;
  };

  /// Folds for each of `times` (the elements of the time argument).
  TimeFolding foldTimeSubgraph(func::FuncOp denoiser, unsigned timeIndex,
                               ArrayRef<std::vector<double>> times) {
    TimeFolding result;
    // One (possibly empty) list of values per time, whatever folds.
    result.values.resize(times.size());
    Block &body = denoiser.front();
    Value time = body.getArgument(timeIndex);
    // Candidates: pure ops reading the time (directly or through other
    // candidates) and otherwise only constants.
    llvm::DenseSet<Value> timeOnly{time}, constants;
    SmallVector<Operation *> candidates;
    auto constantLike = [&](Value v) { return constants.count(v) > 0; };
    for (Operation &op : body.without_terminator()) {
      if (!isMemoryEffectFree(&op) || op.getNumResults() == 0)
        continue;
      // Values computed from constants alone (a transposed weight, a fill).
      SmallVector<Value> inputs = inputsOf(&op);
      if (llvm::all_of(inputs, constantLike)) {
        for (Value v : op.getResults())
          constants.insert(v);
        continue;
      }
      bool readsTime = false, onlyKnown = true;
      for (Value operand : inputs) {
        if (timeOnly.count(operand))
          readsTime = true;
        else if (!constantLike(operand))
          onlyKnown = false;
      }
      if (!readsTime || !onlyKnown)
        continue;
      candidates.push_back(&op);
      for (Value v : op.getResults())
        timeOnly.insert(v);
    }
    if (candidates.empty())
      return result;

    auto timeType = cast<RankedTensorType>(time.getType());
    SmallVector<TensorEvaluator> evaluators(times.size());
    llvm::DenseSet<Operation *> failed;
    for (size_t i = 0; i < times.size(); ++i) {
      evaluators[i].set(time, {timeType, times[i]});
      for (Operation *op : candidates)
        if (!failed.count(op) && !evaluators[i].evaluate(op))
          failed.insert(op);
    }
    // An op that failed for some time value is not folded, nor is any op
    // that reads it (candidates are in program order).
    for (Operation *op : candidates)
      if (!failed.count(op) && llvm::all_of(inputsOf(op), [&](Value v) {
            Operation *def = v.getDefiningOp();
            return !timeOnly.count(v) || v == time || result.folded.count(def);
          }))
        result.folded.insert(op);
    for (Operation *op : candidates) {
      if (!result.folded.count(op))
        continue;
      // A use inside another op's region counts as that op's.
      for (Value v : op->getResults())
        if (llvm::any_of(v.getUsers(), [&](Operation *user) {
              return !result.folded.count(body.findAncestorOpInBlock(*user));
            }))
          result.frontier.push_back(v);
    }
    for (size_t i = 0; i < times.size(); ++i)
      for (Value v : result.frontier)
        result.values[i].push_back(TensorEvaluator::toAttribute(*evaluators[i].lookup(v)));
    return result;
  }

  /// The time argument's elements for timestep `t` on every row.
  static std::vector<double> timeElements(RankedTensorType type, double t) {
    if (isa<IntegerType>(type.getElementType()))
      t = std::nearbyint(t);
    return std::vector<double>(type.getNumElements(), t);
  }

  /// The denoiser's ops that read the conditioning and otherwise only
  /// constants (cross-attention keys and values of the context, a
  /// conditioning encoder, a mel upsampler): the same at every step, so
  /// computed once per call before the steps and passed in.
  struct Hoisting {
    llvm::DenseSet<Operation *> ops;
    /// In program order: the hoisted ops and the constants they read.
    SmallVector<Operation *> order;
    SmallVector<Value> frontier;
  };

  Hoisting findConditioningOnly(func::FuncOp denoiser, const SamplerSpec &spec) {
    Hoisting result;
    Block &body = denoiser.front();
    llvm::DenseSet<Value> conditioned, constants;
    for (unsigned i = 0; i < body.getNumArguments(); ++i)
      if (i != spec.sampleIndex && i != spec.timeIndex)
        conditioned.insert(body.getArgument(i));
    for (Operation &op : body.without_terminator()) {
      if (!isMemoryEffectFree(&op) || op.getNumResults() == 0 || op.getNumRegions() > 1)
        continue;
      bool readsConditioning = false, onlyKnown = true;
      for (Value operand : inputsOf(&op)) {
        if (conditioned.count(operand))
          readsConditioning = true;
        else if (!constants.count(operand))
          onlyKnown = false;
      }
      if (!onlyKnown)
        continue;
      for (Value v : op.getResults())
        (readsConditioning ? conditioned : constants).insert(v);
      if (readsConditioning)
        result.ops.insert(&op);
    }
    // Constants the hoisted ops read come along (they are cheap to repeat).
    llvm::DenseSet<Operation *> needed;
    for (Operation &op : llvm::reverse(body.without_terminator()))
      if (result.ops.count(&op) || needed.count(&op))
        for (Value operand : inputsOf(&op))
          if (Operation *def = operand.getDefiningOp(); def && constants.count(operand))
            needed.insert(def);
    for (Operation &op : body.without_terminator())
      if (result.ops.count(&op) || needed.count(&op))
        result.order.push_back(&op);
    for (Operation *op : result.order) {
      if (!result.ops.count(op))
        continue;
      for (Value v : op->getResults())
        if (llvm::any_of(v.getUsers(), [&](Operation *user) {
              return !result.ops.count(body.findAncestorOpInBlock(*user));
            }))
          result.frontier.push_back(v);
    }
    return result;
  }

  /// The hoisted values for the denoiser's conditioning arguments bound to
  /// `conditioning` (in the denoiser's order, at its batch).
  SmallVector<Value> hoist(OpBuilder &b, const Hoisting &hoisting, const SamplerSpec &spec,
                           ValueRange conditioning) {
    IRMapping map;
    Block &body = func::FuncOp(spec.denoiser).front();
    unsigned next = 0;
    for (unsigned i = 0; i < body.getNumArguments(); ++i)
      if (i != spec.sampleIndex && i != spec.timeIndex)
        map.map(body.getArgument(i), conditioning[next++]);
    for (Operation *op : hoisting.order)
      b.clone(*op, map);
    SmallVector<Value> values;
    for (Value v : hoisting.frontier)
      values.push_back(map.lookup(v));
    return values;
  }

  /// How the step function is called.
  struct StepLayout {
    /// The sample and the conditioning as the step function takes them
    /// (full CFG doubles them inside).
    RankedTensorType sampleType;
    SmallVector<Type> conditioning;
    bool full = false, residual = false, renoise = false;
    /// Coefficients per row ([8, rows], a stream batch) instead of one set.
    bool perRow = false;
  };

  struct StepFunction {
    func::FuncOp func;
    bool timeUsed = true;
  };

  /// Builds `<denoiser>_sampler_step`: the denoiser less its folded time
  /// subgraph, then the update, fused into the prediction's producer. Its
  /// arguments: sample, conditioning, (negative conditioning), (time),
  /// folded time values, (other prediction), (noise), coefficients.
  StepFunction buildStepFunction(SymbolTable &symbols, const SamplerSpec &spec,
                                 const TimeFolding &folding, const Hoisting &hoisting,
                                 const StepLayout &layout) {
    func::FuncOp denoiser = spec.denoiser;
    MLIRContext *ctx = &getContext();
    Location loc = denoiser.getLoc();
    RankedTensorType sampleType = layout.sampleType;
    Type element = sampleType.getElementType();
    bool full = layout.full, residual = layout.residual, renoise = layout.renoise;
    SmallVector<Type> inputs{sampleType};
    llvm::append_range(inputs, layout.conditioning);
    if (full)
      llvm::append_range(inputs, layout.conditioning);
    unsigned timeArg = inputs.size();
    inputs.push_back(denoiser.getArgumentTypes()[spec.timeIndex]);
    unsigned frontierArg = inputs.size();
    for (Value v : folding.frontier)
      inputs.push_back(v.getType());
    unsigned hoistedArg = inputs.size();
    for (Value v : hoisting.frontier)
      inputs.push_back(v.getType());
    unsigned otherArg = inputs.size();
    if (residual)
      inputs.push_back(sampleType);
    unsigned noiseArg = inputs.size();
    if (renoise)
      inputs.push_back(sampleType);
    unsigned coefficientArg = inputs.size();
    int64_t rows = sampleType.getDimSize(0);
    auto coefficientType = layout.perRow ? RankedTensorType::get({8, rows}, element)
                                         : RankedTensorType::get({8}, element);
    inputs.push_back(coefficientType);
    SmallVector<Type> results{sampleType};
    if (residual)
      results.push_back(sampleType);

    OpBuilder b(ctx);
    b.setInsertionPoint(denoiser);
    auto step = func::FuncOp::create(b, loc, (denoiser.getSymName() + "_sampler_step").str(),
                                     b.getFunctionType(inputs, results));
    step.setPrivate();
    symbols.insert(step);
    Block *entry = step.addEntryBlock();
    b.setInsertionPointToStart(entry);

    // The denoiser's body, minus what was folded, on the step's arguments.
    IRMapping map;
    Value x = entry->getArgument(0);
    auto doubled = [&](Value half, Value other) -> Value {
      return tensor::ConcatOp::create(b, loc, 0, ValueRange{half, other}).getResult();
    };
    Block &body = denoiser.front();
    map.map(body.getArgument(spec.sampleIndex), full ? doubled(x, x) : x);
    map.map(body.getArgument(spec.timeIndex), entry->getArgument(timeArg));
    unsigned next = 0, numCond = layout.conditioning.size();
    for (unsigned i = 0; i < body.getNumArguments(); ++i) {
      if (i == spec.sampleIndex || i == spec.timeIndex)
        continue;
      Value cond = entry->getArgument(1 + next);
      map.map(body.getArgument(i),
              full ? doubled(cond, entry->getArgument(1 + numCond + next)) : cond);
      ++next;
    }
    for (auto [n, v] : llvm::enumerate(folding.frontier))
      map.map(v, entry->getArgument(frontierArg + n));
    for (auto [n, v] : llvm::enumerate(hoisting.frontier))
      map.map(v, entry->getArgument(hoistedArg + n));
    for (Operation &op : body.without_terminator())
      if (!folding.folded.count(&op) && !hoisting.ops.count(&op))
        b.clone(op, map);
    Value prediction = map.lookup(body.getTerminator()->getOperand(0));

    // The conditional prediction and the other one.
    Value conditional = prediction, other;
    if (full) {
      int64_t rank = sampleType.getRank();
      SmallVector<OpFoldResult> offsets(rank, b.getIndexAttr(0)), strides(rank, b.getIndexAttr(1));
      SmallVector<OpFoldResult> sizes;
      for (int64_t d : sampleType.getShape())
        sizes.push_back(b.getIndexAttr(d));
      conditional =
          tensor::ExtractSliceOp::create(b, loc, sampleType, prediction, offsets, sizes, strides);
      offsets[0] = b.getIndexAttr(sampleType.getDimSize(0));
      other =
          tensor::ExtractSliceOp::create(b, loc, sampleType, prediction, offsets, sizes, strides);
    } else if (residual) {
      other = entry->getArgument(otherArg);
    }
    // The coefficients the update reads: (x, p) always, q and z when the
    // step has them, the residual's four with residual CFG. One set is
    // extracted as scalars; per-row sets are read by the update itself.
    auto needed = [&](int64_t k) {
      int64_t term = k % 4;
      return !((k >= 4 && !residual) || (term == 2 && !other) || (term == 3 && !renoise));
    };
    SmallVector<Value> coefficients(8);
    if (!layout.perRow)
      for (int64_t k = 0; k < 8; ++k)
        if (needed(k))
          coefficients[k] = tensor::ExtractOp::create(
              b, loc, entry->getArgument(coefficientArg),
              ValueRange{arith::ConstantIndexOp::create(b, loc, k).getResult()});

    // The update, one elementwise op.
    SmallVector<Value> updateInputs{x, conditional};
    if (other)
      updateInputs.push_back(other);
    if (renoise)
      updateInputs.push_back(entry->getArgument(noiseArg));
    unsigned numData = updateInputs.size();
    int64_t rank = sampleType.getRank();
    AffineMap identity = b.getMultiDimIdentityMap(rank);
    SmallVector<AffineMap> maps(numData, identity);
    SmallVector<int64_t> rowCoefficient(8, -1);
    if (layout.perRow)
      for (int64_t k = 0; k < 8; ++k) {
        if (!needed(k))
          continue;
        rowCoefficient[k] = updateInputs.size();
        updateInputs.push_back(entry->getArgument(coefficientArg));
        maps.push_back(AffineMap::get(rank, 0,
                                      {b.getAffineConstantExpr(k), b.getAffineDimExpr(0)}, ctx));
      }
    SmallVector<Value> inits;
    for (size_t r = 0; r < results.size(); ++r) {
      inits.push_back(tensor::EmptyOp::create(b, loc, sampleType.getShape(), element));
      maps.push_back(identity);
    }
    SmallVector<utils::IteratorType> iterators(rank, utils::IteratorType::parallel);
    auto update = linalg::GenericOp::create(
        b, loc, TypeRange(results), updateInputs, inits, maps, iterators,
        [&](OpBuilder &nb, Location nloc, ValueRange args) {
          auto coefficient = [&](int64_t k) {
            return layout.perRow ? args[rowCoefficient[k]] : coefficients[k];
          };
          auto term = [&](Value acc, int64_t k, Value v) -> Value {
            Value product = arith::MulFOp::create(nb, nloc, coefficient(k), v);
            return acc ? arith::AddFOp::create(nb, nloc, acc, product).getResult() : product;
          };
          auto combine = [&](int64_t first) {
            Value acc = term({}, first, args[0]);
            acc = term(acc, first + 1, args[1]);
            unsigned at = 2;
            if (other)
              acc = term(acc, first + 2, args[at++]);
            if (renoise)
              acc = term(acc, first + 3, args[at++]);
            return acc;
          };
          SmallVector<Value> yields{combine(0)};
          if (residual)
            yields.push_back(combine(4));
          linalg::YieldOp::create(nb, nloc, yields);
        });
    func::ReturnOp::create(b, loc, update.getResults());
    if (!full)
      fuseIntoPrediction(step, prediction);
    // A denoiser whose time subgraph folded entirely no longer reads it.
    StepFunction result{step, !entry->getArgument(timeArg).use_empty()};
    if (!result.timeUsed)
      (void)step.eraseArgument(timeArg);
    return result;
  }

  static Value constant(OpBuilder &b, Location loc, Attribute value) {
    return arith::ConstantOp::create(b, loc, cast<TypedAttr>(value)).getResult();
  }

  static Value timeConstant(OpBuilder &b, Location loc, RankedTensorType type,
                            const std::vector<double> &values) {
    SmallVector<Attribute> attrs;
    for (double v : values)
      attrs.push_back(isa<IntegerType>(type.getElementType())
                          ? Attribute(b.getIntegerAttr(type.getElementType(), int64_t(v)))
                          : Attribute(b.getFloatAttr(type.getElementType(), v)));
    return constant(b, loc, DenseElementsAttr::get(type, attrs));
  }

  LogicalResult fuse(SamplerLoopOp loop, SymbolTable &symbols) {
    auto denoiser = symbols.lookup<func::FuncOp>(loop.getDenoiser());
    if (!denoiser || denoiser.isExternal())
      return loop.emitOpError("'") << loop.getDenoiser() << "' has no body to fuse";
    Location loc = loop.getLoc();
    StringRef cfg = loop.getCfg();
    SamplerSpec spec =
        SamplerSpec::of(loop, denoiser, cfg, loop.getCfgScale().convertToDouble());
    StepLayout layout;
    layout.full = cfg == "full";
    layout.residual = cfg.starts_with("rcfg");
    layout.renoise = bool(loop.getRenoise());
    layout.sampleType = cast<RankedTensorType>(loop.getSample().getType());
    for (Value cond : loop.getConditioning())
      layout.conditioning.push_back(cond.getType());
    size_t steps = loop.getTimesteps().size();
    Type element = layout.sampleType.getElementType();
    if (!isa<FloatType>(element))
      return loop.emitOpError("samples must be floating point, got ") << layout.sampleType;

    auto timeType = cast<RankedTensorType>(denoiser.getArgumentTypes()[spec.timeIndex]);
    std::vector<std::vector<double>> times;
    for (double t : loop.getTimesteps())
      times.push_back(timeElements(timeType, t));
    TimeFolding folding = foldTimeSubgraph(denoiser, spec.timeIndex, times);
    Hoisting hoisting = findConditioningOnly(denoiser, spec);
    StepFunction step = buildStepFunction(symbols, spec, folding, hoisting, layout);

    // The steps, unrolled into calls of the step function, after what
    // depends only on the conditioning.
    OpBuilder b(loop);
    SmallVector<Value> denoiserConditioning(loop.getConditioning());
    if (layout.full)
      for (auto [n, neg] : llvm::enumerate(loop.getNegative()))
        denoiserConditioning[n] =
            tensor::ConcatOp::create(b, loc, 0, ValueRange{denoiserConditioning[n], neg})
                .getResult();
    SmallVector<Value> hoisted = hoist(b, hoisting, spec, denoiserConditioning);
    RankedTensorType sampleType = layout.sampleType;
    auto coefficientType = RankedTensorType::get({8}, element);
    auto coefficientConstant = [&](const Coefficients &c) {
      SmallVector<Attribute> values;
      for (double v : c)
        values.push_back(b.getFloatAttr(element, v));
      return constant(b, loc, DenseElementsAttr::get(coefficientType, values));
    };
    Value zeros;
    if (layout.residual || layout.renoise)
      zeros = constant(b, loc, DenseElementsAttr::get(sampleType, b.getFloatAttr(element, 0.0)));
    auto noiseOf = [&](size_t i) -> Value {
      if (i + 1 >= steps)
        return zeros;
      Value all = loop.getRenoise();
      auto allType = cast<RankedTensorType>(all.getType());
      int64_t rank = allType.getRank();
      SmallVector<OpFoldResult> offsets(rank, b.getIndexAttr(0)), strides(rank, b.getIndexAttr(1));
      SmallVector<OpFoldResult> sizes{b.getIndexAttr(1)};
      for (int64_t d : sampleType.getShape())
        sizes.push_back(b.getIndexAttr(d));
      offsets[0] = b.getIndexAttr(int64_t(i));
      return tensor::ExtractSliceOp::create(b, loc, sampleType, all, offsets, sizes, strides)
          .getResult();
    };
    Value current = loop.getSample();
    Value residualNoise = cfg == "rcfg-self" ? loop.getSample() : zeros;
    auto call = [&](size_t i, ValueRange conditioning, ValueRange hoistedValues, Value sample,
                    Value otherValue, const Coefficients &c) {
      SmallVector<Value> operands{sample};
      llvm::append_range(operands, conditioning);
      if (layout.full)
        llvm::append_range(operands, loop.getNegative());
      if (step.timeUsed)
        operands.push_back(timeConstant(b, loc, timeType, times[i]));
      for (DenseElementsAttr value : folding.values[i])
        operands.push_back(constant(b, loc, value));
      llvm::append_range(operands, hoistedValues);
      if (layout.residual)
        operands.push_back(otherValue);
      if (layout.renoise)
        operands.push_back(noiseOf(i));
      operands.push_back(coefficientConstant(c));
      return func::CallOp::create(b, loc, step.func, operands).getResults();
    };
    int64_t calls = int64_t(steps);
    for (size_t i = 0; i < steps; ++i) {
      if (cfg == "rcfg-onetime" && i == 0) {
        // The one negative pass: the step function returns the bare
        // prediction with these coefficients.
        Coefficients bare{0, 1, 0, 0, 0, 0, 0, 0};
        SmallVector<Value> negativeHoisted = hoist(b, hoisting, spec, loop.getNegative());
        residualNoise = call(0, loop.getNegative(), negativeHoisted, current, zeros, bare)[0];
        ++calls;
      }
      ValueRange outs = call(i, loop.getConditioning(), hoisted, current, residualNoise,
                             stepCoefficients(spec, i));
      current = outs[0];
      if (layout.residual)
        residualNoise = outs[1];
    }
    auto parent = loop->getParentOfType<func::FuncOp>();
    parent->setAttr(HastenDialect::kSamplerStepsAttrName, b.getI64IntegerAttr(calls));
    loop.getResult().replaceAllUsesWith(current);
    loop.erase();
    return success();
  }

  /// One stream tick: the new frame and the frames in flight batched into
  /// one call of the step function, each row with its own step's time
  /// values and coefficients.
  LogicalResult fuseStream(SamplerStreamOp stream, SymbolTable &symbols) {
    auto denoiser = symbols.lookup<func::FuncOp>(stream.getDenoiser());
    if (!denoiser || denoiser.isExternal())
      return stream.emitOpError("'") << stream.getDenoiser() << "' has no body to fuse";
    Location loc = stream.getLoc();
    SamplerSpec spec = SamplerSpec::of(stream, denoiser, "none", 1.0);
    auto frame = cast<RankedTensorType>(stream.getSample().getType());
    Type element = frame.getElementType();
    if (!isa<FloatType>(element))
      return stream.emitOpError("samples must be floating point, got ") << frame;
    int64_t steps = stream.getTimesteps().size(), batch = frame.getDimSize(0);
    int64_t rows = steps * batch;
    auto allRows = [&](Type t) {
      auto tensor = cast<RankedTensorType>(t);
      SmallVector<int64_t> shape(tensor.getShape());
      shape[0] = rows;
      return RankedTensorType::get(shape, tensor.getElementType());
    };
    StepLayout layout;
    layout.perRow = true;
    layout.sampleType = allRows(frame);
    for (Value cond : stream.getConditioning())
      layout.conditioning.push_back(allRows(cond.getType()));

    // Row r holds the frame at step r / batch: the time and coefficients
    // of that step.
    auto timeType = cast<RankedTensorType>(denoiser.getArgumentTypes()[spec.timeIndex]);
    std::vector<double> time;
    for (int64_t r = 0; r < rows; ++r)
      time.push_back(timeElements(timeType, stream.getTimesteps()[r / batch])[0]);
    TimeFolding folding = foldTimeSubgraph(denoiser, spec.timeIndex, {time});
    // One call per tick: nothing to gain from hoisting.
    Hoisting none;
    StepFunction step = buildStepFunction(symbols, spec, folding, none, layout);

    OpBuilder b(stream);
    // [steps - 1, batch, ...] and [batch, ...] as [rows, ...]: the new
    // frame first, then the frames in flight by step.
    auto flatten = [&](Value state) -> Value {
      auto type = cast<RankedTensorType>(state.getType());
      SmallVector<ReassociationIndices> groups{{0, 1}};
      for (int64_t d = 2; d < type.getRank(); ++d)
        groups.push_back({d});
      return tensor::CollapseShapeOp::create(b, loc, state, groups).getResult();
    };
    auto withState = [&](Value first, Value state) -> Value {
      return tensor::ConcatOp::create(b, loc, 0, ValueRange{first, flatten(state)}).getResult();
    };
    SmallVector<Value> operands{withState(stream.getSample(), stream.getState())};
    SmallVector<Value> conditioning;
    for (auto [cond, state] : llvm::zip(stream.getConditioning(), stream.getStateConditioning())) {
      conditioning.push_back(withState(cond, state));
      operands.push_back(conditioning.back());
    }
    if (step.timeUsed)
      operands.push_back(timeConstant(b, loc, timeType, time));
    for (DenseElementsAttr value : folding.values[0])
      operands.push_back(constant(b, loc, value));
    SmallVector<Attribute> coefficients(8 * rows);
    for (int64_t r = 0; r < rows; ++r) {
      Coefficients c = stepCoefficients(spec, size_t(r / batch));
      for (int64_t k = 0; k < 8; ++k)
        coefficients[k * rows + r] = b.getFloatAttr(element, c[k]);
    }
    operands.push_back(constant(
        b, loc, DenseElementsAttr::get(RankedTensorType::get({8, rows}, element), coefficients)));
    Value next = func::CallOp::create(b, loc, step.func, operands).getResult(0);

    // Rows [0, rows - batch) are in flight; the last batch finished.
    auto rowsOf = [&](Value v, int64_t first, int64_t count) -> Value {
      auto type = cast<RankedTensorType>(v.getType());
      int64_t rank = type.getRank();
      SmallVector<OpFoldResult> offsets(rank, b.getIndexAttr(0)), strides(rank, b.getIndexAttr(1));
      SmallVector<OpFoldResult> sizes;
      for (int64_t d : type.getShape())
        sizes.push_back(b.getIndexAttr(d));
      offsets[0] = b.getIndexAttr(first);
      sizes[0] = b.getIndexAttr(count);
      SmallVector<int64_t> shape(type.getShape());
      shape[0] = count;
      return tensor::ExtractSliceOp::create(
                 b, loc, RankedTensorType::get(shape, type.getElementType()), v, offsets, sizes,
                 strides)
          .getResult();
    };
    auto unflatten = [&](Value v, Type stateType) -> Value {
      auto type = cast<RankedTensorType>(stateType);
      SmallVector<ReassociationIndices> groups{{0, 1}};
      for (int64_t d = 2; d < type.getRank(); ++d)
        groups.push_back({d});
      return tensor::ExpandShapeOp::create(b, loc, type, v, groups).getResult();
    };
    stream.getResult().replaceAllUsesWith(rowsOf(next, rows - batch, batch));
    stream.getNewState().replaceAllUsesWith(
        unflatten(rowsOf(next, 0, rows - batch), stream.getState().getType()));
    for (auto [cond, result] : llvm::zip(conditioning, stream.getNewStateConditioning()))
      result.replaceAllUsesWith(unflatten(rowsOf(cond, 0, rows - batch), result.getType()));
    auto parent = stream->getParentOfType<func::FuncOp>();
    parent->setAttr(HastenDialect::kSamplerStepsAttrName, b.getI64IntegerAttr(1));
    stream.erase();
    return success();
  }

  /// Fuses the step function's update into the op that computes the
  /// prediction: named elementwise ops on the way become generics, reshapes
  /// in between are folded by expanding the update, and producers with no
  /// other use are fused into it.
  void fuseIntoPrediction(func::FuncOp step, Value prediction) {
    IRRewriter rewriter(step.getContext());
    Value v = prediction;
    while (Operation *def = v.getDefiningOp()) {
      if (isa<tensor::ExpandShapeOp, tensor::CollapseShapeOp>(def)) {
        v = def->getOperand(0);
        continue;
      }
      auto linalgOp = dyn_cast<linalg::LinalgOp>(def);
      if (!linalgOp || isa<linalg::GenericOp>(def) ||
          linalgOp.getNumLoops() != linalgOp.getNumParallelLoops() ||
          def->getNumResults() != 1)
        break;
      rewriter.setInsertionPoint(def);
      FailureOr<linalg::GenericOp> generic = linalg::generalizeNamedOp(rewriter, linalgOp);
      if (failed(generic))
        break;
      v = generic->getDpsInputs().empty() ? Value() : generic->getDpsInputs()[0];
      if (!v)
        break;
    }
    RewritePatternSet patterns(step.getContext());
    linalg::populateFoldReshapeOpsByExpansionPatterns(patterns, [](OpOperand *operand) {
      return isElementwiseGeneric(operand->getOwner()) && feedsReturn(operand->getOwner()) &&
             operand->get().hasOneUse();
    });
    linalg::populateElementwiseOpsFusionPatterns(patterns, [](OpOperand *operand) {
      Operation *producer = operand->get().getDefiningOp();
      return isElementwiseGeneric(producer) && isElementwiseGeneric(operand->getOwner()) &&
             producer->hasOneUse() && feedsReturn(operand->getOwner());
    });
    tensor::populateReassociativeReshapeFoldingPatterns(patterns);
    (void)applyPatternsGreedily(step, std::move(patterns));
  }
};

} // namespace
