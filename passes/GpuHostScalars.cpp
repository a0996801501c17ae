//===- GpuHostScalars.cpp - a CUDA entry's scalar inputs, read on the host -===//
//
// A decoder's cache length sizes its buffers and bounds its loops: the host
// needs it before any launch, so the CUDA entry ABI keeps rank-0 inputs in
// host memory, and kernels get the value.
//
//===----------------------------------------------------------------------===//

#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

namespace hasten {
#define GEN_PASS_DEF_GPUHOSTSCALARS
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;

namespace {

struct GpuHostScalarsPass : public hasten::impl::GpuHostScalarsBase<GpuHostScalarsPass> {
  void runOnOperation() override {
    for (auto func : getOperation().getOps<func::FuncOp>()) {
      if (func.isExternal() || !func.isPublic())
        continue;
      for (BlockArgument argument : func.getArguments()) {
        auto type = dyn_cast<MemRefType>(argument.getType());
        if (!type || type.getRank() != 0 || argument.use_empty() ||
            !llvm::all_of(argument.getUsers(),
                          [](Operation *user) { return isa<memref::LoadOp>(user); }))
          continue;
        OpBuilder b = OpBuilder::atBlockBegin(&func.getBody().front());
        Value value = memref::LoadOp::create(b, argument.getLoc(), argument, ValueRange());
        for (Operation *user : llvm::make_early_inc_range(argument.getUsers()))
          if (user != value.getDefiningOp()) {
            user->getResult(0).replaceAllUsesWith(value);
            user->erase();
          }
      }
    }
  }
};

} // namespace
