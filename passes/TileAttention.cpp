//===- TileAttention.cpp - hasten.attention as tiled online-softmax IR -----===//
//
// FlashAttention-2 in upstream ops, following the op's tiling plan:
//
//   scf.forall (batch, head, query block)          -- the parallel work
//     scf.for key tile in [0, last needed key)    -- running max m, sum l, acc
//       S   = (Q_blk * scale * log2(e)) K_tile^T (+ mask * log2(e))  -- tile_q x tile_kv
//       m'  = max(m, rowmax S);  P = exp2(S - m')
//       l   = exp2(m - m') l + rowsum P;  acc = exp2(m - m') acc + P V_tile
//     O_blk = acc / l
//
// Scores are kept in base-2 units (exp(s) = 2^(s log2(e)), log2(e) folded
// into the scale), so that the exponentials are exp2, which
// --hasten-approximate-math lowers to about half the arithmetic of exp.
//
// The q_len x kv_len scores never exist. With causal, the loop stops at the
// block's last visible key (tiles above the diagonal are skipped), and only
// tiles that cross the diagonal build a mask, from their indices
// (FastAttention's tiling-mask); the others run unmasked. One-query decode
// with kv_splits > 1 splits the keys into partitions computed in parallel
// and merges them by log-sum-exp (flash-decoding).
//
// The tile products iterate the reduction outside the innermost dimension
// (rows x head_dim x keys for Q K^T on a transposed K tile, rows x keys x
// value dims for P V), so that the innermost loop is contiguous and the CPU
// lowering vectorizes it.
//
//===----------------------------------------------------------------------===//

#include "AttentionTiling.h"

#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Builders.h"

#include <limits>

namespace hasten {
#define GEN_PASS_DEF_TILEATTENTION
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;
using namespace hasten;

namespace {

using utils::IteratorType;
constexpr double kLog2E = 1.4426950408889634;
constexpr IteratorType kPar = IteratorType::parallel;
constexpr IteratorType kRed = IteratorType::reduction;

/// Builds the tiled form of one op.
class AttentionTiler {
public:
  AttentionTiler(OpBuilder &b, AttentionOp op, AttentionTilingAttr tiling)
      : b(b), loc(op.getLoc()), op(op), tiling(tiling), f32(b.getF32Type()) {}

  Value build() {
    q = op.getQuery();
    k = op.getKey();
    v = op.getValue();
    mask = op.getMask();
    scale = *op.getEffectiveScale();
    group = op.getNumHeads() / op.getNumKvHeads();
    batch = dim(q, 0);
    heads = dim(q, 1);
    qLen = dim(q, 2);
    kvLen = dim(k, 2);
    headDim = dim(q, 3);
    valueDim = dim(v, 3);
    // Causal rule of the op: key j is visible to query i when
    // j <= i + kv_len - q_len.
    diagonal = arith::SubIOp::create(b, loc, kvLen, qLen);
    bool decode = op.getQuery().getType().getDimSize(2) == 1;
    return decode && tiling.getKvSplits() > 1 ? buildSplitKv() : buildBlocks();
  }

private:
  OpBuilder &b;
  Location loc;
  AttentionOp op;
  AttentionTilingAttr tiling;
  Type f32;
  Value q, k, v, mask;
  double scale;
  int64_t group;
  Value batch, heads, qLen, kvLen, headDim, valueDim, diagonal;

  Value cst(int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); }
  Value cstF(double v) { return arith::ConstantOp::create(b, loc, f32, b.getF32FloatAttr(v)); }
  Value dim(Value t, int64_t d) { return tensor::DimOp::create(b, loc, t, d); }
  Value minI(Value x, Value y) { return arith::MinSIOp::create(b, loc, x, y); }
  Value maxI(Value x, Value y) { return arith::MaxSIOp::create(b, loc, x, y); }
  Value add(Value x, Value y) { return arith::AddIOp::create(b, loc, x, y); }
  Value sub(Value x, Value y) { return arith::SubIOp::create(b, loc, x, y); }
  Value mul(Value x, Value y) { return arith::MulIOp::create(b, loc, x, y); }
  Value ceilDiv(Value x, Value y) { return arith::CeilDivSIOp::create(b, loc, x, y); }

  Value filled(ArrayRef<Value> sizes, double value) {
    SmallVector<OpFoldResult> ofrs(sizes.begin(), sizes.end());
    Value empty = tensor::EmptyOp::create(b, loc, ofrs, f32);
    return linalg::FillOp::create(b, loc, cstF(value), empty).getResult(0);
  }
  Value empty(ArrayRef<Value> sizes) {
    SmallVector<OpFoldResult> ofrs(sizes.begin(), sizes.end());
    return tensor::EmptyOp::create(b, loc, ofrs, f32);
  }
  AffineMap map(unsigned dims, ArrayRef<int64_t> results) {
    SmallVector<AffineExpr> exprs;
    for (int64_t r : results)
      exprs.push_back(b.getAffineDimExpr(r));
    return AffineMap::get(dims, 0, exprs, b.getContext());
  }

