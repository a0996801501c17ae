//===- TensorOps.cpp - ONNX shape and data-movement ops --------------------===//
//
// Shape, Reshape, Slice, Gather, Concat, ... become tensor ops (or a
// linalg.generic where an element has to be looked up). Integer shape
// arithmetic on small tensors is tracked element by element so that it folds
// wherever dimensions are static.
//
//===----------------------------------------------------------------------===//

#include "ImporterInternal.h"

#include "mlir/Dialect/SCF/IR/SCF.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/Matchers.h"

#include <cmath>
#include <functional>

using namespace mlir;
using namespace hasten;
using namespace hasten::onnx_import;

namespace {

/// Folding arithmetic on i64 scalars, for shape computations.
struct I64Math {
  OpBuilder &b;
  Location loc;
  Type i64() { return b.getI64Type(); }
  Value c(int64_t v) { return arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(v)); }
  Value add(Value x, Value y) { return b.createOrFold<arith::AddIOp>(loc, x, y); }
  Value sub(Value x, Value y) { return b.createOrFold<arith::SubIOp>(loc, x, y); }
  Value mul(Value x, Value y) { return b.createOrFold<arith::MulIOp>(loc, x, y); }
  Value div(Value x, Value y) { return b.createOrFold<arith::DivSIOp>(loc, x, y); }
  Value ceilDiv(Value x, Value y) { return b.createOrFold<arith::CeilDivSIOp>(loc, x, y); }
  Value max(Value x, Value y) { return b.createOrFold<arith::MaxSIOp>(loc, x, y); }
  Value min(Value x, Value y) { return b.createOrFold<arith::MinSIOp>(loc, x, y); }
  Value lt(Value x, Value y) { return b.createOrFold<arith::CmpIOp>(loc, arith::CmpIPredicate::slt, x, y); }
  Value eq(Value x, Value y) { return b.createOrFold<arith::CmpIOp>(loc, arith::CmpIPredicate::eq, x, y); }
  Value select(Value cond, Value x, Value y) { return b.createOrFold<arith::SelectOp>(loc, cond, x, y); }
  Value clamp(Value x, Value lo, Value hi) { return min(max(x, lo), hi); }
  /// Any integer scalar to i64.
  Value widen(Value v) {
    if (v.getType().isIndex())
      return b.createOrFold<arith::IndexCastOp>(loc, i64(), v);
    if (v.getType().getIntOrFloatBitWidth() < 64)
      return b.createOrFold<arith::ExtSIOp>(loc, i64(), v);
    return v;
  }
  Value toIndex(Value v) { return b.createOrFold<arith::IndexCastOp>(loc, b.getIndexType(), v); }
  /// Size `d` of `tensor` as i64.
  Value dim(Value tensor, int64_t d) {
    auto type = cast<RankedTensorType>(tensor.getType());
    if (!type.isDynamicDim(d))
      return c(type.getDimSize(d));
    return widen(tensor::DimOp::create(b, loc, tensor, d));
  }
  static std::optional<int64_t> constant(Value v) {
    APInt value;
    if (matchPattern(v, m_ConstantInt(&value)))
      return value.getSExtValue();
    return std::nullopt;
  }
  /// An index-typed OpFoldResult: an attribute when constant.
  OpFoldResult ofr(Value v) {
    if (auto k = constant(v))
      return b.getIndexAttr(*k);
    return toIndex(v);
  }
};

/// True for i64 values read from a tensor's size: Reshape can use them as
/// they are, since a size is never the -1 marker, and a size of 0 copied
/// from the input means the same thing as ONNX's 0 marker.
bool isTensorSize(Value v) {
  if (auto cast = v.getDefiningOp<arith::IndexCastOp>())
    return cast.getIn().getDefiningOp<tensor::DimOp>() != nullptr;
  return false;
}

LogicalResult requireInput(NodeContext &ctx, unsigned i, StringRef what) {
  if (!ctx.hasInput(i))
    return ctx.fail(("missing input '" + what + "'").str());
  return success();
}

/// Reads a list of integers that must be known when importing (axes).
FailureOr<SmallVector<int64_t>> constantList(NodeContext &ctx, unsigned i,
                                             StringRef what) {
  std::optional<SmallVector<int64_t>> values = ctx.constantInts(i);
  if (!values) {
    ctx.emitError() << "'" << what << "' must be a constant";
    return failure();
  }
  return *values;
}

//===----------------------------------------------------------------------===//
// Constant
//===----------------------------------------------------------------------===//

LogicalResult convertConstant(NodeContext &ctx) {
  OpBuilder &b = ctx.b;
  const onnx::AttributeProto *a = nullptr;
  for (const onnx::AttributeProto &attr : ctx.node.attribute())
    a = &attr;
  if (!a || ctx.node.attribute_size() != 1)
    return ctx.fail("expects exactly one value attribute");
  ctx.ignoreAttr(a->name()); // each value_* spelling is handled below or refused
  Attribute value;
  if (a->name() == "value") {
    FailureOr<ElementsAttr> attr = convertTensorProto(
        b.getContext(), a->t(), ctx.inlineConstantLimit(),
        [&] { return ctx.emitError(); });
    if (failed(attr))
      return failure();
    value = *attr;
    ctx.setOutput(0, arith::ConstantOp::create(b, ctx.loc, cast<TypedAttr>(value)),
                  isUnsignedOnnxType(a->t().data_type()));
    return success();
  }
  if (a->name() == "value_float") {
    value = DenseElementsAttr::get(RankedTensorType::get({}, b.getF32Type()),
                                   a->f());
  } else if (a->name() == "value_floats") {
    SmallVector<float> v(a->floats().begin(), a->floats().end());
    value = DenseElementsAttr::get(
        RankedTensorType::get({(int64_t)v.size()}, b.getF32Type()),
        ArrayRef<float>(v));
  } else if (a->name() == "value_int") {
    value = DenseElementsAttr::get(RankedTensorType::get({}, b.getI64Type()),
                                   static_cast<int64_t>(a->i()));
  } else if (a->name() == "value_ints") {
    SmallVector<int64_t> v(a->ints().begin(), a->ints().end());
    value = DenseElementsAttr::get(
        RankedTensorType::get({(int64_t)v.size()}, b.getI64Type()),
        ArrayRef<int64_t>(v));
  } else if (a->name() == "sparse_value") {
    // Densify: zeros of the declared shape with the values scattered in.
    const onnx::SparseTensorProto &sparse = a->sparse_tensor();
    FailureOr<ElementsAttr> values = convertTensorProto(
        b.getContext(), sparse.values(), 1 << 30, [&] { return ctx.emitError(); });
    FailureOr<ElementsAttr> indices = convertTensorProto(
        b.getContext(), sparse.indices(), 1 << 30, [&] { return ctx.emitError(); });
    if (failed(values) || failed(indices))
      return failure();
    SmallVector<int64_t> dims(sparse.dims().begin(), sparse.dims().end());
    auto type = RankedTensorType::get(dims, values->getElementType());
    int64_t count = type.getNumElements(), nnz = values->getNumElements();
    auto denseValues = cast<DenseElementsAttr>(*values);
    auto denseIndices = cast<DenseIntElementsAttr>(*indices);
    // Indices are [nnz] linear positions or [nnz, rank] coordinates.
    auto indexShape = cast<ShapedType>(indices->getType()).getShape();
    bool coordinates = indexShape.size() == 2;
    SmallVector<APInt> flat(denseIndices.getValues<APInt>().begin(),
                            denseIndices.getValues<APInt>().end());
    SmallVector<Attribute> elements(count, b.getZeroAttr(type.getElementType()));
    SmallVector<Attribute> given(denseValues.getValues<Attribute>().begin(),
                                 denseValues.getValues<Attribute>().end());
    for (int64_t k = 0; k < nnz; ++k) {
      int64_t position = 0;
      if (coordinates) {
        for (int64_t d = 0; d < (int64_t)dims.size(); ++d)
          position = position * dims[d] + flat[k * dims.size() + d].getSExtValue();
      } else {
        position = flat[k].getSExtValue();
      }
      if (position < 0 || position >= count)
        return ctx.fail("sparse_value index " + std::to_string(position) +
                        " is outside its " + std::to_string(count) + " elements");
      elements[position] = given[k];
    }
    value = DenseElementsAttr::get(type, elements);
  } else {
    return ctx.fail("attribute '" + a->name() + "' is not supported (string tensors are not)");
  }
  ctx.setOutput(0, arith::ConstantOp::create(b, ctx.loc, cast<TypedAttr>(value)));
  return success();
}

//===----------------------------------------------------------------------===//
// Shape queries
//===----------------------------------------------------------------------===//

LogicalResult convertShape(NodeContext &ctx) {
  I64Math m{ctx.b, ctx.loc};
  int64_t rank = ctx.inputType(0).getRank();
  int64_t start = ctx.getInt("start", 0), end = ctx.getInt("end", rank);
  auto clampAxis = [&](int64_t a) {
    if (a < 0)
      a += rank;
    return std::clamp<int64_t>(a, 0, rank);
  };
  start = clampAxis(start);
  end = clampAxis(end);
  SmallVector<Value> dims;
  for (int64_t d = start; d < end; ++d)
    dims.push_back(m.dim(ctx.input(0), d));
  ctx.setOutputElements(0, dims, m.i64());
  return success();
}

LogicalResult convertSize(NodeContext &ctx) {
  I64Math m{ctx.b, ctx.loc};
  Value size = m.c(1);
  for (int64_t d = 0, e = ctx.inputType(0).getRank(); d < e; ++d)
    size = m.mul(size, m.dim(ctx.input(0), d));
  ctx.setOutputElements(0, size, m.i64(), /*scalar=*/true);
  return success();
}

//===----------------------------------------------------------------------===//
// Reshapes
//===----------------------------------------------------------------------===//

