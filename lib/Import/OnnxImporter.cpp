//===- OnnxImporter.cpp - ONNX model loading and graph translation ---------===//
//
// Loads a ModelProto (parse, external data, opset, checker, shape inference),
// orders the graph, reports every unsupported op at once, and translates the
// nodes through the converter table into one func.func.
//
//===----------------------------------------------------------------------===//

#include "hasten/Import/OnnxImporter.h"

#include "hasten/CheckedSize.h"
#include "ImporterInternal.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/CheckedArithmetic.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include "hasten/Dialect/Hasten/HastenDialect.h"

#include <onnx/checker.h>
#include <onnx/defs/schema.h>
#include <onnx/shape_inference/implementation.h>
#include <onnx/version_converter/convert.h>

#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <csignal>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>
#include <memory>
#include <set>

using namespace mlir;
using namespace hasten;
using namespace hasten::onnx_import;

static constexpr int64_t kMinOpset = 11;
/// The newest opset ONNX 1.12 (the checker and shape inference) knows, and
/// the newest the importer takes in opset 17's spelling (adaptToOpset17).
static constexpr int64_t kLibonnxOpset = 17;
static constexpr int64_t kMaxOpset = 22;

//===----------------------------------------------------------------------===//
// Types and tensors
//===----------------------------------------------------------------------===//

FailureOr<Type> onnx_import::getElementType(MLIRContext *context,
                                            int32_t onnxType) {
  Builder b(context);
  switch (onnxType) {
  case onnx::TensorProto::FLOAT:
    return b.getF32Type();
  case onnx::TensorProto::DOUBLE:
    return b.getF64Type();
  case onnx::TensorProto::FLOAT16:
    return b.getF16Type();
  case onnx::TensorProto::BFLOAT16:
    return b.getBF16Type();
  case onnx::TensorProto::BOOL:
    return b.getI1Type();
  case onnx::TensorProto::INT8:
  case onnx::TensorProto::UINT8:
    return b.getIntegerType(8);
  case onnx::TensorProto::INT16:
  case onnx::TensorProto::UINT16:
    return b.getIntegerType(16);
  case onnx::TensorProto::INT32:
  case onnx::TensorProto::UINT32:
    return b.getIntegerType(32);
  case onnx::TensorProto::INT64:
  case onnx::TensorProto::UINT64:
    return b.getIntegerType(64);
  default:
    return failure();
  }
}

int32_t onnx_import::onnxTypeFor(Type element, bool isUnsigned) {
  if (element.isF32())
    return onnx::TensorProto::FLOAT;
  if (element.isF64())
    return onnx::TensorProto::DOUBLE;
  if (element.isF16())
    return onnx::TensorProto::FLOAT16;
  if (element.isBF16())
    return onnx::TensorProto::BFLOAT16;
  if (element.isInteger(1))
    return onnx::TensorProto::BOOL;
  switch (element.getIntOrFloatBitWidth()) {
  case 8:
    return isUnsigned ? onnx::TensorProto::UINT8 : onnx::TensorProto::INT8;
  case 16:
    return isUnsigned ? onnx::TensorProto::UINT16 : onnx::TensorProto::INT16;
  case 32:
    return isUnsigned ? onnx::TensorProto::UINT32 : onnx::TensorProto::INT32;
  default:
    return isUnsigned ? onnx::TensorProto::UINT64 : onnx::TensorProto::INT64;
  }
}

int32_t hasten::onnxElementType(Type element, bool isUnsigned) {
  return onnx_import::onnxTypeFor(element, isUnsigned);
}

bool onnx_import::isUnsignedOnnxType(int32_t onnxType) {
  return onnxType == onnx::TensorProto::UINT8 ||
         onnxType == onnx::TensorProto::UINT16 ||
         onnxType == onnx::TensorProto::UINT32 ||
         onnxType == onnx::TensorProto::UINT64;
}

std::string onnx_import::onnxTypeName(int32_t onnxType) {
  if (onnx::TensorProto_DataType_IsValid(onnxType))
    return onnx::TensorProto_DataType_Name(
        static_cast<onnx::TensorProto_DataType>(onnxType));
  return "data type " + std::to_string(onnxType);
}

/// Copies the typed-field payload of `tensor` into little-endian bytes laid
/// out as MLIR stores `elementType`.
static std::vector<char> typedFieldBytes(const onnx::TensorProto &tensor,
                                         Type elementType, int64_t count) {
  std::vector<char> bytes;
  auto append = [&](const auto &field, auto convert) {
    for (const auto &v : field) {
      auto converted = convert(v);
      const char *p = reinterpret_cast<const char *>(&converted);
      bytes.insert(bytes.end(), p, p + sizeof(converted));
    }
  };
  unsigned width = elementType.getIntOrFloatBitWidth();
  switch (tensor.data_type()) {
  case onnx::TensorProto::FLOAT:
    append(tensor.float_data(), [](float v) { return v; });
    break;
  case onnx::TensorProto::DOUBLE:
    append(tensor.double_data(), [](double v) { return v; });
    break;
  case onnx::TensorProto::INT64:
    append(tensor.int64_data(), [](int64_t v) { return v; });
    break;
  case onnx::TensorProto::UINT64:
  case onnx::TensorProto::UINT32:
    if (width == 64)
      append(tensor.uint64_data(), [](uint64_t v) { return v; });
    else
      append(tensor.uint64_data(),
             [](uint64_t v) { return static_cast<uint32_t>(v); });
    break;
  default:
    // int32_data carries int32, int16, int8, uint16, uint8, bool, float16 and
    // bfloat16 (the last two as raw 16-bit patterns).
    for (int32_t v : tensor.int32_data()) {
      if (width == 64) {
        int64_t w = v;
        bytes.insert(bytes.end(), (char *)&w, (char *)&w + 8);
      } else if (width == 32) {
        bytes.insert(bytes.end(), (char *)&v, (char *)&v + 4);
      } else if (width == 16) {
        int16_t w = static_cast<int16_t>(v);
        bytes.insert(bytes.end(), (char *)&w, (char *)&w + 2);
      } else {
        bytes.push_back(static_cast<char>(v));
      }
    }
    break;
  }
  (void)count;
  return bytes;
}

static int64_t storageBytes(Type elementType) {
  return elementType.isInteger(1) ? 1
                                  : (elementType.getIntOrFloatBitWidth() + 7) / 8;
}

ElementsAttr onnx_import::makeElementsAttr(RankedTensorType type, ArrayRef<char> bytes,
                                          int64_t inlineLimit, StringRef name,
                                          std::optional<AsmResourceBlob> ownedBlob) {
  Type elementType = type.getElementType();
  if (elementType.isInteger(1)) {
    SmallVector<bool> bits;
    bits.reserve(bytes.size());
    for (char c : bytes)
      bits.push_back(c != 0);
    return DenseElementsAttr::get(type, bits);
  }
  if (type.getNumElements() <= inlineLimit)
    return DenseElementsAttr::getFromRawBuffer(type, bytes);
  AsmResourceBlob blob =
      ownedBlob ? std::move(*ownedBlob)
                : HeapAsmResourceBlob::allocateAndCopyWithAlign(
                      bytes, storageBytes(elementType));
  std::string blobName = name.empty() ? std::string("onnx_tensor") : name.str();
  return DenseResourceElementsAttr::get(type, blobName, std::move(blob));
}

FailureOr<ElementsAttr> onnx_import::convertTensorProto(
    MLIRContext *context, const onnx::TensorProto &tensor, int64_t inlineLimit,
    function_ref<InFlightDiagnostic()> emitError) {
  FailureOr<Type> elementType = getElementType(context, tensor.data_type());
  if (failed(elementType))
    return emitError() << "tensor '" << tensor.name() << "' has unsupported "
                       << onnxTypeName(tensor.data_type());
  SmallVector<int64_t> shape(tensor.dims().begin(), tensor.dims().end());
  std::optional<uint64_t> checkedBytes =
      checkedByteSize(shape.data(), shape.size(), storageBytes(*elementType));
  if (!checkedBytes)
    return emitError() << "tensor '" << tensor.name()
                       << "' has negative dimensions or more bytes than can be addressed";
  auto type = RankedTensorType::get(shape, *elementType);
  int64_t count = type.getNumElements();
  int64_t expectedBytes = int64_t(*checkedBytes);
  if (tensor.data_location() == onnx::TensorProto::EXTERNAL)
    return emitError() << "tensor '" << tensor.name()
                       << "' keeps its data externally, which is only "
                          "supported for initializers";
  if (tensor.has_raw_data()) {
    const std::string &raw = tensor.raw_data();
    if (static_cast<int64_t>(raw.size()) != expectedBytes)
      return emitError() << "tensor '" << tensor.name() << "' of shape "
                         << type << " needs " << expectedBytes
                         << " bytes of raw data but has " << raw.size();
    return makeElementsAttr(type, ArrayRef<char>(raw.data(), raw.size()),
                            inlineLimit, tensor.name());
  }
  std::vector<char> bytes = typedFieldBytes(tensor, *elementType, count);
  if (static_cast<int64_t>(bytes.size()) != expectedBytes)
    return emitError() << "tensor '" << tensor.name() << "' of shape " << type
                       << " has " << bytes.size() / storageBytes(*elementType)
                       << " elements of data, expected " << count;
  return makeElementsAttr(type, bytes, inlineLimit, tensor.name());
}

//===----------------------------------------------------------------------===//
// NodeContext
//===----------------------------------------------------------------------===//

std::string NodeContext::name() const {
  return node.name().empty() ? "<unnamed " + node.op_type() + ">" : node.name();
}

InFlightDiagnostic NodeContext::emitError() const {
  return mlir::emitError(loc) << "node '" << name() << "' (" << node.op_type()
                              << "): ";
}

LogicalResult NodeContext::fail(const Twine &message) const {
  return emitError() << message;
}

FailureOr<int64_t> NodeContext::normalizeAxis(int64_t axis, int64_t rank,
                                              StringRef what) const {
  if (axis < -rank || axis >= rank) {
    emitError() << what << " " << axis << " is out of range for rank " << rank;
    return failure();
  }
  return axis < 0 ? axis + rank : axis;
}

const onnx::AttributeProto *NodeContext::unreadAttr() const {
  for (const onnx::AttributeProto &a : node.attribute())
    if (!lookedUp.contains(a.name()))
      return &a;
  return nullptr;
}

