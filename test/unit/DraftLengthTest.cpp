//===- DraftLengthTest.cpp - the draft-length policy of k = 0 -------------===//
//
// hasten_generate_speculative with k = 0 and a draft model asks
// DraftLength, proposal by proposal, whether another proposal pays. These
// tests drive it with chosen step costs and outcomes (generation itself is
// timing-dependent; test/e2e/speculation.py checks that its output stays
// the target's): the first step's length, long proposals where the draft is
// confident and right, none where it is wrong, the cost of verification
// rows, what it learns per confidence, skipped draft steps, and
// exploration.
//
//===----------------------------------------------------------------------===//

#include "DraftLength.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

using hasten::runtime::DraftLength;

namespace {

/// How many tokens of `confidence` the policy proposes in one step.
int proposals(const DraftLength &policy, double confidence) {
  int n = 0;
  double allKept = 1.0;
  while (policy.proposeAnother(n, allKept, confidence)) {
    allKept *= policy.rate(confidence);
    ++n;
  }
  return n;
}

/// Records `steps` steps of `proposed` tokens of `confidence`, of which the
/// first `kept` are kept, with a draft step of `draft` seconds and
/// verification of `verifyBase + verifyPerRow * rows` seconds.
void feed(DraftLength &policy, int steps, int proposed, int kept, double confidence,
          double draft, double verifyBase, double verifyPerRow) {
  for (int s = 0; s < steps; ++s)
    policy.record(std::vector<double>(proposed, confidence), kept, draft * proposed,
                  verifyBase + verifyPerRow * (proposed + 1), proposed, draft * proposed);
}

TEST(DraftLengthTest, BeforeAnythingIsMeasuredProposesWhileLikelyAllKept) {
  // The pooled prior, 0.6: two proposals are all kept with 0.36, three
  // with 0.22 < 1/3.
  DraftLength policy;
  EXPECT_EQ(proposals(policy, 0.99), 2);
  EXPECT_EQ(proposals(policy, 0.05), 2);
  // Kept proposals (still no draft step measured: one proposal per step)
  // raise every bin's rate, seen or not.
  for (int s = 0; s < 20; ++s)
    policy.record({0.17}, 1, 1e-4, 4e-3, 0, 0.0);
  EXPECT_GT(policy.rate(0.17), 0.9);
  EXPECT_GT(policy.rate(0.99), 0.8);
  EXPECT_GE(proposals(policy, 0.5), 8);
}

TEST(DraftLengthTest, ABinLeansOnThePooledRateUntilItsOwnIsKnown) {
  // An uncalibrated draft: proposals of confidence 0.17 are kept, those of
  // 0.9 rejected. The bins learn it apart; an unseen bin (0.6) sits at the
  // pooled rate, between them.
  DraftLength policy;
  for (int s = 0; s < 60; ++s) {
    policy.record({0.17, 0.17}, 2, 2e-4, 4e-3, 1, 1e-4);
    policy.record({0.9}, 0, 1e-4, 4e-3, 0, 0.0);
  }
  EXPECT_GT(policy.rate(0.17), 0.95);
  EXPECT_LT(policy.rate(0.9), 0.05);
  EXPECT_NEAR(policy.rate(0.6), policy.pooledRate(), 1e-12);
  EXPECT_GT(policy.pooledRate(), policy.rate(0.9));
  EXPECT_LT(policy.pooledRate(), policy.rate(0.17));
  EXPECT_EQ(proposals(policy, 0.9), 0);
  EXPECT_GE(proposals(policy, 0.17), 8);
}

TEST(DraftLengthTest, ConfidentAndRightProposesToTheLimit) {
  // The trained pair's costs: a draft step 0.07 ms, verification 3.3 ms
  // plus 0.05 ms a row; every proposal of confidence 0.99 is kept.
  DraftLength policy;
  for (int proposed = 1; proposed <= DraftLength::kMax; ++proposed)
    feed(policy, 3, proposed, proposed, 0.99, 7e-5, 3.3e-3, 5e-5);
  EXPECT_GT(policy.rate(0.99), 0.95);
  EXPECT_EQ(proposals(policy, 0.99), DraftLength::kMax);
}

TEST(DraftLengthTest, WrongProposalsStopAtOnce) {
  // Proposals of confidence 0.6 are all rejected: after a while none is
  // made, while confident ones that are kept still are.
  DraftLength policy;
  feed(policy, 100, 2, 0, 0.6, 7e-5, 3.3e-3, 5e-5);
  feed(policy, 10, 4, 4, 0.99, 7e-5, 3.3e-3, 5e-5);
  EXPECT_LT(policy.rate(0.6), 0.1);
  EXPECT_EQ(proposals(policy, 0.6), 0);
  EXPECT_GE(proposals(policy, 0.99), 8);
}

TEST(DraftLengthTest, StopsWhereTheRowsCostMoreThanTheyBring) {
  // The same acceptance (confidence 0.8, kept 80% of the time) with cheap
  // and with expensive verification rows: the expensive rows stop earlier,
  // and at the product of rates a row is worth its cost.
  auto trained = [](double perRow) {
    DraftLength policy;
    // Every verification width measured (confident proposals, all kept),
    for (int proposed = 1; proposed <= DraftLength::kMax; ++proposed)
      feed(policy, 2, proposed, proposed, 0.99, 7e-5, 3.3e-3, perRow);
    // then proposals of confidence 0.8 of which four in five are kept.
    feed(policy, 30, 5, 4, 0.8, 7e-5, 3.3e-3, perRow);
    return policy;
  };
  DraftLength cheap = trained(2e-5), expensive = trained(6e-4);
  int cheapK = proposals(cheap, 0.8), expensiveK = proposals(expensive, 0.8);
  EXPECT_GT(cheapK, expensiveK);
  EXPECT_GE(expensiveK, 1);
  // The last proposal made was worth its cost, the next one would not be.
  double rate = expensive.rate(0.8), allKept = std::pow(rate, expensiveK - 1);
  double cost = expensive.draftStep + expensive.verifyCost(expensiveK + 1) -
                expensive.verifyCost(expensiveK);
  EXPECT_GT(allKept * rate * expensive.secondsPerToken, cost);
  EXPECT_LE(allKept * rate * rate * expensive.secondsPerToken,
            expensive.draftStep + expensive.verifyCost(expensiveK + 2) -
                expensive.verifyCost(expensiveK + 1));
}

TEST(DraftLengthTest, ProposesPastARowThatStartsANewPass) {
  // Verification of up to 6 rows costs 3 ms, of 7 to 12 rows 3.5 ms (a
  // second pass over the weights' strips): the 7th row alone does not pay
  // for itself, the 7th to the 12th together do.
  DraftLength policy;
  auto verifyOf = [](int rows) { return rows <= 6 ? 3e-3 : 3.5e-3; };
  for (int proposed = 1; proposed <= DraftLength::kMax; ++proposed)
    policy.record(std::vector<double>(proposed, 0.9), proposed, 5e-5 * proposed,
                  verifyOf(proposed + 1), proposed, 5e-5 * proposed);
  for (int s = 0; s < 30; ++s)
    policy.record(std::vector<double>(10, 0.9), 9, 5e-4, verifyOf(11), 10, 5e-4);
  double rate = policy.rate(0.9), chain6 = std::pow(rate, 6);
  ASSERT_LT(chain6 * policy.secondsPerToken, policy.draftStep + 0.5e-3); // alone: no
  EXPECT_EQ(proposals(policy, 0.9), DraftLength::kMax);
}

TEST(DraftLengthTest, SkipsTheDraftStepNoProposalCouldPay) {
  // mightProposeAnother bounds proposeAnother over every confidence: where
  // it says no, no confidence would be proposed (so the draft step that
  // gives one is not run), and it does say no once the chain is unlikely.
  DraftLength policy;
  for (int proposed = 1; proposed <= DraftLength::kMax; ++proposed) {
    feed(policy, 2, proposed, proposed / 2, 0.9, 7e-5, 3.3e-3, 6e-4);
    feed(policy, 1, proposed, proposed, 0.99, 7e-5, 3.3e-3, 6e-4);
  }
  int refusals = 0;
  for (int proposed = 1; proposed <= DraftLength::kMax; ++proposed)
    for (double allKept = 1.0; allKept > 1e-3; allKept *= 0.7) {
      if (policy.mightProposeAnother(proposed, allKept))
        continue;
      ++refusals;
      for (double confidence = 0.0; confidence <= 1.0; confidence += 0.01)
        EXPECT_FALSE(policy.proposeAnother(proposed, allKept, confidence))
            << proposed << " proposed, all kept " << allKept << ", confidence " << confidence;
    }
  EXPECT_GT(refusals, 0);
  EXPECT_TRUE(policy.mightProposeAnother(1, 1.0));
}

TEST(DraftLengthTest, ExploresAfterQuietSteps) {
  DraftLength policy;
  feed(policy, 100, 2, 0, 0.6, 7e-5, 3.3e-3, 5e-5);
  ASSERT_EQ(proposals(policy, 0.6), 0);
  // Steps that propose nothing: the kExplore-th proposes one.
  for (int s = 0; s < DraftLength::kExplore - 1; ++s) {
    feed(policy, 1, 0, 0, 0.6, 7e-5, 3.3e-3, 5e-5);
    EXPECT_EQ(proposals(policy, 0.6), 0) << "quiet step " << s + 1;
  }
  feed(policy, 1, 0, 0, 0.6, 7e-5, 3.3e-3, 5e-5);
  EXPECT_EQ(proposals(policy, 0.6), 1);
  // That proposal kept resets the count and raises the bin's rate.
  double before = policy.rate(0.6);
  feed(policy, 1, 1, 1, 0.6, 7e-5, 3.3e-3, 5e-5);
  EXPECT_GT(policy.rate(0.6), before);
  EXPECT_EQ(policy.quietSteps, 0);
}

TEST(DraftLengthTest, BinsSeparateConfidences) {
  EXPECT_EQ(DraftLength::bin(0.0), 0);
  EXPECT_EQ(DraftLength::bin(0.5), 2);
  EXPECT_EQ(DraftLength::bin(0.99), DraftLength::kBins - 1);
  EXPECT_EQ(DraftLength::bin(1.0), DraftLength::kBins - 1);
  EXPECT_LT(DraftLength::bin(0.9), DraftLength::bin(0.97));
  EXPECT_EQ(DraftLength::bin(0.28), 0);
  EXPECT_EQ(DraftLength::bin(0.3), 1);
}

} // namespace
