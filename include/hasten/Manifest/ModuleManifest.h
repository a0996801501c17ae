//===- ModuleManifest.h - what a compiled module says about itself -*- C++ -*-===//
//
// The entries, weights and target of a module as the compiler reads them
// off the IR, and the FlatBuffers manifest (runtime/manifest.fbs) built from
// them. Shared by every target; the runtime reads the same schema.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_MANIFEST_MODULEMANIFEST_H
#define HASTEN_MANIFEST_MODULEMANIFEST_H

#include "hasten/Dialect/Hasten/HastenDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"

#include <cstdint>
#include <string>
#include <vector>

namespace hasten {

/// One entry's signature, read off its function at the tensor level (before
/// lowering erases names and element types).
struct EntrySignature {
  std::string name;
  /// hasten.entry_kind (main when absent) and hasten.model ("" when absent).
  EntryKind kind = EntryKind::Main;
  std::string model;
  struct Tensor {
    std::string name;
    /// The ONNX element type (onnx::TensorProto::DataType).
    int32_t onnxType;
    llvm::SmallVector<int64_t> dims;
    llvm::SmallVector<std::string> dimNames;
    /// hasten.role (None when absent).
    TensorRole role = TensorRole::None;
  };
  std::vector<Tensor> inputs, outputs;
  /// A generate entry's denoiser calls (hasten.sampler_steps); 0 otherwise.
  int64_t samplerSteps = 0;
};

EntrySignature readSignature(mlir::func::FuncOp func);

/// One embedded weight.
struct WeightInfo {
  std::string name;
  mlir::Type elementType;
  llvm::SmallVector<int64_t> dims;
  uint64_t bytes;
  /// How the kernels read it (include/hasten/WeightLayout.h): "plain", or
  /// the packed format the matmul pass stored it in.
  std::string format = "plain";
};

/// Where the module's weight segment is stored.
struct WeightStorageDescription {
  enum Kind { None, Embedded, Sidecar } kind = None;
  /// The sidecar's file name (no directory).
  std::string file;
  uint64_t bytes = 0;
  uint64_t hash = 0;
};

/// The module's weights as it stores them (constant memref.globals, listed
/// by their ONNX initializer name when they came from one), after
/// bufferization; `totalBytes` also counts unnamed constants.
std::vector<WeightInfo> collectWeights(mlir::ModuleOp module, uint64_t &totalBytes);

/// What the target records about itself.
struct TargetDescription {
  std::string device = "cpu";
  std::string triple;
  std::string cpu;
  /// Features the code may use, as the runtime checks them (/proc/cpuinfo
  /// names on x86).
  std::vector<std::string> features;
  /// GPU architectures of a CUDA module ("sm_80").
  std::vector<std::string> gpus;
  /// GPU libraries its host code calls through the runtime ("cublasLt").
  std::vector<std::string> gpuLibraries;
  /// Entries whose calls a CUDA graph can capture (Entry.gpu_graph).
  std::vector<std::string> gpuGraphEntries;
};

/// The KV cache one model's prefill/decode entries share.
struct KVCacheDescription {
  std::string model;
  bool paged = false;
  mlir::Type elementType;
  int64_t layers = 0, kvHeads = 0, headDim = 0, capacity = 0, blockSize = 0;
  /// Tokens of each pool a CUDA module keeps in device memory (-1: all).
  int64_t deviceTokens = -1;
  /// The rows of the position table that bounds the capacity (0: none).
  int64_t positionLimit = 0;
};

/// The manifest bytes.
std::vector<uint8_t> buildManifest(const std::vector<EntrySignature> &entries,
                                   const std::vector<WeightInfo> &weights,
                                   const std::vector<KVCacheDescription> &kvCaches,
                                   llvm::StringRef source, const TargetDescription &target,
                                   uint64_t weightBytes, const WeightStorageDescription &storage,
                                   uint32_t formatVersion);

/// The version string written into every module's manifest.
const char *getCompilerVersion();

} // namespace hasten

#endif // HASTEN_MANIFEST_MODULEMANIFEST_H