LogicalResult convertReshape(NodeContext &ctx) {
  if (failed(requireInput(ctx, 1, "shape")))
    return failure();
  std::optional<SmallVector<Value>> target = ctx.inputElements(1);
  if (!target)
    return ctx.emitError() << "the target shape must have a static length of at "
                              "most 16, got "
                           << ctx.inputType(1);
  I64Math m{ctx.b, ctx.loc};
  Value data = ctx.input(0);
  auto dataType = ctx.inputType(0);
  bool allowZero = ctx.getInt("allowzero", 0) != 0;
  Value numel = m.c(1);
  for (int64_t d = 0; d < dataType.getRank(); ++d)
    numel = m.mul(numel, m.dim(data, d));

  // Resolve 0 (copy the input dimension) and -1 (infer) per element.
  SmallVector<Value> dims;
  int inferred = -1;
  for (auto [i, v] : llvm::enumerate(*target)) {
    Value e = m.widen(v);
    std::optional<int64_t> k = I64Math::constant(e);
    if (k && *k == -1) {
      if (inferred >= 0)
        return ctx.fail("the target shape has more than one -1");
      inferred = i;
      dims.push_back(Value());
      continue;
    }
    if (k && *k < -1)
      return ctx.emitError() << "the target shape has invalid dimension " << *k;
    if (!allowZero && !isTensorSize(e) && (!k || *k == 0)) {
      if ((int64_t)i >= dataType.getRank()) {
        if (k)
          return ctx.fail("a 0 in the target shape copies a dimension the "
                          "input does not have");
      } else {
        e = m.select(m.eq(e, m.c(0)), m.dim(data, i), e);
      }
    }
    // A runtime -1 among them is resolved once the others are known.
    dims.push_back(e);
  }
  // Runtime elements may still be -1: treat them as 1 in the product.
  Value known = m.c(1);
  for (Value d : dims)
    if (d)
      known = m.mul(known, I64Math::constant(d) || isTensorSize(d)
                               ? d
                               : m.select(m.eq(d, m.c(-1)), m.c(1), d));
  Value inferredSize = m.div(numel, known);
  for (auto [i, d] : llvm::enumerate(dims)) {
    if ((int)i == inferred)
      d = inferredSize;
    else if (!I64Math::constant(d) && !isTensorSize(d))
      d = m.select(m.eq(d, m.c(-1)), inferredSize, d);
  }
  SmallVector<OpFoldResult> sizes;
  for (Value d : dims)
    sizes.push_back(m.ofr(d));
  // Static sizes must agree with a static input.
  RankedTensorType resultType = typeFromSizes(sizes, dataType.getElementType());
  if (dataType.hasStaticShape() && resultType.hasStaticShape() &&
      dataType.getNumElements() != resultType.getNumElements())
    return ctx.emitError() << "cannot reshape " << dataType << " to "
                           << resultType;
  const ImportedValue &in = ctx.info(0);
  if (in.elements && resultType.hasStaticShape() && resultType.getRank() <= 1) {
    ctx.setOutputElements(0, *in.elements, dataType.getElementType(),
                          resultType.getRank() == 0, in.isUnsigned);
    return success();
  }
  ctx.setOutput(0, reshapeTo(ctx.b, ctx.loc, data, sizes), in.isUnsigned);
  return success();
}

LogicalResult convertFlatten(NodeContext &ctx) {
  auto type = ctx.inputType(0);
  int64_t rank = type.getRank();
  int64_t axis = ctx.getInt("axis", 1);
  if (axis < 0)
    axis += rank;
  if (axis < 0 || axis > rank)
    return ctx.emitError() << "axis " << ctx.getInt("axis", 1)
                           << " is out of range for rank " << rank;
  I64Math m{ctx.b, ctx.loc};
  Value outer = m.c(1), inner = m.c(1);
  for (int64_t d = 0; d < rank; ++d) {
    Value size = m.dim(ctx.input(0), d);
    if (d < axis)
      outer = m.mul(outer, size);
    else
      inner = m.mul(inner, size);
  }
  Value result;
  if (axis > 0 && axis < rank) {
    result = tensor::CollapseShapeOp::create(
        ctx.b, ctx.loc, ctx.input(0), groupsFromBoundaries({0, axis, rank}));
  } else {
    result = reshapeTo(ctx.b, ctx.loc, ctx.input(0), {m.ofr(outer), m.ofr(inner)});
  }
  ctx.setOutput(0, result, ctx.info(0).isUnsigned);
  return success();
}

LogicalResult convertSqueeze(NodeContext &ctx) {
  auto type = ctx.inputType(0);
  int64_t rank = type.getRank();
  SmallVector<int64_t> axes;
  std::optional<SmallVector<int64_t>> given;
  if (ctx.opset >= 13 && ctx.hasInput(1)) {
    FailureOr<SmallVector<int64_t>> list = constantList(ctx, 1, "axes");
    if (failed(list))
      return failure();
    given = *list;
  } else if (ctx.opset < 13) {
    given = ctx.getInts("axes");
  }
  if (given) {
    for (int64_t a : *given) {
      FailureOr<int64_t> axis = ctx.normalizeAxis(a, rank, "axis");
      if (failed(axis))
        return failure();
      if (!type.isDynamicDim(*axis) && type.getDimSize(*axis) != 1)
        return ctx.emitError() << "cannot squeeze dimension " << *axis
                               << " of size " << type.getDimSize(*axis);
      axes.push_back(*axis);
    }
  } else {
    for (int64_t d = 0; d < rank; ++d)
      if (type.getDimSize(d) == 1)
        axes.push_back(d);
  }
  llvm::sort(axes);
  axes.erase(std::unique(axes.begin(), axes.end()), axes.end());
  const ImportedValue &in = ctx.info(0);
  int64_t resultRank = rank - axes.size();
  if (in.elements && resultRank <= 1) {
    ctx.setOutputElements(0, *in.elements, type.getElementType(),
                          resultRank == 0, in.isUnsigned);
    return success();
  }
  ctx.setOutput(0, dropUnitDims(ctx.b, ctx.loc, ctx.input(0), axes), in.isUnsigned);
  return success();
}

LogicalResult convertUnsqueeze(NodeContext &ctx) {
  auto type = ctx.inputType(0);
  SmallVector<int64_t> given;
  if (ctx.opset >= 13) {
    if (failed(requireInput(ctx, 1, "axes")))
      return failure();
    FailureOr<SmallVector<int64_t>> list = constantList(ctx, 1, "axes");
    if (failed(list))
      return failure();
    given = *list;
  } else {
    given = ctx.getInts("axes").value_or(SmallVector<int64_t>{});
  }
  int64_t resultRank = type.getRank() + given.size();
  SmallVector<int64_t> axes;
  for (int64_t a : given) {
    FailureOr<int64_t> axis = ctx.normalizeAxis(a, resultRank, "axis");
    if (failed(axis))
      return failure();
    axes.push_back(*axis);
  }
  llvm::sort(axes);
  if (std::adjacent_find(axes.begin(), axes.end()) != axes.end())
    return ctx.fail("axes contain duplicates");
  const ImportedValue &in = ctx.info(0);
  if (in.elements && resultRank <= 1) {
    ctx.setOutputElements(0, *in.elements, type.getElementType(),
                          resultRank == 0, in.isUnsigned);
    return success();
  }
  ctx.setOutput(0, insertUnitDims(ctx.b, ctx.loc, ctx.input(0), axes), in.isUnsigned);
  return success();
}

LogicalResult convertTranspose(NodeContext &ctx) {
  auto type = ctx.inputType(0);
  int64_t rank = type.getRank();
  SmallVector<int64_t> perm;
  if (std::optional<SmallVector<int64_t>> given = ctx.getInts("perm")) {
    perm = *given;
  } else {
    for (int64_t d = rank - 1; d >= 0; --d)
      perm.push_back(d);
  }
  SmallVector<int64_t> sorted(perm);
  llvm::sort(sorted);
  for (int64_t d = 0; d < rank; ++d)
    if ((int64_t)sorted.size() != rank || sorted[d] != d)
      return ctx.fail("perm is not a permutation of the input dimensions");
  SmallVector<OpFoldResult> inSizes =
      tensor::getMixedSizes(ctx.b, ctx.loc, ctx.input(0));
  SmallVector<OpFoldResult> outSizes;
  for (int64_t p : perm)
    outSizes.push_back(inSizes[p]);
  Value init = createEmpty(ctx.b, ctx.loc, outSizes, type.getElementType());
  auto op = linalg::TransposeOp::create(ctx.b, ctx.loc, ctx.input(0), init, perm);
  ctx.setOutput(0, op.getResult()[0], ctx.info(0).isUnsigned);
  return success();
}

//===----------------------------------------------------------------------===//
// Concat, Split, Slice
//===----------------------------------------------------------------------===//

LogicalResult convertConcat(NodeContext &ctx) {
  SmallVector<Value> inputs;
  int64_t rank = ctx.inputType(0).getRank();
  Type element = ctx.inputType(0).getElementType();
  bool allTracked = rank == 1;
  SmallVector<Value> elements;
  for (int i = 0; i < ctx.node.input_size(); ++i) {
    if (!ctx.hasInput(i))
      continue;
    auto type = ctx.inputType(i);
    if (type.getRank() != rank || type.getElementType() != element)
      return ctx.emitError() << "input #" << i << " has type " << type
                             << " but input #0 has " << ctx.inputType(0);
    inputs.push_back(ctx.input(i));
    if (allTracked) {
      if (std::optional<SmallVector<Value>> e = ctx.inputElements(i))
        elements.append(*e);
      else
        allTracked = false;
    }
  }
  FailureOr<int64_t> axis = ctx.normalizeAxis(ctx.getInt("axis", 0), rank);
  if (failed(axis))
    return failure();
  if (allTracked && isa<IntegerType>(element)) {
    ctx.setOutputElements(0, elements, element, false, ctx.info(0).isUnsigned);
    return success();
  }
  if (inputs.size() == 1) {
    ctx.setOutput(0, inputs[0], ctx.info(0).isUnsigned);
    return success();
  }
  ctx.setOutput(0, tensor::ConcatOp::create(ctx.b, ctx.loc, *axis, inputs),
                ctx.info(0).isUnsigned);
  return success();
}

