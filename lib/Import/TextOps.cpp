//===- TextOps.cpp - ONNX's text-feature ops over token ids ---------------===//
//
// TfIdfVectorizer over integer token ids: each n-gram of the pool counted
// where it occurs in a row (items `d` apart for skip distances d = 1 ..
// max_skip_count + 1, unigrams once), the counts gathered at the pool
// entries' output positions and weighted by the mode. The pool is known at
// import, so it becomes constant tables; the counting is one linalg.generic
// over (row, pool entry) whose body loops over distances, positions and
// items. String pools are refused (hasten has no string tensors).
//
//===----------------------------------------------------------------------===//

#include "ImporterInternal.h"

#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace hasten;
using namespace hasten::onnx_import;

namespace {

Value tableOf(OpBuilder &b, Location loc, ArrayRef<int64_t> shape, ArrayRef<int64_t> values) {
  auto type = RankedTensorType::get(shape, b.getI64Type());
  return arith::ConstantOp::create(b, loc, DenseElementsAttr::get(type, values));
}

LogicalResult convertTfIdfVectorizer(NodeContext &ctx) {
  if (ctx.hasAttr("pool_strings"))
    return ctx.fail("string pools are not supported (hasten has no string tensors); "
                    "pool_int64s is");
  auto xType = ctx.inputType(0);
  if (!xType.hasStaticShape() || (xType.getRank() != 1 && xType.getRank() != 2) ||
      !(xType.getElementType().isInteger(32) || xType.getElementType().isInteger(64)))
    return ctx.emitError() << "expects static int32 or int64 token ids [N] or [B, N], got "
                           << xType;
  std::string mode = ctx.getString("mode", "");
  if (mode != "TF" && mode != "IDF" && mode != "TFIDF")
    return ctx.fail("mode must be TF, IDF or TFIDF, got '" + mode + "'");
  int64_t minGram = ctx.getInt("min_gram_length", 0), maxGram = ctx.getInt("max_gram_length", 0);
  int64_t maxSkip = ctx.getInt("max_skip_count", 0);
  SmallVector<int64_t> pool = ctx.getInts("pool_int64s").value_or(SmallVector<int64_t>{});
  SmallVector<int64_t> counts = ctx.getInts("ngram_counts").value_or(SmallVector<int64_t>{});
  SmallVector<int64_t> indexes = ctx.getInts("ngram_indexes").value_or(SmallVector<int64_t>{});
  SmallVector<float> weights = ctx.getFloats("weights").value_or(SmallVector<float>{});
  if (minGram < 1 || maxGram < minGram || maxSkip < 0)
    return ctx.fail("needs 1 <= min_gram_length <= max_gram_length and max_skip_count >= 0");
  // The pool's entries: ngram_counts[n - 1] is where the n-grams start.
  SmallVector<int64_t> lengths, starts;
  for (size_t n = 0; n < counts.size(); ++n) {
    int64_t begin = counts[n];
    int64_t end = n + 1 < counts.size() ? counts[n + 1] : (int64_t)pool.size();
    int64_t size = n + 1;
    if (begin < 0 || end < begin || end > (int64_t)pool.size() || (end - begin) % size != 0)
      return ctx.fail("ngram_counts does not split pool_int64s into whole n-grams");
    for (int64_t at = begin; at < end; at += size) {
      lengths.push_back(size);
      starts.push_back(at);
    }
  }
  int64_t entries = lengths.size();
  if (entries == 0 || (int64_t)indexes.size() != entries)
    return ctx.fail("ngram_indexes must give an output position to each of the pool's " +
                    std::to_string(entries) + " n-grams");
  int64_t outputs = 0;
  for (int64_t index : indexes) {
    if (index < 0)
      return ctx.fail("ngram_indexes must not be negative");
    outputs = std::max(outputs, index + 1);
  }
  // A weight belongs to a pool entry (the specification's reading, and
  // ONNX Runtime's; ONNX's Python reference indexes them by output position
  // instead, which differs when ngram_indexes is not the identity). It
  // applies at the entry's output position.
  if (!weights.empty() && (int64_t)weights.size() != entries)
    return ctx.fail("weights must have one value per pool n-gram (" + std::to_string(entries) +
                    ")");
  SmallVector<float> outputWeights(outputs, 1.0f);
  SmallVector<bool> weighted(outputs, false);
  for (int64_t p = 0; p < (int64_t)weights.size(); ++p) {
    int64_t o = indexes[p];
    if (weighted[o] && outputWeights[o] != weights[p])
      return ctx.fail("pool n-grams sharing output position " + std::to_string(o) +
                      " have different weights");
    outputWeights[o] = weights[p];
    weighted[o] = true;
  }
  int64_t widest = *llvm::max_element(lengths);
  SmallVector<int64_t> tokens(entries * widest, 0);
  for (int64_t p = 0; p < entries; ++p)
    for (int64_t k = 0; k < lengths[p]; ++k)
      tokens[p * widest + k] = pool[starts[p] + k];

  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Type i64 = b.getI64Type(), f32 = b.getF32Type();
  bool batched = xType.getRank() == 2;
  int64_t rows = batched ? xType.getDimSize(0) : 1, length = xType.getDimSize(xType.getRank() - 1);
  Value x = ctx.input(0);
  if (!batched)
    x = insertUnitDims(b, loc, x, {0});
  Value tokenTable = tableOf(b, loc, {entries, widest}, tokens);
  Value lengthTable = tableOf(b, loc, {entries}, lengths);
  Value zeros = createFilled(b, loc, {b.getIndexAttr(rows), b.getIndexAttr(entries)},
                             scalarConstant(b, loc, i64, 0));
  SmallVector<utils::IteratorType> parallel(2, utils::IteratorType::parallel);
  // counts[row, entry]
  Value perEntry =
      linalg::GenericOp::create(
          b, loc, TypeRange{zeros.getType()}, ValueRange{}, ValueRange{zeros},
          ArrayRef<AffineMap>{b.getMultiDimIdentityMap(2)}, parallel,
          [&](OpBuilder &gb, Location gl, ValueRange) {
            Value row = linalg::IndexOp::create(gb, gl, 0);
            Value entry = linalg::IndexOp::create(gb, gl, 1);
            Value n = toIndex(gb, gl, tensor::ExtractOp::create(gb, gl, lengthTable, entry));
            Value c0 = indexConstant(gb, gl, 0), c1 = indexConstant(gb, gl, 1);
            Value zero = arith::ConstantIntOp::create(gb, gl, i64, 0);
            // Unigrams count at distance 1 only; lengths outside
            // [min, max] not at all.
            Value counted =
                arith::AndIOp::create(gb, gl,
                                      arith::CmpIOp::create(gb, gl, arith::CmpIPredicate::sge, n,
                                                            indexConstant(gb, gl, minGram)),
                                      arith::CmpIOp::create(gb, gl, arith::CmpIPredicate::sle, n,
                                                            indexConstant(gb, gl, maxGram)));
            Value unigram = arith::CmpIOp::create(gb, gl, arith::CmpIPredicate::eq, n, c1);
            Value distances = arith::SelectOp::create(
                gb, gl, counted,
                arith::SelectOp::create(gb, gl, unigram, c1, indexConstant(gb, gl, maxSkip + 1)),
                c0);
            Value total =
                scf::ForOp::create(
                    gb, gl, c0, distances, c1, ValueRange{zero},
                    [&](OpBuilder &db, Location dl, Value d0, ValueRange dIter) {
                      Value d = arith::AddIOp::create(db, dl, d0, c1);
                      // Positions where the n-gram fits: i + (n - 1) d < length.
                      Value span =
                          arith::MulIOp::create(db, dl, arith::SubIOp::create(db, dl, n, c1), d);
                      Value room = arith::MaxSIOp::create(
                          db, dl, c0,
                          arith::SubIOp::create(db, dl, indexConstant(db, dl, length), span));
                      Value found =
                          scf::ForOp::create(
                              db, dl, c0, room, c1, dIter,
                              [&](OpBuilder &pb, Location pl, Value i, ValueRange pIter) {
                                Value yes = arith::ConstantIntOp::create(pb, pl, pb.getI1Type(), 1);
                                Value match =
                                    scf::ForOp::create(
                                        pb, pl, c0, n, c1, ValueRange{yes},
                                        [&](OpBuilder &kb, Location kl, Value k, ValueRange kIter) {
                                          Value at = arith::AddIOp::create(
                                              kb, kl, i, arith::MulIOp::create(kb, kl, k, d));
                                          Value item = tensor::ExtractOp::create(
                                              kb, kl, x, ValueRange{row, at});
                                          if (item.getType() != i64)
                                            item = arith::ExtSIOp::create(kb, kl, i64, item);
                                          Value want = tensor::ExtractOp::create(
                                              kb, kl, tokenTable, ValueRange{entry, k});
                                          Value same = arith::CmpIOp::create(
                                              kb, kl, arith::CmpIPredicate::eq, item, want);
                                          scf::YieldOp::create(kb, kl,
                                                               ValueRange{arith::AndIOp::create(
                                                                   kb, kl, kIter[0], same)});
                                        })
                                        .getResult(0);
                                Value one = arith::ExtUIOp::create(pb, pl, i64, match);
                                scf::YieldOp::create(
                                    pb, pl,
                                    ValueRange{arith::AddIOp::create(pb, pl, pIter[0], one)});
                              })
                              .getResult(0);
                      scf::YieldOp::create(db, dl, ValueRange{found});
                    })
                    .getResult(0);
            linalg::YieldOp::create(gb, gl, ValueRange{total});
          })
          .getResult(0);

  // Gathered at the output positions (entries sharing one add up).
  Value gathered = createFilled(b, loc, {b.getIndexAttr(rows), b.getIndexAttr(outputs)},
                                scalarConstant(b, loc, i64, 0));
  Value indexTable = tableOf(b, loc, {entries}, indexes);
  Value c0 = indexConstant(b, loc, 0), c1 = indexConstant(b, loc, 1);
  gathered =
      scf::ForOp::create(
          b, loc, c0, indexConstant(b, loc, rows), c1, ValueRange{gathered},
          [&](OpBuilder &rb, Location rl, Value row, ValueRange rIter) {
            Value next =
                scf::ForOp::create(
                    rb, rl, c0, indexConstant(rb, rl, entries), c1, rIter,
                    [&](OpBuilder &eb, Location el, Value entry, ValueRange eIter) {
                      Value to = toIndex(
                          eb, el, tensor::ExtractOp::create(eb, el, indexTable, ValueRange{entry}));
                      Value have = tensor::ExtractOp::create(eb, el, eIter[0], ValueRange{row, to});
                      Value more =
                          tensor::ExtractOp::create(eb, el, perEntry, ValueRange{row, entry});
                      Value sum = arith::AddIOp::create(eb, el, have, more);
                      scf::YieldOp::create(eb, el,
                                           ValueRange{tensor::InsertOp::create(
                                               eb, el, sum, eIter[0], ValueRange{row, to})});
                    })
                    .getResult(0);
            scf::YieldOp::create(rb, rl, ValueRange{next});
          })
          .getResult(0);

  // TF: the count; IDF: the weight (or 1) where the count is positive;
  // TFIDF: the count times the weight.
  Value weightTable =
      arith::ConstantOp::create(b, loc,
                                DenseElementsAttr::get(RankedTensorType::get({outputs}, f32),
                                                       ArrayRef<float>(outputWeights)));
  Value weightRows = insertUnitDims(b, loc, weightTable, {0});
  Value y = buildElementwise(
      b, loc, ValueRange{gathered, weightRows}, f32,
      [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
        Value count = arith::SIToFPOp::create(nb, nl, f32, a[0]);
        if (mode == "TF")
          return count;
        if (mode == "TFIDF")
          return arith::MulFOp::create(nb, nl, count, a[1]);
        Value seen = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sgt, a[0],
                                           arith::ConstantIntOp::create(nb, nl, i64, 0));
        return arith::SelectOp::create(nb, nl, seen, a[1], scalarConstant(nb, nl, f32, 0));
      });
  if (!batched)
    y = dropUnitDims(b, loc, y, {0});
  ctx.setOutput(0, y);
  return success();
}

} // namespace

void hasten::onnx_import::registerTextConverters(ConverterTable &table) {
  table["TfIdfVectorizer"] = convertTfIdfVectorizer;
}