  /// [rows, cols] slice of a [batch, heads, rows, cols] operand.
  Value slice2d(Value t, Value bIdx, Value hIdx, Value row0, Value rows, Value cols) {
    SmallVector<OpFoldResult> offsets{bIdx, hIdx, row0, b.getIndexAttr(0)};
    SmallVector<OpFoldResult> sizes{b.getIndexAttr(1), b.getIndexAttr(1), rows, cols};
    SmallVector<OpFoldResult> strides(4, b.getIndexAttr(1));
    auto type = RankedTensorType::get({ShapedType::kDynamic, ShapedType::kDynamic}, f32);
    return tensor::ExtractSliceOp::create(b, loc, type, t, offsets, sizes, strides);
  }

  /// The online-softmax loop over keys [kvBegin, kvEnd) for the query rows
  /// [q0, q0 + nq) of (bIdx, hIdx); `qTile` is [nq, head_dim]. Returns the
  /// running max, sum and (unnormalized) accumulator.
  std::tuple<Value, Value, Value> keyLoop(Value bIdx, Value hIdx, Value q0, Value nq, Value qTile,
                                          Value kvBegin, Value kvEnd) {
    Value kvHead = arith::DivUIOp::create(b, loc, hIdx, cst(group));
    Value tileKv = cst(tiling.getTileKv());
    Value m0 = filled({nq}, -std::numeric_limits<double>::infinity());
    Value l0 = filled({nq}, 0.0);
    Value acc0 = filled({nq, valueDim}, 0.0);
    bool causal = op.getCausal();
    // One query row (decode): each key's score is a dot product along the
    // head dim. Several rows: the scores are kept keys-major, S^T = K Q^T,
    // so that K is read in place (no transposed copy per tile) and every
    // reduction over keys runs along the outer dimension, vectorized along
    // the queries; Q^T is built once, outside the key loop.
    // Q is scaled once per block, into base-2 units (scale * log2(e)), so
    // that the tiles' scores need no pass of their own.
    bool oneRow = fullRows() == 1;
    Value scaleV = cstF(scale * kLog2E);
    auto scaled = [&](OpBuilder &gb, Location gl, ValueRange a) -> Value {
      return arith::MulFOp::create(gb, gl, a[0], scaleV);
    };
    Value qT, qScaled;
    if (oneRow)
      qScaled = generic(empty({nq, headDim}), qTile, {map(2, {0, 1}), map(2, {0, 1})},
                        {kPar, kPar}, scaled);
    else
      qT = generic(empty({headDim, nq}), qTile, {map(2, {1, 0}), map(2, {0, 1})}, {kPar, kPar},
                   scaled);
    auto loop = scf::ForOp::create(
        b, loc, kvBegin, kvEnd, tileKv, ValueRange{m0, l0, acc0},
        [&](OpBuilder &nb, Location nloc, Value k0, ValueRange iter) {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPointToStart(nb.getInsertionBlock());
          Value nk = minI(tileKv, sub(kvEnd, k0));
          Value kTile = slice2d(k, bIdx, kvHead, k0, nk, headDim);
          Value vTile = slice2d(v, bIdx, kvHead, k0, nk, valueDim);
          // S^T = K Q^T: [nk, nq].
          Value s = oneRow ? dotProducts(kTile, qScaled, nk)
                           : tileProduct(kTile, qT, Value(), nk, headDim, nq,
                                         tiling.getTileKv(), staticDim(q, 3), fullRows(),
                                         /*lhsTransposed=*/false);
          // Scale, mask, and on tiles that cross the diagonal the causal
          // mask from indices; tiles wholly below it skip that work.
          Value scaled;
          if (causal && tiling.getDiagonalMask()) {
            // The tile crosses when its last key is past the first row's
            // diagonal.
            Value lastKey = sub(add(k0, nk), cst(1));
            Value crosses = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt, lastKey,
                                                  add(q0, diagonal));
            scaled = ifElse(
                crosses, [&] { return scoreEpilogue(s, bIdx, hIdx, q0, k0, true); },
                [&] { return scoreEpilogue(s, bIdx, hIdx, q0, k0, false); });
          } else {
            scaled = scoreEpilogue(s, bIdx, hIdx, q0, k0, causal);
          }
          auto [m, l, acc] = onlineSoftmaxStep(scaled, vTile, iter[0], iter[1], iter[2], nq);
          scf::YieldOp::create(b, loc, ValueRange{m, l, acc});
        });
    return {loop.getResult(0), loop.getResult(1), loop.getResult(2)};
  }

