//===- BuildHelpers.cpp - IR-building helpers for ONNX converters ----------===//

#include "ImporterInternal.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Utils/ReshapeOpsUtils.h"
#include "mlir/Dialect/Utils/StructuredOpsUtils.h"
#include "mlir/IR/AffineMap.h"

#include <limits>

using namespace mlir;
using namespace hasten;
using namespace hasten::onnx_import;

SmallVector<OpFoldResult> onnx_import::broadcastShapes(OpBuilder &b,
                                                       Location loc,
                                                       ValueRange inputs) {
  int64_t rank = 0;
  for (Value v : inputs)
    rank = std::max(rank, cast<RankedTensorType>(v.getType()).getRank());
  SmallVector<OpFoldResult> sizes;
  for (int64_t d = 0; d < rank; ++d) {
    std::optional<int64_t> staticSize;
    Value dynamicSource;
    int64_t dynamicDim = 0;
    for (Value v : inputs) {
      auto type = cast<RankedTensorType>(v.getType());
      int64_t dim = d - (rank - type.getRank());
      if (dim < 0)
        continue;
      int64_t size = type.getDimSize(dim);
      if (ShapedType::isDynamic(size)) {
        if (!dynamicSource) {
          dynamicSource = v;
          dynamicDim = dim;
        }
      } else if (size != 1 || !staticSize) {
        if (!staticSize || *staticSize == 1)
          staticSize = size;
      }
    }
    if (staticSize && (*staticSize != 1 || !dynamicSource))
      sizes.push_back(b.getIndexAttr(*staticSize));
    else
      sizes.push_back(
          tensor::DimOp::create(b, loc, dynamicSource, dynamicDim).getResult());
  }
  return sizes;
}

Value onnx_import::createEmpty(OpBuilder &b, Location loc,
                               ArrayRef<OpFoldResult> sizes, Type elementType) {
  return tensor::EmptyOp::create(b, loc, sizes, elementType);
}

Value onnx_import::createFilled(OpBuilder &b, Location loc,
                                ArrayRef<OpFoldResult> sizes, Value value) {
  Value empty = createEmpty(b, loc, sizes, value.getType());
  return linalg::FillOp::create(b, loc, value, empty).getResult(0);
}

RankedTensorType onnx_import::typeFromSizes(ArrayRef<OpFoldResult> sizes,
                                            Type element) {
  SmallVector<int64_t> shape;
  for (OpFoldResult s : sizes) {
    std::optional<int64_t> c = getConstantIntValue(s);
    shape.push_back(c ? *c : ShapedType::kDynamic);
  }
  return RankedTensorType::get(shape, element);
}

Value onnx_import::buildElementwise(
    OpBuilder &b, Location loc, ValueRange inputs, Type resultElement,
    ScalarBodyFn body, std::optional<ArrayRef<OpFoldResult>> outputShape) {
  SmallVector<OpFoldResult> sizes =
      outputShape ? SmallVector<OpFoldResult>(outputShape->begin(),
                                              outputShape->end())
                  : broadcastShapes(b, loc, inputs);
  int64_t rank = sizes.size();
  RankedTensorType resultType = typeFromSizes(sizes, resultElement);
  SmallVector<AffineMap> maps;
  for (Value v : inputs) {
    auto type = cast<RankedTensorType>(v.getType());
    SmallVector<AffineExpr> exprs;
    for (int64_t dim = 0; dim < type.getRank(); ++dim) {
      int64_t outDim = dim + (rank - type.getRank());
      bool broadcast =
          type.getDimSize(dim) == 1 && resultType.getDimSize(outDim) != 1;
      exprs.push_back(broadcast ? b.getAffineConstantExpr(0)
                                : b.getAffineDimExpr(outDim));
    }
    maps.push_back(AffineMap::get(rank, 0, exprs, b.getContext()));
  }
  maps.push_back(b.getMultiDimIdentityMap(rank));
  Value init = createEmpty(b, loc, sizes, resultElement);
  SmallVector<utils::IteratorType> iterators(rank,
                                             utils::IteratorType::parallel);
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{resultType}, inputs, ValueRange{init}, maps, iterators,
      [&](OpBuilder &nested, Location nestedLoc, ValueRange args) {
        Value result = body(nested, nestedLoc, args.drop_back());
        linalg::YieldOp::create(nested, nestedLoc, result);
      });
  return generic.getResult(0);
}

Value onnx_import::scalarConstant(OpBuilder &b, Location loc, Type type,
                                  double value) {
  if (auto floatType = dyn_cast<FloatType>(type))
    return arith::ConstantOp::create(b, loc, b.getFloatAttr(floatType, value));
  if (type.isIndex())
    return arith::ConstantIndexOp::create(b, loc, static_cast<int64_t>(value));
  return arith::ConstantOp::create(
      b, loc, b.getIntegerAttr(type, static_cast<int64_t>(value)));
}