const onnx::AttributeProto *NodeContext::attr(StringRef name) const {
  lookedUp.insert(name);
  for (const onnx::AttributeProto &a : node.attribute())
    if (a.name() == name)
      return &a;
  return nullptr;
}

int64_t NodeContext::getInt(StringRef name, int64_t defaultValue) const {
  const onnx::AttributeProto *a = attr(name);
  return a ? a->i() : defaultValue;
}

float NodeContext::getFloat(StringRef name, float defaultValue) const {
  const onnx::AttributeProto *a = attr(name);
  return a ? a->f() : defaultValue;
}

std::string NodeContext::getString(StringRef name,
                                   StringRef defaultValue) const {
  const onnx::AttributeProto *a = attr(name);
  return a ? a->s() : defaultValue.str();
}

std::optional<SmallVector<int64_t>> NodeContext::getInts(StringRef name) const {
  const onnx::AttributeProto *a = attr(name);
  if (!a)
    return std::nullopt;
  return SmallVector<int64_t>(a->ints().begin(), a->ints().end());
}

std::optional<SmallVector<float>> NodeContext::getFloats(StringRef name) const {
  const onnx::AttributeProto *a = attr(name);
  if (!a)
    return std::nullopt;
  return SmallVector<float>(a->floats().begin(), a->floats().end());
}

/// Small static integer tensors are tracked element by element.
static bool isTrackableIntegerType(RankedTensorType type) {
  return type.hasStaticShape() && type.getRank() <= 1 &&
         type.getNumElements() <= 16 && isa<IntegerType>(type.getElementType());
}

std::optional<SmallVector<Value>> NodeContext::inputElements(unsigned i) {
  if (!hasInput(i))
    return std::nullopt;
  ImportedValue &value = values.find(node.input(i))->second;
  if (value.elements)
    return value.elements;
  auto type = cast<RankedTensorType>(value.tensor.getType());
  if (!isTrackableIntegerType(type))
    return std::nullopt;
  SmallVector<Value> elements;
  DenseIntElementsAttr constant;
  if (matchPattern(value.tensor, m_Constant(&constant))) {
    for (APInt v : constant.getValues<APInt>())
      elements.push_back(arith::ConstantOp::create(
          b, loc, IntegerAttr::get(type.getElementType(), v)));
  } else {
    for (int64_t k = 0, e = type.getNumElements(); k < e; ++k) {
      SmallVector<Value> indices;
      if (type.getRank() == 1)
        indices.push_back(arith::ConstantIndexOp::create(b, loc, k));
      elements.push_back(
          tensor::ExtractOp::create(b, loc, value.tensor, indices));
    }
  }
  value.elements = elements;
  return elements;
}

std::optional<SmallVector<int64_t>> NodeContext::constantInts(unsigned i) {
  if (!hasInput(i))
    return std::nullopt;
  DenseIntElementsAttr constant;
  if (matchPattern(input(i), m_Constant(&constant))) {
    SmallVector<int64_t> ints;
    for (APInt v : constant.getValues<APInt>())
      ints.push_back(v.getSExtValue());
    return ints;
  }
  std::optional<SmallVector<Value>> elements = inputElements(i);
  if (!elements)
    return std::nullopt;
  SmallVector<int64_t> ints;
  for (Value v : *elements) {
    APInt c;
    if (!matchPattern(v, m_ConstantInt(&c)))
      return std::nullopt;
    ints.push_back(c.getSExtValue());
  }
  return ints;
}

std::optional<SmallVector<double>> NodeContext::constantFloats(unsigned i) {
  if (!hasInput(i))
    return std::nullopt;
  DenseFPElementsAttr constant;
  if (!matchPattern(input(i), m_Constant(&constant)))
    return std::nullopt;
  SmallVector<double> floats;
  for (APFloat v : constant.getValues<APFloat>())
    floats.push_back(v.convertToDouble());
  return floats;
}

void NodeContext::setOutputValue(unsigned i, const ImportedValue &value) {
  if (wantsOutput(i))
    values[node.output(i)] = value;
}

std::optional<int64_t> NodeContext::declaredOutputRank(unsigned i) const {
  if (!declaredTypes || !wantsOutput(i))
    return std::nullopt;
  auto found = declaredTypes->find(node.output(i));
  if (found == declaredTypes->end() || !found->second->has_tensor_type() ||
      !found->second->tensor_type().has_shape())
    return std::nullopt;
  return found->second->tensor_type().shape().dim_size();
}

void NodeContext::setOutput(unsigned i, Value tensor, bool isUnsigned) {
  if (!wantsOutput(i))
    return;
  ImportedValue value;
  value.tensor = tensor;
  value.isUnsigned = isUnsigned;
  values[node.output(i)] = value;
}

void NodeContext::setOutputElements(unsigned i, ArrayRef<Value> elements,
                                    Type elementType, bool scalar,
                                    bool isUnsigned) {
  if (!wantsOutput(i))
    return;
  Value tensor;
  if (scalar) {
    tensor = tensor::FromElementsOp::create(
        b, loc, RankedTensorType::get({}, elementType), elements);
  } else {
    tensor = tensor::FromElementsOp::create(
        b, loc,
        RankedTensorType::get({static_cast<int64_t>(elements.size())},
                              elementType),
        elements);
  }
  ImportedValue value;
  value.tensor = tensor;
  value.isUnsigned = isUnsigned;
  value.elements = SmallVector<Value>(elements.begin(), elements.end());
  values[node.output(i)] = value;
}

//===----------------------------------------------------------------------===//
// The converter table
//===----------------------------------------------------------------------===//

static const ConverterTable &getConverters() {
  static const ConverterTable table = [] {
    ConverterTable t;
    registerElementwiseConverters(t);
    registerTensorConverters(t);
    registerLinalgConverters(t);
    registerQuantizedConverters(t);
    registerRecurrentConverters(t);
    registerSignalConverters(t);
    registerDetectionConverters(t);
    registerSelectionConverters(t);
    registerControlFlowConverters(t);
    registerTrainingConverters(t);
    registerTextConverters(t);
    registerSequenceConverters(t);
    registerStringConverters(t);
    return t;
  }();
  return table;
}

std::vector<std::string> hasten::getSupportedOnnxOps() {
  std::vector<std::string> ops;
  for (const auto &entry : getConverters())
    ops.push_back(entry.getKey().str());
  for (const char *op : onnx_import::opsExpandedForOpset17())
    ops.push_back(op);
  llvm::sort(ops);
  return ops;
}

bool hasten::addInputBinding(OnnxImportOptions &options, StringRef binding,
                             std::string &error) {
  size_t eq = binding.find('=');
  if (eq == StringRef::npos || eq == 0) {
    error = "--bind-input expects NAME=PATH, got '" + binding.str() + "'";
    return false;
  }
  options.boundInputs[binding.take_front(eq).str()] = binding.drop_front(eq + 1).str();
  return true;
}

bool hasten::addDimBinding(OnnxImportOptions &options, StringRef binding, std::string &error) {
  auto [name, sizeText] = binding.split('=');
  int64_t size = 0;
  if (name.empty() || sizeText.trim().getAsInteger(10, size) || size < 1) {
    error = "--bind-dim expects NAME=SIZE or INPUT[AXIS]=SIZE with a size >= 1, got '" +
            binding.str() + "'";
    return false;
  }
  options.dimBindings[name.trim().str()] = size;
  return true;
}

void hasten::registerOnnxImportDialects(DialectRegistry &registry) {
  registry.insert<arith::ArithDialect, func::FuncDialect,
                  linalg::LinalgDialect, math::MathDialect, scf::SCFDialect,
                  tensor::TensorDialect, hasten::HastenDialect>();
}

//===----------------------------------------------------------------------===//
// Model loading
//===----------------------------------------------------------------------===//

bool onnx_import::isDefaultDomain(const std::string &domain) {
  return domain.empty() || domain == "ai.onnx";
}

std::string onnx_import::describeNode(const onnx::GraphProto &graph, int i) {
  const onnx::NodeProto &node = graph.node(i);
  return "'" + (node.name().empty() ? "#" + std::to_string(i) : node.name()) + "' (" +
         node.op_type() + ")";
}

