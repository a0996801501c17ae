//===- HastenDialect.cpp - hasten dialect registration ---------------------===//

#include "hasten/Dialect/Hasten/HastenDialect.h"
#include "hasten/WeightLayout.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Interfaces/FunctionInterfaces.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace hasten;

#include "hasten/Dialect/Hasten/HastenDialect.cpp.inc"
#include "hasten/Dialect/Hasten/HastenEnums.cpp.inc"

#define GET_TYPEDEF_CLASSES
#include "hasten/Dialect/Hasten/HastenTypes.cpp.inc"
#define GET_ATTRDEF_CLASSES
#include "hasten/Dialect/Hasten/HastenAttrs.cpp.inc"

namespace {

/// `attr` names one of the values of an enum (by its symbolize function).
template <typename Enum>
LogicalResult verifyEnumString(function_ref<InFlightDiagnostic()> emit, NamedAttribute attr,
                               std::optional<Enum> (*symbolize)(StringRef),
                               StringRef allowed) {
  auto value = dyn_cast<StringAttr>(attr.getValue());
  if (!value || !symbolize(value.getValue()))
    return emit() << "'" << attr.getName().getValue() << "' must be one of " << allowed
                  << ", got " << attr.getValue();
  return success();
}

constexpr StringLiteral kEntryKinds =
    "\"main\", \"prefill\", \"decode\", \"verify\", \"spec_step\", \"generate\", "
    "\"sampler_stream\"";
constexpr StringLiteral kRoles =
    "\"token_ids\", \"past_length\", \"kv_cache\", \"kv_block_pool\", \"kv_block_table\", "
    "\"logits\", \"draft_kv_cache\", \"draft_past_length\", \"accepted_tokens\", "
    "\"sampler_noise\", \"sampler_state\", \"sequence_data\", \"sequence_shapes\", "
    "\"optional_present\", \"string_bytes\", \"string_lengths\", \"temperature\", "
    "\"uniforms\", \"draft_kv_block_table\"";

/// The attributes of a function argument or result: its role and the ONNX
/// name, element type and dimension names it was imported with.
LogicalResult verifyTensorAttr(function_ref<InFlightDiagnostic()> emit, NamedAttribute attr) {
  StringRef name = attr.getName().getValue();
  if (name == HastenDialect::kOnnxNameAttrName) {
    if (!isa<StringAttr>(attr.getValue()))
      return emit() << "'" << name << "' must be a string";
    return success();
  }
  if (name == HastenDialect::kOnnxElemTypeAttrName) {
    auto type = dyn_cast<IntegerAttr>(attr.getValue());
    if (!type || type.getInt() < 0)
      return emit() << "'" << name << "' must be an ONNX TensorProto data type (an integer)";
    return success();
  }
  if (name == HastenDialect::kOnnxDimParamsAttrName) {
    auto dims = dyn_cast<ArrayAttr>(attr.getValue());
    if (!dims || !llvm::all_of(dims, [](Attribute a) { return isa<StringAttr>(a); }))
      return emit() << "'" << name << "' must be an array of strings";
    return success();
  }
  if (attr.getName() != HastenDialect::kRoleAttrName)
    return emit() << "unknown hasten attribute '" << name
                  << "' on a function argument or result (expected 'hasten.role', "
                     "'hasten.onnx_name', 'hasten.onnx_elem_type' or 'hasten.onnx_dim_params')";
  auto value = dyn_cast<StringAttr>(attr.getValue());
  if (value && value.getValue() == "none")
    return emit() << "'hasten.role' must be one of " << kRoles << ", got \"none\"";
  return verifyEnumString<TensorRole>(emit, attr, symbolizeTensorRole, kRoles);
}

} // namespace

