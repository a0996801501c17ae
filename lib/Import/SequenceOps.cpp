//===- SequenceOps.cpp - ONNX's sequence and optional values --------------===//
//
// A sequence of tensors lives in two tensors that every upstream pass
// already understands: its elements' data back to back (1-D) and a shape
// table with one i64 row per element, [rank, d0, d1, ...], padded with 1 to
// the table's width. Elements may differ in shape and even in rank, as ONNX
// allows; their count is a run-time value. Inserting, erasing and reading
// an element are slices and copies of the two tensors, so sequences flow
// through scf.if and scf.while like any other value, and a module passes
// them to and from its caller as the same two tensors (the signature marks
// them with the sequence_data and sequence_shapes roles).
//
// An optional is its presence flag (rank-0 i1) beside its value, or beside
// an empty placeholder of the value's type when absent.
//
// Positions out of range, which ONNX calls an error, are clamped, and
// reading an element at a rank other than its own gives an empty tensor:
// generated code has no way to fail, so it stays inside the sequence's
// memory instead.
//
//===----------------------------------------------------------------------===//

#include "ImporterInternal.h"

#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace hasten;
using namespace hasten::onnx_import;

namespace {

RankedTensorType dataType(Type element) {
  return RankedTensorType::get({ShapedType::kDynamic}, element);
}

RankedTensorType shapeTableType(MLIRContext *context) {
  return RankedTensorType::get({ShapedType::kDynamic, ShapedType::kDynamic},
                               IntegerType::get(context, 64));
}

Value dim(OpBuilder &b, Location loc, Value tensor, int64_t d) {
  return tensor::DimOp::create(b, loc, tensor, d);
}

Value readIndex(OpBuilder &b, Location loc, Value table, Value row, Value column) {
  return toIndex(b, loc, tensor::ExtractOp::create(b, loc, table, ValueRange{row, column}));
}

Value minIndex(OpBuilder &b, Location loc, Value x, Value y) {
  return arith::MinSIOp::create(b, loc, x, y);
}

Value maxIndex(OpBuilder &b, Location loc, Value x, Value y) {
  return arith::MaxSIOp::create(b, loc, x, y);
}

/// `then()` where `cond` holds, else `otherwise` (index values).
SmallVector<Value> guarded(OpBuilder &b, Location loc, Value cond, ArrayRef<Value> otherwise,
                           function_ref<SmallVector<Value>(OpBuilder &)> then) {
  SmallVector<Type> types(otherwise.size(), b.getIndexType());
  auto ifOp = scf::IfOp::create(b, loc, types, cond, /*withElseRegion=*/true);
  {
    OpBuilder tb = OpBuilder::atBlockBegin(&ifOp.getThenRegion().front());
    scf::YieldOp::create(tb, loc, then(tb));
  }
  {
    OpBuilder eb = OpBuilder::atBlockBegin(&ifOp.getElseRegion().front());
    scf::YieldOp::create(eb, loc, otherwise);
  }
  return SmallVector<Value>(ifOp.getResults());
}

/// The number of elements of the element in row `row` (in range): the
/// product of its first `rank` dimensions.
Value elementCount(OpBuilder &b, Location loc, Value shapes, Value row) {
  Value zero = indexConstant(b, loc, 0), one = indexConstant(b, loc, 1);
  Value rank = readIndex(b, loc, shapes, row, zero);
  Value width = dim(b, loc, shapes, 1);
  Value columns = minIndex(b, loc, arith::AddIOp::create(b, loc, rank, one), width);
  auto loop = scf::ForOp::create(
      b, loc, one, columns, one, ValueRange{one},
      [&](OpBuilder &lb, Location ll, Value c, ValueRange acc) {
        Value d = readIndex(lb, ll, shapes, row, c);
        scf::YieldOp::create(lb, ll, ValueRange{arith::MulIOp::create(lb, ll, acc[0], d)});
      });
  return loop.getResult(0);
}

/// Where the data of the element in row `row` starts (rows before it in
/// range).
Value elementOffset(OpBuilder &b, Location loc, Value shapes, Value row) {
  Value zero = indexConstant(b, loc, 0), one = indexConstant(b, loc, 1);
  auto loop = scf::ForOp::create(
      b, loc, zero, row, one, ValueRange{zero},
      [&](OpBuilder &lb, Location ll, Value r, ValueRange acc) {
        Value n = elementCount(lb, ll, shapes, r);
        scf::YieldOp::create(lb, ll, ValueRange{arith::AddIOp::create(lb, ll, acc[0], n)});
      });
  return loop.getResult(0);
}

/// `source[offset : offset + size]` of a 1-D tensor.
Value slice1D(OpBuilder &b, Location loc, Value source, Value offset, Value size) {
  return tensor::ExtractSliceOp::create(b, loc, source, ArrayRef<OpFoldResult>{offset},
                                        ArrayRef<OpFoldResult>{size},
                                        ArrayRef<OpFoldResult>{b.getIndexAttr(1)});
}

Value insert1D(OpBuilder &b, Location loc, Value piece, Value into, Value offset) {
  return tensor::InsertSliceOp::create(b, loc, piece, into, ArrayRef<OpFoldResult>{offset},
                                       tensor::getMixedSizes(b, loc, piece),
                                       ArrayRef<OpFoldResult>{b.getIndexAttr(1)});
}

/// Rows `first` .. `first + count` of a table, columns 0 .. `columns`.
Value rows(OpBuilder &b, Location loc, Value table, Value first, Value count, Value columns) {
  return tensor::ExtractSliceOp::create(
      b, loc, table, ArrayRef<OpFoldResult>{first, b.getIndexAttr(0)},
      ArrayRef<OpFoldResult>{count, columns},
      ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
}

Value insertRows(OpBuilder &b, Location loc, Value piece, Value into, Value first) {
  return tensor::InsertSliceOp::create(
      b, loc, piece, into, ArrayRef<OpFoldResult>{first, b.getIndexAttr(0)},
      tensor::getMixedSizes(b, loc, piece),
      ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
}

ImportedValue makeSequence(OpBuilder &b, Location loc, Value data, Value shapes, bool isUnsigned,
                           int64_t rank) {
  ImportedValue v;
  v.tensor =
      castIfNeeded(b, loc, data, dataType(cast<ShapedType>(data.getType()).getElementType()));
  v.shapes = castIfNeeded(b, loc, shapes, shapeTableType(b.getContext()));
  v.isUnsigned = isUnsigned;
  v.elementRank = rank;
  return v;
}

/// `sequence` with `item` inserted before element `position` (index, in
/// [0, length]); `offset`, where the caller knows it, is where that
/// element's data starts (the data's size, to append).
ImportedValue insertElement(OpBuilder &b, Location loc, const ImportedValue &sequence, Value item,
                            Value position, Value offset = Value()) {
  auto itemType = cast<RankedTensorType>(item.getType());
  int64_t rank = itemType.getRank();
  Value zero = indexConstant(b, loc, 0), one = indexConstant(b, loc, 1);
  // Its row of the table: [rank, dims...].
  SmallVector<Value> row = {indexConstant(b, loc, rank)};
  for (int64_t d = 0; d < rank; ++d)
    row.push_back(dim(b, loc, item, d));
  Value count = numElementsOf(b, loc, item);
  Value flat = reshapeTo(b, loc, item, ArrayRef<OpFoldResult>{count});

  Value data = sequence.tensor, shapes = sequence.shapes;
  Value length = dim(b, loc, shapes, 0), width = dim(b, loc, shapes, 1);
  Value total = dim(b, loc, data, 0);
  if (!offset)
    offset = elementOffset(b, loc, shapes, position);
  Value grown = createEmpty(b, loc, {arith::AddIOp::create(b, loc, total, count).getResult()},
                            itemType.getElementType());
  grown = insert1D(b, loc, slice1D(b, loc, data, zero, offset), grown, zero);
  grown = insert1D(b, loc, flat, grown, offset);
  grown =
      insert1D(b, loc, slice1D(b, loc, data, offset, arith::SubIOp::create(b, loc, total, offset)),
               grown, arith::AddIOp::create(b, loc, offset, count));

  Value newWidth = maxIndex(b, loc, width, indexConstant(b, loc, rank + 1));
  Value table =
      createFilled(b, loc, {arith::AddIOp::create(b, loc, length, one).getResult(), newWidth},
                   arith::ConstantIntOp::create(b, loc, b.getI64Type(), 1));
  table = insertRows(b, loc, rows(b, loc, shapes, zero, position, width), table, zero);
  SmallVector<Value> rowValues;
  for (Value v : row)
    rowValues.push_back(fromIndex(b, loc, v, b.getI64Type()));
  Value newRow = tensor::FromElementsOp::create(
      b, loc, RankedTensorType::get({1, rank + 1}, b.getI64Type()), rowValues);
  table = insertRows(b, loc, newRow, table, position);
  table = insertRows(
      b, loc,
      rows(b, loc, shapes, position, arith::SubIOp::create(b, loc, length, position), width), table,
      arith::AddIOp::create(b, loc, position, one));
  return makeSequence(b, loc, grown, table, sequence.isUnsigned,
                      joinElementRanks(sequence.elementRank, rank));
}

/// `sequence` without element `position` (index, in range; the sequence
/// is not empty).
ImportedValue eraseElement(OpBuilder &b, Location loc, const ImportedValue &sequence,
                           Value position) {
  Value zero = indexConstant(b, loc, 0), one = indexConstant(b, loc, 1);
  Value data = sequence.tensor, shapes = sequence.shapes;
  Value length = dim(b, loc, shapes, 0), width = dim(b, loc, shapes, 1);
  Value total = dim(b, loc, data, 0);
  Value offset = elementOffset(b, loc, shapes, position);
  Value count = elementCount(b, loc, shapes, position);
  Value after = arith::AddIOp::create(b, loc, offset, count);
  Value shrunk = createEmpty(b, loc, {arith::SubIOp::create(b, loc, total, count).getResult()},
                             cast<ShapedType>(data.getType()).getElementType());
  shrunk = insert1D(b, loc, slice1D(b, loc, data, zero, offset), shrunk, zero);
  shrunk =
      insert1D(b, loc, slice1D(b, loc, data, after, arith::SubIOp::create(b, loc, total, after)),
               shrunk, offset);
  Value table = createEmpty(b, loc, {arith::SubIOp::create(b, loc, length, one).getResult(), width},
                            b.getI64Type());
  table = insertRows(b, loc, rows(b, loc, shapes, zero, position, width), table, zero);
  Value next = arith::AddIOp::create(b, loc, position, one);
  table = insertRows(b, loc,
                     rows(b, loc, shapes, next, arith::SubIOp::create(b, loc, length, next), width),
                     table, position);
  return makeSequence(b, loc, shrunk, table, sequence.isUnsigned, sequence.elementRank);
}

//===----------------------------------------------------------------------===//
// Converters
//===----------------------------------------------------------------------===//

/// The node's input `i` as a sequence, or an error naming it.
FailureOr<ImportedValue> sequenceInput(NodeContext &ctx, unsigned i) {
  if (!ctx.hasInput(i) || !ctx.info(i).isSequence() || ctx.info(i).isOptional()) {
    ctx.emitError() << "input #" << i << " must be a sequence of tensors";
    return failure();
  }
  return ctx.info(i);
}

/// A position input (a scalar integer), normalized against `length` as
/// ONNX reads negative positions and clamped to [0, length - 1] (or
/// [0, length] when `inclusive`, for insertion).
FailureOr<Value> positionInput(NodeContext &ctx, unsigned i, Value length, bool inclusive) {
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  auto type = cast<RankedTensorType>(ctx.input(i).getType());
  if (!type.hasStaticShape() || type.getNumElements() != 1 ||
      !(type.getElementType().isInteger(32) || type.getElementType().isInteger(64))) {
    ctx.emitError() << "position must be one int32 or int64 value, got " << type;
    return failure();
  }
  SmallVector<Value> zeros(type.getRank(), indexConstant(b, loc, 0));
  Value p = toIndex(b, loc, tensor::ExtractOp::create(b, loc, ctx.input(i), zeros));
  Value zero = indexConstant(b, loc, 0);
  Value negative = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, p, zero);
  p = arith::SelectOp::create(b, loc, negative, arith::AddIOp::create(b, loc, p, length), p);
  Value last =
      inclusive
          ? length
          : maxIndex(b, loc, arith::SubIOp::create(b, loc, length, indexConstant(b, loc, 1)), zero);
  return maxIndex(b, loc, minIndex(b, loc, p, last), zero);
}

/// The element rank to read a sequence's elements at: the one the importer
/// knows, else the one ONNX declares for the node's output.
FailureOr<int64_t> readRank(NodeContext &ctx, const ImportedValue &sequence, StringRef what) {
  if (sequence.elementRank >= 0)
    return sequence.elementRank;
  if (std::optional<int64_t> declared = ctx.declaredOutputRank(0))
    return *declared;
  ctx.emitError() << "the rank of the sequence's elements is not known when importing (they "
                     "differ, or none was inserted), and the model declares no shape for "
                  << what;
  return failure();
}

LogicalResult convertSequenceEmpty(NodeContext &ctx) {
  int32_t dtype = ctx.getInt("dtype", onnx::TensorProto::FLOAT);
  FailureOr<Type> element = getElementType(ctx.b.getContext(), dtype);
  if (failed(element))
    return ctx.fail("unsupported dtype " + onnxTypeName(dtype));
  ctx.setOutputValue(0, emptySequence(ctx.b, ctx.loc, *element, isUnsignedOnnxType(dtype)));
  return success();
}

LogicalResult convertSequenceConstruct(NodeContext &ctx) {
  if (ctx.node.input_size() < 1)
    return ctx.fail("needs at least one tensor");
  Type element = ctx.inputType(0).getElementType();
  ImportedValue sequence = emptySequence(ctx.b, ctx.loc, element, ctx.info(0).isUnsigned);
  for (int i = 0; i < ctx.node.input_size(); ++i) {
    if (ctx.inputType(i).getElementType() != element)
      return ctx.emitError() << "input #" << i << " is " << ctx.inputType(i)
                             << " but the sequence holds " << element;
    sequence = appendToSequence(ctx.b, ctx.loc, sequence, ctx.input(i));
  }
  ctx.setOutputValue(0, sequence);
  return success();
}

LogicalResult convertSequenceInsert(NodeContext &ctx) {
  FailureOr<ImportedValue> sequence = sequenceInput(ctx, 0);
  if (failed(sequence))
    return failure();
  Type element = cast<ShapedType>(sequence->tensor.getType()).getElementType();
  if (ctx.inputType(1).getElementType() != element)
    return ctx.emitError() << "inserts " << ctx.inputType(1) << " into a sequence of " << element;
  if (!ctx.hasInput(2)) {
    ctx.setOutputValue(0, appendToSequence(ctx.b, ctx.loc, *sequence, ctx.input(1)));
    return success();
  }
  Value length = sequenceLength(ctx.b, ctx.loc, *sequence);
  FailureOr<Value> position = positionInput(ctx, 2, length, /*inclusive=*/true);
  if (failed(position))
    return failure();
  ctx.setOutputValue(0, insertElement(ctx.b, ctx.loc, *sequence, ctx.input(1), *position));
  return success();
}

LogicalResult convertSequenceAt(NodeContext &ctx) {
  FailureOr<ImportedValue> sequence = sequenceInput(ctx, 0);
  if (failed(sequence))
    return failure();
  FailureOr<int64_t> rank = readRank(ctx, *sequence, "its output");
  if (failed(rank))
    return failure();
  Value length = sequenceLength(ctx.b, ctx.loc, *sequence);
  FailureOr<Value> position = positionInput(ctx, 1, length, /*inclusive=*/false);
  if (failed(position))
    return failure();
  ctx.setOutput(0, sequenceElement(ctx.b, ctx.loc, *sequence, *position, *rank),
                sequence->isUnsigned);
  return success();
}

LogicalResult convertSequenceErase(NodeContext &ctx) {
  FailureOr<ImportedValue> sequence = sequenceInput(ctx, 0);
  if (failed(sequence))
    return failure();
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Value length = sequenceLength(b, loc, *sequence);
  Value position = maxIndex(b, loc, arith::SubIOp::create(b, loc, length, indexConstant(b, loc, 1)),
                            indexConstant(b, loc, 0));
  if (ctx.hasInput(1)) {
    FailureOr<Value> p = positionInput(ctx, 1, length, /*inclusive=*/false);
    if (failed(p))
      return failure();
    position = *p;
  }
  // Erasing from an empty sequence (an error in ONNX) leaves it empty.
  Value nonEmpty =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt, length, indexConstant(b, loc, 0));
  SmallVector<Value> parts = flattenValue(*sequence);
  auto ifOp = scf::IfOp::create(b, loc, ValueRange(parts).getTypes(), nonEmpty,
                                /*withElseRegion=*/true);
  {
    OpBuilder tb = OpBuilder::atBlockBegin(&ifOp.getThenRegion().front());
    scf::YieldOp::create(tb, loc, flattenValue(eraseElement(tb, loc, *sequence, position)));
  }
  {
    OpBuilder eb = OpBuilder::atBlockBegin(&ifOp.getElseRegion().front());
    scf::YieldOp::create(eb, loc, flattenValue(*sequence));
  }
  ctx.setOutputValue(0, rebuildValue(*sequence, ifOp.getResults()));
  return success();
}

LogicalResult convertSequenceLength(NodeContext &ctx) {
  FailureOr<ImportedValue> sequence = sequenceInput(ctx, 0);
  if (failed(sequence))
    return failure();
  Value length =
      fromIndex(ctx.b, ctx.loc, sequenceLength(ctx.b, ctx.loc, *sequence), ctx.b.getI64Type());
  ctx.setOutputElements(0, {length}, ctx.b.getI64Type(), /*scalar=*/true);
  return success();
}

/// ConcatFromSequence: the elements joined along `axis` (stacked along a
/// new one with new_axis = 1); every other dimension is the first
/// element's. An empty sequence gives an empty tensor.
LogicalResult convertConcatFromSequence(NodeContext &ctx) {
  FailureOr<ImportedValue> sequence = sequenceInput(ctx, 0);
  if (failed(sequence))
    return failure();
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  int64_t newAxis = ctx.getInt("new_axis", 0);
  if (newAxis != 0 && newAxis != 1)
    return ctx.fail("new_axis must be 0 or 1");
  std::optional<int64_t> declared = ctx.declaredOutputRank(0);
  int64_t rank = sequence->elementRank;
  if (rank < 0 && declared)
    rank = *declared - newAxis;
  if (rank < 0)
    return ctx.fail("the rank of the sequence's elements is not known when importing, and the "
                    "model declares no shape for the output");
  int64_t outRank = rank + newAxis;
  if (!ctx.hasAttr("axis"))
    return ctx.fail("needs the axis attribute");
  FailureOr<int64_t> axis = ctx.normalizeAxis(ctx.getInt("axis", 0), outRank);
  if (failed(axis))
    return failure();
  if (newAxis == 0 && rank == 0)
    return ctx.fail("cannot concatenate scalars without new_axis");
  Type element = cast<ShapedType>(sequence->tensor.getType()).getElementType();
  Value zero = indexConstant(b, loc, 0), one = indexConstant(b, loc, 1);
  Value length = sequenceLength(b, loc, *sequence);
  Value nonEmpty = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt, length, zero);