namespace {

/// The converter table's key of a node: its op type, qualified by its
/// domain outside the default one ("com.microsoft::MatMulNBits").
static std::string converterKey(const onnx::NodeProto &node) {
  return isDefaultDomain(node.domain()) ? node.op_type() : node.domain() + "::" + node.op_type();
}

/// Folds the ops one node's conversion created (shape arithmetic mostly), so
/// that static dimensions become constants right away, and points the value
/// table entries of that node at the folded values.
static void foldNewOps(Block *block, Operation *lastBefore, Block::iterator end,
                       const onnx::NodeProto &node, ValueTable &values) {
  SmallVector<Operation *> created;
  for (Operation &op : llvm::make_range(
           lastBefore ? std::next(Block::iterator(lastBefore)) : block->begin(), end))
    if (op.getNumRegions() == 0 && op.getNumResults() > 0 &&
        !op.hasTrait<OpTrait::ConstantLike>())
      created.push_back(&op);
  llvm::DenseMap<Value, Value> replaced;
  for (Operation *op : created) {
    SmallVector<Attribute> operandConstants;
    for (Value operand : op->getOperands()) {
      Attribute c;
      matchPattern(operand, m_Constant(&c));
      operandConstants.push_back(c);
    }
    SmallVector<OpFoldResult> results;
    if (failed(op->fold(operandConstants, results)) || results.empty())
      continue;
    OpBuilder builder(op);
    SmallVector<Value> replacements;
    for (auto [result, folded] : llvm::zip(op->getResults(), results)) {
      if (auto value = dyn_cast<Value>(folded)) {
        replacements.push_back(value);
        continue;
      }
      Operation *constant = op->getDialect()->materializeConstant(
          builder, cast<Attribute>(folded), result.getType(), op->getLoc());
      if (!constant)
        break;
      replacements.push_back(constant->getResult(0));
    }
    if (replacements.size() != op->getNumResults())
      continue;
    for (auto [from, to] : llvm::zip(op->getResults(), replacements)) {
      from.replaceAllUsesWith(to);
      replaced[from] = to;
    }
    op->erase();
  }
  if (replaced.empty())
    return;
  auto resolve = [&](Value v) {
    for (auto it = replaced.find(v); it != replaced.end(); it = replaced.find(v))
      v = it->second;
    return v;
  };
  auto update = [&](const std::string &name) {
    auto it = values.find(name);
    if (it == values.end())
      return;
    it->second.tensor = resolve(it->second.tensor);
    if (it->second.shapes)
      it->second.shapes = resolve(it->second.shapes);
    if (it->second.present)
      it->second.present = resolve(it->second.present);
    if (it->second.stringLengths)
      it->second.stringLengths = resolve(it->second.stringLengths);
    if (it->second.elements)
      for (Value &e : *it->second.elements)
        e = resolve(e);
  };
  for (const std::string &name : node.input())
    update(name);
  for (const std::string &name : node.output())
    update(name);
}

/// The sizes of an ONNX shape, unknown ones dynamic.
static SmallVector<int64_t> shapeFromProto(const onnx::TensorShapeProto &shape) {
  SmallVector<int64_t> sizes;
  for (const auto &dim : shape.dim())
    sizes.push_back(dim.has_dim_value() && dim.dim_value() >= 0 ? dim.dim_value()
                                                                : ShapedType::kDynamic);
  return sizes;
}

/// One tensor an ONNX value crosses the ABI as.
struct AbiPart {
  RankedTensorType type;
  TensorRole role;
  /// Appended to the value's name to name the part.
  std::string suffix;
  int32_t onnxElemType;
  /// A plain tensor's ONNX type (for its dimension names), else null.
  const onnx::TypeProto_Tensor *tensorType;
};

/// How a graph input or output crosses the ABI: a tensor as itself; a
/// sequence as its data and shape table; strings as their bytes and
/// lengths; an optional as its presence flag followed by its value's parts.
struct AbiValue {
  SmallVector<AbiPart> parts;
  ValueKind kind;
};

class ModelImporter {
public:
  ModelImporter(StringRef path, MLIRContext &context,
                const OnnxImportOptions &options)
      : path(path.str()), context(context), options(options),
        fileLoc(FileLineColLoc::get(&context, path, 0, 0)) {}

  FailureOr<OwningOpRef<ModuleOp>> run();

private:
  InFlightDiagnostic error() { return emitError(fileLoc) << path << ": "; }

  LogicalResult parse();
  LogicalResult resolveOpset();
  LogicalResult orderNodes();
  LogicalResult checkSupported();
  LogicalResult runOnnxChecks();
  LogicalResult bindDimensions();
  LogicalResult validateExternalData();
  FailureOr<RankedTensorType> typeFromProto(const onnx::TypeProto &type,
                                            const std::string &name,
                                            bool *isUnsigned = nullptr);
  FailureOr<AbiValue> abiParts(const onnx::TypeProto &type, const std::string &name);
  static void setPartAttrs(OpBuilder &b, const AbiPart &part, const std::string &name,
                           function_ref<void(StringRef, Attribute)> set);
  FailureOr<Value> tensorOutput(OpBuilder &b, const onnx::ValueInfoProto &output,
                                const ImportedValue &produced);
  static void setTensorResultAttrs(OpBuilder &b, func::FuncOp func, unsigned i,
                                   const onnx::ValueInfoProto &output,
                                   const ImportedValue &produced, Type resultType);
  FailureOr<ElementsAttr> loadInitializer(const onnx::TensorProto &tensor);
  FailureOr<ElementsAttr> loadBoundInput(const std::string &name,
                                         const onnx::ValueInfoProto &info);
  FailureOr<OwningOpRef<ModuleOp>> translate();
  LogicalResult validateBeforeLibonnx();
  LogicalResult checkStaticSizes(ModuleOp module);
  LogicalResult translateFunction(OpBuilder &b);
  LogicalResult importNodes(const onnx::GraphProto &graph, ArrayRef<int> order,
                            ValueTable &values, OpBuilder &b);
  FailureOr<SmallVector<ImportedValue>> importSubgraph(const onnx::GraphProto &graph,
                                                       ValueTable &scope, OpBuilder &b);

  std::string path;
  MLIRContext &context;
  const OnnxImportOptions &options;
  Location fileLoc;
  onnx::ModelProto model;
  int64_t opset = 0;
  /// Node indices in an order where producers come before consumers.
  std::vector<int> order;
  /// Memory maps of external data files, shared by the blobs that view them.
  std::map<std::string, std::shared_ptr<llvm::MemoryBuffer>> externalFiles;
  /// Where each external initializer's bytes are, checked before anything
  /// (the ONNX checker included) reads them.
  struct ExternalRef {
    std::string path;
    uint64_t offset, bytes;
  };
  std::map<std::string, ExternalRef> externalRefs;
  /// Declared and inferred types of every named value.
  std::map<std::string, const onnx::TypeProto *> declared;
  /// Graph inputs fixed by --bind-input.
  std::map<std::string, const onnx::ValueInfoProto *> boundInfos;
  /// Attention subgraphs imported as hasten.attention, by final node.
  /// Initializers and bound inputs, loaded once for every function.
  struct Initializer {
    std::string name;
    ElementsAttr value;
    bool isUnsigned;
  };
  std::vector<Initializer> initializers;
};

LogicalResult ModelImporter::parse() {
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                            /*RequiresNullTerminator=*/false);
  if (!buffer)
    return error() << "cannot open file: " << buffer.getError().message();
  if ((*buffer)->getBufferSize() == 0)
    return error() << "file is empty, not an ONNX model";
  if (!model.ParseFromArray((*buffer)->getBufferStart(),
                            static_cast<int>((*buffer)->getBufferSize())))
    return error() << "not a valid ONNX model: the protobuf does not parse "
                      "(the file is truncated or corrupt)";
  if (!model.has_graph())
    return error() << "not a valid ONNX model: it has no graph (the file is "
                      "truncated or not an ONNX ModelProto)";
  return success();
}

/// Lists the initializers of `graph` that `keep` selects among its inputs
/// (with their type and shape), where they are not already; with `drop`,
/// removes them from the initializers too (they become plain inputs).
static void listInitializersAsInputs(onnx::GraphProto &graph,
                                     llvm::function_ref<bool(const onnx::TensorProto &)> keep,
                                     bool drop) {
  std::set<std::string> inputs;
  for (const onnx::ValueInfoProto &input : graph.input())
    inputs.insert(input.name());
  auto *initializers = graph.mutable_initializer();
  for (int i = initializers->size() - 1; i >= 0; --i) {
    const onnx::TensorProto &tensor = initializers->Get(i);
    if (!keep(tensor))
      continue;
    if (!inputs.count(tensor.name())) {
      onnx::ValueInfoProto *input = graph.add_input();
      input->set_name(tensor.name());
      auto *type = input->mutable_type()->mutable_tensor_type();
      type->set_elem_type(tensor.data_type());
      for (int64_t dim : tensor.dims())
        type->mutable_shape()->add_dim()->set_dim_value(dim);
    }
    if (drop)
      initializers->DeleteSubrange(i, 1);
  }
}

/// Before opset 7, PRelu applied a 1-D slope along the channel axis (axis
/// 1, as Caffe2 and PyTorch 0.4 computed it); opset 7 broadcasts it from
/// the last axis, and ONNX's version converter leaves it as it is. Gives such
/// a slope initializer the shape [C, 1, ...] that opset 7 broadcasts along
/// the channels, where shape inference knows X's rank and channel count.
static void alignLegacyPReluSlopes(onnx::ModelProto &model, int64_t opset) {
  if (opset >= 7)
    return;
  onnx::GraphProto &graph = *model.mutable_graph();
  std::map<std::string, const onnx::TypeProto *> types;
  for (const auto &vi : graph.input())
    types[vi.name()] = &vi.type();
  for (const auto &vi : graph.value_info())
    types[vi.name()] = &vi.type();
  std::map<std::string, onnx::TensorProto *> initializers;
  for (onnx::TensorProto &init : *graph.mutable_initializer())
    initializers[init.name()] = &init;
  for (const onnx::NodeProto &node : graph.node()) {
    if (node.op_type() != "PRelu" || node.input_size() != 2)
      continue;
    auto slope = initializers.find(node.input(1));
    auto x = types.find(node.input(0));
    if (slope == initializers.end() || x == types.end() || !x->second->has_tensor_type() ||
        !x->second->tensor_type().has_shape())
      continue;
    const onnx::TensorShapeProto &shape = x->second->tensor_type().shape();
    onnx::TensorProto &s = *slope->second;
    if (s.dims_size() != 1 || s.dims(0) == 1 || shape.dim_size() < 3 ||
        !shape.dim(1).has_dim_value() || shape.dim(1).dim_value() != s.dims(0))
      continue;
    for (int d = 2; d < shape.dim_size(); ++d)
      s.add_dims(1);
    // IR 3 lists initializers among the inputs, with their shapes.
    for (onnx::ValueInfoProto &input : *graph.mutable_input())
      if (input.name() == s.name() && input.type().has_tensor_type() &&
          input.type().tensor_type().has_shape()) {
        onnx::TensorShapeProto *declared =
            input.mutable_type()->mutable_tensor_type()->mutable_shape();
        for (int d = declared->dim_size(); d < s.dims_size(); ++d)
          declared->add_dim()->set_dim_value(1);
      }
  }
}

