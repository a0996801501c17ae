//===- hasten-compile.cpp - ONNX model to shared library -------------------===//
//
// hasten-compile model.onnx --target=cpu -o model.so
//
//===----------------------------------------------------------------------===//

#include "hasten/Compiler/Compiler.h"
#include "hasten/Import/ImportCommandLine.h"
#include "hasten/Support/CommandLine.h"
#include "hasten/Support/Version.h"

#include "Manifest.h"

#include "mlir/IR/AsmState.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/Timing.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>

using namespace llvm;

static cl::OptionCategory toolCategory("hasten-compile options");
static hasten::ImportCommandLine importOptions(toolCategory);

static cl::opt<std::string> inputPath(cl::cat(toolCategory), cl::Positional,
                                      cl::desc("<model.onnx | module.mlir | module.mlirbc>"),
                                      cl::Required);
static cl::opt<std::string> outputPath(cl::cat(toolCategory), "o", cl::desc("Output file"), cl::value_desc("file"),
                                       cl::Required);
static cl::opt<std::string> targetName(cl::cat(toolCategory), "target",
                                       cl::desc("Code generation target: cpu (default) or cuda"),
                                       cl::init("cpu"));
static cl::list<std::string> gpus(cl::cat(toolCategory), "gpu", cl::CommaSeparated,
                                  cl::desc("With --target=cuda: GPU architectures, e.g. "
                                           "sm_80,sm_90 (PTX for the oldest, which the driver "
                                           "compiles for newer cards; cubins for sm_75 and up)"));
static cl::opt<std::string> gpuPrecision(
    cl::cat(toolCategory), "gpu-precision",
    cl::desc("With --target=cuda: operands of the GPU's products, accumulated in f32: f32 "
             "(default, exact for f32 models), tf32 (GEMMs on TF32 tensor cores, attention "
             "f32; sm_80 and newer), bf16 or f16 (GEMMs on tensor cores with their weights "
             "stored narrowed, and prefill attention on mma.sync: m16n8k16 when every --gpu "
             "is sm_80 or newer, else Volta's m8n8k4, f16 only)"),
    cl::init("f32"));
static cl::opt<std::string> gpuGemm(
    cl::cat(toolCategory), "gpu-gemm",
    cl::desc("With --target=cuda: who runs the matmuls: cublaslt (default: the runtime calls "
             "the toolkit's cuBLASLt) or generated (hasten's own f32 kernels; no library)"),
    cl::init("cublaslt"));
static cl::opt<std::string> cudaPath(cl::cat(toolCategory), "cuda-path",
                                     cl::desc("The CUDA toolkit whose ptxas assembles cubins"),
                                     cl::init("/usr/local/cuda"));
static cl::opt<hasten::EmitKind> compileTo(cl::cat(toolCategory),
    "compile-to",
    cl::desc("Stop after this stage; the MLIR stages (.mlir, or bytecode for .mlirbc) can be "
             "given back to hasten-compile to go on from there"),
    cl::init(hasten::EmitKind::Library),
    cl::values(clEnumValN(hasten::EmitKind::Import, "import", "the imported module"),
               clEnumValN(hasten::EmitKind::MLIR, "tensor",
                          "the optimized tensor-level module, decoder entries and KV cache "
                          "planned"),
               clEnumValN(hasten::EmitKind::Buffer, "buffer", "the bufferized module"),
               clEnumValN(hasten::EmitKind::LLVM, "llvm", "optimized LLVM IR"),
               clEnumValN(hasten::EmitKind::Object, "obj", "an object file"),
               clEnumValN(hasten::EmitKind::Library, "lib", "a shared library (default)")));
static cl::opt<hasten::EmitKind> emitKind(cl::cat(toolCategory),
    "emit", cl::desc("Older spelling of --compile-to"), cl::init(hasten::EmitKind::Library),
    cl::values(clEnumValN(hasten::EmitKind::MLIR, "mlir", "= --compile-to=tensor"),
               clEnumValN(hasten::EmitKind::LLVM, "llvm", "= --compile-to=llvm"),
               clEnumValN(hasten::EmitKind::Object, "obj", "= --compile-to=obj"),
               clEnumValN(hasten::EmitKind::Library, "lib", "= --compile-to=lib")));
static cl::opt<bool> progress(cl::cat(toolCategory), "progress",
    cl::desc("Announce each phase as it starts and ends (default: when stderr is a terminal)"));
