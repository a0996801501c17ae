//===- SelectionOps.cpp - ops whose output size depends on the data -------===//
//
// NonZero and Unique return as many elements as the data holds, a number
// known only when the model runs. They are imported as scf loops over
// tensor.extract/insert: one pass finds the size, a tensor of that size is
// created, further passes fill it; the entry returns it at its run-time
// size (a dynamic dimension in the signature and the manifest).
//
//===----------------------------------------------------------------------===//

#include "ImporterInternal.h"

#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace hasten;
using namespace hasten::onnx_import;

namespace {

/// Whether a scalar of any element type is nonzero (NaN is).
Value isNonZero(OpBuilder &b, Location loc, Value v) {
  Type type = v.getType();
  if (type.isInteger(1))
    return v;
  Value zero = scalarConstant(b, loc, type, 0);
  if (isa<FloatType>(type))
    return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNE, v, zero);
  return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, v, zero);
}

/// NonZero: the coordinates of X's nonzero elements in row-major order, as
/// [rank, count] int64. The count is known only when the model runs: one
/// loop counts, a second writes the coordinates into a tensor of that many
/// columns, and the entry returns it at its run-time size.
LogicalResult convertNonZero(NodeContext &ctx) {
  auto type = ctx.inputType(0);
  if (!type.hasStaticShape() || type.getRank() == 0)
    return ctx.emitError() << "expects a static shape of rank 1 or more, got " << type;
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  int64_t rank = type.getRank();
  SmallVector<ReassociationIndices> all(1);
  for (int64_t d = 0; d < rank; ++d)
    all[0].push_back(d);
  Value flat =
      rank == 1 ? ctx.input(0) : tensor::CollapseShapeOp::create(b, loc, ctx.input(0), all);
  Value c0 = arith::ConstantIndexOp::create(b, loc, 0);
  Value c1 = arith::ConstantIndexOp::create(b, loc, 1);
  Value total = arith::ConstantIndexOp::create(b, loc, type.getNumElements());
  auto nonZeroAt = [&](OpBuilder &lb, Location ll, Value e) {
    return isNonZero(lb, ll, tensor::ExtractOp::create(lb, ll, flat, ValueRange{e}));
  };
  auto counting = scf::ForOp::create(
      b, loc, c0, total, c1, ValueRange{c0},
      [&](OpBuilder &lb, Location ll, Value e, ValueRange iter) {
        Value one = arith::SelectOp::create(lb, ll, nonZeroAt(lb, ll, e), c1, c0);
        scf::YieldOp::create(lb, ll, ValueRange{arith::AddIOp::create(lb, ll, iter[0], one)});
      });
  Type i64 = b.getI64Type();
  Value empty = tensor::EmptyOp::create(b, loc, ArrayRef<int64_t>{rank, ShapedType::kDynamic}, i64,
                                        ValueRange{counting.getResult(0)});
  auto filling = scf::ForOp::create(
      b, loc, c0, total, c1, ValueRange{empty, c0},
      [&](OpBuilder &lb, Location ll, Value e, ValueRange iter) {
        auto written = scf::IfOp::create(
            lb, ll, nonZeroAt(lb, ll, e),
            [&](OpBuilder &tb, Location tl) {
              Value out = iter[0], rest = e;
              for (int64_t d = rank - 1; d >= 0; --d) {
                Value size = arith::ConstantIndexOp::create(tb, tl, type.getDimSize(d));
                Value coordinate = arith::RemUIOp::create(tb, tl, rest, size);
                rest = arith::DivUIOp::create(tb, tl, rest, size);
                Value row = arith::ConstantIndexOp::create(tb, tl, d);
                out = tensor::InsertOp::create(tb, tl, fromIndex(tb, tl, coordinate, i64), out,
                                               ValueRange{row, iter[1]});
              }
              scf::YieldOp::create(tb, tl,
                                   ValueRange{out, arith::AddIOp::create(tb, tl, iter[1], c1)});
            },
            [&](OpBuilder &eb, Location el) { scf::YieldOp::create(eb, el, iter); });
        scf::YieldOp::create(lb, ll, written.getResults());
      });
  ctx.setOutput(0, filling.getResult(0));
  return success();
}

//===----------------------------------------------------------------------===//
// Unique
//===----------------------------------------------------------------------===//

