//===- PackStaticBuffers.cpp - static-shape activations in one arena -------===//
//
// Every statically shaped buffer a function allocates and frees itself gets
// an offset in one arena, allocated once per call, such that buffers alive
// at the same time never overlap: one allocation instead of one per op, and
// the liveness-based peak by construction.
//
//===----------------------------------------------------------------------===//

#include "BufferLiveness.h"
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
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    if (func.isExternal())
      return;
    Block *block = &func.getBody().front();
    DenseMap<Operation *, int64_t> position;
    int64_t next = 0;
    for (Operation &op : *block)
      position[&op] = next++;

    // Candidates: top-level allocs of a static identity-layout shape, freed
    // only by top-level deallocs, with every use followed.
    struct Candidate {
      memref::AllocOp alloc;
      SmallVector<memref::DeallocOp> deallocs;
    };
    SmallVector<Candidate> candidates;
    std::vector<PackedBuffer> buffers;
    for (auto alloc : block->getOps<memref::AllocOp>()) {
      MemRefType type = alloc.getType();
      if (!type.hasStaticShape() || !type.getLayout().isIdentity() ||
          type.getMemorySpace() || !type.getElementType().isIntOrFloat())
        continue;
      SmallVector<memref::DeallocOp> deallocs;
      bool freedHere = true;
      for (Operation *user : alloc->getUsers())
        if (auto dealloc = dyn_cast<memref::DeallocOp>(user)) {
          freedHere &= dealloc->getBlock() == block;
          deallocs.push_back(dealloc);
        }
      if (deallocs.empty() || !freedHere)
        continue;
      FailureOr<Operation *> last = lastUseInBlock(block, alloc, nullptr);
      if (failed(last))
        continue;
      int64_t bytes = type.getNumElements() *
                      std::max<int64_t>(1, (type.getElementTypeBitWidth() + 7) / 8);
      candidates.push_back({alloc, deallocs});
      buffers.push_back({bytes, position[alloc], position[*last]});
    }
    if (candidates.size() < 2)
      return;
    int64_t arenaBytes = packBuffers(buffers, kAlignment);

    OpBuilder b(func.getContext());
    b.setInsertionPointToStart(block);
    Location loc = func.getLoc();
    auto arenaType = MemRefType::get({arenaBytes}, b.getI8Type());
    Value arena = memref::AllocOp::create(b, loc, arenaType, ValueRange{},
                                          b.getI64IntegerAttr(kAlignment));
    for (auto [candidate, buffer] : llvm::zip(candidates, buffers)) {
      b.setInsertionPoint(candidate.alloc);
      Value offset = arith::ConstantIndexOp::create(b, candidate.alloc.getLoc(), buffer.offset);
      Value view = memref::ViewOp::create(b, candidate.alloc.getLoc(),
                                          candidate.alloc.getType(), arena, offset,
                                          ValueRange{});
      candidate.alloc.getResult().replaceAllUsesExcept(view, {});
      for (memref::DeallocOp dealloc : candidate.deallocs)
        dealloc.erase();
      candidate.alloc.erase();
    }
    func.walk([&](func::ReturnOp ret) {
      b.setInsertionPoint(ret);
      memref::DeallocOp::create(b, ret.getLoc(), arena);
    });
    func->setAttr("hasten.arena_bytes", b.getI64IntegerAttr(arenaBytes));
    func->setAttr("hasten.arena_buffers", b.getI64IntegerAttr(candidates.size()));
  }

  static constexpr int64_t kAlignment = 64;
};
} // namespace