  /// S^T (+ mask * log2(e)) (with `causalMask`: -inf where j > i +
  /// diagonal); `s` is [keys, queries], already in base-2 units. Without a
  /// mask of either kind the scores are left as they are.
  Value scoreEpilogue(Value s, Value bIdx, Value hIdx, Value q0, Value k0, bool causalMask) {
    if (!mask && !causalMask)
      return s;
    Value maskT = mask;
    auto maskType = mask ? cast<RankedTensorType>(mask.getType()) : RankedTensorType();
    // Mask dims of size 1 broadcast; a dynamic one is checked at run time.
    SmallVector<Value> maskSizes;
    if (mask)
      for (int64_t d = 0; d < 4; ++d)
        maskSizes.push_back(dim(mask, d));
    Value log2e = cstF(kLog2E);
    Value ninf = cstF(-std::numeric_limits<double>::infinity());
    Value diag = diagonal;
    return generic(
        s, ValueRange{}, {map(2, {0, 1})}, {kPar, kPar},
        [&](OpBuilder &gb, Location gl, ValueRange a) {
          Value x = a[0];
          Value j = add2(gb, gl, k0, linalg::IndexOp::create(gb, gl, 0));
          Value i = add2(gb, gl, q0, linalg::IndexOp::create(gb, gl, 1));
          if (maskT) {
            SmallVector<Value> full{bIdx, hIdx, i, j};
            SmallVector<Value> idx;
            Value zero = arith::ConstantIndexOp::create(gb, gl, 0);
            Value one = arith::ConstantIndexOp::create(gb, gl, 1);
            for (int64_t d = 0; d < 4; ++d) {
              if (maskType.getDimSize(d) == 1) {
                idx.push_back(zero);
              } else if (!maskType.isDynamicDim(d)) {
                idx.push_back(full[d]);
              } else {
                Value isOne = arith::CmpIOp::create(gb, gl, arith::CmpIPredicate::eq,
                                                    maskSizes[d], one);
                idx.push_back(arith::SelectOp::create(gb, gl, isOne, zero, full[d]));
              }
            }
            Value m = tensor::ExtractOp::create(gb, gl, maskT, idx);
            if (m.getType().isInteger(1))
              x = arith::SelectOp::create(gb, gl, m, x, ninf);
            else // in base-2 units too
              x = math::FmaOp::create(gb, gl, m, log2e, x);
          }
          if (causalMask) {
            Value limit = add2(gb, gl, i, diag);
            Value hidden =
                arith::CmpIOp::create(gb, gl, arith::CmpIPredicate::sgt, j, limit);
            x = arith::SelectOp::create(gb, gl, hidden, ninf, x);
          }
          return x;
        });
  }
  static Value add2(OpBuilder &gb, Location gl, Value x, Value y) {
    return arith::AddIOp::create(gb, gl, x, y);
  }

  /// Query rows in a full tile.
  int64_t fullRows() const { return std::min(tiling.getTileQ(), tiling.getBlockQ()); }
  static int64_t staticDim(Value t, int64_t d) {
    return cast<ShapedType>(t.getType()).getDimSize(d);
  }

