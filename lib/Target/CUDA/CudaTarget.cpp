//===- CudaTarget.cpp - NVIDIA GPUs through NVVM ---------------------------===//
//
// A CUDA module is a host library like a CPU one: its entries run on the
// CPU and launch kernels. So this target lowers with its own pipeline
// (hasten-cuda-lowering-pipeline: loops become kernels, PTX and cubins are
// embedded) and hands the host module to the CPU target to translate,
// optimize, link and hash. The host code is plain launches: it is compiled
// for a baseline x86-64 unless --cpu says otherwise, since the GPU machine's
// CPU is rarely the build machine's.
//
//===----------------------------------------------------------------------===//

#include "hasten/Target/Target.h"

#include "hasten/CudaBundle.h"

#include "hasten/Dialect/Hasten/HastenDialect.h"
#include "hasten/Pipelines/Pipelines.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/Matchers.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

using namespace mlir;
using namespace hasten;

namespace {

/// What the compiler knows how to target: Volta to Blackwell.
constexpr unsigned kKnownArchs[] = {70, 72, 75, 80, 86, 87, 89, 90, 100, 103, 120};

/// The public functions of the lowered host module whose calls a CUDA
/// graph can capture: nothing they run reads device memory on the host (a
/// copy back, managed memory), the only thing that needs the host to wait
/// inside a call. Calls through a pointer count as reading.
std::vector<std::string> graphCapturableFunctions(ModuleOp module) {
  llvm::DenseMap<StringRef, bool> reads;
  llvm::DenseMap<StringRef, llvm::SmallVector<StringRef>> callees;
  module.walk([&](LLVM::LLVMFuncOp func) {
    bool &own = reads[func.getSymName()];
    func.walk([&](LLVM::CallOp call) {
      std::optional<StringRef> callee = call.getCallee();
      if (!callee) {
        own = true;
        return;
      }
      if (*callee == "mgpuMemcpy")
        own = true;
      // mgpuMemAlloc(bytes, stream, hostShared)
      if (*callee == "mgpuMemAlloc" &&
          (call.getNumOperands() != 3 ||
           !matchPattern(call.getOperand(2), m_Zero())))
        own = true;
      callees[func.getSymName()].push_back(*callee);
    });
  });
  // Callers of readers read.
  for (bool changed = true; changed;) {
    changed = false;
    for (auto &[caller, called] : callees)
      if (!reads[caller] && llvm::any_of(called, [&](StringRef c) { return reads.lookup(c); })) {
        reads[caller] = true;
        changed = true;
      }
  }
  std::vector<std::string> capturable;
  for (auto func : module.getOps<LLVM::LLVMFuncOp>())
    if (!func.isExternal() && !func.isPrivate() && !reads.lookup(func.getSymName()))
      capturable.push_back(func.getSymName().str());
  return capturable;
}

class CudaTarget : public Target {
public:
  explicit CudaTarget(const CudaTargetOptions &options) : options(options) {
    CpuTargetOptions host = options.host;
    if (host.cpu.empty() || host.cpu == "native")
      host.cpu = "x86-64";
    this->host = createCpuTarget(host);
  }

  StringRef getName() const override { return "cuda"; }

