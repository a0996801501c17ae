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
// A stream tick (hasten.sampler_stream) is one call at all of its rows; the
// conditioning-only values travel in the stream's state with their frame,
// where a row analysis (RowLayout) proves that each row depends on its own
// frame alone.
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
#include <map>
#include <tuple>

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

/// Where a value computed from a stream tick's conditioning keeps its rows
/// (the frames in flight): dimension `dim` has `rows * block` entries, and
/// entries [r * block, (r + 1) * block) depend only on row r's
/// conditioning, by the same function for every row. Such a value can be
/// computed for the new frame's rows alone and carried with the frame.
struct RowLayout {
  int64_t dim = 0, block = 1;
};
using RowLayouts = llvm::DenseMap<Value, RowLayout>;

/// Whether `v`, computed from constants only, is the same at every index of
/// dimension `dim` (an empty tensor, a fill, a splat, a broadcast along it).
bool uniformAlong(Value v, int64_t dim) {
  Operation *def = v.getDefiningOp();
  if (!def)
    return false;
  if (isa<tensor::EmptyOp, linalg::FillOp>(def))
    return true;
  if (auto constantOp = dyn_cast<arith::ConstantOp>(def))
    return isa<SplatElementsAttr>(constantOp.getValue());
  auto generic = dyn_cast<linalg::GenericOp>(def);
  if (!generic || !generic.hasPureTensorSemantics() || generic.getNumDpsInits() != 1)
    return false;
  OpOperand *init = generic.getDpsInitOperand(0);
  AffineMap initMap = generic.getMatchingIndexingMap(init);
  auto loop = dyn_cast<AffineDimExpr>(initMap.getResult(dim));
  if (!loop)
    return false;
  unsigned l = loop.getPosition();
  if (!linalg::isParallelIterator(generic.getIteratorTypesArray()[l]))
    return false;
  for (unsigned i = 0; i < initMap.getNumResults(); ++i)
    if (i != dim && initMap.getResult(i).isFunctionOfDim(l))
      return false;
  for (OpOperand *input : generic.getDpsInputOperands())
    if (generic.getMatchingIndexingMap(input).isFunctionOfDim(l))
      return false;
  if (generic.payloadUsesValueFromOperand(init) && !uniformAlong(init->get(), dim))
    return false;
  bool indexed = false;
  generic.getRegion().walk([&](linalg::IndexOp index) { indexed |= index.getDim() == l; });
  return !indexed;
}