  /// init + lhs [rows x inner] * rhs [inner x cols], lhs stored as
  /// [inner x rows] when `lhsTransposed`; a null `init` stands for zeros
  /// (the vector form then starts from zero registers, nothing is filled).
  /// Full tiles of static sizes
  /// (R x K) * (K x C) run register-blocked vector code: a group of rows
  /// (rowGroup) of C-wide accumulators stays in registers across the inner
  /// loop, each step one row of rhs times the group's broadcast lhs
  /// elements. Edge tiles and dynamic head dims take the loop form, whose
  /// innermost loop runs along cols.
  Value tileProduct(Value lhs, Value rhs, Value init, Value rows, Value inner, Value cols,
                    int64_t R, int64_t K, int64_t C, bool lhsTransposed) {
    auto loops = [&] {
      return generic(init ? init : filled({rows, cols}, 0.0), ValueRange{lhs, rhs},
                     {map(3, lhsTransposed ? ArrayRef<int64_t>{1, 0} : ArrayRef<int64_t>{0, 1}),
                      map(3, {1, 2}), map(3, {0, 2})},
                     {kPar, kRed, kPar}, [](OpBuilder &gb, Location gl, ValueRange a) {
                       return math::FmaOp::create(gb, gl, a[0], a[1], a[2]).getResult();
                     });
    };
    bool vectorizable = !ShapedType::isDynamic(K) && !ShapedType::isDynamic(C) &&
                        C % 8 == 0 && C <= 256 && K > 0 && R > 0;
    if (!vectorizable)
      return loops();
    auto eq = [&](Value x, int64_t c) {
      return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, x, cst(c));
    };
    Value full = arith::AndIOp::create(
        b, loc, eq(rows, R), arith::AndIOp::create(b, loc, eq(inner, K), eq(cols, C)));
    return ifElse(
        full, [&] { return vectorProduct(lhs, rhs, init, R, K, C, lhsTransposed); }, loops);
  }
  /// Rows per register block of a product C wide: with 32 vector
  /// registers (16 lanes, AVX-512) as many rows as keep 24 accumulators,
  /// six at most (at C = 64, ten loads per 24 FMAs instead of eight per
  /// 16: L1 loads bound the four-row form on Intel cores); four elsewhere.
  int64_t rowGroup(int64_t C) const {
    int64_t lanes = tiling.getVectorLanes();
    if (lanes < 16)
      return 4;
    return std::clamp<int64_t>(24 / ((C + lanes - 1) / lanes), 1, 6);
  }

  Value vectorProduct(Value lhs, Value rhs, Value init, int64_t R, int64_t K, int64_t C,
                      bool lhsTransposed) {
    auto fixed = [&](Value t, int64_t r, int64_t c) -> Value {
      return tensor::CastOp::create(b, loc, RankedTensorType::get({r, c}, f32), t);
    };
    Value l = lhsTransposed ? fixed(lhs, K, R) : fixed(lhs, R, K);
    bool zeroInit = !init;
    if (zeroInit)
      init = empty({cst(R), cst(C)});
    Value r = fixed(rhs, K, C), o = fixed(init, R, C);
    int64_t group = std::min(R, rowGroup(C));
    auto vecType = VectorType::get({C}, f32);
    SmallVector<bool> inBounds{true};
    // Rows [row0, row0 + n) of `out` += their lhs rows times rhs.
    auto rowsTimesRhs = [&](Value row0, int64_t n, Value out) -> Value {
      SmallVector<Value> rowIdx, accs;
      for (int64_t i = 0; i < n; ++i) {
        rowIdx.push_back(add(row0, cst(i)));
        accs.push_back(zeroInit
                           ? arith::ConstantOp::create(b, loc, vecType, b.getZeroAttr(vecType))
                                 .getResult()
                           : readRow(out, rowIdx[i], vecType));
      }
      auto innerLoop = scf::ForOp::create(
          b, loc, cst(0), cst(K), cst(1), accs,
          [&](OpBuilder &ib, Location, Value kk, ValueRange acc) {
            OpBuilder::InsertionGuard g2(b);
            b.setInsertionPointToStart(ib.getInsertionBlock());
            Value rhsRow = readRow(r, kk, vecType);
            SmallVector<Value> next;
            for (int64_t i = 0; i < n; ++i) {
              Value x = tensor::ExtractOp::create(
                  b, loc, l, lhsTransposed ? ValueRange{kk, rowIdx[i]} : ValueRange{rowIdx[i], kk});
              Value splat = vector::BroadcastOp::create(b, loc, vecType, x);
              next.push_back(vector::FMAOp::create(b, loc, splat, rhsRow, acc[i]));
            }
            scf::YieldOp::create(b, loc, next);
          });
      Value result = out;
      for (int64_t i = 0; i < n; ++i)
        result = vector::TransferWriteOp::create(b, loc, innerLoop.getResult(i), result,
                                                 ValueRange{rowIdx[i], cst(0)},
                                                 ArrayRef<bool>(inBounds))
                     .getResult();
      return result;
    };
    // Whole groups in a loop, then the rows left (fewer than a group) once.
    int64_t whole = R - R % group;
    auto rowGroups = scf::ForOp::create(
        b, loc, cst(0), cst(whole), cst(group), ValueRange{o},
        [&](OpBuilder &nb, Location, Value row0, ValueRange out) {
          OpBuilder::InsertionGuard g(b);
          b.setInsertionPointToStart(nb.getInsertionBlock());
          scf::YieldOp::create(b, loc, rowsTimesRhs(row0, group, out[0]));
        });
    Value result = rowGroups.getResult(0);
    if (whole < R)
      result = rowsTimesRhs(cst(whole), R - whole, result);
    return tensor::CastOp::create(b, loc, init.getType(), result);
  }

  /// One query's pass over a tile's rows reads them from memory once. The
  /// passes below walk kStreams parts of the tile side by side (as the
  /// runtime kernel's decode does): row r of stream s is s * part + r, and
  /// the rows past kStreams * part follow alone. Measured on 16384-key
  /// decode, one thread: these passes over the CPU plan's long decode tiles
  /// about 20% faster than one row at a time over 256-key tiles; over
  /// 256-key tiles (parts 16 KiB apart) the streams alone were slower.
  static constexpr int64_t kStreams = 4;
  /// Builds the two loops over `rows`: `step(rowIndices, iter)` advances
  /// the carried values by one row of each stream, then by one row alone.
  SmallVector<Value> streamLoops(Value rows, ValueRange init,
                                 function_ref<SmallVector<Value>(ArrayRef<Value>, ValueRange)> step,
                                 function_ref<SmallVector<Value>(Value, ValueRange)> single) {
    Value part = arith::DivSIOp::create(b, loc, rows, cst(kStreams));
    auto streams = scf::ForOp::create(
        b, loc, cst(0), part, cst(1), init, [&](OpBuilder &nb, Location, Value r, ValueRange iter) {
          OpBuilder::InsertionGuard g(b);
          b.setInsertionPointToStart(nb.getInsertionBlock());
          SmallVector<Value> indices;
          for (int64_t st = 0; st < kStreams; ++st)
            indices.push_back(add(mul(part, cst(st)), r));
          scf::YieldOp::create(b, loc, step(indices, iter));
        });
    auto rest = scf::ForOp::create(
        b, loc, mul(part, cst(kStreams)), rows, cst(1), streams.getResults(),
        [&](OpBuilder &nb, Location, Value r, ValueRange iter) {
          OpBuilder::InsertionGuard g(b);
          b.setInsertionPointToStart(nb.getInsertionBlock());
          scf::YieldOp::create(b, loc, single(r, iter));
        });
    return SmallVector<Value>(rest.getResults());
  }

  /// S^T [nk, 1] for one query row `qTile` [1, head_dim]: each key's dot
  /// product with the query, a vector along the head dim reduced across its
  /// lanes (loops when head_dim is dynamic).
  Value dotProducts(Value kTile, Value qTile, Value nk) {
    int64_t D = staticDim(q, 3);
    if (ShapedType::isDynamic(D))
      return generic(filled({nk, cst(1)}, 0.0), ValueRange{kTile, qTile},
                     {map(3, {0, 1}), map(3, {2, 1}), map(3, {0, 2})}, {kPar, kRed, kPar},
                     [](OpBuilder &gb, Location gl, ValueRange a) {
                       return math::FmaOp::create(gb, gl, a[0], a[1], a[2]).getResult();
                     });
    auto rowsOfD = RankedTensorType::get({ShapedType::kDynamic, D}, f32);
    Value keys = tensor::CastOp::create(b, loc, rowsOfD, kTile);
    Value query = tensor::CastOp::create(b, loc, rowsOfD, qTile);
    auto vecType = VectorType::get({D}, f32);
    Value qVec = readRow(query, cst(0), vecType);
    // Key c's score into scores[c, 0]; reassoc: lanes are summed as a tree.
    auto scoreKey = [&](Value c, Value scores) -> Value {
      Value product = arith::MulFOp::create(b, loc, readRow(keys, c, vecType), qVec);
      Value dot = vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD, product,
                                              arith::FastMathFlags::reassoc);
      return tensor::InsertOp::create(b, loc, dot, scores, ValueRange{c, cst(0)});
    };
    // Every element is written below: nothing to fill.
    return streamLoops(
        nk, ValueRange{empty({nk, cst(1)})},
        [&](ArrayRef<Value> cs, ValueRange iter) {
          Value scores = iter[0];
          for (Value c : cs)
            scores = scoreKey(c, scores);
          return SmallVector<Value>{scores};
        },
        [&](Value c, ValueRange iter) { return SmallVector<Value>{scoreKey(c, iter[0])}; })[0];
  }

  /// acc [1, value_dim] + P V for one query row, with `pT` = P^T [nk, 1]:
  /// a value_dim vector accumulator per stream, summed at the end. Returns
  /// null when value_dim is dynamic (the caller takes the loop form).
  Value weightedRows(Value pT, Value vTile, Value acc, Value nk) {
    int64_t Dv = staticDim(v, 3);
    if (ShapedType::isDynamic(Dv))
      return Value();
    auto rowsOfDv = RankedTensorType::get({ShapedType::kDynamic, Dv}, f32);
    Value values = tensor::CastOp::create(b, loc, rowsOfDv, vTile);
    Value accRows = tensor::CastOp::create(b, loc, rowsOfDv, acc);
    auto vecType = VectorType::get({Dv}, f32);
    Value zero = arith::ConstantOp::create(b, loc, vecType, b.getZeroAttr(vecType));
    auto weighted = [&](Value c, Value sum) -> Value {
      Value weight = tensor::ExtractOp::create(b, loc, pT, ValueRange{c, cst(0)});
      return vector::FMAOp::create(b, loc, vector::BroadcastOp::create(b, loc, vecType, weight),
                                   readRow(values, c, vecType), sum);
    };
    SmallVector<Value> init{readRow(accRows, cst(0), vecType)};
    for (int64_t st = 1; st < kStreams; ++st)
      init.push_back(zero);
    SmallVector<Value> sums = streamLoops(
        nk, init,
        [&](ArrayRef<Value> cs, ValueRange iter) {
          SmallVector<Value> next;
          for (int64_t st = 0; st < kStreams; ++st)
            next.push_back(weighted(cs[st], iter[st]));
          return next;
        },
        [&](Value c, ValueRange iter) {
          SmallVector<Value> next(iter.begin(), iter.end());
          next[0] = weighted(c, iter[0]);
          return next;
        });
    Value total = sums[0];
    for (int64_t st = 1; st < kStreams; ++st)
      total = arith::AddFOp::create(b, loc, total, sums[st]);
    SmallVector<bool> inBounds{true};
    Value written = vector::TransferWriteOp::create(b, loc, total, accRows,
                                                    ValueRange{cst(0), cst(0)},
                                                    ArrayRef<bool>(inBounds))
                        .getResult();
    return tensor::CastOp::create(b, loc, acc.getType(), written);
  }

  /// Row `r` of a [rows, n] tensor with static n, as a vector.
  Value readRow(Value t, Value r, VectorType type) {
    SmallVector<bool> inBounds{true};
    return vector::TransferReadOp::create(b, loc, type, t, ValueRange{r, cst(0)}, cstF(0.0),
                                          ArrayRef<bool>(inBounds));
  }

  /// An scf.if yielding one value, each branch built with `b` by its
  /// function.
  Value ifElse(Value cond, function_ref<Value()> then, function_ref<Value()> otherwise) {
    auto branch = [&](function_ref<Value()> build) {
      return [&, build](OpBuilder &nb, Location) {
        OpBuilder::InsertionGuard g(b);
        b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
        scf::YieldOp::create(b, loc, build());
      };
    };
    return scf::IfOp::create(b, loc, cond, branch(then), branch(otherwise)).getResult(0);
  }

  /// One linalg.generic whose single result has `init`'s type; `body`
  /// computes the yielded value from the block arguments.
  Value generic(Value init, ValueRange ins, ArrayRef<AffineMap> maps,
                ArrayRef<IteratorType> iterators,
                function_ref<Value(OpBuilder &, Location, ValueRange)> body) {
    return linalg::GenericOp::create(
               b, loc, TypeRange{init.getType()}, ins, ValueRange{init}, maps, iterators,
               [&](OpBuilder &gb, Location gl, ValueRange a) {
                 linalg::YieldOp::create(gb, gl, ValueRange{body(gb, gl, a)});
               })
        .getResult(0);
  }
  template <typename OpTy>
  static Value binary(OpBuilder &gb, Location gl, ValueRange a) {
    return OpTy::create(gb, gl, a[0], a[1]);
  }
  /// The same, free to reassociate: a reduction along contiguous keys (one
  /// query row) then vectorizes instead of running as a scalar chain.
  template <typename OpTy>
  static Value reassociable(OpBuilder &gb, Location gl, ValueRange a) {
    return OpTy::create(gb, gl, a[0], a[1], arith::FastMathFlags::reassoc);
  }

  /// One FlashAttention-2 update with the scores tile `s` = S^T [nk, nq]:
  /// the reductions over keys run along its outer dimension.
  std::tuple<Value, Value, Value> onlineSoftmaxStep(Value s, Value vTile, Value m, Value l,
                                                    Value acc, Value nq) {
    Value ninf = cstF(-std::numeric_limits<double>::infinity());
    Value zeroF = cstF(0.0);
    AffineMap row2 = map(2, {0}), col2 = map(2, {1}), all2 = map(2, {0, 1}),
              all1 = map(1, {0});
    // m' = max(m, max over keys of s), as a reduction initialized with m.
    Value mNew = generic(m, s, {all2, col2}, {kRed, kPar}, reassociable<arith::MaximumFOp>);
    // Rows that saw only masked keys keep m' = -inf; exponents then use 0
    // so that exp(-inf - 0) = 0 instead of NaN.
    Value mSafe = generic(empty({nq}), mNew, {all1, all1}, {kPar},
                          [&](OpBuilder &gb, Location gl, ValueRange a) -> Value {
                            Value isInf = arith::CmpFOp::create(
                                gb, gl, arith::CmpFPredicate::OEQ, a[0], ninf);
                            return arith::SelectOp::create(gb, gl, isInf, zeroF, a[0]);
                          });
    // alpha = exp2(m - m'), the correction of the previous tiles.
    Value alpha = generic(empty({nq}), ValueRange{m, mSafe}, {all1, all1, all1}, {kPar},
                          [&](OpBuilder &gb, Location gl, ValueRange a) -> Value {
                            return math::Exp2Op::create(
                                gb, gl, arith::SubFOp::create(gb, gl, a[0], a[1]));
                          });
    // P = exp2(S - m') in place of S, and l' = alpha l + the sum of P over
    // keys, in one pass over the tile.
    Value lScaled = generic(l, alpha, {all1, all1}, {kPar}, binary<arith::MulFOp>);
    auto pAndSum = linalg::GenericOp::create(
        b, loc, TypeRange{s.getType(), lScaled.getType()}, ValueRange{mSafe},
        ValueRange{s, lScaled}, ArrayRef<AffineMap>{col2, all2, col2},
        ArrayRef<IteratorType>{kRed, kPar}, [&](OpBuilder &gb, Location gl, ValueRange a) {
          Value pe = math::Exp2Op::create(gb, gl, arith::SubFOp::create(gb, gl, a[1], a[0]));
          Value sum = arith::AddFOp::create(gb, gl, a[2], pe, arith::FastMathFlags::reassoc);
          linalg::YieldOp::create(gb, gl, ValueRange{pe, sum});
        });
    Value p = pAndSum.getResult(0), lNew = pAndSum.getResult(1);
    // acc' = alpha acc + P V, loops (i, j, e), P read from P^T.
    Value accScaled = generic(acc, alpha, {row2, all2}, {kPar, kPar}, binary<arith::MulFOp>);
    Value accNew = fullRows() == 1 ? weightedRows(p, vTile, accScaled, dim(vTile, 0)) : Value();
    if (!accNew)
      accNew = tileProduct(p, vTile, accScaled, nq, dim(vTile, 0), dim(accScaled, 1), fullRows(),
                           tiling.getTileKv(), staticDim(v, 3), /*lhsTransposed=*/true);
    return {mNew, lNew, accNew};
  }

  /// acc / l per row (see divideBySum).
  Value normalize(Value acc, Value l) {
    return generic(acc, l, {map(2, {0}), map(2, {0, 1})}, {kPar, kPar},
                   [](OpBuilder &gb, Location gl, ValueRange a) {
                     return divideBySum(gb, gl, a[1], a[0]);
                   });
  }

  /// Query blocks in parallel, each over its key tiles.
  Value buildBlocks() {
    Value blockQ = cst(tiling.getBlockQ());
    Value out = empty({batch, heads, qLen, valueDim});
    auto forall = scf::ForallOp::create(
        b, loc, ArrayRef<OpFoldResult>{batch, heads, ceilDiv(qLen, blockQ)}, ValueRange{out},
        std::nullopt);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(forall.getBody()->getTerminator());
    Value bIdx = forall.getInductionVar(0), hIdx = forall.getInductionVar(1);
    Value q0 = mul(forall.getInductionVar(2), blockQ);
    Value nq = minI(blockQ, sub(qLen, q0));
    // One query tile [t0, t0 + nt): its key loop, normalized.
    auto queryTile = [&](Value t0, Value nt) {
      Value qTile = slice2d(q, bIdx, hIdx, t0, nt, headDim);
      // With causal and skipping, keys past the tile's last row's diagonal
      // are masked for every row: the loop stops there.
      Value kvEnd = kvLen;
      if (op.getCausal() && tiling.getSkipMasked())
        kvEnd = maxI(cst(0), minI(kvLen, add(add(t0, nt), diagonal)));
      auto [m, l, acc] = keyLoop(bIdx, hIdx, t0, nt, qTile, cst(0), kvEnd);
      (void)m;
      return normalize(acc, l);
    };
    Value o;
    if (tiling.getTileQ() >= tiling.getBlockQ()) {
      o = queryTile(q0, nq);
    } else {
      // Two levels (FastAttention's per-core block, a GPU block's warps):
      // the block's query tiles in turn, each skipping and masking by its
      // own rows, written into the block's output.
      Value tileQ = cst(tiling.getTileQ());
      auto inner = scf::ForOp::create(
          b, loc, cst(0), nq, tileQ, ValueRange{empty({nq, valueDim})},
          [&](OpBuilder &nb, Location, Value offset, ValueRange iter) {
            OpBuilder::InsertionGuard g(b);
            b.setInsertionPointToStart(nb.getInsertionBlock());
            Value nt = minI(tileQ, sub(nq, offset));
            Value tile = queryTile(add(q0, offset), nt);
            SmallVector<OpFoldResult> at{offset, b.getIndexAttr(0)};
            SmallVector<OpFoldResult> size{nt, valueDim};
            SmallVector<OpFoldResult> unit(2, b.getIndexAttr(1));
            scf::YieldOp::create(
                b, loc, tensor::InsertSliceOp::create(b, loc, tile, iter[0], at, size, unit)
                            .getResult());
          });
      o = inner.getResult(0);
    }
    b.setInsertionPointToEnd(forall.getTerminator().getBody());
    SmallVector<OpFoldResult> offsets{bIdx, hIdx, q0, b.getIndexAttr(0)};
    SmallVector<OpFoldResult> sizes{b.getIndexAttr(1), b.getIndexAttr(1), nq, valueDim};
    SmallVector<OpFoldResult> strides(4, b.getIndexAttr(1));
    tensor::ParallelInsertSliceOp::create(b, loc, o, forall.getRegionIterArgs()[0], offsets,
                                          sizes, strides);
    return forall.getResult(0);
  }

  /// One query per (batch, head): the keys split into kv_splits partitions
  /// computed in parallel, merged by log-sum-exp.
  Value buildSplitKv() {
    int64_t splits = tiling.getKvSplits();
    Value splitsV = cst(splits);
    Value tileKv = cst(tiling.getTileKv());
    // Partitions of whole tiles.
    Value chunk = mul(ceilDiv(ceilDiv(kvLen, splitsV), tileKv), tileKv);
    Value partM = empty({batch, heads, splitsV});
    Value partL = empty({batch, heads, splitsV});
    Value partAcc = empty({batch, heads, splitsV, valueDim});
    auto forall = scf::ForallOp::create(b, loc, ArrayRef<OpFoldResult>{batch, heads, splitsV},
                                        ValueRange{partM, partL, partAcc}, std::nullopt);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPoint(forall.getBody()->getTerminator());
      Value bIdx = forall.getInductionVar(0), hIdx = forall.getInductionVar(1);
      Value begin = minI(kvLen, mul(forall.getInductionVar(2), chunk));
      Value end = minI(kvLen, add(begin, chunk));
      Value qTile = slice2d(q, bIdx, hIdx, cst(0), cst(1), headDim);
      auto [mDyn, lDyn, accDyn] = keyLoop(bIdx, hIdx, cst(0), cst(1), qTile, begin, end);
      // One row: static sizes for the unit slices they fill.
      auto one = RankedTensorType::get({1}, f32);
      Value m = tensor::CastOp::create(b, loc, one, mDyn);
      Value l = tensor::CastOp::create(b, loc, one, lDyn);
      Value acc = tensor::CastOp::create(
          b, loc, RankedTensorType::get({1, ShapedType::kDynamic}, f32), accDyn);
      b.setInsertionPointToEnd(forall.getTerminator().getBody());
      SmallVector<OpFoldResult> unit(3, b.getIndexAttr(1));
      SmallVector<OpFoldResult> at{bIdx, hIdx, forall.getInductionVar(2)};
      SmallVector<OpFoldResult> stride3(3, b.getIndexAttr(1));
      tensor::ParallelInsertSliceOp::create(b, loc, m, forall.getRegionIterArgs()[0], at, unit,
                                            stride3);
      tensor::ParallelInsertSliceOp::create(b, loc, l, forall.getRegionIterArgs()[1], at, unit,
                                            stride3);
      SmallVector<OpFoldResult> at4{bIdx, hIdx, forall.getInductionVar(2), b.getIndexAttr(0)};
      SmallVector<OpFoldResult> size4{b.getIndexAttr(1), b.getIndexAttr(1), b.getIndexAttr(1),
                                      valueDim};
      SmallVector<OpFoldResult> stride4(4, b.getIndexAttr(1));
      tensor::ParallelInsertSliceOp::create(b, loc, acc, forall.getRegionIterArgs()[2], at4,
                                            size4, stride4);
    }
    Value pm = forall.getResult(0), pl = forall.getResult(1), pacc = forall.getResult(2);
    // M = max over partitions; w_p = exp2(m_p - M) (base-2 units);
    // O = sum w_p acc_p / sum w_p l_p.
    Value ninf = cstF(-std::numeric_limits<double>::infinity());
    Value zeroF = cstF(0.0);
    AffineMap bh = map(3, {0, 1}), bhp = map(3, {0, 1, 2});
    Value mMax = generic(filled({batch, heads}, -std::numeric_limits<double>::infinity()), pm,
                         {bhp, bh}, {kPar, kPar, kRed}, binary<arith::MaximumFOp>);
    Value w = generic(empty({batch, heads, splitsV}), ValueRange{pm, mMax}, {bhp, bh, bhp},
                      {kPar, kPar, kPar}, [&](OpBuilder &gb, Location gl, ValueRange a) {
                        Value isInf =
                            arith::CmpFOp::create(gb, gl, arith::CmpFPredicate::OEQ, a[1], ninf);
                        Value safeMax = arith::SelectOp::create(gb, gl, isInf, zeroF, a[1]);
                        return math::Exp2Op::create(gb, gl, arith::SubFOp::create(gb, gl, a[0],
                                                                                  safeMax))
                            .getResult();
                      });
    auto fma = [](OpBuilder &gb, Location gl, ValueRange a) {
      return math::FmaOp::create(gb, gl, a[0], a[1], a[2]).getResult();
    };
    Value lSum = generic(filled({batch, heads}, 0.0), ValueRange{w, pl}, {bhp, bhp, bh},
                         {kPar, kPar, kRed}, fma);
    // Loops (b, h, split, e): the partitions reduce outside the value dims.
    Value oSum = generic(filled({batch, heads, valueDim}, 0.0), ValueRange{w, pacc},
                         {map(4, {0, 1, 2}), map(4, {0, 1, 2, 3}), map(4, {0, 1, 3})},
                         {kPar, kPar, kRed, kPar}, fma);
    Value o = generic(oSum, lSum, {bh, bhp}, {kPar, kPar, kPar},
                      [](OpBuilder &gb, Location gl, ValueRange a) {
                        return divideBySum(gb, gl, a[1], a[0]);
                      });
    SmallVector<OpFoldResult> shape{batch, heads, b.getIndexAttr(1), valueDim};
    return tensor::ExpandShapeOp::create(
        b, loc, RankedTensorType::get({ShapedType::kDynamic, ShapedType::kDynamic, 1,
                                       ShapedType::kDynamic}, f32),
        o, SmallVector<ReassociationIndices>{{0}, {1}, {2, 3}}, shape);
  }
};

