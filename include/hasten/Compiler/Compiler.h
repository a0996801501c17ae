//===- Compiler.h - ONNX to shared library, in process ----------*- C++ -*-===//
//
// The compiler driver behind hasten-compile: import, the shared tensor and
// bufferization pipelines (hasten/Pipelines/Pipelines.h), then a target
// (hasten/Target/Target.h) lowers and serializes the module.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_COMPILER_COMPILER_H
#define HASTEN_COMPILER_COMPILER_H

#include "hasten/Compiler/Sampler.h"
#include "hasten/Import/OnnxImporter.h"
#include "hasten/Support/PhaseTimer.h"
#include "hasten/Target/Target.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Support/LLVM.h"
#include "llvm/Support/raw_ostream.h"

#include <functional>
#include <string>
#include <vector>

namespace hasten {

/// KV-cache planning for decoders (see --hasten-plan-kv-cache).
struct KVCacheOptions {
  /// Tokens one sequence holds; 0 derives it from budgetBytes, or uses 1024.
  int64_t capacity = 0;
  /// Tokens per block; > 0 makes the cache paged.
  int64_t blockSize = 0;
  /// Bytes one sequence's cache may take (0: no limit).
  uint64_t budgetBytes = 0;
  /// A CUDA target's paged cache: tokens of each pool kept in device
  /// memory, the rest in pinned host memory the GPU reads over the bus
  /// (-1: all of it on the device). The runtime can change it.
  int64_t deviceTokens = -1;
  /// An explicit capacity past the model's positions is lowered to them
  /// (a draft's cache, which follows the target's capacity), not an error.
  bool lowerToPositions = false;
};

/// Where a library's weight segment goes: into the .so, or a sidecar file
/// next to it (`model.so` + `model.weights`).
enum class WeightsFile { Embed, Sidecar };

struct CompileOptions {
  OnnxImportOptions import;
  /// Add the `prefill` and `decode` entries generation calls when the model
  /// is a decoder (the --hasten-decoder-entries pass).
  bool decoderEntries = true;
  /// With decoderEntries, also add the `verify` entry (logits for every
  /// token given), which speculative decoding checks proposals with.
  bool verifyEntry = true;
  /// A draft decoder (ONNX or .mlir) compiled into the same module under
  /// the model namespace "draft" (entries draft_prefill, draft_decode,
  /// draft_verify, with their own KV cache of the target's capacity), so
  /// that the runtime can speculate with the pair. Empty: none.
  std::string draftPath;
  /// With a draft, add the fused `spec_step` entry proposing this many
  /// tokens per step (--hasten-unroll-speculation); 0: none.
  int64_t speculationK = 0;
  /// A denoiser's few-step sampler, compiled into the `generate` entry
  /// (--hasten-fuse-sampler-steps); spec empty: none.
  SamplerOptions sampler;
  /// Replace decomposed attention by hasten.attention (the
  /// --hasten-fuse-attention pass), and remark on each one left unfused.
  bool fuseAttention = true;
  bool reportUnfusedAttention = false;
  /// How attention runs: "kernel" (the runtime's) or "generated" (tiled in
  /// IR by --hasten-tile-attention and compiled with the model).
  std::string attention = "kernel";
  /// Print each attention's tiling plan (--hasten-plan-attention) to stdout.
  bool printAttentionPlan = false;
  EmitKind emit = EmitKind::Library;
  /// The code generation target: "cpu" or "cuda".
  std::string target = "cpu";
  /// The CPU target's options, and the host code's for CUDA.
  CpuTargetOptions cpu;
  /// The CUDA target's GPUs and toolkit (its host options come from cpu).
  CudaTargetOptions cuda;
  KVCacheOptions kv;
  /// Precision of constant matmul weights: f32, bf16, int8 or int4
  /// (weight-only).
  std::string weights = "f32";
  /// Rows per int4 scale: 32 or 64.
  int64_t int4Group = 32;
  WeightsFile weightsFile = WeightsFile::Embed;
  /// When set, receives the memory plan as JSON.
  llvm::raw_ostream *memoryReport = nullptr;
  /// Verify the IR after every pass (as hasten-opt does), not only after
  /// each stage: slower, and names the pass that broke the IR.
  bool verifyEachPass = false;
  /// When set, receives each stage's pass pipeline, as hasten-opt takes it.
  llvm::raw_ostream *printPipeline = nullptr;
  /// Applies debugging options (IR printing, MLIR timing) to each MLIR pass
  /// manager the compiler runs; `stage` names its pipeline.
  std::function<mlir::LogicalResult(mlir::PassManager &, llvm::StringRef stage)>
      configurePassManager;
  /// When set, each phase is announced here as it starts and ends.
  llvm::raw_ostream *progress = nullptr;
  /// Test hook: write this manifest format version instead of the current
  /// one, so that the runtime's refusal can be tested.
  uint32_t manifestFormatVersionOverride = 0;
};

/// Compiles the ONNX model at `inputPath` (or an .mlir/.mlirbc module that
/// an earlier run wrote at the import, tensor or buffer stage, or written
/// by hand at the import stage) and writes what `options.emit` asks for to
/// `outputPath`. Errors are reported through the context's
/// diagnostics and name the file, node or phase.
mlir::LogicalResult compileOnnxFile(llvm::StringRef inputPath, llvm::StringRef outputPath,
                                    const CompileOptions &options, mlir::MLIRContext &context,
                                    std::vector<PhaseTime> *times = nullptr);

/// Registers every pass and pipeline the compiler names (upstream and
/// hasten), once; tools call it before parsing options so that
/// --mlir-print-ir-after=PASS and friends know the pass names.
void registerCompilerPasses();

} // namespace hasten

#endif // HASTEN_COMPILER_COMPILER_H
