//===- UnrollSpeculation.cpp - the fused speculative decoding step ---------===//
//
// Adds `spec_step`: K draft decode steps unrolled on the draft's cache, each
// choosing its proposal by argmax or, at a positive temperature, by drawing
// from the draft's distribution; the target's verification of the pending
// token and the K proposals in one pass; acceptance (the longest prefix
// matching the target's argmax, or rejection sampling); and the caches' new
// lengths. One call replaces K + 1 runtime round trips, and nothing is
// copied to roll back: the lengths it returns leave the rejected tokens
// behind.
//
//===----------------------------------------------------------------------===//

#include "hasten/Dialect/Hasten/HastenDialect.h"
#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/SymbolTable.h"

#include <limits>
#include <tuple>

namespace hasten {
#define GEN_PASS_DEF_UNROLLSPECULATION
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;
using namespace hasten;

namespace {

constexpr int32_t kOnnxInt64 = 7;

/// The entry of `kind` in model namespace `model` ("" for the main model).
func::FuncOp findEntry(ModuleOp module, EntryKind kind, StringRef model) {
  for (auto func : module.getOps<func::FuncOp>()) {
    auto kindAttr = func->getAttrOfType<StringAttr>(HastenDialect::kEntryKindAttrName);
    auto modelAttr = func->getAttrOfType<StringAttr>(HastenDialect::kModelAttrName);
    if (kindAttr && symbolizeEntryKind(kindAttr.getValue()) == kind &&
        (modelAttr ? modelAttr.getValue() : StringRef()) == model)
      return func;
  }
  return {};
}

/// The type of the argument (or result) with `role`, or null.
Type typeWithRole(func::FuncOp func, TensorRole role, bool result) {
  unsigned count = result ? func.getNumResults() : func.getNumArguments();
  for (unsigned i = 0; i < count; ++i) {
    auto attr = result ? func.getResultAttrOfType<StringAttr>(i, HastenDialect::kRoleAttrName)
                       : func.getArgAttrOfType<StringAttr>(i, HastenDialect::kRoleAttrName);
    if (attr && symbolizeTensorRole(attr.getValue()) == role)
      return result ? func.getResultTypes()[i] : func.getArgumentTypes()[i];
  }
  return {};
}

struct UnrollSpeculationPass
    : public hasten::impl::UnrollSpeculationBase<UnrollSpeculationPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (k < 1 || k > 32) {
      module.emitError("k must be in [1, 32], got ") << int64_t(k);
      return signalPassFailure();
    }
    func::FuncOp verify = findEntry(module, EntryKind::Verify, "");
    func::FuncOp draft = findEntry(module, EntryKind::Decode, HastenDialect::kDraftModelName);
    if (!verify || !draft) {
      module.emitError("speculation needs the target's verify entry and the decode entry of "
                       "model 'draft' (compile with --draft)");
      return signalPassFailure();
    }
    auto targetCache = dyn_cast_or_null<KVCacheType>(typeWithRole(verify, TensorRole::KVCache, false));
    auto draftCache = dyn_cast_or_null<KVCacheType>(typeWithRole(draft, TensorRole::KVCache, false));
    auto logits = dyn_cast_or_null<RankedTensorType>(typeWithRole(verify, TensorRole::Logits, true));
    auto draftLogits =
        dyn_cast_or_null<RankedTensorType>(typeWithRole(draft, TensorRole::Logits, true));
    if (!targetCache || !draftCache || !logits || !draftLogits) {
      module.emitError("speculation needs entries with planned KV caches (run "
                       "--hasten-plan-kv-cache first)");
      return signalPassFailure();
    }
    int64_t vocab = logits.getShape().back();
    if (ShapedType::isDynamic(vocab) || draftLogits.getShape().back() != vocab) {
      module.emitError("the draft's vocabulary (")
          << draftLogits.getShape().back() << ") is not the target's (" << vocab << ")";
      return signalPassFailure();
    }
    SymbolTable symbols(module);
    if (symbols.lookup("spec_step")) {
      module.emitError("the module already has a symbol named 'spec_step'");
      return signalPassFailure();
    }
    build(module, symbols, verify, draft, targetCache, draftCache, logits.getElementType(),
          draftLogits.getElementType(), vocab);
  }

  // The passes over the vocabulary below read 16 logits at a time into
  // vector accumulators (then one at a time for the rest), one row after
  // another. (A linalg reduction over [1, k + 1, vocab] became a parallel
  // loop over the k + 1 rows whose threads stored their running maxima to
  // one cache line at every element: a step ran several times slower than
  // the runtime's loop.) A draw scans 16-token chunk sums, then one chunk.
  static constexpr int64_t kLanes = 16;

  /// `v` as f32 (logits may be f16 or bf16), scalar or vector.
  static Value toF32(OpBuilder &b, Location loc, Value v) {
    Type f32 = b.getF32Type();
    if (auto vector = dyn_cast<VectorType>(v.getType()))
      return vector.getElementType().isF32()
                 ? v
                 : arith::ExtFOp::create(b, loc, VectorType::get(vector.getShape(), f32), v)
                       .getResult();
    return v.getType().isF32() ? v : arith::ExtFOp::create(b, loc, f32, v).getResult();
  }

