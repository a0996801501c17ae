//===- ExpandShapeToReinterpretCast.cpp - around an upstream crash ---------===//
//
// expand-strided-metadata (MLIR 22) dereferences a missing static size when an
// expand_shape group has two or more dynamic sizes. The view such an expand
// describes is easy to state directly, so this pass does that instead.
//
//===----------------------------------------------------------------------===//

#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/PatternMatch.h"

namespace hasten {
#define GEN_PASS_DEF_EXPANDSHAPETOREINTERPRETCAST
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;

namespace {

bool hasGroupWithSeveralDynamicSizes(memref::ExpandShapeOp op) {
  ArrayRef<int64_t> shape = op.getResultType().getShape();
  for (const ReassociationIndices &group : op.getReassociationIndices()) {
    int dynamic = 0;
    for (int64_t d : group)
      dynamic += ShapedType::isDynamic(shape[d]);
    if (dynamic > 1)
      return true;
  }
  return false;
}

struct ExpandShapeToReinterpretCastPass
    : public hasten::impl::ExpandShapeToReinterpretCastBase<ExpandShapeToReinterpretCastPass> {
  void runOnOperation() override {
    SmallVector<memref::ExpandShapeOp> expands;
    getOperation()->walk([&](memref::ExpandShapeOp op) {
      if (hasGroupWithSeveralDynamicSizes(op))
        expands.push_back(op);
    });
    IRRewriter rewriter(&getContext());
    for (memref::ExpandShapeOp op : expands) {
      rewriter.setInsertionPoint(op);
      Location loc = op.getLoc();
      auto metadata = memref::ExtractStridedMetadataOp::create(rewriter, loc, op.getSrc());
      SmallVector<OpFoldResult> sizes = op.getMixedOutputShape();
      SmallVector<OpFoldResult> strides(sizes.size());
      for (auto [sourceDim, group] : llvm::enumerate(op.getReassociationIndices())) {
        OpFoldResult stride = getAsOpFoldResult(metadata.getStrides()[sourceDim]);
        for (int64_t d : llvm::reverse(group)) {
          strides[d] = stride;
          Value s = getValueOrCreateConstantIndexOp(rewriter, loc, stride);
          Value n = getValueOrCreateConstantIndexOp(rewriter, loc, sizes[d]);
          stride = getAsOpFoldResult(rewriter.createOrFold<arith::MulIOp>(loc, s, n));
        }
      }
      // Where the result type has a static stride, use it as an attribute.
      SmallVector<int64_t> staticStrides;
      int64_t staticOffset;
      if (succeeded(op.getResultType().getStridesAndOffset(staticStrides, staticOffset))) {
        for (auto [i, s] : llvm::enumerate(staticStrides))
          if (!ShapedType::isDynamic(s))
            strides[i] = rewriter.getIndexAttr(s);
      }
      OpFoldResult offset = getAsOpFoldResult(metadata.getOffset());
      if (!ShapedType::isDynamic(staticOffset))
        offset = rewriter.getIndexAttr(staticOffset);
      for (auto [i, s] : llvm::enumerate(op.getResultType().getShape()))
        if (!ShapedType::isDynamic(s))
          sizes[i] = rewriter.getIndexAttr(s);
      auto cast = memref::ReinterpretCastOp::create(rewriter, loc, op.getResultType(),
                                                    metadata.getBaseBuffer(), offset, sizes,
                                                    strides);
      rewriter.replaceOp(op, cast.getResult());
    }
  }
};
} // namespace
