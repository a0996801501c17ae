//===- ImporterInternal.h - shared pieces of the ONNX importer --*- C++ -*-===//
//
// The per-node context handed to op converters, the converter table, and the
// IR-building helpers the converters share. Private to lib/Import.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_LIB_IMPORT_IMPORTERINTERNAL_H
#define HASTEN_LIB_IMPORT_IMPORTERINTERNAL_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"

#include <onnx/onnx_pb.h>

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>

namespace hasten::onnx_import {

using namespace mlir;

/// One ONNX value as the importer sees it.
struct ImportedValue {
  ImportedValue() = default;
  ImportedValue(Value tensor, bool isUnsigned = false,
                std::optional<SmallVector<Value>> elements = std::nullopt)
      : tensor(tensor), isUnsigned(isUnsigned), elements(std::move(elements)) {}

  Value tensor;
  /// ONNX uint* types map to signless integers; this remembers the sign.
  bool isUnsigned = false;
  /// For small integer tensors of rank 0 or 1: their elements as scalars, so
  /// that shape arithmetic (Shape -> Gather -> Concat -> Reshape) stays scalar
  /// and folds to constants wherever dimensions are static.
  std::optional<SmallVector<Value>> elements;
  /// A sequence of tensors (ONNX's sequence type): `tensor` holds the
  /// elements' data back to back (1-D, each row-major) and `shapes` their
  /// shapes, an i64 table of one row per element: its rank, then its
  /// dimensions, padded with 1 to the table's width. Null for a tensor.
  Value shapes;
  /// The rank of a sequence's elements where the importer knows it (every
  /// element inserted had it, or the model declares it), kNoElements for a
  /// sequence built empty, kUnknownRank otherwise.
  int64_t elementRank = -1;
  /// An optional (ONNX's optional type): whether it holds a value, as a
  /// rank-0 i1 tensor. The fields above hold the value, or a placeholder of
  /// its type (empty) when there is none. Null for a plain value.
  Value present;

  /// A string tensor of shape S: `tensor` holds its strings' bytes, one row
  /// per string padded to the longest ([S..., W] i8), and `stringLengths`
  /// their lengths ([S...] i64). Null for other tensors.
  Value stringLengths;

  bool isString() const { return static_cast<bool>(stringLengths); }
  bool isSequence() const { return static_cast<bool>(shapes); }
  bool isOptional() const { return static_cast<bool>(present); }
};

constexpr int64_t kUnknownRank = -1, kNoElements = -2;
/// The element rank of a sequence holding elements of both ranks.
int64_t joinElementRanks(int64_t a, int64_t b);

/// The MLIR values that make up `value`, in the order the ABI passes them:
/// the presence flag of an optional, then the tensor (a sequence's data, a
/// string tensor's bytes), then a sequence's shape table or a string
/// tensor's lengths.
SmallVector<Value> flattenValue(const ImportedValue &value);
/// What kind of value an ImportedValue is, without its MLIR values: which
/// parts flattenValue gives, and the metadata they do not carry.
struct ValueKind {
  bool optional = false, sequence = false, strings = false;
  bool isUnsigned = false;
  int64_t elementRank = kUnknownRank;
};
ValueKind kindOf(const ImportedValue &value);
/// How many MLIR values (flattenValue's parts) a value of `kind` is.
inline unsigned numParts(const ValueKind &kind) {
  return (kind.optional ? 1 : 0) + 1 + (kind.sequence || kind.strings ? 1 : 0);
}
/// A value of `kind` made of `parts` in flattenValue's order.
ImportedValue rebuildValue(const ValueKind &kind, ValueRange parts);
/// A value of `like`'s kind (tensor, sequence, optional, strings) made of
/// `parts`; metadata (signedness, element rank) from `like`.
inline ImportedValue rebuildValue(const ImportedValue &like, ValueRange parts) {
  return rebuildValue(kindOf(like), parts);
}

using ValueTable = llvm::StringMap<ImportedValue>;

/// Maps an ONNX TensorProto data type to an MLIR element type.
FailureOr<Type> getElementType(MLIRContext *context, int32_t onnxType);
bool isUnsignedOnnxType(int32_t onnxType);
/// The ONNX TensorProto data type of an MLIR element type.
int32_t onnxTypeFor(Type element, bool isUnsigned);
std::string onnxTypeName(int32_t onnxType);

/// Converts a TensorProto (raw or typed fields, not external) into an
/// attribute: a DenseElementsAttr up to `inlineLimit` elements, else a
/// DenseResourceElementsAttr named after the tensor.
FailureOr<ElementsAttr> convertTensorProto(MLIRContext *context,
                                           const onnx::TensorProto &tensor,
                                           int64_t inlineLimit,
                                           function_ref<InFlightDiagnostic()> emitError);

/// The attribute for `bytes` (MLIR layout, i1 as one byte each): dense up
/// to `inlineLimit` elements, else a resource blob named `name` (a copy of
/// the bytes unless `ownedBlob` is given).
ElementsAttr makeElementsAttr(RankedTensorType type, ArrayRef<char> bytes, int64_t inlineLimit,
                              StringRef name,
                              std::optional<AsmResourceBlob> ownedBlob = std::nullopt);

/// Imports a subgraph (If's branches, Loop's and Scan's bodies) at the
/// builder's insertion point: `scope` holds what it may read (the enclosing
/// graphs' values, and its own inputs bound by the caller); returns its
/// outputs in order.
using SubgraphImporter = std::function<FailureOr<SmallVector<ImportedValue>>(
    const onnx::GraphProto &graph, ValueTable &scope, OpBuilder &b)>;

/// Everything a converter sees of the node it converts.
class NodeContext {
public:
  NodeContext(OpBuilder &builder, Location loc, const onnx::NodeProto &node,
              int64_t opset, ValueTable &values, int64_t inlineLimit,
              const SubgraphImporter *subgraphs = nullptr)
      : b(builder), loc(loc), node(node), opset(opset), subgraphs(subgraphs), values(values),
        inlineLimit(inlineLimit) {}

