//===- Pipelines.cpp - hasten-compile's pass pipelines, as code -----------===//

#include "hasten/Pipelines/Pipelines.h"

#include "hasten/CudaBundle.h"
#include "hasten/Passes/Passes.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Bufferization/Pipelines/Passes.h"
#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/LLVMIR/Transforms/Passes.h"
#include "mlir/Dialect/Linalg/Passes.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Dialect/SCF/Transforms/Passes.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

void hasten::buildAttentionFusionPipeline(OpPassManager &pm,
                                          const AttentionFusionPipelineOptions &options) {
  // Imported shape arithmetic, folded first, gives the match the same SSA
  // value for dims that are equal.
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  FuseAttentionOptions fuse;
  fuse.reportUnfused = options.reportUnfused;
  pm.addPass(createFuseAttention(fuse));
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
}

void hasten::buildTensorPipeline(OpPassManager &pm, const TensorPipelineOptions &options) {
  // A sampler's steps first: its step function then goes through every
  // later pass like the denoiser it came from.
  pm.addPass(createFuseSamplerSteps());
  pm.addPass(createPlanKVCache(
      PlanKVCacheOptions{options.kvCapacity, options.kvBlockSize, options.draftKvCapacity}));
  // On a GPU the logits stay in device memory: the fused step is greedy,
  // its argmaxes kernels.
  if (options.speculationK > 0)
    pm.addPass(createUnrollSpeculation(
        UnrollSpeculationOptions{options.speculationK, !options.gpuAttention.empty()}));
  // Paged views read through the block table by the runtime's attention
  // kernel, where there is one, or by the GPU decode kernel; otherwise
  // gathered.
  pm.addPass(createLowerKVCache(LowerKVCacheOptions{options.attention != "generated",
                                                    !options.gpuAttention.empty()}));
  // Attention the KV cache did not take: a GPU kernel on GPU targets, on
  // the runtime kernel, or tiled here into IR that compiles with the model;
  // what the kernels cannot run (boolean masks, say) is tiled either way.
  if (!options.gpuAttention.empty())
    pm.addPass(createGpuAttention(
        GpuAttentionOptions{options.gpuAttention, options.gpuAttentionPrecision}));
  if (options.attention != "generated")
    pm.addPass(createAttentionToRuntimeCalls());
  pm.addPass(createPlanAttention());
  pm.addPass(createTileAttention());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  OpPassManager &funcs = pm.nest<func::FuncOp>();
  // Before elementwise fusion merges the dequantizations it reads.
  funcs.addPass(createFoldQuantizedContractions());
  funcs.addPass(createConvolutionToMatmul());
  funcs.addPass(createDecomposeAggregatedOps());
  funcs.addPass(createFuseElementwise());
  funcs.addPass(createApproximateMath());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
}

void hasten::buildBufferizePipeline(OpPassManager &pm, const BufferizePipelineOptions &options) {
  bufferization::OneShotBufferizePassOptions bufferize;
  bufferize.bufferizeFunctionBoundaries = true;
  bufferize.functionBoundaryTypeConversion = bufferization::LayoutMapOption::IdentityLayoutMap;
  bufferize.allowReturnAllocsFromLoops = true;
  pm.nest<func::FuncOp>().addPass(createAssignDestinations());
  pm.addPass(bufferization::createOneShotBufferizePass(bufferize));
  bufferization::buildBufferDeallocationPipeline(pm);
  pm.addPass(createConvertBufferizationToMemRefPass());
  if (options.matmulKernels) {
    MatmulToRuntimeCallsOptions matmuls;
    matmuls.weights = options.weights;
    matmuls.weightLayout = options.weightLayout;
    matmuls.int4Group = options.int4Group;
    pm.addPass(createMatmulToRuntimeCalls(matmuls));
  }
  OpPassManager &funcs = pm.nest<func::FuncOp>();
  funcs.addPass(createCanonicalizerPass());
  funcs.addPass(createDeallocAfterLastUse());
}

