//===- PackStaticBuffers.cpp - static-shape activations in one arena -------===//
//
// Every statically shaped buffer a function allocates and frees itself gets
// an offset in one arena, allocated once per call, such that buffers alive
// at the same time never overlap: one allocation instead of one per op, and
// the liveness-based peak by construction.
//
//===----------------------------------------------------------------------===//

#include "BufferLiveness.h"
#include "hasten/Dialect/Hasten/HastenDialect.h"
#include "hasten/Passes/BufferPacking.h"
#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/Builders.h"

namespace hasten {
#define GEN_PASS_DEF_PACKSTATICBUFFERS
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;
using namespace hasten;

namespace {

struct PackStaticBuffersPass
    : public hasten::impl::PackStaticBuffersBase<PackStaticBuffersPass> {
  using PackStaticBuffersBase::PackStaticBuffersBase;

  void runOnOperation() override {
    func::FuncOp func = getOperation();
    if (alignment <= 0 || (alignment & (alignment - 1))) {
      func.emitError("--hasten-pack-static-buffers: alignment must be a power of two, got ")
          << int64_t(alignment);
      return signalPassFailure();
    }
    StaticArena plan = planStaticArena(func, alignment);
    if (plan.bytes == 0)
      return;
    Block *block = &func.getBody().front();
    int64_t arenaBytes = plan.bytes;

    OpBuilder b(func.getContext());
    b.setInsertionPointToStart(block);
    Location loc = func.getLoc();
    auto arenaType = MemRefType::get({arenaBytes}, b.getI8Type());
    Value arena = memref::AllocOp::create(b, loc, arenaType, ValueRange{},
                                          b.getI64IntegerAttr(alignment));
    for (auto [alloc, buffer] : llvm::zip(plan.allocs, plan.buffers)) {
      b.setInsertionPoint(alloc);
      Value offset = arith::ConstantIndexOp::create(b, alloc.getLoc(), buffer.offset);
      Value view = memref::ViewOp::create(b, alloc.getLoc(), alloc.getType(), arena, offset,
                                          ValueRange{});
      SmallVector<Operation *> deallocs;
      for (Operation *user : alloc->getUsers())
        if (isa<memref::DeallocOp>(user))
          deallocs.push_back(user);
      for (Operation *dealloc : deallocs)
        dealloc->erase();
      alloc.getResult().replaceAllUsesWith(view);
      alloc.erase();
    }
    func.walk([&](func::ReturnOp ret) {
      b.setInsertionPoint(ret);
      memref::DeallocOp::create(b, ret.getLoc(), arena);
    });
    func->setAttr(HastenDialect::kArenaBytesAttrName, b.getI64IntegerAttr(arenaBytes));
    func->setAttr(HastenDialect::kArenaBuffersAttrName, b.getI64IntegerAttr(plan.allocs.size()));
  }
};
} // namespace

StaticArena hasten::planStaticArena(func::FuncOp func, int64_t alignment) {
  StaticArena plan;
  if (func.isExternal())
    return plan;
  Block *block = &func.getBody().front();
  DenseMap<Operation *, int64_t> position;
  int64_t next = 0;
  for (Operation &op : *block)
    position[&op] = next++;
  for (auto alloc : block->getOps<memref::AllocOp>()) {
    MemRefType type = alloc.getType();
    if (!type.hasStaticShape() || !type.getLayout().isIdentity() || type.getMemorySpace() ||
        !type.getElementType().isIntOrFloat())
      continue;
    bool freed = false, freedHere = true;
    for (Operation *user : alloc->getUsers())
      if (isa<memref::DeallocOp>(user)) {
        freed = true;
        freedHere &= user->getBlock() == block;
      }
    if (!freed || !freedHere)
      continue;
    FailureOr<Operation *> last = lastUseInBlock(block, alloc, nullptr);
    if (failed(last))
      continue;
    int64_t bytes =
        type.getNumElements() * std::max<int64_t>(1, (type.getElementTypeBitWidth() + 7) / 8);
    plan.allocs.push_back(alloc);
    plan.buffers.push_back({bytes, position[alloc], position[*last]});
  }
  if (plan.allocs.size() < 2) {
    plan.allocs.clear();
    plan.buffers.clear();
    return plan;
  }
  plan.bytes = packBuffers(plan.buffers, alignment);
  return plan;
}