/// Runs ONNX's version converter on `model` in a forked child that sends the
/// serialized result back through a pipe, so that a crash in libonnx is a
/// failure with a message, not the end of the importing process.
static bool convertVersionInChild(const onnx::ModelProto &model, int targetOpset,
                                  std::string &converted, std::string &failure) {
  int fds[2];
  if (pipe(fds) != 0) {
    failure = std::string("cannot create a pipe: ") + std::strerror(errno);
    return false;
  }
  pid_t child = fork();
  if (child < 0) {
    close(fds[0]);
    close(fds[1]);
    failure = std::string("cannot fork: ") + std::strerror(errno);
    return false;
  }
  if (child == 0) {
    close(fds[0]);
    // A crash here is reported by the parent; the tool's own crash handlers
    // (LLVM's stack dump) would only print noise.
    for (int signal : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT})
      std::signal(signal, SIG_DFL);
    std::string message = "E";
    try {
      // The converter's adapters need the shapes of their inputs (Add's
      // broadcast attribute of opset 6 on a Constant's output): inferred
      // first, where ONNX can.
      // IR 3's converter wants every initializer among the graph inputs,
      // where IR 3 put them and its exporters did not always. One copy of
      // the model (weights included) on the way that succeeds; a second only
      // when shape inference fails and leaves its copy half annotated.
      auto listed = [&] {
        onnx::ModelProto copy = model;
        if (copy.ir_version() < 4)
          listInitializersAsInputs(
              *copy.mutable_graph(), [](const onnx::TensorProto &) { return true; },
              /*drop=*/false);
        return copy;
      };
      onnx::ModelProto inferred = listed();
      try {
        onnx::shape_inference::InferShapes(inferred);
      } catch (const std::exception &) {
        inferred = listed();
      }
      int64_t fromOpset = 0;
      for (const auto &import : inferred.opset_import())
        if (import.domain().empty() || import.domain() == "ai.onnx")
          fromOpset = import.version();
      alignLegacyPReluSlopes(inferred, fromOpset);
      onnx::ModelProto result = onnx::version_conversion::ConvertVersion(inferred, targetOpset);
      std::string bytes;
      if (result.SerializeToString(&bytes))
        message = "O" + bytes;
      else
        message += "the converted model does not serialize";
    } catch (const std::exception &e) {
      message += e.what();
    }
    for (size_t done = 0; done < message.size();) {
      ssize_t wrote = write(fds[1], message.data() + done, message.size() - done);
      if (wrote <= 0)
        _exit(1);
      done += size_t(wrote);
    }
    _exit(0);
  }
  close(fds[1]);
  std::string message;
  char buffer[1 << 16];
  for (ssize_t got; (got = read(fds[0], buffer, sizeof(buffer))) != 0;) {
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0)
      break;
    message.append(buffer, size_t(got));
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) {
    failure = std::string("it crashed on this model (") + strsignal(WTERMSIG(status)) +
              "); the graph is malformed";
    return false;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || message.empty()) {
    failure = "it stopped without a result";
    return false;
  }
  if (message[0] != 'O') {
    failure = message.substr(1);
    return false;
  }
  converted = message.substr(1);
  return true;
}

/// Whether a (non-external) TensorProto holds exactly the elements its dims
/// declare: ONNX's shape inference reads constant shapes and axes with
/// ParseData, which trusts that they do.
static bool tensorDataMatchesShape(const onnx::TensorProto &tensor, std::string &why) {
  if (tensor.data_location() == onnx::TensorProto::EXTERNAL)
    return true; // validateExternalData checks those
  std::vector<int64_t> dims(tensor.dims().begin(), tensor.dims().end());
  std::optional<uint64_t> count = checkedElementCount(dims.data(), dims.size());
  if (!count) {
    why = "its dimensions are negative or describe more elements than can be addressed";
    return false;
  }
  if (tensor.has_raw_data()) {
    static const std::map<int, uint64_t> bytesPerElement = {
        {onnx::TensorProto::FLOAT, 4},   {onnx::TensorProto::DOUBLE, 8},
        {onnx::TensorProto::INT64, 8},   {onnx::TensorProto::UINT64, 8},
        {onnx::TensorProto::INT32, 4},   {onnx::TensorProto::UINT32, 4},
        {onnx::TensorProto::INT16, 2},   {onnx::TensorProto::UINT16, 2},
        {onnx::TensorProto::FLOAT16, 2}, {onnx::TensorProto::BFLOAT16, 2},
        {onnx::TensorProto::INT8, 1},    {onnx::TensorProto::UINT8, 1},
        {onnx::TensorProto::BOOL, 1}};
    auto it = bytesPerElement.find(tensor.data_type());
    uint64_t expected;
    if (it != bytesPerElement.end() &&
        (__builtin_mul_overflow(*count, it->second, &expected) ||
         expected != tensor.raw_data().size())) {
      why = std::to_string(tensor.raw_data().size()) + " bytes of raw data do not hold its " +
            std::to_string(*count) + " elements";
      return false;
    }
    return true;
  }
  uint64_t have = 0;
  switch (tensor.data_type()) {
  case onnx::TensorProto::FLOAT:
    have = tensor.float_data_size();
    break;
  case onnx::TensorProto::DOUBLE:
    have = tensor.double_data_size();
    break;
  case onnx::TensorProto::INT64:
    have = tensor.int64_data_size();
    break;
  case onnx::TensorProto::UINT32:
  case onnx::TensorProto::UINT64:
    have = tensor.uint64_data_size();
    break;
  case onnx::TensorProto::STRING:
    have = tensor.string_data_size();
    break;
  default:
    have = tensor.int32_data_size();
    break;
  }
  if (have != *count) {
    why = "it holds " + std::to_string(have) + " elements but its dimensions need " +
          std::to_string(*count);
    return false;
  }
  return true;
}

/// ONNX's shape inference and version converter trust the data of constant
/// tensors and the window attributes of these ops (a zero stride divides by
/// zero inside libonnx), so they are checked before either sees the model.
LogicalResult ModelImporter::validateBeforeLibonnx() {
  static const std::set<std::string> windowed = {
      "Conv",     "ConvTranspose", "ConvInteger", "QLinearConv", "MaxPool", "AveragePool",
      "LpPool",   "MaxUnpool",     "MaxRoiPool",  "DeformConv",  "Col2Im"};
  const onnx::GraphProto &graph = model.graph();
  std::string why;
  for (const onnx::TensorProto &init : graph.initializer())
    if (!tensorDataMatchesShape(init, why))
      return error() << "initializer '" << init.name() << "': " << why;
  for (int i = 0; i < graph.node_size(); ++i) {
    const onnx::NodeProto &node = graph.node(i);
    for (const onnx::AttributeProto &attr : node.attribute())
      if (attr.has_t() && !tensorDataMatchesShape(attr.t(), why))
        return error() << "node " << describeNode(graph, i) << ": attribute '" << attr.name()
                       << "': " << why;
    if (!isDefaultDomain(node.domain()) || !windowed.count(node.op_type()))
      continue;
    for (const onnx::AttributeProto &attr : node.attribute()) {
      bool positive = attr.name() == "strides" || attr.name() == "kernel_shape" ||
                      attr.name() == "dilations";
      bool nonNegative = attr.name() == "pads" || attr.name() == "output_padding";
      if (attr.name() == "group" && attr.i() < 1)
        return error() << "node " << describeNode(graph, i) << ": group must be positive, got "
                       << attr.i();
      if (!positive && !nonNegative)
        continue;
      for (int64_t v : attr.ints())
        if (positive ? v < 1 : v < 0)
          return error() << "node " << describeNode(graph, i) << ": " << attr.name() << " must be "
                         << (positive ? "positive" : "non-negative") << ", got " << v;
    }
  }
  return success();
}

LogicalResult ModelImporter::resolveOpset() {
  bool found = false;
  for (const onnx::OperatorSetIdProto &id : model.opset_import()) {
    if (isDefaultDomain(id.domain())) {
      opset = id.version();
      found = true;
    }
  }
  if (!found) {
    // A graph of other domains' ops only (ai.onnx.preview.training's
    // optimizers) needs no default opset.
    if (llvm::any_of(model.graph().node(),
                     [](const onnx::NodeProto &node) { return isDefaultDomain(node.domain()); }))
      return error() << "the model imports no opset of the default ONNX domain";
    opset = kMaxOpset;
    return success();
  }
  if (opset > kMaxOpset)
    return error() << "opset " << opset << " is newer than the supported "
                   << kMinOpset << "-" << kMaxOpset;
  if (opset > kLibonnxOpset) {
    std::string why;
    if (failed(adaptToOpset17(model, opset, options.boundInputs, why)))
      return error() << why;
    opset = kLibonnxOpset;
    return success();
  }
  if (opset >= kMinOpset)
    return success();
  // Older models go through ONNX's own version converter, in a child
  // process: it trusts the graph it converts, and a malformed one crashes it
  // (the importer's fuzzer found a null dereference in graphProtoToGraph).
  std::string converted, failure;
  if (!convertVersionInChild(model, kMinOpset, converted, failure))
    return error() << "opset " << opset << " is older than " << kMinOpset
                   << " and the ONNX version converter failed: " << failure;
  onnx::ModelProto result;
  if (converted.size() > size_t(INT_MAX) ||
      !result.ParseFromArray(converted.data(), int(converted.size())))
    return error() << "the ONNX version converter returned a model that does not parse";
  model = std::move(result);
  opset = kMinOpset;
  return success();
}

/// The subgraphs of a node's attributes (If's branches, Loop's body).
static std::vector<const onnx::GraphProto *> subgraphsOf(const onnx::NodeProto &node) {
  std::vector<const onnx::GraphProto *> graphs;
  for (const onnx::AttributeProto &attr : node.attribute()) {
    if (attr.has_g())
      graphs.push_back(&attr.g());
    for (const onnx::GraphProto &g : attr.graphs())
      graphs.push_back(&g);
  }
  return graphs;
}

/// The names a node's subgraphs read from the graphs around them (If's
/// branches and Loop's body see every enclosing value without listing it
/// as an input), recursively.
static void outerReads(const onnx::NodeProto &node, std::set<std::string> &reads) {
  for (const onnx::GraphProto *g : subgraphsOf(node)) {
    std::set<std::string> defined, inner;
    for (const auto &input : g->input())
      defined.insert(input.name());
    for (const auto &init : g->initializer())
      defined.insert(init.name());
    for (const onnx::NodeProto &n : g->node()) {
      for (const std::string &out : n.output())
        defined.insert(out);
      for (const std::string &in : n.input())
        if (!in.empty())
          inner.insert(in);
      outerReads(n, inner);
    }
    for (const auto &output : g->output())
      inner.insert(output.name());
    for (const std::string &name : inner)
      if (!defined.count(name))
        reads.insert(name);
  }
}

