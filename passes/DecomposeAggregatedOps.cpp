//===- DecomposeAggregatedOps.cpp - softmax and friends to generics --------===//
//
// linalg.softmax has no loop lowering of its own; its AggregatedOpInterface
// decomposition does. Running it as a pass keeps the named op intact for the
// passes that want to match it and lowers it right before codegen.
//
//===----------------------------------------------------------------------===//

#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"

namespace hasten {
#define GEN_PASS_DEF_DECOMPOSEAGGREGATEDOPS
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;

namespace {
struct DecomposeAggregatedOpsPass
    : public hasten::impl::DecomposeAggregatedOpsBase<DecomposeAggregatedOpsPass> {
  void runOnOperation() override {
    SmallVector<linalg::AggregatedOpInterface> ops;
    getOperation()->walk([&](linalg::AggregatedOpInterface op) { ops.push_back(op); });
    IRRewriter rewriter(&getContext());
    for (linalg::AggregatedOpInterface op : ops) {
      rewriter.setInsertionPoint(op);
      FailureOr<SmallVector<Value>> replacements = op.decomposeOperation(rewriter);
      if (failed(replacements)) {
        op->emitError("cannot decompose this op");
        return signalPassFailure();
      }
      rewriter.replaceOp(op, *replacements);
    }
  }
};
} // namespace