static cl::opt<std::string> cpu(cl::cat(toolCategory), "cpu", cl::desc("Target CPU: native (the default: this machine's CPU and "
                                           "features), x86-64, x86-64-v2, x86-64-v3 (any CPU with "
                                           "AVX2), x86-64-v4 (AVX-512), or a CPU name such as "
                                           "sapphirerapids or znver5"));
static cl::opt<std::string> cpuFeatures(cl::cat(toolCategory), "cpu-features",
                                        cl::desc("Extra target features, e.g. +avx2,-avx512f"));
static cl::opt<std::string> weights(cl::cat(toolCategory), 
    "weights", cl::desc("Precision of matmul weights: f32 (default), bf16 (bf16 x bf16 "
                        "with f32 accumulation, on AMX/AVX512-BF16 where present), int8 "
                        "(per output channel scales) or int4 (per --int4-group rows and "
                        "channel, f16 scales); int8 and int4 are weight-only, activations "
                        "stay f32"),
    cl::init("f32"));
static cl::opt<int64_t> int4Group(cl::cat(toolCategory), "int4-group",
    cl::desc("Rows of a weight that share one int4 scale: 32 (default), 64 or 128"), cl::init(32));
static cl::opt<std::string> weightsFile(cl::cat(toolCategory), "weights-file",
    cl::desc("Where a library's weights go: embed (default: a page-aligned section of the "
             ".so) or sidecar (OUTPUT with the extension .weights, next to it); the runtime "
             "maps them read-only either way"),
    cl::init("embed"));
static cl::opt<int64_t> parallelMinWork(cl::cat(toolCategory), 
    "parallel-min-work",
    cl::desc("Generated loops with fewer total iterations run on one thread"),
    cl::init(32768));
static cl::opt<std::string> runtimeRPath(cl::cat(toolCategory), "runtime-rpath",
    cl::desc("The module's RUNPATH, where the loader finds libhasten_runtime.so "
             "(colon-separated; empty for none). Default: this hasten's lib folder and $ORIGIN"),
    cl::value_desc("dirs"));
static cl::opt<bool> timing(cl::cat(toolCategory), "timing", cl::desc("Print the time each compiler phase took"));
static cl::opt<bool> printIRAfterAll(cl::cat(toolCategory), "print-ir-after-all",
                                     cl::desc("Print the IR after every MLIR pass"));
// Test hooks for the runtime's refusals; hidden from --help.
static cl::opt<unsigned> manifestVersionOverride(cl::cat(toolCategory), 
    "test-manifest-format-version", cl::Hidden,
    cl::desc("Write this manifest format version (testing only)"), cl::init(0));
static cl::list<std::string> extraCpuFeatures(cl::cat(toolCategory), 
    "test-require-cpu-feature", cl::Hidden,
    cl::desc("Require this extra cpuinfo feature in the manifest (testing only)"));
static cl::opt<int64_t> kvCapacity(cl::cat(toolCategory), 
    "kv-capacity", cl::desc("Tokens the KV cache of one sequence holds (decoders; "
                            "default: what --kv-budget allows, else 1024)"),
    cl::init(0));
static cl::opt<int64_t> kvBlockSize(cl::cat(toolCategory), 
    "kv-block-size", cl::desc("Use a paged KV cache with blocks of N tokens (0: contiguous)"),
    cl::init(0));
static cl::opt<int64_t> kvDeviceTokens(cl::cat(toolCategory), 
    "kv-device-tokens",
    cl::desc("With --target=cuda and --kv-block-size: tokens of each KV pool kept in device "
             "memory, the older blocks in pinned host memory the GPU reads over the bus "
             "(-1: all on the device; hasten-run --kv-device-tokens overrides it)"),
    cl::init(-1));
static cl::opt<std::string> kvBudget(cl::cat(toolCategory), 
    "kv-budget", cl::desc("Bytes one sequence's KV cache may take (suffixes K, M, G)"));
static cl::opt<bool> memoryReport(cl::cat(toolCategory), 
    "memory-report", cl::desc("Print the memory plan (weights, KV cache, activations) as JSON"));
static cl::opt<bool> noDecoderEntries(cl::cat(toolCategory), 
    "no-decoder-entries",
    cl::desc("Do not add prefill/decode entries to a decoder (keep only its graph as 'main')"));
