//===- AttentionPattern.cpp - ONNX attention subgraphs as hasten.attention -===//
//
// Exporters spell attention as MatMul(Softmax(MatMul(Q, Transpose(K)) *
// scale + mask), V), with grouped-query models repeating each key/value
// head through Unsqueeze -> Expand -> Reshape. Imported node by node, that
// materializes the q_len x kv_len scores and copies the keys twice; as one
// hasten.attention it runs as a tiled kernel that reads K and V in place.
//
//===----------------------------------------------------------------------===//

#include "ImporterInternal.h"

#include <cstring>
#include <map>
#include <optional>
#include <set>

using namespace hasten::onnx_import;

namespace {

struct GraphIndex {
  const onnx::GraphProto &graph;
  std::map<std::string, int> producer;
  std::map<std::string, int> uses;
  std::map<std::string, const onnx::TensorProto *> initializers;

  const onnx::NodeProto *producerOf(const std::string &name, const char *opType) const {
    auto it = producer.find(name);
    if (it == producer.end())
      return nullptr;
    const onnx::NodeProto &node = graph.node(it->second);
    return node.op_type() == opType && node.domain().empty() ? &node : nullptr;
  }
  bool singleUse(const std::string &name) const {
    auto it = uses.find(name);
    return it != uses.end() && it->second == 1;
  }
  int indexOf(const onnx::NodeProto *node) const { return producer.at(node->output(0)); }

  std::optional<std::vector<int64_t>> ints(const std::string &name) const {
    auto it = initializers.find(name);
    if (it == initializers.end() || it->second->data_type() != onnx::TensorProto::INT64)
      return std::nullopt;
    const onnx::TensorProto &t = *it->second;
    std::vector<int64_t> values;
    if (t.has_raw_data()) {
      values.resize(t.raw_data().size() / 8);
      std::memcpy(values.data(), t.raw_data().data(), values.size() * 8);
    } else {
      values.assign(t.int64_data().begin(), t.int64_data().end());
    }
    return values;
  }
  std::optional<float> scalar(const std::string &name) const {
    auto it = initializers.find(name);
    if (it == initializers.end() || it->second->data_type() != onnx::TensorProto::FLOAT)
      return std::nullopt;
    const onnx::TensorProto &t = *it->second;
    int64_t elements = 1;
    for (int64_t d : t.dims())
      elements *= d;
    if (elements != 1)
      return std::nullopt;
    if (t.has_raw_data() && t.raw_data().size() == 4) {
      float v;
      std::memcpy(&v, t.raw_data().data(), 4);
      return v;
    }
    if (t.float_data_size() == 1)
      return t.float_data(0);
    return std::nullopt;
  }
};

/// `name` or, when it is a grouped-query repeat of a [B, KVH, T, D] tensor
/// (Reshape(Expand(Unsqueeze(t, 2)))), that tensor; the repeat's nodes are
/// added to `fused`.
std::string throughRepeat(const GraphIndex &g, const std::string &name, std::set<int> &fused) {
  const onnx::NodeProto *reshape = g.producerOf(name, "Reshape");
  if (!reshape || !g.singleUse(name))
    return name;
  const onnx::NodeProto *expand = g.producerOf(reshape->input(0), "Expand");
  if (!expand || !g.singleUse(reshape->input(0)))
    return name;
  const onnx::NodeProto *unsqueeze = g.producerOf(expand->input(0), "Unsqueeze");
  if (!unsqueeze || !g.singleUse(expand->input(0)) || unsqueeze->input_size() < 2)
    return name;
  std::optional<std::vector<int64_t>> axes = g.ints(unsqueeze->input(1));
  if (!axes || axes->size() != 1 || (*axes)[0] != 2)
    return name;
  fused.insert({g.indexOf(reshape), g.indexOf(expand), g.indexOf(unsqueeze)});
  return unsqueeze->input(0);
}

} // namespace