/// The items Unique compares: X's elements (no axis: X flattened), or its
/// slices along `axis`, each `length` elements in row-major order of the
/// other dimensions.
struct Items {
  Value x;
  RankedTensorType type;
  int64_t axis, count, length;
  bool isUnsigned;

  /// The coordinates of element `e` of item `item`.
  SmallVector<Value> coordinates(OpBuilder &b, Location loc, Value item, Value e) const {
    SmallVector<Value> at(type.getRank());
    Value rest = e;
    for (int64_t d = type.getRank() - 1; d >= 0; --d) {
      if (d == axis) {
        at[d] = item;
        continue;
      }
      Value size = arith::ConstantIndexOp::create(b, loc, type.getDimSize(d));
      at[d] = arith::RemUIOp::create(b, loc, rest, size);
      rest = arith::DivUIOp::create(b, loc, rest, size);
    }
    return at;
  }
  Value element(OpBuilder &b, Location loc, Value item, Value e) const {
    return tensor::ExtractOp::create(b, loc, x, coordinates(b, loc, item, e));
  }

  /// Compares two scalars of the element type.
  Value compare(OpBuilder &b, Location loc, bool equal, Value p, Value q) const {
    if (isa<FloatType>(p.getType()))
      return arith::CmpFOp::create(
          b, loc, equal ? arith::CmpFPredicate::OEQ : arith::CmpFPredicate::OLT, p, q);
    auto predicate = equal ? arith::CmpIPredicate::eq
                           : (isUnsigned || p.getType().isInteger(1) ? arith::CmpIPredicate::ult
                                                                     : arith::CmpIPredicate::slt);
    return arith::CmpIOp::create(b, loc, predicate, p, q);
  }

  /// Whether items i and j hold the same values.
  Value same(OpBuilder &b, Location loc, Value i, Value j) const {
    Value c0 = arith::ConstantIndexOp::create(b, loc, 0);
    Value c1 = arith::ConstantIndexOp::create(b, loc, 1);
    Value yes = arith::ConstantIntOp::create(b, loc, b.getI1Type(), 1);
    return scf::ForOp::create(
               b, loc, c0, arith::ConstantIndexOp::create(b, loc, length), c1, ValueRange{yes},
               [&](OpBuilder &lb, Location ll, Value e, ValueRange iter) {
                 Value eq = compare(lb, ll, true, element(lb, ll, i, e), element(lb, ll, j, e));
                 scf::YieldOp::create(lb, ll,
                                      ValueRange{arith::AndIOp::create(lb, ll, iter[0], eq)});
               })
        .getResult(0);
  }

  /// Whether item i comes before item j in lexicographic order.
  Value before(OpBuilder &b, Location loc, Value i, Value j) const {
    Value c0 = arith::ConstantIndexOp::create(b, loc, 0);
    Value c1 = arith::ConstantIndexOp::create(b, loc, 1);
    Value no = arith::ConstantIntOp::create(b, loc, b.getI1Type(), 0);
    // (decided, less): the first element that differs decides.
    return scf::ForOp::create(
               b, loc, c0, arith::ConstantIndexOp::create(b, loc, length), c1, ValueRange{no, no},
               [&](OpBuilder &lb, Location ll, Value e, ValueRange iter) {
                 Value p = element(lb, ll, i, e), q = element(lb, ll, j, e);
                 Value less = compare(lb, ll, false, p, q);
                 Value more = compare(lb, ll, false, q, p);
                 Value decided = arith::OrIOp::create(lb, ll, iter[0],
                                                      arith::OrIOp::create(lb, ll, less, more));
                 Value result = arith::SelectOp::create(lb, ll, iter[0], iter[1], less);
                 scf::YieldOp::create(lb, ll, ValueRange{decided, result});
               })
        .getResult(1);
  }
};

