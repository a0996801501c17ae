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
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
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
    func::FuncOp draft = findEntry(module, EntryKind::Decode, "draft");
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

  // The reductions below are sequential loops over one row with their
  // accumulators in iter_args: a linalg reduction over [1, k + 1, vocab]
  // becomes a parallel loop over the k + 1 rows whose threads store their
  // running maxima to one cache line at every element, which made a step
  // several times slower than the runtime's loop.

  /// `v` as f32 (logits may be f16 or bf16).
  static Value toF32(OpBuilder &b, Location loc, Value v) {
    return v.getType().isF32() ? v : arith::ExtFOp::create(b, loc, b.getF32Type(), v).getResult();
  }

  /// The logit at (row, token) of `logits` [1, n, vocab], as f32.
  static Value logitAt(OpBuilder &b, Location loc, Value logits, Value row, Value token) {
    Value zero = arith::ConstantIndexOp::create(b, loc, 0);
    return toF32(b, loc, tensor::ExtractOp::create(b, loc, logits, ValueRange{zero, row, token}));
  }

  /// The largest logit of row `row` of `logits` [1, n, vocab] (f32) and its
  /// first index (i64).
  std::pair<Value, Value> rowMax(OpBuilder &b, Location loc, Value logits, int64_t row) {
    int64_t vocab = cast<RankedTensorType>(logits.getType()).getShape().back();
    Value rowIndex = arith::ConstantIndexOp::create(b, loc, row);
    Value lowest = arith::ConstantOp::create(
        b, loc, b.getF32FloatAttr(-std::numeric_limits<float>::infinity()));
    Value first = arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(0));
    auto loop = scf::ForOp::create(
        b, loc, arith::ConstantIndexOp::create(b, loc, 0),
        arith::ConstantIndexOp::create(b, loc, vocab), arith::ConstantIndexOp::create(b, loc, 1),
        ValueRange{lowest, first}, [&](OpBuilder &lb, Location ll, Value t, ValueRange best) {
          Value logit = logitAt(lb, ll, logits, rowIndex, t);
          Value greater = arith::CmpFOp::create(lb, ll, arith::CmpFPredicate::OGT, logit, best[0]);
          Value token = arith::IndexCastOp::create(lb, ll, lb.getI64Type(), t);
          scf::YieldOp::create(lb, ll,
                               ValueRange{arith::SelectOp::create(lb, ll, greater, logit, best[0]),
                                          arith::SelectOp::create(lb, ll, greater, token, best[1])});
        });
    return {loop.getResult(0), loop.getResult(1)};
  }

  /// The normalizers of softmax(logits / T) for row `row` of `logits`
  /// [1, n, vocab]: its largest logit and sum_t exp((l_t - max) / T), both
  /// f32. `inverseT` is 1 / T.
  std::pair<Value, Value> softmaxNormalizers(OpBuilder &b, Location loc, Value logits,
                                             int64_t row, Value inverseT) {
    int64_t vocab = cast<RankedTensorType>(logits.getType()).getShape().back();
    Value max = rowMax(b, loc, logits, row).first;
    Value rowIndex = arith::ConstantIndexOp::create(b, loc, row);
    Value sum = sumOver(b, loc, vocab, [&](OpBuilder &lb, Location ll, Value t) {
      return weight(lb, ll, logits, rowIndex, t, max, inverseT);
    });
    return {max, sum};
  }

  /// exp((logit - max) / T) at (row, token) of `logits` [1, n, vocab]: the
  /// unnormalized softmax weight.
  static Value weight(OpBuilder &b, Location loc, Value logits, Value row, Value token, Value max,
                      Value inverseT) {
    Value shifted = arith::SubFOp::create(b, loc, logitAt(b, loc, logits, row, token), max);
    return math::ExpOp::create(b, loc, arith::MulFOp::create(b, loc, shifted, inverseT));
  }

  /// softmax(logits / T) at (row, token) of `logits` [1, n, vocab], given
  /// that row's normalizers (f32 scalars); row and token are indices.
  static Value probability(OpBuilder &b, Location loc, Value logits, Value row, Value token,
                           Value max, Value sum, Value inverseT) {
    return arith::DivFOp::create(b, loc, weight(b, loc, logits, row, token, max, inverseT), sum);
  }

  using WeightFn = function_ref<Value(OpBuilder &, Location, Value)>;

  /// The sum of `weightAt(t)` (f32) over the vocabulary, in one loop.
  static Value sumOver(OpBuilder &b, Location loc, int64_t vocab, WeightFn weightAt) {
    auto loop = scf::ForOp::create(
        b, loc, arith::ConstantIndexOp::create(b, loc, 0),
        arith::ConstantIndexOp::create(b, loc, vocab), arith::ConstantIndexOp::create(b, loc, 1),
        ValueRange{arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0.0f))},
        [&](OpBuilder &lb, Location ll, Value t, ValueRange sum) {
          scf::YieldOp::create(
              lb, ll, ValueRange{arith::AddFOp::create(lb, ll, sum[0], weightAt(lb, ll, t))});
        });
    return loop.getResult(0);
  }

  /// A token drawn with the uniform `u` in [0, 1) from the weights
  /// `weightAt(t)` (f32, not negative, summing to `total`) over the
  /// vocabulary: the first token whose running sum passes u times the total,
  /// as the runtime's sampler draws (the last token of positive weight when
  /// rounding leaves none). One sequential loop.
  Value draw(OpBuilder &b, Location loc, int64_t vocab, Value u, Value total, WeightFn weightAt) {
    Type i64 = b.getI64Type();
    Value c0 = arith::ConstantIndexOp::create(b, loc, 0);
    Value c1 = arith::ConstantIndexOp::create(b, loc, 1);
    Value end = arith::ConstantIndexOp::create(b, loc, vocab);
    Value zero = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0.0f));
    Value threshold = arith::MulFOp::create(b, loc, u, total);
    Value none = arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(vocab - 1));
    Value notFound = arith::ConstantOp::create(b, loc, b.getBoolAttr(false));
    // (running sum, chosen token, found, last token of positive weight)
    auto search = scf::ForOp::create(
        b, loc, c0, end, c1, ValueRange{zero, none, notFound, none},
        [&](OpBuilder &lb, Location ll, Value t, ValueRange state) {
          Value weight = weightAt(lb, ll, t);
          Value token = arith::IndexCastOp::create(lb, ll, i64, t);
          Value running = arith::AddFOp::create(lb, ll, state[0], weight);
          Value positive = arith::CmpFOp::create(lb, ll, arith::CmpFPredicate::OGT, weight, zero);
          Value passes =
              arith::CmpFOp::create(lb, ll, arith::CmpFPredicate::OGT, running, threshold);
          Value fresh = arith::XOrIOp::create(
              lb, ll, state[2], arith::ConstantOp::create(lb, ll, lb.getBoolAttr(true)));
          Value hit = arith::AndIOp::create(
              lb, ll, fresh, arith::AndIOp::create(lb, ll, positive, passes));
          scf::YieldOp::create(
              lb, ll,
              ValueRange{running, arith::SelectOp::create(lb, ll, hit, token, state[1]),
                         arith::OrIOp::create(lb, ll, state[2], hit),
                         arith::SelectOp::create(lb, ll, positive, token, state[3])});
        });
    return arith::SelectOp::create(b, loc, search.getResult(2), search.getResult(1),
                                   search.getResult(3));
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
    auto func = func::FuncOp::create(
        loc, "spec_step",
        b.getFunctionType(
            {oneToken, targetCache, scalar, draftCache, scalar, temperatureType, uniformsType},
            {candidates, scalar, scalar}));
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
    describe(false, 5, "temperature", TensorRole::Temperature, false);
    describe(false, 6, "uniforms", TensorRole::Uniforms, false);
    describe(true, 0, "accepted_tokens", TensorRole::AcceptedTokens, true);
    describe(true, 1, "past_length", TensorRole::PastLength, true);
    describe(true, 2, "draft_past_length", TensorRole::DraftPastLength, true);
    symbols.insert(func);

    Block *body = func.addEntryBlock();
    b.setInsertionPointToStart(body);
    Value pending = body->getArgument(0), cache = body->getArgument(1),
          past = body->getArgument(2), draftCacheArg = body->getArgument(3),
          draftPast = body->getArgument(4), uniforms = body->getArgument(6);
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
    Value temperature = tensor::ExtractOp::create(b, loc, body->getArgument(5), ValueRange{});
    Value zeroF32 = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0.0f));
    Value oneF32 = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(1.0f));
    Value sampling = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, temperature, zeroF32);
    Value inverseT = arith::DivFOp::create(b, loc, oneF32, temperature);

    // K draft decode steps: the pending token, then each proposal in turn.
    // Each proposal comes with q, the draft's probability of it, and the
    // normalizers of the draft's distribution at that step.
    SmallVector<Value> proposals, draftProbability, draftMax, draftSum;
    Value token = pending;
    auto draftLogitsType = RankedTensorType::get({1, 1, vocab}, draftElement);
    Value draftLogits =
        tensor::EmptyOp::create(b, loc, ArrayRef<int64_t>{1, K, vocab}, draftElement);
    for (int64_t i = 0; i < K; ++i) {
      Value stepPast = toScalar(arith::AddIOp::create(b, loc, draftLength, cst(i)));
      Value stepLogits = DecodeStepOp::create(b, loc, draftLogitsType, draft.getSymName(), token,
                                              draftCacheArg, stepPast);
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
                draw(tb, tl, vocab, uniform(tb, i), sum, [&](OpBuilder &wb, Location wl, Value t) {
                  return weight(wb, wl, stepLogits, c0, t, max, inverseT);
                });
            Value q = probability(tb, tl, stepLogits, c0,
                                  arith::IndexCastOp::create(tb, tl, index, drawn), max, sum,
                                  inverseT);
            scf::YieldOp::create(tb, tl, ValueRange{drawn, q, max, sum});
          },
          [&](OpBuilder &eb, Location el) {
            Value best = rowMax(eb, el, stepLogits, 0).second;
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
    auto acceptance = scf::IfOp::create(
        b, loc, sampling,
        [&](OpBuilder &tb, Location tl) {
          auto [accepted, next] =
              acceptBySampling(tb, tl, verifyLogits, draftLogits, proposals, draftProbability,
                               draftMax, draftSum, inverseT, uniforms);
          scf::YieldOp::create(tb, tl, ValueRange{accepted, next});
        },
        [&](OpBuilder &eb, Location el) {
          auto [accepted, next] = acceptGreedy(eb, el, verifyLogits, proposals);
          scf::YieldOp::create(eb, el, ValueRange{accepted, next});
        });
    Value accepted = acceptance.getResult(0), next = acceptance.getResult(1);
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
  /// target's argmax, then the target's argmax after it.
  std::pair<Value, Value> acceptGreedy(OpBuilder &b, Location loc, Value verifyLogits,
                                       ArrayRef<Value> proposals) {
    int64_t K = proposals.size();
    SmallVector<Value> targetChoice;
    for (int64_t i = 0; i <= K; ++i)
      targetChoice.push_back(rowMax(b, loc, verifyLogits, i).second);
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
    auto target = [&](OpBuilder &wb, Location wl, Value t) {
      return probability(wb, wl, verifyLogits, accepted, t, pMax, pSum, inverseT);
    };
    auto residual = [&](OpBuilder &wb, Location wl, Value t) {
      Value q = probability(wb, wl, draftLogits, draftRow, t, qMax, qSum, inverseT);
      q = arith::SelectOp::create(wb, wl, rejected, q, zero);
      return arith::MaximumFOp::create(wb, wl, arith::SubFOp::create(wb, wl, target(wb, wl, t), q),
                                       zero)
          .getResult();
    };
    Value residualMass = sumOver(b, loc, vocab, residual);
    // p = q leaves no residual: draw from p (which sums to one).
    Value noResidual = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLE, residualMass, zero);
    Value total = arith::SelectOp::create(
        b, loc, noResidual, arith::ConstantOp::create(b, loc, b.getF32FloatAttr(1.0f)),
        residualMass);
    Value next = draw(b, loc, vocab, uniform(2 * K), total, [&](OpBuilder &wb, Location wl, Value t) {
      return arith::SelectOp::create(wb, wl, noResidual, target(wb, wl, t), residual(wb, wl, t))
          .getResult();
    });
    return {accepted, next};
  }
};

} // namespace
