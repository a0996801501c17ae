//===- Sampling.cpp - choosing tokens from logits -------------------------===//

#include "Sampling.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace hasten::runtime {

bool cutsCandidates(const hasten_generate_options &o, int64_t vocab) {
  return (o.top_k > 0 && o.top_k < vocab) || (o.top_p > 0.0f && o.top_p < 1.0f);
}

namespace {

/// The candidates that survive the top-k and top-p cuts, best first (in
/// vocabulary order when nothing is cut: sorting 50000 logits per draw cost
/// more than a small model's decode step), with unnormalized probabilities;
/// `sum` is their total.
void candidates(const float *logits, int64_t vocab, const hasten_generate_options &o,
                std::vector<std::pair<float, int64_t>> &kept, std::vector<double> &weights,
                double &sum) {
  kept.resize(vocab);
  for (int64_t i = 0; i < vocab; ++i)
    kept[i] = {logits[i] / o.temperature, i};
  if (!cutsCandidates(o, vocab)) {
    float maxScore = kept[0].first;
    for (const auto &k : kept)
      maxScore = std::max(maxScore, k.first);
    sum = 0.0;
    weights.resize(vocab);
    for (int64_t i = 0; i < vocab; ++i)
      sum += weights[i] = std::exp((double)kept[i].first - maxScore);
    return;
  }
  auto byScore = [](const auto &a, const auto &b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  };
  int64_t keep = vocab;
  if (o.top_k > 0 && o.top_k < vocab) {
    keep = o.top_k;
    std::partial_sort(kept.begin(), kept.begin() + keep, kept.end(), byScore);
  } else {
    std::sort(kept.begin(), kept.end(), byScore);
  }
  kept.resize(keep);
  double maxScore = kept[0].first;
  sum = 0.0;
  weights.resize(keep);
  for (int64_t i = 0; i < keep; ++i)
    sum += weights[i] = std::exp(kept[i].first - maxScore);
  if (o.top_p > 0.0f && o.top_p < 1.0f) {
    // The smallest prefix (by probability) whose mass reaches top_p.
    double mass = 0.0;
    int64_t cut = keep;
    for (int64_t i = 0; i < keep; ++i) {
      mass += weights[i] / sum;
      if (mass >= o.top_p) {
        cut = i + 1;
        break;
      }
    }
    kept.resize(cut);
    weights.resize(cut);
    sum = 0.0;
    for (double w : weights)
      sum += w;
  }
}

} // namespace

int64_t argmax(const float *logits, int64_t vocab) {
  return std::max_element(logits, logits + vocab) - logits;
}

int64_t sampleToken(const float *logits, int64_t vocab, const hasten_generate_options &o,
                    Random &random) {
  if (o.temperature <= 0.0f)
    return argmax(logits, vocab);
  std::vector<std::pair<float, int64_t>> kept;
  std::vector<double> weights;
  double sum;
  candidates(logits, vocab, o, kept, weights, sum);
  double u = random.uniform() * sum;
  for (size_t i = 0; i < kept.size(); ++i) {
    u -= weights[i];
    if (u < 0.0)
      return kept[i].second;
  }
  return kept.back().second;
}

void tokenProbabilities(const float *logits, int64_t vocab, const hasten_generate_options &o,
                        std::vector<double> &probs) {
  probs.assign(vocab, 0.0);
  if (o.temperature <= 0.0f) {
    probs[argmax(logits, vocab)] = 1.0;
    return;
  }
  std::vector<std::pair<float, int64_t>> kept;
  std::vector<double> weights;
  double sum;
  candidates(logits, vocab, o, kept, weights, sum);
  for (size_t i = 0; i < kept.size(); ++i)
    probs[kept[i].second] = weights[i] / sum;
}

int64_t drawFrom(const std::vector<double> &probs, Random &random) {
  double sum = 0.0;
  for (double p : probs)
    sum += p;
  double u = random.uniform() * sum;
  int64_t last = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] <= 0.0)
      continue;
    last = (int64_t)i;
    u -= probs[i];
    if (u < 0.0)
      return last;
  }
  return last;
}

} // namespace hasten::runtime
