//===- CpuTarget.cpp - the host CPU target ---------------------------------===//
//
// Lowers the bufferized module to the LLVM dialect (the CPU lowering
// pipeline), translates it to LLVM IR with one exported wrapper per entry
// and the manifest, runs the O3 pipeline, emits an object file from an LLVM
// TargetMachine for the chosen CPU, and links a shared library with ld.lld
// and the compiler-rt builtins.
//
//===----------------------------------------------------------------------===//

#include "hasten/Target/Target.h"

#include "Manifest.h"
#include "hasten/Pipelines/Pipelines.h"
#include "hasten/Dialect/Hasten/HastenDialect.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Target/LLVMIR/Export.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Bitcode/BitcodeReader.h"
#include "llvm/Bitcode/BitcodeWriter.h"
#include "llvm/IR/IRBuilder.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/IR/Verifier.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Object/ELFObjectFile.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FileUtilities.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/Target/TargetOptions.h"
#include "llvm/Support/Threading.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/Transforms/Utils/SplitModule.h"

#include <mutex>
#include <unistd.h>

#include <thread>

using namespace mlir;
using namespace hasten;

namespace {

/// Adds `void hasten_entry_<name>(void **inputs, void *results)` calling the
/// C interface of `name`.
LogicalResult addEntryWrapper(llvm::Module &m, const EntrySignature &sig) {
  llvm::Function *cInterface = m.getFunction("_mlir_ciface_" + sig.name);
  if (!cInterface)
    return failure();
  llvm::LLVMContext &ctx = m.getContext();
  auto *ptrType = llvm::PointerType::getUnqual(ctx);
  auto *wrapperType =
      llvm::FunctionType::get(llvm::Type::getVoidTy(ctx), {ptrType, ptrType}, false);
  auto *wrapper = llvm::Function::Create(wrapperType, llvm::Function::ExternalLinkage,
                                         kEntrySymbolPrefix + sig.name, m);
  llvm::IRBuilder<> b(llvm::BasicBlock::Create(ctx, "entry", wrapper));
  llvm::Value *inputs = wrapper->getArg(0);
  llvm::Value *results = wrapper->getArg(1);
  SmallVector<llvm::Value *> args;
  unsigned params = cInterface->getFunctionType()->getNumParams();
  bool resultsFirst = params == sig.inputs.size() + 1;
  if (!resultsFirst && params != sig.inputs.size())
    return failure();
  if (resultsFirst)
    args.push_back(results);
  for (unsigned i = 0; i < sig.inputs.size(); ++i) {
    llvm::Value *slot = b.CreateConstGEP1_64(ptrType, inputs, i);
    args.push_back(b.CreateLoad(ptrType, slot));
  }
  b.CreateCall(cInterface, args);
  b.CreateRetVoid();
  return success();
}

void addManifest(llvm::Module &m, ArrayRef<uint8_t> bytes) {
  llvm::LLVMContext &ctx = m.getContext();
  auto *data = llvm::ConstantDataArray::get(ctx, bytes);
  auto *global = new llvm::GlobalVariable(m, data->getType(), /*isConstant=*/true,
                                          llvm::GlobalValue::ExternalLinkage, data,
                                          kManifestSymbol);
  global->setAlignment(llvm::Align(16));
  auto *i64 = llvm::Type::getInt64Ty(ctx);
  new llvm::GlobalVariable(m, i64, true, llvm::GlobalValue::ExternalLinkage,
                           llvm::ConstantInt::get(i64, bytes.size()), kManifestSizeSymbol);
  // Zero until writeModuleHash fills it in the linked file.
  new llvm::GlobalVariable(m, i64, true, llvm::GlobalValue::ExternalLinkage,
                           llvm::ConstantInt::get(i64, 0), kModuleHashSymbol);
}

/// Writes the ModuleHasher digest of the linked module into its
/// hasten_module_hash (runtime/Manifest.h), found through the dynamic
/// symbol table as the runtime finds it.
LogicalResult writeModuleHash(StringRef path, Location loc) {
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                            /*RequiresNullTerminator=*/false);
  if (!buffer)
    return emitError(loc) << "cannot read the linked module '" << path << "'";
  auto object = llvm::object::ObjectFile::createObjectFile((*buffer)->getMemBufferRef());
  auto *elf = object ? dyn_cast<llvm::object::ELFObjectFileBase>(object->get()) : nullptr;
  if (!elf) {
    if (!object)
      llvm::consumeError(object.takeError());
    return emitError(loc) << "the linked module '" << path << "' is not an ELF file";
  }
  std::optional<uint64_t> offset;
  for (const llvm::object::ELFSymbolRef &symbol : elf->getDynamicSymbolIterators()) {
    llvm::Expected<StringRef> name = symbol.getName();
    llvm::Expected<uint64_t> address = symbol.getAddress();
    llvm::Expected<llvm::object::section_iterator> section = symbol.getSection();
    if (!name || !address || !section || *name != kModuleHashSymbol ||
        *section == elf->section_end()) {
      if (!name)
        llvm::consumeError(name.takeError());
      if (!address)
        llvm::consumeError(address.takeError());
      if (!section)
        llvm::consumeError(section.takeError());
      continue;
    }
    llvm::object::ELFSectionRef elfSection(**section);
    offset = *address - elfSection.getAddress() + elfSection.getOffset();
  }
  // The embedded weight segment is not hashed: the manifest (hashed)
  // carries its own digest, which hasten_module_verify_weights checks.
  uint64_t skipBegin = 0, skipEnd = 0;
  for (const llvm::object::SectionRef &section : elf->sections()) {
    llvm::Expected<StringRef> name = section.getName();
    if (!name) {
      llvm::consumeError(name.takeError());
      continue;
    }
    if (*name != kWeightsSectionName)
      continue;
    llvm::object::ELFSectionRef elfSection(section);
    skipBegin = elfSection.getOffset();
    skipEnd = skipBegin + elfSection.getSize();
  }
  StringRef bytes = (*buffer)->getBuffer();
  if (!offset || *offset + 8 > bytes.size())
    return emitError(loc) << "the linked module '" << path << "' has no " << kModuleHashSymbol;
  if (skipEnd > bytes.size() || (skipBegin < *offset + 8 && *offset < skipEnd))
    return emitError(loc) << "the linked module '" << path << "' has a misplaced "
                          << kWeightsSectionName << " section";
  hasten::ModuleHasher hasher;
  const auto *data = reinterpret_cast<const uint8_t *>(bytes.data());
  auto hashRange = [&](uint64_t begin, uint64_t end) { // [begin, end) minus the section
    if (begin < skipBegin)
      hasher.update(data + begin, std::min(end, skipBegin) - begin);
    uint64_t after = std::max(begin, skipEnd);
    if (after < end)
      hasher.update(data + after, end - after);
  };
  hashRange(0, *offset);
  uint8_t zeros[8] = {};
  hasher.update(zeros, 8);
  hashRange(*offset + 8, bytes.size());
  uint64_t digest = hasher.finish(); // little-endian on disk, as the runtime reads it
  uint64_t at = *offset;
  buffer->reset();
  int fd;
  if (std::error_code ec = llvm::sys::fs::openFileForReadWrite(
          path, fd, llvm::sys::fs::CD_OpenExisting, llvm::sys::fs::OF_None))
    return emitError(loc) << "cannot write the module hash into '" << path << "': "
                          << ec.message();
  bool written = ::pwrite(fd, &digest, sizeof(digest), off_t(at)) == ssize_t(sizeof(digest));
  llvm::sys::Process::SafelyCloseFileDescriptor(fd);
  if (!written)
    return emitError(loc) << "cannot write the module hash into '" << path << "'";
  return success();
}

