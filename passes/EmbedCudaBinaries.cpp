//===- EmbedCudaBinaries.cpp - cubins and PTX in one embedded bundle ------===//
//
// Upstream embeds one object per GPU module and chooses it at compile time.
// A deployed module should run on the card it meets: the cubin built for
// that card when there is one (no JIT at load), else the PTX, which the
// driver compiles for anything from Volta (no longer assembled by CUDA 13's
// ptxas) to cards newer than the compiler. So each binary's PTX is
// assembled here for every requested architecture ptxas knows, and the
// runtime picks from the bundle (include/hasten/CudaBundle.h).
//
//===----------------------------------------------------------------------===//

#include "hasten/CudaBundle.h"
#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FileUtilities.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"

namespace hasten {
#define GEN_PASS_DEF_EMBEDCUDABINARIES
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;

namespace {

/// 80 for "sm_80" of an architecture that has existed (sm_50 on), or none.
std::optional<uint32_t> archNumber(StringRef name) {
  std::optional<uint32_t> number = hasten::cuda::archNumber(name);
  if (!number || *number < 50 || *number > 1000)
    return std::nullopt;
  return number;
}


struct EmbedCudaBinariesPass
    : public hasten::impl::EmbedCudaBinariesBase<EmbedCudaBinariesPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<uint32_t> cubinArchs;
    for (const std::string &name : archs) {
      std::optional<uint32_t> number = archNumber(name);
      if (!number) {
        module.emitError("unknown GPU architecture '") << name << "' (use sm_70, sm_75, sm_80, ...)";
        return signalPassFailure();
      }
      if (*number >= hasten::cuda::kOldestCubinArch)
        cubinArchs.push_back(*number);
    }
    SmallString<128> tool(cudaPath);
    llvm::sys::path::append(tool, "bin", "ptxas");
    if (!cubinArchs.empty() && !llvm::sys::fs::can_execute(tool)) {
      module.emitError("no ptxas at '") << tool << "' to assemble the cubins for "
                                        << llvm::join(archs, ", ")
                                        << " (--cuda-path names the CUDA toolkit)";
      return signalPassFailure();
    }
    for (auto binary : module.getOps<gpu::BinaryOp>())
      if (failed(embed(binary, cubinArchs, tool)))
        return signalPassFailure();
  }

  LogicalResult embed(gpu::BinaryOp binary, ArrayRef<uint32_t> cubinArchs, StringRef tool) {
    ArrayAttr objects = binary.getObjects();
    auto object = objects.size() == 1 ? dyn_cast<gpu::ObjectAttr>(objects[0]) : nullptr;
    auto target = object ? dyn_cast<NVVM::NVVMTargetAttr>(object.getTarget()) : nullptr;
    if (!target || object.getFormat() != gpu::CompilationTarget::Assembly)
      return binary.emitError("expected one NVVM object in PTX form "
                              "(gpu-module-to-binary{format=isa})");
    std::optional<uint32_t> ptxArch = archNumber(target.getChip());
    if (!ptxArch)
      return binary.emitError("PTX for an unknown architecture '") << target.getChip() << "'";
    std::string ptx = object.getObject().getValue().str();
    if (ptx.empty() || ptx.back() != '\0')
      ptx.push_back('\0');

    FailureOr<std::vector<std::unique_ptr<llvm::MemoryBuffer>>> cubins =
        assemble(binary, ptx, cubinArchs, tool);
    if (failed(cubins))
      return failure();
    std::vector<hasten::cuda::Image> images;
    for (auto [arch, cubin] : llvm::zip(cubinArchs, *cubins))
      images.push_back({hasten::cuda::ImageKind::Cubin, arch,
                        reinterpret_cast<const uint8_t *>(cubin->getBufferStart()),
                        cubin->getBufferSize()});
    images.push_back({hasten::cuda::ImageKind::Ptx, *ptxArch,
                      reinterpret_cast<const uint8_t *>(ptx.data()), ptx.size()});
    std::vector<uint8_t> bundle = hasten::cuda::writeBundle(images);
    Builder b(binary.getContext());
    auto embedded = gpu::ObjectAttr::get(
        target, gpu::CompilationTarget::Binary,
        b.getStringAttr(StringRef(reinterpret_cast<const char *>(bundle.data()), bundle.size())));
    binary.setObjectsAttr(b.getArrayAttr({embedded}));
    return success();
  }

