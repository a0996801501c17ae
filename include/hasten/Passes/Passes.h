//===- Passes.h - hasten passes ---------------------------------*- C++ -*-===//
//
// Declarations and registration of every pass in passes/Passes.td.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_PASSES_PASSES_H
#define HASTEN_PASSES_PASSES_H

#include "mlir/Pass/Pass.h"

namespace mlir {
class DialectRegistry;
} // namespace mlir

namespace hasten {

/// Interfaces of upstream ops that hasten's kernel generators need (see
/// passes/GpuOpInterfaces.cpp); every tool that runs the passes registers
/// them.
void registerGpuKernelInterfaces(mlir::DialectRegistry &registry);
/// hasten.gpu_gemm's lowering to the runtime call, which gpu-to-llvm picks
/// up through the dialect's ConvertToLLVMPatternInterface.
void registerGpuGemmToLLVM(mlir::DialectRegistry &registry);

/// The function that kernels generated before bufferization call where they
/// need a block-wide barrier; --hasten-finalize-gpu-kernels makes each call
/// a gpu.barrier (see that pass).
inline constexpr llvm::StringLiteral kGpuBarrierFunction = "hasten_gpu_barrier";

#define GEN_PASS_DECL
#include "hasten/Passes/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "hasten/Passes/Passes.h.inc"

} // namespace hasten

#endif // HASTEN_PASSES_PASSES_H