/// Reverses `value` along `dim`.
Value reverseDim(OpBuilder &b, Location loc, Value value, int64_t dim) {
  auto type = cast<RankedTensorType>(value.getType());
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, value);
  Value init = createEmpty(b, loc, sizes, type.getElementType());
  int64_t rank = type.getRank();
  SmallVector<AffineMap> maps = {b.getMultiDimIdentityMap(rank)};
  SmallVector<utils::IteratorType> iterators(rank, utils::IteratorType::parallel);
  Value size = getValueOrCreateConstantIndexOp(b, loc, sizes[dim]);
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{type}, ValueRange{}, ValueRange{init}, maps, iterators,
      [&](OpBuilder &nb, Location nl, ValueRange) {
        SmallVector<Value> indices;
        for (int64_t d = 0; d < rank; ++d)
          indices.push_back(linalg::IndexOp::create(nb, nl, d));
        Value last = arith::SubIOp::create(
            nb, nl, size, arith::ConstantIndexOp::create(nb, nl, 1));
        indices[dim] = arith::SubIOp::create(nb, nl, last, indices[dim]);
        linalg::YieldOp::create(nb, nl,
                                tensor::ExtractOp::create(nb, nl, value, indices)
                                    .getResult());
      });
  return generic.getResult(0);
}

LogicalResult convertSlice(NodeContext &ctx) {
  if (failed(requireInput(ctx, 1, "starts")) || failed(requireInput(ctx, 2, "ends")))
    return failure();
  auto type = ctx.inputType(0);
  int64_t rank = type.getRank();
  std::optional<SmallVector<Value>> starts = ctx.inputElements(1);
  std::optional<SmallVector<Value>> ends = ctx.inputElements(2);
  if (!starts || !ends)
    return ctx.fail("starts and ends must have a static length of at most 16");
  if (starts->size() != ends->size())
    return ctx.fail("starts and ends have different lengths");
  SmallVector<int64_t> axes, steps;
  if (ctx.hasInput(3)) {
    FailureOr<SmallVector<int64_t>> list = constantList(ctx, 3, "axes");
    if (failed(list))
      return failure();
    axes = *list;
  } else {
    for (int64_t i = 0, e = starts->size(); i < e; ++i)
      axes.push_back(i);
  }
  if (ctx.hasInput(4)) {
    FailureOr<SmallVector<int64_t>> list = constantList(ctx, 4, "steps");
    if (failed(list))
      return failure();
    steps = *list;
  } else {
    steps.assign(starts->size(), 1);
  }
  if (axes.size() != starts->size() || steps.size() != starts->size())
    return ctx.fail("starts, ends, axes and steps must have the same length");

  I64Math m{ctx.b, ctx.loc};
  Value data = ctx.input(0);
  SmallVector<Value> offsets, sizes;
  SmallVector<int64_t> strides(rank, 1);
  for (int64_t d = 0; d < rank; ++d) {
    offsets.push_back(m.c(0));
    sizes.push_back(m.dim(data, d));
  }
  SmallVector<int64_t> reversed;
  for (auto [i, a] : llvm::enumerate(axes)) {
    FailureOr<int64_t> axis = ctx.normalizeAxis(a, rank, "axis");
    if (failed(axis))
      return failure();
    int64_t step = steps[i];
    if (step == 0)
      return ctx.fail("steps must not be 0");
    Value dim = m.dim(data, *axis);
    Value start = m.widen((*starts)[i]), end = m.widen((*ends)[i]);
    Value zero = m.c(0);
    start = m.select(m.lt(start, zero), m.add(start, dim), start);
    end = m.select(m.lt(end, zero), m.add(end, dim), end);
    Value size;
    if (step > 0) {
      start = m.clamp(start, zero, dim);
      end = m.clamp(end, zero, dim);
      size = m.max(m.ceilDiv(m.sub(end, start), m.c(step)), zero);
      offsets[*axis] = start;
    } else {
      Value last = m.sub(dim, m.c(1));
      start = m.clamp(start, zero, last);
      end = m.clamp(end, m.c(-1), last);
      size = m.max(m.ceilDiv(m.sub(start, end), m.c(-step)), zero);
      // Take the elements in increasing order, then reverse them.
      offsets[*axis] = m.max(m.sub(start, m.mul(m.sub(size, m.c(1)), m.c(-step))), zero);
      reversed.push_back(*axis);
    }
    // An empty slice may start at the end; keep its offset in bounds.
    offsets[*axis] = m.select(m.eq(size, zero), zero, offsets[*axis]);
    sizes[*axis] = size;
    strides[*axis] = std::abs(step);
  }

  const ImportedValue &in = ctx.info(0);
  if (in.elements && rank == 1) {
    std::optional<int64_t> off = I64Math::constant(offsets[0]);
    std::optional<int64_t> len = I64Math::constant(sizes[0]);
    if (off && len) {
      SmallVector<Value> picked;
      for (int64_t k = 0; k < *len; ++k)
        picked.push_back((*in.elements)[*off + k * strides[0]]);
      if (!reversed.empty())
        std::reverse(picked.begin(), picked.end());
      ctx.setOutputElements(0, picked, type.getElementType(), false,
                            in.isUnsigned);
      return success();
    }
  }
  SmallVector<OpFoldResult> offsetFolds, sizeFolds, strideFolds;
  for (int64_t d = 0; d < rank; ++d) {
    offsetFolds.push_back(m.ofr(offsets[d]));
    sizeFolds.push_back(m.ofr(sizes[d]));
    strideFolds.push_back(ctx.b.getIndexAttr(strides[d]));
  }
  Value result = tensor::ExtractSliceOp::create(ctx.b, ctx.loc, data, offsetFolds,
                                                sizeFolds, strideFolds);
  for (int64_t axis : reversed)
    result = reverseDim(ctx.b, ctx.loc, result, axis);
  ctx.setOutput(0, result, in.isUnsigned);
  return success();
}

LogicalResult convertSplit(NodeContext &ctx) {
  auto type = ctx.inputType(0);
  int64_t rank = type.getRank();
  FailureOr<int64_t> axis = ctx.normalizeAxis(ctx.getInt("axis", 0), rank);
  if (failed(axis))
    return failure();
  int numOutputs = ctx.node.output_size();
  I64Math m{ctx.b, ctx.loc};
  Value data = ctx.input(0);
  Value dim = m.dim(data, *axis);
  SmallVector<Value> lengths;
  std::optional<SmallVector<int64_t>> split;
  if (ctx.opset >= 13 && ctx.hasInput(1)) {
    FailureOr<SmallVector<int64_t>> list = constantList(ctx, 1, "split");
    if (failed(list))
      return failure();
    split = *list;
  } else if (ctx.opset < 13) {
    split = ctx.getInts("split");
  }
  if (split) {
    if ((int)split->size() != numOutputs)
      return ctx.emitError() << "split has " << split->size()
                             << " entries for " << numOutputs << " outputs";
    for (int64_t s : *split)
      lengths.push_back(m.c(s));
    if (std::optional<int64_t> k = I64Math::constant(dim)) {
      int64_t total = 0;
      for (int64_t s : *split)
        total += s;
      if (total != *k)
        return ctx.emitError() << "split sizes add up to " << total
                               << " but the dimension has " << *k;
    }
  } else {
    if (std::optional<int64_t> k = I64Math::constant(dim))
      if (*k % numOutputs != 0)
        return ctx.emitError() << "dimension of size " << *k
                               << " does not split evenly into " << numOutputs
                               << " outputs";
    Value each = m.div(dim, m.c(numOutputs));
    lengths.assign(numOutputs, each);
  }
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(ctx.b, ctx.loc, data);
  SmallVector<OpFoldResult> offsets(rank, ctx.b.getIndexAttr(0));
  SmallVector<OpFoldResult> strides(rank, ctx.b.getIndexAttr(1));
  Value offset = m.c(0);
  for (int o = 0; o < numOutputs; ++o) {
    offsets[*axis] = m.ofr(offset);
    sizes[*axis] = m.ofr(lengths[o]);
    Value part = tensor::ExtractSliceOp::create(ctx.b, ctx.loc, data, offsets,
                                                sizes, strides);
    ctx.setOutput(o, part, ctx.info(0).isUnsigned);
    offset = m.add(offset, lengths[o]);
  }
  return success();
}

//===----------------------------------------------------------------------===//
// Gather
//===----------------------------------------------------------------------===//

/// `index` (any integer) made non-negative against `size` and clamped into
/// range, so that a bad index can never read outside the tensor.
Value normalizeIndex(OpBuilder &b, Location loc, Value index, Value size) {
  Value i = toIndex(b, loc, index);
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  Value negative = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, i, zero);
  i = arith::SelectOp::create(b, loc, negative, arith::AddIOp::create(b, loc, i, size), i);
  Value last = arith::SubIOp::create(b, loc, size, arith::ConstantIndexOp::create(b, loc, 1));
  return arith::MinSIOp::create(b, loc, arith::MaxSIOp::create(b, loc, i, zero), last);
}

LogicalResult convertGather(NodeContext &ctx) {
  auto dataType = ctx.inputType(0);
  auto indicesType = ctx.inputType(1);
  if (!isa<IntegerType>(indicesType.getElementType()))
    return ctx.emitError() << "indices must be integers, got " << indicesType;
  int64_t rank = dataType.getRank(), indicesRank = indicesType.getRank();
  FailureOr<int64_t> axis = ctx.normalizeAxis(ctx.getInt("axis", 0), rank);
  if (failed(axis))
    return failure();
  const ImportedValue &in = ctx.info(0);
  // Shape arithmetic: picking from a tracked 1-D tensor with constant indices.
  if (in.elements && rank == 1) {
    if (std::optional<SmallVector<int64_t>> picks = ctx.constantInts(1)) {
      int64_t n = in.elements->size();
      SmallVector<Value> picked;
      for (int64_t p : *picks) {
        if (p < -n || p >= n)
          return ctx.emitError() << "index " << p << " is out of range for size " << n;
        picked.push_back((*in.elements)[p < 0 ? p + n : p]);
      }
      ctx.setOutputElements(0, picked, dataType.getElementType(),
                            indicesRank == 0, in.isUnsigned);
      return success();
    }
  }
  // Constant indices are checked here; indices computed at run time are
  // clamped into range, as an out-of-range read must not happen.
  int64_t axisLength = dataType.getDimSize(*axis);
  if (!ShapedType::isDynamic(axisLength))
    if (std::optional<SmallVector<int64_t>> picks = ctx.constantInts(1))
      for (int64_t p : *picks)
        if (p < -axisLength || p >= axisLength)
          return ctx.emitError() << "index " << p << " is out of range for axis " << *axis
                                 << " of size " << axisLength;
  Value data = ctx.input(0), indices = ctx.input(1);
  SmallVector<OpFoldResult> dataSizes = tensor::getMixedSizes(ctx.b, ctx.loc, data);
  SmallVector<OpFoldResult> indexSizes = tensor::getMixedSizes(ctx.b, ctx.loc, indices);
  SmallVector<OpFoldResult> outSizes(dataSizes.begin(), dataSizes.begin() + *axis);
  outSizes.append(indexSizes);
  outSizes.append(dataSizes.begin() + *axis + 1, dataSizes.end());
  int64_t outRank = outSizes.size();
  Value axisSize = getValueOrCreateConstantIndexOp(ctx.b, ctx.loc, dataSizes[*axis]);
  SmallVector<AffineExpr> indexExprs;
  for (int64_t d = 0; d < indicesRank; ++d)
    indexExprs.push_back(ctx.b.getAffineDimExpr(*axis + d));
  SmallVector<AffineMap> maps = {
      AffineMap::get(outRank, 0, indexExprs, ctx.b.getContext()),
      ctx.b.getMultiDimIdentityMap(outRank)};
  Type element = dataType.getElementType();
  Value init = createEmpty(ctx.b, ctx.loc, outSizes, element);
  SmallVector<utils::IteratorType> iterators(outRank, utils::IteratorType::parallel);
  auto generic = linalg::GenericOp::create(
      ctx.b, ctx.loc, TypeRange{typeFromSizes(outSizes, element)},
      ValueRange{indices}, ValueRange{init}, maps, iterators,
      [&](OpBuilder &b, Location loc, ValueRange args) {
        SmallVector<Value> coords;
        for (int64_t d = 0; d < *axis; ++d)
          coords.push_back(linalg::IndexOp::create(b, loc, d));
        coords.push_back(normalizeIndex(b, loc, args[0], axisSize));
        for (int64_t d = *axis + 1; d < rank; ++d)
          coords.push_back(linalg::IndexOp::create(b, loc, d + indicesRank - 1));
        linalg::YieldOp::create(b, loc,
                                tensor::ExtractOp::create(b, loc, data, coords).getResult());
      });
  ctx.setOutput(0, generic.getResult(0), in.isUnsigned);
  return success();
}

