//===- DraftLength.h - how many tokens a draft model proposes -------------===//
//
// The policy of hasten_generate_speculative for k = 0 with a draft model,
// header-only so that unit tests drive it with chosen costs and outcomes.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_RUNTIME_DRAFTLENGTH_H
#define HASTEN_RUNTIME_DRAFTLENGTH_H

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace hasten::runtime {

/// For k = 0 with a draft model: how many tokens to propose, decided one
/// proposal at a time. The draft's confidence in a proposal (its
/// probability of the token it proposes) predicts whether the target keeps
/// it, so a step proposes more where the text is easy and stops early where
/// it is not, instead of one K for every step. Acceptance by confidence is
/// learned while generating (a table of confidence bins, each starting
/// from the highest confidence it holds); the proposals so far are all
/// kept with the product of their bins' rates. Another
/// proposal pays while that product times its own rate, in tokens, times
/// the seconds a token costs at the current speed, exceeds what it costs: a
/// draft step and the extra row of verification (both measured).
///
/// When sampling, the confidence is the draft's top probability, read
/// before its draw: deciding on the drawn token's own probability would
/// propose confident draws more often than the draft makes them, and
/// rejection sampling (which assumes the draft's distribution) would no
/// longer give the target's.
struct DraftLength {
  static constexpr int kMax = 12, kBins = 12, kExplore = 16;
  static constexpr double kColdStart = 1.0 / 3.0;
  double kept[kBins], seen[kBins];
  double draftStep = -1.0, secondsPerToken = -1.0;
  double recentSeconds = 0.0, recentTokens = 0.0; // decaying sums over steps
  int quietSteps = 0; // steps since the last one that proposed
  double verify[kMax + 2]; // verify[r]: seconds to verify r tokens, -1 unmeasured

  DraftLength() {
    for (int b = 0; b < kBins; ++b) {
      // Prior: two observations at the bin's upper confidence, optimistic
      // so that every bin gets tried.
      seen[b] = 2.0;
      kept[b] = 2.0 * upperConfidence(b);
    }
    std::fill(verify, verify + kMax + 2, -1.0);
  }

  /// Bins by -log2(1 - c) in half steps: finer near 1, where a distilled
  /// draft's proposals gather. Bin 0 holds c < 0.29, bin 11 c >= 0.978.
  static int bin(double confidence) {
    double bits = -std::log2(std::max(1e-9, 1.0 - confidence));
    return std::clamp((int)(2.0 * bits), 0, kBins - 1);
  }
  static double upperConfidence(int b) {
    return b + 1 < kBins ? 1.0 - std::exp2(-0.5 * (b + 1)) : 1.0;
  }

  double rate(double confidence) const {
    int b = bin(confidence);
    return kept[b] / seen[b];
  }

  double verifyCost(int rows) const {
    for (int d = 0; d <= kMax + 1; ++d)
      for (int candidate : {rows - d, rows + d})
        if (candidate >= 1 && candidate <= kMax + 1 && verify[candidate] > 0)
          return verify[candidate];
    return 0.0;
  }

  /// Whether a token of any confidence could be worth proposing after
  /// `proposed` tokens: if not, the draft step that would give its
  /// confidence is not run either.
  bool mightProposeAnother(int proposed, double allKept) const {
    double best = 0.0;
    for (int b = 0; b < kBins; ++b)
      best = std::max(best, kept[b] / seen[b]);
    return pays(proposed, allKept, best);
  }

  /// Whether to propose a token of `confidence` after `proposed` tokens
  /// that are all kept with probability `allKept`.
  bool proposeAnother(int proposed, double allKept, double confidence) const {
    return pays(proposed, allKept, rate(confidence));
  }

  /// Whether a proposal kept with probability `keptRate` pays after
  /// `proposed` tokens that are all kept with probability `allKept`.
  bool pays(int proposed, double allKept, double keptRate) const {
    if (proposed >= kMax)
      return false;
    // A bin whose rate fell low is never proposed from, so never measured
    // again: after kExplore steps without a proposal, one is made anyway.
    if (proposed == 0 && quietSteps >= kExplore)
      return true;
    // Nothing measured yet: propose while all are kept with a chance of at
    // least kColdStart.
    if (draftStep < 0 || secondsPerToken < 0)
      return allKept * keptRate >= kColdStart;
    double cost = draftStep + std::max(0.0, verifyCost(proposed + 2) - verifyCost(proposed + 1));
    return allKept * keptRate * secondsPerToken > cost;
  }

  /// A verified step: the proposals' confidences, how many were kept, and
  /// the seconds its proposing and its verification took.
  void record(const std::vector<double> &confidences, size_t keptCount, double draftSeconds,
              double verifySeconds) {
    const double weight = 0.3;
    quietSteps = confidences.empty() ? quietSteps + 1 : 0;
    for (size_t i = 0; i < confidences.size() && i <= keptCount; ++i) {
      int b = bin(confidences[i]);
      seen[b] += 1.0;
      kept[b] += i < keptCount ? 1.0 : 0.0;
      if (seen[b] > 400.0) { // forget slowly: the text changes
        seen[b] *= 0.5;
        kept[b] *= 0.5;
      }
    }
    if (!confidences.empty()) {
      double perToken = draftSeconds / (double)confidences.size();
      draftStep = draftStep < 0 ? perToken : draftStep + weight * (perToken - draftStep);
    }
    size_t rows = confidences.size() + 1;
    if (rows <= (size_t)kMax + 1) {
      double &v = verify[rows];
      v = v < 0 ? verifySeconds : v + weight * (verifySeconds - v);
    }
    // Tokens emitted per second over recent steps (a ratio of sums: a mean
    // of per-step ratios would weigh a step that kept nothing like one that
    // kept everything).
    recentSeconds = 0.9 * recentSeconds + draftSeconds + verifySeconds;
    recentTokens = 0.9 * recentTokens + (double)(keptCount + 1);
    secondsPerToken = recentSeconds / recentTokens;
  }
};

} // namespace hasten::runtime

#endif // HASTEN_RUNTIME_DRAFTLENGTH_H