  OpBuilder &b;
  Location loc;
  const onnx::NodeProto &node;
  /// Opset version of the default domain.
  int64_t opset;
  /// Imports the node's subgraphs (null where nodes have none).
  const SubgraphImporter *subgraphs;
  /// The types the model declares for values (value_info, outputs, shape
  /// inference), or null.
  const std::map<std::string, const onnx::TypeProto *> *declaredTypes = nullptr;
  /// The values the node sees (a subgraph's scope starts as a copy).
  const ValueTable &scope() const { return values; }

  // Inputs. Optional inputs may be absent or given as an empty name.
  bool hasInput(unsigned i) const {
    return static_cast<int>(i) < node.input_size() && !node.input(i).empty();
  }
  Value input(unsigned i) const { return info(i).tensor; }
  const ImportedValue &info(unsigned i) const {
    return values.find(node.input(i))->second;
  }
  /// The rank ONNX declares for output `i` (value_info or shape
  /// inference), if any.
  std::optional<int64_t> declaredOutputRank(unsigned i) const;
  RankedTensorType inputType(unsigned i) const {
    return cast<RankedTensorType>(input(i).getType());
  }
  /// The elements of a small static integer tensor input, as scalars.
  std::optional<SmallVector<Value>> inputElements(unsigned i);
  /// The elements of an integer input, when they are all constants.
  std::optional<SmallVector<int64_t>> constantInts(unsigned i);
  /// The elements of a float input, when they are all constants.
  std::optional<SmallVector<double>> constantFloats(unsigned i);

  // Attributes. Every attribute a converter looks up is recorded: one it
  // never looked at is refused after conversion (ignoring it could change
  // the result). `ignoreAttr` records one that cannot change it.
  const onnx::AttributeProto *attr(StringRef name) const;
  void ignoreAttr(StringRef name) const { lookedUp.insert(name); }
  /// The node's first attribute that the converter never looked up.
  const onnx::AttributeProto *unreadAttr() const;
  bool hasAttr(StringRef name) const { return attr(name) != nullptr; }
  int64_t getInt(StringRef name, int64_t defaultValue) const;
  float getFloat(StringRef name, float defaultValue) const;
  std::string getString(StringRef name, StringRef defaultValue) const;
  std::optional<SmallVector<int64_t>> getInts(StringRef name) const;
  std::optional<SmallVector<float>> getFloats(StringRef name) const;