namespace {

/// Host code from memrefs, affine maps and structured control flow to
/// plain branches, as both targets' lowerings begin: function by function,
/// on the context's threads (a GPU module is a binary by then).
void addStructuredToControlFlow(OpPassManager &pm) {
  OpPassManager &funcs = pm.nest<func::FuncOp>();
  funcs.addPass(hasten::createExpandShapeToReinterpretCast());
  funcs.addPass(memref::createExpandStridedMetadataPass());
  funcs.addPass(createLowerAffinePass());
  funcs.addPass(createSCFToControlFlowPass());
}

/// The rest of the host code into the LLVM dialect, as both targets' end.
/// Allocations go through the runtime (runtime/Allocation.cpp), which turns
/// a failed one into an error of the run.
void addToLLVMDialect(OpPassManager &pm) {
  FinalizeMemRefToLLVMConversionPassOptions memrefToLLVM;
  memrefToLLVM.useGenericFunctions = true;
  pm.addPass(createFinalizeMemRefToLLVMConversionPass(memrefToLLVM));
  pm.addPass(createArithToLLVMConversionPass());
  pm.addPass(createConvertIndexToLLVMPass());
  pm.addPass(createConvertControlFlowToLLVMPass());
  pm.addPass(createConvertFuncToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
}

} // namespace

void hasten::buildCpuLoweringPipeline(OpPassManager &pm,
                                      const CpuLoweringPipelineOptions &options) {
  // Every entry gets a C interface (one memref descriptor pointer per
  // argument) that the module's exported wrappers call; static-shape
  // activations go in one arena per call (after the memory report has read
  // the individual allocations).
  OpPassManager &funcs = pm.nest<func::FuncOp>();
  funcs.addPass(LLVM::createLLVMRequestCWrappersPass());
  funcs.addPass(createPackStaticBuffers());
  funcs.addPass(createMemrefCopyToLinalg());
  // Tiled attention's parallel blocks (scf.forall) join the parallel loops
  // that run on the runtime's thread pool.
  funcs.addPass(createForallToParallelLoopPass());
  funcs.addPass(createConvertLinalgToParallelLoopsPass());
  // Reductions' accumulators in registers, not stored every iteration.
  funcs.addPass(createPromoteLoopAccumulators());
  pm.addPass(createOutlineParallelLoops(OutlineParallelLoopsOptions{options.parallelMinWork}));
  addStructuredToControlFlow(pm);
  // Tiled attention's register-blocked tile products.
  pm.addPass(createConvertVectorToLLVMPass());
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createConvertMathToLibmPass());
  addToLLVMDialect(pm);
  if (options.externalizeWeights)
    pm.addPass(createExternalizeWeights());
}

/// What cuBLASLt's fastest kernels and 128-bit vector accesses want of
/// the buffers a GPU arena holds.
constexpr int64_t kGpuArenaAlignment = 256;

void hasten::buildCudaLoweringPipeline(OpPassManager &pm,
                                       const CudaLoweringPipelineOptions &options) {
  // Generated kernels' barriers and shared memory, placeholders until
  // buffer deallocation ran.
  pm.addPass(createFinalizeGpuKernels());
  // Matmuls on cuBLASLt, or as tiled kernels; before the generic lowering
  // takes them.
  if (options.gemm == "cublaslt")
    pm.addPass(createGpuGemm(GpuGemmOptions{options.gemmPrecision}));
  pm.addPass(createGpuMatmul());
  // Host side: every loop nest a kernel, every buffer on the device; the
  // static-shape ones in one device arena per call.
  OpPassManager &funcs = pm.nest<func::FuncOp>();
  funcs.addPass(LLVM::createLLVMRequestCWrappersPass());
  funcs.addPass(createPackStaticBuffers(PackStaticBuffersOptions{kGpuArenaAlignment}));
  funcs.addPass(createMemrefCopyToLinalg());
  funcs.addPass(createForallToParallelLoopPass());
  funcs.addPass(createConvertLinalgToParallelLoopsPass());
  pm.addPass(createGpuHostScalars());
  pm.addPass(createMapParallelLoopsToGpu(MapParallelLoopsToGpuOptions{options.blockSize}));
  // Static trip counts fold, and with them the guards of empty launches.
  pm.nest<func::FuncOp>().addPass(createCanonicalizerPass());
  pm.addPass(createGpuDeviceMemory());
  pm.addPass(createGpuKernelOutliningPass());
  pm.addPass(createGatherGpuKernels());
  pm.addPass(createAlignSharedMemory());
  // One stream per call: launches, allocations and frees queue on it in
  // order, and the host waits once, before returning.
  pm.nest<func::FuncOp>().addPass(createGpuAsyncRegionPass());
  // Device side: PTX for the oldest architecture asked for (the driver
  // compiles it for anything newer), cubins next to it.
  std::vector<std::string> gpus(options.gpus.begin(), options.gpus.end());
  auto number = [](const std::string &gpu) {
    return hasten::cuda::archNumber(gpu).value_or(0);
  };
  std::string oldest =
      gpus.empty() ? std::string("sm_80")
                   : *llvm::min_element(gpus, [&](const std::string &a, const std::string &b) {
                       return number(a) < number(b);
                     });
  GpuNVVMAttachTargetOptions attach;
  attach.chip = oldest;
  attach.optLevel = 3;
  // Volta's and Turing's default PTX ISA (6.0, 6.3) predates mma.m8n8k4
  // (6.4), which the tensor-core attention uses there.
  if (number(oldest) < 80)
    attach.features = "+ptx64";
  pm.addPass(createGpuNVVMAttachTarget(attach));
  OpPassManager &device = pm.nest<gpu::GPUModuleOp>();
  device.addPass(memref::createExpandStridedMetadataPass());
  device.addPass(createLowerAffinePass());
  device.addPass(createSCFToControlFlowPass());
  // Tensor-core attention's fragments and products (bf16 ones first: the
  // upstream conversion lacks them).
  device.addPass(createLowerBf16Mma());
  device.addPass(createConvertNVGPUToNVVMPass());
  // Vector loads and stores of shared memory convert here, where the type
  // converter knows the GPU address spaces; the rest of the vector ops after.
  device.addPass(createConvertGpuOpsToNVVMOps());
  device.addPass(createConvertVectorToLLVMPass());
  device.addPass(createCanonicalizerPass());
  device.addPass(createCSEPass());
  device.addPass(createReconcileUnrealizedCastsPass());
  GpuModuleToBinaryPassOptions binary;
  binary.compilationTarget = "isa";
  binary.toolkitPath = options.cudaPath;
  pm.addPass(createGpuModuleToBinaryPass(binary));
  EmbedCudaBinariesOptions embed;
  embed.archs.assign(gpus.begin(), gpus.end());
  embed.cudaPath = options.cudaPath;
  pm.addPass(createEmbedCudaBinaries(embed));
  // Host side to LLVM: launches and device allocations become calls of the
  // GPU ABI the runtime implements (runtime/CudaDriver.cpp).
  addStructuredToControlFlow(pm);
  pm.addPass(createGpuToLLVMConversionPass());
  addToLLVMDialect(pm);
  // Every constant a kernel reads must live on the device: all of them go
  // to the segment the runtime uploads.
  if (options.externalizeWeights)
    pm.addPass(createExternalizeWeights(ExternalizeWeightsOptions{1}));
}

