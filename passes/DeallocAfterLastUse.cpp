//===- DeallocAfterLastUse.cpp - free each buffer after its last use -------===//
//
// Ownership-based deallocation frees buffers at the end of their block, so a
// function holds every activation it ever allocated until it returns. Moving
// each unconditional dealloc to just after the last use of the buffer (or of
// any view of it) lets the allocator reuse the memory within the call, and
// makes the peak the liveness-based one that --memory-report prints.
//
//===----------------------------------------------------------------------===//

#include "BufferLiveness.h"
#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Interfaces/ViewLikeInterface.h"

namespace hasten {
#define GEN_PASS_DEF_DEALLOCAFTERLASTUSE
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;
using hasten::lastUseInBlock;

namespace {

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
      FailureOr<Operation *> last = lastUseInBlock(block, alloc, dealloc);
      if (failed(last) || !(*last)->isBeforeInBlock(dealloc))
        continue;
      dealloc->moveAfter(*last);
    }
  }
};
} // namespace
