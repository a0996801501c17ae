//===- Target.h - a code generation target ----------------------*- C++ -*-===//
//
// What a target adds after the shared tensor-level and bufferization stages,
// in the manner of IREE's target backends: it checks its options before any
// work, refuses tensor-level IR it cannot lower, lowers the bufferized
// module with its own pipeline, says what the manifest records about it,
// and serializes the result (CPU: LLVM IR, an object, a shared library).
// The compiler driver knows targets only through this interface.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_TARGET_TARGET_H
#define HASTEN_TARGET_TARGET_H

#include "hasten/Manifest/ModuleManifest.h"
#include "hasten/Target/WeightSegment.h"
#include "hasten/Support/PhaseTimer.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/PassManager.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace hasten {

/// Where compilation stops (hasten-compile --compile-to): the imported
/// module, the optimized tensor-level module (MLIR: --emit=mlir), the
/// bufferized module, LLVM IR, an object file or the shared library.
enum class EmitKind { Import, MLIR, Buffer, LLVM, Object, Library };

/// What serialize() writes.
struct SerializeRequest {
  const std::vector<EntrySignature> *entries;
  /// The manifest to embed.
  const std::vector<uint8_t> *manifest;
  /// The model, for debug locations and messages.
  llvm::StringRef sourcePath;
  llvm::StringRef outputPath;
  EmitKind emit;
  PhaseTimer *timer;
  /// The weights to embed in the library (null: none, or in a sidecar).
  const WeightSegment *embeddedWeights = nullptr;
};

class Target {
public:
  virtual ~Target();
  virtual llvm::StringRef getName() const = 0;
  /// Checks the target options (the CPU name, ...) before any work.
  virtual mlir::LogicalResult initialize(mlir::Location loc) = 0;
  /// Refuses, with a diagnostic on the op, what the target cannot lower
  /// after the tensor stage.
  virtual mlir::LogicalResult checkTensorLevel(mlir::ModuleOp module) const;
  /// How f32/bf16 weights are stored for this target's kernels ("plain" or
  /// "strips", --hasten-matmul-to-runtime-calls' weight-layout).
  virtual llvm::StringRef weightLayout() const { return "plain"; }
  /// Whether matmuls run on the runtime's CPU kernels
  /// (--hasten-matmul-to-runtime-calls); without, they stay linalg ops that
  /// the target's lowering compiles.
  virtual bool hasMatmulKernels() const { return true; }
  /// Whether hasten.attention may run on the runtime's kernel; without, it
  /// is always tiled in IR (--hasten-tile-attention).
  virtual bool hasAttentionKernel() const { return true; }
  /// The GPU whose attention plan --hasten-gpu-attention follows (sm_70,
  /// sm_80, sm_90), or "" when attention is not lowered to a GPU kernel.
  virtual std::string gpuAttentionTarget() const { return ""; }
  /// The operand precision of the GPU attention kernel's products (f32,
  /// bf16 or f16: --hasten-gpu-attention's precision).
  virtual std::string gpuAttentionPrecision() const { return "f32"; }
  /// The passes from the bufferized module to what serialize() takes.
  virtual void buildLoweringPipeline(mlir::OpPassManager &pm) const = 0;
  /// What the manifest records about the target and the code it lowered
  /// `module` into (valid after initialize).
  virtual TargetDescription describe(mlir::ModuleOp module) const = 0;
  /// Writes the lowered module as the request asks.
  virtual mlir::LogicalResult serialize(mlir::ModuleOp module,
                                        const SerializeRequest &request) = 0;
};

/// The host CPU target's options.
struct CpuTargetOptions {
  /// native (or empty), x86-64, x86-64-v2/v3/v4 or an LLVM CPU name.
  std::string cpu;
  /// Extra LLVM features, "+avx512bf16,-avx512f".
  std::string cpuFeatures;
  /// Generated loops with fewer total iterations run on one thread.
  int64_t parallelMinWork = 32768;
  /// Where libhasten_runtime.so lives, for modules that call its kernels.
  std::string runtimeLibraryDir;
  /// The module's RUNPATH, where the dynamic loader looks for the runtime.
  /// Unset: runtimeLibraryDir and $ORIGIN (a module next to its runtime).
  /// Set, possibly empty: exactly these colon-separated directories.
  std::optional<std::string> runtimeRPath;
  /// Move the weights out of the code into the segment the runtime maps
  /// (off for LLVM IR and object files, which must hold them).
  bool externalizeWeights = true;
  /// Test hook: extra cpuinfo features the manifest requires.
  std::vector<std::string> extraRequiredFeatures;
};

std::unique_ptr<Target> createCpuTarget(const CpuTargetOptions &options);

/// The CUDA target's options.
struct CudaTargetOptions {
  /// GPU architectures, "sm_80": PTX for the oldest, cubins for each that
  /// the toolkit's ptxas assembles (sm_75 and newer in CUDA 13).
  std::vector<std::string> gpus;
  /// The CUDA toolkit (bin/ptxas, nvvm/libdevice).
  std::string cudaPath = "/usr/local/cuda";
  /// Operands of the GPU's products: f32 (exact), tf32 (GEMMs on TF32
  /// tensor cores, attention f32), bf16 or f16 (GEMMs and prefill
  /// attention on tensor cores, weights stored narrowed).
  std::string precision = "f32";
  /// Who runs the GEMMs: "cublaslt" (the runtime's cuBLASLt) or
  /// "generated" (hasten's own f32 kernels, no library needed).
  std::string gemm = "cublaslt";
  /// The host code's target (an empty CPU means baseline x86-64).
  CpuTargetOptions host;
};

std::unique_ptr<Target> createCudaTarget(const CudaTargetOptions &options);

} // namespace hasten

#endif // HASTEN_TARGET_TARGET_H