LogicalResult ModelImporter::orderNodes() {
  const onnx::GraphProto &graph = model.graph();
  std::set<std::string> available;
  for (const auto &input : graph.input())
    available.insert(input.name());
  for (const auto &init : graph.initializer())
    available.insert(init.name());
  std::map<std::string, int> producer;
  for (int i = 0; i < graph.node_size(); ++i)
    for (const std::string &out : graph.node(i).output())
      if (!out.empty())
        producer[out] = i;

  auto nodeName = [&](int i) { return describeNode(graph, i); };
  // Kahn's algorithm, keeping the file order among ready nodes.
  std::vector<int> pending(graph.node_size(), 0);
  std::vector<std::vector<int>> consumers(graph.node_size());
  for (int i = 0; i < graph.node_size(); ++i) {
    std::set<std::string> reads(graph.node(i).input().begin(), graph.node(i).input().end());
    outerReads(graph.node(i), reads);
    for (const std::string &in : reads) {
      if (in.empty() || available.count(in))
        continue;
      auto it = producer.find(in);
      if (it == producer.end())
        return error() << "node " << nodeName(i) << " reads '" << in
                       << "', which no node, graph input or initializer "
                          "defines (a missing initializer?)";
      ++pending[i];
      consumers[it->second].push_back(i);
    }
  }
  std::vector<int> ready;
  for (int i = graph.node_size() - 1; i >= 0; --i)
    if (pending[i] == 0)
      ready.push_back(i);
  while (!ready.empty()) {
    int i = ready.back();
    ready.pop_back();
    order.push_back(i);
    std::vector<int> next;
    for (int c : consumers[i])
      if (--pending[c] == 0)
        next.push_back(c);
    llvm::sort(next, std::greater<int>());
    // Lower indices are popped first.
    for (int c : next)
      ready.push_back(c);
    llvm::sort(ready, std::greater<int>());
  }
  if (static_cast<int>(order.size()) == graph.node_size()) {
    // Store the nodes in that order, so that the checker and shape inference
    // (which require sorted graphs) accept exporters that list them otherwise.
    if (!std::is_sorted(order.begin(), order.end())) {
      google::protobuf::RepeatedPtrField<onnx::NodeProto> sorted;
      for (int i : order)
        *sorted.Add() = graph.node(i);
      model.mutable_graph()->mutable_node()->Swap(&sorted);
      std::iota(order.begin(), order.end(), 0);
    }
    return success();
  }
  // Report the nodes caught in the cycle.
  std::string stuck;
  int reported = 0;
  for (int i = 0; i < graph.node_size() && reported < 8; ++i) {
    if (pending[i] > 0) {
      stuck += (reported++ ? ", " : "") + nodeName(i);
    }
  }
  return error() << "the graph has a cycle; these nodes wait on each other: "
                 << stuck;
}

LogicalResult ModelImporter::checkSupported() {
  const ConverterTable &converters = getConverters();
  const onnx::GraphProto &graph = model.graph();
  // Unsupported op names in first-seen order, with their node counts.
  std::vector<std::pair<std::string, int>> unsupported;
  int first = -1;
  // A node's subgraphs count as the node: their unsupported ops are its.
  std::function<bool(const onnx::NodeProto &, std::string &)> findUnsupported =
      [&](const onnx::NodeProto &node, std::string &key) {
        key = converterKey(node);
        if (!converters.count(key))
          return true;
        for (const onnx::GraphProto *g : subgraphsOf(node))
          for (const onnx::NodeProto &inner : g->node())
            if (findUnsupported(inner, key))
              return true;
        return false;
      };
  std::string firstNested;
  for (int i = 0; i < graph.node_size(); ++i) {
    const onnx::NodeProto &outer = graph.node(i);
    std::string key;
    if (!findUnsupported(outer, key))
      continue;
    auto it = llvm::find_if(unsupported, [&](auto &e) { return e.first == key; });
    if (it == unsupported.end())
      unsupported.push_back({key, 1});
    else
      ++it->second;
    if (first < 0) {
      first = i;
      if (key != converterKey(outer))
        firstNested = key;
    }
  }
  if (first < 0)
    return success();
  const onnx::NodeProto &node = graph.node(first);
  if (!firstNested.empty())
    return error() << "unsupported ONNX op '" << firstNested << "' in a subgraph of node '"
                   << (node.name().empty() ? "<unnamed>" : node.name()) << "' ("
                   << node.op_type() << ", node #" << first << " of " << graph.node_size()
                   << ")";
  std::string domain = isDefaultDomain(node.domain()) ? "ai.onnx" : node.domain();
  int64_t domainOpset = opset;
  for (const auto &id : model.opset_import())
    if (id.domain() == node.domain() && !isDefaultDomain(node.domain()))
      domainOpset = id.version();
  InFlightDiagnostic diag = error();
  diag << "unsupported ONNX op '" << node.op_type() << "' (domain '" << domain
       << "', opset " << domainOpset << ") at node '"
       << (node.name().empty() ? "<unnamed>" : node.name()) << "' (node #"
       << first << " of " << graph.node_size() << ")";
  diag << "; unsupported ops in this model: ";
  bool firstEntry = true;
  for (const auto &[op, count] : unsupported) {
    diag << (firstEntry ? "" : ", ") << op << " (" << count
         << (count == 1 ? " node)" : " nodes)");
    firstEntry = false;
  }
  return failure();
}

/// External data is untrusted input: a location may only name a regular
/// file inside the model's folder (or a folder the user allowed), offsets
/// and lengths must be plain decimal numbers, and every size is computed
/// without overflow before any byte is read. This runs before the ONNX
/// checker, which would otherwise open whatever the location names.
LogicalResult ModelImporter::validateExternalData() {
  SmallVector<std::string> roots;
  auto addRoot = [&](StringRef dir) -> LogicalResult {
    SmallString<256> real;
    if (llvm::sys::fs::real_path(dir.empty() ? StringRef(".") : dir, real))
      return error() << "cannot resolve the external data folder '" << dir << "'";
    roots.push_back(std::string(real));
    return success();
  };
  bool any = llvm::any_of(model.graph().initializer(), [](const onnx::TensorProto &t) {
    return t.data_location() == onnx::TensorProto::EXTERNAL;
  });
  if (!any)
    return success();
  if (failed(addRoot(llvm::sys::path::parent_path(path))))
    return failure();
  for (const std::string &dir : options.externalDataDirs)
    if (failed(addRoot(dir)))
      return failure();

  for (const onnx::TensorProto &tensor : model.graph().initializer()) {
    if (tensor.data_location() != onnx::TensorProto::EXTERNAL)
      continue;
    auto fail = [&]() { return error() << "initializer '" << tensor.name() << "': "; };
    std::string location;
    uint64_t offset = 0;
    std::optional<uint64_t> length;
    for (const auto &entry : tensor.external_data()) {
      if (entry.key() == "location") {
        location = entry.value();
        continue;
      }
      if (entry.key() != "offset" && entry.key() != "length")
        continue; // "checksum" and others carry nothing to read
      uint64_t value;
      if (StringRef(entry.value()).getAsInteger(10, value) ||
          value > uint64_t(std::numeric_limits<int64_t>::max()))
        return fail() << "external data " << entry.key() << " '" << entry.value()
                      << "' is not a decimal byte count";
      (entry.key() == "offset" ? offset : length.emplace()) = value;
    }
    if (location.empty())
      return fail() << "it is external but names no location";
    if (llvm::sys::path::is_absolute(location))
      return fail() << "external data location '" << location
                    << "' is an absolute path; it must name a file inside the model's folder";
    for (StringRef component : llvm::make_range(llvm::sys::path::begin(location),
                                                llvm::sys::path::end(location)))
      if (component == "..")
        return fail() << "external data location '" << location
                      << "' leaves the model's folder";
    SmallString<256> candidate = llvm::sys::path::parent_path(path);
    llvm::sys::path::append(candidate, location);
    SmallString<256> resolved;
    if (std::error_code ec = llvm::sys::fs::real_path(candidate, resolved))
      return error() << "cannot open external data file '" << candidate << "' of initializer '"
                     << tensor.name() << "': " << ec.message();
    bool inside = llvm::any_of(roots, [&](const std::string &root) {
      return StringRef(resolved).starts_with(root + "/");
    });
    if (!inside)
      return fail() << "external data file '" << candidate << "' resolves to '" << resolved
                    << "', outside the model's folder (allow a folder with "
                       "--external-data-dir)";
    llvm::sys::fs::file_status status;
    if (std::error_code ec = llvm::sys::fs::status(resolved, status))
      return fail() << "cannot read external data file '" << resolved << "': " << ec.message();
    if (status.type() != llvm::sys::fs::file_type::regular_file)
      return fail() << "external data file '" << resolved << "' is not a regular file";

    // The byte count of the declared shape, without overflow.
    FailureOr<Type> element = getElementType(&context, tensor.data_type());
    if (failed(element))
      return fail() << "unsupported " << onnxTypeName(tensor.data_type());
    std::optional<uint64_t> bytes = uint64_t(storageBytes(*element));
    for (int64_t dim : tensor.dims()) {
      if (dim < 0)
        return fail() << "negative dimension " << dim;
      bytes = bytes ? llvm::checkedMulUnsigned<uint64_t>(*bytes, uint64_t(dim)) : std::nullopt;
    }
    if (!bytes || *bytes > uint64_t(std::numeric_limits<int64_t>::max()))
      return fail() << "its dimensions describe more bytes than can be addressed";
    if (length && *length != *bytes)
      return fail() << "of type " << RankedTensorType::get(SmallVector<int64_t>(
                                         tensor.dims().begin(), tensor.dims().end()),
                                                           *element)
                    << " needs " << *bytes << " bytes but its external data length is "
                    << *length;
    uint64_t size = status.getSize();
    if (offset > size || *bytes > size - offset)
      return error() << "external data file '" << candidate << "' is too short for "
                     << "initializer '" << tensor.name() << "' (needs bytes " << offset
                     << " to " << offset + *bytes << ", file has " << size << ")";
    externalRefs[tensor.name()] = {std::string(resolved), offset, *bytes};
  }
  return success();
}

