//===- Compiler.cpp - ONNX to shared library, in process -------------------===//
//
// import -> tensor-level hasten passes -> one-shot bufferization and buffer
// deallocation -> loops -> LLVM dialect -> LLVM IR (+ entry wrappers and the
// manifest) -> O3 -> object (TargetMachine) -> shared library (ld.lld).
//
//===----------------------------------------------------------------------===//

#include "hasten/Compiler/Compiler.h"

#include "Manifest.h"
#include "MemoryPlan.h"
#include "hasten/Dialect/Hasten/HastenDialect.h"
#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/BuiltinDialect.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/IR/IRBuilder.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/IR/Verifier.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FileUtilities.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/Target/TargetOptions.h"
#include "llvm/TargetParser/Host.h"

#include <onnx/onnx_pb.h>

#include <chrono>

using namespace mlir;
using namespace hasten;

const char *hasten::getCompilerVersion() { return "hasten 0.1.0 (MLIR/LLVM 22)"; }

void hasten::registerCompilerPasses() {
  static bool registered = [] {
    registerAllPasses();
    registerHastenPasses();
    return true;
  }();
  (void)registered;
}

namespace {

/// Runs `body` and records its duration under `phase`.
class PhaseTimer {
public:
  explicit PhaseTimer(std::vector<PhaseTime> *times) : times(times) {}
  template <typename Fn>
  auto run(StringRef phase, Fn &&body) {
    auto start = std::chrono::steady_clock::now();
    auto result = body();
    if (times)
      times->push_back({phase.str(), std::chrono::duration<double>(
                                         std::chrono::steady_clock::now() - start)
                                         .count()});
    return result;
  }

private:
  std::vector<PhaseTime> *times;
};

//===----------------------------------------------------------------------===//
// The manifest
//===----------------------------------------------------------------------===//

manifest::DType dtypeFor(int32_t onnxType) {
  switch (onnxType) {
  case onnx::TensorProto::DOUBLE:
    return manifest::DType_f64;
  case onnx::TensorProto::FLOAT16:
    return manifest::DType_f16;
  case onnx::TensorProto::BFLOAT16:
    return manifest::DType_bf16;
  case onnx::TensorProto::BOOL:
    return manifest::DType_i1;
  case onnx::TensorProto::INT8:
    return manifest::DType_i8;
  case onnx::TensorProto::INT16:
    return manifest::DType_i16;
  case onnx::TensorProto::INT32:
    return manifest::DType_i32;
  case onnx::TensorProto::INT64:
    return manifest::DType_i64;
  case onnx::TensorProto::UINT8:
    return manifest::DType_u8;
  case onnx::TensorProto::UINT16:
    return manifest::DType_u16;
  case onnx::TensorProto::UINT32:
    return manifest::DType_u32;
  case onnx::TensorProto::UINT64:
    return manifest::DType_u64;
  default:
    return manifest::DType_f32;
  }
}

/// What the manifest says about one entry, read off the imported function
/// before lowering erases names and element types.
struct EntrySignature {
  std::string name;
  struct Tensor {
    std::string name;
    int32_t onnxType;
    SmallVector<int64_t> dims;
    SmallVector<std::string> dimNames;
  };
  std::vector<Tensor> inputs, outputs;
};

EntrySignature readSignature(func::FuncOp func) {
  EntrySignature sig;
  sig.name = func.getSymName().str();
  auto read = [&](Type type, DictionaryAttr attrs) {
    EntrySignature::Tensor t;
    auto shaped = cast<ShapedType>(type);
    t.dims.assign(shaped.getShape().begin(), shaped.getShape().end());
    if (auto name = attrs ? attrs.getAs<StringAttr>("onnx.name") : nullptr)
      t.name = name.str();
    auto elem = attrs ? attrs.getAs<IntegerAttr>("onnx.elem_type") : nullptr;
    t.onnxType = elem ? elem.getInt() : onnx::TensorProto::FLOAT;
    auto dimNames = attrs ? attrs.getAs<ArrayAttr>("onnx.dim_params") : nullptr;
    for (size_t d = 0; d < t.dims.size(); ++d)
      t.dimNames.push_back(dimNames && d < dimNames.size()
                               ? cast<StringAttr>(dimNames[d]).str()
                               : std::string());
    return t;
  };
  for (unsigned i = 0; i < func.getNumArguments(); ++i)
    sig.inputs.push_back(read(func.getArgumentTypes()[i], func.getArgAttrDict(i)));
  for (unsigned i = 0; i < func.getNumResults(); ++i)
    sig.outputs.push_back(read(func.getResultTypes()[i], func.getResultAttrDict(i)));
  return sig;
}

/// One embedded weight, for the manifest.
struct WeightInfo {
  std::string name;
  manifest::DType dtype;
  SmallVector<int64_t> dims;
  uint64_t bytes;
};

manifest::DType dtypeForElement(Type element) {
  if (element.isF64())
    return manifest::DType_f64;
  if (element.isF16())
    return manifest::DType_f16;
  if (element.isBF16())
    return manifest::DType_bf16;
  if (element.isInteger(1))
    return manifest::DType_i1;
  if (element.isInteger(8))
    return manifest::DType_i8;
  if (element.isInteger(16))
    return manifest::DType_i16;
  if (element.isInteger(32))
    return manifest::DType_i32;
  if (element.isInteger(64))
    return manifest::DType_i64;
  return manifest::DType_f32;
}

std::vector<uint8_t> buildManifest(const std::vector<EntrySignature> &entries,
                                   ArrayRef<WeightInfo> weights, StringRef source,
                                   StringRef triple, StringRef cpu,
                                   ArrayRef<std::string> features, uint64_t weightBytes,
                                   uint32_t formatVersion) {
  flatbuffers::FlatBufferBuilder fbb;
  auto tensors = [&](const std::vector<EntrySignature::Tensor> &list) {
    std::vector<flatbuffers::Offset<manifest::TensorSig>> sigs;
    for (const auto &t : list) {
      std::vector<flatbuffers::Offset<manifest::Dim>> dims;
      for (size_t d = 0; d < t.dims.size(); ++d)
        dims.push_back(manifest::CreateDim(
            fbb, ShapedType::isDynamic(t.dims[d]) ? -1 : t.dims[d],
            fbb.CreateString(t.dimNames[d])));
      sigs.push_back(manifest::CreateTensorSig(fbb, fbb.CreateString(t.name),
                                               dtypeFor(t.onnxType),
                                               fbb.CreateVector(dims)));
    }
    return fbb.CreateVector(sigs);
  };
  std::vector<flatbuffers::Offset<manifest::Entry>> entryOffsets;
  for (const auto &e : entries) {
    auto inputs = tensors(e.inputs);
    auto outputs = tensors(e.outputs);
    entryOffsets.push_back(manifest::CreateEntry(
        fbb, fbb.CreateString(e.name),
        fbb.CreateString(std::string(kEntrySymbolPrefix) + e.name), inputs, outputs));
  }
  std::vector<flatbuffers::Offset<flatbuffers::String>> featureOffsets;
  for (const std::string &f : features)
    featureOffsets.push_back(fbb.CreateString(f));
  std::vector<flatbuffers::Offset<manifest::Weight>> weightOffsets;
  for (const WeightInfo &w : weights)
    weightOffsets.push_back(manifest::CreateWeight(
        fbb, fbb.CreateString(w.name), w.dtype,
        fbb.CreateVector(std::vector<int64_t>(w.dims.begin(), w.dims.end())), w.bytes));
  auto module = manifest::CreateModule(
      fbb, formatVersion, fbb.CreateString(getCompilerVersion()),
      fbb.CreateString(source.str()), fbb.CreateString(triple.str()),
      fbb.CreateString(cpu.str()), fbb.CreateVector(featureOffsets), weightBytes,
      fbb.CreateVector(entryOffsets), fbb.CreateVector(weightOffsets));
  manifest::FinishModuleBuffer(fbb, module);
  return std::vector<uint8_t>(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
}

//===----------------------------------------------------------------------===//
// MLIR pipelines
//===----------------------------------------------------------------------===//

/// Tensor-level optimization: KV-cache planning for decoder entries ({0} is
/// the capacity, {1} the block size), the hasten passes and elementwise
/// fusion.
constexpr const char *kTensorPipeline =
    "builtin.module(hasten-plan-kv-cache{{capacity={0} block-size={1}}, "
    "hasten-lower-kv-cache, hasten-attention-to-runtime-calls, canonicalize, cse, "
    "func.func(hasten-decompose-aggregated-ops, hasten-fuse-elementwise, "
    "hasten-approximate-math), "
    "canonicalize, cse)";

/// Bufferization, deallocation and the matmuls as runtime calls; the memory
/// plan is read off the result. {0} is the weights precision.
constexpr const char *kBufferizePipeline =
    "builtin.module("
    "one-shot-bufferize{{bufferize-function-boundaries "
    "function-boundary-type-conversion=identity-layout-map "
    "allow-return-allocs-from-loops}, "
    "buffer-deallocation-pipeline, convert-bufferization-to-memref, "
    "hasten-matmul-to-runtime-calls{{weights={0}}, "
    "func.func(canonicalize, hasten-dealloc-after-last-use))";

/// Loops on the runtime's thread pool, and the conversion to the LLVM
/// dialect. {0} is the smallest loop worth running in parallel.
constexpr const char *kLoweringPipeline =
    "builtin.module("
    "func.func(hasten-memref-copy-to-linalg, convert-linalg-to-parallel-loops), "
    "hasten-outline-parallel-loops{{min-work={0}}, "
    "func.func(hasten-expand-shape-to-reinterpret-cast), "
    "expand-strided-metadata, lower-affine, "
    "convert-scf-to-cf, convert-math-to-llvm, convert-math-to-libm, "
    "finalize-memref-to-llvm, convert-arith-to-llvm, convert-index-to-llvm, "
    "convert-cf-to-llvm, convert-func-to-llvm, reconcile-unrealized-casts)";

LogicalResult runPipeline(ModuleOp module, StringRef pipeline, StringRef phase,
                          const CompileOptions &options) {
  std::string errors;
  llvm::raw_string_ostream errorStream(errors);
  FailureOr<OpPassManager> parsed = parsePassPipeline(pipeline, errorStream);
  if (failed(parsed))
    return emitError(module.getLoc()) << "internal error: bad " << phase
                                      << " pipeline: " << errors;
  PassManager pm(module.getContext());
  static_cast<OpPassManager &>(pm) = std::move(*parsed);
  if (options.configurePassManager && failed(options.configurePassManager(pm)))
    return failure();
  if (failed(pm.run(module)))
    return emitError(module.getLoc()) << "the " << phase << " passes failed";
  return success();
}

//===----------------------------------------------------------------------===//
// LLVM
//===----------------------------------------------------------------------===//

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
}

/// Everything but the entry wrappers and the manifest becomes internal, so
/// the module exports only the hasten ABI and O3 can inline freely.
void internalize(llvm::Module &m) {
  for (llvm::Function &f : m.functions())
    if (!f.isDeclaration() && !f.getName().starts_with("hasten_"))
      f.setLinkage(llvm::GlobalValue::InternalLinkage);
  for (llvm::GlobalVariable &g : m.globals())
    if (!g.isDeclaration() && !g.getName().starts_with("hasten_"))
      g.setLinkage(llvm::GlobalValue::InternalLinkage);
}

void optimize(llvm::Module &m, llvm::TargetMachine *tm) {
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PassBuilder pb(tm);
  pb.registerModuleAnalyses(mam);
  pb.registerCGSCCAnalyses(cgam);
  pb.registerFunctionAnalyses(fam);
  pb.registerLoopAnalyses(lam);
  pb.crossRegisterProxies(lam, fam, cgam, mam);
  llvm::ModulePassManager mpm = pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3);
  mpm.run(m, mam);
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
                               const CompileOptions &options, Location loc) {
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

//===----------------------------------------------------------------------===//
// KV cache and memory plan
//===----------------------------------------------------------------------===//

/// The cache the decoder entries get, chosen before planning.
struct KVCachePlan {
  bool decoder = false;
  int64_t layers = 0, kvHeads = 0, headDim = 0, elementBytes = 4;
  int64_t bytesPerToken = 0;
  int64_t capacity = 1024;
  /// Tokens per block; 0 for a contiguous cache.
  int64_t blockSize = 0;
  /// --kv-budget, and the tokens it holds (whole blocks when paged).
  uint64_t budgetBytes = 0;
  int64_t budgetTokens = 0;
};

FailureOr<KVCachePlan> chooseKVCache(ModuleOp module, const CompileOptions &options) {
  KVCachePlan plan;
  for (auto func : module.getOps<func::FuncOp>()) {
    if (!func->hasAttr("hasten.decoder_entry"))
      continue;
    plan.decoder = true;
    plan.layers = 0;
    for (unsigned i = 0; i < func.getNumArguments(); ++i) {
      auto name = func.getArgAttrOfType<StringAttr>(i, "onnx.name");
      if (!name || !name.getValue().starts_with("past_key_values.") ||
          !name.getValue().ends_with(".key"))
        continue;
      auto type = cast<RankedTensorType>(func.getArgumentTypes()[i]);
      ++plan.layers;
      plan.kvHeads = type.getDimSize(1);
      plan.headDim = type.getDimSize(3);
      plan.elementBytes = std::max<int64_t>(1, type.getElementTypeBitWidth() / 8);
    }
  }
  if (!plan.decoder)
    return plan;
  if (ShapedType::isDynamic(plan.kvHeads) || ShapedType::isDynamic(plan.headDim))
    return emitError(module.getLoc(), "the decoder's past_key_values need static "
                                      "kv_heads and head_dim");
  plan.bytesPerToken = plan.layers * 2 * plan.kvHeads * plan.headDim * plan.elementBytes;
  plan.blockSize = options.kvBlockSize;
  int64_t block = std::max<int64_t>(1, options.kvBlockSize);
  plan.budgetBytes = options.kvBudgetBytes;
  plan.budgetTokens = options.kvBudgetBytes / plan.bytesPerToken / block * block;
  if (options.kvCapacity > 0) {
    plan.capacity = options.kvCapacity;
  } else if (options.kvBudgetBytes > 0) {
    plan.capacity = plan.budgetTokens;
    if (plan.capacity == 0)
      return emitError(module.getLoc(), "--kv-budget=")
             << options.kvBudgetBytes << " holds no " << (block > 1 ? "block" : "token")
             << ": one token takes " << plan.bytesPerToken << " bytes";
  }
  if (options.kvBlockSize > 0 && plan.capacity % options.kvBlockSize != 0)
    return emitError(module.getLoc(), "the KV capacity (")
           << plan.capacity << " tokens) must be a multiple of --kv-block-size ("
           << options.kvBlockSize << ")";
  if (options.kvBudgetBytes > 0 &&
      uint64_t(plan.capacity * plan.bytesPerToken) > options.kvBudgetBytes)
    return emitError(module.getLoc(), "--kv-capacity=")
           << plan.capacity << " needs " << plan.capacity * plan.bytesPerToken
           << " bytes of KV cache, more than --kv-budget=" << options.kvBudgetBytes;
  return plan;
}

/// One entry's activation plan at its largest workload.
struct EntryPlan {
  std::string entry;
  PlanWorkload workload;
  ActivationPlan plan;
};

/// Plans the activations of every function of the bufferized module:
/// decoder entries at their largest workload (a full prefill, a decode at
/// the last position), other functions with every dynamic dimension at 1.
std::vector<EntryPlan> planEntries(ModuleOp module, const KVCachePlan &kv) {
  std::vector<EntryPlan> plans;
  for (auto func : module.getOps<func::FuncOp>()) {
    if (func.isExternal())
      continue;
    auto kind = func->getAttrOfType<StringAttr>("hasten.decoder_entry");
    PlanWorkload workload;
    if (kind && kind.getValue() == "prefill")
      workload = {kv.capacity, 0, 1};
    else if (kind && kind.getValue() == "decode")
      workload = {1, kv.capacity - 1, 1};
    plans.push_back({func.getSymName().str(), workload, planActivations(func, workload)});
  }
  return plans;
}

void writeMemoryReport(llvm::raw_ostream &os, ModuleOp module, const KVCachePlan &kv,
                       uint64_t weightBytes, StringRef source,
                       const std::vector<EntryPlan> &plans) {
  os << "{\n  \"model\": \"" << source << "\",\n";
  os << "  \"weight_bytes\": " << weightBytes << ",\n";
  if (kv.decoder) {
    int64_t block = kv.blockSize;
    os << "  \"kv_cache\": {\n";
    os << "    \"layout\": \"" << (block ? "paged" : "contiguous") << "\",\n";
    os << "    \"layers\": " << kv.layers << ", \"kv_heads\": " << kv.kvHeads
       << ", \"head_dim\": " << kv.headDim << ", \"element_bytes\": " << kv.elementBytes
       << ",\n";
    os << "    \"bytes_per_token\": " << kv.bytesPerToken << ",\n";
    os << "    \"capacity_tokens\": " << kv.capacity << ",\n";
    os << "    \"bytes_per_sequence\": " << kv.capacity * kv.bytesPerToken;
    if (kv.budgetBytes)
      os << ",\n    \"budget_bytes\": " << kv.budgetBytes
         << ", \"max_tokens_under_budget\": " << kv.budgetTokens;
    if (block) {
      // A sequence of n tokens holds ceil(n / block) blocks; the unused
      // slots of its last block are the internal fragmentation.
      os << ",\n    \"block_size\": " << block << ",\n";
      os << "    \"blocks_per_sequence\": " << kv.capacity / block << ",\n";
      os << "    \"block_bytes\": " << block * kv.bytesPerToken << ",\n";
      os << "    \"fragmentation\": {\"worst_bytes_per_sequence\": "
         << (block - 1) * kv.bytesPerToken << ", \"mean_bytes_per_sequence\": "
         << (block - 1) * kv.bytesPerToken / 2 << ", \"worst_fraction_at_capacity\": "
         << llvm::format("%.4f", double(block - 1) / kv.capacity) << "}";
    }
    os << "\n  },\n";
  }
  os << "  \"activations\": [";
  bool first = true;
  for (const EntryPlan &p : plans) {
    // What the code allocates: one arena for the static-shape buffers
    // (hasten-pack-static-buffers), plus its dynamic-shape buffers.
    auto func = module.lookupSymbol<func::FuncOp>(p.entry);
    auto arena = func ? func->getAttrOfType<IntegerAttr>("hasten.arena_bytes") : nullptr;
    auto inArena = func ? func->getAttrOfType<IntegerAttr>("hasten.arena_buffers") : nullptr;
    os << (first ? "\n" : ",\n") << "    {\"entry\": \"" << p.entry
       << "\", \"tokens\": " << p.workload.tokens << ", \"past_length\": "
       << p.workload.pastLength << ", \"buffers\": " << p.plan.buffers
       << ", \"total_bytes\": " << p.plan.totalBytes
       << ", \"peak_live_bytes\": " << p.plan.peakLiveBytes
       << ", \"planned_arena_bytes\": " << p.plan.arenaBytes
       << ", \"static_arena_bytes\": " << (arena ? arena.getInt() : 0)
       << ", \"static_arena_buffers\": " << (inArena ? inArena.getInt() : 0)
       << ", \"unknown_sizes\": " << p.plan.unknownSizes << "}";
    first = false;
  }
  os << "\n  ]\n}\n";
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

  // The target machine first, so that a bad --cpu fails before any work.
  static bool targetsInitialized = [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
    return true;
  }();
  (void)targetsInitialized;
  llvm::Triple triple(llvm::sys::getDefaultTargetTriple());
  std::string error;
  const llvm::Target *target = llvm::TargetRegistry::lookupTarget(triple, error);
  if (!target)
    return emitError(fileLoc) << "no LLVM target for " << triple.str() << ": " << error;
  FailureOr<CpuChoice> cpuChoice = chooseCpu(*target, triple, options, fileLoc);
  if (failed(cpuChoice))
    return failure();
  const std::string &cpu = cpuChoice->cpu;
  std::unique_ptr<llvm::TargetMachine> tm(target->createTargetMachine(
      triple, cpu, cpuChoice->features, llvm::TargetOptions(), llvm::Reloc::PIC_,
      std::nullopt, llvm::CodeGenOptLevel::Aggressive));
  if (!tm)
    return emitError(fileLoc) << "cannot create a target machine for CPU '" << cpu << "'";
  // Features the generated code may use, as /proc/cpuinfo spells them. The
  // subtarget knows what the CPU implies (x86-64-v3 means AVX2 and FMA even
  // with an empty feature string), so ask it rather than the string.
  std::vector<std::string> requiredFeatures;
  {
    const llvm::MCSubtargetInfo *subtarget = tm->getMCSubtargetInfo();
    for (const CpuFeatureName &tracked : kTrackedCpuFeatures)
      if (subtarget->checkFeatures(std::string("+") + tracked.llvm))
        requiredFeatures.push_back(tracked.cpuinfo);
    for (const std::string &extra : options.extraRequiredCpuFeatures)
      requiredFeatures.push_back(extra);
  }

  auto imported = timer.run("import", [&] {
    return importOnnxFile(inputPath, context, options.import);
  });
  if (failed(imported))
    return failure();
  ModuleOp module = imported->get();

  FailureOr<KVCachePlan> kvPlan = chooseKVCache(module, options);
  if (failed(kvPlan))
    return failure();
  if (failed(timer.run("tensor passes", [&] {
        return runPipeline(module,
                           llvm::formatv(kTensorPipeline, kvPlan->capacity,
                                         options.kvBlockSize)
                               .str(),
                           "tensor-level", options);
      })))
    return failure();
  // Attention the runtime's kernel cannot take has no CPU lowering yet.
  WalkResult unsupported = module.walk([&](AttentionOp op) {
    op.emitError("this attention (")
        << op.getQuery().getType() << ", mask "
        << (op.getMask() ? op.getMask().getType() : Type())
        << ") is not supported on the CPU target yet: the kernel takes f32 with an "
           "additive f32 mask and a static head_dim";
    return WalkResult::interrupt();
  });
  if (unsupported.wasInterrupted())
    return failure();
  // The signatures as callers see them: after KV planning replaced the
  // decoder entries' past/present pairs by the cache.
  std::vector<EntrySignature> entries;
  for (auto func : module.getOps<func::FuncOp>()) {
    if (func.isExternal())
      continue;
    entries.push_back(readSignature(func));
    func->setAttr("llvm.emit_c_interface", UnitAttr::get(&context));
  }
  auto writeMLIR = [&]() -> LogicalResult {
    std::string error;
    auto out = openOutputFile(outputPath, &error);
    if (!out)
      return emitError(fileLoc) << error;
    module.print(out->os());
    out->keep();
    return success();
  };
  if (options.emit == EmitKind::MLIR && !options.memoryReport)
    return writeMLIR();
  if (failed(timer.run("bufferization", [&] {
        return runPipeline(module, llvm::formatv(kBufferizePipeline, options.weights).str(),
                           "bufferization", options);
      })))
    return failure();
  // The weights as the module stores them (after --weights=bf16 replaced
  // f32 matmul weights by bf16 copies): constant globals, listed by their
  // ONNX initializer name when they came from one.
  uint64_t weightBytes = 0;
  std::vector<WeightInfo> weights;
  module.walk([&](memref::GlobalOp global) {
    if (!global.getConstant() || !global.getInitialValue())
      return;
    MemRefType type = global.getType();
    if (!type.hasStaticShape() || !type.getElementType().isIntOrFloat())
      return;
    uint64_t bytes = type.getNumElements() *
                     std::max<int64_t>(1, type.getElementTypeBitWidth() / 8);
    weightBytes += bytes;
    if (auto resource = dyn_cast<DenseResourceElementsAttr>(*global.getInitialValue()))
      weights.push_back({resource.getRawHandle().getKey().str(),
                         dtypeForElement(type.getElementType()),
                         SmallVector<int64_t>(type.getShape()), bytes});
  });
  // The plan is read before the arena pass turns allocations into views.
  std::vector<EntryPlan> plans;
  if (options.memoryReport)
    plans = planEntries(module, *kvPlan);
  if (failed(timer.run("activation arena", [&] {
        return runPipeline(module, "builtin.module(func.func(hasten-pack-static-buffers))",
                           "activation arena", options);
      })))
    return failure();
  if (options.memoryReport)
    writeMemoryReport(*options.memoryReport, module, *kvPlan, weightBytes,
                      llvm::sys::path::filename(inputPath), plans);
  if (options.emit == EmitKind::MLIR)
    return writeMLIR();
  if (failed(timer.run("lowering to LLVM dialect", [&] {
        return runPipeline(module, llvm::formatv(kLoweringPipeline, options.parallelMinWork).str(),
                           "lowering", options);
      })))
    return failure();

  llvm::LLVMContext llvmContext;
  std::unique_ptr<llvm::Module> llvmModule = timer.run("translation to LLVM IR", [&] {
    return translateModuleToLLVMIR(module, llvmContext, inputPath);
  });
  if (!llvmModule)
    return emitError(fileLoc) << "translation to LLVM IR failed";
  llvmModule->setTargetTriple(triple);
  llvmModule->setDataLayout(tm->createDataLayout());
  for (const EntrySignature &sig : entries)
    if (failed(addEntryWrapper(*llvmModule, sig)))
      return emitError(fileLoc) << "internal error: cannot wrap entry '" << sig.name << "'";
  addManifest(*llvmModule,
              buildManifest(entries, weights, llvm::sys::path::filename(inputPath),
                            triple.str(),
                            cpu, requiredFeatures, weightBytes,
                            options.manifestFormatVersionOverride
                                ? options.manifestFormatVersionOverride
                                : kManifestFormatVersion));
  internalize(*llvmModule);
  if (llvm::verifyModule(*llvmModule, &llvm::errs()))
    return emitError(fileLoc) << "internal error: the LLVM module does not verify";

  timer.run("LLVM O3", [&] {
    optimize(*llvmModule, tm.get());
    return true;
  });
  if (options.emit == EmitKind::LLVM) {
    auto out = openOutputFile(outputPath, &error);
    if (!out)
      return emitError(fileLoc) << error;
    llvmModule->print(out->os(), nullptr);
    out->keep();
    return success();
  }

  // The object file: the output itself, or a temporary to link.
  SmallString<128> objectPath(outputPath);
  if (options.emit == EmitKind::Library) {
    int fd;
    if (llvm::sys::fs::createTemporaryFile("hasten", "o", fd, objectPath))
      return emitError(fileLoc) << "cannot create a temporary object file";
    llvm::sys::Process::SafelyCloseFileDescriptor(fd);
  }
  llvm::FileRemover objectRemover(options.emit == EmitKind::Library ? objectPath.str()
                                                                      : StringRef());
  bool emitted = timer.run("code generation", [&] {
    std::error_code ec;
    llvm::raw_fd_ostream out(objectPath, ec, llvm::sys::fs::OF_None);
    if (ec)
      return false;
    llvm::legacy::PassManager codegen;
    if (tm->addPassesToEmitFile(codegen, out, nullptr, llvm::CodeGenFileType::ObjectFile))
      return false;
    codegen.run(*llvmModule);
    return true;
  });
  if (!emitted)
    return emitError(fileLoc) << "cannot write object file '" << objectPath << "'";
  if (options.emit == EmitKind::Object)
    return success();

  std::string linker = findLinker();
  if (linker.empty())
    return emitError(fileLoc) << "no linker found (install lld-22)";
  std::string errorText;
  bool linked = timer.run("link", [&] {
    std::string runtimeDir = "-L" + options.runtimeLibraryDir;
    SmallVector<StringRef> args = {linker, "-shared", "--no-undefined", "--gc-sections",
                                   "-o", outputPath, objectPath,
                                   "-L/usr/lib/x86_64-linux-gnu", "-L/lib/x86_64-linux-gnu"};
    // The runtime is needed only by modules that call its kernels.
    if (!options.runtimeLibraryDir.empty())
      args.append({runtimeDir, "--as-needed", "-lhasten_runtime", "--no-as-needed"});
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
    return emitError(fileLoc) << "linking '" << outputPath << "' with " << linker
                              << " failed: " << errorText;
  return success();
}
