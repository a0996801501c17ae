//===- MemrefCopyToLinalg.cpp - keep copies free of runtime calls ----------===//
//
// memref.copy between strided memrefs lowers to a call into MLIR's runner
// utilities; linalg.copy lowers to loops. Deployed modules link no MLIR
// library, so every copy takes the second road.
//
//===----------------------------------------------------------------------===//

#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/PatternMatch.h"

namespace hasten {
#define GEN_PASS_DEF_MEMREFCOPYTOLINALG
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;

namespace {
struct MemrefCopyToLinalgPass
    : public hasten::impl::MemrefCopyToLinalgBase<MemrefCopyToLinalgPass> {
  void runOnOperation() override {
    SmallVector<memref::CopyOp> copies;
    getOperation()->walk([&](memref::CopyOp op) { copies.push_back(op); });
    IRRewriter rewriter(&getContext());
    for (memref::CopyOp copy : copies) {
      rewriter.setInsertionPoint(copy);
      linalg::CopyOp::create(rewriter, copy.getLoc(), copy.getSource(), copy.getTarget());
      rewriter.eraseOp(copy);
    }
  }
};
} // namespace