static cl::opt<bool> noVerifyEntry(cl::cat(toolCategory),
    "no-verify-entry",
    cl::desc("Do not add the verify entry (logits for every token given) that speculative "
             "decoding checks proposals with"));
static cl::opt<std::string> draftModel(cl::cat(toolCategory),
    "draft",
    cl::desc("A draft decoder (.onnx or .mlir) to compile into the module for speculative "
             "decoding; its entries are draft_prefill, draft_decode and draft_verify"),
    cl::value_desc("draft.onnx"));
static cl::opt<int64_t> specK(cl::cat(toolCategory),
    "spec-k",
    cl::desc("With --draft, add the fused spec_step entry: K draft steps (argmax, or a draw "
             "at a temperature), the target's verification and the acceptance in one call "
             "(0: none)"),
    cl::init(0));
static cl::opt<std::string> samplerSpec(cl::cat(toolCategory), "sampler",
    cl::desc("Compile a denoiser's few-step sampler into a `generate` entry: "
             "euler-flow:steps=N, ddim:timesteps=999,759,499,259 (or steps=N), "
             "consistency:steps=N; keys prediction=eps|v|sample, beta-schedule=scaled-linear|"
             "linear, beta-start=, beta-end="),
    cl::value_desc("SPEC"));
static cl::opt<std::string> samplerInputs(cl::cat(toolCategory), "sampler-inputs",
    cl::desc("The denoiser's sampled and time inputs, and optionally its conditioning: "
             "x=NAME,t=NAME,cond=NAME (default x=sample,t=timestep; the other inputs are "
             "conditioning)"),
    cl::value_desc("BINDINGS"));
static cl::opt<std::string> cfgMode(cl::cat(toolCategory), "cfg",
    cl::desc("Classifier-free guidance: none, full (conditional and negative passes in one "
             "batch), rcfg-self or rcfg-onetime (StreamDiffusion's residual CFG); default full "
             "when --cfg-scale is given"),
    cl::value_desc("MODE"));
static cl::opt<double> cfgScale(cl::cat(toolCategory), "cfg-scale",
    cl::desc("The guidance scale of --cfg"), cl::init(1.0));
static cl::opt<int64_t> samplerBatch(cl::cat(toolCategory), "sampler-batch",
    cl::desc("Samples one generate call makes (default 1)"), cl::init(1));
static cl::opt<int64_t> streamBatch(cl::cat(toolCategory), "stream-batch",
    cl::desc("StreamDiffusion's stream batch: N frames in flight, one per sampler step, "
             "denoised in one call per tick by the generate_stream entry (N = the steps)"),
    cl::init(0));
static cl::opt<bool> noFuseAttention(cl::cat(toolCategory),
    "no-fuse-attention",
    cl::desc("Keep decomposed attention (matmul, softmax, matmul) as it was imported"));
static cl::opt<bool> reportUnfusedAttention(cl::cat(toolCategory),
    "report-unfused-attention",
    cl::desc("Say why each softmax-weighted matmul was not fused into hasten.attention"));
static cl::opt<std::string> attentionMode(cl::cat(toolCategory),
    "attention",
    cl::desc("How attention runs: 'kernel' (the runtime's tiled kernel, default) or "
             "'generated' (tiled in IR by --hasten-tile-attention and compiled with the model)"),
    cl::init("kernel"));
static cl::opt<bool> printAttentionPlan(cl::cat(toolCategory),
    "print-attention-plan",
    cl::desc("Print each attention's tiling plan and on-chip working set"));
static cl::opt<bool> verifyEach(
    cl::cat(toolCategory), "verify-each",
    cl::desc("Verify the IR after every pass, not only after each stage (slower; names the "
             "pass that left invalid IR)"));
static cl::opt<bool> printPipeline(
    cl::cat(toolCategory), "print-pipeline",
    cl::desc("Print each stage's pass pipeline as hasten-opt --pass-pipeline takes it"));