/// The row layout of the results of `op`, which reads values with known
/// layouts, or failure where it mixes rows, reads a per-row constant, or is
/// an op this does not follow.
FailureOr<SmallVector<RowLayout>> resultRowLayouts(Operation *op, const RowLayouts &layouts) {
  // A reshape's, pad's or slice's source (its first operand) is refused,
  // not guessed, when it has no layout (a value the analysis did not follow).
  if (isa<tensor::CollapseShapeOp, tensor::ExpandShapeOp, tensor::PadOp, tensor::ExtractSliceOp>(
          op) &&
      !layouts.count(op->getOperand(0)))
    return failure();
  if (auto collapse = dyn_cast<tensor::CollapseShapeOp>(op)) {
    RowLayout source = layouts.lookup(collapse.getSrc());
    ArrayRef<int64_t> shape = collapse.getSrcType().getShape();
    for (auto [group, dims] : llvm::enumerate(collapse.getReassociationIndices())) {
      auto at = llvm::find(dims, source.dim);
      if (at == dims.end())
        continue;
      // Rows stay contiguous when nothing but unit dimensions is outside them.
      if (llvm::any_of(llvm::make_range(dims.begin(), at), [&](int64_t d) { return shape[d] != 1; }))
        return failure();
      int64_t block = source.block;
      for (int64_t d : llvm::make_range(std::next(at), dims.end()))
        block *= shape[d];
      return SmallVector<RowLayout>{{int64_t(group), block}};
    }
    return failure();
  }
  if (auto expand = dyn_cast<tensor::ExpandShapeOp>(op)) {
    RowLayout source = layouts.lookup(expand.getSrc());
    ArrayRef<int64_t> shape = expand.getResultType().getShape();
    ReassociationIndices dims = expand.getReassociationIndices()[source.dim];
    size_t outer = 0;
    while (outer + 1 < dims.size() && shape[dims[outer]] == 1)
      ++outer;
    int64_t inner = 1;
    for (size_t j = outer + 1; j < dims.size(); ++j)
      inner *= shape[dims[j]];
    if (source.block % inner != 0)
      return failure();
    return SmallVector<RowLayout>{{dims[outer], source.block / inner}};
  }
  if (auto pad = dyn_cast<tensor::PadOp>(op)) {
    RowLayout source = layouts.lookup(pad.getSource());
    if (pad.getStaticLow()[source.dim] != 0 || pad.getStaticHigh()[source.dim] != 0 ||
        !pad.getConstantPaddingValue())
      return failure();
    return SmallVector<RowLayout>{source};
  }
  if (auto slice = dyn_cast<tensor::ExtractSliceOp>(op)) {
    // All of every row (a fused projection's parts, say).
    RowLayout source = layouts.lookup(slice.getSource());
    if (slice.getType().getRank() != slice.getSourceType().getRank() ||
        slice.getStaticOffsets()[source.dim] != 0 || slice.getStaticStrides()[source.dim] != 1 ||
        slice.getStaticSizes()[source.dim] != slice.getSourceType().getDimSize(source.dim))
      return failure();
    return SmallVector<RowLayout>{source};
  }
  if (auto concat = dyn_cast<tensor::ConcatOp>(op)) {
    // Per-row parts joined along another dimension.
    RowLayout first = layouts.lookup(concat.getInputs().front());
    for (Value input : concat.getInputs()) {
      auto it = layouts.find(input);
      if (it == layouts.end() || it->second.dim != first.dim ||
          it->second.block != first.block || int64_t(concat.getDim()) == first.dim)
        return failure();
    }
    return SmallVector<RowLayout>{first};
  }
  auto linalgOp = dyn_cast<linalg::LinalgOp>(op);
  if (!linalgOp || !linalgOp.hasPureTensorSemantics())
    return failure();
  // The loop that runs over the rows: where every per-row operand has its
  // row dimension, and the index a per-row tensor read in the body is read at.
  std::optional<unsigned> loop;
  int64_t block = 0;
  auto agree = [&](unsigned l, int64_t k) {
    if (loop && (*loop != l || block != k))
      return false;
    loop = l;
    block = k;
    return true;
  };
  for (OpOperand &operand : op->getOpOperands()) {
    auto it = layouts.find(operand.get());
    if (it == layouts.end())
      continue;
    auto d = dyn_cast<AffineDimExpr>(
        linalgOp.getMatchingIndexingMap(&operand).getResult(it->second.dim));
    if (!d || !agree(d.getPosition(), it->second.block))
      return failure();
  }
  bool mixed = false;
  op->getRegion(0).walk([&](Operation *inner) {
    for (Value operand : inner->getOperands()) {
      auto it = layouts.find(operand);
      if (it == layouts.end())
        continue;
      auto extract = dyn_cast<tensor::ExtractOp>(inner);
      auto index = extract && extract.getTensor() == operand
                       ? extract.getIndices()[it->second.dim].getDefiningOp<linalg::IndexOp>()
                       : nullptr;
      if (!index || !agree(index.getDim(), it->second.block))
        mixed = true;
    }
  });
  if (mixed || !loop || !linalg::isParallelIterator(linalgOp.getIteratorTypesArray()[*loop]))
    return failure();
  // The row loop reaches the body only as the row index of those reads.
  WalkResult indexUses = op->getRegion(0).walk([&](linalg::IndexOp index) {
    if (index.getDim() != *loop)
      return WalkResult::advance();
    for (OpOperand &use : index->getUses()) {
      auto extract = dyn_cast<tensor::ExtractOp>(use.getOwner());
      if (!extract || use.getOperandNumber() == 0)
        return WalkResult::interrupt();
      auto it = layouts.find(extract.getTensor());
      if (it == layouts.end() || it->second.dim != int64_t(use.getOperandNumber() - 1))
        return WalkResult::interrupt();
    }
    return WalkResult::advance();
  });
  if (indexUses.wasInterrupted())
    return failure();
  // Every operand indexed by the row loop has it as one whole dimension:
  // its row dimension, or one along which it is the same everywhere.
  SmallVector<RowLayout> results;
  for (OpOperand &operand : op->getOpOperands()) {
    AffineMap map = linalgOp.getMatchingIndexingMap(&operand);
    std::optional<int64_t> at;
    for (unsigned i = 0; i < map.getNumResults(); ++i) {
      if (!map.getResult(i).isFunctionOfDim(*loop))
        continue;
      if (at || !isa<AffineDimExpr>(map.getResult(i)))
        return failure();
      at = i;
    }
    auto it = layouts.find(operand.get());
    if (it != layouts.end() ? !at || *at != it->second.dim : at && !uniformAlong(operand.get(), *at))
      return failure();
    if (linalgOp.isDpsInit(&operand)) {
      if (!at)
        return failure();
      results.push_back({*at, block});
    }
  }
  return results;
}