/// Unique: the distinct elements (or slices along `axis`) of X, sorted
/// (lexicographically for slices) or in order of first occurrence; the index
/// of each one's first occurrence, each item's position among them, and how
/// often each occurs. Quadratic in the number of items: each item is
/// compared with the ones before it (its first occurrence) and each distinct
/// one with the other distinct ones (its position).
LogicalResult convertUnique(NodeContext &ctx) {
  auto type = ctx.inputType(0);
  if (!type.hasStaticShape() || type.getRank() == 0)
    return ctx.emitError() << "expects a static shape of rank 1 or more, got " << type;
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  bool sorted = ctx.getInt("sorted", 1) != 0;
  Items items{ctx.input(0), type, 0, 0, 1, ctx.info(0).isUnsigned};
  if (ctx.hasAttr("axis")) {
    FailureOr<int64_t> axis = ctx.normalizeAxis(ctx.getInt("axis", 0), type.getRank());
    if (failed(axis))
      return failure();
    items.axis = *axis;
    items.length = type.getNumElements() / std::max<int64_t>(1, type.getDimSize(*axis));
  } else if (type.getRank() > 1) {
    SmallVector<ReassociationIndices> all(1);
    for (int64_t d = 0; d < type.getRank(); ++d)
      all[0].push_back(d);
    items.x = tensor::CollapseShapeOp::create(b, loc, items.x, all);
    items.type = cast<RankedTensorType>(items.x.getType());
  }
  items.count = items.type.getDimSize(items.axis);
  Type i64 = b.getI64Type();
  Value c0 = arith::ConstantIndexOp::create(b, loc, 0);
  Value c1 = arith::ConstantIndexOp::create(b, loc, 1);
  Value count = arith::ConstantIndexOp::create(b, loc, items.count);
  auto loop = [&](OpBuilder &ob, Location ol, Value upper, ValueRange inits,
                  function_ref<SmallVector<Value>(OpBuilder &, Location, Value, ValueRange)> body) {
    return scf::ForOp::create(ob, ol, c0, upper, c1, inits,
                              [&](OpBuilder &lb, Location ll, Value i, ValueRange iter) {
                                scf::YieldOp::create(lb, ll, body(lb, ll, i, iter));
                              });
  };
  auto onlyIf = [&](OpBuilder &ob, Location ol, Value condition, ValueRange kept,
                    function_ref<SmallVector<Value>(OpBuilder &, Location)> then) {
    return scf::IfOp::create(
               ob, ol, condition,
               [&](OpBuilder &tb, Location tl) { scf::YieldOp::create(tb, tl, then(tb, tl)); },
               [&](OpBuilder &eb, Location el) { scf::YieldOp::create(eb, el, kept); })
        .getResults();
  };
  auto itemTensor = [&](OpBuilder &ob, Location ol) -> Value {
    return tensor::EmptyOp::create(ob, ol, ArrayRef<int64_t>{items.count}, i64);
  };

  // first[i]: the first item equal to item i.
  Value first =
      loop(b, loc, count, ValueRange{itemTensor(b, loc)},
           [&](OpBuilder &lb, Location ll, Value i, ValueRange iter) {
             Value none = arith::ConstantIntOp::create(lb, ll, i64, -1);
             Value upTo = arith::AddIOp::create(lb, ll, i, c1);
             Value found = loop(lb, ll, upTo, ValueRange{none},
                                [&](OpBuilder &jb, Location jl, Value j, ValueRange f) {
                                  Value open = arith::CmpIOp::create(
                                      jb, jl, arith::CmpIPredicate::slt, f[0],
                                      arith::ConstantIntOp::create(jb, jl, i64, 0));
                                  return SmallVector<Value>(
                                      onlyIf(jb, jl, open, f, [&](OpBuilder &tb, Location tl) {
                                        Value match = items.same(tb, tl, i, j);
                                        return SmallVector<Value>{arith::SelectOp::create(
                                            tb, tl, match, fromIndex(tb, tl, j, i64), f[0])};
                                      }));
                                })
                               .getResult(0);
             return SmallVector<Value>{tensor::InsertOp::create(lb, ll, found, iter[0], i)};
           })
          .getResult(0);
  auto isFirst = [&](OpBuilder &ob, Location ol, Value i) -> Value {
    return arith::CmpIOp::create(ob, ol, arith::CmpIPredicate::eq,
                                 tensor::ExtractOp::create(ob, ol, first, i),
                                 fromIndex(ob, ol, i, i64));
  };

  // position[i] of each distinct item: how many distinct items come before
  // it (in value order, or in X); and how many distinct items there are.
  auto positions = loop(
      b, loc, count, ValueRange{itemTensor(b, loc), c0},
      [&](OpBuilder &lb, Location ll, Value i, ValueRange iter) {
        return SmallVector<Value>(
            onlyIf(lb, ll, isFirst(lb, ll, i), iter, [&](OpBuilder &tb, Location tl) {
              Value zero = arith::ConstantIntOp::create(tb, tl, i64, 0);
              Value rank =
                  loop(tb, tl, count, ValueRange{zero},
                       [&](OpBuilder &jb, Location jl, Value j, ValueRange r) {
                         Value ahead =
                             sorted
                                 ? onlyIf(jb, jl, isFirst(jb, jl, j),
                                          ValueRange{arith::ConstantIntOp::create(
                                              jb, jl, jb.getI1Type(), 0)},
                                          [&](OpBuilder &kb, Location kl) {
                                            return SmallVector<Value>{items.before(kb, kl, j, i)};
                                          })[0]
                                 : Value(arith::AndIOp::create(
                                       jb, jl, isFirst(jb, jl, j),
                                       arith::CmpIOp::create(jb, jl, arith::CmpIPredicate::ult, j,
                                                             i)));
                         Value one = arith::ExtUIOp::create(jb, jl, i64, ahead);
                         return SmallVector<Value>{arith::AddIOp::create(jb, jl, r[0], one)};
                       })
                      .getResult(0);
              return SmallVector<Value>{tensor::InsertOp::create(tb, tl, rank, iter[0], i),
                                        arith::AddIOp::create(tb, tl, iter[1], c1)};
            }));
      });
  Value position = positions.getResult(0), distinct = positions.getResult(1);
  auto positionOf = [&](OpBuilder &ob, Location ol, Value i) -> Value {
    return toIndex(ob, ol, tensor::ExtractOp::create(ob, ol, position, i));
  };

  // Y and indices: each distinct item written at its position.
  SmallVector<OpFoldResult> ySizes;
  for (int64_t d = 0; d < items.type.getRank(); ++d)
    ySizes.push_back(d == items.axis ? OpFoldResult(distinct)
                                     : OpFoldResult(b.getIndexAttr(items.type.getDimSize(d))));
  Value yInit = createEmpty(b, loc, ySizes, items.type.getElementType());
  Value indicesInit = createEmpty(b, loc, {distinct}, i64);
  Value length = arith::ConstantIndexOp::create(b, loc, items.length);
  auto written =
      loop(b, loc, count, ValueRange{yInit, indicesInit},
           [&](OpBuilder &lb, Location ll, Value i, ValueRange iter) {
             return SmallVector<Value>(
                 onlyIf(lb, ll, isFirst(lb, ll, i), iter, [&](OpBuilder &tb, Location tl) {
                   Value at = positionOf(tb, tl, i);
                   Value y = loop(tb, tl, length, ValueRange{iter[0]},
                                  [&](OpBuilder &eb, Location el, Value e, ValueRange out) {
                                    return SmallVector<Value>{tensor::InsertOp::create(
                                        eb, el, items.element(eb, el, i, e), out[0],
                                        items.coordinates(eb, el, at, e))};
                                  })
                                 .getResult(0);
                   return SmallVector<Value>{
                       y, tensor::InsertOp::create(tb, tl, fromIndex(tb, tl, i, i64), iter[1], at)};
                 }));
           });

  // inverse_indices and counts: each item's distinct one.
  Value counts = createFilled(b, loc, {distinct}, scalarConstant(b, loc, i64, 0));
  auto tallied = loop(
      b, loc, count, ValueRange{itemTensor(b, loc), counts},
      [&](OpBuilder &lb, Location ll, Value k, ValueRange iter) {
        Value at = positionOf(lb, ll, toIndex(lb, ll, tensor::ExtractOp::create(lb, ll, first, k)));
        Value inverse = tensor::InsertOp::create(lb, ll, fromIndex(lb, ll, at, i64), iter[0], k);
        Value seen = tensor::ExtractOp::create(lb, ll, iter[1], at);
        Value more =
            arith::AddIOp::create(lb, ll, seen, arith::ConstantIntOp::create(lb, ll, i64, 1));
        return SmallVector<Value>{inverse, tensor::InsertOp::create(lb, ll, more, iter[1], at)};
      });
  bool isUnsigned = ctx.info(0).isUnsigned;
  ctx.setOutput(0, written.getResult(0), isUnsigned);
  if (ctx.wantsOutput(1))
    ctx.setOutput(1, written.getResult(1));
  if (ctx.wantsOutput(2))
    ctx.setOutput(2, tallied.getResult(0));
  if (ctx.wantsOutput(3))
    ctx.setOutput(3, tallied.getResult(1));
  return success();
}

} // namespace

void hasten::onnx_import::registerSelectionConverters(ConverterTable &table) {
  table["NonZero"] = convertNonZero;
  table["Unique"] = convertUnique;
}
