//===- UnrollSpeculation.cpp - the fused speculative decoding step ---------===//
//
// Adds `spec_step`: K greedy draft decode steps unrolled on the draft's
// cache, the target's verification of the pending token and the K
// proposals in one pass, the acceptance of the longest prefix that matches
// the target's argmax, and the caches' new lengths. One call replaces K + 1
// runtime round trips, and nothing is copied to roll back: the lengths it
// returns leave the rejected tokens behind.
//
//===----------------------------------------------------------------------===//

#include "hasten/Dialect/Hasten/HastenDialect.h"
#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/SymbolTable.h"

#include <limits>

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
    if (targetCache.isPaged() || draftCache.isPaged()) {
      module.emitError("the fused speculation step supports contiguous KV caches only");
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

  /// The argmax over the last dimension of `logits` [1, n, vocab]: one
  /// reduction keeping the largest value and its first index.
  Value argmax(OpBuilder &b, Location loc, Value logits) {
    auto type = cast<RankedTensorType>(logits.getType());
    int64_t n = type.getDimSize(1);
    Type element = type.getElementType();
    Type i64 = b.getI64Type();
    Value lowest = arith::ConstantOp::create(
        b, loc, b.getFloatAttr(element, -std::numeric_limits<double>::infinity()));
    Value zero = arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(0));
    Value maxInit = linalg::FillOp::create(
                        b, loc, lowest, tensor::EmptyOp::create(b, loc, ArrayRef<int64_t>{1, n}, element).getResult())
                        .getResult(0);
    Value indexInit =
        linalg::FillOp::create(b, loc, zero,
                               tensor::EmptyOp::create(b, loc, ArrayRef<int64_t>{1, n}, i64).getResult())
            .getResult(0);
    AffineMap all = b.getMultiDimIdentityMap(3);
    AffineMap rows = AffineMap::get(3, 0, {b.getAffineDimExpr(0), b.getAffineDimExpr(1)},
                                    b.getContext());
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

  void build(ModuleOp module, SymbolTable &symbols, func::FuncOp verify, func::FuncOp draft,
             KVCacheType targetCache, KVCacheType draftCache, Type element, Type draftElement,
             int64_t vocab) {
    MLIRContext *context = module.getContext();
    OpBuilder b(context);
    Location loc = NameLoc::get(b.getStringAttr("spec_step"), module.getLoc());
    Type i64 = b.getI64Type();
    int64_t K = k;
    auto scalar = RankedTensorType::get({}, i64);
    auto oneToken = RankedTensorType::get({1, 1}, i64);
    auto candidates = RankedTensorType::get({1, K + 1}, i64);
    auto func = func::FuncOp::create(
        loc, "spec_step",
        b.getFunctionType({oneToken, targetCache, scalar, draftCache, scalar},
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
    describe(true, 0, "accepted_tokens", TensorRole::AcceptedTokens, true);
    describe(true, 1, "past_length", TensorRole::PastLength, true);
    describe(true, 2, "draft_past_length", TensorRole::DraftPastLength, true);
    symbols.insert(func);

    Block *body = func.addEntryBlock();
    b.setInsertionPointToStart(body);
    Value pending = body->getArgument(0), cache = body->getArgument(1),
          past = body->getArgument(2), draftCacheArg = body->getArgument(3),
          draftPast = body->getArgument(4);
    auto cst = [&](int64_t v) { return arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(v)); };
    auto cstIndex = [&](int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); };
    auto toScalar = [&](Value v) { return tensor::FromElementsOp::create(b, loc, scalar, v); };
    Value zeroIndex = cstIndex(0);
    Value pendingToken =
        tensor::ExtractOp::create(b, loc, pending, ValueRange{zeroIndex, zeroIndex});
    Value draftLength = tensor::ExtractOp::create(b, loc, draftPast, ValueRange{});
    Value targetLength = tensor::ExtractOp::create(b, loc, past, ValueRange{});

    // K draft decode steps: the pending token, then each proposal in turn.
    SmallVector<Value> proposals;
    Value token = pending;
    auto draftLogitsType = RankedTensorType::get({1, 1, vocab}, draftElement);
    for (int64_t i = 0; i < K; ++i) {
      Value stepPast = toScalar(arith::AddIOp::create(b, loc, draftLength, cst(i)));
      Value stepLogits = DecodeStepOp::create(b, loc, draftLogitsType, draft.getSymName(), token,
                                              draftCacheArg, stepPast);
      Value best = argmax(b, loc, stepLogits);
      proposals.push_back(
          tensor::ExtractOp::create(b, loc, best, ValueRange{zeroIndex, zeroIndex}));
      token = tensor::FromElementsOp::create(b, loc, oneToken, proposals.back());
    }

    // The target scores the pending token and the proposals in one pass.
    SmallVector<Value> candidateTokens = {pendingToken};
    candidateTokens.append(proposals);
    Value verifyTokens = tensor::FromElementsOp::create(b, loc, candidates, candidateTokens);
    Value verifyLogits = DecodeStepOp::create(
        b, loc, RankedTensorType::get({1, K + 1, vocab}, element), verify.getSymName(),
        verifyTokens, cache, past);
    Value targetChoice = argmax(b, loc, verifyLogits);

    // Accept the longest prefix of proposals equal to the target's choices;
    // the target's choice after it is the next token.
    Value matching = arith::ConstantOp::create(b, loc, b.getBoolAttr(true));
    Value accepted = cstIndex(0);
    for (int64_t i = 0; i < K; ++i) {
      Value choice =
          tensor::ExtractOp::create(b, loc, targetChoice, ValueRange{zeroIndex, cstIndex(i)});
      Value equal =
          arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, proposals[i], choice);
      matching = arith::AndIOp::create(b, loc, matching, equal);
      accepted = arith::AddIOp::create(
          b, loc, accepted,
          arith::IndexCastOp::create(b, loc, b.getIndexType(),
                                     arith::ExtUIOp::create(b, loc, i64, matching)));
    }
    Value next = tensor::ExtractOp::create(b, loc, targetChoice, ValueRange{zeroIndex, accepted});
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
};

} // namespace