LogicalResult ModelImporter::runOnnxChecks() {
  if (options.checkModel) {
    bool hasExternalData = llvm::any_of(
        model.graph().initializer(), [](const onnx::TensorProto &t) {
          return t.data_location() == onnx::TensorProto::EXTERNAL;
        });
    // The model checked as if it were of IR version `irVersion`.
    auto checkAs = [&](int64_t irVersion) {
      int64_t given = model.ir_version();
      model.set_ir_version(irVersion);
      try {
        onnx::checker::check_model(model);
      } catch (...) {
        model.set_ir_version(given);
        throw;
      }
      model.set_ir_version(given);
    };
    try {
      if (model.ir_version() > onnx::IR_VERSION) {
        // A newer exporter's model (IR 9 and 10 add types, not structure):
        // checked as the newest IR version this ONNX library knows, so that
        // what IR 8 has is checked and a newer type is refused by name.
        // External initializers are checked by this importer (hostile
        // locations included); here they stand in as graph inputs, which is
        // what the checker sees of them.
        onnx::ModelProto asKnown;
        if (hasExternalData) {
          asKnown = model; // small: the weights are in the external files
          listInitializersAsInputs(
              *asKnown.mutable_graph(),
              [](const onnx::TensorProto &tensor) {
                return tensor.data_location() == onnx::TensorProto::EXTERNAL;
              },
              /*drop=*/true);
          asKnown.set_ir_version(onnx::IR_VERSION);
          onnx::checker::check_model(asKnown);
        } else {
          checkAs(onnx::IR_VERSION);
        }
      } else if (model.ir_version() < 4) {
        // IR 3 wanted every initializer listed as a graph input too; the
        // exporters of its time did not always list them (PyTorch 0.3's
        // padding constants), and IR 4 dropped the rule. Checked as IR 4:
        // the rest of IR 3 is IR 4.
        checkAs(4);
      } else if (hasExternalData) {
        // The path form resolves external data next to the model; the model
        // file itself is small in that case, so parsing it again is cheap.
        onnx::checker::check_model(path);
      } else {
        onnx::checker::check_model(model);
      }
    } catch (const std::exception &e) {
      return error() << "the ONNX checker rejects the model: " << e.what();
    }
  }
  if (failed(bindDimensions()))
    return failure();
  if (options.inferShapes) {
    try {
      onnx::ShapeInferenceOptions inferenceOptions(/*check_type=*/true,
                                                   /*strict_mode=*/1,
                                                   /*data_prop=*/false);
      onnx::shape_inference::InferShapes(model, onnx::OpSchemaRegistry::Instance(),
                                         inferenceOptions);
    } catch (const std::exception &e) {
      return error() << "ONNX shape inference failed (a type or shape "
                        "mismatch in the model): "
                     << e.what();
    }
  }
  return success();
}

/// Fixes the symbolic dimensions options.dimBindings names in the graph's
/// inputs, outputs and recorded value types, so that shape inference and
/// the import see them static.
LogicalResult ModelImporter::bindDimensions() {
  if (options.dimBindings.empty())
    return success();
  onnx::GraphProto &graph = *model.mutable_graph();
  std::map<std::string, int64_t> byName;
  for (const auto &[key, size] : options.dimBindings) {
    StringRef text(key);
    if (!text.ends_with("]")) {
      byName[key] = size;
      continue;
    }
    StringRef input = text.drop_back().split('[').first;
    StringRef axisText = text.drop_back().split('[').second;
    unsigned axis = 0;
    if (axisText.getAsInteger(10, axis))
      return error() << "--bind-dim '" << key << "': the axis is not a number";
    auto it = llvm::find_if(graph.input(), [&](const onnx::ValueInfoProto &vi) {
      return vi.name() == input;
    });
    if (it == graph.input().end()) {
      std::string inputs;
      for (const auto &vi : graph.input())
        inputs += (inputs.empty() ? "" : ", ") + vi.name();
      return error() << "--bind-dim '" << key << "' names '" << input
                     << "', which is not a graph input (its inputs: " << inputs << ")";
    }
    const auto &shape = it->type().tensor_type().shape();
    if (!it->type().has_tensor_type() || int(axis) >= shape.dim_size())
      return error() << "--bind-dim '" << key << "': input '" << input << "' has no axis "
                     << axis;
    const onnx::TensorShapeProto_Dimension &dim = shape.dim(axis);
    if (dim.has_dim_value()) {
      if (dim.dim_value() != size)
        return error() << "input '" << input << "' has axis " << axis << " fixed at "
                       << dim.dim_value() << ", not " << size
                       << " (export it with a dynamic axis)";
      continue;
    }
    if (!dim.has_dim_param() || dim.dim_param().empty())
      return error() << "--bind-dim '" << key << "': axis " << axis << " of input '"
                     << input << "' is unnamed; name it at export";
    byName[dim.dim_param()] = size;
  }
  std::set<std::string> used;
  auto bind = [&](onnx::ValueInfoProto &info, bool isInput) {
    if (!info.type().has_tensor_type() || !info.type().tensor_type().has_shape())
      return;
    for (auto &dim : *info.mutable_type()->mutable_tensor_type()->mutable_shape()->mutable_dim())
      if (dim.has_dim_param())
        if (auto it = byName.find(dim.dim_param()); it != byName.end()) {
          dim.set_dim_value(it->second);
          if (isInput)
            used.insert(it->first);
        }
  };
  for (auto &info : *graph.mutable_input())
    bind(info, /*isInput=*/true);
  for (auto &info : *graph.mutable_output())
    bind(info, /*isInput=*/false);
  for (auto &info : *graph.mutable_value_info())
    bind(info, /*isInput=*/false);
  for (const auto &entry : byName)
    if (!used.count(entry.first))
      return error() << "--bind-dim: no graph input has the dimension '" << entry.first << "'";
  return success();
}

FailureOr<RankedTensorType>
ModelImporter::typeFromProto(const onnx::TypeProto &type,
                             const std::string &name, bool *isUnsigned) {
  if (!type.has_tensor_type())
    return error() << "value '" << name
                   << "' is not a tensor (sequences, maps and optionals are "
                      "not supported)";
  const onnx::TypeProto_Tensor &tensorType = type.tensor_type();
  FailureOr<Type> element = getElementType(&context, tensorType.elem_type());
  if (failed(element))
    return error() << "value '" << name << "' has unsupported element type "
                   << onnxTypeName(tensorType.elem_type());
  if (isUnsigned)
    *isUnsigned = isUnsignedOnnxType(tensorType.elem_type());
  if (!tensorType.has_shape())
    return error() << "value '" << name
                   << "' has no shape; hasten needs at least its rank";
  return RankedTensorType::get(shapeFromProto(tensorType.shape()), *element);
}

FailureOr<ElementsAttr>
ModelImporter::loadInitializer(const onnx::TensorProto &tensor) {
  if (tensor.data_location() != onnx::TensorProto::EXTERNAL)
    return convertTensorProto(&context, tensor, options.inlineConstantLimit,
                              [&] { return error(); });
  auto found = externalRefs.find(tensor.name());
  if (found == externalRefs.end())
    return error() << "tensor '" << tensor.name()
                   << "' keeps its data externally, which only graph initializers may";
  const ExternalRef &ref = found->second;
  std::shared_ptr<llvm::MemoryBuffer> &file = externalFiles[ref.path];
  if (!file) {
    auto buffer = llvm::MemoryBuffer::getFile(ref.path, /*IsText=*/false,
                                              /*RequiresNullTerminator=*/false);
    if (!buffer)
      return error() << "cannot open external data file '" << ref.path
                     << "' of initializer '" << tensor.name()
                     << "': " << buffer.getError().message();
    file = std::move(*buffer);
  }
  FailureOr<Type> element = getElementType(&context, tensor.data_type());
  if (failed(element))
    return error() << "initializer '" << tensor.name() << "' has unsupported "
                   << onnxTypeName(tensor.data_type());
  SmallVector<int64_t> shape(tensor.dims().begin(), tensor.dims().end());
  auto type = RankedTensorType::get(shape, *element);
  // The file was checked before; this catches one that shrank since.
  if (ref.offset > file->getBufferSize() || ref.bytes > file->getBufferSize() - ref.offset)
    return error() << "external data file '" << ref.path << "' is too short for "
                   << "initializer '" << tensor.name() << "' (needs bytes "
                   << ref.offset << " to " << ref.offset + ref.bytes << ", file has "
                   << file->getBufferSize() << ")";
  ArrayRef<char> data(file->getBufferStart() + ref.offset, ref.bytes);
  int64_t align = storageBytes(*element);
  std::optional<AsmResourceBlob> blob;
  if (reinterpret_cast<uintptr_t>(data.data()) % align == 0 &&
      type.getNumElements() > options.inlineConstantLimit &&
      !element->isInteger(1)) {
    // View the mapped file directly; the blob keeps the mapping alive.
    std::shared_ptr<llvm::MemoryBuffer> keepAlive = file;
    blob = AsmResourceBlob(
        data, align,
        [keepAlive](void *, size_t, size_t) mutable { keepAlive.reset(); },
        /*dataIsMutable=*/false);
  }
  return makeElementsAttr(type, data, options.inlineConstantLimit,
                          tensor.name(), std::move(blob));
}

FailureOr<ElementsAttr>
ModelImporter::loadBoundInput(const std::string &name,
                              const onnx::ValueInfoProto &info) {
  const std::string &file = options.boundInputs.at(name);
  auto buffer = llvm::MemoryBuffer::getFile(file, /*IsText=*/false,
                                            /*RequiresNullTerminator=*/false);
  if (!buffer)
    return error() << "cannot open '" << file << "' bound to input '" << name
                   << "': " << buffer.getError().message();
  onnx::TensorProto tensor;
  if (!tensor.ParseFromArray((*buffer)->getBufferStart(),
                             static_cast<int>((*buffer)->getBufferSize())))
    return error() << "'" << file << "' bound to input '" << name
                   << "' is not a serialized ONNX TensorProto";
  FailureOr<RankedTensorType> declared = typeFromProto(info.type(), name);
  if (failed(declared))
    return failure();
  FailureOr<ElementsAttr> attr = convertTensorProto(
      &context, tensor, options.inlineConstantLimit, [&] { return error(); });
  if (failed(attr))
    return failure();
  auto actual = cast<RankedTensorType>(attr->getType());
  if (!tensor::CastOp::areCastCompatible(actual, *declared))
    return error() << "'" << file << "' holds " << actual
                   << " but input '" << name << "' is declared " << *declared;
  return attr;
}

