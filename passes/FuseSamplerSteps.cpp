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

/// The coefficients of step `i`, as (x, g, z) first, then g split into the
/// conditional and the other prediction by the guidance scale.
Coefficients stepCoefficients(SamplerLoopOp loop, size_t i) {
  ArrayRef<double> schedule = loop.getSchedule();
  size_t steps = loop.getTimesteps().size();
  double x = 0, g = 0, z = 0, x2 = 0, g2 = 0, z2 = 0;
  if (loop.getRule() == "euler-flow") {
    x = 1;
    g = schedule[i + 1] - schedule[i];
  } else {
    Estimates e = estimates(loop.getPrediction(), schedule[i]);
    double next = schedule[i + 1];
    double san = std::sqrt(next), sbn = std::sqrt(1 - next);
    if (loop.getRule() == "consistency") {
      // LCM's boundary condition on the clean estimate, then re-noising.
      constexpr double kSigmaData = 0.5, kTimestepScaling = 10;
      double scaled = loop.getTimesteps()[i] * kTimestepScaling;
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
  bool guided = loop.getCfg() != "none";
  double s = guided ? loop.getCfgScale().convertToDouble() : 1;
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

bool isElementwiseGeneric(Operation *op) {
  auto generic = dyn_cast_or_null<linalg::GenericOp>(op);
  return generic && generic.getNumLoops() == generic.getNumParallelLoops();
}

struct FuseSamplerStepsPass : public hasten::impl::FuseSamplerStepsBase<FuseSamplerStepsPass> {
  using Base::Base;

  void runOnOperation() override {
    SmallVector<SamplerLoopOp> loops;
    getOperation().walk([&](SamplerLoopOp loop) { loops.push_back(loop); });
    SymbolTable symbols(getOperation());
    for (SamplerLoopOp loop : loops)
      if (failed(fuse(loop, symbols)))
        return signalPassFailure();
  }

  /// The denoiser's timestep-only ops that evaluate for every step, and the
  /// values each step passes for those the rest of the denoiser reads.
  struct TimeFolding {
    llvm::DenseSet<Operation *> folded;
    SmallVector<Value> frontier;
    /// [step][frontier value]
    SmallVector<SmallVector<DenseElementsAttr>> values;
  };

  TimeFolding foldTimeSubgraph(SamplerLoopOp loop, func::FuncOp denoiser) {
    TimeFolding result;
    Block &body = denoiser.front();
    Value time = body.getArgument(loop.getTimeIndex());
    // Candidates: pure ops reading the time (directly or through other
    // candidates) and otherwise only constants.
    llvm::DenseSet<Value> timeOnly{time}, constants;
    SmallVector<Operation *> candidates;
    auto constantLike = [&](Value v) { return constants.count(v) > 0; };
    for (Operation &op : body.without_terminator()) {
      if (!isMemoryEffectFree(&op) || op.getNumResults() == 0)
        continue;
      // Values computed from constants alone (a transposed weight, a fill).
      if (llvm::all_of(op.getOperands(), constantLike)) {
        for (Value v : op.getResults())
          constants.insert(v);
        continue;
      }
      bool readsTime = false, onlyKnown = true;
      for (Value operand : op.getOperands()) {
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
    size_t steps = loop.getTimesteps().size();
    SmallVector<TensorEvaluator> evaluators(steps);
    llvm::DenseSet<Operation *> failed;
    for (size_t i = 0; i < steps; ++i) {
      double t = loop.getTimesteps()[i];
      if (isa<IntegerType>(timeType.getElementType()))
        t = std::nearbyint(t);
      evaluators[i].set(time, {timeType, std::vector<double>(timeType.getNumElements(), t)});
      for (Operation *op : candidates)
        if (!failed.count(op) && !evaluators[i].evaluate(op))
          failed.insert(op);
    }
    for (Operation *op : candidates)
      if (!failed.count(op) && llvm::all_of(op->getOperands(), [&](Value v) {
            return v == time || constantLike(v) || evaluators[0].lookup(v);
          }))
        result.folded.insert(op);
    // An op whose operand failed on some step is not folded either.
    for (Operation *op : candidates)
      if (result.folded.count(op))
        for (Value operand : op->getOperands())
          if (Operation *def = operand.getDefiningOp();
              def && timeOnly.count(operand) && !result.folded.count(def))
            result.folded.erase(op);
    for (Operation *op : candidates) {
      if (!result.folded.count(op))
        continue;
      for (Value v : op->getResults())
        if (llvm::any_of(v.getUsers(), [&](Operation *user) {
              return !result.folded.count(user);
            }))
          result.frontier.push_back(v);
    }
    result.values.resize(steps);
    for (size_t i = 0; i < steps; ++i)
      for (Value v : result.frontier)
        result.values[i].push_back(TensorEvaluator::toAttribute(*evaluators[i].lookup(v)));
    return result;
  }

  LogicalResult fuse(SamplerLoopOp loop, SymbolTable &symbols) {
    auto denoiser = symbols.lookup<func::FuncOp>(loop.getDenoiser());
    if (!denoiser || denoiser.isExternal())
      return loop.emitOpError("'") << loop.getDenoiser() << "' has no body to fuse";
    MLIRContext *ctx = &getContext();
    Location loc = loop.getLoc();
    StringRef cfg = loop.getCfg();
    bool full = cfg == "full", residual = cfg.starts_with("rcfg");
    bool renoise = bool(loop.getRenoise());
    size_t steps = loop.getTimesteps().size();
    auto sampleType = cast<RankedTensorType>(loop.getSample().getType());
    Type element = sampleType.getElementType();
    if (!isa<FloatType>(element))
      return loop.emitOpError("samples must be floating point, got ") << sampleType;

    TimeFolding folding = foldTimeSubgraph(loop, denoiser);

    // The step function's signature: sample, conditioning, (negative),
    // time, folded time values, (other prediction), (noise), coefficients.
    SmallVector<Type> inputs{sampleType};
    for (Value cond : loop.getConditioning())
      inputs.push_back(cond.getType());
    if (full)
      for (Value neg : loop.getNegative())
        inputs.push_back(neg.getType());
    unsigned timeArg = inputs.size();
    inputs.push_back(denoiser.getArgumentTypes()[loop.getTimeIndex()]);
    unsigned frontierArg = inputs.size();
    for (Value v : folding.frontier)
      inputs.push_back(v.getType());
    unsigned otherArg = inputs.size();
    if (residual)
      inputs.push_back(sampleType);
    unsigned noiseArg = inputs.size();
    if (renoise)
      inputs.push_back(sampleType);
    unsigned coefficientArg = inputs.size();
    auto coefficientType = RankedTensorType::get({8}, element);
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
    map.map(body.getArgument(loop.getSampleIndex()), full ? doubled(x, x) : x);
    map.map(body.getArgument(loop.getTimeIndex()), entry->getArgument(timeArg));
    unsigned next = 0, numCond = loop.getConditioning().size();
    for (unsigned i = 0; i < body.getNumArguments(); ++i) {
      if (i == loop.getSampleIndex() || i == loop.getTimeIndex())
        continue;
      Value cond = entry->getArgument(1 + next);
      map.map(body.getArgument(i),
              full ? doubled(cond, entry->getArgument(1 + numCond + next)) : cond);
      ++next;
    }
    for (auto [n, v] : llvm::enumerate(folding.frontier))
      map.map(v, entry->getArgument(frontierArg + n));
    for (Operation &op : body.without_terminator())
      if (!folding.folded.count(&op))
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
    // step has them, the residual's four with residual CFG.
    SmallVector<Value> coefficients(8);
    for (int64_t k = 0; k < 8; ++k) {
      int64_t term = k % 4;
      if ((k >= 4 && !residual) || (term == 2 && !other) || (term == 3 && !renoise))
        continue;
      coefficients[k] = tensor::ExtractOp::create(
          b, loc, entry->getArgument(coefficientArg),
          ValueRange{arith::ConstantIndexOp::create(b, loc, k).getResult()});
    }

    // The update, one elementwise op.
    SmallVector<Value> updateInputs{x, conditional};
    if (other)
      updateInputs.push_back(other);
    if (renoise)
      updateInputs.push_back(entry->getArgument(noiseArg));
    SmallVector<Value> inits;
    for (size_t r = 0; r < results.size(); ++r)
      inits.push_back(tensor::EmptyOp::create(b, loc, sampleType.getShape(), element));
    AffineMap identity = b.getMultiDimIdentityMap(sampleType.getRank());
    SmallVector<AffineMap> maps(updateInputs.size() + inits.size(), identity);
    SmallVector<utils::IteratorType> iterators(sampleType.getRank(),
                                               utils::IteratorType::parallel);
    auto update = linalg::GenericOp::create(
        b, loc, TypeRange(results), updateInputs, inits, maps, iterators,
        [&](OpBuilder &nb, Location nloc, ValueRange args) {
          auto term = [&](Value acc, int64_t k, Value v) -> Value {
            Value product = arith::MulFOp::create(nb, nloc, coefficients[k], v);
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
    bool timeUsed = !entry->getArgument(timeArg).use_empty();
    if (!timeUsed)
      (void)step.eraseArgument(timeArg);

    // The steps, unrolled into calls of the step function.
    b.setInsertionPoint(loop);
    auto timeType = cast<RankedTensorType>(inputs[timeArg]);
    auto constant = [&](Attribute value) -> Value {
      return arith::ConstantOp::create(b, loc, cast<TypedAttr>(value)).getResult();
    };
    auto coefficientConstant = [&](const Coefficients &c) {
      SmallVector<Attribute> values;
      for (double v : c)
        values.push_back(b.getFloatAttr(element, v));
      return constant(DenseElementsAttr::get(coefficientType, values));
    };
    auto timeConstant = [&](size_t i) {
      double t = loop.getTimesteps()[i];
      Attribute value = isa<IntegerType>(timeType.getElementType())
                            ? Attribute(b.getIntegerAttr(timeType.getElementType(),
                                                         int64_t(std::nearbyint(t))))
                            : Attribute(b.getFloatAttr(timeType.getElementType(), t));
      return constant(DenseElementsAttr::get(timeType, value));
    };
    Value zeros;
    if (residual || renoise)
      zeros = constant(DenseElementsAttr::get(sampleType, b.getFloatAttr(element, 0.0)));
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
    auto call = [&](size_t i, ValueRange conditioning, Value sample, Value otherValue,
                    const Coefficients &c) {
      SmallVector<Value> operands{sample};
      llvm::append_range(operands, conditioning);
      if (full)
        llvm::append_range(operands, loop.getNegative());
      if (timeUsed)
        operands.push_back(timeConstant(i));
      for (DenseElementsAttr value : folding.values[i])
        operands.push_back(constant(value));
      if (residual)
        operands.push_back(otherValue);
      if (renoise)
        operands.push_back(noiseOf(i));
      operands.push_back(coefficientConstant(c));
      return func::CallOp::create(b, loc, step, operands).getResults();
    };
    int64_t calls = int64_t(steps);
    for (size_t i = 0; i < steps; ++i) {
      if (cfg == "rcfg-onetime" && i == 0) {
        // The one negative pass: the step function returns the bare
        // prediction with these coefficients.
        Coefficients bare{0, 1, 0, 0, 0, 0, 0, 0};
        residualNoise = call(0, loop.getNegative(), current, zeros, bare)[0];
        ++calls;
      }
      ValueRange outs = call(i, loop.getConditioning(), current, residualNoise,
                             stepCoefficients(loop, i));
      current = outs[0];
      if (residual)
        residualNoise = outs[1];
    }
    auto parent = loop->getParentOfType<func::FuncOp>();
    parent->setAttr(HastenDialect::kSamplerStepsAttrName, b.getI64IntegerAttr(calls));
    loop.getResult().replaceAllUsesWith(current);
    loop.erase();
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