/// `type` with `dim` resized to `size`.
RankedTensorType resized(Type type, int64_t dim, int64_t size) {
  auto tensor = cast<RankedTensorType>(type);
  SmallVector<int64_t> shape(tensor.getShape());
  shape[dim] = size;
  return RankedTensorType::get(shape, tensor.getElementType());
}

/// Builds a stream tick's conditioning-only values for the new frame's
/// rows only, from the same ops with their row dimensions shrunk.
class RowCloner {
public:
  RowCloner(OpBuilder &b, const RowLayouts &layouts, int64_t newRows)
      : b(b), layouts(layouts), newRows(newRows) {}

  /// Clones the ops of `order` (per-row ops and the constants they read)
  /// with `map` binding the denoiser's conditioning to the new rows.
  void clone(ArrayRef<Operation *> order, const llvm::DenseSet<Operation *> &perRow,
             IRMapping &map) {
    for (Operation *op : order) {
      if (!perRow.count(op)) {
        b.clone(*op, map);
        continue;
      }
      Location loc = op->getLoc();
      auto sizeOf = [&](Value v) {
        RowLayout layout = layouts.lookup(v);
        return resized(v.getType(), layout.dim, newRows * layout.block);
      };
      Operation *copy;
      if (auto collapse = dyn_cast<tensor::CollapseShapeOp>(op)) {
        copy = tensor::CollapseShapeOp::create(b, loc, sizeOf(collapse.getResult()),
                                               map.lookup(collapse.getSrc()),
                                               collapse.getReassociationIndices());
      } else if (auto expand = dyn_cast<tensor::ExpandShapeOp>(op)) {
        copy = tensor::ExpandShapeOp::create(b, loc, sizeOf(expand.getResult()),
                                             map.lookup(expand.getSrc()),
                                             expand.getReassociationIndices());
      } else if (auto slice = dyn_cast<tensor::ExtractSliceOp>(op)) {
        RowLayout layout = layouts.lookup(slice.getSource());
        SmallVector<int64_t> sizes(slice.getStaticSizes());
        sizes[layout.dim] = newRows * layout.block;
        copy = tensor::ExtractSliceOp::create(b, loc, sizeOf(slice.getResult()),
                                              map.lookup(slice.getSource()), ValueRange{},
                                              ValueRange{}, ValueRange{}, slice.getStaticOffsets(),
                                              sizes, slice.getStaticStrides());
      } else if (auto concat = dyn_cast<tensor::ConcatOp>(op)) {
        SmallVector<Value> inputs;
        for (Value input : concat.getInputs())
          inputs.push_back(map.lookup(input));
        copy = tensor::ConcatOp::create(b, loc, concat.getDim(), inputs);
      } else {
        // Constant operands along the rows: the same, fewer rows (built
        // before the op that reads them).
        SmallVector<std::pair<unsigned, Value>> shrunkOperands;
        if (auto linalgOp = dyn_cast<linalg::LinalgOp>(op)) {
          unsigned loop = rowLoop(linalgOp);
          for (OpOperand &operand : op->getOpOperands()) {
            if (layouts.count(operand.get()))
              continue;
            AffineMap m = linalgOp.getMatchingIndexingMap(&operand);
            for (unsigned i = 0; i < m.getNumResults(); ++i)
              if (auto d = dyn_cast<AffineDimExpr>(m.getResult(i)); d && d.getPosition() == loop)
                shrunkOperands.push_back({operand.getOperandNumber(),
                                          shrunk(operand.get(), i, rowsAlong(linalgOp), map)});
          }
        }
        copy = b.clone(*op, map);
        for (auto [number, value] : shrunkOperands)
          copy->setOperand(number, value);
        for (auto [result, original] : llvm::zip(copy->getResults(), op->getResults()))
          result.setType(sizeOf(original));
      }
      for (auto [result, original] : llvm::zip(copy->getResults(), op->getResults()))
        map.map(original, result);
    }
  }

private:
  /// The loop of a per-row linalg op that runs over the rows: the one at
  /// its first result's row dimension.
  unsigned rowLoop(linalg::LinalgOp op) {
    OpOperand *init = op.getDpsInitOperand(0);
    RowLayout layout = layouts.lookup(op->getResult(0));
    return cast<AffineDimExpr>(op.getMatchingIndexingMap(init).getResult(layout.dim))
        .getPosition();
  }
  int64_t rowsAlong(linalg::LinalgOp op) { return newRows * layouts.lookup(op->getResult(0)).block; }