  /// `value` in each of `lanes` lanes.
  static Value splat(OpBuilder &b, Location loc, Value value, int64_t lanes) {
    return vector::BroadcastOp::create(b, loc, VectorType::get({lanes}, value.getType()), value);
  }

  /// The logit at (row, token) of `logits` [1, n, vocab], as f32.
  static Value logitAt(OpBuilder &b, Location loc, Value logits, Value row, Value token) {
    Value zero = arith::ConstantIndexOp::create(b, loc, 0);
    return toF32(b, loc, tensor::ExtractOp::create(b, loc, logits, ValueRange{zero, row, token}));
  }

  /// The logits of tokens [t, t + lanes) in row `row` of `logits`, as f32
  /// lanes.
  static Value readLogits(OpBuilder &b, Location loc, Value logits, Value row, Value t,
                          int64_t lanes) {
    Type element = cast<RankedTensorType>(logits.getType()).getElementType();
    Value zero = arith::ConstantIndexOp::create(b, loc, 0);
    Value pad = arith::ConstantOp::create(b, loc, b.getFloatAttr(element, 0.0));
    SmallVector<bool> inBounds{true};
    Value read = vector::TransferReadOp::create(b, loc, VectorType::get({lanes}, element), logits,
                                                ValueRange{zero, row, t}, pad,
                                                ArrayRef<bool>(inBounds));
    return toF32(b, loc, read);
  }

  /// Runs `step(b, loc, t, lanes, state)` over the vocabulary, 16 tokens at a
  /// time and then one at a time, each part with its own state (vectors of
  /// its width, from `init(lanes)`); returns both parts' final states (the
  /// second empty when 16 divides the vocabulary, the first when the
  /// vocabulary is smaller).
  using LaneStep = function_ref<SmallVector<Value>(OpBuilder &, Location, Value, int64_t, ValueRange)>;
  static std::pair<SmallVector<Value>, SmallVector<Value>>
  overVocabulary(OpBuilder &b, Location loc, int64_t vocab,
                 function_ref<SmallVector<Value>(int64_t)> init, LaneStep step) {
    int64_t full = vocab / kLanes * kLanes;
    auto part = [&](int64_t begin, int64_t end, int64_t lanes) -> SmallVector<Value> {
      if (begin >= end)
        return {};
      auto loop = scf::ForOp::create(
          b, loc, arith::ConstantIndexOp::create(b, loc, begin),
          arith::ConstantIndexOp::create(b, loc, end),
          arith::ConstantIndexOp::create(b, loc, lanes), init(lanes),
          [&](OpBuilder &lb, Location ll, Value t, ValueRange state) {
            scf::YieldOp::create(lb, ll, step(lb, ll, t, lanes, state));
          });
      return SmallVector<Value>(loop.getResults());
    };
    return {part(0, full, kLanes), part(full, vocab, 1)};
  }