  // The result's dimensions: the first element's, the axis summed.
  SmallVector<Value> zeros(outRank, zero);
  SmallVector<Value> outDims = guarded(b, loc, nonEmpty, zeros, [&](OpBuilder &tb) {
    Value first = sequenceElement(tb, loc, *sequence, zero, rank);
    SmallVector<Value> dims;
    for (int64_t d = 0; d < rank; ++d)
      dims.push_back(dim(tb, loc, first, d));
    if (newAxis) {
      dims.insert(dims.begin() + *axis, length);
      return dims;
    }
    Value sum = zero;
    auto loop = scf::ForOp::create(
        tb, loc, zero, length, one, ValueRange{zero},
        [&](OpBuilder &lb, Location ll, Value i, ValueRange acc) {
          Value item = sequenceElement(lb, ll, *sequence, i, rank);
          scf::YieldOp::create(
              lb, ll, ValueRange{arith::AddIOp::create(lb, ll, acc[0], dim(lb, ll, item, *axis))});
        });
    sum = loop.getResult(0);
    dims[*axis] = sum;
    return dims;
  });
  SmallVector<OpFoldResult> sizes(outDims.begin(), outDims.end());
  Value result = createEmpty(b, loc, sizes, element);
  auto loop = scf::ForOp::create(
      b, loc, zero, length, one, ValueRange{result, zero},
      [&](OpBuilder &lb, Location ll, Value i, ValueRange acc) {
        Value item = sequenceElement(lb, ll, *sequence, i, rank);
        SmallVector<OpFoldResult> itemSizes;
        for (int64_t d = 0; d < rank; ++d)
          itemSizes.push_back(dim(lb, ll, item, d));
        if (newAxis) {
          item = insertUnitDims(lb, ll, item, {*axis});
          itemSizes.insert(itemSizes.begin() + *axis, lb.getIndexAttr(1));
        }
        // Elements that disagree with the first in another dimension (an
        // error in ONNX) are cut to the result's size.
        for (int64_t d = 0; d < outRank; ++d)
          if (d != *axis)
            itemSizes[d] =
                minIndex(lb, ll, getValueOrCreateConstantIndexOp(lb, ll, itemSizes[d]), outDims[d]);
        Value step = getValueOrCreateConstantIndexOp(lb, ll, itemSizes[*axis]);
        SmallVector<OpFoldResult> offsets(outRank, lb.getIndexAttr(0)),
            ones(outRank, lb.getIndexAttr(1));
        offsets[*axis] = acc[1];
        Value piece = tensor::ExtractSliceOp::create(
            lb, ll, item, SmallVector<OpFoldResult>(outRank, lb.getIndexAttr(0)), itemSizes, ones);
        Value into = tensor::InsertSliceOp::create(lb, ll, piece, acc[0], offsets, itemSizes, ones);
        scf::YieldOp::create(lb, ll, ValueRange{into, arith::AddIOp::create(lb, ll, acc[1], step)});
      });
  ctx.setOutput(0, loop.getResult(0), sequence->isUnsigned);
  return success();
}