  // Outputs. Optional outputs may be absent or given as an empty name.
  bool wantsOutput(unsigned i) const {
    return static_cast<int>(i) < node.output_size() && !node.output(i).empty();
  }
  void setOutput(unsigned i, Value tensor, bool isUnsigned = false);
  /// Defines output `i` as a whole imported value (a sequence, an optional).
  void setOutputValue(unsigned i, const ImportedValue &value);
  /// Defines a small integer output from its scalar elements (rank 1, or
  /// rank 0 when `scalar` is set).
  void setOutputElements(unsigned i, ArrayRef<Value> elements, Type elementType,
                         bool scalar = false, bool isUnsigned = false);

  // Errors: prefixed with the node's name and op type.
  InFlightDiagnostic emitError() const;
  LogicalResult fail(const Twine &message) const;
  /// Normalizes a possibly negative axis, or fails naming `what`.
  FailureOr<int64_t> normalizeAxis(int64_t axis, int64_t rank,
                                   StringRef what = "axis") const;

  std::string name() const;
  int64_t inlineConstantLimit() const { return inlineLimit; }

private:
  ValueTable &values;
  int64_t inlineLimit;
  mutable llvm::StringSet<> lookedUp;
};

/// Conv of x by w (+ bias per output channel) with the node's geometry
/// attributes (pads, strides, dilations, group), in their element type:
/// float, or i32 for the integer convolutions.
FailureOr<Value> buildConvolution(NodeContext &ctx, Value x, Value w, Value bias);

using ConvertFn = LogicalResult (*)(NodeContext &);
using ConverterTable = llvm::StringMap<ConvertFn>;

void registerElementwiseConverters(ConverterTable &table);
void registerTensorConverters(ConverterTable &table);
void registerLinalgConverters(ConverterTable &table);
void registerQuantizedConverters(ConverterTable &table);
void registerRecurrentConverters(ConverterTable &table);
void registerSignalConverters(ConverterTable &table);
void registerDetectionConverters(ConverterTable &table);
void registerSelectionConverters(ConverterTable &table);
void registerControlFlowConverters(ConverterTable &table);
void registerTrainingConverters(ConverterTable &table);
void registerTextConverters(ConverterTable &table);
void registerSequenceConverters(ConverterTable &table);

/// Ops whose converters take sequence and optional values; every other op
/// refuses them by name.
bool takesSequencesOrOptionals(StringRef opType);
/// Ops whose converters take string tensors.
bool takesStrings(StringRef opType);
void registerStringConverters(ConverterTable &table);
/// Cast of a string tensor to numbers, or of numbers to strings (Cast,
/// CastLike); fails for other casts.
LogicalResult convertStringCast(NodeContext &ctx, const ImportedValue &input, Type to,
                                bool toUnsigned, bool toString);

/// for (i = 0; i < count; ++i) carrying `inits` through `body`, as an
/// scf.while: values whose shapes change from one iteration to the next
/// (sequences growing from an empty one) must not go through scf.for,
/// whose canonicalization gives an iteration argument the static type of a
/// tensor.cast feeding it.
ValueRange countedLoop(OpBuilder &b, Location loc, Value count, ValueRange inits,
                       function_ref<SmallVector<Value>(OpBuilder &, Location, Value index,
                                                       ValueRange carried)>
                           body);

/// A sequence with no elements of `element` type.
ImportedValue emptySequence(OpBuilder &b, Location loc, Type element, bool isUnsigned);
/// `sequence` with `item` appended (a new sequence; ONNX values are
/// immutable).
ImportedValue appendToSequence(OpBuilder &b, Location loc, const ImportedValue &sequence,
                               Value item);
/// The number of elements of a sequence (index).
Value sequenceLength(OpBuilder &b, Location loc, const ImportedValue &sequence);
/// Element `index` (index, in range) of a sequence, read at `rank`: an
/// element of another rank reads as an empty tensor (a zero scalar at rank
/// 0), never outside the sequence's memory.
Value sequenceElement(OpBuilder &b, Location loc, const ImportedValue &sequence, Value index,
                      int64_t rank);

/// numpy's matmul of two tensors of one element type (batched, vectors
/// promoted), as MatMul imports it.
FailureOr<Value> buildMatMul(NodeContext &ctx, Value a, Value b);

/// softmax(scale * Q K^T + mask) V found in the graph, to import as one

//===----------------------------------------------------------------------===//
// IR-building helpers
//===----------------------------------------------------------------------===//

/// Builds the body of an elementwise op from the scalar operands.
using ScalarBodyFn =
    function_ref<Value(OpBuilder &b, Location loc, ValueRange args)>;

/// The numpy-broadcast shape of `inputs`. Dynamic dimensions that meet other
/// dynamic dimensions are assumed equal, as ONNX models produce them.
SmallVector<OpFoldResult> broadcastShapes(OpBuilder &b, Location loc,
                                          ValueRange inputs);

/// A linalg.generic computing `body` over the numpy broadcast of `inputs`
/// (or over `outputShape` when given, for Expand), with `resultElement`.
Value buildElementwise(OpBuilder &b, Location loc, ValueRange inputs,
                       Type resultElement, ScalarBodyFn body,
                       std::optional<ArrayRef<OpFoldResult>> outputShape = {});

/// tensor.empty of the given sizes.
Value createEmpty(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes,
                  Type elementType);
/// A tensor of the given sizes filled with `value`.
Value createFilled(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes,
                   Value value);
/// A scalar constant of `type` (integer or float) holding `value`.
Value scalarConstant(OpBuilder &b, Location loc, Type type, double value);
/// An index constant.
Value indexConstant(OpBuilder &b, Location loc, int64_t value);
/// The number of elements of a ranked tensor (index; the product of its
/// dimensions at run time).
Value numElementsOf(OpBuilder &b, Location loc, Value tensor);
/// The smallest or largest value of `type`, for reduction identities.
Value lowestValue(OpBuilder &b, Location loc, Type type);
Value highestValue(OpBuilder &b, Location loc, Type type);
/// Converts a scalar between element types with ONNX Cast semantics.
Value castScalar(OpBuilder &b, Location loc, Value value, Type to,
                 bool srcUnsigned, bool dstUnsigned);
/// The static type a dynamic-or-static size list describes.
RankedTensorType typeFromSizes(ArrayRef<OpFoldResult> sizes, Type element);
/// Converts between index and an integer scalar.
Value toIndex(OpBuilder &b, Location loc, Value integer);
Value fromIndex(OpBuilder &b, Location loc, Value index, Type integerType);
/// Casts `value` to `type` when they differ (both ranked tensors).
Value castIfNeeded(OpBuilder &b, Location loc, Value value, Type type);
/// Collapses/expands reassociation helper: all dims into groups given by the
/// boundaries, e.g. {0, 2, 4} on rank 4 gives [[0, 1], [2, 3]].
SmallVector<ReassociationIndices> groupsFromBoundaries(ArrayRef<int64_t> bounds);
/// Inserts size-1 dims at `positions` of the result (expand_shape).
Value insertUnitDims(OpBuilder &b, Location loc, Value value,
                     ArrayRef<int64_t> positions);
/// Drops the dims at `positions`, which must be (or be known to be) size 1
/// (collapse_shape).
Value dropUnitDims(OpBuilder &b, Location loc, Value value,
                   ArrayRef<int64_t> positions);
/// Reshapes `value` to `sizes` (static or dynamic): one collapse or expand
/// when the change is a static regrouping, else a collapse to one dimension
/// followed by an expand to the target sizes (never tensor.reshape).
Value reshapeTo(OpBuilder &b, Location loc, Value value,
                ArrayRef<OpFoldResult> sizes);

/// Rewrites a model of opset 18 to 22 into opset 17's spelling (OpsetAdapter.cpp):
/// ONNX 1.12's checker and shape inference know opsets up to 17. Fails with
/// every node opset 17 cannot express, one per line, in `error`.
/// Whether an op or opset domain is ONNX's default one ("" or "ai.onnx").
bool isDefaultDomain(const std::string &domain);
/// How errors name node `i` of `graph`: `'name' (OpType)`, or `'#i' (OpType)`
/// for an unnamed node.
std::string describeNode(const onnx::GraphProto &graph, int i);

/// The operators newer than opset 17 that adaptToOpset17 expands into
/// opset-17 nodes.
ArrayRef<const char *> opsExpandedForOpset17();
/// Inputs bound with --bind-input count as constants (their files are read).
LogicalResult adaptToOpset17(onnx::ModelProto &model, int64_t opset,
                             const std::map<std::string, std::string> &boundInputs,
                             std::string &error);

} // namespace hasten::onnx_import

#endif // HASTEN_LIB_IMPORT_IMPORTERINTERNAL_H