LogicalResult convertGatherElements(NodeContext &ctx) {
  auto dataType = ctx.inputType(0);
  auto indicesType = ctx.inputType(1);
  int64_t rank = dataType.getRank();
  if (indicesType.getRank() != rank)
    return ctx.emitError() << "indices rank " << indicesType.getRank()
                           << " differs from data rank " << rank;
  FailureOr<int64_t> axis = ctx.normalizeAxis(ctx.getInt("axis", 0), rank);
  if (failed(axis))
    return failure();
  Value data = ctx.input(0);
  Value axisSize = tensor::DimOp::create(ctx.b, ctx.loc, data, *axis);
  Value result = buildElementwise(
      ctx.b, ctx.loc, ctx.input(1), dataType.getElementType(),
      [&](OpBuilder &b, Location loc, ValueRange args) {
        SmallVector<Value> coords;
        for (int64_t d = 0; d < rank; ++d)
          coords.push_back(linalg::IndexOp::create(b, loc, d));
        coords[*axis] = normalizeIndex(b, loc, args[0], axisSize);
        return tensor::ExtractOp::create(b, loc, data, coords).getResult();
      });
  ctx.setOutput(0, result, ctx.info(0).isUnsigned);
  return success();
}

//===----------------------------------------------------------------------===//
// Tensors from shapes: Expand, ConstantOfShape, Range, Tile
//===----------------------------------------------------------------------===//

LogicalResult convertExpand(NodeContext &ctx) {
  std::optional<SmallVector<Value>> shape = ctx.inputElements(1);
  if (!shape)
    return ctx.fail("the shape must have a static length of at most 16");
  I64Math m{ctx.b, ctx.loc};
  Value data = ctx.input(0);
  auto type = ctx.inputType(0);
  int64_t rank = std::max<int64_t>(type.getRank(), shape->size());
  SmallVector<OpFoldResult> outSizes;
  for (int64_t d = 0; d < rank; ++d) {
    int64_t inDim = d - (rank - type.getRank());
    int64_t shapeDim = d - (rank - (int64_t)shape->size());
    if (shapeDim < 0) {
      outSizes.push_back(m.ofr(m.dim(data, inDim)));
      continue;
    }
    Value requested = m.widen((*shape)[shapeDim]);
    if (inDim < 0) {
      outSizes.push_back(m.ofr(requested));
      continue;
    }
    std::optional<int64_t> k = I64Math::constant(requested);
    int64_t inSize = type.getDimSize(inDim);
    if (inSize == 1)
      outSizes.push_back(m.ofr(requested));
    else if (k && *k != 1 && !ShapedType::isDynamic(inSize) && *k != inSize)
      return ctx.emitError() << "cannot expand dimension of size " << inSize
                             << " to " << *k;
    else if (k && *k != 1)
      outSizes.push_back(ctx.b.getIndexAttr(*k));
    else
      outSizes.push_back(m.ofr(m.dim(data, inDim)));
  }
  Value result = buildElementwise(
      ctx.b, ctx.loc, data, type.getElementType(),
      [](OpBuilder &, Location, ValueRange args) { return args[0]; },
      ArrayRef<OpFoldResult>(outSizes));
  ctx.setOutput(0, result, ctx.info(0).isUnsigned);
  return success();
}

LogicalResult convertConstantOfShape(NodeContext &ctx) {
  std::optional<SmallVector<Value>> shape = ctx.inputElements(0);
  if (!shape)
    return ctx.fail("the shape must have a static length of at most 16");
  I64Math m{ctx.b, ctx.loc};
  Type element = ctx.b.getF32Type();
  Value fill;
  bool isUnsigned = false;
  if (const onnx::AttributeProto *a = ctx.attr("value")) {
    FailureOr<ElementsAttr> attr = convertTensorProto(
        ctx.b.getContext(), a->t(), 1 << 20, [&] { return ctx.emitError(); });
    if (failed(attr))
      return failure();
    if (attr->getNumElements() != 1)
      return ctx.fail("value must hold exactly one element");
    auto dense = cast<DenseElementsAttr>(*attr);
    element = dense.getElementType();
    fill = arith::ConstantOp::create(ctx.b, ctx.loc,
                                     cast<TypedAttr>(*dense.value_begin<Attribute>()));
    isUnsigned = isUnsignedOnnxType(a->t().data_type());
  } else {
    fill = scalarConstant(ctx.b, ctx.loc, element, 0.0);
  }
  SmallVector<OpFoldResult> sizes;
  for (Value v : *shape)
    sizes.push_back(m.ofr(m.widen(v)));
  RankedTensorType type = typeFromSizes(sizes, element);
  if (isa<IntegerType>(element) && type.hasStaticShape() && type.getRank() == 1 &&
      type.getNumElements() <= 16) {
    SmallVector<Value> elements(type.getNumElements(), fill);
    ctx.setOutputElements(0, elements, element, false, isUnsigned);
    return success();
  }
  ctx.setOutput(0, createFilled(ctx.b, ctx.loc, sizes, fill), isUnsigned);
  return success();
}

LogicalResult convertRange(NodeContext &ctx) {
  Type element = ctx.inputType(0).getElementType();
  for (unsigned i = 0; i < 3; ++i)
    if (ctx.inputType(i).getRank() != 0 ||
        ctx.inputType(i).getElementType() != element)
      return ctx.emitError() << "start, limit and delta must be scalars of one "
                                "type, input #"
                             << i << " is " << ctx.inputType(i);
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  SmallVector<Value> scalars;
  for (unsigned i = 0; i < 3; ++i) {
    if (std::optional<SmallVector<Value>> e = ctx.inputElements(i))
      scalars.push_back((*e)[0]);
    else
      scalars.push_back(tensor::ExtractOp::create(b, loc, ctx.input(i), ValueRange{}));
  }
  Value start = scalars[0], limit = scalars[1], delta = scalars[2];
  DenseElementsAttr constantDelta;
  bool zeroDelta = matchPattern(delta, m_Zero()) || matchPattern(delta, m_AnyZeroFloat());
  if (matchPattern(ctx.input(2), m_Constant(&constantDelta)) && constantDelta.isSplat()) {
    Attribute value = constantDelta.getSplatValue<Attribute>();
    if (auto i = dyn_cast<IntegerAttr>(value))
      zeroDelta |= i.getValue().isZero();
    if (auto f = dyn_cast<FloatAttr>(value))
      zeroDelta |= f.getValue().isZero();
  }
  if (zeroDelta)
    return ctx.emitError() << "delta is zero: the range would never reach its limit";
  I64Math m{b, loc};
  Value count;
  if (isa<FloatType>(element)) {
    Value span = arith::DivFOp::create(b, loc, arith::SubFOp::create(b, loc, limit, start), delta);
    Value up = math::CeilOp::create(b, loc, span);
    count = m.max(arith::FPToSIOp::create(b, loc, b.getI64Type(), up), m.c(0));
  } else {
    // A zero delta known only at run time gives an empty range rather than
    // a division by zero.
    Value span = m.sub(m.widen(limit), m.widen(start));
    Value wideDelta = m.widen(delta);
    Value zero = m.eq(wideDelta, m.c(0));
    count = m.select(zero, m.c(0),
                     m.max(m.ceilDiv(span, m.select(zero, m.c(1), wideDelta)), m.c(0)));
  }
  // Constant integer ranges of a few elements are tracked for shape math.
  std::optional<int64_t> n = I64Math::constant(count);
  if (isa<IntegerType>(element) && n && *n <= 16) {
    SmallVector<Value> elements;
    for (int64_t k = 0; k < *n; ++k)
      elements.push_back(b.createOrFold<arith::AddIOp>(
          loc, start,
          b.createOrFold<arith::MulIOp>(loc, delta,
                                        scalarConstant(b, loc, element, k))));
    ctx.setOutputElements(0, elements, element);
    return success();
  }
  SmallVector<OpFoldResult> sizes = {m.ofr(count)};
  Value init = createEmpty(b, loc, sizes, element);
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{typeFromSizes(sizes, element)}, ValueRange{},
      ValueRange{init}, ArrayRef<AffineMap>{b.getMultiDimIdentityMap(1)},
      ArrayRef<utils::IteratorType>{utils::IteratorType::parallel},
      [&](OpBuilder &nb, Location nl, ValueRange) {
        Value i = linalg::IndexOp::create(nb, nl, 0);
        Value k = isa<FloatType>(element)
                      ? (Value)arith::SIToFPOp::create(
                            nb, nl, element,
                            arith::IndexCastOp::create(nb, nl, nb.getI64Type(), i))
                      : (Value)arith::IndexCastOp::create(nb, nl, element, i);
        Value v = isa<FloatType>(element)
                      ? (Value)arith::AddFOp::create(
                            nb, nl, start, arith::MulFOp::create(nb, nl, k, delta))
                      : (Value)arith::AddIOp::create(
                            nb, nl, start, arith::MulIOp::create(nb, nl, k, delta));
        linalg::YieldOp::create(nb, nl, v);
      });
  ctx.setOutput(0, generic.getResult(0));
  return success();
}