int main(int argc, char **argv) {
  InitLLVM init(argc, argv);
  hasten::installVersionPrinter("hasten-compile", hasten::kManifestFormatVersion);
  hasten::hideForeignOptions({&toolCategory});
  hasten::registerCompilerPasses();
  mlir::registerPassManagerCLOptions();
  mlir::registerMLIRContextCLOptions();
  mlir::registerAsmPrinterCLOptions();
  mlir::registerDefaultTimingManagerCLOptions();
  cl::ParseCommandLineOptions(argc, argv, "hasten ahead-of-time compiler\n");

  mlir::MLIRContext context;
  mlir::ScopedDiagnosticHandler handler(&context, [](mlir::Diagnostic &diag) {
    errs() << "hasten-compile: "
           << (diag.getSeverity() == mlir::DiagnosticSeverity::Error     ? "error: "
               : diag.getSeverity() == mlir::DiagnosticSeverity::Remark  ? "remark: "
               : diag.getSeverity() == mlir::DiagnosticSeverity::Warning ? "warning: "
                                                                         : "note: ")
           << diag.str() << "\n";
    for (const mlir::Diagnostic &note : diag.getNotes())
      errs() << "  note: " << note.str() << "\n";
    return mlir::success();
  });

  hasten::CompileOptions options;
  if (emitKind.getNumOccurrences() && compileTo.getNumOccurrences()) {
    errs() << "hasten-compile: error: give --compile-to or --emit, not both\n";
    return 1;
  }
  options.emit = emitKind.getNumOccurrences() ? emitKind : compileTo;
  if (progress || (!progress.getNumOccurrences() && sys::Process::StandardErrIsDisplayed()))
    options.progress = &errs();
  options.target = targetName;
  options.cuda.gpus.assign(gpus.begin(), gpus.end());
  options.cuda.cudaPath = cudaPath;
  options.cuda.precision = gpuPrecision;
  options.cuda.gemm = gpuGemm;
  options.cpu.cpu = cpu;
  options.cpu.cpuFeatures = cpuFeatures;
  if (weights != "f32" && weights != "bf16" && weights != "int8" && weights != "int4") {
    errs() << "hasten-compile: error: --weights must be f32, bf16, int8 or int4, got '"
           << weights << "'\n";
    return 1;
  }
  if (int4Group != 32 && int4Group != 64 && int4Group != 128) {
    errs() << "hasten-compile: error: --int4-group must be 32, 64 or 128, got " << int4Group << "\n";
    return 1;
  }
  if (weightsFile != "embed" && weightsFile != "sidecar") {
    errs() << "hasten-compile: error: --weights-file must be embed or sidecar, got '"
           << weightsFile << "'\n";
    return 1;
  }
  options.weights = weights;
  options.int4Group = int4Group;
  options.weightsFile =
      weightsFile == "sidecar" ? hasten::WeightsFile::Sidecar : hasten::WeightsFile::Embed;
  options.cpu.parallelMinWork = parallelMinWork;
  // The runtime library sits in ../lib next to the tools.
  std::string self = sys::fs::getMainExecutable(argv[0], (void *)&main);
  SmallString<256> runtimeDir(sys::path::parent_path(sys::path::parent_path(self)));
  sys::path::append(runtimeDir, "lib");
  options.cpu.runtimeLibraryDir = std::string(runtimeDir);
  if (runtimeRPath.getNumOccurrences())
    options.cpu.runtimeRPath = runtimeRPath.getValue();
  options.decoderEntries = !noDecoderEntries;
  options.verifyEntry = !noVerifyEntry;
  options.draftPath = draftModel;
  if (specK < 0 || specK > 32) {
    errs() << "hasten-compile: error: --spec-k must be in [0, 32], got " << specK << "\n";
    return 1;
  }
  options.speculationK = specK;
  options.sampler.spec = samplerSpec;
  options.sampler.inputs = samplerInputs;
  options.sampler.batch = samplerBatch;
  options.sampler.streamBatch = streamBatch;
  options.sampler.cfgScale = cfgScale;
  options.sampler.cfg = cfgMode.getNumOccurrences() ? cfgMode.getValue()
                        : cfgScale.getNumOccurrences() ? "full"
                                                        : "none";
  if (samplerSpec.empty() && (samplerInputs.getNumOccurrences() || cfgMode.getNumOccurrences() ||
                              cfgScale.getNumOccurrences() || samplerBatch.getNumOccurrences() ||
                              streamBatch.getNumOccurrences())) {
    errs() << "hasten-compile: error: --sampler-inputs, --cfg, --cfg-scale, --sampler-batch "
              "and --stream-batch need --sampler\n";
    return 1;
  }
  if (options.sampler.cfg != "none" && !cfgScale.getNumOccurrences()) {
    errs() << "hasten-compile: error: --cfg=" << options.sampler.cfg << " needs --cfg-scale\n";
    return 1;
  }
  options.fuseAttention = !noFuseAttention;
  options.reportUnfusedAttention = reportUnfusedAttention;
  if (attentionMode != "kernel" && attentionMode != "generated") {
    errs() << "hasten-compile: error: --attention must be kernel or generated, got '"
           << attentionMode << "'\n";
    return 1;
  }
  options.attention = attentionMode;
  options.printAttentionPlan = printAttentionPlan;
  options.kv.capacity = kvCapacity;
  options.kv.blockSize = kvBlockSize;
  options.kv.deviceTokens = kvDeviceTokens;
  if (kvDeviceTokens < -1) {
    errs() << "hasten-compile: error: --kv-device-tokens must be -1 (all on the device) or a "
              "token count, got " << kvDeviceTokens << "\n";
    return 1;
  }
  if (kvCapacity < 0 || kvBlockSize < 0) {
    errs() << "hasten-compile: error: --kv-capacity and --kv-block-size must not be negative\n";
    return 1;
  }
  if (!kvBudget.empty()) {
    StringRef text = kvBudget;
    uint64_t scale = 1;
    if (text.consume_back("K") || text.consume_back("k"))
      scale = 1ull << 10;
    else if (text.consume_back("M") || text.consume_back("m"))
      scale = 1ull << 20;
    else if (text.consume_back("G") || text.consume_back("g"))
      scale = 1ull << 30;
    uint64_t value;
    if (text.getAsInteger(10, value) || value == 0) {
      errs() << "hasten-compile: error: --kv-budget must be a positive byte count such as "
                "64M, got '" << kvBudget << "'\n";
      return 1;
    }
    options.kv.budgetBytes = value * scale;
  }
  if (memoryReport)
    options.memoryReport = &outs();
  if (printPipeline)
    options.printPipeline = &outs();
  options.verifyEachPass = verifyEach;
  options.manifestFormatVersionOverride = manifestVersionOverride;
  options.cpu.extraRequiredFeatures.assign(extraCpuFeatures.begin(), extraCpuFeatures.end());
  if (std::string error; !importOptions.apply(options.import, error)) {
    errs() << "hasten-compile: error: " << error << "\n";
    return 1;
  }
  // --mlir-timing: one report for every stage's passes.
  mlir::DefaultTimingManager timingManager;
  mlir::applyDefaultTimingManagerCLOptions(timingManager);
  mlir::TimingScope timingRoot = timingManager.getRootScope();
  // --mlir-print-ir-tree-dir=DIR: each stage prints into its own numbered
  // folder (DIR/01_hasten-attention-fusion-pipeline, ...), so that later
  // stages do not overwrite earlier ones' files.
  auto *treeDir = static_cast<cl::opt<std::string> *>(
      cl::getRegisteredOptions().lookup("mlir-print-ir-tree-dir"));
  std::string treeRoot = treeDir ? treeDir->getValue() : std::string();
  unsigned stageNumber = 0;
  options.configurePassManager = [&](mlir::PassManager &pm,
                                     StringRef stage) -> mlir::LogicalResult {
    if (printIRAfterAll) {
      pm.getContext()->disableMultithreading();
      pm.enableIRPrinting();
    }
    ++stageNumber;
    if (!treeRoot.empty()) {
      std::string dir =
          (Twine(treeRoot) + "/" + formatv("{0:02}", stageNumber) + "_" + stage).str();
      if (std::error_code ec = sys::fs::create_directories(dir))
        return pm.getContext()->getDiagEngine().emit(mlir::UnknownLoc::get(pm.getContext()),
                                                     mlir::DiagnosticSeverity::Error)
               << "cannot create '" << dir << "': " << ec.message();
      treeDir->setValue(dir);
    }
    if (timingManager.isEnabled())
      pm.enableTiming(timingRoot);
    return mlir::applyPassManagerCLOptions(pm);
  };

  std::vector<hasten::PhaseTime> times;
  auto start = std::chrono::steady_clock::now();
  bool ok = succeeded(
      hasten::compileOnnxFile(inputPath, outputPath, options, context, &times));
  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (timing) {
    errs() << "hasten-compile: phase times for " << inputPath << "\n";
    for (const auto &t : times)
      errs() << format("  %8.3f s  %s\n", t.seconds, t.phase.c_str());
    errs() << format("  %8.3f s  total\n", total);
  }
  return ok ? 0 : 1;
}
