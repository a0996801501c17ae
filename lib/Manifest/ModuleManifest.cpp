//===- ModuleManifest.cpp - what a compiled module says about itself ------===//

#include "hasten/Manifest/ModuleManifest.h"
#include "hasten/Support/Version.h"

#include "Manifest.h"

#include "hasten/Dialect/Hasten/HastenDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectResourceBlobManager.h"

#include <onnx/onnx_pb.h>

using namespace mlir;
using namespace hasten;

const char *hasten::getCompilerVersion() {
  return "hasten " HASTEN_VERSION_STRING " (MLIR/LLVM " LLVM_VERSION_STRING ")";
}

namespace {

manifest::DType dtypeForOnnx(int32_t onnxType) {
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

} // namespace

// The dialect's enums and the manifest's are the same contract.
static_assert(int(EntryKind::Main) == manifest::EntryKind_main &&
              int(EntryKind::Prefill) == manifest::EntryKind_prefill &&
              int(EntryKind::Decode) == manifest::EntryKind_decode &&
              int(EntryKind::Verify) == manifest::EntryKind_verify &&
              int(EntryKind::SpecStep) == manifest::EntryKind_spec_step &&
              int(EntryKind::Generate) == manifest::EntryKind_generate &&
              int(EntryKind::SamplerStream) == manifest::EntryKind_sampler_stream);
static_assert(int(TensorRole::None) == manifest::Role_none &&
              int(TensorRole::TokenIds) == manifest::Role_token_ids &&
              int(TensorRole::PastLength) == manifest::Role_past_length &&
              int(TensorRole::KVCache) == manifest::Role_kv_cache &&
              int(TensorRole::KVBlockPool) == manifest::Role_kv_block_pool &&
              int(TensorRole::KVBlockTable) == manifest::Role_kv_block_table &&
              int(TensorRole::Logits) == manifest::Role_logits &&
              int(TensorRole::DraftKVCache) == manifest::Role_draft_kv_cache &&
              int(TensorRole::DraftPastLength) == manifest::Role_draft_past_length &&
              int(TensorRole::AcceptedTokens) == manifest::Role_accepted_tokens &&
              int(TensorRole::SamplerNoise) == manifest::Role_sampler_noise &&
              int(TensorRole::SamplerState) == manifest::Role_sampler_state &&
              int(TensorRole::SequenceData) == manifest::Role_sequence_data &&
              int(TensorRole::SequenceShapes) == manifest::Role_sequence_shapes &&
              int(TensorRole::OptionalPresent) == manifest::Role_optional_present &&
              int(TensorRole::StringBytes) == manifest::Role_string_bytes &&
              int(TensorRole::StringLengths) == manifest::Role_string_lengths &&
              int(TensorRole::Temperature) == manifest::Role_temperature &&
              int(TensorRole::Uniforms) == manifest::Role_uniforms &&
              int(TensorRole::DraftKVBlockTable) == manifest::Role_draft_kv_block_table);

EntrySignature hasten::readSignature(func::FuncOp func) {
  EntrySignature sig;
  sig.name = func.getSymName().str();
  if (auto kind = func->getAttrOfType<StringAttr>(HastenDialect::kEntryKindAttrName))
    sig.kind = symbolizeEntryKind(kind.getValue()).value_or(EntryKind::Main);
  if (auto model = func->getAttrOfType<StringAttr>(HastenDialect::kModelAttrName))
    sig.model = model.str();
  if (auto steps = func->getAttrOfType<IntegerAttr>(HastenDialect::kSamplerStepsAttrName))
    sig.samplerSteps = steps.getInt();
  auto read = [&](Type type, DictionaryAttr attrs) {
    EntrySignature::Tensor t;
    auto shaped = cast<ShapedType>(type);
    t.dims.assign(shaped.getShape().begin(), shaped.getShape().end());
    if (auto name = attrs ? attrs.getAs<StringAttr>(HastenDialect::kOnnxNameAttrName) : nullptr)
      t.name = name.str();
    auto elem = attrs ? attrs.getAs<IntegerAttr>(HastenDialect::kOnnxElemTypeAttrName) : nullptr;
    t.onnxType = elem ? elem.getInt() : onnx::TensorProto::FLOAT;
    if (auto role = attrs ? attrs.getAs<StringAttr>(HastenDialect::kRoleAttrName) : nullptr)
      t.role = symbolizeTensorRole(role.getValue()).value_or(TensorRole::None);
    auto dimNames = attrs ? attrs.getAs<ArrayAttr>(HastenDialect::kOnnxDimParamsAttrName) : nullptr;
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

std::vector<WeightInfo> hasten::collectWeights(ModuleOp module, uint64_t &totalBytes) {
  std::vector<WeightInfo> weights;
  totalBytes = 0;
  module.walk([&](memref::GlobalOp global) {
    if (!global.getConstant() || !global.getInitialValue())
      return;
    MemRefType type = global.getType();
    if (!type.hasStaticShape() || !type.getElementType().isIntOrFloat())
      return;
    uint64_t bytes =
        type.getNumElements() * std::max<int64_t>(1, type.getElementTypeBitWidth() / 8);
    totalBytes += bytes;
    auto format = global->getAttrOfType<StringAttr>(hasten::HastenDialect::kWeightFormatAttrName);
    if (auto resource = dyn_cast<DenseResourceElementsAttr>(*global.getInitialValue()))
      weights.push_back({resource.getRawHandle().getKey().str(), type.getElementType(),
                         SmallVector<int64_t>(type.getShape()), bytes,
                         format ? format.str() : std::string("plain")});
  });
  return weights;
}

std::vector<uint8_t> hasten::buildManifest(const std::vector<EntrySignature> &entries,
                                           const std::vector<WeightInfo> &weights,
                                           const std::vector<KVCacheDescription> &kvCaches,
                                           StringRef source, const TargetDescription &target,
                                           uint64_t weightBytes,
                                           const WeightStorageDescription &storage,
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
                                               dtypeForOnnx(t.onnxType), fbb.CreateVector(dims),
                                               manifest::Role(t.role)));
    }
    return fbb.CreateVector(sigs);
  };
  std::vector<flatbuffers::Offset<manifest::Entry>> entryOffsets;
  for (const auto &e : entries) {
    auto inputs = tensors(e.inputs);
    auto outputs = tensors(e.outputs);
    entryOffsets.push_back(manifest::CreateEntry(
        fbb, fbb.CreateString(e.name),
        fbb.CreateString(std::string(kEntrySymbolPrefix) + e.name), inputs, outputs,
        manifest::EntryKind(e.kind), fbb.CreateString(e.model), e.samplerSteps,
        llvm::is_contained(target.gpuGraphEntries, e.name)));
  }
  std::vector<flatbuffers::Offset<flatbuffers::String>> featureOffsets;
  for (const std::string &f : target.features)
    featureOffsets.push_back(fbb.CreateString(f));
  std::vector<flatbuffers::Offset<flatbuffers::String>> gpuOffsets;
  for (const std::string &gpu : target.gpus)
    gpuOffsets.push_back(fbb.CreateString(gpu));
  std::vector<flatbuffers::Offset<flatbuffers::String>> libraryOffsets;
  for (const std::string &library : target.gpuLibraries)
    libraryOffsets.push_back(fbb.CreateString(library));
  std::vector<flatbuffers::Offset<manifest::Weight>> weightOffsets;
  for (const WeightInfo &w : weights)
    weightOffsets.push_back(manifest::CreateWeight(
        fbb, fbb.CreateString(w.name), dtypeForElement(w.elementType),
        fbb.CreateVector(std::vector<int64_t>(w.dims.begin(), w.dims.end())), w.bytes,
        fbb.CreateString(w.format)));
  std::vector<flatbuffers::Offset<manifest::KVCache>> cacheOffsets;
  for (const KVCacheDescription &kv : kvCaches)
    cacheOffsets.push_back(manifest::CreateKVCache(
        fbb, fbb.CreateString(kv.model),
        kv.paged ? manifest::KVLayout_paged : manifest::KVLayout_contiguous,
        dtypeForElement(kv.elementType), kv.layers, kv.kvHeads, kv.headDim, kv.capacity,
        kv.blockSize, kv.deviceTokens, kv.positionLimit));
  auto module = manifest::CreateModule(
      fbb, formatVersion, fbb.CreateString(getCompilerVersion()),
      fbb.CreateString(source.str()), fbb.CreateString(target.triple),
      fbb.CreateString(target.cpu), fbb.CreateVector(featureOffsets), weightBytes,
      fbb.CreateVector(entryOffsets), fbb.CreateVector(weightOffsets),
      fbb.CreateString(target.device), fbb.CreateVector(cacheOffsets),
      manifest::WeightStorage(storage.kind), fbb.CreateString(storage.file), storage.bytes,
      storage.hash, target.gpus.empty() ? 0 : fbb.CreateVector(gpuOffsets),
      libraryOffsets.empty() ? 0 : fbb.CreateVector(libraryOffsets));
  manifest::FinishModuleBuffer(fbb, module);
  return std::vector<uint8_t>(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
}