void hasten::buildCpuPipeline(OpPassManager &pm, const CpuPipelineOptions &options) {
  TensorPipelineOptions tensor;
  tensor.kvCapacity = options.kvCapacity;
  tensor.kvBlockSize = options.kvBlockSize;
  tensor.attention = options.attention;
  buildTensorPipeline(pm, tensor);
  BufferizePipelineOptions bufferize;
  bufferize.weights = options.weights;
  bufferize.weightLayout = options.weightLayout;
  bufferize.int4Group = options.int4Group;
  buildBufferizePipeline(pm, bufferize);
  CpuLoweringPipelineOptions lowering;
  lowering.parallelMinWork = options.parallelMinWork;
  buildCpuLoweringPipeline(pm, lowering);
}

void hasten::registerHastenPipelines() {
  static bool registered = [] {
    PassPipelineRegistration<AttentionFusionPipelineOptions>(
        "hasten-attention-fusion-pipeline",
        "hasten-compile's first stage: decomposed attention fused into hasten.attention, "
        "and the chains it replaced erased",
        buildAttentionFusionPipeline);
    PassPipelineRegistration<TensorPipelineOptions>(
        "hasten-tensor-pipeline",
        "hasten-compile's tensor stage: KV-cache planning, attention on the runtime "
        "kernel, decomposition, elementwise fusion, math approximations",
        buildTensorPipeline);
    PassPipelineRegistration<BufferizePipelineOptions>(
        "hasten-bufferize-pipeline",
        "hasten-compile's bufferization stage: one-shot bufferization, buffers freed after "
        "their last use, matmuls on the runtime's kernels with their weights packed",
        buildBufferizePipeline);
    PassPipelineRegistration<CpuLoweringPipelineOptions>(
        "hasten-cpu-lowering-pipeline",
        "the CPU target's lowering: the activation arena, parallel loops on the runtime's "
        "thread pool, the LLVM dialect, and the weights moved to the mapped segment",
        buildCpuLoweringPipeline);
    PassPipelineRegistration<CudaLoweringPipelineOptions>(
        "hasten-cuda-lowering-pipeline",
        "the CUDA target's lowering: loops as GPU kernels over device buffers, PTX and "
        "cubins embedded, host code calling the runtime's GPU ABI",
        buildCudaLoweringPipeline);
    PassPipelineRegistration<CpuPipelineOptions>(
        "hasten-cpu-pipeline",
        "every MLIR stage of hasten-compile for the CPU, from imported tensors to the LLVM "
        "dialect",
        buildCpuPipeline);
    return true;
  }();
  (void)registered;
}
