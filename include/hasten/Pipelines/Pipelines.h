//===- Pipelines.h - hasten-compile's pass pipelines, as code ---*- C++ -*-===//
//
// The MLIR stages of hasten-compile, each a builder over typed options and a
// registered pipeline, so that `hasten-opt --hasten-tensor-pipeline=...`
// reproduces any stage and `hasten-compile --print-pipeline` shows exactly
// what runs:
//
//   hasten-attention-fusion-pipeline  decomposed attention as
//                               hasten.attention (runs before the decoder
//                               entries are cloned)
//   hasten-tensor-pipeline      tensors: KV-cache planning, attention on the
//                               runtime kernel, decomposition, fusion, math
//   hasten-bufferize-pipeline   one-shot bufferization, deallocation after
//                               last use, matmuls on the runtime
//   hasten-cpu-lowering-pipeline  the CPU target: the activation arena,
//                               parallel loops on the runtime's pool, and
//                               the LLVM dialect
//   hasten-cpu-pipeline         all three, in order
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_PIPELINES_PIPELINES_H
#define HASTEN_PIPELINES_PIPELINES_H

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassOptions.h"

namespace hasten {

struct AttentionFusionPipelineOptions
    : public mlir::PassPipelineOptions<AttentionFusionPipelineOptions> {
  Option<bool> reportUnfused{*this, "report-unfused",
                             llvm::cl::desc("Remark on each softmax-weighted matmul left unfused"),
                             llvm::cl::init(false)};
};

struct TensorPipelineOptions : public mlir::PassPipelineOptions<TensorPipelineOptions> {
  Option<int64_t> kvCapacity{*this, "kv-capacity",
                             llvm::cl::desc("Tokens one sequence's KV cache holds"),
                             llvm::cl::init(1024)};
  Option<int64_t> draftKvCapacity{
      *this, "draft-kv-capacity",
      llvm::cl::desc("Tokens a draft model's sequence's KV cache holds (0: kv-capacity)"),
      llvm::cl::init(0)};
  Option<int64_t> kvBlockSize{*this, "kv-block-size",
                              llvm::cl::desc("Tokens per block of a paged KV cache (0: "
                                             "contiguous)"),
                              llvm::cl::init(0)};
  Option<std::string> attention{
      *this, "attention",
      llvm::cl::desc("How hasten.attention runs: 'kernel' (the runtime's tiled kernel) or "
                     "'generated' (--hasten-tile-attention, compiled with the model)"),
      llvm::cl::init("kernel")};
  Option<std::string> gpuAttention{
      *this, "gpu-attention",
      llvm::cl::desc("Lower hasten.attention into GPU kernels planned for this GPU "
                     "(--hasten-gpu-attention: sm_70, sm_80 or sm_90; empty: no GPU)"),
      llvm::cl::init("")};
  Option<std::string> gpuAttentionPrecision{
      *this, "gpu-attention-precision",
      llvm::cl::desc("Operands of GPU prefill attention's products: f32 (SIMT FMA), bf16 or "
                     "f16 (tensor cores, sm_80 and newer)"),
      llvm::cl::init("f32")};
  Option<int64_t> speculationK{
      *this, "speculation-k",
      llvm::cl::desc("Add the fused spec_step entry with this many draft tokens per step "
                     "(--hasten-unroll-speculation; 0: none)"),
      llvm::cl::init(0)};
};

struct BufferizePipelineOptions : public mlir::PassPipelineOptions<BufferizePipelineOptions> {
  Option<std::string> weights{*this, "weights",
                              llvm::cl::desc("Precision of constant matmul weights: f32, "
                                             "bf16, int8 or int4"),
                              llvm::cl::init("f32")};
  Option<std::string> weightLayout{
      *this, "weight-layout",
      llvm::cl::desc("How f32/bf16 weights are stored: plain or strips (the target's choice)"),
      llvm::cl::init("plain")};
  Option<int64_t> int4Group{*this, "int4-group",
                            llvm::cl::desc("Rows of W per int4 scale: 32, 64 or 128"),
                            llvm::cl::init(32)};
  Option<bool> matmulKernels{*this, "matmul-kernels",
                             llvm::cl::desc("Run matmuls on the runtime's CPU kernels "
                                            "(--hasten-matmul-to-runtime-calls); off, they "
                                            "stay linalg ops for the target to lower"),
                             llvm::cl::init(true)};
};

struct CpuLoweringPipelineOptions
    : public mlir::PassPipelineOptions<CpuLoweringPipelineOptions> {
  Option<int64_t> parallelMinWork{*this, "parallel-min-work",
                                  llvm::cl::desc("Loops with fewer total iterations run on "
                                                 "one thread"),
                                  llvm::cl::init(32768)};
  Option<bool> externalizeWeights{
      *this, "externalize-weights",
      llvm::cl::desc("Move constant weights into the segment the runtime maps "
                     "(--hasten-externalize-weights)"),
      llvm::cl::init(true)};
};

struct CudaLoweringPipelineOptions
    : public mlir::PassPipelineOptions<CudaLoweringPipelineOptions> {
  ListOption<std::string> gpus{*this, "gpus",
                               llvm::cl::desc("GPU architectures: sm_70, sm_75, sm_80, sm_90, "
                                              "...; PTX for the oldest, cubins for the others")};
  Option<std::string> cudaPath{*this, "cuda-path",
                               llvm::cl::desc("The CUDA toolkit whose ptxas assembles the "
                                              "cubins (and whose libdevice kernels link)"),
                               llvm::cl::init("/usr/local/cuda")};
  Option<int64_t> blockSize{*this, "block-size",
                            llvm::cl::desc("Threads per block of the generated kernels"),
                            llvm::cl::init(256)};
  Option<bool> externalizeWeights{*this, "externalize-weights",
                                  llvm::cl::desc("Move constants into the weight segment, "
                                                 "which the runtime uploads to the device"),
                                  llvm::cl::init(true)};
  Option<std::string> gemm{*this, "gemm",
                           llvm::cl::desc("Who runs the matmuls: cublaslt (the runtime's "
                                          "cuBLASLt) or generated (hasten's f32 kernels)"),
                           llvm::cl::init("cublaslt")};
  Option<std::string> gemmPrecision{*this, "gemm-precision",
                                    llvm::cl::desc("Operands of f32 GEMMs on cuBLASLt: f32, "
                                                   "tf32, bf16 or f16"),
                                    llvm::cl::init("f32")};
};

struct CpuPipelineOptions : public mlir::PassPipelineOptions<CpuPipelineOptions> {
  Option<int64_t> kvCapacity{*this, "kv-capacity",
                             llvm::cl::desc("Tokens one sequence's KV cache holds"),
                             llvm::cl::init(1024)};
  Option<int64_t> kvBlockSize{*this, "kv-block-size",
                              llvm::cl::desc("Tokens per block of a paged KV cache"),
                              llvm::cl::init(0)};
  Option<std::string> weights{*this, "weights",
                              llvm::cl::desc("Precision of constant matmul weights"),
                              llvm::cl::init("f32")};
  Option<std::string> weightLayout{*this, "weight-layout",
                                   llvm::cl::desc("How f32/bf16 weights are stored: plain or "
                                                  "strips"),
                                   llvm::cl::init("plain")};
  Option<int64_t> int4Group{*this, "int4-group",
                            llvm::cl::desc("Rows of W per int4 scale: 32, 64 or 128"),
                            llvm::cl::init(32)};
  Option<int64_t> parallelMinWork{*this, "parallel-min-work",
                                  llvm::cl::desc("Loops with fewer total iterations run on "
                                                 "one thread"),
                                  llvm::cl::init(32768)};
  Option<std::string> attention{*this, "attention",
                                llvm::cl::desc("How hasten.attention runs: kernel or generated"),
                                llvm::cl::init("kernel")};
};

/// Stage builders: each adds its passes to a pass manager on builtin.module.
/// Decomposed attention becomes hasten.attention; the chains it replaces
/// are erased.
void buildAttentionFusionPipeline(mlir::OpPassManager &pm,
                                  const AttentionFusionPipelineOptions &options);
void buildTensorPipeline(mlir::OpPassManager &pm, const TensorPipelineOptions &options);
void buildBufferizePipeline(mlir::OpPassManager &pm, const BufferizePipelineOptions &options);
void buildCpuLoweringPipeline(mlir::OpPassManager &pm,
                              const CpuLoweringPipelineOptions &options);
void buildCpuPipeline(mlir::OpPassManager &pm, const CpuPipelineOptions &options);
/// The CUDA target's lowering: host loops become kernels in device memory,
/// compiled to PTX and cubins; the host code calls the runtime's GPU ABI.
void buildCudaLoweringPipeline(mlir::OpPassManager &pm,
                               const CudaLoweringPipelineOptions &options);

/// Registers the four pipelines with the pass registry (for hasten-opt and
/// --mlir-print-ir-* in hasten-compile).
void registerHastenPipelines();

} // namespace hasten

#endif // HASTEN_PIPELINES_PIPELINES_H
