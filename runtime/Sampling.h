//===- Sampling.h - choosing tokens from logits ----------------*- C++ -*-===//
//
// One sampler for plain and speculative generation, so that both draw from
// the same distribution: softmax(logits / temperature) cut to the top_k
// most likely tokens, then to the smallest set whose mass reaches top_p.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_RUNTIME_SAMPLING_H
#define HASTEN_RUNTIME_SAMPLING_H

#include "hasten/runtime.h"

#include <cstdint>
#include <vector>

namespace hasten::runtime {

/// splitmix64: small, seedable, and the same everywhere.
struct Random {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }
};

/// Whether top_k or top_p removes tokens from the distribution (else it is
/// softmax(logits / temperature) over the whole vocabulary).
bool cutsCandidates(const hasten_generate_options &options, int64_t vocab);

/// The index of the largest logit (the first of equal ones).
int64_t argmax(const float *logits, int64_t vocab);

/// The largest logit's index (the first of equal ones) and its probability
/// under softmax(logits), in one pass over the exponentials in float (the
/// probability is a confidence, to about 1e-6).
struct TopToken {
  int64_t index;
  double probability;
};
TopToken topToken(const float *logits, int64_t vocab);

/// One token: argmax at temperature 0, else drawn from the distribution
/// below.
int64_t sampleToken(const float *logits, int64_t vocab, const hasten_generate_options &options,
                    Random &random);

/// The distribution sampleToken draws from at temperature > 0, as `vocab`
/// probabilities summing to 1 (0 outside the top-k / top-p cut); at
/// temperature 0, all mass on the argmax.
void tokenProbabilities(const float *logits, int64_t vocab,
                        const hasten_generate_options &options, std::vector<double> &probs);

/// A token drawn from `probs` (which need not be normalized; their sum is
/// positive).
int64_t drawFrom(const std::vector<double> &probs, Random &random);

} // namespace hasten::runtime

#endif // HASTEN_RUNTIME_SAMPLING_H
