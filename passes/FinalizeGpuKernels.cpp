//===- FinalizeGpuKernels.cpp - placeholders of generated kernels resolved ===//
//
// See the pass description in Passes.td: kernels built on tensors hold
// barrier calls and workgroup allocas while bufferization and buffer
// deallocation run; here they become gpu.barrier and workgroup attributions,
// before the kernels are outlined.
//
//===----------------------------------------------------------------------===//

#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

namespace hasten {
#define GEN_PASS_DEF_FINALIZEGPUKERNELS
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;

namespace {

bool isWorkgroup(MemRefType type) {
  auto space = dyn_cast_or_null<gpu::AddressSpaceAttr>(type.getMemorySpace());
  return space && space.getValue() == gpu::AddressSpace::Workgroup;
}

struct FinalizeGpuKernelsPass
    : public hasten::impl::FinalizeGpuKernelsBase<FinalizeGpuKernelsPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<func::CallOp> calls;
    SmallVector<memref::AllocaOp> shared;
    module.walk([&](Operation *op) {
      if (auto call = dyn_cast<func::CallOp>(op); call &&
          call.getCallee() == hasten::kGpuBarrierFunction)
        calls.push_back(call);
      if (auto alloca = dyn_cast<memref::AllocaOp>(op); alloca && isWorkgroup(alloca.getType()))
        shared.push_back(alloca);
    });
    for (func::CallOp call : calls) {
      if (!call->getParentOfType<gpu::LaunchOp>()) {
        call.emitError("a block-wide barrier outside a gpu.launch: there is no block to "
                       "synchronize");
        return signalPassFailure();
      }
      OpBuilder b(call);
      gpu::BarrierOp::create(b, call.getLoc());
      call.erase();
    }
    for (memref::AllocaOp alloca : shared) {
      auto launch = alloca->getParentOfType<gpu::LaunchOp>();
      if (!launch || !alloca.getType().hasStaticShape()) {
        alloca.emitError(launch ? "shared memory of a dynamic size: a kernel's workgroup "
                                  "memory must have a static shape"
                                : "shared (workgroup) memory outside a gpu.launch");
        return signalPassFailure();
      }
      BlockArgument attribution = launch.addWorkgroupAttribution(alloca.getType(), alloca.getLoc());
      alloca.getResult().replaceAllUsesWith(attribution);
      alloca.erase();
    }
    if (auto fn = module.lookupSymbol<func::FuncOp>(hasten::kGpuBarrierFunction))
      fn.erase();
  }
};

} // namespace
