//===- OpsetAdapter.cpp - models of opsets 18 to 22 in opset 17's spelling -===//
//
// ONNX 1.12, whose checker and shape inference the importer builds on, knows
// opsets up to 17; today's exporters (Optimum, torch.onnx) write 18 and
// newer. Most newer versions only moved an attribute to an input (the
// reductions' axes), added a mode or a type, or renamed a mode, so each node
// is rewritten into its opset-17 spelling, exactly. Operators new since 17
// that opset 17 can express (Gelu, Mish, GroupNormalization) are expanded
// into opset-17 nodes; the rest are refused by node, all at once.
//
//===----------------------------------------------------------------------===//

#include "ImporterInternal.h"

#include <onnx/defs/schema.h>

#include <cmath>
#include <cstring>
#include <fstream>

namespace hasten::onnx_import {
namespace {

const onnx::AttributeProto *findAttribute(const onnx::NodeProto &node, const char *name) {
  for (const onnx::AttributeProto &attr : node.attribute())
    if (attr.name() == name)
      return &attr;
  return nullptr;
}

void removeAttribute(onnx::NodeProto &node, const char *name) {
  auto *attrs = node.mutable_attribute();
  for (int i = attrs->size() - 1; i >= 0; --i)
    if (attrs->Get(i).name() == name)
      attrs->DeleteSubrange(i, 1);
}

int64_t intAttribute(const onnx::NodeProto &node, const char *name, int64_t otherwise) {
  const onnx::AttributeProto *attr = findAttribute(node, name);
  return attr ? attr->i() : otherwise;
}

std::string stringAttribute(const onnx::NodeProto &node, const char *name,
                            const std::string &otherwise) {
  const onnx::AttributeProto *attr = findAttribute(node, name);
  return attr ? attr->s() : otherwise;
}

void setIntsAttribute(onnx::NodeProto &node, const char *name, const std::vector<int64_t> &v) {
  removeAttribute(node, name);
  onnx::AttributeProto *attr = node.add_attribute();
  attr->set_name(name);
  attr->set_type(onnx::AttributeProto::INTS);
  for (int64_t x : v)
    attr->add_ints(x);
}

void setIntAttribute(onnx::NodeProto &node, const char *name, int64_t v) {
  removeAttribute(node, name);
  onnx::AttributeProto *attr = node.add_attribute();
  attr->set_name(name);
  attr->set_type(onnx::AttributeProto::INT);
  attr->set_i(v);
}

/// Drops input `index` of `node` and every one after it.
void truncateInputs(onnx::NodeProto &node, int count) {
  while (node.input_size() > count)
    node.mutable_input()->RemoveLast();
}

bool hasInput(const onnx::NodeProto &node, int index) {
  return node.input_size() > index && !node.input(index).empty();
}

/// The integers of an INT64 or INT32 tensor, when its data is inline.
std::optional<std::vector<int64_t>> integersOf(const onnx::TensorProto &t) {
  if (t.data_location() == onnx::TensorProto::EXTERNAL)
    return std::nullopt;
  std::vector<int64_t> out;
  if (t.data_type() == onnx::TensorProto::INT64) {
    if (t.has_raw_data()) {
      if (t.raw_data().size() % 8)
        return std::nullopt;
      out.resize(t.raw_data().size() / 8);
      std::memcpy(out.data(), t.raw_data().data(), t.raw_data().size());
    } else {
      out.assign(t.int64_data().begin(), t.int64_data().end());
    }
  } else if (t.data_type() == onnx::TensorProto::INT32) {
    if (t.has_raw_data()) {
      if (t.raw_data().size() % 4)
        return std::nullopt;
      std::vector<int32_t> narrow(t.raw_data().size() / 4);
      std::memcpy(narrow.data(), t.raw_data().data(), t.raw_data().size());
      out.assign(narrow.begin(), narrow.end());
    } else {
      out.assign(t.int32_data().begin(), t.int32_data().end());
    }
  } else {
    return std::nullopt;
  }
  return out;
}

/// Where the graphs being adapted define their constants and declare ranks:
/// a subgraph sees its own and every enclosing graph's.
struct Scope {
  const Scope *parent = nullptr;
  std::map<std::string, const onnx::TensorProto *> tensors;
  std::map<std::string, std::vector<int64_t>> integerLists; // Constant value_ints
  std::map<std::string, int> ranks;
  /// The main graph's inputs fixed with --bind-input: name -> tensor file.
  const std::map<std::string, std::string> *boundInputs = nullptr;