/// Everything but the entry wrappers and the manifest becomes internal, so
/// the module exports only the hasten ABI and O3 can inline freely.
void internalize(llvm::Module &m) {
  for (llvm::Function &f : m.functions())
    if (!f.isDeclaration() && !f.getName().starts_with("hasten_"))
      f.setLinkage(llvm::GlobalValue::InternalLinkage);
  // LLVM's own globals (a CUDA module's llvm.global_ctors) keep theirs.
  for (llvm::GlobalVariable &g : m.globals())
    if (!g.isDeclaration() && !g.getName().starts_with("hasten_") &&
        !g.getName().starts_with("llvm."))
      g.setLinkage(llvm::GlobalValue::InternalLinkage);
}

void optimize(llvm::Module &m, llvm::TargetMachine *tm) {
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  // Loops of more than 8 iterations are not fully unrolled: unrolled, their
  // loads and stores through buffers LLVM cannot prove disjoint (outlined
  // loops read them from a context) stay scalar, while the loop vectorizer
  // checks the overlap at run time. A 56-wide int8 im2col row went from
  // byte moves to vectors: a QDQ ResNet stage 1.75x faster, f32 1.2x, and
  // the generated attention's prefill 1.2x.
  // The pipeline's only handle on that is LLVM's -unroll-full-max-count
  // option, read only when it occurred; a value given on the command line
  // wins.
  static std::once_flag limitUnrolling;
  std::call_once(limitUnrolling, [] {
    auto &options = llvm::cl::getRegisteredOptions();
    auto found = options.find("unroll-full-max-count");
    if (found != options.end() && found->second->getNumOccurrences() == 0)
      (void)found->second->addOccurrence(0, "unroll-full-max-count", "8");
  });
  llvm::PassBuilder pb(tm);
  pb.registerModuleAnalyses(mam);
  pb.registerCGSCCAnalyses(cgam);
  pb.registerFunctionAnalyses(fam);
  pb.registerLoopAnalyses(lam);
  pb.crossRegisterProxies(lam, fam, cgam, mam);
  llvm::ModulePassManager mpm = pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3);
  mpm.run(m, mam);
}

