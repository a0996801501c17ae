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
/// proposal at a time. The draft's confidence in a proposal (its top
/// probability) predicts whether the target keeps it, so a step proposes
/// more where the text is easy and stops early where it is not, instead of
/// one K for every step. Acceptance is learned while generating, per bin of
/// confidence; a bin with few observations leans on the rate over all bins
/// (drafts are not calibrated: a distilled byte-level draft whose top
/// probability was 0.17 was kept 99% of the time). The proposals so far
/// are all kept with the product of their bins' rates. Another proposal
/// pays while the tokens it and some number of later ones are expected to
/// add, times the seconds a token costs at the current speed, exceed what
/// they cost: their draft steps and verification rows (both measured).
///
/// When sampling, the confidence is the draft's top probability, read
/// before its draw: deciding on the drawn token's own probability would
/// propose confident draws more often than the draft makes them, and
/// rejection sampling (which assumes the draft's distribution) would no
/// longer give the target's.
struct DraftLength {
  static constexpr int kMax = 12, kBins = 12, kExplore = 16;
  static constexpr double kColdStart = 1.0 / 3.0;
  /// Observations a bin's rate is worth before its own: the pooled rate's.
  static constexpr double kBinPrior = 2.0;
  double kept[kBins] = {}, seen[kBins] = {};
  double keptAll = 1.2, seenAll = 2.0; // pooled, from a prior of 0.6
  double draftStep = -1.0, secondsPerToken = -1.0;
  double recentSeconds = 0.0, recentTokens = 0.0; // decaying sums over steps
  int quietSteps = 0; // steps since the last one that proposed
  double verify[kMax + 2]; // verify[r]: seconds to verify r tokens, -1 unmeasured

  DraftLength() { std::fill(verify, verify + kMax + 2, -1.0); }

  /// Bins by -log2(1 - c) in half steps: finer near 1, where a confident
  /// draft's proposals gather. Bin 0 holds c < 0.29, bin 11 c >= 0.978.
  static int bin(double confidence) {
    double bits = -std::log2(std::max(1e-9, 1.0 - confidence));
    return std::clamp((int)(2.0 * bits), 0, kBins - 1);
  }

  double pooledRate() const { return keptAll / seenAll; }

  double binRate(int b) const {
    return (kept[b] + kBinPrior * pooledRate()) / (seen[b] + kBinPrior);
  }

  double rate(double confidence) const { return binRate(bin(confidence)); }

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
      best = std::max(best, binRate(b));
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
    // A rate that fell low is never proposed from, so never measured
    // again: after kExplore steps without a proposal, one is made anyway.
    if (proposed == 0 && quietSteps >= kExplore)
      return true;
    // Nothing measured yet: propose while all are kept with a chance of at
    // least kColdStart.
    if (draftStep < 0 || secondsPerToken < 0)
      return allKept * keptRate >= kColdStart;
    // This proposal and m - 1 more (at the pooled rate) against m draft
    // steps and m more verification rows, for every m: a row that starts a
    // new pass over the weights costs more than the next few, so a row
    // that does not pay alone may pay with those after it.
    double gain = 0.0, chain = allKept, base = verifyCost(proposed + 1);
    for (int m = 1; proposed + m <= kMax; ++m) {
      chain *= m == 1 ? keptRate : pooledRate();
      gain += chain;
      double cost = m * draftStep + std::max(0.0, verifyCost(proposed + 1 + m) - base);
      if (gain * secondsPerToken > cost)
        return true;
    }
    return false;
  }

  /// A verified step: the proposals' confidences and how many were kept;
  /// the seconds its drafting took in all (bringing the draft up to date
  /// included) and its verification; and `draftSteps` draft steps that
  /// took `draftStepSeconds` of that, one token each.
  void record(const std::vector<double> &confidences, size_t keptCount, double draftSeconds,
              double verifySeconds, int draftSteps, double draftStepSeconds) {
    const double weight = 0.3;
    quietSteps = confidences.empty() ? quietSteps + 1 : 0;
    for (size_t i = 0; i < confidences.size() && i <= keptCount; ++i) {
      int b = bin(confidences[i]);
      double wasKept = i < keptCount ? 1.0 : 0.0;
      seen[b] += 1.0;
      kept[b] += wasKept;
      seenAll += 1.0;
      keptAll += wasKept;
      if (seen[b] > 400.0) { // forget slowly: the text changes
        seen[b] *= 0.5;
        kept[b] *= 0.5;
      }
      if (seenAll > 400.0) {
        seenAll *= 0.5;
        keptAll *= 0.5;
      }
    }
    if (draftSteps > 0) {
      double perStep = draftStepSeconds / draftSteps;
      draftStep = draftStep < 0 ? perStep : draftStep + weight * (perStep - draftStep);
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
