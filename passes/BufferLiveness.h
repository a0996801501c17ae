//===- BufferLiveness.h - where a buffer and its views are last used -*- C++ -*-===//
//
// Shared by hasten-dealloc-after-last-use and hasten-pack-static-buffers.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_PASSES_BUFFERLIVENESS_H
#define HASTEN_PASSES_BUFFERLIVENESS_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Interfaces/ViewLikeInterface.h"

namespace hasten {

/// The op of `block` containing `op`, or null.
inline mlir::Operation *ancestorIn(mlir::Block *block, mlir::Operation *op) {
  while (op && op->getBlock() != block)
    op = op->getParentOp();
  return op;
}

/// The last op of `block` that uses `alloc` or a view of it (ignoring
/// `ignored`, its dealloc), or failure when an alias escapes in a way that
/// is not followed: returned, or passed through an op that yields a buffer
/// other than a view.
inline mlir::FailureOr<mlir::Operation *>
lastUseInBlock(mlir::Block *block, mlir::memref::AllocOp alloc, mlir::Operation *ignored) {
  using namespace mlir;
  Operation *last = alloc;
  SmallVector<Value> worklist = {alloc.getResult()};
  while (!worklist.empty()) {
    Value value = worklist.pop_back_val();
    for (Operation *user : value.getUsers()) {
      if (user == ignored || isa<memref::DeallocOp>(user))
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
      for (Value result : user->getResults())
        if (isa<BaseMemRefType>(result.getType()))
          return failure();
    }
  }
  return last;
}

} // namespace hasten

#endif // HASTEN_PASSES_BUFFERLIVENESS_H