/// Module constructors (a CUDA module's registration of its device code) go
/// in .init_array, which the loader runs; LLVM's default, .ctors, it does not.
llvm::TargetOptions targetOptions() {
  llvm::TargetOptions options;
  options.UseInitArray = true;
  return options;
}

std::string findLinker() {
  for (const char *name : {"ld.lld-22", "ld.lld"})
    if (auto path = llvm::sys::findProgramByName(name))
      return *path;
  if (llvm::sys::fs::can_execute("/usr/lib/llvm-22/bin/ld.lld"))
    return "/usr/lib/llvm-22/bin/ld.lld";
  if (auto path = llvm::sys::findProgramByName("ld"))
    return *path;
  return "";
}

/// The CPU and feature string the code is generated for.
struct CpuChoice {
  std::string cpu;
  std::string features;
};

/// Resolves --cpu and --cpu-features: `native` (or nothing) is this
/// machine's CPU and features; anything else must be a CPU LLVM knows
/// (`x86-64-v3`, `znver5`, ...), so that a typo cannot silently produce
/// baseline code. Every feature in --cpu-features must exist too.
FailureOr<CpuChoice> chooseCpu(const llvm::Target &target, const llvm::Triple &triple,
                               const hasten::CpuTargetOptions &options, Location loc) {
  CpuChoice choice;
  bool native = options.cpu.empty() || options.cpu == "native";
  choice.cpu = native ? llvm::sys::getHostCPUName().str() : options.cpu;
  // A generic subtarget answers "is this a CPU?" without LLVM printing its
  // own warning for an unknown name.
  std::unique_ptr<llvm::MCSubtargetInfo> info(
      target.createMCSubtargetInfo(triple, "x86-64", ""));
  if (!native && (!info || !info->isCPUStringValid(choice.cpu))) {
    InFlightDiagnostic diag = emitError(loc)
                              << "unknown CPU '" << options.cpu
                              << "' for --cpu; use native, x86-64, x86-64-v2, x86-64-v3, "
                                 "x86-64-v4 or a CPU name such as sapphirerapids or znver5";
    return diag;
  }
  SmallVector<StringRef> requested;
  StringRef(options.cpuFeatures).split(requested, ',', -1, /*KeepEmpty=*/false);
  for (StringRef feature : requested) {
    feature = feature.trim();
    StringRef name = feature.drop_front();
    bool known = info && llvm::any_of(info->getAllProcessorFeatures(),
                                      [&](const llvm::SubtargetFeatureKV &kv) {
                                        return name == kv.Key;
                                      });
    if ((!feature.starts_with("+") && !feature.starts_with("-")) || !known)
      return emitError(loc) << "bad --cpu-features item '" << feature
                            << "': expected +NAME or -NAME with an LLVM feature name "
                               "such as avx2, avx512f or amx-bf16";
  }
  SmallVector<std::string> features;
  if (native)
    for (const auto &f : llvm::sys::getHostCPUFeatures())
      features.push_back((f.second ? "+" : "-") + f.getKey().str());
  llvm::sort(features);
  for (StringRef feature : requested)
    features.push_back(feature.trim().str());
  choice.features = llvm::join(features, ",");
  // LLVM tunes AVX-512 server cores to 256-bit vectors by default; generated
  // loops use the target's full width unless --cpu-features says otherwise.
  std::unique_ptr<llvm::MCSubtargetInfo> chosen(
      target.createMCSubtargetInfo(triple, choice.cpu, choice.features));
  if (chosen && chosen->checkFeatures("+avx512f") &&
      !StringRef(options.cpuFeatures).contains("prefer-256-bit"))
    choice.features += choice.features.empty() ? "-prefer-256-bit" : ",-prefer-256-bit";
  return choice;
}

