//===- MapParallelLoopsToGpu.cpp - parallel loops as GPU kernels ----------===//
//
// Upstream's gpu-map-parallel-loops maps the outermost loop to blocks and a
// nested one to threads; the loops that linalg lowers to have no nested
// parallel loop, so every block would run one thread. Here the whole
// iteration space is one flat range of threads instead, which fills the
// device whatever the loop's shape and keeps a warp on contiguous elements.
//
//===----------------------------------------------------------------------===//

#include "hasten/Passes/Passes.h"

#include "DeviceBuffers.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/SetVector.h"

namespace hasten {
#define GEN_PASS_DEF_MAPPARALLELLOOPSTOGPU
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;

namespace {

struct MapParallelLoopsToGpuPass
    : public hasten::impl::MapParallelLoopsToGpuBase<MapParallelLoopsToGpuPass> {
  using Base::Base;

  void runOnOperation() override {
    if (blockSize < 32 || blockSize > 1024 || blockSize % 32 != 0) {
      getOperation().emitError("block-size must be a multiple of 32 from 32 to 1024, got ")
          << blockSize;
      return signalPassFailure();
    }
    SmallVector<scf::ParallelOp> loops;
    getOperation().walk([&](scf::ParallelOp loop) {
      if (!loop->getParentOfType<scf::ParallelOp>() && !loop->getParentOfType<gpu::LaunchOp>() &&
          !loop->getParentOfType<gpu::GPUModuleOp>())
        loops.push_back(loop);
    });
    for (scf::ParallelOp loop : loops)
      if (failed(map(loop)))
        return signalPassFailure();
    // Wrapping serial work makes its buffers a kernel's, which may make
    // more of the host's loops device work.
    while (wrapSerialWork()) {
    }
  }

  /// What touches device memory outside the kernels now is the serial
  /// work of ops without parallel dimensions (a reduction to one value, a
  /// store of a scalar): its outermost enclosing loop (or the op itself)
  /// runs as a kernel of one thread. Ops whose results the host uses (a
  /// length read for a shape) stay, and hasten-gpu-device-memory names
  /// them; the host's own buffers (the deallocation helper's pointer
  /// tables) stay on the host. Returns whether anything moved.
  bool wrapSerialWork() {
    ModuleOp module = getOperation();
    llvm::DenseSet<Value> device = hasten::deviceBuffers(module);
    llvm::SetVector<Operation *> serial;
    module.walk([&](Operation *op) {
      if (!isa<memref::LoadOp, memref::StoreOp>(op) || op->getParentOfType<gpu::LaunchOp>() ||
          op->getParentOfType<gpu::GPUModuleOp>())
        return;
      Value buffer = isa<memref::LoadOp>(op) ? cast<memref::LoadOp>(op).getMemRef()
                                             : cast<memref::StoreOp>(op).getMemRef();
      if (!device.contains(buffer))
        return;
      auto func = op->getParentOfType<func::FuncOp>();
      Operation *outermost = op;
      for (Operation *parent = op->getParentOp(); parent && parent != func;
           parent = parent->getParentOp())
        if (isa<scf::ForOp, scf::WhileOp>(parent))
          outermost = parent;
      if (outermost->use_empty())
        serial.insert(outermost);
    });
    bool moved = false;
    for (Operation *op : serial) {
      // An enclosing loop already wrapped takes this one along.
      if (op->getParentOfType<gpu::LaunchOp>())
        continue;
      OpBuilder b(op);
      Location loc = op->getLoc();
      Value one = arith::ConstantIndexOp::create(b, loc, 1);
      auto launch = gpu::LaunchOp::create(b, loc, one, one, one, one, one, one);
      Block &body = launch.getBody().front();
      b.setInsertionPointToEnd(&body);
      auto terminator = gpu::TerminatorOp::create(b, loc);
      op->moveBefore(terminator);
      moved = true;
    }
    return moved;
  }

  LogicalResult map(scf::ParallelOp loop) {
    if (loop.getNumReductions() != 0)
      return loop.emitError("a parallel loop with reductions has no GPU mapping yet; "
                            "the linalg lowering writes reductions as sequential loops");
    OpBuilder b(loop);
    Location loc = loop.getLoc();
    Value zero = arith::ConstantIndexOp::create(b, loc, 0);
    Value one = arith::ConstantIndexOp::create(b, loc, 1);
    // Trip count of each dimension, and of the whole space.
    SmallVector<Value> trips;
    Value total = one;
    for (auto [lower, upper, step] :
         llvm::zip(loop.getLowerBound(), loop.getUpperBound(), loop.getStep())) {
      Value span = arith::SubIOp::create(b, loc, upper, lower);
      Value count = arith::CeilDivSIOp::create(b, loc, span, step);
      count = arith::MaxSIOp::create(b, loc, count, zero);
      trips.push_back(count);
      total = arith::MulIOp::create(b, loc, total, count);
    }
    Value threads = arith::ConstantIndexOp::create(b, loc, blockSize);
    // An empty space is a launch with no blocks, which launches nothing
    // (hasten's GPU ABI; CUDA itself refuses one, so the runtime skips it).
    // No host-side guard: an scf.if around the launch would make
    // gpu-async-region wait for the stream on the host there.
    Value blocks = arith::CeilDivSIOp::create(b, loc, total, threads);
    auto launch = gpu::LaunchOp::create(b, loc, blocks, one, one, threads, one, one);
    b.setInsertionPointToEnd(&launch.getBody().front());
    Value id = arith::MulIOp::create(b, loc, launch.getBlockIds().x, threads);
    id = arith::AddIOp::create(b, loc, id, launch.getThreadIds().x);
    Value inRange = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, id, total);
    auto body = scf::IfOp::create(b, loc, inRange, /*withElseRegion=*/false);
    gpu::TerminatorOp::create(b, loc);

    // Delinearize, last dimension fastest.
    b.setInsertionPointToStart(body.thenBlock());
    unsigned rank = loop.getNumLoops();
    SmallVector<Value> ivs(rank);
    Value rest = id;
    for (unsigned d = rank; d-- > 0;) {
      Value index = d == 0 ? rest : arith::RemSIOp::create(b, loc, rest, trips[d]).getResult();
      if (d > 0)
        rest = arith::DivSIOp::create(b, loc, rest, trips[d]);
      Value scaled = arith::MulIOp::create(b, loc, index, loop.getStep()[d]);
      ivs[d] = arith::AddIOp::create(b, loc, loop.getLowerBound()[d], scaled);
    }
    IRMapping mapping;
    mapping.map(loop.getInductionVars(), ivs);
    for (Operation &op : loop.getBody()->without_terminator())
      b.clone(op, mapping);
    loop.erase();
    return success();
  }
};

} // namespace
