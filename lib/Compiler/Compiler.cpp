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
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"

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
/// the user's pass-manager options.
LogicalResult runStage(ModuleOp module, StringRef name,
                       function_ref<void(OpPassManager &)> build,
                       const CompileOptions &options) {
  PassManager pm(module.getContext(), ModuleOp::getOperationName());
  build(pm);
  if (options.printPipeline) {
    *options.printPipeline << "// " << name << "\n";
    pm.printAsTextualPipeline(*options.printPipeline);
    *options.printPipeline << "\n";
  }
  if (options.configurePassManager && failed(options.configurePassManager(pm)))
    return failure();
  if (failed(pm.run(module)))
    return emitError(module.getLoc()) << "the " << name << " passes failed";
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

} // namespace

LogicalResult hasten::compileOnnxFile(StringRef inputPath, StringRef outputPath,
                                      const CompileOptions &options, MLIRContext &context,
                                      std::vector<PhaseTime> *times) {
  PhaseTimer timer(times);
  DialectRegistry registry;
  registerAllDialects(registry);
  registerAllExtensions(registry);
  registry.insert<HastenDialect>();
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  context.appendDialectRegistry(registry);
  registerCompilerPasses();
  Location fileLoc = FileLineColLoc::get(&context, inputPath, 0, 0);

  // The target first, so that a bad --cpu fails before any work.
  if (options.target != "cpu")
    return emitError(fileLoc) << "target '" << options.target
                              << "' is not supported yet (use --target=cpu)";
  std::unique_ptr<Target> target = createCpuTarget(options.cpu);
  if (failed(target->initialize(fileLoc)))
    return failure();

  auto imported = timer.run("import", [&] {
    return inputPath.ends_with(".mlir") ? parseMlirInput(inputPath, context)
                                        : importOnnxFile(inputPath, context, options.import);
  });
  if (failed(imported))
    return failure();
  ModuleOp module = imported->get();
  if (options.fuseAttention &&
      failed(timer.run("attention fusion", [&] {
        AttentionFusionPipelineOptions fusion;
        fusion.reportUnfused = options.reportUnfusedAttention;
        return runStage(module, "hasten-attention-fusion-pipeline",
                        [&](OpPassManager &pm) { buildAttentionFusionPipeline(pm, fusion); },
                        options);
      })))
    return failure();
  if (options.decoderEntries &&
      failed(timer.run("decoder entries", [&] {
        return runStage(module, "hasten-decoder-entries",
                        [](OpPassManager &pm) { pm.addPass(createDecoderEntries()); }, options);
      })))
    return failure();

  FailureOr<KVCachePlan> kv = planKVCache(module, options.kv);
  if (failed(kv))
    return failure();
  TensorPipelineOptions tensor;
  tensor.kvCapacity = kv->capacity;
  tensor.kvBlockSize = options.kv.blockSize;
  tensor.attention = options.attention;
  if (options.printAttentionPlan) {
    // The plan the tensor stage follows (generated) or the kernel's tiles,
    // seen before the op is lowered.
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
  if (failed(target->checkTensorLevel(module)))
    return failure();
  // The signatures as callers see them: after KV planning replaced the
  // decoder entries' past/present pairs by the cache.
  std::vector<EntrySignature> entries;
  for (auto func : module.getOps<func::FuncOp>())
    if (!func.isExternal())
      entries.push_back(readSignature(func));
  if (options.emit == EmitKind::MLIR && failed(writeModule(module, outputPath, fileLoc)))
    return failure();
  if (options.emit == EmitKind::MLIR && !options.memoryReport)
    return success();

  BufferizePipelineOptions bufferize;
  bufferize.weights = options.weights == WeightPrecision::BF16 ? "bf16" : "f32";
  if (failed(timer.run("bufferization", [&] {
        return runStage(module, "hasten-bufferize-pipeline",
                        [&](OpPassManager &pm) { buildBufferizePipeline(pm, bufferize); },
                        options);
      })))
    return failure();
  uint64_t weightBytes = 0;
  std::vector<WeightInfo> weights = collectWeights(module, weightBytes);
  if (options.memoryReport)
    *options.memoryReport << llvm::formatv(
        "{0:2}\n", llvm::json::Value(buildMemoryReport(
                       module, *kv, weightBytes, llvm::sys::path::filename(inputPath))));
  if (options.emit == EmitKind::MLIR)
    return success();

  if (failed(timer.run("lowering to LLVM dialect", [&] {
        return runStage(module, ("hasten-" + target->getName() + "-lowering-pipeline").str(),
                        [&](OpPassManager &pm) { target->buildLoweringPipeline(pm); }, options);
      })))
    return failure();
  std::vector<KVCacheDescription> caches;
  if (kv->decoder)
    caches.push_back({"", kv->blockSize > 0, kv->elementType, kv->layers, kv->kvHeads,
                      kv->headDim, kv->capacity, kv->blockSize});
  std::vector<uint8_t> manifest =
      buildManifest(entries, weights, caches, llvm::sys::path::filename(inputPath),
                    target->describe(),
                    weightBytes,
                    options.manifestFormatVersionOverride ? options.manifestFormatVersionOverride
                                                          : kManifestFormatVersion);
  return target->serialize(
      module, SerializeRequest{&entries, &manifest, inputPath, outputPath, options.emit, &timer});
}
