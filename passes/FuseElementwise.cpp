//===- FuseElementwise.cpp - elementwise chains into single loops ----------===//
//
// Upstream's elementwise fusion pass also propagates reshapes through linalg
// ops, which turns a reshape-wrapped linalg.matmul into a generic contraction
// that no GEMM kernel recognizes. This pass applies only producer-consumer
// fusion between elementwise generics.
//
//===----------------------------------------------------------------------===//

#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace hasten {
#define GEN_PASS_DEF_FUSEELEMENTWISE
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;

namespace {

bool isElementwiseGeneric(Operation *op) {
  auto generic = dyn_cast_or_null<linalg::GenericOp>(op);
  return generic && generic.getNumLoops() == generic.getNumParallelLoops();
}

struct FuseElementwisePass
    : public hasten::impl::FuseElementwiseBase<FuseElementwisePass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    linalg::populateElementwiseOpsFusionPatterns(patterns, [](OpOperand *operand) {
      Operation *producer = operand->get().getDefiningOp();
      return isElementwiseGeneric(producer) && isElementwiseGeneric(operand->getOwner()) &&
             producer->hasOneUse();
    });
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
  }
};
} // namespace