/// SplitToSequence: pieces of `input` along `axis`: of the lengths in a
/// 1-D split, of a scalar split's length (the last one shorter), or of
/// length 1 without split (then squeezed unless keepdims).
LogicalResult convertSplitToSequence(NodeContext &ctx) {
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Value input = ctx.input(0);
  auto type = ctx.inputType(0);
  int64_t rank = type.getRank();
  if (rank == 0)
    return ctx.fail("cannot split a scalar");
  FailureOr<int64_t> axis = ctx.normalizeAxis(ctx.getInt("axis", 0), rank);
  if (failed(axis))
    return failure();
  bool keepDims = ctx.getInt("keepdims", 1) != 0;
  Value one = indexConstant(b, loc, 1);
  Value extent = dim(b, loc, input, *axis);

  // Piece i: (start, length) from the loop index.
  Value count;
  std::function<std::pair<Value, Value>(OpBuilder &, Location, Value)> piece;
  Value splits;
  if (!ctx.hasInput(1)) {
    count = extent;
    piece = [&](OpBuilder &, Location, Value i) { return std::make_pair(i, Value()); };
  } else {
    auto splitType = ctx.inputType(1);
    if (!(splitType.getElementType().isInteger(32) || splitType.getElementType().isInteger(64)) ||
        splitType.getRank() > 1 || !splitType.hasStaticShape())
      return ctx.emitError() << "split must be an int32 or int64 scalar or 1-D tensor of static "
                                "length, got "
                             << splitType;
    splits = ctx.input(1);
    if (splitType.getRank() == 0) {
      Value size = maxIndex(
          b, loc, toIndex(b, loc, tensor::ExtractOp::create(b, loc, splits, ValueRange{})), one);
      count = arith::CeilDivSIOp::create(b, loc, extent, size);
      piece = [=](OpBuilder &lb, Location ll, Value i) {
        Value start = arith::MulIOp::create(lb, ll, i, size);
        Value len = minIndex(lb, ll, size, arith::SubIOp::create(lb, ll, extent, start));
        return std::make_pair(start, len);
      };
    } else {
      count = indexConstant(b, loc, splitType.getDimSize(0));
      piece = [=](OpBuilder &lb, Location ll, Value i) {
        // start = sum of the lengths before i; each clamped inside the axis.
        auto sum = scf::ForOp::create(
            lb, ll, indexConstant(lb, ll, 0), i, indexConstant(lb, ll, 1),
            ValueRange{indexConstant(lb, ll, 0)},
            [&](OpBuilder &sb, Location sl, Value j, ValueRange acc) {
              Value len = toIndex(sb, sl, tensor::ExtractOp::create(sb, sl, splits, ValueRange{j}));
              scf::YieldOp::create(sb, sl, ValueRange{arith::AddIOp::create(sb, sl, acc[0], len)});
            });
        Value start =
            minIndex(lb, ll, maxIndex(lb, ll, sum.getResult(0), indexConstant(lb, ll, 0)), extent);
        Value len = toIndex(lb, ll, tensor::ExtractOp::create(lb, ll, splits, ValueRange{i}));
        len = minIndex(lb, ll, maxIndex(lb, ll, len, indexConstant(lb, ll, 0)),
                       arith::SubIOp::create(lb, ll, extent, start));
        return std::make_pair(start, len);
      };
    }
  }
  bool squeeze = !ctx.hasInput(1) && !keepDims;
  int64_t pieceRank = squeeze ? rank - 1 : rank;
  // The pieces never hold more than the input: its size of data and one
  // row per piece, filled in order (no copy per piece), then cut to what
  // the pieces took (less where a split list stops short of the axis).
  Type i64 = b.getI64Type();
  Value data = createEmpty(b, loc, {numElementsOf(b, loc, input)}, type.getElementType());
  Value table = createEmpty(b, loc, {count, b.getIndexAttr(pieceRank + 1)}, i64);
  ValueRange results = countedLoop(
      b, loc, count, ValueRange{data, table, indexConstant(b, loc, 0)},
      [&](OpBuilder &lb, Location ll, Value i, ValueRange acc) {
        auto [start, len] = piece(lb, ll, i);
        SmallVector<OpFoldResult> offsets(rank, lb.getIndexAttr(0)), sizes,
            strides(rank, lb.getIndexAttr(1));
        for (int64_t d = 0; d < rank; ++d)
          sizes.push_back(d == *axis ? (len ? OpFoldResult(len) : lb.getIndexAttr(1))
                                     : OpFoldResult(dim(lb, ll, input, d)));
        offsets[*axis] = start;
        Value part = tensor::ExtractSliceOp::create(lb, ll, input, offsets, sizes, strides);
        if (squeeze)
          part = dropUnitDims(lb, ll, part, {*axis});
        Value size = numElementsOf(lb, ll, part);
        Value placed =
            insert1D(lb, ll, reshapeTo(lb, ll, part, ArrayRef<OpFoldResult>{size}), acc[0], acc[2]);
        SmallVector<Value> row = {arith::ConstantIntOp::create(lb, ll, i64, pieceRank)};
        for (int64_t d = 0; d < pieceRank; ++d)
          row.push_back(fromIndex(lb, ll, dim(lb, ll, part, d), i64));
        Value rowTensor = tensor::FromElementsOp::create(
            lb, ll, RankedTensorType::get({1, pieceRank + 1}, i64), row);
        Value rows = insertRows(lb, ll, rowTensor, acc[1], i);
        return SmallVector<Value>{placed, rows, arith::AddIOp::create(lb, ll, acc[2], size)};
      });
  ImportedValue result =
      makeSequence(b, loc, slice1D(b, loc, results[0], indexConstant(b, loc, 0), results[2]),
                   results[1], ctx.info(0).isUnsigned, pieceRank);
  ctx.setOutputValue(0, result);
  return success();
}

