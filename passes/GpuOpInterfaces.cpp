//===- GpuOpInterfaces.cpp - interfaces the kernel generators rely on -----===//
//
// Kernels built on tensors (--hasten-gpu-attention) go through buffer
// deallocation, which refuses any op that declares no memory effects.
// nvvm.mma.sync declares none, though it reads and writes only registers:
// Volta's m8n8k4 products, which nvgpu.mma.sync cannot express, are built
// with it, so it gets an empty effect list here.
//
//===----------------------------------------------------------------------===//

#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

using namespace mlir;

namespace {

struct RegistersOnly
    : public MemoryEffectOpInterface::ExternalModel<RegistersOnly, NVVM::MmaOp> {
  void getEffects(Operation *,
                  SmallVectorImpl<SideEffects::EffectInstance<MemoryEffects::Effect>> &) const {}
};

} // namespace

void hasten::registerGpuKernelInterfaces(DialectRegistry &registry) {
  registry.addExtension(+[](MLIRContext *context, NVVM::NVVMDialect *) {
    NVVM::MmaOp::attachInterface<RegistersOnly>(*context);
  });
}