/// The smallest (or largest) value of `type`: -inf/+inf for floats.
static Value extremeValue(OpBuilder &b, Location loc, Type type, bool highest) {
  if (auto floatType = dyn_cast<FloatType>(type))
    return arith::ConstantOp::create(
        b, loc,
        b.getFloatAttr(floatType,
                       APFloat::getInf(floatType.getFloatSemantics(), /*Negative=*/!highest)));
  unsigned width = type.getIntOrFloatBitWidth();
  return arith::ConstantOp::create(
      b, loc,
      b.getIntegerAttr(type, highest ? APInt::getSignedMaxValue(width)
                                     : APInt::getSignedMinValue(width)));
}

Value onnx_import::indexConstant(OpBuilder &b, Location loc, int64_t value) {
  return arith::ConstantIndexOp::create(b, loc, value);
}

Value onnx_import::numElementsOf(OpBuilder &b, Location loc, Value tensor) {
  Value count = indexConstant(b, loc, 1);
  for (int64_t d = 0, e = cast<RankedTensorType>(tensor.getType()).getRank(); d < e; ++d)
    count = arith::MulIOp::create(b, loc, count, tensor::DimOp::create(b, loc, tensor, d));
  return count;
}

Value onnx_import::lowestValue(OpBuilder &b, Location loc, Type type) {
  return extremeValue(b, loc, type, /*highest=*/false);
}

Value onnx_import::highestValue(OpBuilder &b, Location loc, Type type) {
  return extremeValue(b, loc, type, /*highest=*/true);
}

Value onnx_import::castScalar(OpBuilder &b, Location loc, Value value, Type to,
                              bool srcUnsigned, bool dstUnsigned) {
  Type from = value.getType();
  if (from == to)
    return value;
  auto fromFloat = dyn_cast<FloatType>(from);
  auto toFloat = dyn_cast<FloatType>(to);
  if (fromFloat && toFloat) {
    if (fromFloat.getWidth() < toFloat.getWidth())
      return arith::ExtFOp::create(b, loc, to, value);
    if (fromFloat.getWidth() > toFloat.getWidth())
      return arith::TruncFOp::create(b, loc, to, value);
    // f16 <-> bf16: go through f32.
    Value wide = arith::ExtFOp::create(b, loc, b.getF32Type(), value);
    return arith::TruncFOp::create(b, loc, to, wide);
  }
  if (fromFloat) {
    if (to.isInteger(1)) {
      Value zero = scalarConstant(b, loc, from, 0.0);
      return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNE, value,
                                   zero);
    }
    if (dstUnsigned)
      return arith::FPToUIOp::create(b, loc, to, value);
    return arith::FPToSIOp::create(b, loc, to, value);
  }
  if (toFloat) {
    if (srcUnsigned || from.isInteger(1))
      return arith::UIToFPOp::create(b, loc, to, value);
    return arith::SIToFPOp::create(b, loc, to, value);
  }
  // Integer to integer.
  unsigned fromWidth = from.getIntOrFloatBitWidth();
  unsigned toWidth = to.getIntOrFloatBitWidth();
  if (to.isInteger(1)) {
    Value zero = scalarConstant(b, loc, from, 0);
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, value, zero);
  }
  if (fromWidth < toWidth) {
    if (srcUnsigned || from.isInteger(1))
      return arith::ExtUIOp::create(b, loc, to, value);
    return arith::ExtSIOp::create(b, loc, to, value);
  }
  if (fromWidth > toWidth)
    return arith::TruncIOp::create(b, loc, to, value);
  return value;
}

Value onnx_import::toIndex(OpBuilder &b, Location loc, Value integer) {
  if (integer.getType().isIndex())
    return integer;
  return arith::IndexCastOp::create(b, loc, b.getIndexType(), integer);
}

Value onnx_import::fromIndex(OpBuilder &b, Location loc, Value index,
                             Type integerType) {
  return arith::IndexCastOp::create(b, loc, integerType, index);
}

Value onnx_import::castIfNeeded(OpBuilder &b, Location loc, Value value,
                                Type type) {
  if (value.getType() == type)
    return value;
  return tensor::CastOp::create(b, loc, type, value);
}

SmallVector<ReassociationIndices>
onnx_import::groupsFromBoundaries(ArrayRef<int64_t> bounds) {
  SmallVector<ReassociationIndices> groups;
  for (size_t i = 0; i + 1 < bounds.size(); ++i) {
    ReassociationIndices group;
    for (int64_t d = bounds[i]; d < bounds[i + 1]; ++d)
      group.push_back(d);
    groups.push_back(group);
  }
  return groups;
}