/// Optional: the input wrapped (present), or with no input an absent value
/// of the `type` attribute's type.
LogicalResult convertOptional(NodeContext &ctx) {
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  auto flag = [&](bool present) {
    return arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(RankedTensorType::get({}, b.getI1Type()), present));
  };
  ImportedValue value;
  if (ctx.hasInput(0)) {
    if (ctx.info(0).isOptional())
      return ctx.fail("cannot wrap an optional in an optional");
    value = ctx.info(0);
    value.elements.reset();
    value.present = flag(true);
    ctx.ignoreAttr("type");
    ctx.setOutputValue(0, value);
    return success();
  }
  const onnx::AttributeProto *typeAttr = ctx.attr("type");
  if (!typeAttr || !typeAttr->has_tp())
    return ctx.fail("needs an input or the type attribute");
  const onnx::TypeProto &tp = typeAttr->tp();
  const onnx::TypeProto *tensorType = &tp;
  bool sequence = tp.has_sequence_type();
  if (sequence)
    tensorType = &tp.sequence_type().elem_type();
  if (!tensorType->has_tensor_type())
    return ctx.fail("type must be a tensor or a sequence of tensors");
  int32_t dtype = tensorType->tensor_type().elem_type();
  FailureOr<Type> element = getElementType(b.getContext(), dtype);
  if (failed(element))
    return ctx.fail("unsupported element type " + onnxTypeName(dtype));
  if (sequence) {
    value = emptySequence(b, loc, *element, isUnsignedOnnxType(dtype));
    if (tensorType->tensor_type().has_shape())
      value.elementRank = tensorType->tensor_type().shape().dim_size();
  } else {
    if (!tensorType->tensor_type().has_shape())
      return ctx.fail("an absent tensor needs its rank in the type attribute");
    // The placeholder: the declared shape, unknown dimensions 0.
    SmallVector<OpFoldResult> sizes;
    for (const auto &d : tensorType->tensor_type().shape().dim())
      sizes.push_back(b.getIndexAttr(d.has_dim_value() ? d.dim_value() : 0));
    value.tensor = createFilled(b, loc, sizes, scalarConstant(b, loc, *element, 0));
    value.isUnsigned = isUnsignedOnnxType(dtype);
  }
  value.present = flag(false);
  ctx.setOutputValue(0, value);
  return success();
}

