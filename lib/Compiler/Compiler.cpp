//===- Compiler.cpp - ONNX to shared library, in process -------------------===//
//
// Orchestration only: import -> tensor stage -> bufferization stage (the
// memory report is read here) -> the target's lowering stage -> the target
// serializes with the manifest. Each stage is a registered pipeline
// (Pipelines.h) that hasten-opt runs the same way.
//
//===----------------------------------------------------------------------===//

#include "hasten/Compiler/Compiler.h"

#include "KVCachePlan.h"
#include "Manifest.h"
#include "MemoryReport.h"
#include "hasten/Manifest/ModuleManifest.h"
#include "hasten/Pipelines/Pipelines.h"
#include "hasten/Dialect/Hasten/HastenDialect.h"
#include "hasten/Passes/Passes.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Bytecode/BytecodeWriter.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/GPU/GPUToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/NVVM/NVVMToLLVMIRTranslation.h"

#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/ToolOutputFile.h"

using namespace mlir;
using namespace hasten;

void hasten::registerCompilerPasses() {
  static bool registered = [] {
    registerAllPasses();
    registerHastenPasses();
    registerHastenPipelines();
    return true;
  }();
  (void)registered;
}

namespace {

/// A stage: the pipeline its builder makes, printed when asked, run with
/// the user's pass-manager options. The module is verified once the stage
/// has run, not after each pass unless asked (--verify-each): on a 124M
/// decoder the verifier after every pass took 0.6 of a 5 s compile.
LogicalResult runStage(ModuleOp module, StringRef name,
                       function_ref<void(OpPassManager &)> build,
                       const CompileOptions &options) {
  PassManager pm(module.getContext(), ModuleOp::getOperationName());
  pm.enableVerifier(options.verifyEachPass);
  build(pm);
  if (options.printPipeline) {
    *options.printPipeline << "// " << name << "\n";
    pm.printAsTextualPipeline(*options.printPipeline);
    *options.printPipeline << "\n";
  }
  if (options.configurePassManager && failed(options.configurePassManager(pm, name)))
    return failure();
  if (failed(pm.run(module)))
    return emitError(module.getLoc()) << "the " << name << " passes failed";
  if (!options.verifyEachPass && failed(verify(module)))
    return emitError(module.getLoc())
           << "internal error: the " << name
           << " passes left invalid IR (--verify-each names the pass)";
  return success();
}

LogicalResult writeModule(ModuleOp module, StringRef path, Location loc) {
  std::string error;
  auto out = openOutputFile(path, &error);
  if (!out)
    return emitError(loc) << error;
  module.print(out->os());
  out->os() << "\n"; // as hasten-opt ends its output
  out->keep();
  return success();
}

/// A tensor-level module (hasten-import's or hasten-compile --emit=mlir's
/// output, or written by hand) instead of an ONNX file. Entry arguments
/// and results without an ONNX name get `argN` / `resultN`, which
/// hasten-run's --input and output files use.
FailureOr<OwningOpRef<ModuleOp>> parseMlirInput(StringRef path, MLIRContext &context) {
  OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(path, &context);
  if (!module)
    return failure();
  Builder b(&context);
  for (auto func : module->getOps<func::FuncOp>()) {
    if (func.isExternal())
      continue;
    auto name = [&](DictionaryAttr attrs, Type type, auto set, std::string fallback) {
      if (!attrs || !attrs.get(HastenDialect::kOnnxNameAttrName))
        set(HastenDialect::kOnnxNameAttrName, b.getStringAttr(fallback));
      if (!attrs || !attrs.get(HastenDialect::kOnnxElemTypeAttrName))
        set(HastenDialect::kOnnxElemTypeAttrName,
            b.getI32IntegerAttr(onnxElementType(cast<ShapedType>(type).getElementType())));
    };
    for (unsigned i = 0; i < func.getNumArguments(); ++i)
      name(func.getArgAttrDict(i), func.getArgumentTypes()[i],
           [&](StringRef n, Attribute a) { func.setArgAttr(i, n, a); }, "arg" + std::to_string(i));
    for (unsigned i = 0; i < func.getNumResults(); ++i)
      name(func.getResultAttrDict(i), func.getResultTypes()[i],
           [&](StringRef n, Attribute a) { func.setResultAttr(i, n, a); },
           "result" + std::to_string(i));
  }
  return module;
}

bool isMlirFile(StringRef path) { return path.ends_with(".mlir") || path.ends_with(".mlirbc"); }

/// The stages a module can be written at and read back from, in order;
/// recorded as the module's `hasten.stage` attribute (hand-written MLIR
/// without one is an import-stage module).
enum class Stage { Import, Tensor, Buffer };
constexpr StringLiteral kStageAttr = HastenDialect::kStageAttrName;

StringRef stageName(Stage stage) {
  switch (stage) {
  case Stage::Import:
    return "import";
  case Stage::Tensor:
    return "tensor";
  case Stage::Buffer:
    return "buffer";
  }
  return "";
}

FailureOr<Stage> stageOf(ModuleOp module) {
  auto attr = module->getAttrOfType<StringAttr>(kStageAttr);
  if (!attr)
    return Stage::Import;
  for (Stage stage : {Stage::Import, Stage::Tensor, Stage::Buffer})
    if (attr.getValue() == stageName(stage))
      return stage;
  return emitError(module.getLoc())
         << "unknown " << kStageAttr << " '" << attr.getValue()
         << "' (a module hasten-compile --compile-to wrote is at import, tensor or buffer)";
}

/// Writes the module as MLIR text, or as bytecode for a .mlirbc path,
/// marked with its stage so that hasten-compile can resume from it.
LogicalResult writeStage(ModuleOp module, Stage stage, StringRef path, Location loc) {
  module->setAttr(kStageAttr, StringAttr::get(module.getContext(), stageName(stage)));
  if (!path.ends_with(".mlirbc"))
    return writeModule(module, path, loc);
  std::string error;
  auto out = openOutputFile(path, &error);
  if (!out)
    return emitError(loc) << error;
  if (failed(writeBytecodeToFile(module, out->os())))
    return emitError(loc) << "cannot write MLIR bytecode to '" << path << "'";
  out->keep();
  return success();
}

/// The model namespace of a draft compiled with its target.
constexpr StringLiteral kDraftModel = HastenDialect::kDraftModelName;

/// Moves the draft's entries into the target's module as draft_<entry>,
/// marked hasten.model = "draft". The draft's own graph function is not
/// kept: a pair is run through its decoder entries.
LogicalResult mergeDraft(ModuleOp target, ModuleOp draft, StringRef draftPath) {
  SymbolTable symbols(target);
  Builder b(target.getContext());
  for (auto func : llvm::make_early_inc_range(draft.getOps<func::FuncOp>())) {
    if (!func->hasAttr(HastenDialect::kEntryKindAttrName))
      continue;
    std::string name = (kDraftModel + "_" + func.getSymName()).str();
    if (symbols.lookup(name))
      return emitError(func.getLoc())
             << "cannot add the draft's entry '" << name
             << "': the target model already has a function of that name";
    func->remove();
    func.setSymName(name);
    func->setAttr(HastenDialect::kModelAttrName, b.getStringAttr(kDraftModel));
    symbols.insert(func);
  }
  auto draftDecode = SymbolTable::lookupSymbolIn(target, (kDraftModel + "_decode").str());
  auto targetDecode = SymbolTable::lookupSymbolIn(target, "decode");
  if (!draftDecode)
    return emitError(draft.getLoc()) << "the draft '" << draftPath << "' has no decoder entries";
  if (!targetDecode)
    return emitError(target.getLoc())
           << "--draft needs a decoder target (one with input_ids, past_key_values and logits)";
  // The pair proposes and checks token ids: both must mean the same tokens.
  auto vocab = [](Operation *decode) {
    auto func = cast<func::FuncOp>(decode);
    for (unsigned i = 0; i < func.getNumResults(); ++i)
      if (auto role = func.getResultAttrOfType<StringAttr>(i, HastenDialect::kRoleAttrName);
          role && role.getValue() == stringifyTensorRole(TensorRole::Logits))
        return cast<ShapedType>(func.getResultTypes()[i]).getShape().back();
    return ShapedType::kDynamic;
  };
  if (vocab(draftDecode) != vocab(targetDecode))
    return emitError(draft.getLoc())
           << "the draft '" << draftPath << "' has a vocabulary of " << vocab(draftDecode)
           << " tokens, the target " << vocab(targetDecode)
           << ": a draft must share the target's tokenizer";
  return success();
}

} // namespace