  std::optional<std::vector<int64_t>> integers(const std::string &name) const {
    for (const Scope *s = this; s; s = s->parent) {
      if (auto it = s->integerLists.find(name); it != s->integerLists.end())
        return it->second;
      if (auto it = s->tensors.find(name); it != s->tensors.end())
        return integersOf(*it->second);
      if (s->boundInputs)
        if (auto it = s->boundInputs->find(name); it != s->boundInputs->end())
          return boundIntegers(it->second);
    }
    return std::nullopt;
  }

  /// The integers of a TensorProto file (the importer reports a file that
  /// does not load when it binds it).
  static std::optional<std::vector<int64_t>> boundIntegers(const std::string &file) {
    std::ifstream in(file, std::ios::binary);
    onnx::TensorProto tensor;
    if (!in || !tensor.ParseFromIstream(&in))
      return std::nullopt;
    return integersOf(tensor);
  }
  std::optional<int> rank(const std::string &name) const {
    for (const Scope *s = this; s; s = s->parent)
      if (auto it = s->ranks.find(name); it != s->ranks.end())
        return it->second;
    return std::nullopt;
  }
};

void declareRank(Scope &scope, const onnx::ValueInfoProto &info) {
  if (info.type().has_tensor_type() && info.type().tensor_type().has_shape())
    scope.ranks[info.name()] = info.type().tensor_type().shape().dim_size();
}

class Adapter {
public:
  Adapter(int64_t opset, const std::map<std::string, std::string> &boundInputs)
      : opset(opset), boundInputs(boundInputs) {}

  void adaptGraph(onnx::GraphProto &graph, const Scope *parent) {
    Scope scope;
    scope.parent = parent;
    if (!parent)
      scope.boundInputs = &boundInputs;
    for (const onnx::TensorProto &t : graph.initializer()) {
      scope.tensors[t.name()] = &t;
      scope.ranks[t.name()] = t.dims_size();
    }
    for (const onnx::ValueInfoProto &info : graph.input())
      declareRank(scope, info);
    for (const onnx::ValueInfoProto &info : graph.output())
      declareRank(scope, info);
    for (const onnx::ValueInfoProto &info : graph.value_info())
      declareRank(scope, info);
    for (const onnx::NodeProto &node : graph.node()) {
      if (node.op_type() != "Constant" || !isDefaultDomain(node.domain()) ||
          node.output_size() != 1)
        continue;
      if (const onnx::AttributeProto *value = findAttribute(node, "value"))
        scope.tensors[node.output(0)] = &value->t();
      else if (const onnx::AttributeProto *ints = findAttribute(node, "value_ints"))
        scope.integerLists[node.output(0)] = {ints->ints().begin(), ints->ints().end()};
      else if (const onnx::AttributeProto *one = findAttribute(node, "value_int"))
        scope.integerLists[node.output(0)] = {one->i()};
    }

    google::protobuf::RepeatedPtrField<onnx::NodeProto> adapted;
    for (int i = 0; i < graph.node_size(); ++i) {
      onnx::NodeProto node = graph.node(i);
      for (onnx::AttributeProto &attr : *node.mutable_attribute()) {
        if (attr.has_g())
          adaptGraph(*attr.mutable_g(), &scope);
        for (onnx::GraphProto &g : *attr.mutable_graphs())
          adaptGraph(g, &scope);
      }
      std::string name = describeNode(graph, i);
      out = &adapted;
      if (!isDefaultDomain(node.domain()))
        *out->Add() = std::move(node);
      else
        adaptNode(node, name, scope);
    }
    graph.mutable_node()->Swap(&adapted);
  }

  /// The nodes opset 17 cannot express, one line each.
  std::vector<std::string> refusals;

private:
  void refuse(const std::string &node, const std::string &why) {
    refusals.push_back("node " + node + ": " + why);
  }