LogicalResult convertOptionalHasElement(NodeContext &ctx) {
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Value present;
  if (!ctx.hasInput(0))
    present = arith::ConstantIntOp::create(b, loc, b.getI1Type(), 0);
  else if (!ctx.info(0).isOptional())
    present = arith::ConstantIntOp::create(b, loc, b.getI1Type(), 1);
  else
    present = tensor::ExtractOp::create(b, loc, ctx.info(0).present, ValueRange{});
  ctx.setOutput(0, tensor::FromElementsOp::create(b, loc, RankedTensorType::get({}, b.getI1Type()),
                                                  ValueRange{present}));
  return success();
}

/// OptionalGetElement: the value (an absent optional, an error in ONNX,
/// gives its empty placeholder).
LogicalResult convertOptionalGetElement(NodeContext &ctx) {
  if (!ctx.hasInput(0))
    return ctx.fail("needs an input");
  ImportedValue value = ctx.info(0);
  value.present = Value();
  ctx.setOutputValue(0, value);
  return success();
}

} // namespace

ValueRange onnx_import::countedLoop(
    OpBuilder &b, Location loc, Value count, ValueRange inits,
    function_ref<SmallVector<Value>(OpBuilder &, Location, Value, ValueRange)> body) {
  SmallVector<Value> operands = {indexConstant(b, loc, 0)};
  llvm::append_range(operands, inits);
  SmallVector<Type> types = llvm::to_vector(ValueRange(operands).getTypes());
  auto loop = scf::WhileOp::create(
      b, loc, types, operands,
      [&](OpBuilder &cb, Location cl, ValueRange args) {
        Value more = arith::CmpIOp::create(cb, cl, arith::CmpIPredicate::slt, args[0], count);
        scf::ConditionOp::create(cb, cl, more, args);
      },
      [&](OpBuilder &ab, Location al, ValueRange args) {
        SmallVector<Value> next = {
            arith::AddIOp::create(ab, al, args[0], indexConstant(ab, al, 1))};
        llvm::append_range(next, body(ab, al, args[0], args.drop_front()));
        scf::YieldOp::create(ab, al, next);
      });
  return loop.getResults().drop_front();
}