LogicalResult convertTile(NodeContext &ctx) {
  std::optional<SmallVector<Value>> repeats = ctx.inputElements(1);
  auto type = ctx.inputType(0);
  if (!repeats || (int64_t)repeats->size() != type.getRank())
    return ctx.fail("repeats must have one entry per input dimension");
  I64Math m{ctx.b, ctx.loc};
  Value data = ctx.input(0);
  SmallVector<OpFoldResult> outSizes;
  SmallVector<Value> inSizes;
  for (int64_t d = 0; d < type.getRank(); ++d) {
    Value size = m.dim(data, d);
    inSizes.push_back(m.toIndex(size));
    outSizes.push_back(m.ofr(m.mul(size, m.widen((*repeats)[d]))));
  }
  int64_t rank = type.getRank();
  Value init = createEmpty(ctx.b, ctx.loc, outSizes, type.getElementType());
  SmallVector<utils::IteratorType> iterators(rank, utils::IteratorType::parallel);
  // Repeating only dimensions of size 1 (an MQA key repeated per head, say)
  // is a broadcast: spelled as one, later passes see it for what it is.
  bool broadcastOnly = true;
  SmallVector<AffineExpr> inputExprs;
  for (int64_t d = 0; d < rank; ++d) {
    std::optional<int64_t> repeat = getConstantIntValue((*repeats)[d]);
    bool unitDim = type.getDimSize(d) == 1;
    broadcastOnly &= repeat && (*repeat == 1 || unitDim);
    inputExprs.push_back(unitDim ? ctx.b.getAffineConstantExpr(0) : ctx.b.getAffineDimExpr(d));
  }
  if (broadcastOnly) {
    auto inputMap = AffineMap::get(rank, 0, inputExprs, ctx.b.getContext());
    auto broadcast = linalg::GenericOp::create(
        ctx.b, ctx.loc, TypeRange{typeFromSizes(outSizes, type.getElementType())},
        ValueRange{data}, ValueRange{init},
        ArrayRef<AffineMap>{inputMap, ctx.b.getMultiDimIdentityMap(rank)}, iterators,
        [&](OpBuilder &b, Location loc, ValueRange args) {
          linalg::YieldOp::create(b, loc, args[0]);
        });
    ctx.setOutput(0, broadcast.getResult(0), ctx.info(0).isUnsigned);
    return success();
  }
  auto generic = linalg::GenericOp::create(
      ctx.b, ctx.loc, TypeRange{typeFromSizes(outSizes, type.getElementType())},
      ValueRange{}, ValueRange{init},
      ArrayRef<AffineMap>{ctx.b.getMultiDimIdentityMap(rank)}, iterators,
      [&](OpBuilder &b, Location loc, ValueRange) {
        SmallVector<Value> coords;
        for (int64_t d = 0; d < rank; ++d)
          coords.push_back(arith::RemUIOp::create(
              b, loc, linalg::IndexOp::create(b, loc, d), inSizes[d]));
        linalg::YieldOp::create(b, loc,
                                tensor::ExtractOp::create(b, loc, data, coords).getResult());
      });
  ctx.setOutput(0, generic.getResult(0), ctx.info(0).isUnsigned);
  return success();
}

//===----------------------------------------------------------------------===//
// Trilu, CumSum
//===----------------------------------------------------------------------===//

LogicalResult convertTrilu(NodeContext &ctx) {
  auto type = ctx.inputType(0);
  int64_t rank = type.getRank();
  if (rank < 2)
    return ctx.emitError() << "input must have rank 2 or more, got " << type;
  Value k = arith::ConstantIndexOp::create(ctx.b, ctx.loc, 0);
  if (ctx.hasInput(1)) {
    std::optional<SmallVector<Value>> e = ctx.inputElements(1);
    if (!e)
      return ctx.fail("k must be a scalar");
    k = toIndex(ctx.b, ctx.loc, (*e)[0]);
  }
  bool upper = ctx.getInt("upper", 1) != 0;
  Type element = type.getElementType();
  Value result = buildElementwise(
      ctx.b, ctx.loc, ctx.input(0), element,
      [&](OpBuilder &b, Location loc, ValueRange args) {
        Value i = linalg::IndexOp::create(b, loc, rank - 2);
        Value j = linalg::IndexOp::create(b, loc, rank - 1);
        Value diff = arith::SubIOp::create(b, loc, j, i);
        Value keep = arith::CmpIOp::create(
            b, loc, upper ? arith::CmpIPredicate::sge : arith::CmpIPredicate::sle,
            diff, k);
        return arith::SelectOp::create(b, loc, keep, args[0],
                                       scalarConstant(b, loc, element, 0))
            .getResult();
      });
  ctx.setOutput(0, result, ctx.info(0).isUnsigned);
  return success();
}

/// EyeLike: ones on the k-th diagonal of a 2-D tensor shaped like the input.
LogicalResult convertEyeLike(NodeContext &ctx) {
  auto type = ctx.inputType(0);
  if (type.getRank() != 2)
    return ctx.emitError() << "input must be 2-D, got " << type;
  Type element = type.getElementType();
  bool isUnsigned = ctx.info(0).isUnsigned;
  if (ctx.hasAttr("dtype")) {
    int64_t dtype = ctx.getInt("dtype", 0);
    FailureOr<Type> given = getElementType(ctx.b.getContext(), dtype);
    if (failed(given))
      return ctx.fail("dtype " + onnxTypeName(dtype) + " is not supported");
    element = *given;
    isUnsigned = isUnsignedOnnxType(dtype);
  }
  int64_t k = ctx.getInt("k", 0);
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(ctx.b, ctx.loc, ctx.input(0));
  Value result = buildElementwise(
      ctx.b, ctx.loc, ValueRange{}, element,
      [&](OpBuilder &b, Location loc, ValueRange) {
        Value i = linalg::IndexOp::create(b, loc, 0);
        Value j = linalg::IndexOp::create(b, loc, 1);
        Value diagonal = arith::CmpIOp::create(
            b, loc, arith::CmpIPredicate::eq, arith::SubIOp::create(b, loc, j, i),
            arith::ConstantIndexOp::create(b, loc, k));
        return arith::SelectOp::create(b, loc, diagonal, scalarConstant(b, loc, element, 1),
                                       scalarConstant(b, loc, element, 0))
            .getResult();
      },
      ArrayRef<OpFoldResult>(sizes));
  ctx.setOutput(0, result, isUnsigned);
  return success();
}

/// DepthToSpace and SpaceToDepth: a reshape, a transpose and a reshape of
/// an NCHW tensor with a static shape.
LogicalResult convertDepthSpace(NodeContext &ctx) {
  auto type = ctx.inputType(0);
  bool toSpace = ctx.node.op_type() == "DepthToSpace";
  if (type.getRank() != 4 || !type.hasStaticShape())
    return ctx.emitError() << "needs a 4-D input of static shape, got " << type;
  int64_t b = ctx.getInt("blocksize", 0);
  if (b <= 0)
    return ctx.fail("blocksize must be positive");
  ArrayRef<int64_t> in = type.getShape();
  int64_t n = in[0], c = in[1], h = in[2], w = in[3];
  std::string mode = ctx.getString("mode", "DCR");
  if (toSpace && mode != "DCR" && mode != "CRD")
    return ctx.fail("mode must be DCR or CRD, got '" + mode + "'");
  SmallVector<int64_t> split, perm, out;
  if (toSpace) {
    if (c % (b * b))
      return ctx.fail("channels (" + std::to_string(c) + ") are not a multiple of blocksize^2");
    int64_t cb = c / (b * b);
    split = mode == "DCR" ? SmallVector<int64_t>{n, b, b, cb, h, w}
                          : SmallVector<int64_t>{n, cb, b, b, h, w};
    perm = mode == "DCR" ? SmallVector<int64_t>{0, 3, 4, 1, 5, 2}
                         : SmallVector<int64_t>{0, 1, 4, 2, 5, 3};
    out = {n, cb, h * b, w * b};
  } else {
    if (h % b || w % b)
      return ctx.fail("height and width must be multiples of blocksize");
    split = {n, c, h / b, b, w / b, b};
    perm = {0, 3, 5, 1, 2, 4};
    out = {n, c * b * b, h / b, w / b};
  }
  auto sizesOf = [&](ArrayRef<int64_t> dims) {
    SmallVector<OpFoldResult> sizes;
    for (int64_t d : dims)
      sizes.push_back(ctx.b.getIndexAttr(d));
    return sizes;
  };
  Value expanded = reshapeTo(ctx.b, ctx.loc, ctx.input(0), sizesOf(split));
  SmallVector<int64_t> permuted;
  for (int64_t p : perm)
    permuted.push_back(split[p]);
  Value init = createEmpty(ctx.b, ctx.loc, sizesOf(permuted), type.getElementType());
  Value transposed =
      linalg::TransposeOp::create(ctx.b, ctx.loc, expanded, init, perm).getResult()[0];
  ctx.setOutput(0, reshapeTo(ctx.b, ctx.loc, transposed, sizesOf(out)), ctx.info(0).isUnsigned);
  return success();
}