LogicalResult hasten::compileOnnxFile(StringRef inputPath, StringRef outputPath,
                                      const CompileOptions &options, MLIRContext &context,
                                      std::vector<PhaseTime> *times) {
  PhaseTimer timer(times, options.progress);
  DialectRegistry registry;
  registerAllDialects(registry);
  registerAllExtensions(registry);
  registry.insert<HastenDialect>();
  registerGpuKernelInterfaces(registry);
  registerGpuGemmToLLVM(registry);
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  // The CUDA target's kernels (gpu-module-to-binary) and its launches.
  registerGPUDialectTranslation(registry);
  gpu::registerOffloadingLLVMTranslationInterfaceExternalModels(registry);
  registerNVVMDialectTranslation(registry);
  context.appendDialectRegistry(registry);
  registerCompilerPasses();
  Location fileLoc = FileLineColLoc::get(&context, inputPath, 0, 0);

  // The target first, so that a bad --cpu or --gpu fails before any work.
  // Only a library has a weight segment beside its code: LLVM IR and object
  // files keep their weights.
  CpuTargetOptions cpuOptions = options.cpu;
  cpuOptions.externalizeWeights = options.emit == EmitKind::Library;
  std::unique_ptr<Target> target;
  if (options.target == "cpu") {
    if (!options.cuda.gpus.empty())
      return emitError(fileLoc) << "--gpu applies to --target=cuda";
    if (options.cuda.precision != "f32")
      return emitError(fileLoc) << "--gpu-precision applies to --target=cuda";
    if (options.cuda.gemm != "cublaslt")
      return emitError(fileLoc) << "--gpu-gemm applies to --target=cuda";
    target = createCpuTarget(cpuOptions);
  } else if (options.target == "cuda") {
    // Kernels read constants from the uploaded weight segment only, so a
    // CUDA build always has one; its LLVM IR is for reading, and an object
    // file of the host code alone would not run.
    if (options.emit == EmitKind::Object)
      return emitError(fileLoc) << "--target=cuda builds a library (or LLVM IR to read), "
                                   "not an object file: its kernels read the weight segment "
                                   "that only the library carries";
    // Weight packing and quantization feed the CPU runtime's matmul
    // kernels; the CUDA target stores weights in its GEMMs' precision.
    if (options.weights != "f32")
      return emitError(fileLoc) << "--weights=" << options.weights
                                << " applies to the CPU target: with --target=cuda, "
                                   "--gpu-precision=bf16 (or f16) stores the GEMMs' weights "
                                   "in that type and runs them on tensor cores";
    CudaTargetOptions cudaOptions = options.cuda;
    cudaOptions.host = cpuOptions;
    cudaOptions.host.externalizeWeights = true;
    target = createCudaTarget(cudaOptions);
  } else {
    return emitError(fileLoc) << "unknown target '" << options.target
                              << "' (use --target=cpu or --target=cuda)";
  }
  if (failed(target->initialize(fileLoc)))
    return failure();

  // A sampler fixes the denoiser's batch: its samples, twice for full CFG.
  SamplerPlan sampler;
  OnnxImportOptions importOptions = options.import;
  bool hasSampler = !options.sampler.spec.empty();
  if (hasSampler) {
    std::string error;
    if (!parseSampler(options.sampler, sampler, error))
      return emitError(fileLoc) << error;
    if (!options.draftPath.empty())
      return emitError(fileLoc) << "--sampler and --draft do not go together";
    importOptions.dimBindings[sampler.sampleInput + "[0]"] = samplerDenoiserBatch(options.sampler);
  }

  // The model: ONNX, or MLIR written by an earlier run at some stage.
  auto load = [&](StringRef path, bool isDraft) {
    return timer.run(isDraft ? "import (draft)" : "import", [&] {
      return isMlirFile(path) ? parseMlirInput(path, context)
                              : importOnnxFile(path, context, importOptions);
    });
  };
  auto imported = load(inputPath, /*isDraft=*/false);
  if (failed(imported)) {
    if (hasSampler)
      emitRemark(fileLoc) << "--sampler fixes the batch of the denoiser's sampled input '"
                          << sampler.sampleInput
                          << "'; name its inputs with --sampler-inputs x=NAME,t=NAME";
    return failure();
  }
  ModuleOp module = imported->get();
  FailureOr<Stage> inputStage = stageOf(module);
  if (failed(inputStage))
    return failure();
  auto refuseIfPast = [&](Stage wanted, StringRef what) -> LogicalResult {
    if (*inputStage <= wanted)
      return success();
    return emitError(fileLoc) << "the input is at the " << stageName(*inputStage)
                              << " stage, past " << what
                              << "; give the import-stage module or the ONNX file";
  };
  if (options.emit == EmitKind::Import) {
    if (failed(refuseIfPast(Stage::Import, "the import stage")))
      return failure();
    return writeStage(module, Stage::Import, outputPath, fileLoc);
  }

  // Attention fusion and decoder entries, for the target and for a draft,
  // which then moves into the target's module under its namespace.
  auto frontEnd = [&](ModuleOp m, bool isDraft) -> LogicalResult {
    if (options.fuseAttention &&
        failed(timer.run(isDraft ? "attention fusion (draft)" : "attention fusion", [&] {
          AttentionFusionPipelineOptions fusion;
          fusion.reportUnfused = options.reportUnfusedAttention;
          return runStage(m, "hasten-attention-fusion-pipeline",
                          [&](OpPassManager &pm) { buildAttentionFusionPipeline(pm, fusion); },
                          options);
        })))
      return failure();
    if ((options.decoderEntries || isDraft) &&
        failed(timer.run(isDraft ? "decoder entries (draft)" : "decoder entries", [&] {
          DecoderEntriesOptions entries;
          entries.verify = options.verifyEntry || isDraft;
          entries.require = isDraft;
          return runStage(m, "hasten-decoder-entries",
                          [&](OpPassManager &pm) { pm.addPass(createDecoderEntries(entries)); },
                          options);
        })))
      return failure();
    return success();
  };

  FailureOr<KVCachePlan> kv = KVCachePlan();
  std::optional<KVCachePlan> draftKV;
  if (*inputStage == Stage::Import) {
    if (failed(frontEnd(module, /*isDraft=*/false)))
      return failure();
    if (hasSampler && failed(addSamplerEntry(module, options.sampler, sampler)))
      return failure();
    if (options.speculationK > 0 && options.draftPath.empty())
      return emitError(fileLoc) << "--spec-k needs --draft (the fused step runs a draft model)";
    if (!options.draftPath.empty()) {
      if (!options.decoderEntries)
        return emitError(fileLoc)
               << "--draft needs the decoder entries (drop --no-decoder-entries)";
      auto draft = load(options.draftPath, /*isDraft=*/true);
      if (failed(draft))
        return failure();
      FailureOr<Stage> draftStage = stageOf(draft->get());
      if (failed(draftStage))
        return failure();
      if (*draftStage != Stage::Import)
        return emitError(fileLoc) << "the draft '" << options.draftPath
                                  << "' must be an ONNX file or an import-stage module";
      if (failed(frontEnd(draft->get(), /*isDraft=*/true)) ||
          failed(mergeDraft(module, draft->get(), options.draftPath)))
        return failure();
    }

    if (options.kv.deviceTokens >= 0 && options.target != "cuda")
      return emitError(fileLoc) << "--kv-device-tokens keeps part of a CUDA module's KV cache "
                                   "on the GPU; the CPU target's cache is all host memory";
    kv = planKVCache(module, options.kv, "");
    if (failed(kv))
      return failure();
    recordKVCachePlan(module, *kv, "");
    // The draft's cache holds what the target's does, up to the positions
    // the draft knows: past them the runtime stops proposing, and RAPID
    // gives the draft a shortened context that fits.
    if (!options.draftPath.empty()) {
      KVCacheOptions draftOptions;
      draftOptions.capacity = kv->capacity;
      draftOptions.lowerToPositions = true;
      draftOptions.blockSize = kv->blockSize;
      draftOptions.deviceTokens = options.kv.deviceTokens;
      FailureOr<KVCachePlan> plan = planKVCache(module, draftOptions, kDraftModel);
      if (failed(plan))
        return failure();
      draftKV = *plan;
      recordKVCachePlan(module, *plan, kDraftModel);
    }
    TensorPipelineOptions tensor;
    tensor.kvCapacity = kv->capacity;
    if (draftKV)
      tensor.draftKvCapacity = draftKV->capacity;
    tensor.kvBlockSize = options.kv.blockSize;
    // Without the runtime's attention kernel, attention is tiled in IR.
    tensor.attention = target->hasAttentionKernel() ? options.attention : "generated";
    tensor.gpuAttention = target->gpuAttentionTarget();
    tensor.gpuAttentionPrecision = target->gpuAttentionPrecision();
    tensor.speculationK = options.speculationK;
    if (options.printAttentionPlan) {
      // The plan the tensor stage follows (generated) or the kernel's
      // tiles, seen before the op is lowered.
      PassManager plan(&context, ModuleOp::getOperationName());
      PlanAttentionOptions planOptions;
      planOptions.printPlan = true;
      plan.addPass(createPlanAttention(planOptions));
      if (failed(plan.run(module)))
        return failure();
    }
    if (failed(timer.run("tensor passes", [&] {
          return runStage(module, "hasten-tensor-pipeline",
                          [&](OpPassManager &pm) { buildTensorPipeline(pm, tensor); }, options);
        })))
      return failure();
  } else {
    // A module written at a later stage carries its cache plans; what
    // shaped them cannot change any more.
    if (!options.draftPath.empty() || options.speculationK > 0 || hasSampler ||
        options.kv.capacity ||
        options.kv.blockSize || options.kv.budgetBytes)
      return emitError(fileLoc) << "the input is at the " << stageName(*inputStage)
                                << " stage: its decoder entries and KV cache are fixed "
                                   "(--draft, --spec-k, --sampler and --kv-* apply to the import stage)";
    kv = readKVCachePlan(module, "");
    FailureOr<KVCachePlan> draftPlan = readKVCachePlan(module, kDraftModel);
    if (failed(kv) || failed(draftPlan))
      return failure();
    if (draftPlan->decoder)
      draftKV = *draftPlan;
  }
  if (*inputStage <= Stage::Tensor && failed(target->checkTensorLevel(module)))
    return failure();
  // The signatures as callers see them: after KV planning replaced the
  // decoder entries' past/present pairs by the cache. Bufferization keeps
  // the public functions' arguments, results and their attributes.
  std::vector<EntrySignature> entries;
  for (auto func : module.getOps<func::FuncOp>())
    if (!func.isExternal() && !func.isPrivate() &&
        (*inputStage <= Stage::Tensor || func.isPublic()))
      entries.push_back(readSignature(func));
  if (options.emit == EmitKind::MLIR) {
    if (failed(refuseIfPast(Stage::Tensor, "the tensor stage")) ||
        failed(writeStage(module, Stage::Tensor, outputPath, fileLoc)))
      return failure();
    if (!options.memoryReport)
      return success();
  }

  if (*inputStage <= Stage::Tensor) {
    BufferizePipelineOptions bufferize;
    bufferize.weights = options.weights;
    bufferize.weightLayout = target->weightLayout().str();
    bufferize.matmulKernels = target->hasMatmulKernels();
    bufferize.int4Group = options.int4Group;
    if (failed(timer.run("bufferization", [&] {
          return runStage(module, "hasten-bufferize-pipeline",
                          [&](OpPassManager &pm) { buildBufferizePipeline(pm, bufferize); },
                          options);
        })))
      return failure();
  }
  uint64_t weightBytes = 0;
  std::vector<WeightInfo> weights = collectWeights(module, weightBytes);
  if (options.memoryReport)
    *options.memoryReport << llvm::formatv(
        "{0:2}\n", llvm::json::Value(buildMemoryReport(
                       module, *kv, draftKV ? &*draftKV : nullptr, weightBytes, weights,
                       llvm::sys::path::filename(inputPath))));
  if (options.emit == EmitKind::MLIR)
    return success();
  if (options.emit == EmitKind::Buffer)
    return writeStage(module, Stage::Buffer, outputPath, fileLoc);

  if (failed(timer.run("lowering to LLVM dialect", [&] {
        return runStage(module, ("hasten-" + target->getName() + "-lowering-pipeline").str(),
                        [&](OpPassManager &pm) { target->buildLoweringPipeline(pm); }, options);
      })))
    return failure();
  std::vector<KVCacheDescription> caches;
  if (kv->decoder)
    caches.push_back({"", kv->blockSize > 0, kv->elementType, kv->layers, kv->kvHeads,
                      kv->headDim, kv->capacity, kv->blockSize, kv->deviceTokens,
                      kv->positionRows});
  if (draftKV)
    caches.push_back({kDraftModel.str(), draftKV->blockSize > 0, draftKV->elementType,
                      draftKV->layers, draftKV->kvHeads, draftKV->headDim, draftKV->capacity,
                      draftKV->blockSize, draftKV->deviceTokens, draftKV->positionRows});
  // The weights the lowering moved out of the code: into the library, or
  // into the sidecar next to it.
  FailureOr<std::optional<WeightSegment>> segment = timer.run("weight segment", [&] {
    return WeightSegment::take(module);
  });
  if (failed(segment))
    return failure();
  WeightStorageDescription storage;
  if (*segment) {
    storage.bytes = (*segment)->size();
    storage.hash = (*segment)->hash();
    storage.kind = WeightStorageDescription::Embedded;
    if (options.weightsFile == WeightsFile::Sidecar) {
      SmallString<256> sidecar(outputPath);
      llvm::sys::path::replace_extension(sidecar, "weights");
      if (sidecar == outputPath)
        return emitError(fileLoc) << "the output '" << outputPath
                                  << "' would be its own weights file; name it *.so";
      storage.kind = WeightStorageDescription::Sidecar;
      storage.file = llvm::sys::path::filename(sidecar).str();
      if (failed(timer.run("weights file", [&] {
            return (*segment)->writeSidecar(sidecar, fileLoc);
          })))
        return failure();
    }
  }
  std::vector<uint8_t> manifest =
      buildManifest(entries, weights, caches, llvm::sys::path::filename(inputPath),
                    target->describe(module), weightBytes, storage,
                    options.manifestFormatVersionOverride ? options.manifestFormatVersionOverride
                                                          : kManifestFormatVersion);
  SerializeRequest request{&entries, &manifest, inputPath, outputPath, options.emit, &timer};
  if (*segment && storage.kind == WeightStorageDescription::Embedded)
    request.embeddedWeights = &**segment;
  return target->serialize(module, request);
}