SmallVector<Value> onnx_import::flattenValue(const ImportedValue &value) {
  SmallVector<Value> parts;
  if (value.present)
    parts.push_back(value.present);
  parts.push_back(value.tensor);
  if (value.shapes)
    parts.push_back(value.shapes);
  if (value.stringLengths)
    parts.push_back(value.stringLengths);
  return parts;
}

ValueKind onnx_import::kindOf(const ImportedValue &value) {
  ValueKind kind;
  kind.optional = value.isOptional();
  kind.sequence = value.isSequence();
  kind.strings = value.isString();
  kind.isUnsigned = value.isUnsigned;
  kind.elementRank = value.elementRank;
  return kind;
}

ImportedValue onnx_import::rebuildValue(const ValueKind &kind, ValueRange parts) {
  ImportedValue value;
  value.isUnsigned = kind.isUnsigned;
  value.elementRank = kind.elementRank;
  unsigned next = 0;
  if (kind.optional)
    value.present = parts[next++];
  value.tensor = parts[next++];
  if (kind.sequence)
    value.shapes = parts[next++];
  if (kind.strings)
    value.stringLengths = parts[next++];
  return value;
}

ImportedValue onnx_import::emptySequence(OpBuilder &b, Location loc, Type element,
                                         bool isUnsigned) {
  Value data = createEmpty(b, loc, {b.getIndexAttr(0)}, element);
  // One column: the rank of each (no) element.
  Value shapes = createEmpty(b, loc, {b.getIndexAttr(0), b.getIndexAttr(1)}, b.getI64Type());
  return makeSequence(b, loc, data, shapes, isUnsigned, kNoElements);
}