/// OneHot: `values[1]` where the position along `axis` equals the index
/// (negative indices count from `depth`), `values[0]` elsewhere. The depth
/// must be known at compile time: it is the output's size.
LogicalResult convertOneHot(NodeContext &ctx) {
  auto indicesType = ctx.inputType(0);
  int64_t rank = indicesType.getRank() + 1;
  std::optional<int64_t> depth;
  if (std::optional<SmallVector<int64_t>> ints = ctx.constantInts(1); ints && ints->size() == 1)
    depth = (*ints)[0];
  else if (std::optional<SmallVector<double>> floats = ctx.constantFloats(1);
           floats && floats->size() == 1)
    depth = static_cast<int64_t>((*floats)[0]);
  if (!depth)
    return ctx.fail("depth must be a one-element constant (bind it with --bind-input)");
  if (*depth <= 0)
    return ctx.fail("depth must be positive, got " + std::to_string(*depth));
  auto valuesType = ctx.inputType(2);
  if (valuesType.getRank() != 1 || valuesType.getDimSize(0) != 2)
    return ctx.emitError() << "values must hold two elements [off, on], got " << valuesType;
  FailureOr<int64_t> axis = ctx.normalizeAxis(ctx.getInt("axis", -1), rank);
  if (failed(axis))
    return failure();
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Type element = valuesType.getElementType();
  Value off = tensor::ExtractOp::create(b, loc, ctx.input(2),
                                        ValueRange{arith::ConstantIndexOp::create(b, loc, 0)});
  Value on = tensor::ExtractOp::create(b, loc, ctx.input(2),
                                       ValueRange{arith::ConstantIndexOp::create(b, loc, 1)});
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, ctx.input(0));
  sizes.insert(sizes.begin() + *axis, b.getIndexAttr(*depth));
  SmallVector<AffineExpr> indexExprs;
  for (int64_t d = 0; d < rank; ++d)
    if (d != *axis)
      indexExprs.push_back(b.getAffineDimExpr(d));
  Value init = createEmpty(b, loc, sizes, element);
  SmallVector<utils::IteratorType> iterators(rank, utils::IteratorType::parallel);
  Type indexElement = indicesType.getElementType();
  int64_t along = *axis, count = *depth;
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{init.getType()}, ValueRange{ctx.input(0)}, ValueRange{init},
      ArrayRef<AffineMap>{AffineMap::get(rank, 0, indexExprs, b.getContext()),
                          b.getMultiDimIdentityMap(rank)},
      iterators, [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value index = args[0];
        // Float indices truncate toward zero, as the reference does.
        if (isa<FloatType>(indexElement))
          index = arith::FPToSIOp::create(nb, nl, nb.getI64Type(), index);
        else if (indexElement != nb.getI64Type())
          index = ctx.info(0).isUnsigned
                      ? Value(arith::ExtUIOp::create(nb, nl, nb.getI64Type(), index))
                      : Value(arith::ExtSIOp::create(nb, nl, nb.getI64Type(), index));
        Value depthValue = arith::ConstantIntOp::create(nb, nl, nb.getI64Type(), count);
        Value negative = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt, index,
                                               arith::ConstantIntOp::create(nb, nl, nb.getI64Type(), 0));
        index = arith::SelectOp::create(nb, nl, negative,
                                        arith::AddIOp::create(nb, nl, index, depthValue), index);
        Value j = arith::IndexCastOp::create(nb, nl, nb.getI64Type(),
                                             linalg::IndexOp::create(nb, nl, along));
        Value hit = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::eq, j, index);
        linalg::YieldOp::create(nb, nl,
                                ValueRange{arith::SelectOp::create(nb, nl, hit, on, off)});
      });
  ctx.setOutput(0, generic.getResult(0), ctx.info(2).isUnsigned);
  return success();
}

/// HannWindow, HammingWindow, BlackmanWindow: a constant computed here, in
/// double precision as the reference does, from a size known at compile
/// time.
LogicalResult convertWindow(NodeContext &ctx) {
  std::optional<int64_t> size;
  if (std::optional<SmallVector<int64_t>> ints = ctx.constantInts(0); ints && ints->size() == 1)
    size = (*ints)[0];
  if (!size)
    return ctx.fail("size must be a one-element constant (bind it with --bind-input)");
  if (*size < 0 || *size > (int64_t(1) << 24))
    return ctx.fail("size " + std::to_string(*size) + " is outside [0, 2^24]");
  int64_t dtype = ctx.getInt("output_datatype", 1);
  FailureOr<Type> element = getElementType(ctx.b.getContext(), dtype);
  if (failed(element) || !isa<FloatType>(*element))
    return ctx.fail("output_datatype " + onnxTypeName(dtype) + " is not a supported float type");
  bool periodic = ctx.getInt("periodic", 1) != 0;
  double n = double(periodic ? *size : *size - 1);
  StringRef op = ctx.node.op_type();
  SmallVector<APFloat> values;
  for (int64_t k = 0; k < *size; ++k) {
    double x = n > 0 ? 2.0 * M_PI * double(k) / n : 0.0;
    double v = op == "HannWindow"      ? 0.5 - 0.5 * std::cos(x)
               : op == "HammingWindow" ? 25.0 / 46.0 - (21.0 / 46.0) * std::cos(x)
                                       : 0.42 - 0.5 * std::cos(x) + 0.08 * std::cos(2 * x);
    APFloat value(v);
    bool lost;
    value.convert(cast<FloatType>(*element).getFloatSemantics(),
                  APFloat::rmNearestTiesToEven, &lost);
    values.push_back(value);
  }
  auto type = RankedTensorType::get({*size}, *element);
  ctx.setOutput(0, arith::ConstantOp::create(ctx.b, ctx.loc, DenseElementsAttr::get(type, values)));
  return success();
}

/// ReverseSequence: in each batch item, the first sequence_lens[b] steps
/// along time_axis in reverse order, the rest as they are.
LogicalResult convertReverseSequence(NodeContext &ctx) {
  auto type = ctx.inputType(0);
  int64_t rank = type.getRank();
  if (rank < 2)
    return ctx.emitError() << "input must have rank 2 or more, got " << type;
  int64_t timeAxis = ctx.getInt("time_axis", 0), batchAxis = ctx.getInt("batch_axis", 1);
  if (!((timeAxis == 0 && batchAxis == 1) || (timeAxis == 1 && batchAxis == 0)))
    return ctx.fail("time_axis and batch_axis must be 0 and 1 (either way)");
  Value data = ctx.input(0), lens = ctx.input(1);
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(ctx.b, ctx.loc, data);
  Value timeSize = getValueOrCreateConstantIndexOp(ctx.b, ctx.loc, sizes[timeAxis]);
  Type element = type.getElementType();
  Value init = createEmpty(ctx.b, ctx.loc, sizes, element);
  SmallVector<utils::IteratorType> iterators(rank, utils::IteratorType::parallel);
  auto generic = linalg::GenericOp::create(
      ctx.b, ctx.loc, TypeRange{init.getType()}, ValueRange{lens}, ValueRange{init},
      ArrayRef<AffineMap>{AffineMap::get(rank, 0, {ctx.b.getAffineDimExpr(batchAxis)},
                                         ctx.b.getContext()),
                          ctx.b.getMultiDimIdentityMap(rank)},
      iterators, [&](OpBuilder &b, Location loc, ValueRange args) {
        // A length outside [0, time] is clamped: reads stay in bounds.
        Value len = arith::MaxSIOp::create(
            b, loc, arith::MinSIOp::create(b, loc, toIndex(b, loc, args[0]), timeSize),
            arith::ConstantIndexOp::create(b, loc, 0));
        Value t = linalg::IndexOp::create(b, loc, timeAxis);
        Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, t, len);
        Value mirrored = arith::SubIOp::create(
            b, loc, arith::SubIOp::create(b, loc, len, t), arith::ConstantIndexOp::create(b, loc, 1));
        SmallVector<Value> coords;
        for (int64_t d = 0; d < rank; ++d)
          coords.push_back(d == timeAxis ? Value(arith::SelectOp::create(b, loc, inside, mirrored, t))
                                         : Value(linalg::IndexOp::create(b, loc, d)));
        linalg::YieldOp::create(b, loc,
                                tensor::ExtractOp::create(b, loc, data, coords).getResult());
      });
  ctx.setOutput(0, generic.getResult(0), ctx.info(0).isUnsigned);
  return success();
}

/// GatherND: each index tuple (the last dimension of `indices`) picks a
/// slice of `data` after the first batch_dims dimensions, which both share.
LogicalResult convertGatherND(NodeContext &ctx) {
  auto dataType = ctx.inputType(0), indicesType = ctx.inputType(1);
  int64_t rank = dataType.getRank(), indicesRank = indicesType.getRank();
  int64_t batch = ctx.getInt("batch_dims", 0);
  if (!isa<IntegerType>(indicesType.getElementType()))
    return ctx.emitError() << "indices must be integers, got " << indicesType;
  int64_t tuple = indicesType.getDimSize(indicesRank - 1);
  if (indicesRank < 1 || ShapedType::isDynamic(tuple))
    return ctx.emitError() << "the index tuples' length (the last dimension of indices) must be "
                              "static, got " << indicesType;
  if (batch < 0 || batch >= std::min(rank, indicesRank) || batch + tuple > rank)
    return ctx.fail("batch_dims (" + std::to_string(batch) + ") and index tuples of " +
                    std::to_string(tuple) + " do not fit data of rank " + std::to_string(rank));
  Value data = ctx.input(0), indices = ctx.input(1);
  SmallVector<OpFoldResult> dataSizes = tensor::getMixedSizes(ctx.b, ctx.loc, data);
  SmallVector<OpFoldResult> indexSizes = tensor::getMixedSizes(ctx.b, ctx.loc, indices);
  // Output: indices' dimensions but the tuple, then data's after the tuple.
  SmallVector<OpFoldResult> outSizes(indexSizes.begin(), indexSizes.end() - 1);
  outSizes.append(dataSizes.begin() + batch + tuple, dataSizes.end());
  int64_t outRank = outSizes.size(), prefix = indicesRank - 1;
  Type element = dataType.getElementType();
  Value init = createEmpty(ctx.b, ctx.loc, outSizes, element);
  SmallVector<utils::IteratorType> iterators(outRank, utils::IteratorType::parallel);
  auto generic = linalg::GenericOp::create(
      ctx.b, ctx.loc, TypeRange{init.getType()}, ValueRange{}, ValueRange{init},
      ArrayRef<AffineMap>{ctx.b.getMultiDimIdentityMap(outRank)}, iterators,
      [&](OpBuilder &b, Location loc, ValueRange) {
        SmallVector<Value> where;
        for (int64_t d = 0; d < prefix; ++d)
          where.push_back(linalg::IndexOp::create(b, loc, d));
        SmallVector<Value> coords(where.begin(), where.begin() + batch);
        for (int64_t k = 0; k < tuple; ++k) {
          SmallVector<Value> at(where);
          at.push_back(arith::ConstantIndexOp::create(b, loc, k));
          Value index = tensor::ExtractOp::create(b, loc, indices, at);
          Value size = getValueOrCreateConstantIndexOp(b, loc, dataSizes[batch + k]);
          coords.push_back(normalizeIndex(b, loc, index, size));
        }
        for (int64_t d = prefix; d < outRank; ++d)
          coords.push_back(linalg::IndexOp::create(b, loc, d));
        linalg::YieldOp::create(b, loc,
                                tensor::ExtractOp::create(b, loc, data, coords).getResult());
      });
  ctx.setOutput(0, generic.getResult(0), ctx.info(0).isUnsigned);
  return success();
}