LogicalResult HastenDialect::verifyOperationAttribute(Operation *op, NamedAttribute attr) {
  StringRef name = attr.getName().getValue();
  auto emit = [&] { return op->emitError(); };
  if (name == "hasten.onnx.opset" || name == "hasten.onnx.producer") {
    if (!isa<ModuleOp>(op))
      return op->emitError() << "'" << name << "' belongs on the module";
    if (name == "hasten.onnx.opset" ? !isa<IntegerAttr>(attr.getValue())
                                    : !isa<StringAttr>(attr.getValue()))
      return op->emitError() << "'" << name << "' must be "
                             << (name == "hasten.onnx.opset" ? "an integer" : "a string");
    return success();
  }
  if (name == kStageAttrName || name == kKVPlansAttrName) {
    if (!isa<ModuleOp>(op))
      return op->emitError() << "'" << name << "' belongs on the module";
    if (name == kStageAttrName) {
      auto stage = dyn_cast<StringAttr>(attr.getValue());
      if (!stage || !llvm::is_contained({"import", "tensor", "buffer"}, stage.getValue()))
        return op->emitError() << "'" << name
                               << "' must be \"import\", \"tensor\" or \"buffer\"";
      return success();
    }
    auto plans = dyn_cast<DictionaryAttr>(attr.getValue());
    if (!plans || !llvm::all_of(plans, [](NamedAttribute plan) {
          auto fields = dyn_cast<DictionaryAttr>(plan.getValue());
          return fields && llvm::all_of(fields, [](NamedAttribute field) {
                   return isa<IntegerAttr, TypeAttr>(field.getValue());
                 });
        }))
      return op->emitError() << "'" << name
                             << "' must map model names to dictionaries of integers and types";
    return success();
  }
  if (name == kSamplerStepsAttrName) {
    auto steps = dyn_cast<IntegerAttr>(attr.getValue());
    if (!isa<FunctionOpInterface>(op) || !steps || steps.getInt() < 1)
      return op->emitError() << "'" << name
                             << "' must be a positive integer on a function";
    return success();
  }
  if (name == kWeightFormatAttrName || name == kWeightDimsAttrName) {
    if (!isa<memref::GlobalOp>(op))
      return op->emitError() << "'" << name << "' belongs on a memref.global";
    if (name == kWeightFormatAttrName) {
      auto format = dyn_cast<StringAttr>(attr.getValue());
      std::string names;
      for (int f = 1; f <= int(abi::kLastWeightFormat); ++f) {
        const char *known = abi::weightFormatName(abi::WeightFormat(f));
        if (format && format.getValue() == known)
          return success();
        names += (f > 1 ? ", \"" : "\"") + std::string(known) + "\"";
      }
      return op->emitError() << "'" << name << "' must be one of " << names;
    }
    auto dims = dyn_cast<DenseI64ArrayAttr>(attr.getValue());
    if (!dims || dims.size() != 2 || dims[0] < 1 || dims[1] < 1)
      return op->emitError() << "'" << name << "' must be [K, N], two positive sizes";
    return success();
  }
  if (name == kWeightSegmentAttrName) {
    auto segment = dyn_cast<DictionaryAttr>(attr.getValue());
    if (!isa<ModuleOp>(op))
      return op->emitError() << "'" << name << "' belongs on the module";
    if (!segment || !segment.getAs<IntegerAttr>("bytes") || !segment.getAs<ArrayAttr>("weights"))
      return op->emitError() << "'" << name << "' must hold 'bytes' and 'weights'";
    return success();
  }
  if (name != kEntryKindAttrName && name != kModelAttrName && name != kArenaBytesAttrName &&
      name != kArenaBuffersAttrName)
    return op->emitError() << "unknown hasten attribute '" << name << "'";
  if (!isa<FunctionOpInterface>(op))
    return op->emitError() << "'" << name << "' belongs on a function";
  if (name == kEntryKindAttrName)
    return verifyEnumString<EntryKind>(emit, attr, symbolizeEntryKind, kEntryKinds);
  if (name == kModelAttrName) {
    if (!isa<StringAttr>(attr.getValue()))
      return op->emitError() << "'hasten.model' must be a string";
    return success();
  }
  auto count = dyn_cast<IntegerAttr>(attr.getValue());
  if (!count || count.getInt() < 0)
    return op->emitError() << "'" << name << "' must be a non-negative integer";
  return success();
}

LogicalResult HastenDialect::verifyRegionArgAttribute(Operation *op, unsigned, unsigned argIndex,
                                                      NamedAttribute attr) {
  return verifyTensorAttr([&] { return op->emitError() << "argument " << argIndex << ": "; },
                          attr);
}

LogicalResult HastenDialect::verifyRegionResultAttribute(Operation *op, unsigned,
                                                         unsigned resultIndex,
                                                         NamedAttribute attr) {
  return verifyTensorAttr([&] { return op->emitError() << "result " << resultIndex << ": "; },
                          attr);
}

void HastenDialect::initialize() {
  addTypes<
#define GET_TYPEDEF_LIST
#include "hasten/Dialect/Hasten/HastenTypes.cpp.inc"
      >();
  addAttributes<
#define GET_ATTRDEF_LIST
#include "hasten/Dialect/Hasten/HastenAttrs.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "hasten/Dialect/Hasten/HastenOps.cpp.inc"
      >();
}