  /// `v`, the same at every index of `dim` (uniformAlong), with `size`
  /// entries there.
  Value shrunk(Value v, int64_t dim, int64_t size, IRMapping &map) {
    auto key = std::make_tuple(v.getAsOpaquePointer(), dim, size);
    if (auto done = cache.find(key); done != cache.end())
      return done->second;
    Operation *def = v.getDefiningOp();
    Location loc = def->getLoc();
    RankedTensorType type = resized(v.getType(), dim, size);
    Value result;
    if (auto constantOp = dyn_cast<arith::ConstantOp>(def)) {
      auto splat = cast<SplatElementsAttr>(constantOp.getValue());
      result = arith::ConstantOp::create(b, loc, type,
                                         SplatElementsAttr::get(type, splat.getSplatValue<Attribute>()));
    } else if (isa<tensor::EmptyOp>(def)) {
      result = tensor::EmptyOp::create(b, loc, type.getShape(), type.getElementType());
    } else {
      // A fill or a broadcasting generic: its init shrunk, or a new empty
      // tensor when the body does not read it.
      auto dps = cast<DestinationStyleOpInterface>(def);
      OpOperand *init = dps.getDpsInitOperand(0);
      auto linalgOp = cast<linalg::LinalgOp>(def);
      Value newInit = linalgOp.payloadUsesValueFromOperand(init)
                          ? shrunk(init->get(), dim, size, map)
                          : tensor::EmptyOp::create(b, loc, type.getShape(), type.getElementType())
                                .getResult();
      // The op was cloned at its full size already: a mapping of its own,
      // or the copy would share the first one's block arguments.
      IRMapping operands;
      for (Value input : inputsOf(def))
        operands.map(input, map.lookupOrDefault(input));
      Operation *copy = b.clone(*def, operands);
      copy->setOperand(init->getOperandNumber(), newInit);
      copy->getResult(0).setType(type);
      result = copy->getResult(0);
    }
    cache[key] = result;
    return result;
  }