class CpuTarget : public hasten::Target {
public:
  explicit CpuTarget(const CpuTargetOptions &options) : options(options) {}

  StringRef getName() const override { return "cpu"; }

  LogicalResult initialize(Location loc) override {
    static bool targetsInitialized = [] {
      llvm::InitializeNativeTarget();
      llvm::InitializeNativeTargetAsmPrinter();
      return true;
    }();
    (void)targetsInitialized;
    this->loc = loc;
    triple = llvm::Triple(llvm::sys::getDefaultTargetTriple());
    std::string error;
    const llvm::Target *target = llvm::TargetRegistry::lookupTarget(triple, error);
    if (!target)
      return emitError(loc) << "no LLVM target for " << triple.str() << ": " << error;
    FailureOr<CpuChoice> choice = chooseCpu(*target, triple, options, loc);
    if (failed(choice))
      return failure();
    cpu = choice->cpu;
    features = choice->features;
    this->target = target;
    tm.reset(target->createTargetMachine(triple, cpu, choice->features, targetOptions(),
                                         llvm::Reloc::PIC_, std::nullopt,
                                         llvm::CodeGenOptLevel::Aggressive));
    if (!tm)
      return emitError(loc) << "cannot create a target machine for CPU '" << cpu << "'";
    // Features the generated code may use, as /proc/cpuinfo spells them.
    // The subtarget knows what the CPU implies (x86-64-v3 means AVX2 and
    // FMA even with an empty feature string), so ask it, not the string.
    const llvm::MCSubtargetInfo *subtarget = tm->getMCSubtargetInfo();
    for (const CpuFeatureName &tracked : kTrackedCpuFeatures)
      if (subtarget->checkFeatures(std::string("+") + tracked.llvm))
        requiredFeatures.push_back(tracked.cpuinfo);
    for (const std::string &extra : options.extraRequiredFeatures)
      requiredFeatures.push_back(extra);
    return success();
  }

