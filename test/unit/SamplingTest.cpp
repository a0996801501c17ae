//===- SamplingTest.cpp - the runtime's token choice from logits ----------===//
//
// topToken (the draft's best token and its softmax probability, which
// speculative decoding's fallback threshold and draft length read) against
// a float64 softmax: vocabularies shorter than, equal to and off the
// vectorized lanes, GPT-2's 50257, ties, a logit far below the others and
// a peaked distribution; argmax (greedy decoding's choice) against
// std::max_element, ties in every lane arrangement included.
//
//===----------------------------------------------------------------------===//

#include "Sampling.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

using hasten::runtime::topToken;

namespace {

double referenceTop(const std::vector<float> &logits) {
  double top = *std::max_element(logits.begin(), logits.end()), sum = 0.0;
  for (float l : logits)
    sum += std::exp(double(l) - top);
  return 1.0 / sum;
}

TEST(TopToken, MatchesFloat64Softmax) {
  std::mt19937 rng(3);
  for (int64_t vocab : {1, 7, 16, 17, 33, 256, 50257}) {
    for (float spread : {0.5f, 3.0f, 30.0f}) {
      std::normal_distribution<float> normal(0.0f, spread);
      std::vector<float> logits(vocab);
      for (float &l : logits)
        l = normal(rng);
      auto best = topToken(logits.data(), vocab);
      int64_t expected = std::max_element(logits.begin(), logits.end()) - logits.begin();
      EXPECT_EQ(best.index, expected) << "vocab " << vocab << ", spread " << spread;
      double reference = referenceTop(logits);
      EXPECT_NEAR(best.probability, reference, 1e-5 * reference)
          << "vocab " << vocab << ", spread " << spread;
    }
  }
}

TEST(TopToken, FirstOfEqualLogitsAndFarTails) {
  std::vector<float> logits(40, -1e30f); // far below: each adds 0
  logits[9] = logits[21] = 2.0f;
  logits[30] = 2.0f - std::log(2.0f);    // half as likely as each of the two
  logits[35] = -80.0f;                   // 2^-118 of the top: near the clamp
  auto best = topToken(logits.data(), logits.size());
  EXPECT_EQ(best.index, 9);
  EXPECT_NEAR(best.probability, 0.4, 1e-6);
  std::vector<float> peaked(1000, 0.0f);
  peaked[999] = 20.0f;
  best = topToken(peaked.data(), peaked.size());
  EXPECT_EQ(best.index, 999);
  EXPECT_NEAR(best.probability, referenceTop(peaked), 1e-6 * referenceTop(peaked));
}

TEST(Argmax, FirstOfEqualLogitsAcrossLanesAndTail) {
  using hasten::runtime::argmax;
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t vocab : {1, 5, 16, 37, 50257}) {
    std::vector<float> logits(vocab);
    for (float &l : logits)
      l = normal(rng);
    EXPECT_EQ(argmax(logits.data(), vocab),
              std::max_element(logits.begin(), logits.end()) - logits.begin())
        << "vocab " << vocab;
    // The same maximum in several places: the first wins, whether the
    // others are in a later lane, the same lane or the tail.
    for (std::vector<int64_t> places :
         {std::vector<int64_t>{22, 5}, {19, 3}, {vocab - 1, 2}, {vocab - 1}}) {
      std::vector<float> tied = logits;
      for (int64_t p : places)
        if (p < vocab)
          tied[p] = 10.0f;
      EXPECT_EQ(argmax(tied.data(), vocab),
                std::max_element(tied.begin(), tied.end()) - tied.begin())
          << "vocab " << vocab << ", maximum at " << places[0];
    }
  }
  std::vector<float> hidden(40, -std::numeric_limits<float>::infinity());
  EXPECT_EQ(argmax(hidden.data(), hidden.size()), 0);
}

} // namespace