Value onnx_import::reshapeTo(OpBuilder &b, Location loc, Value value,
                             ArrayRef<OpFoldResult> sizes) {
  auto sourceType = cast<RankedTensorType>(value.getType());
  RankedTensorType resultType = typeFromSizes(sizes, sourceType.getElementType());
  if (sourceType == resultType)
    return value;
  // Static-shape regroupings become collapse/expand, which later passes
  // understand better than a general reshape.
  if (sourceType.hasStaticShape() && resultType.hasStaticShape()) {
    if (sourceType.getRank() > resultType.getRank()) {
      if (auto groups = getReassociationIndicesForCollapse(
              sourceType.getShape(), resultType.getShape()))
        return tensor::CollapseShapeOp::create(b, loc, resultType, value,
                                               *groups);
    } else if (sourceType.getRank() < resultType.getRank()) {
      if (auto groups = getReassociationIndicesForReshape(sourceType,
                                                          resultType))
        return tensor::ExpandShapeOp::create(b, loc, resultType, value,
                                             *groups);
    }
  }
  // Any other row-major reshape is a collapse to one dimension followed by
  // an expand to the target sizes: two views that bufferization and the
  // strided-metadata lowering handle well, where a dynamic tensor.reshape
  // (memref.reshape) is fragile.
  Value flat = value;
  if (sourceType.getRank() != 1) {
    if (sourceType.getRank() == 0) {
      flat = tensor::ExpandShapeOp::create(
          b, loc, RankedTensorType::get({1}, sourceType.getElementType()), value,
          ArrayRef<ReassociationIndices>{}, ArrayRef<OpFoldResult>{b.getIndexAttr(1)});
    } else {
      ReassociationIndices all;
      for (int64_t d = 0; d < sourceType.getRank(); ++d)
        all.push_back(d);
      flat = tensor::CollapseShapeOp::create(b, loc, value,
                                             ArrayRef<ReassociationIndices>{all});
    }
  }
  if (resultType.getRank() == 0) {
    // Only a one-element tensor reshapes to a scalar.
    Value one = castIfNeeded(b, loc, flat,
                             RankedTensorType::get({1}, sourceType.getElementType()));
    return tensor::CollapseShapeOp::create(b, loc, resultType, one,
                                           ArrayRef<ReassociationIndices>{});
  }
  if (resultType.getRank() == 1)
    return castIfNeeded(b, loc, flat, resultType);
  ReassociationIndices all;
  for (int64_t d = 0; d < resultType.getRank(); ++d)
    all.push_back(d);
  // A static target needs a static source: the element count is known.
  if (resultType.hasStaticShape())
    flat = castIfNeeded(b, loc, flat,
                        RankedTensorType::get({resultType.getNumElements()},
                                              sourceType.getElementType()));
  else // A dynamic target needs a dynamic source (expand_shape's rule).
    flat = castIfNeeded(b, loc, flat,
                        RankedTensorType::get({ShapedType::kDynamic}, sourceType.getElementType()));
  return tensor::ExpandShapeOp::create(b, loc, resultType, flat,
                                       ArrayRef<ReassociationIndices>{all}, sizes);
}

Value onnx_import::insertUnitDims(OpBuilder &b, Location loc, Value value,
                     ArrayRef<int64_t> positions) {
  auto type = cast<RankedTensorType>(value.getType());
  int64_t resultRank = type.getRank() + positions.size();
  SmallVector<OpFoldResult> inSizes = tensor::getMixedSizes(b, loc, value);
  SmallVector<OpFoldResult> outSizes;
  SmallVector<ReassociationIndices> groups;
  ReassociationIndices pending;
  int64_t next = 0;
  for (int64_t d = 0; d < resultRank; ++d) {
    if (llvm::is_contained(positions, d)) {
      outSizes.push_back(b.getIndexAttr(1));
      if (next < type.getRank() || groups.empty())
        pending.push_back(d);
      else
        groups.back().push_back(d);
      continue;
    }
    outSizes.push_back(inSizes[next++]);
    ReassociationIndices group = pending;
    group.push_back(d);
    pending.clear();
    groups.push_back(group);
  }
  if (groups.empty())
    return reshapeTo(b, loc, value, outSizes);
  if (!pending.empty())
    groups.back().append(pending.begin(), pending.end());
  return tensor::ExpandShapeOp::create(
      b, loc, typeFromSizes(outSizes, type.getElementType()), value, groups,
      outSizes);
}

Value onnx_import::dropUnitDims(OpBuilder &b, Location loc, Value value,
                   ArrayRef<int64_t> positions) {
  auto type = cast<RankedTensorType>(value.getType());
  SmallVector<int64_t> shape(type.getShape());
  for (int64_t p : positions)
    shape[p] = 1;
  value = castIfNeeded(b, loc, value,
                       RankedTensorType::get(shape, type.getElementType()));
  SmallVector<ReassociationIndices> groups;
  ReassociationIndices current;
  for (int64_t d = 0; d < type.getRank(); ++d) {
    current.push_back(d);
    if (!llvm::is_contained(positions, d)) {
      groups.push_back(current);
      current.clear();
    }
  }
  if (!current.empty() && !groups.empty())
    groups.back().append(current.begin(), current.end());
  return tensor::CollapseShapeOp::create(b, loc, value, groups);
}