/// Combines an update with the value it lands on (ScatterElements' and
/// ScatterND's `reduction`).
FailureOr<std::function<Value(OpBuilder &, Location, Value, Value)>>
scatterReduction(NodeContext &ctx, Type element) {
  std::string reduction = ctx.getString("reduction", "none");
  bool fp = isa<FloatType>(element);
  bool isUnsigned = ctx.info(0).isUnsigned;
  using Fn = std::function<Value(OpBuilder &, Location, Value, Value)>;
  if (reduction == "none")
    return Fn([](OpBuilder &, Location, Value, Value update) { return update; });
  if (reduction == "add")
    return Fn([fp](OpBuilder &b, Location loc, Value old, Value update) -> Value {
      return fp ? Value(arith::AddFOp::create(b, loc, old, update))
                : Value(arith::AddIOp::create(b, loc, old, update));
    });
  if (reduction == "mul")
    return Fn([fp](OpBuilder &b, Location loc, Value old, Value update) -> Value {
      return fp ? Value(arith::MulFOp::create(b, loc, old, update))
                : Value(arith::MulIOp::create(b, loc, old, update));
    });
  if (reduction == "max" || reduction == "min") {
    bool max = reduction == "max";
    return Fn([=](OpBuilder &b, Location loc, Value old, Value update) -> Value {
      if (fp)
        return max ? Value(arith::MaximumFOp::create(b, loc, old, update))
                   : Value(arith::MinimumFOp::create(b, loc, old, update));
      if (isUnsigned)
        return max ? Value(arith::MaxUIOp::create(b, loc, old, update))
                   : Value(arith::MinUIOp::create(b, loc, old, update));
      return max ? Value(arith::MaxSIOp::create(b, loc, old, update))
                 : Value(arith::MinSIOp::create(b, loc, old, update));
    });
  }
  return ctx.fail("reduction must be none, add, mul, max or min, got '" + reduction + "'");
}

/// Loops over every position of `sizes`, carrying `tensor`; `body` returns
/// the tensor after the position's update. Updates apply in order, so
/// duplicate indices behave as in the reference (the last one wins, or all
/// are combined by the reduction).
Value scatterLoops(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes, Value tensor,
                   function_ref<Value(OpBuilder &, Location, ValueRange, Value)> body) {
  SmallVector<Value> lbs, ubs, steps;
  for (OpFoldResult size : sizes) {
    lbs.push_back(arith::ConstantIndexOp::create(b, loc, 0));
    ubs.push_back(getValueOrCreateConstantIndexOp(b, loc, size));
    steps.push_back(arith::ConstantIndexOp::create(b, loc, 1));
  }
  scf::LoopNest nest = scf::buildLoopNest(
      b, loc, lbs, ubs, steps, ValueRange{tensor},
      [&](OpBuilder &nb, Location nl, ValueRange ivs, ValueRange carried) -> scf::ValueVector {
        return {body(nb, nl, ivs, carried[0])};
      });
  return nest.results.empty() ? tensor : nest.results[0];
}

/// data[at] = combine(data[at], updates[ivs]): one scatter update.
Value applyScatterUpdate(OpBuilder &b, Location loc,
                         const std::function<Value(OpBuilder &, Location, Value, Value)> &combine,
                         Value updates, ValueRange ivs, Value data, ArrayRef<Value> at) {
  Value update = tensor::ExtractOp::create(b, loc, updates, ivs);
  Value old = tensor::ExtractOp::create(b, loc, data, at);
  return tensor::InsertOp::create(b, loc, combine(b, loc, old, update), data, at).getResult();
}

/// ScatterElements (and the older Scatter): updates[p] goes to data at p
/// with its `axis` coordinate replaced by indices[p].
LogicalResult convertScatterElements(NodeContext &ctx) {
  auto dataType = ctx.inputType(0), indicesType = ctx.inputType(1);
  int64_t rank = dataType.getRank();
  if (indicesType.getRank() != rank || ctx.inputType(2).getRank() != rank)
    return ctx.emitError() << "data, indices and updates must have the same rank";
  if (!isa<IntegerType>(indicesType.getElementType()))
    return ctx.emitError() << "indices must be integers, got " << indicesType;
  FailureOr<int64_t> axis = ctx.normalizeAxis(ctx.getInt("axis", 0), rank);
  if (failed(axis))
    return failure();
  auto combine = scatterReduction(ctx, dataType.getElementType());
  if (failed(combine))
    return failure();
  Value data = ctx.input(0), indices = ctx.input(1), updates = ctx.input(2);
  Value axisSize = tensor::DimOp::create(ctx.b, ctx.loc, data, *axis);
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(ctx.b, ctx.loc, indices);
  Value result = scatterLoops(
      ctx.b, ctx.loc, sizes, data, [&](OpBuilder &b, Location loc, ValueRange ivs, Value t) {
        SmallVector<Value> at(ivs.begin(), ivs.end());
        Value index = tensor::ExtractOp::create(b, loc, indices, at);
        at[*axis] = normalizeIndex(b, loc, index, axisSize);
        return applyScatterUpdate(b, loc, *combine, updates, ivs, t, at);
      });
  ctx.setOutput(0, result, ctx.info(0).isUnsigned);
  return success();
}

/// ScatterND: each index tuple of `indices` names a slice of data that the
/// matching slice of updates replaces (or is combined into).
LogicalResult convertScatterND(NodeContext &ctx) {
  auto dataType = ctx.inputType(0), indicesType = ctx.inputType(1);
  int64_t rank = dataType.getRank(), indicesRank = indicesType.getRank();
  if (!isa<IntegerType>(indicesType.getElementType()))
    return ctx.emitError() << "indices must be integers, got " << indicesType;
  int64_t tuple = indicesRank ? indicesType.getDimSize(indicesRank - 1) : ShapedType::kDynamic;
  if (ShapedType::isDynamic(tuple) || tuple > rank)
    return ctx.emitError() << "the index tuples (the last dimension of indices) must be static "
                              "and at most the data's rank, got " << indicesType;
  auto combine = scatterReduction(ctx, dataType.getElementType());
  if (failed(combine))
    return failure();
  Value data = ctx.input(0), indices = ctx.input(1), updates = ctx.input(2);
  int64_t prefix = indicesRank - 1;
  if (ctx.inputType(2).getRank() != prefix + rank - tuple)
    return ctx.emitError() << "updates must have rank " << prefix + rank - tuple << ", got "
                           << ctx.inputType(2);
  SmallVector<OpFoldResult> dataSizes = tensor::getMixedSizes(ctx.b, ctx.loc, data);
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(ctx.b, ctx.loc, updates);
  Value result = scatterLoops(
      ctx.b, ctx.loc, sizes, data, [&](OpBuilder &b, Location loc, ValueRange ivs, Value t) {
        SmallVector<Value> at;
        for (int64_t k = 0; k < tuple; ++k) {
          SmallVector<Value> where(ivs.begin(), ivs.begin() + prefix);
          where.push_back(arith::ConstantIndexOp::create(b, loc, k));
          Value index = tensor::ExtractOp::create(b, loc, indices, where);
          at.push_back(normalizeIndex(b, loc, index,
                                      getValueOrCreateConstantIndexOp(b, loc, dataSizes[k])));
        }
        at.append(ivs.begin() + prefix, ivs.end());
        return applyScatterUpdate(b, loc, *combine, updates, ivs, t, at);
      });
  ctx.setOutput(0, result, ctx.info(0).isUnsigned);
  return success();
}

/// Compress: the slices along `axis` (of the flattened input without one)
/// whose condition is true. The condition must be known at compile time,
/// since it decides the output's size.
LogicalResult convertCompress(NodeContext &ctx) {
  std::optional<SmallVector<int64_t>> condition = ctx.constantInts(1);
  if (!condition)
    return ctx.fail("condition must be a constant (bind it with --bind-input): it decides "
                    "the output's shape");
  Value data = ctx.input(0);
  auto type = ctx.inputType(0);
  int64_t axis = 0;
  if (ctx.hasAttr("axis")) {
    FailureOr<int64_t> given = ctx.normalizeAxis(ctx.getInt("axis", 0), type.getRank());
    if (failed(given))
      return failure();
    axis = *given;
  } else {
    if (!type.hasStaticShape())
      return ctx.emitError() << "without an axis the input is flattened; it needs a static "
                                "shape, got " << type;
    data = reshapeTo(ctx.b, ctx.loc, data, {ctx.b.getIndexAttr(type.getNumElements())});
    type = cast<RankedTensorType>(data.getType());
  }
  int64_t length = type.getDimSize(axis);
  SmallVector<int64_t> picks;
  for (int64_t k = 0; k < (int64_t)condition->size(); ++k)
    if ((*condition)[k] != 0) {
      if (!ShapedType::isDynamic(length) && k >= length)
        return ctx.fail("condition selects index " + std::to_string(k) + " past the axis' " +
                        std::to_string(length) + " elements");
      picks.push_back(k);
    }
  int64_t rank = type.getRank();
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(ctx.b, ctx.loc, data);
  sizes[axis] = ctx.b.getIndexAttr(picks.size());
  auto pickType = RankedTensorType::get({(int64_t)picks.size()}, ctx.b.getI64Type());
  Value table = arith::ConstantOp::create(
      ctx.b, ctx.loc, DenseElementsAttr::get(pickType, ArrayRef<int64_t>(picks)));
  Type element = type.getElementType();
  Value init = createEmpty(ctx.b, ctx.loc, sizes, element);
  SmallVector<utils::IteratorType> iterators(rank, utils::IteratorType::parallel);
  auto generic = linalg::GenericOp::create(
      ctx.b, ctx.loc, TypeRange{init.getType()}, ValueRange{table}, ValueRange{init},
      ArrayRef<AffineMap>{AffineMap::get(rank, 0, {ctx.b.getAffineDimExpr(axis)},
                                         ctx.b.getContext()),
                          ctx.b.getMultiDimIdentityMap(rank)},
      iterators, [&](OpBuilder &b, Location loc, ValueRange args) {
        SmallVector<Value> coords;
        for (int64_t d = 0; d < rank; ++d)
          coords.push_back(d == axis ? toIndex(b, loc, args[0])
                                     : Value(linalg::IndexOp::create(b, loc, d)));
        linalg::YieldOp::create(b, loc,
                                tensor::ExtractOp::create(b, loc, data, coords).getResult());
      });
  ctx.setOutput(0, generic.getResult(0), ctx.info(0).isUnsigned);
  return success();
}

