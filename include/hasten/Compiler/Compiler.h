//===- Compiler.h - ONNX to shared library, in process ----------*- C++ -*-===//
//
// The compiler driver library behind hasten-compile: import, hasten passes,
// lowering through upstream dialects to LLVM IR, the O3 pipeline, an object
// file from an LLVM TargetMachine, and a shared library linked with ld.lld.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_COMPILER_COMPILER_H
#define HASTEN_COMPILER_COMPILER_H

#include "hasten/Import/OnnxImporter.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Support/LLVM.h"
#include "llvm/Support/raw_ostream.h"

#include <functional>
#include <string>
#include <vector>

namespace hasten {

enum class EmitKind { MLIR, LLVM, Object, Library };

struct CompileOptions {
  OnnxImportOptions import;
  EmitKind emit = EmitKind::Library;
  /// Target CPU and features; empty means the host's.
  std::string cpu;
  std::string cpuFeatures;
  /// Precision of constant matmul weights: "f32" or "bf16".
  std::string weights = "f32";
  /// Generated loops with fewer total iterations run on one thread.
  int64_t parallelMinWork = 32768;
  /// KV-cache planning for decoders (see --hasten-plan-kv-cache). The
  /// capacity is the tokens one sequence can hold; 0 derives it from
  /// kvBudgetBytes, or uses 1024. kvBlockSize > 0 makes the cache paged.
  int64_t kvCapacity = 0;
  int64_t kvBlockSize = 0;
  uint64_t kvBudgetBytes = 0;
  /// When set, receives the memory plan as JSON.
  llvm::raw_ostream *memoryReport = nullptr;
  /// Where libhasten_runtime.so lives, for modules that call its kernels.
  std::string runtimeLibraryDir;
  /// Test hooks: write this manifest format version instead of the current
  /// one, and require these extra CPU features (cpuinfo names), so that the
  /// runtime's refusals can be tested.
  uint32_t manifestFormatVersionOverride = 0;
  std::vector<std::string> extraRequiredCpuFeatures;
  /// Applies debugging options (IR printing, MLIR timing) to each MLIR pass
  /// manager the compiler runs.
  std::function<mlir::LogicalResult(mlir::PassManager &)> configurePassManager;
};

/// One phase and the seconds it took, for the timing report (the caller of
/// compileOnnxFile decides whether to print it).
struct PhaseTime {
  std::string phase;
  double seconds;
};

/// Compiles the ONNX model at `inputPath` and writes what `options.emit`
/// asks for to `outputPath`. Errors are reported through the context's
/// diagnostics and name the file, node or phase.
mlir::LogicalResult compileOnnxFile(llvm::StringRef inputPath, llvm::StringRef outputPath,
                              const CompileOptions &options, mlir::MLIRContext &context,
                              std::vector<PhaseTime> *times = nullptr);

/// Registers every pass the compiler's pipelines name (upstream and
/// hasten), once; tools call it before parsing options so that
/// --mlir-print-ir-after=PASS and friends know the pass names.
void registerCompilerPasses();

/// The version string written into every module's manifest.
const char *getCompilerVersion();

} // namespace hasten

#endif // HASTEN_COMPILER_COMPILER_H