/// A static shape whose byte size does not fit in 64 bits (a hostile dim
/// such as 2^62 + 3, or ConstantOfShape [2^40, 2^40]) would wrap in every
/// size computation downstream; it is refused here, naming the node.
LogicalResult ModelImporter::checkStaticSizes(ModuleOp module) {
  auto check = [&](Type type, const std::string &what) -> LogicalResult {
    auto tensor = dyn_cast<RankedTensorType>(type);
    if (!tensor || !tensor.hasStaticShape())
      return success();
    uint64_t elementBytes = std::max<uint64_t>(1, (tensor.getElementTypeBitWidth() + 7) / 8);
    if (checkedByteSize(tensor.getShape().data(), tensor.getRank(), elementBytes))
      return success();
    return error() << what << " is " << tensor << ", more bytes than can be addressed";
  };
  for (auto func : module.getOps<func::FuncOp>()) {
    for (auto [i, type] : llvm::enumerate(func.getArgumentTypes())) {
      auto name = func.getArgAttrOfType<StringAttr>(i, HastenDialect::kOnnxNameAttrName);
      if (failed(check(type, "input '" + (name ? name.str() : std::to_string(i)) + "'")))
        return failure();
    }
    WalkResult walk = func.walk([&](Operation *op) {
      auto node = dyn_cast<NameLoc>(op->getLoc());
      for (Type type : op->getResultTypes())
        if (failed(check(type, "the result of node '" +
                                   (node ? node.getName().str() : std::string("?")) + "'")))
          return WalkResult::interrupt();
      return WalkResult::advance();
    });
    if (walk.wasInterrupted())
      return failure();
  }
  return success();
}

FailureOr<OwningOpRef<ModuleOp>> ModelImporter::translate() {
  const onnx::GraphProto &graph = model.graph();
  OpBuilder b(&context);
  OwningOpRef<ModuleOp> module = ModuleOp::create(fileLoc);
  module->getOperation()->setAttr("hasten.onnx.opset",
                                  b.getI64IntegerAttr(opset));
  if (!model.producer_name().empty())
    module->getOperation()->setAttr("hasten.onnx.producer",
                                    b.getStringAttr(model.producer_name()));

  for (const auto &vi : graph.value_info())
    declared[vi.name()] = &vi.type();
  for (const auto &vi : graph.output())
    declared[vi.name()] = &vi.type();

  for (const auto &binding : options.boundInputs) {
    const std::string &name = binding.first;
    auto it = llvm::find_if(graph.input(), [&](const onnx::ValueInfoProto &vi) {
      return vi.name() == name;
    });
    if (it == graph.input().end())
      return error() << "--bind-input names '" << name
                     << "', which is not a graph input";
    boundInfos[name] = &*it;
  }
  // Large weights become resource blobs, which the functions that passes
  // clone from this one (decoder entries) share rather than copy.
  for (const auto &init : graph.initializer()) {
    FailureOr<ElementsAttr> attr = loadInitializer(init);
    if (failed(attr))
      return failure();
    initializers.push_back({init.name(), *attr, isUnsignedOnnxType(init.data_type())});
  }
  for (const auto &[name, info] : boundInfos) {
    FailureOr<ElementsAttr> attr = loadBoundInput(name, *info);
    if (failed(attr))
      return failure();
    initializers.push_back(
        {name, *attr, isUnsignedOnnxType(info->type().tensor_type().elem_type())});
  }

  b.setInsertionPointToEnd(module->getBody());
  if (failed(translateFunction(b)))
    return failure();
  if (failed(checkStaticSizes(*module)))
    return failure();
  if (failed(verify(*module)))
    return error() << "internal error: the imported module does not verify";
  return module;
}

/// Converts `graph`'s nodes in `order` at the builder's insertion point,
/// defining their outputs in `values`.
LogicalResult ModelImporter::importNodes(const onnx::GraphProto &graph, ArrayRef<int> order,
                                         ValueTable &values, OpBuilder &b) {
  const ConverterTable &converters = getConverters();
  SubgraphImporter subgraphs = [this](const onnx::GraphProto &subgraph, ValueTable &scope,
                                      OpBuilder &sb) { return importSubgraph(subgraph, scope, sb); };
  for (int index : order) {
    const onnx::NodeProto &node = graph.node(index);
    std::string nodeName =
        node.name().empty() ? node.op_type() + "_" + std::to_string(index)
                            : node.name();
    Location loc = NameLoc::get(b.getStringAttr(nodeName), fileLoc);
    NodeContext ctx(b, loc, node, opset, values, options.inlineConstantLimit, &subgraphs);
    ctx.declaredTypes = &declared;
    if (!takesSequencesOrOptionals(node.op_type()))
      for (int i = 0; i < node.input_size(); ++i) {
        if (!ctx.hasInput(i))
          continue;
        const ImportedValue &input = ctx.info(i);
        if (input.isSequence() || input.isOptional())
          return ctx.fail("input #" + std::to_string(i) + " ('" + node.input(i) + "') is " +
                          (input.isOptional() ? "an optional" : "a sequence") + "; " +
                          node.op_type() + " takes tensors");
      }
    if (!takesStrings(node.op_type()))
      for (int i = 0; i < node.input_size(); ++i)
        if (ctx.hasInput(i) && ctx.info(i).isString())
          return ctx.fail("input #" + std::to_string(i) + " ('" + node.input(i) +
                          "') is a string tensor; hasten supports strings in Cast, CastLike, "
                          "StringNormalizer and Identity only");
    Block *block = b.getInsertionBlock();
    Block::iterator at = b.getInsertionPoint();
    Operation *lastBefore = at == block->begin() ? nullptr : &*std::prev(at);
    if (failed(converters.lookup(converterKey(node))(ctx)))
      return failure();
    if (const onnx::AttributeProto *unread = ctx.unreadAttr())
      return ctx.fail("attribute '" + unread->name() +
                      "' is not supported (ignoring it could change the result)");
    foldNewOps(block, lastBefore, b.getInsertionPoint(), node, values);
    // Every requested output must have been defined, with the element type
    // ONNX inferred for it.
    for (int o = 0; o < node.output_size(); ++o) {
      const std::string &out = node.output(o);
      if (out.empty())
        continue;
      auto it = values.find(out);
      if (it == values.end())
        return ctx.fail("output #" + std::to_string(o) + " ('" + out +
                        "') is not supported");
      auto found = declared.find(out);
      if (found == declared.end() || !found->second->has_tensor_type())
        continue;
      FailureOr<Type> expected = getElementType(
          &context, found->second->tensor_type().elem_type());
      Type actual = cast<ShapedType>(it->second.tensor.getType()).getElementType();
      if (succeeded(expected) && *expected != actual)
        return ctx.emitError() << "output '" << out << "' has element type "
                               << actual << " but ONNX declares "
                               << *expected;
    }
  }
  return success();
}

FailureOr<SmallVector<ImportedValue>>
ModelImporter::importSubgraph(const onnx::GraphProto &graph, ValueTable &scope, OpBuilder &b) {
  for (const onnx::TensorProto &init : graph.initializer()) {
    // Subgraph initializers keep their data inline (external data is for
    // the main graph's weights).
    FailureOr<ElementsAttr> attr = loadInitializer(init);
    if (failed(attr))
      return failure();
    auto constant = arith::ConstantOp::create(
        b, NameLoc::get(b.getStringAttr(init.name()), fileLoc), *attr);
    scope[init.name()] = {constant, isUnsignedOnnxType(init.data_type()), std::nullopt};
  }
  // ONNX requires a subgraph's nodes in topological order (the checker
  // checks it).
  SmallVector<int> order(graph.node_size());
  std::iota(order.begin(), order.end(), 0);
  if (failed(importNodes(graph, order, scope, b)))
    return failure();
  SmallVector<ImportedValue> outputs;
  for (const onnx::ValueInfoProto &output : graph.output()) {
    auto it = scope.find(output.name());
    if (it == scope.end())
      return error() << "subgraph '" << graph.name() << "': output '" << output.name()
                     << "' is not produced by any node";
    outputs.push_back(it->second);
  }
  return outputs;
}