  /// The cubins of `ptx` for `archs`: one ptxas process per architecture,
  /// all at once (a decoder's PTX takes ptxas seconds per architecture).
  FailureOr<std::vector<std::unique_ptr<llvm::MemoryBuffer>>>
  assemble(gpu::BinaryOp binary, StringRef ptx, ArrayRef<uint32_t> archs, StringRef tool) {
    SmallString<128> input;
    int fd;
    if (llvm::sys::fs::createTemporaryFile("hasten-kernel", "ptx", fd, input))
      return binary.emitError("cannot create a temporary file for ptxas");
    llvm::FileRemover removeInput(input);
    {
      llvm::raw_fd_ostream out(fd, /*shouldClose=*/true);
      out << ptx.drop_back(ptx.ends_with(StringRef("\0", 1)) ? 1 : 0);
    }
    struct Job {
      std::string archFlag;
      SmallString<128> output, log;
      std::unique_ptr<llvm::FileRemover> removeOutput, removeLog;
      llvm::sys::ProcessInfo process;
    };
    std::vector<Job> jobs(archs.size());
    for (auto [job, arch] : llvm::zip(jobs, archs)) {
      job.archFlag = "-arch=sm_" + std::to_string(arch);
      if (llvm::sys::fs::createTemporaryFile("hasten-kernel", "cubin", job.output) ||
          llvm::sys::fs::createTemporaryFile("hasten-ptxas", "log", job.log))
        return binary.emitError("cannot create temporary files for ptxas");
      job.removeOutput = std::make_unique<llvm::FileRemover>(job.output);
      job.removeLog = std::make_unique<llvm::FileRemover>(job.log);
      SmallVector<StringRef> args = {tool, job.archFlag, "-O3", input, "-o", job.output};
      std::optional<StringRef> redirects[] = {std::nullopt, job.log.str(), job.log.str()};
      std::string error;
      bool failedToStart = false;
      job.process = llvm::sys::ExecuteNoWait(tool, args, std::nullopt, redirects, 0, &error,
                                             &failedToStart);
      if (failedToStart)
        return binary.emitError("cannot run ptxas: ") << error;
    }
    std::vector<std::unique_ptr<llvm::MemoryBuffer>> cubins;
    bool ok = true;
    for (Job &job : jobs) {
      // Every process is waited for, failed or not.
      std::string error;
      llvm::sys::ProcessInfo done = llvm::sys::Wait(job.process, std::nullopt, &error);
      if (!ok)
        continue;
      if (done.ReturnCode != 0) {
        std::string text;
        if (auto buffer = llvm::MemoryBuffer::getFile(job.log))
          text = (*buffer)->getBuffer().trim().str();
        binary.emitError("ptxas ") << job.archFlag << " failed on the kernels of '"
                                   << binary.getName() << "': " << (text.empty() ? error : text);
        ok = false;
        continue;
      }
      auto cubin = llvm::MemoryBuffer::getFile(job.output, /*IsText=*/false,
                                               /*RequiresNullTerminator=*/false);
      if (!cubin || (*cubin)->getBufferSize() == 0) {
        binary.emitError("ptxas ") << job.archFlag << " wrote no cubin for '"
                                   << binary.getName() << "'";
        ok = false;
        continue;
      }
      cubins.push_back(std::move(*cubin));
    }
    if (!ok)
      return failure();
    return cubins;
  }
};

} // namespace