ImportedValue onnx_import::appendToSequence(OpBuilder &b, Location loc,
                                            const ImportedValue &sequence, Value item) {
  return insertElement(b, loc, sequence, item, sequenceLength(b, loc, sequence),
                       dim(b, loc, sequence.tensor, 0));
}

Value onnx_import::sequenceLength(OpBuilder &b, Location loc, const ImportedValue &sequence) {
  return dim(b, loc, sequence.shapes, 0);
}

Value onnx_import::sequenceElement(OpBuilder &b, Location loc, const ImportedValue &sequence,
                                   Value index, int64_t rank) {
  Value zero = indexConstant(b, loc, 0), one = indexConstant(b, loc, 1);
  Value data = sequence.tensor, shapes = sequence.shapes;
  Type element = cast<ShapedType>(data.getType()).getElementType();
  Value length = dim(b, loc, shapes, 0), width = dim(b, loc, shapes, 1);
  // The element's own rank, or -1 past the end (an empty sequence).
  Value inRange = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, index, length);
  Value actualRank = guarded(b, loc, inRange, {indexConstant(b, loc, -1)}, [&](OpBuilder &tb) {
                       return SmallVector<Value>{readIndex(tb, loc, shapes, index, zero)};
                     }).front();
  Value matches = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, actualRank,
                                        indexConstant(b, loc, rank));
  // Its dimensions and the offset of its data, where it matches (zeros,
  // an empty read, where not).
  SmallVector<Value> otherwise(rank + 1, zero);
  SmallVector<Value> found = guarded(b, loc, matches, otherwise, [&](OpBuilder &tb) {
    SmallVector<Value> values;
    for (int64_t d = 0; d < rank; ++d) {
      // Within the table: a valid row of this rank has rank + 1 columns.
      Value column = minIndex(tb, loc, indexConstant(tb, loc, d + 1),
                              arith::SubIOp::create(tb, loc, width, one));
      values.push_back(readIndex(tb, loc, shapes, index, column));
    }
    values.push_back(elementOffset(tb, loc, shapes, index));
    return values;
  });
  Value offset = found.back();
  SmallVector<OpFoldResult> sizes(found.begin(), found.end() - 1);
  if (rank == 0) {
    // A scalar: one element where it matches, else a zero.
    Type tensorType = RankedTensorType::get({}, element);
    auto ifOp = scf::IfOp::create(b, loc, TypeRange{tensorType}, matches, true);
    {
      OpBuilder tb = OpBuilder::atBlockBegin(&ifOp.getThenRegion().front());
      Value x = tensor::ExtractOp::create(tb, loc, data, ValueRange{offset});
      scf::YieldOp::create(
          tb, loc, ValueRange{tensor::FromElementsOp::create(tb, loc, tensorType, ValueRange{x})});
    }
    {
      OpBuilder eb = OpBuilder::atBlockBegin(&ifOp.getElseRegion().front());
      scf::YieldOp::create(
          eb, loc,
          ValueRange{tensor::FromElementsOp::create(
              eb, loc, tensorType, ValueRange{scalarConstant(eb, loc, element, 0)})});
    }
    return ifOp.getResult(0);
  }
  Value count = one;
  for (Value d : ArrayRef<Value>(found).drop_back())
    count = arith::MulIOp::create(b, loc, count, d);
  Value flat = slice1D(b, loc, data, offset, count);
  return reshapeTo(b, loc, flat, sizes);
}

