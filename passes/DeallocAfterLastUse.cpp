//===- DeallocAfterLastUse.cpp - free each buffer after its last use -------===//
//
// Ownership-based deallocation frees buffers at the end of their block, so a
// function holds every activation it ever allocated until it returns. Moving
// each unconditional dealloc to just after the last use of the buffer (or of
// any view of it) lets the allocator reuse the memory within the call, and
// makes the peak the liveness-based one that --memory-report prints.
//
//===----------------------------------------------------------------------===//

#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Interfaces/ViewLikeInterface.h"

namespace hasten {
#define GEN_PASS_DEF_DEALLOCAFTERLASTUSE
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;

namespace {

/// The op of `block` containing `op`, or null.
Operation *ancestorIn(Block *block, Operation *op) {
  while (op && op->getBlock() != block)
    op = op->getParentOp();
  return op;
}

/// The last op of `block` that uses `alloc` or a view of it, or null when
/// an alias escapes in a way this pass does not follow.
FailureOr<Operation *> lastUse(Block *block, memref::AllocOp alloc, Operation *dealloc) {
  Operation *last = alloc;
  SmallVector<Value> worklist = {alloc.getResult()};
  while (!worklist.empty()) {
    Value value = worklist.pop_back_val();
    for (Operation *user : value.getUsers()) {
      if (user == dealloc)
        continue;
      if (isa<func::ReturnOp>(user))
        return failure();
      Operation *top = ancestorIn(block, user);
      if (!top)
        return failure();
      if (last->isBeforeInBlock(top))
        last = top;
      if (isa<ViewLikeOpInterface, memref::CastOp>(user)) {
        for (Value result : user->getResults())
          worklist.push_back(result);
        continue;
      }
      // Any other op that yields a buffer may be forwarding an alias.
      for (Value result : user->getResults())
        if (isa<BaseMemRefType>(result.getType()))
          return failure();
    }
  }
  return last;
}

struct DeallocAfterLastUsePass
    : public hasten::impl::DeallocAfterLastUseBase<DeallocAfterLastUsePass> {
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    if (func.isExternal())
      return;
    Block *block = &func.getBody().front();
    SmallVector<memref::DeallocOp> deallocs;
    for (auto dealloc : block->getOps<memref::DeallocOp>())
      deallocs.push_back(dealloc);
    for (memref::DeallocOp dealloc : deallocs) {
      auto alloc = dealloc.getMemref().getDefiningOp<memref::AllocOp>();
      if (!alloc || alloc->getBlock() != block)
        continue;
      FailureOr<Operation *> last = lastUse(block, alloc, dealloc);
      if (failed(last) || !(*last)->isBeforeInBlock(dealloc))
        continue;
      dealloc->moveAfter(*last);
    }
  }
};
} // namespace
