//===- Sampling.cpp - choosing tokens from logits -------------------------===//

#include "Sampling.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
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
  // Sixteen running maxima and where each was first met, which the
  // compiler vectorizes (std::max_element's one running maximum it cannot):
  // a 50257-token vocabulary took 80 us a token.
  constexpr int kLanes = 16;
  float best[kLanes];
  int64_t at[kLanes];
  for (int j = 0; j < kLanes; ++j) {
    best[j] = -std::numeric_limits<float>::infinity();
    at[j] = -1;
  }
  int64_t i = 0;
  for (; i + kLanes <= vocab; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      bool greater = logits[i + j] > best[j];
      best[j] = greater ? logits[i + j] : best[j];
      at[j] = greater ? i + j : at[j];
    }
  int64_t index = -1;
  float top = -std::numeric_limits<float>::infinity();
  for (int j = 0; j < kLanes; ++j)
    if (at[j] >= 0 && (best[j] > top || (best[j] == top && at[j] < index))) {
      top = best[j];
      index = at[j];
    }
  for (; i < vocab; ++i)
    if (logits[i] > top) {
      top = logits[i];
      index = i;
    }
  // Every logit -inf or NaN: the first, as std::max_element says.
  return index < 0 ? 0 : index;
}

namespace {

/// e^x for x <= 0 (e^-87 below -87), within 4e-6 relative, as straight-line
/// code the compiler vectorizes at any target: std::exp in double took 12
/// ns a logit, 0.6 ms per draft proposal over GPT-2's 50257 tokens.
inline float expNonPositive(float x) {
  x = std::max(x, -87.0f);
  float t = x * 1.44269504f;                        // x log2(e), >= -125.6
  float n = (t + 12582912.0f) - 12582912.0f;        // round to nearest
  float f = (t - n) * 0.693147181f;                 // e^f, |f| <= ln(2) / 2
  float p = 1.0f + f * (1.0f + f * (0.5f + f * (1.66666672e-1f +
                f * (4.16666679e-2f + f * (8.33333377e-3f + f * 1.38888892e-3f)))));
  int32_t bits = (int32_t(n) + 127) << 23;          // 2^n, n >= -126
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

} // namespace

TopToken topToken(const float *logits, int64_t vocab) {
  int64_t best = argmax(logits, vocab);
  float top = logits[best];
  constexpr int kLanes = 16;
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= vocab; i += kLanes)
    for (int j = 0; j < kLanes; ++j)
      lanes[j] += expNonPositive(logits[i + j] - top);
  double sum = 0.0;
  for (; i < vocab; ++i)
    sum += expNonPositive(logits[i] - top);
  for (float lane : lanes)
    sum += lane;
  return {best, 1.0 / sum};
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