  LogicalResult checkTensorLevel(ModuleOp module) const override {
    // Attention the runtime's kernel cannot take has no CPU lowering yet.
    WalkResult unsupported = module.walk([&](AttentionOp op) {
      op.emitError("this attention (")
          << op.getQuery().getType() << ", mask "
          << (op.getMask() ? op.getMask().getType() : Type())
          << ") is not supported on the CPU target yet: the kernel takes f32 with an "
             "additive f32 mask and a static head_dim";
      return WalkResult::interrupt();
    });
    return failure(unsupported.wasInterrupted());
  }

  /// The strip layouts are what the AVX-512 kernels (and oneDNN's AVX-512
  /// GEMMs) read; without AVX-512 the runtime packs at first use.
  StringRef weightLayout() const override {
    return tm->getMCSubtargetInfo()->checkFeatures("+avx512f") ? "strips" : "plain";
  }

  void buildLoweringPipeline(OpPassManager &pm) const override {
    CpuLoweringPipelineOptions lowering;
    lowering.parallelMinWork = options.parallelMinWork;
    lowering.externalizeWeights = options.externalizeWeights;
    buildCpuLoweringPipeline(pm, lowering);
  }

  TargetDescription describe(ModuleOp) const override {
    TargetDescription description;
    description.device = "cpu";
    description.triple = triple.str();
    description.cpu = cpu;
    description.features = requiredFeatures;
    return description;
  }