int64_t onnx_import::joinElementRanks(int64_t a, int64_t b) {
  if (a == kNoElements)
    return b;
  if (b == kNoElements || a == b)
    return a;
  return kUnknownRank;
}

bool onnx_import::takesSequencesOrOptionals(StringRef opType) {
  return llvm::is_contained({"Identity", "SequenceEmpty", "SequenceConstruct", "SequenceInsert",
                             "SequenceAt", "SequenceErase", "SequenceLength", "ConcatFromSequence",
                             "SplitToSequence", "SequenceMap", "Optional", "OptionalHasElement",
                             "OptionalGetElement", "If", "Loop"},
                            opType);
}

void onnx_import::registerSequenceConverters(ConverterTable &table) {
  table["SequenceEmpty"] = convertSequenceEmpty;
  table["SequenceConstruct"] = convertSequenceConstruct;
  table["SequenceInsert"] = convertSequenceInsert;
  table["SequenceAt"] = convertSequenceAt;
  table["SequenceErase"] = convertSequenceErase;
  table["SequenceLength"] = convertSequenceLength;
  table["ConcatFromSequence"] = convertConcatFromSequence;
  table["SplitToSequence"] = convertSplitToSequence;
  table["Optional"] = convertOptional;
  table["OptionalHasElement"] = convertOptionalHasElement;
  table["OptionalGetElement"] = convertOptionalGetElement;
}