LogicalResult ModelImporter::translateFunction(OpBuilder &b) {
  const onnx::GraphProto &graph = model.graph();
  std::set<std::string> initializerNames;
  for (const auto &init : graph.initializer())
    initializerNames.insert(init.name());

  // Function arguments: graph inputs that are not initializers, each as
  // the parts it crosses the ABI in (one for a tensor; see abiParts).
  SmallVector<Type> argTypes;
  SmallVector<const onnx::ValueInfoProto *> argInfos;
  SmallVector<AbiValue> argValues;
  for (const auto &input : graph.input()) {
    if (initializerNames.count(input.name()) || boundInfos.count(input.name()))
      continue;
    FailureOr<AbiValue> value = abiParts(input.type(), input.name());
    if (failed(value))
      return failure();
    for (const AbiPart &part : value->parts)
      argTypes.push_back(part.type);
    argInfos.push_back(&input);
    argValues.push_back(std::move(*value));
  }

  auto func = func::FuncOp::create(b, fileLoc, options.entryName,
                                   b.getFunctionType(argTypes, {}));
  OpBuilder::InsertionGuard guard(b);
  Block *entry = func.addEntryBlock();
  b.setInsertionPointToEnd(entry);

  ValueTable values;
  unsigned nextArg = 0;
  for (auto [info, value] : llvm::zip(argInfos, argValues)) {
    unsigned first = nextArg;
    for (const AbiPart &part : value.parts) {
      setPartAttrs(b, part, info->name(), [&](StringRef name, Attribute attr) {
        func.setArgAttr(nextArg, name, attr);
      });
      ++nextArg;
    }
    values[info->name()] =
        rebuildValue(value.kind, entry->getArguments().slice(first, value.parts.size()));
  }

  for (const Initializer &init : initializers) {
    auto constant = arith::ConstantOp::create(
        b, NameLoc::get(b.getStringAttr(init.name), fileLoc), init.value);
    // A graph input with the same name as an initializer is overridable in
    // ONNX; hasten treats the initializer as the value (weights are fixed).
    values[init.name] = {constant, init.isUnsigned, std::nullopt};
  }

  if (failed(importNodes(graph, order, values, b)))
    return failure();

  SmallVector<Value> results;
  SmallVector<Type> resultTypes;
  SmallVector<std::function<void(unsigned)>> resultAttrs;
  for (const onnx::ValueInfoProto &output : graph.output()) {
    auto it = values.find(output.name());
    if (it == values.end())
      return error() << "graph output '" << output.name()
                     << "' is not produced by any node";
    const ImportedValue &produced = it->second;
    bool declaredString = output.type().has_tensor_type() &&
                          output.type().tensor_type().elem_type() == onnx::TensorProto::STRING;
    if (!produced.isSequence() && !produced.isOptional() && !produced.isString() &&
        !declaredString && !output.type().has_sequence_type() &&
        !output.type().has_optional_type()) {
      FailureOr<Value> value = tensorOutput(b, output, produced);
      if (failed(value))
        return failure();
      results.push_back(*value);
      resultTypes.push_back(value->getType());
      unsigned index = results.size() - 1;
      resultAttrs.push_back([&, index, &output = output, produced](unsigned) {
        setTensorResultAttrs(b, func, index, output, produced, resultTypes[index]);
      });
      continue;
    }
    // A sequence or an optional: its parts, in the ABI's types.
    FailureOr<AbiValue> abi = abiParts(output.type(), output.name());
    if (failed(abi))
      return failure();
    ImportedValue value = produced;
    if (abi->kind.optional && !value.isOptional())
      value.present = arith::ConstantOp::create(
          b, fileLoc, DenseElementsAttr::get(RankedTensorType::get({}, b.getI1Type()), true));
    // A Loop carrying an optional returns it as its body does (ONNX types
    // the output after the body): the value without its flag.
    if (!abi->kind.optional && value.isOptional())
      value.present = Value();
    auto kind = [](bool optional, bool sequence) {
      return std::string(optional ? "an optional " : "a ") + (sequence ? "sequence" : "tensor");
    };
    if (abi->kind.optional != value.isOptional() || abi->kind.sequence != value.isSequence())
      return error() << "graph output '" << output.name() << "' is declared "
                     << kind(abi->kind.optional, abi->kind.sequence) << " but computes "
                     << kind(value.isOptional(), value.isSequence());
    if (abi->kind.strings != value.isString())
      return error() << "graph output '" << output.name() << "' is declared "
                     << (abi->kind.strings ? "a string tensor" : "numbers") << " but computes "
                     << (value.isString() ? "strings" : "numbers");
    SmallVector<Value> parts = flattenValue(value);
    for (auto [part, spec] : llvm::zip(parts, abi->parts)) {
      if (cast<ShapedType>(part.getType()).getElementType() !=
          cast<ShapedType>(spec.type).getElementType())
        return error() << "graph output '" << output.name() << "' is declared with elements of "
                       << cast<ShapedType>(spec.type).getElementType() << " but computes "
                       << cast<ShapedType>(part.getType()).getElementType();
      results.push_back(castIfNeeded(b, fileLoc, part, spec.type));
      resultTypes.push_back(spec.type);
      unsigned index = results.size() - 1;
      resultAttrs.push_back([&, index, spec = spec, name = output.name()](unsigned) {
        setPartAttrs(b, spec, name, [&](StringRef attrName, Attribute attr) {
          func.setResultAttr(index, attrName, attr);
        });
      });
    }
  }
  func::ReturnOp::create(b, fileLoc, results);
  func.setType(b.getFunctionType(argTypes, resultTypes));
  for (auto [i, set] : llvm::enumerate(resultAttrs))
    set(i);
  return success();
}

FailureOr<Value> ModelImporter::tensorOutput(OpBuilder &b, const onnx::ValueInfoProto &output,
                                             const ImportedValue &produced) {
  Value value = produced.tensor;
  auto actual = cast<RankedTensorType>(value.getType());
  if (!output.type().has_tensor_type() || !output.type().tensor_type().has_shape())
    return value;
  FailureOr<RankedTensorType> declaredType = typeFromProto(output.type(), output.name());
  if (failed(declaredType))
    return failure();
  if (!tensor::CastOp::areCastCompatible(actual, *declaredType))
    return error() << "graph output '" << output.name() << "' is declared " << *declaredType
                   << " but computes " << actual;
  // Keep the more static of the two.
  SmallVector<int64_t> shape;
  for (auto [a, d] : llvm::zip(actual.getShape(), declaredType->getShape()))
    shape.push_back(ShapedType::isDynamic(a) ? d : a);
  return castIfNeeded(b, fileLoc, value, RankedTensorType::get(shape, actual.getElementType()));
}

void ModelImporter::setTensorResultAttrs(OpBuilder &b, func::FuncOp func, unsigned i,
                                         const onnx::ValueInfoProto &output,
                                         const ImportedValue &produced, Type resultType) {
  func.setResultAttr(i, HastenDialect::kOnnxNameAttrName, b.getStringAttr(output.name()));
  // The element type as ONNX names it (MLIR's integers are signless).
  int32_t elemType = output.type().tensor_type().elem_type();
  if (elemType == onnx::TensorProto::UNDEFINED)
    elemType = onnxTypeFor(cast<ShapedType>(resultType).getElementType(), produced.isUnsigned);
  func.setResultAttr(i, HastenDialect::kOnnxElemTypeAttrName, b.getI32IntegerAttr(elemType));
  SmallVector<Attribute> dimNames;
  bool anySymbolic = false;
  for (const auto &dim : output.type().tensor_type().shape().dim()) {
    dimNames.push_back(b.getStringAttr(dim.dim_param()));
    anySymbolic |= !dim.dim_param().empty();
  }
  if (anySymbolic && dimNames.size() == (size_t)cast<ShapedType>(resultType).getRank())
    func.setResultAttr(i, HastenDialect::kOnnxDimParamsAttrName, b.getArrayAttr(dimNames));
}

FailureOr<AbiValue> ModelImporter::abiParts(const onnx::TypeProto &type,
                                            const std::string &name) {
  AbiValue value;
  const onnx::TypeProto *inner = &type;
  if (type.has_optional_type()) {
    inner = &type.optional_type().elem_type();
    value.parts.push_back({RankedTensorType::get({}, IntegerType::get(&context, 1)),
                           TensorRole::OptionalPresent, ".present", onnx::TensorProto::BOOL,
                           nullptr});
  }
  if (inner->has_sequence_type()) {
    const onnx::TypeProto &element = inner->sequence_type().elem_type();
    if (!element.has_tensor_type())
      return error() << "value '" << name
                     << "' is a sequence of non-tensors (only sequences of tensors are "
                        "supported)";
    int32_t elemType = element.tensor_type().elem_type();
    FailureOr<Type> elementType = getElementType(&context, elemType);
    if (failed(elementType))
      return error() << "value '" << name << "' is a sequence of unsupported element type "
                     << onnxTypeName(elemType);
    value.parts.push_back({RankedTensorType::get({ShapedType::kDynamic}, *elementType),
                           TensorRole::SequenceData, "", elemType, nullptr});
    value.parts.push_back(
        {RankedTensorType::get({ShapedType::kDynamic, ShapedType::kDynamic},
                               IntegerType::get(&context, 64)),
         TensorRole::SequenceShapes, ".shapes", onnx::TensorProto::INT64, nullptr});
    value.kind.isUnsigned = isUnsignedOnnxType(elemType);
    value.kind.elementRank =
        element.tensor_type().has_shape() ? element.tensor_type().shape().dim_size() : kUnknownRank;
  } else if (inner->has_tensor_type() &&
             inner->tensor_type().elem_type() == onnx::TensorProto::STRING) {
    if (type.has_optional_type())
      return error() << "value '" << name << "' is an optional string tensor (not supported)";
    // Strings: their bytes, a row per string padded to the longest, and
    // their lengths.
    if (!inner->tensor_type().has_shape())
      return error() << "value '" << name << "' has no shape; hasten needs at least its rank";
    SmallVector<int64_t> shape = shapeFromProto(inner->tensor_type().shape());
    SmallVector<int64_t> rows = shape;
    rows.push_back(ShapedType::kDynamic);
    value.parts.push_back({RankedTensorType::get(rows, IntegerType::get(&context, 8)),
                           TensorRole::StringBytes, "", onnx::TensorProto::UINT8, nullptr});
    value.parts.push_back({RankedTensorType::get(shape, IntegerType::get(&context, 64)),
                           TensorRole::StringLengths, ".lengths", onnx::TensorProto::INT64,
                           &inner->tensor_type()});
    value.kind.strings = true;
  } else {
    bool isUnsigned = false;
    FailureOr<RankedTensorType> tensorType = typeFromProto(*inner, name, &isUnsigned);
    if (failed(tensorType))
      return failure();
    value.parts.push_back({*tensorType, TensorRole::None, "", inner->tensor_type().elem_type(),
                           &inner->tensor_type()});
    value.kind.isUnsigned = isUnsigned;
  }
  value.kind.sequence = inner->has_sequence_type();
  value.kind.optional = type.has_optional_type();
  return value;
}

void ModelImporter::setPartAttrs(OpBuilder &b, const AbiPart &part, const std::string &name,
                                 function_ref<void(StringRef, Attribute)> set) {
  set(HastenDialect::kOnnxNameAttrName, b.getStringAttr(name + part.suffix));
  set(HastenDialect::kOnnxElemTypeAttrName, b.getI32IntegerAttr(part.onnxElemType));
  if (part.role != TensorRole::None)
    set(HastenDialect::kRoleAttrName, b.getStringAttr(stringifyTensorRole(part.role)));
  if (!part.tensorType)
    return;
  // Keep symbolic dimension names for later passes.
  SmallVector<Attribute> dimNames;
  bool anySymbolic = false;
  for (const auto &dim : part.tensorType->shape().dim()) {
    dimNames.push_back(b.getStringAttr(dim.dim_param()));
    anySymbolic |= !dim.dim_param().empty();
  }
  if (anySymbolic)
    set(HastenDialect::kOnnxDimParamsAttrName, b.getArrayAttr(dimNames));
}

FailureOr<OwningOpRef<ModuleOp>> ModelImporter::run() {
  if (failed(parse()) || failed(validateBeforeLibonnx()) || failed(resolveOpset()) ||
      failed(orderNodes()) || failed(checkSupported()) || failed(validateExternalData()) ||
      failed(runOnnxChecks()))
    return failure();
  return translate();
}

} // namespace

FailureOr<OwningOpRef<ModuleOp>>
hasten::importOnnxFile(StringRef path, MLIRContext &context,
                       const OnnxImportOptions &options) {
  DialectRegistry registry;
  registerOnnxImportDialects(registry);
  context.appendDialectRegistry(registry);
  context.loadAllAvailableDialects();
  ModelImporter importer(path, context, options);
  return importer.run();
}