  LogicalResult serialize(ModuleOp module, const SerializeRequest &request) override {
    Location fileLoc = *loc;
    PhaseTimer &timer = *request.timer;
    std::string error;
    // The hasten attributes of arguments and results (roles, ONNX names)
    // are recorded in the manifest; LLVM has no meaning for them on
    // parameters and would say so for each.
    auto withoutHasten = [](DictionaryAttr attrs) {
      SmallVector<NamedAttribute> kept;
      for (NamedAttribute attr : attrs ? attrs.getValue() : ArrayRef<NamedAttribute>())
        if (!attr.getName().getValue().starts_with("hasten."))
          kept.push_back(attr);
      return kept;
    };
    module.walk([&](LLVM::LLVMFuncOp func) {
      for (unsigned i = 0; i < func.getNumArguments(); ++i)
        func.setArgAttrs(i, withoutHasten(func.getArgAttrDict(i)));
      for (unsigned i = 0; i < func.getNumResults(); ++i)
        func.setResultAttrs(i, withoutHasten(func.getResultAttrDict(i)));
    });
    llvm::LLVMContext llvmContext;
    std::unique_ptr<llvm::Module> llvmModule = timer.run("translation to LLVM IR", [&] {
      return translateModuleToLLVMIR(module, llvmContext, request.sourcePath);
    });
    if (!llvmModule)
      return emitError(fileLoc) << "translation to LLVM IR failed";
    llvmModule->setTargetTriple(triple);
    llvmModule->setDataLayout(tm->createDataLayout());
    for (const EntrySignature &sig : *request.entries)
      if (failed(addEntryWrapper(*llvmModule, sig)))
        return emitError(fileLoc) << "internal error: cannot wrap entry '" << sig.name << "'";
    addManifest(*llvmModule, *request.manifest);
    internalize(*llvmModule);
    if (llvm::verifyModule(*llvmModule, &llvm::errs()))
      return emitError(fileLoc) << "internal error: the LLVM module does not verify";

    // A library large enough to split is optimized part by part, each on
    // its own core right before its code generation (below); anything else
    // as one module here.
    unsigned parts = request.emit == EmitKind::Library ? codegenParts(*llvmModule) : 1;
    if (parts == 1)
      timer.run("LLVM O3", [&] {
        optimize(*llvmModule, tm.get());
        return true;
      });
    if (request.emit == EmitKind::LLVM) {
      auto out = openOutputFile(request.outputPath, &error);
      if (!out)
        return emitError(fileLoc) << error;
      llvmModule->print(out->os(), nullptr);
      out->keep();
      return success();
    }

    // The object files: the output itself, or temporaries to link, one per
    // part of the module that a core generates code for.
    SmallVector<SmallString<128>> objectPaths(parts);
    std::vector<llvm::FileRemover> objectRemovers;
    for (SmallString<128> &path : objectPaths) {
      path = request.outputPath;
      if (request.emit != EmitKind::Library)
        continue;
      int fd;
      if (llvm::sys::fs::createTemporaryFile("hasten", "o", fd, path))
        return emitError(fileLoc) << "cannot create a temporary object file";
      llvm::sys::Process::SafelyCloseFileDescriptor(fd);
      objectRemovers.emplace_back(path.str());
    }
    bool emitted = timer.run(parts == 1 ? "code generation" : "LLVM O3 and code generation", [&] {
      if (parts == 1)
        return emitObject(*llvmModule, *tm, objectPaths[0]);
      return emitObjectsInParallel(*llvmModule, objectPaths);
    });
    if (!emitted)
      return emitError(fileLoc) << "cannot write object file '" << objectPaths[0] << "'";
    if (request.emit == EmitKind::Object)
      return success();

    // The weight segment's section: a placeholder the linker places, which
    // the segment, appended after linking, replaces (the linker never
    // copies hundreds of megabytes).
    SmallString<128> weightsObject;
    if (request.embeddedWeights) {
      int fd;
      if (llvm::sys::fs::createTemporaryFile("hasten-weights", "o", fd, weightsObject))
        return emitError(fileLoc) << "cannot create a temporary object file";
      llvm::sys::Process::SafelyCloseFileDescriptor(fd);
      if (failed(WeightSegment::writePlaceholderObject(weightsObject, fileLoc)))
        return failure();
    }
    llvm::FileRemover weightsRemover(weightsObject.str());

    std::string linker = findLinker();
    if (linker.empty())
      return emitError(fileLoc) << "no linker found (install lld-22)";
    std::string errorText;
    bool linked = timer.run("link", [&] {
      std::string runtimeDir = "-L" + options.runtimeLibraryDir;
      SmallVector<StringRef> args = {linker, "-shared", "--no-undefined", "--gc-sections",
                                     "-o", request.outputPath,
                                     "-L/usr/lib/x86_64-linux-gnu", "-L/lib/x86_64-linux-gnu"};
      for (const SmallString<128> &path : objectPaths)
        args.push_back(path);
      if (!weightsObject.empty())
        args.push_back(weightsObject);
      // The runtime is needed only by modules that call its kernels.
      if (!options.runtimeLibraryDir.empty())
        args.append({runtimeDir, "--as-needed", "-lhasten_runtime", "--no-as-needed"});
      // Where the loader finds the runtime when a program that does not
      // link it (Python's ctypes, a plain dlopen) loads the module.
      std::string rpath = options.runtimeRPath
                              ? *options.runtimeRPath
                              : options.runtimeLibraryDir.empty()
                                    ? std::string("$ORIGIN")
                                    : options.runtimeLibraryDir + ":$ORIGIN";
      if (!rpath.empty())
        args.append({"--enable-new-dtags", "-rpath", rpath});
      // compiler-rt builtins for what the CPU lacks (f64 -> f16 without
      // AVX512-FP16, ...), linked in and kept out of the module's exports.
      args.append({"--exclude-libs=ALL", HASTEN_CLANG_RT_BUILTINS, "-lm", "-lc"});
      SmallString<128> logPath;
      int fd;
      if (llvm::sys::fs::createTemporaryFile("hasten-link", "log", fd, logPath))
        return false;
      llvm::sys::Process::SafelyCloseFileDescriptor(fd);
      llvm::FileRemover logRemover(logPath);
      std::optional<StringRef> redirects[] = {std::nullopt, logPath.str(), logPath.str()};
      int rc = llvm::sys::ExecuteAndWait(linker, args, std::nullopt, redirects, 0, 0,
                                         &errorText);
      if (auto log = llvm::MemoryBuffer::getFile(logPath))
        errorText += (*log)->getBuffer().str();
      return rc == 0;
    });
    if (!linked)
      return emitError(fileLoc) << "linking '" << request.outputPath << "' with " << linker
                                << " failed: " << errorText;
    if (request.embeddedWeights && failed(timer.run("weights", [&] {
          return request.embeddedWeights->appendTo(request.outputPath, fileLoc);
        })))
      return failure();
    return writeModuleHash(request.outputPath, fileLoc);
  }

private:
  static bool emitObject(llvm::Module &m, llvm::TargetMachine &machine, StringRef path) {
    std::error_code ec;
    llvm::raw_fd_ostream out(path, ec, llvm::sys::fs::OF_None);
    if (ec)
      return false;
    llvm::legacy::PassManager codegen;
    if (machine.addPassesToEmitFile(codegen, out, nullptr, llvm::CodeGenFileType::ObjectFile))
      return false;
    codegen.run(m);
    return true;
  }