  OpBuilder &b;
  const RowLayouts &layouts;
  int64_t newRows;
  std::map<std::tuple<const void *, int64_t, int64_t>, Value> cache;
};

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
    for (BlockArgument arg : conditioningArguments(spec))
      conditioned.insert(arg);
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

  /// The denoiser's conditioning arguments (all but the sample and the
  /// time), in order.
  static SmallVector<BlockArgument> conditioningArguments(const SamplerSpec &spec) {
    SmallVector<BlockArgument> args;
    for (BlockArgument arg : func::FuncOp(spec.denoiser).front().getArguments())
      if (arg.getArgNumber() != spec.sampleIndex && arg.getArgNumber() != spec.timeIndex)
        args.push_back(arg);
    return args;
  }

  /// The denoiser's conditioning arguments bound to `conditioning`.
  static IRMapping conditioningMapping(const SamplerSpec &spec, ValueRange conditioning) {
    IRMapping map;
    for (auto [arg, value] : llvm::zip_equal(conditioningArguments(spec), conditioning))
      map.map(arg, value);
    return map;
  }

  /// The hoisted values for the denoiser's conditioning arguments bound to
  /// `conditioning` (in the denoiser's order, at its batch).
  SmallVector<Value> hoist(OpBuilder &b, const Hoisting &hoisting, const SamplerSpec &spec,
                           ValueRange conditioning) {
    IRMapping map = conditioningMapping(spec, conditioning);
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

  /// What a stream tick carries for each frame in flight instead of its
  /// raw conditioning: the values of the conditioning-only subgraph
  /// (hoisted as for the fused sampler), computed for the new frame's rows
  /// when it enters and kept in the state with it.
  struct Carry {
    Hoisting hoisting;
    RowLayouts layouts;
    /// The stream function's raw conditioning state arguments and results.
    SmallVector<unsigned> stateArgs, stateResults;
  };

  /// The carry, when the rows of every hoisted value are proven to depend
  /// only on their frame's conditioning and nothing else reads it;
  /// otherwise a remark says why a tick recomputes them.
  std::optional<Carry> carriedConditioning(SamplerStreamOp stream, func::FuncOp denoiser,
                                           const SamplerSpec &spec, int64_t rows) {
    Carry carry;
    carry.hoisting = findConditioningOnly(denoiser, spec);
    const Hoisting &h = carry.hoisting;
    if (h.frontier.empty())
      return std::nullopt;
    auto recomputed = [&](const Twine &why) -> std::optional<Carry> {
      stream.emitRemark("each tick recomputes the frames' conditioning-only values: ") << why;
      return std::nullopt;
    };
    Block &body = denoiser.front();
    for (BlockArgument arg : conditioningArguments(spec)) {
      if (cast<RankedTensorType>(arg.getType()).getDimSize(0) != rows)
        return recomputed("conditioning argument " + Twine(arg.getArgNumber()) +
                          " is not one row per frame");
      // A tick no longer has the frames' raw conditioning.
      for (Operation *user : arg.getUsers())
        if (!h.ops.count(body.findAncestorOpInBlock(*user)))
          return recomputed("'" + user->getName().getStringRef() +
                            "' reads the raw conditioning with the sample or time");
      carry.layouts[arg] = RowLayout{0, 1};
    }
    for (Operation *op : h.order) {
      if (!h.ops.count(op))
        continue;
      FailureOr<SmallVector<RowLayout>> results = resultRowLayouts(op, carry.layouts);
      if (failed(results))
        return recomputed("'" + op->getName().getStringRef() +
                          "' mixes the frames' rows or treats them differently");
      for (auto [v, layout] : llvm::zip(op->getResults(), *results))
        carry.layouts[v] = layout;
    }
    // The carried values become state arguments and results of the
    // stream's function, in place of the raw conditioning's.
    auto parent = stream->getParentOfType<func::FuncOp>();
    Type element = cast<RankedTensorType>(stream.getSample().getType()).getElementType();
    if (llvm::any_of(h.frontier, [&](Value v) {
          return cast<RankedTensorType>(v.getType()).getElementType() != element;
        }))
      return recomputed("a value's element type is not the sample's");
    auto isEntryArgument = [&](Value v) {
      auto arg = dyn_cast<BlockArgument>(v);
      return arg && arg.getOwner() == &parent.front() && arg.hasOneUse();
    };
    bool entryState = isEntryArgument(stream.getState());
    for (Value v : stream.getStateConditioning()) {
      entryState &= isEntryArgument(v);
      if (entryState)
        carry.stateArgs.push_back(cast<BlockArgument>(v).getArgNumber());
    }
    for (Value v : stream.getNewStateConditioning()) {
      entryState &= v.hasOneUse() && isa<func::ReturnOp>(*v.user_begin()) &&
                    v.user_begin()->getParentOp() == parent;
      if (entryState)
        carry.stateResults.push_back(v.use_begin()->getOperandNumber());
    }
    if (!entryState)
      return recomputed("the state is not the function's arguments and results");
    return carry;
  }

  /// One stream tick: the new frame and the frames in flight batched into
  /// one call of the step function, each row with its own step's time
  /// values and coefficients. What depends only on a frame's conditioning
  /// is computed once, when the frame enters, and carried in the state.
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
    auto allRows = [&](Type t) { return resized(t, 0, rows); };
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
    std::optional<Carry> carry = carriedConditioning(stream, denoiser, spec, rows);
    Hoisting none;
    StepFunction step =
        buildStepFunction(symbols, spec, folding, carry ? carry->hoisting : none, layout);

    auto parent = stream->getParentOfType<func::FuncOp>();
    SmallVector<Value> carriedState;
    if (carry) {
      // [(steps - 1) * batch * block] rows of each carried value, after the
      // other state arguments; named and typed as the frames' state.
      unsigned frameState = cast<BlockArgument>(stream.getState()).getArgNumber();
      for (auto [n, v] : llvm::enumerate(carry->hoisting.frontier)) {
        RowLayout rowLayout = carry->layouts.lookup(v);
        NamedAttrList attrs(parent.getArgAttrDict(frameState));
        attrs.set(HastenDialect::kOnnxNameAttrName,
                  StringAttr::get(&getContext(), "carried_conditioning_" + std::to_string(n)));
        unsigned index = parent.getNumArguments();
        if (failed(parent.insertArgument(
                index, resized(v.getType(), rowLayout.dim, (rows - batch) * rowLayout.block),
                attrs.getDictionary(&getContext()), loc)))
          return stream.emitOpError("cannot add the carried conditioning's state");
        carriedState.push_back(parent.getArgument(index));
      }
    }

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
      if (carry) {
        // Not read: the step function takes the carried values instead.
        auto type = allRows(cond.getType());
        operands.push_back(
            tensor::EmptyOp::create(b, loc, type.getShape(), type.getElementType()));
        continue;
      }
      conditioning.push_back(withState(cond, state));
      operands.push_back(conditioning.back());
    }
    if (step.timeUsed)
      operands.push_back(timeConstant(b, loc, timeType, time));
    for (DenseElementsAttr value : folding.values[0])
      operands.push_back(constant(b, loc, value));
    SmallVector<Value> carried;
    if (carry) {
      // The new frame's values, computed for its rows alone, then those of
      // the frames in flight.
      IRMapping map = conditioningMapping(spec, stream.getConditioning());
      RowCloner(b, carry->layouts, batch).clone(carry->hoisting.order, carry->hoisting.ops, map);
      for (auto [v, state] : llvm::zip(carry->hoisting.frontier, carriedState)) {
        int64_t dim = carry->layouts.lookup(v).dim;
        carried.push_back(
            tensor::ConcatOp::create(b, loc, dim, ValueRange{map.lookup(v), state}).getResult());
        operands.push_back(carried.back());
      }
    }
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
    auto rowsOf = [&](Value v, int64_t dim, int64_t first, int64_t count) -> Value {
      auto type = cast<RankedTensorType>(v.getType());
      int64_t rank = type.getRank();
      SmallVector<OpFoldResult> offsets(rank, b.getIndexAttr(0)), strides(rank, b.getIndexAttr(1));
      SmallVector<OpFoldResult> sizes;
      for (int64_t d : type.getShape())
        sizes.push_back(b.getIndexAttr(d));
      offsets[dim] = b.getIndexAttr(first);
      sizes[dim] = b.getIndexAttr(count);
      return tensor::ExtractSliceOp::create(b, loc, resized(type, dim, count), v, offsets, sizes,
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
    stream.getResult().replaceAllUsesWith(rowsOf(next, 0, rows - batch, batch));
    stream.getNewState().replaceAllUsesWith(
        unflatten(rowsOf(next, 0, 0, rows - batch), stream.getState().getType()));
    for (auto [cond, result] : llvm::zip(conditioning, stream.getNewStateConditioning()))
      result.replaceAllUsesWith(unflatten(rowsOf(cond, 0, 0, rows - batch), result.getType()));
    parent->setAttr(HastenDialect::kSamplerStepsAttrName, b.getI64IntegerAttr(1));
    if (!carry) {
      stream.erase();
      return success();
    }

    // The carried values' new state replaces the raw conditioning's in the
    // function's results, and its arguments go.
    auto ret = cast<func::ReturnOp>(parent.front().getTerminator());
    llvm::BitVector oldResults(ret.getNumOperands()), oldArgs(parent.getNumArguments());
    for (unsigned i : carry->stateResults)
      oldResults.set(i);
    for (unsigned i : carry->stateArgs)
      oldArgs.set(i);
    SmallVector<Value> results;
    for (auto [i, v] : llvm::enumerate(ret.getOperands()))
      if (!oldResults.test(i))
        results.push_back(v);
    SmallVector<Type> carriedTypes;
    SmallVector<DictionaryAttr> carriedAttrs;
    SmallVector<unsigned> carriedIndices;
    for (auto [value, v, state] : llvm::zip(carry->hoisting.frontier, carried, carriedState)) {
      int64_t dim = carry->layouts.lookup(value).dim;
      auto stateType = cast<RankedTensorType>(state.getType());
      results.push_back(rowsOf(v, dim, 0, stateType.getDimSize(dim)));
      // Positions in the list before the insertion: all at its end.
      carriedIndices.push_back(ret.getNumOperands() - oldResults.count());
      carriedTypes.push_back(stateType);
      carriedAttrs.push_back(parent.getArgAttrDict(cast<BlockArgument>(state).getArgNumber()));
    }
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(ret);
    func::ReturnOp::create(b, ret.getLoc(), results);
    ret.erase();
    stream.erase();
    if (failed(parent.eraseResults(oldResults)) ||
        failed(parent.insertResults(carriedIndices, carriedTypes, carriedAttrs)) ||
        failed(parent.eraseArguments(oldArgs)))
      return parent.emitOpError("cannot replace the raw conditioning's state");
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