struct TileAttentionPass : public hasten::impl::TileAttentionBase<TileAttentionPass> {
  using Base::Base;

  void runOnOperation() override {
    std::string error;
    FailureOr<AttentionTarget> t = getAttentionTarget(target, 0, 0, 0, error);
    if (failed(t)) {
      getOperation()->emitError(error);
      return signalPassFailure();
    }
    SmallVector<AttentionOp> ops;
    getOperation()->walk([&](AttentionOp op) { ops.push_back(op); });
    for (AttentionOp op : ops) {
      auto element = [](Value v) { return cast<ShapedType>(v.getType()).getElementType(); };
      if (!element(op.getQuery()).isF32() ||
          (op.getMask() && !element(op.getMask()).isF32() &&
           !element(op.getMask()).isInteger(1))) {
        op.emitRemark("attention left untiled: only f32 is generated so far");
        continue;
      }
      if (!op.getEffectiveScale()) {
        op.emitRemark("attention left untiled: the scale is implicit and head_dim is dynamic");
        continue;
      }
      AttentionTilingAttr tiling = op.getTiling() ? *op.getTiling() : planAttentionTiling(op, *t);
      OpBuilder b(op);
      Value tiled = AttentionTiler(b, op, tiling).build();
      if (tiled.getType() != op.getType())
        tiled = tensor::CastOp::create(b, op.getLoc(), op.getType(), tiled);
      op.replaceAllUsesWith(tiled);
      op.erase();
    }
  }
};

} // namespace