  /// Parts worth generating on their own core: code generation of a large
  /// model's module is seconds, split across the cores it halves.
  static unsigned codegenParts(const llvm::Module &m) {
    size_t instructions = 0;
    for (const llvm::Function &f : m)
      instructions += f.getInstructionCount();
    unsigned cores = std::max(1u, llvm::hardware_concurrency().compute_thread_count());
    return instructions < 20000 ? 1 : std::min(cores, 4u);
  }

  /// Splits the module into parts (locals referenced across parts become
  /// hidden globals, which the library does not export) and optimizes and
  /// generates each part's object on its own thread, in its own context (a
  /// context is not shared between threads), from bitcode. Splitting first
  /// costs little: the entries reach the outlined loop bodies through the
  /// runtime's parallel loop (pointers, never inlined), and the kernels are
  /// the runtime's.
  bool emitObjectsInParallel(llvm::Module &m, ArrayRef<SmallString<128>> paths) const {
    std::vector<SmallString<0>> bitcodes;
    llvm::SplitModule(m, paths.size(), [&](std::unique_ptr<llvm::Module> part) {
      SmallString<0> bitcode;
      llvm::raw_svector_ostream os(bitcode);
      llvm::WriteBitcodeToFile(*part, os);
      bitcodes.push_back(std::move(bitcode));
    });
    std::vector<char> ok(bitcodes.size(), 0);
    std::vector<std::thread> threads;
    for (size_t i = 0; i < bitcodes.size(); ++i)
      threads.emplace_back([&, i] {
        llvm::LLVMContext context;
        auto part = llvm::parseBitcodeFile(
            llvm::MemoryBufferRef(StringRef(bitcodes[i].data(), bitcodes[i].size()), "part"),
            context);
        if (!part) {
          llvm::consumeError(part.takeError());
          return;
        }
        std::unique_ptr<llvm::TargetMachine> machine(target->createTargetMachine(
            triple, cpu, features, targetOptions(), llvm::Reloc::PIC_, std::nullopt,
            llvm::CodeGenOptLevel::Aggressive));
        if (!machine)
          return;
        optimize(**part, machine.get());
        ok[i] = emitObject(**part, *machine, paths[i]);
      });
    for (std::thread &thread : threads)
      thread.join();
    return bitcodes.size() == paths.size() && llvm::all_of(ok, [](char c) { return c != 0; });
  }

  CpuTargetOptions options;
  std::optional<Location> loc;
  llvm::Triple triple;
  std::string cpu;
  std::string features;
  const llvm::Target *target = nullptr;
  std::unique_ptr<llvm::TargetMachine> tm;
  std::vector<std::string> requiredFeatures;
};

} // namespace

std::unique_ptr<hasten::Target> hasten::createCpuTarget(const CpuTargetOptions &options) {
  return std::make_unique<CpuTarget>(options);
}