  /// A fresh value name derived from `node`'s first output.
  std::string fresh(const onnx::NodeProto &node, const char *what) {
    return (node.output_size() ? node.output(0) : node.name()) + "/opset17_" + what + "_" +
           std::to_string(counter++);
  }

  onnx::NodeProto &emit(const std::string &op, std::vector<std::string> inputs,
                        std::vector<std::string> outputs) {
    onnx::NodeProto &node = *out->Add();
    node.set_op_type(op);
    for (std::string &in : inputs)
      node.add_input(std::move(in));
    for (std::string &o : outputs)
      node.add_output(std::move(o));
    return node;
  }

  /// A Constant node into the fresh value `name`: its tensor, to fill.
  onnx::TensorProto &emitConstant(const std::string &name) {
    onnx::AttributeProto *attr = emit("Constant", {}, {name}).add_attribute();
    attr->set_name("value");
    attr->set_type(onnx::AttributeProto::TENSOR);
    return *attr->mutable_t();
  }

  /// A Constant node holding an int64 list (rank 1) and its output's name.
  std::string emitIntegers(const onnx::NodeProto &near, const std::vector<int64_t> &values) {
    std::string name = fresh(near, "ints");
    onnx::TensorProto &t = emitConstant(name);
    t.set_data_type(onnx::TensorProto::INT64);
    t.add_dims(int64_t(values.size()));
    for (int64_t v : values)
      t.add_int64_data(v);
    return name;
  }

  /// `value` as a scalar of `like`'s element type (CastLike of an f32 Constant).
  std::string emitScalarLike(const onnx::NodeProto &near, float value, const std::string &like) {
    std::string f32 = fresh(near, "f32");
    onnx::TensorProto &t = emitConstant(f32);
    t.set_data_type(onnx::TensorProto::FLOAT);
    t.add_float_data(value);
    std::string cast = fresh(near, "scalar");
    emit("CastLike", {f32, like}, {cast});
    return cast;
  }

  /// `op(inputs)` into a fresh value.
  std::string emitValue(const onnx::NodeProto &near, const std::string &op,
                        std::vector<std::string> inputs) {
    std::string name = fresh(near, "v");
    emit(op, std::move(inputs), {name});
    return name;
  }
  /// Concat of 1-D pieces.
  std::string emitConcat(const onnx::NodeProto &near, std::vector<std::string> pieces) {
    std::string name = fresh(near, "concat");
    setIntAttribute(emit("Concat", std::move(pieces), {name}), "axis", 0);
    return name;
  }
  /// ReduceMean over axis 2, dimensions kept.
  std::string emitMeanOverAxis2(const onnx::NodeProto &near, const std::string &v) {
    std::string name = fresh(near, "mean");
    setIntsAttribute(emit("ReduceMean", {v}, {name}), "axes", {2});
    return name;
  }

  void adaptNode(onnx::NodeProto &node, const std::string &name, const Scope &scope);
  void adaptReduction(onnx::NodeProto &node, const std::string &name, const Scope &scope);
  void adaptSplit(onnx::NodeProto &node, const std::string &name);
  void adaptPad(onnx::NodeProto &node, const std::string &name, const Scope &scope);
  void expandGelu(const onnx::NodeProto &node);
  void expandMish(const onnx::NodeProto &node);
  void expandGroupNormalization(const onnx::NodeProto &node);

