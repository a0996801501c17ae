//===- AssignDestinations.cpp - destinations that keep lifetimes short ----===//
//
// Bufferization puts a linalg op's result in its `outs` buffer. When that is
// a tensor.empty, the choice is free, and it decides the peak memory: a dying
// input of the same shape can be updated in place, and an empty tensor that
// CSE shared between ops far apart would be allocated at the first of them
// and held until the last.
//
//===----------------------------------------------------------------------===//

#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"

namespace hasten {
#define GEN_PASS_DEF_ASSIGNDESTINATIONS
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;

namespace {

/// An input of `op` that dies there and can hold the result of `init`:
/// same type, read at the element the result writes, used by nothing else.
OpOperand *dyingInputFor(linalg::LinalgOp op, OpOperand &init,
                         const llvm::SmallPtrSetImpl<Value> &taken) {
  if (!op.isAllParallelLoops())
    return nullptr;
  AffineMap resultMap = op.getMatchingIndexingMap(&init);
  for (OpOperand *input : op.getDpsInputOperands()) {
    Value value = input->get();
    if (value.getType() != init.get().getType() || !value.hasOneUse() || taken.contains(value) ||
        op.getMatchingIndexingMap(input) != resultMap)
      continue;
    // Arguments and constants are not ours to overwrite (bufferization
    // would copy them first), nor are views of them: a reshaped argument
    // is the caller's buffer.
    Value root = value;
    while (Operation *view = root.getDefiningOp()) {
      if (!isa<tensor::ExpandShapeOp, tensor::CollapseShapeOp, tensor::CastOp,
               tensor::ExtractSliceOp>(view))
        break;
      root = view->getOperand(0);
    }
    Operation *producer = root.getDefiningOp();
    if (!producer || producer->hasTrait<OpTrait::ConstantLike>())
      continue;
    return input;
  }
  return nullptr;
}

void eraseIfUnused(Operation *op) {
  if (op->use_empty())
    op->erase();
}

struct AssignDestinationsPass
    : public hasten::impl::AssignDestinationsBase<AssignDestinationsPass> {
  void runOnOperation() override {
    SmallVector<linalg::LinalgOp> ops;
    getOperation().walk([&](linalg::LinalgOp op) {
      if (op.hasPureTensorSemantics())
        ops.push_back(op);
    });
    for (linalg::LinalgOp op : ops) {
      llvm::SmallPtrSet<Value, 4> taken;
      for (OpOperand &init : op.getDpsInitsMutable()) {
        // A filled accumulator (matmul inits), possibly one that CSE shared
        // between matmuls: each gets its own, filled just before it, or the
        // second would copy it and keep it alive from the first.
        if (auto fill = init.get().getDefiningOp<linalg::FillOp>();
            fill && fill.getOutputs()[0].getDefiningOp<tensor::EmptyOp>()) {
          OpBuilder b(op);
          auto empty = fill.getOutputs()[0].getDefiningOp<tensor::EmptyOp>();
          IRMapping mapping;
          mapping.map(empty.getResult(), b.clone(*empty)->getResult(0));
          init.set(b.clone(*fill, mapping)->getResult(0));
          eraseIfUnused(fill);
          eraseIfUnused(empty);
          continue;
        }
        auto empty = init.get().getDefiningOp<tensor::EmptyOp>();
        if (!empty || op.payloadUsesValueFromOperand(&init))
          continue;
        if (OpOperand *input = dyingInputFor(op, init, taken)) {
          taken.insert(input->get());
          init.set(input->get());
        } else {
          // Allocated where it is first needed, not where CSE left it.
          OpBuilder b(op);
          init.set(cast<tensor::EmptyOp>(b.clone(*empty)).getResult());
        }
        eraseIfUnused(empty);
      }
    }
  }
};

} // namespace
