//===- GpuOpInterfaces.cpp - interfaces the kernel generators rely on -----===//
//
// Kernels built on tensors (--hasten-gpu-attention) go through buffer
// deallocation, which refuses any op that declares no memory effects.
// nvvm.mma.sync declares none, though it reads and writes only registers:
// Volta's m8n8k4 products, which nvgpu.mma.sync cannot express, are built
// with it, so it gets an empty effect list here. The cp.async group ops
// (nvgpu.device_async_create_group, nvgpu.device_async_wait) declare none
// either; they order memory, so they get a read and a write of memory in
// general, which also keeps them from being erased or merged.
//
//===----------------------------------------------------------------------===//

#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

using namespace mlir;

namespace {

struct RegistersOnly
    : public MemoryEffectOpInterface::ExternalModel<RegistersOnly, NVVM::MmaOp> {
  void getEffects(Operation *,
                  SmallVectorImpl<SideEffects::EffectInstance<MemoryEffects::Effect>> &) const {}
};

template <typename OpTy>
struct OrdersMemory : public MemoryEffectOpInterface::ExternalModel<OrdersMemory<OpTy>, OpTy> {
  void getEffects(Operation *,
                  SmallVectorImpl<SideEffects::EffectInstance<MemoryEffects::Effect>> &effects)
      const {
    effects.emplace_back(MemoryEffects::Read::get());
    effects.emplace_back(MemoryEffects::Write::get());
  }
};

} // namespace

void hasten::registerGpuKernelInterfaces(DialectRegistry &registry) {
  registry.addExtension(+[](MLIRContext *context, NVVM::NVVMDialect *) {
    NVVM::MmaOp::attachInterface<RegistersOnly>(*context);
  });
  registry.addExtension(+[](MLIRContext *context, nvgpu::NVGPUDialect *) {
    nvgpu::DeviceAsyncCreateGroupOp::attachInterface<
        OrdersMemory<nvgpu::DeviceAsyncCreateGroupOp>>(*context);
    nvgpu::DeviceAsyncWaitOp::attachInterface<OrdersMemory<nvgpu::DeviceAsyncWaitOp>>(*context);
  });
}