LogicalResult convertCumSum(NodeContext &ctx) {
  auto type = ctx.inputType(0);
  int64_t rank = type.getRank();
  std::optional<SmallVector<int64_t>> axisValue = ctx.constantInts(1);
  if (!axisValue || axisValue->size() != 1)
    return ctx.fail("axis must be a constant scalar");
  FailureOr<int64_t> axis = ctx.normalizeAxis((*axisValue)[0], rank);
  if (failed(axis))
    return failure();
  bool exclusive = ctx.getInt("exclusive", 0) != 0;
  bool reverse = ctx.getInt("reverse", 0) != 0;
  Type element = type.getElementType();
  OpBuilder &b = ctx.b;
  // out[.., i, ..] = sum over j of x[.., j, ..] where j is on the chosen side
  // of i: one reduction over an extra loop dimension.
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, ctx.loc, ctx.input(0));
  Value zero = scalarConstant(b, ctx.loc, element, 0);
  Value init = createFilled(b, ctx.loc, sizes, zero);
  SmallVector<AffineExpr> inExprs;
  for (int64_t d = 0; d < rank; ++d)
    inExprs.push_back(d == *axis ? b.getAffineDimExpr(rank) : b.getAffineDimExpr(d));
  // The output map ignores the extra reduction dimension.
  SmallVector<AffineExpr> outExprs;
  for (int64_t d = 0; d < rank; ++d)
    outExprs.push_back(b.getAffineDimExpr(d));
  SmallVector<AffineMap> maps = {
      AffineMap::get(rank + 1, 0, inExprs, b.getContext()),
      AffineMap::get(rank + 1, 0, outExprs, b.getContext())};
  SmallVector<utils::IteratorType> iterators(rank, utils::IteratorType::parallel);
  iterators.push_back(utils::IteratorType::reduction);
  auto generic = linalg::GenericOp::create(
      b, ctx.loc, TypeRange{type}, ValueRange{ctx.input(0)}, ValueRange{init},
      maps, iterators, [&](OpBuilder &nb, Location loc, ValueRange args) {
        Value i = linalg::IndexOp::create(nb, loc, *axis);
        Value j = linalg::IndexOp::create(nb, loc, rank);
        arith::CmpIPredicate pred =
            reverse ? (exclusive ? arith::CmpIPredicate::ugt : arith::CmpIPredicate::uge)
                    : (exclusive ? arith::CmpIPredicate::ult : arith::CmpIPredicate::ule);
        Value take = arith::CmpIOp::create(nb, loc, pred, j, i);
        Value term = arith::SelectOp::create(nb, loc, take, args[0],
                                             scalarConstant(nb, loc, element, 0));
        Value sum = isa<FloatType>(element)
                        ? (Value)arith::AddFOp::create(nb, loc, args[1], term)
                        : (Value)arith::AddIOp::create(nb, loc, args[1], term);
        linalg::YieldOp::create(nb, loc, sum);
      });
  ctx.setOutput(0, generic.getResult(0), ctx.info(0).isUnsigned);
  return success();
}

//===----------------------------------------------------------------------===//
// Pad
//===----------------------------------------------------------------------===//

LogicalResult convertPad(NodeContext &ctx) {
  auto type = ctx.inputType(0);
  int64_t rank = type.getRank();
  std::string mode = ctx.getString("mode", "constant");
  if (failed(requireInput(ctx, 1, "pads")))
    return failure();
  std::optional<SmallVector<Value>> pads = ctx.inputElements(1);
  if (!pads || (int64_t)pads->size() != 2 * rank)
    return ctx.emitError() << "pads must hold " << 2 * rank << " values";
  if (ctx.hasInput(3))
    return ctx.fail("the 'axes' input is not supported");
  I64Math m{ctx.b, ctx.loc};
  Value data = ctx.input(0);
  SmallVector<OpFoldResult> low, high;
  for (int64_t d = 0; d < rank; ++d) {
    Value lo = m.widen((*pads)[d]), hi = m.widen((*pads)[d + rank]);
    std::optional<int64_t> l = I64Math::constant(lo), h = I64Math::constant(hi);
    if ((l && *l < 0) || (h && *h < 0))
      return ctx.fail("negative pads are not supported");
    low.push_back(m.ofr(lo));
    high.push_back(m.ofr(hi));
  }
  Type element = type.getElementType();
  SmallVector<OpFoldResult> inSizes = tensor::getMixedSizes(ctx.b, ctx.loc, data);
  SmallVector<OpFoldResult> outSizes;
  for (int64_t d = 0; d < rank; ++d) {
    Value s = m.add(m.add(m.widen(getValueOrCreateConstantIndexOp(ctx.b, ctx.loc, inSizes[d])),
                          m.widen(getValueOrCreateConstantIndexOp(ctx.b, ctx.loc, low[d]))),
                    m.widen(getValueOrCreateConstantIndexOp(ctx.b, ctx.loc, high[d])));
    outSizes.push_back(m.ofr(s));
  }
  RankedTensorType resultType = typeFromSizes(outSizes, element);
  if (mode == "constant") {
    Value padValue = scalarConstant(ctx.b, ctx.loc, element, 0);
    if (ctx.hasInput(2))
      padValue = tensor::ExtractOp::create(
          ctx.b, ctx.loc, ctx.input(2),
          SmallVector<Value>(ctx.inputType(2).getRank(),
                             arith::ConstantIndexOp::create(ctx.b, ctx.loc, 0)));
    auto pad = tensor::PadOp::create(ctx.b, ctx.loc, resultType, data, low, high,
                                     padValue);
    ctx.setOutput(0, pad.getResult(), ctx.info(0).isUnsigned);
    return success();
  }
  if (mode != "edge" && mode != "reflect")
    return ctx.fail("pad mode '" + mode + "' is not supported");
  bool reflect = mode == "reflect";
  SmallVector<Value> lowValues, sizeValues;
  for (int64_t d = 0; d < rank; ++d) {
    lowValues.push_back(getValueOrCreateConstantIndexOp(ctx.b, ctx.loc, low[d]));
    sizeValues.push_back(getValueOrCreateConstantIndexOp(ctx.b, ctx.loc, inSizes[d]));
  }
  Value init = createEmpty(ctx.b, ctx.loc, outSizes, element);
  SmallVector<utils::IteratorType> iterators(rank, utils::IteratorType::parallel);
  auto generic = linalg::GenericOp::create(
      ctx.b, ctx.loc, TypeRange{resultType}, ValueRange{}, ValueRange{init},
      ArrayRef<AffineMap>{ctx.b.getMultiDimIdentityMap(rank)}, iterators,
      [&](OpBuilder &b, Location loc, ValueRange) {
        SmallVector<Value> coords;
        Value zero = arith::ConstantIndexOp::create(b, loc, 0);
        Value one = arith::ConstantIndexOp::create(b, loc, 1);
        for (int64_t d = 0; d < rank; ++d) {
          Value c = arith::SubIOp::create(b, loc, linalg::IndexOp::create(b, loc, d),
                                          lowValues[d]);
          Value last = arith::SubIOp::create(b, loc, sizeValues[d], one);
          if (reflect) {
            // -c below the start, 2*last - c past the end.
            Value neg = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, c, zero);
            c = arith::SelectOp::create(b, loc, neg, arith::SubIOp::create(b, loc, zero, c), c);
            Value past = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt, c, last);
            Value mirrored = arith::SubIOp::create(
                b, loc, arith::AddIOp::create(b, loc, last, last), c);
            c = arith::SelectOp::create(b, loc, past, mirrored, c);
          }
          c = arith::MinSIOp::create(b, loc, arith::MaxSIOp::create(b, loc, c, zero), last);
          coords.push_back(c);
        }
        linalg::YieldOp::create(b, loc,
                                tensor::ExtractOp::create(b, loc, data, coords).getResult());
      });
  ctx.setOutput(0, generic.getResult(0), ctx.info(0).isUnsigned);
  return success();
}

} // namespace

void onnx_import::registerTensorConverters(ConverterTable &table) {
  table["Constant"] = convertConstant;
  table["Shape"] = convertShape;
  table["Size"] = convertSize;
  table["Reshape"] = convertReshape;
  table["Flatten"] = convertFlatten;
  table["Squeeze"] = convertSqueeze;
  table["Unsqueeze"] = convertUnsqueeze;
  table["Transpose"] = convertTranspose;
  table["Concat"] = convertConcat;
  table["Slice"] = convertSlice;
  table["Split"] = convertSplit;
  table["Gather"] = convertGather;
  table["GatherElements"] = convertGatherElements;
  table["Expand"] = convertExpand;
  table["ConstantOfShape"] = convertConstantOfShape;
  table["Range"] = convertRange;
  table["Tile"] = convertTile;
  table["Trilu"] = convertTrilu;
  table["CumSum"] = convertCumSum;
  table["EyeLike"] = convertEyeLike;
  table["OneHot"] = convertOneHot;
  table["HannWindow"] = convertWindow;
  table["HammingWindow"] = convertWindow;
  table["BlackmanWindow"] = convertWindow;
  table["ReverseSequence"] = convertReverseSequence;
  table["GatherND"] = convertGatherND;
  table["ScatterElements"] = convertScatterElements;
  table["Scatter"] = convertScatterElements;
  table["ScatterND"] = convertScatterND;
  table["Compress"] = convertCompress;
  table["DepthToSpace"] = convertDepthSpace;
  table["SpaceToDepth"] = convertDepthSpace;
  table["Pad"] = convertPad;
}