std::map<int, AttentionMatch>
hasten::onnx_import::findAttentionPatterns(const onnx::GraphProto &graph) {
  GraphIndex g{graph, {}, {}, {}};
  for (int i = 0; i < graph.node_size(); ++i) {
    for (const std::string &out : graph.node(i).output())
      g.producer[out] = i;
    for (const std::string &in : graph.node(i).input())
      ++g.uses[in];
  }
  for (const auto &out : graph.output())
    g.uses[out.name()] += 2; // graph outputs are never fused away
  for (const auto &init : graph.initializer())
    g.initializers[init.name()] = &init;

  std::map<int, AttentionMatch> matches;
  for (int i = 0; i < graph.node_size(); ++i) {
    const onnx::NodeProto &pv = graph.node(i);
    if (pv.op_type() != "MatMul" || !pv.domain().empty())
      continue;
    AttentionMatch m;
    const onnx::NodeProto *softmax = g.producerOf(pv.input(0), "Softmax");
    if (!softmax || !g.singleUse(pv.input(0)))
      continue;
    int64_t axis = -1;
    for (const auto &a : softmax->attribute())
      if (a.name() == "axis")
        axis = a.i();
    if (axis != -1 && axis != 3)
      continue;
    std::string scoresName = softmax->input(0);
    if (!g.singleUse(scoresName))
      continue;
    m.fused.insert(g.indexOf(softmax));
    if (const onnx::NodeProto *add = g.producerOf(scoresName, "Add")) {
      // scores + mask, either order: the scores side is the one that
      // continues to the QK^T MatMul.
      auto leadsToScores = [&](const std::string &name) {
        return g.producerOf(name, "Mul") || g.producerOf(name, "Div") ||
               g.producerOf(name, "MatMul");
      };
      int scoresSide = leadsToScores(add->input(0)) ? 0 : leadsToScores(add->input(1)) ? 1 : -1;
      if (scoresSide < 0)
        continue;
      m.mask = add->input(1 - scoresSide);
      scoresName = add->input(scoresSide);
      if (!g.singleUse(scoresName))
        continue;
      m.fused.insert(g.indexOf(add));
    }
    m.scale = 1.0f;
    if (const onnx::NodeProto *mul = g.producerOf(scoresName, "Mul")) {
      std::optional<float> c0 = g.scalar(mul->input(0)), c1 = g.scalar(mul->input(1));
      if (!c0 && !c1)
        continue;
      m.scale = c1 ? *c1 : *c0;
      scoresName = c1 ? mul->input(0) : mul->input(1);
      m.fused.insert(g.indexOf(mul));
    } else if (const onnx::NodeProto *div = g.producerOf(scoresName, "Div")) {
      std::optional<float> c = g.scalar(div->input(1));
      if (!c || *c == 0.0f)
        continue;
      m.scale = 1.0f / *c;
      scoresName = div->input(0);
      m.fused.insert(g.indexOf(div));
    }
    if (!g.singleUse(scoresName))
      continue;
    const onnx::NodeProto *qk = g.producerOf(scoresName, "MatMul");
    if (!qk)
      continue;
    const onnx::NodeProto *transpose = g.producerOf(qk->input(1), "Transpose");
    if (!transpose || !g.singleUse(qk->input(1)))
      continue;
    std::vector<int64_t> perm;
    for (const auto &a : transpose->attribute())
      if (a.name() == "perm")
        perm.assign(a.ints().begin(), a.ints().end());
    if (perm != std::vector<int64_t>{0, 1, 3, 2})
      continue;
    m.fused.insert({g.indexOf(qk), g.indexOf(transpose)});
    m.query = qk->input(0);
    m.key = throughRepeat(g, transpose->input(0), m.fused);
    m.value = throughRepeat(g, pv.input(1), m.fused);
    matches[i] = std::move(m);
  }
  // A node fused into two matches (shared keys through one repeat, say)
  // keeps only the first.
  std::set<int> taken;
  for (auto it = matches.begin(); it != matches.end();) {
    bool clash = llvm::any_of(it->second.fused, [&](int n) { return taken.count(n); });
    if (clash) {
      it = matches.erase(it);
      continue;
    }
    taken.insert(it->second.fused.begin(), it->second.fused.end());
    ++it;
  }
  return matches;
}