  /// The sum of the lanes of `vector`.
  static Value addLanes(OpBuilder &b, Location loc, Value vector) {
    return vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD, vector);
  }

  /// The largest logit of row `row` of `logits` [1, n, vocab] (f32) and its
  /// first index (i64).
  std::pair<Value, Value> rowMax(OpBuilder &b, Location loc, Value logits, int64_t row) {
    int64_t vocab = cast<RankedTensorType>(logits.getType()).getShape().back();
    Type f32 = b.getF32Type(), i64 = b.getI64Type();
    Value rowIndex = arith::ConstantIndexOp::create(b, loc, row);
    float lowest = -std::numeric_limits<float>::infinity();
    auto [wide, narrow] = overVocabulary(
        b, loc, vocab,
        [&](int64_t lanes) -> SmallVector<Value> {
          return {arith::ConstantOp::create(
                      b, loc, DenseElementsAttr::get(VectorType::get({lanes}, f32), lowest)),
                  arith::ConstantOp::create(
                      b, loc, DenseElementsAttr::get(VectorType::get({lanes}, i64), int64_t(0)))};
        },
        [&](OpBuilder &lb, Location ll, Value t, int64_t lanes, ValueRange best) {
          Value logits16 = readLogits(lb, ll, logits, rowIndex, t, lanes);
          SmallVector<int64_t> offsets;
          for (int64_t i = 0; i < lanes; ++i)
            offsets.push_back(i);
          Value tokens = arith::AddIOp::create(
              lb, ll, splat(lb, ll, arith::IndexCastOp::create(lb, ll, i64, t), lanes),
              arith::ConstantOp::create(
                  lb, ll, DenseElementsAttr::get(VectorType::get({lanes}, i64),
                                                 ArrayRef<int64_t>(offsets))));
          Value greater =
              arith::CmpFOp::create(lb, ll, arith::CmpFPredicate::OGT, logits16, best[0]);
          return SmallVector<Value>{
              arith::SelectOp::create(lb, ll, greater, logits16, best[0]),
              arith::SelectOp::create(lb, ll, greater, tokens, best[1])};
        });
    // The largest value over both parts, then the first token holding it:
    // each lane kept its own first.
    Value max = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(lowest));
    for (const SmallVector<Value> &part : {wide, narrow})
      if (!part.empty())
        max = arith::MaximumFOp::create(
            b, loc, max,
            vector::ReductionOp::create(b, loc, vector::CombiningKind::MAXIMUMF, part[0]));
    Value index = arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(vocab));
    for (const SmallVector<Value> &part : {wide, narrow}) {
      if (part.empty())
        continue;
      int64_t lanes = cast<VectorType>(part[0].getType()).getDimSize(0);
      Value holds = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, part[0],
                                          splat(b, loc, max, lanes));
      Value candidates =
          arith::SelectOp::create(b, loc, holds, part[1], splat(b, loc, index, lanes));
      index = arith::MinSIOp::create(
          b, loc, index,
          vector::ReductionOp::create(b, loc, vector::CombiningKind::MINSI, candidates));
    }
    // No lane held a number (all NaN): token 0, as the runtime's argmax.
    Value none = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, index,
                                       arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(vocab)));
    index = arith::SelectOp::create(b, loc, none,
                                    arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(0)), index);
    return {max, index};
  }

  /// exp((logit - max) / T) at (row, token) of `logits` [1, n, vocab]: the
  /// unnormalized softmax weight.
  static Value weight(OpBuilder &b, Location loc, Value logits, Value row, Value token, Value max,
                      Value inverseT) {
    Value shifted = arith::SubFOp::create(b, loc, logitAt(b, loc, logits, row, token), max);
    return math::ExpOp::create(b, loc, arith::MulFOp::create(b, loc, shifted, inverseT));
  }

  /// The same for tokens [t, t + lanes), as f32 lanes.
  static Value weights(OpBuilder &b, Location loc, Value logits, Value row, Value t, int64_t lanes,
                       Value max, Value inverseT) {
    Value shifted = arith::SubFOp::create(b, loc, readLogits(b, loc, logits, row, t, lanes),
                                          splat(b, loc, max, lanes));
    return math::ExpOp::create(
        b, loc, arith::MulFOp::create(b, loc, shifted, splat(b, loc, inverseT, lanes)));
  }

  /// softmax(logits / T) at (row, token) of `logits` [1, n, vocab], given
  /// that row's normalizers (f32 scalars); row and token are indices.
  static Value probability(OpBuilder &b, Location loc, Value logits, Value row, Value token,
                           Value max, Value sum, Value inverseT) {
    return arith::DivFOp::create(b, loc, weight(b, loc, logits, row, token, max, inverseT), sum);
  }

  /// Weights of tokens [t, t + lanes), as f32 lanes.
  using WeightFn = function_ref<Value(OpBuilder &, Location, Value, int64_t)>;

  /// The sum of `weightAt` over the vocabulary.
  static Value sumOver(OpBuilder &b, Location loc, int64_t vocab, WeightFn weightAt) {
    auto [wide, narrow] = overVocabulary(
        b, loc, vocab,
        [&](int64_t lanes) -> SmallVector<Value> {
          return {arith::ConstantOp::create(
              b, loc, DenseElementsAttr::get(VectorType::get({lanes}, b.getF32Type()), 0.0f))};
        },
        [&](OpBuilder &lb, Location ll, Value t, int64_t lanes, ValueRange sum) {
          return SmallVector<Value>{
              arith::AddFOp::create(lb, ll, sum[0], weightAt(lb, ll, t, lanes))};
        });
    Value total = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0.0f));
    for (const SmallVector<Value> &part : {wide, narrow})
      if (!part.empty())
        total = arith::AddFOp::create(b, loc, total, addLanes(b, loc, part[0]));
    return total;
  }

  /// The normalizers of softmax(logits / T) for row `row` of `logits`
  /// [1, n, vocab]: its largest logit and sum_t exp((l_t - max) / T), both
  /// f32. `inverseT` is 1 / T.
  std::pair<Value, Value> softmaxNormalizers(OpBuilder &b, Location loc, Value logits,
                                             int64_t row, Value inverseT) {
    int64_t vocab = cast<RankedTensorType>(logits.getType()).getShape().back();
    Value max = rowMax(b, loc, logits, row).first;
    Value rowIndex = arith::ConstantIndexOp::create(b, loc, row);
    Value sum = sumOver(b, loc, vocab, [&](OpBuilder &lb, Location ll, Value t, int64_t lanes) {
      return weights(lb, ll, logits, rowIndex, t, lanes, max, inverseT);
    });
    return {max, sum};
  }

  /// The first position of a sequential scan whose running sum passes
  /// `threshold`, over `count` positions from `begin` with weights
  /// `weightAt(p)` (f32 scalars) and the running sum starting at `start`;
  /// the last position of positive weight when none does. Returns the
  /// position (index) and the running sum before it.
  static std::pair<Value, Value> scan(OpBuilder &b, Location loc, Value begin, Value end,
                                      Value start, Value threshold,
                                      function_ref<Value(OpBuilder &, Location, Value)> weightAt) {
    Value zero = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0.0f));
    Value last = arith::SubIOp::create(b, loc, end, arith::ConstantIndexOp::create(b, loc, 1));
    Value notFound = arith::ConstantOp::create(b, loc, b.getBoolAttr(false));
    // (running sum, chosen, sum before it, found, last positive, sum before that)
    auto loop = scf::ForOp::create(
        b, loc, begin, end, arith::ConstantIndexOp::create(b, loc, 1),
        ValueRange{start, last, start, notFound, last, start},
        [&](OpBuilder &lb, Location ll, Value p, ValueRange state) {
          Value weight = weightAt(lb, ll, p);
          Value running = arith::AddFOp::create(lb, ll, state[0], weight);
          Value positive = arith::CmpFOp::create(lb, ll, arith::CmpFPredicate::OGT, weight, zero);
          Value passes =
              arith::CmpFOp::create(lb, ll, arith::CmpFPredicate::OGT, running, threshold);
          Value fresh = arith::XOrIOp::create(
              lb, ll, state[3], arith::ConstantOp::create(lb, ll, lb.getBoolAttr(true)));
          Value hit = arith::AndIOp::create(
              lb, ll, fresh, arith::AndIOp::create(lb, ll, positive, passes));
          scf::YieldOp::create(
              lb, ll,
              ValueRange{running, arith::SelectOp::create(lb, ll, hit, p, state[1]),
                         arith::SelectOp::create(lb, ll, hit, state[0], state[2]),
                         arith::OrIOp::create(lb, ll, state[3], hit),
                         arith::SelectOp::create(lb, ll, positive, p, state[4]),
                         arith::SelectOp::create(lb, ll, positive, state[0], state[5])});
        });
    Value found = loop.getResult(3);
    return {arith::SelectOp::create(b, loc, found, loop.getResult(1), loop.getResult(4)),
            arith::SelectOp::create(b, loc, found, loop.getResult(2), loop.getResult(5))};
  }

  /// A token drawn with the uniform `u` in [0, 1) from the weights
  /// `weightAt` (not negative, summing to `total`) over the vocabulary: the
  /// first token whose running sum passes u times the total, as the
  /// runtime's sampler draws (the last token of positive weight when
  /// rounding leaves none). The sums of 16-token chunks (one vector pass),
  /// a scan over them, then a scan within the chunk found.
  Value draw(OpBuilder &b, Location loc, int64_t vocab, Value u, Value total, WeightFn weightAt) {
    Type f32 = b.getF32Type();
    int64_t chunks = (vocab + kLanes - 1) / kLanes, full = vocab / kLanes;
    Value sums = tensor::EmptyOp::create(b, loc, ArrayRef<int64_t>{chunks}, f32);
    if (full > 0)
      sums = scf::ForOp::create(
                 b, loc, arith::ConstantIndexOp::create(b, loc, 0),
                 arith::ConstantIndexOp::create(b, loc, full),
                 arith::ConstantIndexOp::create(b, loc, 1), ValueRange{sums},
                 [&](OpBuilder &lb, Location ll, Value c, ValueRange state) {
                   Value t = arith::MulIOp::create(lb, ll, c,
                                                   arith::ConstantIndexOp::create(lb, ll, kLanes));
                   Value sum = addLanes(lb, ll, weightAt(lb, ll, t, kLanes));
                   scf::YieldOp::create(
                       lb, ll, ValueRange{tensor::InsertOp::create(lb, ll, sum, state[0], c)});
                 })
                 .getResult(0);
    if (full < chunks) {
      Value tail = sumOver(b, loc, vocab - full * kLanes,
                           [&](OpBuilder &lb, Location ll, Value t, int64_t lanes) {
                             Value token = arith::AddIOp::create(
                                 lb, ll, t, arith::ConstantIndexOp::create(lb, ll, full * kLanes));
                             return weightAt(lb, ll, token, lanes);
                           });
      sums = tensor::InsertOp::create(b, loc, tail, sums,
                                      ValueRange{arith::ConstantIndexOp::create(b, loc, full)});
    }
    Value threshold = arith::MulFOp::create(b, loc, u, total);
    Value zero = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0.0f));
    auto [chunk, before] =
        scan(b, loc, arith::ConstantIndexOp::create(b, loc, 0),
             arith::ConstantIndexOp::create(b, loc, chunks), zero, threshold,
             [&](OpBuilder &lb, Location ll, Value c) {
               return tensor::ExtractOp::create(lb, ll, sums, ValueRange{c}).getResult();
             });
    Value first = arith::MulIOp::create(b, loc, chunk, arith::ConstantIndexOp::create(b, loc, kLanes));
    Value end = arith::MinUIOp::create(
        b, loc, arith::AddIOp::create(b, loc, first, arith::ConstantIndexOp::create(b, loc, kLanes)),
        arith::ConstantIndexOp::create(b, loc, vocab));
    Value token = scan(b, loc, first, end, before, threshold,
                       [&](OpBuilder &lb, Location ll, Value t) {
                         return vector::ExtractOp::create(lb, ll, weightAt(lb, ll, t, 1),
                                                          ArrayRef<int64_t>{0})
                             .getResult();
                       })
                      .first;
    return arith::IndexCastOp::create(b, loc, b.getI64Type(), token);
  }

  /// The first index of the largest value of each row of `logits`
  /// [1, n, vocab], as a linalg reduction ([1, n] i64): what a GPU target
  /// turns into a kernel, where host loops could not read the logits.
  Value argmaxRows(OpBuilder &b, Location loc, Value logits) {
    auto type = cast<RankedTensorType>(logits.getType());
    int64_t n = type.getDimSize(1);
    Type element = type.getElementType(), i64 = b.getI64Type();
    Value lowest = arith::ConstantOp::create(
        b, loc, b.getFloatAttr(element, -std::numeric_limits<double>::infinity()));
    Value zero = arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(0));
    auto filled = [&](Value value, Type t) {
      return linalg::FillOp::create(
                 b, loc, value,
                 tensor::EmptyOp::create(b, loc, ArrayRef<int64_t>{1, n}, t).getResult())
          .getResult(0);
    };
    AffineMap all = b.getMultiDimIdentityMap(3);
    AffineMap rows = AffineMap::get(3, 0, {b.getAffineDimExpr(0), b.getAffineDimExpr(1)},
                                    b.getContext());
    Value maxInit = filled(lowest, element), indexInit = filled(zero, i64);
    auto reduce = linalg::GenericOp::create(
        b, loc, TypeRange{maxInit.getType(), indexInit.getType()}, ValueRange{logits},
        ValueRange{maxInit, indexInit}, ArrayRef<AffineMap>{all, rows, rows},
        ArrayRef<utils::IteratorType>{utils::IteratorType::parallel,
                                      utils::IteratorType::parallel,
                                      utils::IteratorType::reduction},
        [&](OpBuilder &nb, Location nl, ValueRange args) {
          Value index = arith::IndexCastOp::create(nb, nl, i64, linalg::IndexOp::create(nb, nl, 2));
          Value greater =
              arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::OGT, args[0], args[1]);
          linalg::YieldOp::create(
              nb, nl,
              ValueRange{arith::SelectOp::create(nb, nl, greater, args[0], args[1]),
                         arith::SelectOp::create(nb, nl, greater, index, args[2])});
        });
    return reduce.getResult(1);
  }

  /// The argmax (i64) of each of the first `rows` rows of `logits`.
  SmallVector<Value> argmaxes(OpBuilder &b, Location loc, Value logits, int64_t rows) {
    SmallVector<Value> choices;
    Value all = greedyOnly ? argmaxRows(b, loc, logits) : Value();
    for (int64_t i = 0; i < rows; ++i)
      choices.push_back(
          greedyOnly
              ? tensor::ExtractOp::create(b, loc, all,
                                          ValueRange{arith::ConstantIndexOp::create(b, loc, 0),
                                                     arith::ConstantIndexOp::create(b, loc, i)})
                    .getResult()
              : rowMax(b, loc, logits, i).second);
    return choices;
  }

  void build(ModuleOp module, SymbolTable &symbols, func::FuncOp verify, func::FuncOp draft,
             KVCacheType targetCache, KVCacheType draftCache, Type element, Type draftElement,
             int64_t vocab) {
    MLIRContext *context = module.getContext();
    OpBuilder b(context);
    Location loc = NameLoc::get(b.getStringAttr("spec_step"), module.getLoc());
    Type i64 = b.getI64Type(), f32 = b.getF32Type(), index = b.getIndexType();
    int64_t K = k;
    auto scalar = RankedTensorType::get({}, i64);
    auto oneToken = RankedTensorType::get({1, 1}, i64);
    auto candidates = RankedTensorType::get({1, K + 1}, i64);
    auto temperatureType = RankedTensorType::get({}, f32);
    auto uniformsType = RankedTensorType::get({2 * K + 1}, f32);
    SmallVector<Type> inputs = {oneToken, targetCache, scalar, draftCache, scalar};
    if (!greedyOnly)
      inputs.append({temperatureType, uniformsType});
    auto func = func::FuncOp::create(loc, "spec_step",
                                     b.getFunctionType(inputs, {candidates, scalar, scalar}));
    func.setPublic();
    func->setAttr(HastenDialect::kEntryKindAttrName,
                  b.getStringAttr(stringifyEntryKind(EntryKind::SpecStep)));
    auto describe = [&](bool result, unsigned i, StringRef name, TensorRole role, bool integer) {
      auto set = [&](StringRef attr, Attribute value) {
        result ? func.setResultAttr(i, attr, value) : func.setArgAttr(i, attr, value);
      };
      set(HastenDialect::kOnnxNameAttrName, b.getStringAttr(name));
      set(HastenDialect::kRoleAttrName, b.getStringAttr(stringifyTensorRole(role)));
      if (integer)
        set(HastenDialect::kOnnxElemTypeAttrName, b.getI32IntegerAttr(kOnnxInt64));
    };
    describe(false, 0, "input_ids", TensorRole::TokenIds, true);
    describe(false, 1, "kv_cache", TensorRole::KVCache, false);
    describe(false, 2, "past_length", TensorRole::PastLength, true);
    describe(false, 3, "draft_kv_cache", TensorRole::DraftKVCache, false);
    describe(false, 4, "draft_past_length", TensorRole::DraftPastLength, true);
    if (!greedyOnly) {
      describe(false, 5, "temperature", TensorRole::Temperature, false);
      describe(false, 6, "uniforms", TensorRole::Uniforms, false);
    }
    describe(true, 0, "accepted_tokens", TensorRole::AcceptedTokens, true);
    describe(true, 1, "past_length", TensorRole::PastLength, true);
    describe(true, 2, "draft_past_length", TensorRole::DraftPastLength, true);
    symbols.insert(func);

    Block *body = func.addEntryBlock();
    b.setInsertionPointToStart(body);
    Value pending = body->getArgument(0), cache = body->getArgument(1),
          past = body->getArgument(2), draftCacheArg = body->getArgument(3),
          draftPast = body->getArgument(4);
    Value uniforms = greedyOnly ? Value() : body->getArgument(6);
    auto cst = [&](int64_t v) { return arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(v)); };
    auto cstIndex = [&](int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); };
    auto toScalar = [&](Value v) { return tensor::FromElementsOp::create(b, loc, scalar, v); };
    auto uniform = [&](OpBuilder &nb, int64_t i) {
      return tensor::ExtractOp::create(nb, loc, uniforms,
                                       ValueRange{arith::ConstantIndexOp::create(nb, loc, i)});
    };
    Value zeroIndex = cstIndex(0);
    Value pendingToken =
        tensor::ExtractOp::create(b, loc, pending, ValueRange{zeroIndex, zeroIndex});
    Value draftLength = tensor::ExtractOp::create(b, loc, draftPast, ValueRange{});
    Value targetLength = tensor::ExtractOp::create(b, loc, past, ValueRange{});
    // Above zero, tokens are drawn from softmax(logits / temperature) and
    // accepted by rejection sampling; otherwise argmax and exact match.
    Value sampling, inverseT;
    if (!greedyOnly) {
      Value temperature = tensor::ExtractOp::create(b, loc, body->getArgument(5), ValueRange{});
      Value zeroF32 = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0.0f));
      Value oneF32 = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(1.0f));
      sampling = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, temperature, zeroF32);
      inverseT = arith::DivFOp::create(b, loc, oneF32, temperature);
    }

    // K draft decode steps: the pending token, then each proposal in turn.
    // Each proposal comes with q, the draft's probability of it, and the
    // normalizers of the draft's distribution at that step.
    SmallVector<Value> proposals, draftProbability, draftMax, draftSum;
    Value token = pending;
    auto draftLogitsType = RankedTensorType::get({1, 1, vocab}, draftElement);
    // The draft's logits at every step, for the residual distribution.
    Value draftLogits =
        greedyOnly ? Value()
                   : tensor::EmptyOp::create(b, loc, ArrayRef<int64_t>{1, K, vocab}, draftElement)
                         .getResult();
    for (int64_t i = 0; i < K; ++i) {
      Value stepPast = toScalar(arith::AddIOp::create(b, loc, draftLength, cst(i)));
      Value stepLogits = DecodeStepOp::create(b, loc, draftLogitsType, draft.getSymName(), token,
                                              draftCacheArg, stepPast);
      if (greedyOnly) {
        proposals.push_back(argmaxes(b, loc, stepLogits, 1).front());
        token = tensor::FromElementsOp::create(b, loc, oneToken, proposals.back());
        continue;
      }
      draftLogits = tensor::InsertSliceOp::create(
          b, loc, stepLogits, draftLogits, ArrayRef<OpFoldResult>{b.getIndexAttr(0), b.getIndexAttr(i), b.getIndexAttr(0)},
          ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1), b.getIndexAttr(vocab)},
          ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1), b.getIndexAttr(1)});
      auto choice = scf::IfOp::create(
          b, loc, sampling,
          [&](OpBuilder &tb, Location tl) {
            Value max, sum;
            std::tie(max, sum) = softmaxNormalizers(tb, tl, stepLogits, 0, inverseT);
            Value c0 = arith::ConstantIndexOp::create(tb, tl, 0);
            Value drawn =
                draw(tb, tl, vocab, uniform(tb, i), sum,
                     [&](OpBuilder &wb, Location wl, Value t, int64_t lanes) {
                       return weights(wb, wl, stepLogits, c0, t, lanes, max, inverseT);
                     });
            Value q = probability(tb, tl, stepLogits, c0,
                                  arith::IndexCastOp::create(tb, tl, index, drawn), max, sum,
                                  inverseT);
            scf::YieldOp::create(tb, tl, ValueRange{drawn, q, max, sum});
          },
          [&](OpBuilder &eb, Location el) {
            Value best = argmaxes(eb, el, stepLogits, 1).front();
            Value one = arith::ConstantOp::create(eb, el, eb.getF32FloatAttr(1.0f));
            scf::YieldOp::create(eb, el, ValueRange{best, one, one, one});
          });
      proposals.push_back(choice.getResult(0));
      draftProbability.push_back(choice.getResult(1));
      draftMax.push_back(choice.getResult(2));
      draftSum.push_back(choice.getResult(3));
      token = tensor::FromElementsOp::create(b, loc, oneToken, proposals.back());
    }

    // The target scores the pending token and the proposals in one pass.
    SmallVector<Value> candidateTokens = {pendingToken};
    candidateTokens.append(proposals);
    Value verifyTokens = tensor::FromElementsOp::create(b, loc, candidates, candidateTokens);
    Value verifyLogits = DecodeStepOp::create(
        b, loc, RankedTensorType::get({1, K + 1, vocab}, element), verify.getSymName(),
        verifyTokens, cache, past);

    // Acceptance: how many proposals are kept, and the target's next token.
    Value accepted, next;
    if (greedyOnly) {
      std::tie(accepted, next) =
          acceptGreedy(b, loc, argmaxes(b, loc, verifyLogits, K + 1), proposals);
    } else {
      auto acceptance = scf::IfOp::create(
          b, loc, sampling,
          [&](OpBuilder &tb, Location tl) {
            auto [accepted, next] =
                acceptBySampling(tb, tl, verifyLogits, draftLogits, proposals, draftProbability,
                                 draftMax, draftSum, inverseT, uniforms);
            scf::YieldOp::create(tb, tl, ValueRange{accepted, next});
          },
          [&](OpBuilder &eb, Location el) {
            auto [accepted, next] =
                acceptGreedy(eb, el, argmaxes(eb, el, verifyLogits, K + 1), proposals);
            scf::YieldOp::create(eb, el, ValueRange{accepted, next});
          });
      accepted = acceptance.getResult(0);
      next = acceptance.getResult(1);
    }
    // Emitted: proposals[0, accepted), then next; -1 pads the rest.
    SmallVector<Value> emitted;
    for (int64_t i = 0; i <= K; ++i) {
      Value position = cstIndex(i);
      Value isNext = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, position, accepted);
      Value value = arith::SelectOp::create(b, loc, isNext, next, cst(-1));
      if (i < K) {
        Value isProposal =
            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, position, accepted);
        value = arith::SelectOp::create(b, loc, isProposal, proposals[i], value);
      }
      emitted.push_back(value);
    }
    Value acceptedI64 = arith::IndexCastOp::create(b, loc, i64, accepted);
    // The caches keep the pending token and the accepted proposals: the
    // target scored all K + 1, the draft ran the pending token and K - 1
    // proposals.
    Value kept = arith::AddIOp::create(b, loc, acceptedI64, cst(1));
    Value newTargetLength = arith::AddIOp::create(b, loc, targetLength, kept);
    Value newDraftLength = arith::AddIOp::create(
        b, loc, draftLength, arith::MinSIOp::create(b, loc, kept, cst(K)));
    func::ReturnOp::create(b, loc,
                           ValueRange{tensor::FromElementsOp::create(b, loc, candidates, emitted),
                                      toScalar(newTargetLength), toScalar(newDraftLength)});
  }

  /// Greedy acceptance: the longest prefix of proposals equal to the
  /// target's argmax at each position (`targetChoice`, K + 1 of them), then
  /// the target's argmax after it.
  std::pair<Value, Value> acceptGreedy(OpBuilder &b, Location loc, ArrayRef<Value> targetChoice,
                                       ArrayRef<Value> proposals) {
    int64_t K = proposals.size();
    Value matching = arith::ConstantOp::create(b, loc, b.getBoolAttr(true));
    Value accepted = arith::ConstantIndexOp::create(b, loc, 0);
    for (auto [proposal, choice] : llvm::zip(proposals, targetChoice)) {
      Value equal = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, proposal, choice);
      matching = arith::AndIOp::create(b, loc, matching, equal);
      accepted = arith::AddIOp::create(
          b, loc, accepted,
          arith::IndexCastOp::create(b, loc, b.getIndexType(),
                                     arith::ExtUIOp::create(b, loc, b.getI64Type(), matching)));
    }
    Value next = tensor::ExtractOp::create(
        b, loc,
        tensor::FromElementsOp::create(b, loc, RankedTensorType::get({K + 1}, b.getI64Type()),
                                       targetChoice),
        ValueRange{accepted});
    return {accepted, next};
  }

  /// Rejection sampling (Leviathan et al., Chen et al.): proposal i, drawn
  /// with the draft's probability q, is kept while u_{K+i} q < p, the
  /// target's probability of it; at the first rejection j the next token is
  /// drawn from max(0, p_j - q_j) normalized (from p_j when that is all
  /// zero), after K acceptances from the target's p_K, with u_{2K}. The
  /// output is distributed as the target's own samples.
  std::pair<Value, Value> acceptBySampling(OpBuilder &b, Location loc, Value verifyLogits,
                                           Value draftLogits, ArrayRef<Value> proposals,
                                           ArrayRef<Value> draftProbability,
                                           ArrayRef<Value> draftMax, ArrayRef<Value> draftSum,
                                           Value inverseT, Value uniforms) {
    int64_t K = proposals.size();
    int64_t vocab = cast<RankedTensorType>(verifyLogits.getType()).getShape().back();
    Type index = b.getIndexType(), f32 = b.getF32Type();
    auto cstIndex = [&](int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); };
    auto uniform = [&](int64_t i) {
      return tensor::ExtractOp::create(b, loc, uniforms, ValueRange{cstIndex(i)});
    };
    SmallVector<Value> targetMax, targetSum;
    for (int64_t i = 0; i <= K; ++i) {
      auto [max, sum] = softmaxNormalizers(b, loc, verifyLogits, i, inverseT);
      targetMax.push_back(max);
      targetSum.push_back(sum);
    }
    Value zeroIndex = cstIndex(0);
    Value matching = arith::ConstantOp::create(b, loc, b.getBoolAttr(true));
    Value accepted = zeroIndex;
    for (int64_t i = 0; i < K; ++i) {
      Value row = cstIndex(i);
      Value p = probability(
          b, loc, verifyLogits, row, arith::IndexCastOp::create(b, loc, index, proposals[i]),
          targetMax[i], targetSum[i], inverseT);
      Value scaled = arith::MulFOp::create(b, loc, uniform(K + i), draftProbability[i]);
      Value keep = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, scaled, p);
      matching = arith::AndIOp::create(b, loc, matching, keep);
      accepted = arith::AddIOp::create(
          b, loc, accepted,
          arith::IndexCastOp::create(b, loc, index,
                                     arith::ExtUIOp::create(b, loc, b.getI64Type(), matching)));
    }
    // The row the next token comes from, and the draft's distribution there
    // (none after K acceptances).
    Value rejected = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, accepted, cstIndex(K));
    Value draftRow = arith::MinUIOp::create(b, loc, accepted, cstIndex(K - 1));
    // One of a few scalars, chosen by an index: through a small tensor.
    auto pick = [&](ArrayRef<Value> values, Value at) {
      return tensor::ExtractOp::create(
          b, loc,
          tensor::FromElementsOp::create(
              b, loc, RankedTensorType::get({int64_t(values.size())}, f32), values),
          ValueRange{at});
    };
    Value qMax = pick(draftMax, draftRow), qSum = pick(draftSum, draftRow);
    Value pMax = pick(targetMax, accepted), pSum = pick(targetSum, accepted);
    Value zero = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0.0f));
    // p and max(0, p - q) over tokens [t, t + lanes).
    auto target = [&](OpBuilder &wb, Location wl, Value t, int64_t lanes) {
      return arith::DivFOp::create(
                 wb, wl, weights(wb, wl, verifyLogits, accepted, t, lanes, pMax, inverseT),
                 splat(wb, wl, pSum, lanes))
          .getResult();
    };
    auto residual = [&](OpBuilder &wb, Location wl, Value t, int64_t lanes) {
      Value none = splat(wb, wl, zero, lanes);
      Value q = arith::DivFOp::create(
          wb, wl, weights(wb, wl, draftLogits, draftRow, t, lanes, qMax, inverseT),
          splat(wb, wl, qSum, lanes));
      q = arith::SelectOp::create(wb, wl, rejected, q, none);
      return arith::MaximumFOp::create(
                 wb, wl, arith::SubFOp::create(wb, wl, target(wb, wl, t, lanes), q), none)
          .getResult();
    };
    Value residualMass = sumOver(b, loc, vocab, residual);
    // p = q leaves no residual: draw from p (which sums to one).
    Value noResidual = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLE, residualMass, zero);
    Value total = arith::SelectOp::create(
        b, loc, noResidual, arith::ConstantOp::create(b, loc, b.getF32FloatAttr(1.0f)),
        residualMass);
    Value next = draw(b, loc, vocab, uniform(2 * K), total,
                      [&](OpBuilder &wb, Location wl, Value t, int64_t lanes) {
                        return arith::SelectOp::create(wb, wl, noResidual, target(wb, wl, t, lanes),
                                                       residual(wb, wl, t, lanes))
                            .getResult();
                      });
    return {accepted, next};
  }
};

} // namespace