  int64_t opset;
  const std::map<std::string, std::string> &boundInputs;
  int64_t counter = 0;
  google::protobuf::RepeatedPtrField<onnx::NodeProto> *out = nullptr;
};

void Adapter::adaptNode(onnx::NodeProto &node, const std::string &name, const Scope &scope) {
  const std::string &op = node.op_type();
  static const std::set<std::string> reductions = {
      "ReduceL1",  "ReduceL2",  "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
      "ReduceMean", "ReduceMin", "ReduceProd",   "ReduceSumSquare"};
  if (reductions.count(op))
    return adaptReduction(node, name, scope);
  if (op == "Split")
    return adaptSplit(node, name);
  if (op == "Pad")
    return adaptPad(node, name, scope);
  if (op == "Gelu")
    return expandGelu(node);
  if (op == "Mish")
    return expandMish(node);
  if (op == "GroupNormalization")
    return expandGroupNormalization(node);

  if (op == "Resize") {
    // 18 adds antialiasing, aspect-ratio policies and axes; 19 a coordinate
    // mode. Their defaults are opset 17's behaviour.
    if (intAttribute(node, "antialias", 0) != 0)
      return refuse(name, "antialias=1 (opset 18) is not imported");
    if (stringAttribute(node, "keep_aspect_ratio_policy", "stretch") != "stretch")
      return refuse(name, "keep_aspect_ratio_policy other than 'stretch' is not imported");
    if (findAttribute(node, "axes"))
      return refuse(name, "the axes attribute (opset 18) is not imported");
    if (stringAttribute(node, "coordinate_transformation_mode", "") == "half_pixel_symmetric")
      return refuse(name, "coordinate_transformation_mode 'half_pixel_symmetric' is not imported");
    removeAttribute(node, "antialias");
    removeAttribute(node, "keep_aspect_ratio_policy");
  } else if (op == "LpPool") {
    if (intAttribute(node, "ceil_mode", 0) != 0)
      return refuse(name, "ceil_mode=1 (opset 18) is not imported");
    removeAttribute(node, "ceil_mode");
  } else if (op == "AveragePool") {
    if (const onnx::AttributeProto *d = findAttribute(node, "dilations")) {
      for (int64_t v : d->ints())
        if (v != 1)
          return refuse(name, "dilations (opset 19) are not imported");
      removeAttribute(node, "dilations");
    }
  } else if (op == "Cast" || op == "CastLike") {
    // `saturate` (19) only concerns float8 targets, which are refused by type.
    removeAttribute(node, "saturate");
  } else if (op == "QuantizeLinear" || op == "DequantizeLinear") {
    removeAttribute(node, "saturate");
    if (intAttribute(node, "block_size", 0) != 0)
      return refuse(name, "blocked quantization (block_size, opset 21) is not imported");
    removeAttribute(node, "block_size");
    // output_dtype (21) must agree with the zero point's type when there is
    // one; without one only its default (uint8) is opset 17's.
    int64_t dtype = intAttribute(node, "output_dtype", 0);
    if (dtype != 0 && dtype != onnx::TensorProto::UINT8 && !hasInput(node, 2))
      return refuse(name, "output_dtype without a zero point (opset 21) is not imported");
    removeAttribute(node, "output_dtype");
  } else if (op == "DFT" && opset >= 20) {
    // 20 moved `axis` to an input (default -2, the last axis before the
    // real/imaginary one).
    int64_t axis = -2;
    if (hasInput(node, 2)) {
      std::optional<std::vector<int64_t>> value = scope.integers(node.input(2));
      if (!value || value->size() != 1)
        return refuse(name, "the axis input must be a constant scalar");
      axis = (*value)[0];
    }
    truncateInputs(node, 2);
    setIntAttribute(node, "axis", axis);
  } else if (op == "GridSample" && opset >= 20) {
    std::string mode = stringAttribute(node, "mode", "linear");
    removeAttribute(node, "mode");
    onnx::AttributeProto *attr = node.add_attribute();
    attr->set_name("mode");
    attr->set_type(onnx::AttributeProto::STRING);
    attr->set_s(mode == "linear" ? "bilinear" : mode == "cubic" ? "bicubic" : mode);
  } else if (!onnx::OpSchemaRegistry::Schema(op, 17, "")) {
    return refuse(name, "an operator new since opset 17 that hasten does not import");
  }
  *out->Add() = std::move(node);
}

/// Reductions of 18: axes from an input, and `noop_with_empty_axes`.
void Adapter::adaptReduction(onnx::NodeProto &node, const std::string &name,
                             const Scope &scope) {
  bool noop = intAttribute(node, "noop_with_empty_axes", 0) != 0;
  removeAttribute(node, "noop_with_empty_axes");
  std::vector<int64_t> axes;
  if (hasInput(node, 1)) {
    std::optional<std::vector<int64_t>> value = scope.integers(node.input(1));
    if (!value)
      return refuse(name, "the axes input must be a constant (an initializer, a Constant or --bind-input)");
    axes = *value;
  }
  truncateInputs(node, 1);
  if (axes.empty() && noop) {
    // Reduces nothing: the identity.
    node.clear_attribute();
    node.set_op_type("Identity");
  } else if (!axes.empty()) {
    setIntsAttribute(node, "axes", axes);
  }
  *out->Add() = std::move(node);
}

/// Split of 18: `num_outputs` splits into chunks of ceil(d / n), the last
/// one smaller; opset 17 splits evenly, so the sizes become the input.
void Adapter::adaptSplit(onnx::NodeProto &node, const std::string &name) {
  const onnx::AttributeProto *count = findAttribute(node, "num_outputs");
  if (!count || hasInput(node, 1)) {
    removeAttribute(node, "num_outputs");
    *out->Add() = std::move(node);
    return;
  }
  int64_t n = count->i();
  if (n != node.output_size())
    return refuse(name, "num_outputs is " + std::to_string(n) + " but the node has " +
                            std::to_string(node.output_size()) + " outputs");
  removeAttribute(node, "num_outputs");
  int64_t axis = intAttribute(node, "axis", 0);
  onnx::NodeProto &shape = emit("Shape", {node.input(0)}, {fresh(node, "shape")});
  setIntAttribute(shape, "start", axis);
  if (axis != -1)
    setIntAttribute(shape, "end", axis + 1);
  std::string dim = shape.output(0);
  std::string chunk = emitValue(
      node, "Div",
      {emitValue(node, "Add", {dim, emitIntegers(node, {n - 1})}), emitIntegers(node, {n})});
  std::string last = emitValue(
      node, "Sub", {dim, emitValue(node, "Mul", {chunk, emitIntegers(node, {n - 1})})});
  std::vector<std::string> pieces(size_t(n - 1), chunk);
  pieces.push_back(last);
  std::string sizes = emitConcat(node, pieces);
  truncateInputs(node, 1);
  node.add_input(sizes);
  *out->Add() = std::move(node);
}

/// Pad of 18: `axes` names the axes the pads apply to; opset 17 pads every
/// axis, so constant pads are spread over the input's rank.
void Adapter::adaptPad(onnx::NodeProto &node, const std::string &name, const Scope &scope) {
  if (!hasInput(node, 3)) {
    truncateInputs(node, 3);
    *out->Add() = std::move(node);
    return;
  }
  std::optional<std::vector<int64_t>> axes = scope.integers(node.input(3));
  std::optional<std::vector<int64_t>> pads =
      hasInput(node, 1) ? scope.integers(node.input(1)) : std::nullopt;
  std::optional<int> rank = scope.rank(node.input(0));
  if (!axes || !pads || !rank)
    return refuse(name, "axes (opset 18) are imported only with constant pads and axes and an "
                        "input of declared rank");
  if (pads->size() != 2 * axes->size())
    return refuse(name, "pads has " + std::to_string(pads->size()) + " entries for " +
                            std::to_string(axes->size()) + " axes");
  std::vector<int64_t> full(size_t(2 * *rank), 0);
  for (size_t i = 0; i < axes->size(); ++i) {
    int64_t a = (*axes)[i] < 0 ? (*axes)[i] + *rank : (*axes)[i];
    if (a < 0 || a >= *rank)
      return refuse(name, "axis " + std::to_string((*axes)[i]) + " is out of range for rank " +
                              std::to_string(*rank));
    full[size_t(a)] = (*pads)[i];
    full[size_t(a + *rank)] = (*pads)[i + axes->size()];
  }
  std::string padsName = emitIntegers(node, full);
  truncateInputs(node, 3);
  node.set_input(1, padsName);
  *out->Add() = std::move(node);
}

/// Gelu (20): x/2 (1 + erf(x / sqrt 2)), or with approximate="tanh"
/// x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
void Adapter::expandGelu(const onnx::NodeProto &node) {
  const std::string &x = node.input(0);
  std::string inner;
  if (stringAttribute(node, "approximate", "none") == "tanh") {
    std::string cube = emitValue(node, "Mul", {x, emitValue(node, "Mul", {x, x})});
    std::string poly = emitValue(
        node, "Add", {x, emitValue(node, "Mul", {cube, emitScalarLike(node, 0.044715f, x)})});
    inner = emitValue(
        node, "Tanh",
        {emitValue(node, "Mul",
                   {poly, emitScalarLike(node, float(std::sqrt(2.0 / M_PI)), x)})});
  } else {
    inner = emitValue(node, "Erf",
                      {emitValue(node, "Mul", {x, emitScalarLike(node, float(M_SQRT1_2), x)})});
  }
  std::string onePlus = emitValue(node, "Add", {inner, emitScalarLike(node, 1.0f, x)});
  std::string half = emitValue(node, "Mul", {x, emitScalarLike(node, 0.5f, x)});
  emit("Mul", {half, onePlus}, {node.output(0)}).set_name(node.name());
}

/// Mish (18): x tanh(softplus(x)).
void Adapter::expandMish(const onnx::NodeProto &node) {
  const std::string &x = node.input(0);
  std::string t = emitValue(node, "Tanh", {emitValue(node, "Softplus", {x})});
  emit("Mul", {x, t}, {node.output(0)}).set_name(node.name());
}

/// GroupNormalization (18; 21 moved scale and bias from per group to per
/// channel and added stash_type, the precision of the statistics):
/// x [N, C, ...] normalized over each group of C / G channels.
void Adapter::expandGroupNormalization(const onnx::NodeProto &node) {
  const std::string &x = node.input(0);
  int64_t groups = intAttribute(node, "num_groups", 1);
  float epsilon = 1e-5f;
  if (const onnx::AttributeProto *e = findAttribute(node, "epsilon"))
    epsilon = e->f();
  bool perChannel = opset >= 21;
  bool stash = perChannel && intAttribute(node, "stash_type", 1) == 1;
  std::string input = x;
  if (stash) {
    onnx::NodeProto &cast = emit("Cast", {x}, {fresh(node, "stash")});
    setIntAttribute(cast, "to", onnx::TensorProto::FLOAT);
    input = cast.output(0);
  }
  std::string grouped =
      emitValue(node, "Reshape", {input, emitIntegers(node, {0, groups, -1})});
  std::string centered = emitValue(node, "Sub", {grouped, emitMeanOverAxis2(node, grouped)});
  std::string variance =
      emitMeanOverAxis2(node, emitValue(node, "Mul", {centered, centered}));
  std::string normalized = emitValue(
      node, "Div",
      {centered,
       emitValue(node, "Sqrt",
                 {emitValue(node, "Add", {variance, emitScalarLike(node, epsilon, input)})})});
  // Scale and bias as [G or C, 1] against the [N, G or C, rest] view.
  std::string view = normalized;
  if (perChannel) {
    std::string channels = emitConcat(node, {emitIntegers(node, {0}),
                                             emitValue(node, "Shape", {node.input(1)}),
                                             emitIntegers(node, {-1})});
    view = emitValue(node, "Reshape", {normalized, channels});
  }
  auto column = [&](const std::string &v) {
    std::string c = emitValue(node, "Unsqueeze", {v, emitIntegers(node, {1})});
    return stash ? emitValue(node, "CastLike", {c, input}) : c;
  };
  std::string affine =
      emitValue(node, "Add", {emitValue(node, "Mul", {view, column(node.input(1))}),
                              column(node.input(2))});
  std::string shaped =
      emitValue(node, "Reshape", {affine, emitValue(node, "Shape", {x})});
  if (stash)
    emit("CastLike", {shaped, x}, {node.output(0)}).set_name(node.name());
  else
    emit("Identity", {shaped}, {node.output(0)}).set_name(node.name());
}

} // namespace

ArrayRef<const char *> opsExpandedForOpset17() {
  static const char *const ops[] = {"Gelu", "GroupNormalization", "Mish"};
  return ops;
}

LogicalResult adaptToOpset17(onnx::ModelProto &model, int64_t opset,
                             const std::map<std::string, std::string> &boundInputs,
                             std::string &error) {
  Adapter adapter(opset, boundInputs);
  adapter.adaptGraph(*model.mutable_graph(), nullptr);
  if (!adapter.refusals.empty()) {
    error = "opset " + std::to_string(opset) + " nodes that hasten cannot import:";
    for (const std::string &line : adapter.refusals)
      error += "\n  " + line;
    return failure();
  }
  for (onnx::OperatorSetIdProto &id : *model.mutable_opset_import())
    if (isDefaultDomain(id.domain()))
      id.set_version(17);
  return success();
}

} // namespace hasten::onnx_import