  LogicalResult initialize(Location loc) override {
    if (options.gpus.empty())
      return emitError(loc) << "--target=cuda needs --gpu (sm_70, sm_75, sm_80, sm_86, sm_89, "
                               "sm_90, ...)";
    const std::string &precision = options.precision;
    if (precision != "f32" && precision != "tf32" && precision != "bf16" && precision != "f16")
      return emitError(loc) << "unknown --gpu-precision '" << precision
                            << "' (expected f32, tf32, bf16 or f16)";
    if (options.gemm != "cublaslt" && options.gemm != "generated")
      return emitError(loc) << "unknown --gpu-gemm '" << options.gemm
                            << "' (expected cublaslt or generated)";
    if (options.gemm == "generated" && (precision == "tf32" || precision == "bf16"))
      return emitError(loc) << "--gpu-precision=" << precision
                            << " runs the GEMMs on cuBLASLt's tensor cores; the generated "
                               "GEMM kernels compute in f32 (drop --gpu-gemm=generated)";
    bool needsPtxas = false;
    for (const std::string &gpu : options.gpus) {
      std::optional<uint32_t> number = cuda::archNumber(gpu);
      if (!number || !llvm::is_contained(kKnownArchs, *number))
        return emitError(loc) << "unknown GPU architecture '" << gpu
                              << "' for --gpu (known: sm_70, sm_72, sm_75, sm_80, sm_86, sm_87, "
                                 "sm_89, sm_90, sm_100, sm_103, sm_120)";
      needsPtxas |= *number >= cuda::kOldestCubinArch;
      if (precision == "tf32" && *number < 80)
        return emitError(loc) << "--gpu-precision=tf32 needs TF32 tensor cores (sm_80 and "
                              << "newer), which " << gpu << " lacks";
      if (precision == "bf16" && *number < 80)
        return emitError(loc) << "--gpu-precision=bf16 runs attention on sm_80 tensor cores "
                              << "(mma.sync m16n8k16 with bf16), which " << gpu
                              << " lacks; drop it from --gpu, or use f16 (Volta's m8n8k4 "
                                 "for all) or f32";
    }
    SmallString<128> ptxas(options.cudaPath);
    llvm::sys::path::append(ptxas, "bin", "ptxas");
    if (needsPtxas && !llvm::sys::fs::can_execute(ptxas))
      return emitError(loc) << "no ptxas at '" << ptxas << "' to assemble cubins for "
                            << llvm::join(options.gpus, ",")
                            << " (--cuda-path names the CUDA toolkit)";
    return host->initialize(loc);
  }

  LogicalResult checkTensorLevel(ModuleOp module) const override {
    WalkResult unsupported = module.walk([&](AttentionOp op) {
      op.emitError("this attention (")
          << op.getQuery().getType()
          << ") was taken by neither the GPU attention kernel nor the tiled lowering";
      return WalkResult::interrupt();
    });
    return failure(unsupported.wasInterrupted());
  }

  bool hasMatmulKernels() const override { return false; }
  bool hasAttentionKernel() const override { return false; }
  // The kernel runs on every --gpu, so it follows the oldest one's plan.
  std::string gpuAttentionTarget() const override {
    uint32_t oldest = 0;
    for (const std::string &gpu : options.gpus)
      if (std::optional<uint32_t> arch = cuda::archNumber(gpu))
        if (oldest == 0 || *arch < oldest)
          oldest = *arch;
    return oldest >= 90 ? "sm_90" : oldest >= 80 ? "sm_80" : "sm_70";
  }
  // TF32 is for the GEMMs: attention's tensor-core kernels take bf16 or f16.
  std::string gpuAttentionPrecision() const override {
    return options.precision == "tf32" ? "f32" : options.precision;
  }

  void buildLoweringPipeline(OpPassManager &pm) const override {
    CudaLoweringPipelineOptions lowering;
    lowering.gpus = options.gpus;
    lowering.cudaPath = options.cudaPath;
    lowering.externalizeWeights = options.host.externalizeWeights;
    lowering.gemm = options.gemm;
    lowering.gemmPrecision = options.precision;
    buildCudaLoweringPipeline(pm, lowering);
  }

  TargetDescription describe(ModuleOp module) const override {
    TargetDescription description = host->describe(module);
    description.device = "cuda";
    description.gpus = options.gpus;
    // GEMMs call cuBLASLt through the runtime (passes/GpuGemmToLLVM.cpp).
    if (module.lookupSymbol("hasten_cuda_gemm"))
      description.gpuLibraries.push_back("cublasLt");
    description.gpuGraphEntries = graphCapturableFunctions(module);
    return description;
  }

  LogicalResult serialize(ModuleOp module, const SerializeRequest &request) override {
    return host->serialize(module, request);
  }

private:
  CudaTargetOptions options;
  std::unique_ptr<Target> host;
};

} // namespace

std::unique_ptr<Target> hasten::createCudaTarget(const CudaTargetOptions &options) {
  return std::make_unique<CudaTarget>(options);
}
