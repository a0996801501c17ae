//===- Speculation.cpp - speculative generation ----------------------------===//
//
// A drafter proposes tokens, the target scores them all in one pass of its
// verify entry, and the longest acceptable prefix is kept. Rollback is a
// truncate of each sequence, so no cache is copied. The drafter is a second
// sequence (a draft model) or prompt lookup over the context; with RAPID
// the draft model reads a retrieval-shortened context. Built on the public
// sequence API.
//
//===----------------------------------------------------------------------===//

#include "DraftLength.h"
#include "RuntimeInternal.h"
#include "Sampling.h"
#include "TokenEmitter.h"
#include "hasten/runtime.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <vector>

using namespace hasten::runtime;

namespace {

/// Prompt lookup (as vLLM's and llama.cpp's n-gram drafters): the tokens
/// that followed an earlier occurrence of the context's last n tokens, for
/// the longest n in [nmin, nmax] that has one. Of the occurrences, the
/// latest one followed by k tokens wins, else the earliest (followed by the
/// most), so that a repeating context yields full proposals.
void proposeFromContext(const std::vector<int64_t> &context, int nmin, int nmax, int k,
                        std::vector<int64_t> &out) {
  out.clear();
  int64_t length = (int64_t)context.size();
  for (int64_t n = std::min<int64_t>(nmax, length - 1); n >= nmin; --n) {
    const int64_t *suffix = context.data() + length - n;
    auto matches = [&](int64_t start) {
      return std::equal(suffix, suffix + n, context.data() + start);
    };
    int64_t found = -1;
    for (int64_t start = length - n - k; start >= 0 && found < 0; --start)
      if (matches(start))
        found = start;
    for (int64_t start = std::max<int64_t>(0, length - n - k + 1);
         start <= length - n - 1 && found < 0; ++start)
      if (matches(start))
        found = start;
    if (found < 0)
      continue;
    for (int64_t i = found + n; i < length && (int64_t)out.size() < k; ++i)
      out.push_back(context[i]);
    return;
  }
}

/// RAPID's drafter context: the last `chunk` tokens (the recent text), after
/// the earlier chunks of `chunk` tokens that score best by BM25 against it,
/// in their original order, `budget` tokens in all.
std::vector<int64_t> retrievalContext(const std::vector<int64_t> &context, int64_t budget,
                                      int64_t chunk) {
  if (budget <= 0 || (int64_t)context.size() <= budget)
    return context;
  chunk = std::max<int64_t>(1, std::min(chunk, budget));
  int64_t recentStart = (int64_t)context.size() - chunk;
  std::map<int64_t, int> query;
  for (int64_t i = recentStart; i < (int64_t)context.size(); ++i)
    ++query[context[i]];
  struct Chunk {
    int64_t begin, end;
    std::map<int64_t, int> counts;
    double score = 0.0;
  };
  std::vector<Chunk> chunks;
  for (int64_t begin = 0; begin < recentStart; begin += chunk) {
    Chunk c{begin, std::min(begin + chunk, recentStart), {}};
    for (int64_t i = c.begin; i < c.end; ++i)
      if (query.count(context[i]))
        ++c.counts[context[i]];
    chunks.push_back(std::move(c));
  }
  // BM25 with the usual k1 = 1.2, b = 0.75; a chunk is a document.
  const double k1 = 1.2, b = 0.75;
  double meanLength = double(recentStart) / chunks.size();
  for (const auto &[term, unused] : query) {
    int64_t containing = 0;
    for (const Chunk &c : chunks)
      containing += c.counts.count(term);
    double idf = std::log((chunks.size() - containing + 0.5) / (containing + 0.5) + 1.0);
    for (Chunk &c : chunks) {
      auto it = c.counts.find(term);
      if (it == c.counts.end())
        continue;
      double f = it->second, length = double(c.end - c.begin);
      c.score += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * length / meanLength));
    }
  }
  std::vector<size_t> order(chunks.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  // Best first; of equal scores, the later chunk (closer to the recent text).
  std::sort(order.begin(), order.end(), [&](size_t a, size_t c) {
    return chunks[a].score != chunks[c].score ? chunks[a].score > chunks[c].score : a > c;
  });
  std::vector<bool> chosen(chunks.size(), false);
  int64_t room = budget - chunk;
  for (size_t i : order) {
    int64_t size = chunks[i].end - chunks[i].begin;
    if (size <= room) {
      chosen[i] = true;
      room -= size;
    }
  }
  std::vector<int64_t> shortened;
  for (size_t i = 0; i < chunks.size(); ++i)
    if (chosen[i])
      shortened.insert(shortened.end(), context.begin() + chunks[i].begin,
                       context.begin() + chunks[i].end);
  shortened.insert(shortened.end(), context.begin() + recentStart, context.end());
  return shortened;
}

/// K for the next step when the caller asked for k = 0: the K in [1, 8]
/// that maximizes expected tokens per second, (1 - a^(K+1)) / (1 - a)
/// tokens for K draft steps and one verification of K + 1 tokens, with the
/// acceptance rate a, the draft step's cost and each K's verification cost
/// measured over recent steps. A K not measured yet is costed as the
/// nearest measured one, so that it gets tried.
struct AdaptiveK {
  static constexpr int kMax = 8;
  double accepted = 2.0, rejected = 1.0; // a prior of 2/3
  double draftStep = -1.0;
  double verify[kMax + 1] = {-1, -1, -1, -1, -1, -1, -1, -1, -1};

  void record(int64_t proposed, int64_t kept, double draftSeconds, double verifySeconds) {
    const double decay = 0.9, weight = 0.3;
    accepted = accepted * decay + kept;
    rejected = rejected * decay + (kept < proposed ? 1 : 0);
    if (proposed > 0) {
      double perToken = draftSeconds / proposed;
      draftStep = draftStep < 0 ? perToken : draftStep + weight * (perToken - draftStep);
    }
    if (proposed >= 1 && proposed <= kMax) {
      double &v = verify[proposed];
      v = v < 0 ? verifySeconds : v + weight * (verifySeconds - v);
    }
  }

  double verifyCost(int k) const {
    for (int d = 0; d <= kMax; ++d)
      for (int candidate : {k - d, k + d})
        if (candidate >= 1 && candidate <= kMax && verify[candidate] > 0)
          return verify[candidate];
    return -1.0;
  }

  int choose() const {
    if (draftStep < 0 || verifyCost(1) <= 0)
      return 4;
    double rate = std::min(accepted / (accepted + rejected), 0.999);
    int best = 1;
    double bestSpeed = 0.0;
    for (int k = 1; k <= kMax; ++k) {
      double tokens = (1.0 - std::pow(rate, k + 1)) / (1.0 - rate);
      double speed = tokens / (k * draftStep + verifyCost(k));
      if (speed > bestSpeed) {
        bestSpeed = speed;
        best = k;
      }
    }
    return best;
  }
};

/// Makes `seq` hold `want`, then `extra` when it is not negative: keeps the
/// longest common prefix of what it holds and runs the rest in one pass,
/// writing the last token's logits to `logits` (when something ran).
hasten_status bringUpTo(hasten_sequence *seq, const std::vector<int64_t> &want, int64_t extra,
                        float *logits, std::vector<int64_t> &scratch) {
  const int64_t *held = hasten_sequence_tokens(seq);
  int64_t common = 0, heldLength = hasten_sequence_length(seq);
  while (common < heldLength && common < (int64_t)want.size() && held[common] == want[common])
    ++common;
  if (hasten_status status = hasten_sequence_truncate(seq, common))
    return status;
  scratch.assign(want.begin() + common, want.end());
  if (extra >= 0)
    scratch.push_back(extra);
  return scratch.empty() ? HASTEN_OK
                         : hasten_sequence_append(seq, scratch.data(), scratch.size(), logits);
}

/// -log of token's probability under softmax(row).
double negativeLogProbability(const float *row, int64_t vocab, int64_t token) {
  float top = *std::max_element(row, row + vocab);
  double sum = 0.0;
  for (int64_t i = 0; i < vocab; ++i)
    sum += std::exp(double(row[i]) - top);
  return std::log(sum) - (double(row[token]) - top);
}

} // namespace

extern "C" {

void hasten_speculation_options_init(hasten_speculation_options *options) {
  if (!options)
    return;
  std::memset(options, 0, sizeof(*options));
  options->struct_size = sizeof(*options);
  options->ngram_min = 1;
  options->ngram_max = 3;
  options->rapid_chunk = 64;
}

hasten_status hasten_generate_speculative(hasten_sequence *target, hasten_sequence *draft,
                                          const int64_t *prompt, size_t promptLength,
                                          const hasten_generate_options *options,
                                          const hasten_speculation_options *speculation,
                                          int64_t *generated, hasten_generate_stats *stats,
                                          hasten_speculation_stats *speculationStats) {
  const char *fn = "hasten_generate_speculative";
  hasten_generate_stats localStats{};
  hasten_generate_stats &st = stats ? *stats : localStats;
  if (hasten_status status = checkGenerateArguments(fn, options, stats))
    return status;
  st.struct_size = sizeof(st);
  if (speculation && speculation->struct_size < sizeof(hasten_speculation_options))
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "%s: speculation->struct_size is %zu, expected %zu (initialize it with "
                "hasten_speculation_options_init)",
                fn, speculation->struct_size, sizeof(hasten_speculation_options));
  if (speculationStats && speculationStats->struct_size < sizeof(hasten_speculation_stats))
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "%s: speculation_stats->struct_size is %zu, expected %zu (set it to "
                "sizeof(hasten_speculation_stats))",
                fn, speculationStats->struct_size, sizeof(hasten_speculation_stats));
  hasten_speculation_stats localSpec{};
  hasten_speculation_stats &ss = speculationStats ? *speculationStats : localSpec;
  ss = hasten_speculation_stats{};
  ss.struct_size = sizeof(ss);

  hasten_generate_options defaults;
  hasten_generate_options_init(&defaults);
  const hasten_generate_options &o = options ? *options : defaults;
  hasten_speculation_options specDefaults;
  hasten_speculation_options_init(&specDefaults);
  const hasten_speculation_options &so = speculation ? *speculation : specDefaults;
  if (!target)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "%s: null target sequence", fn);
  if (draft == target)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "%s: the draft must be another sequence than the target", fn);
  if (so.k < 0 || so.k > 32 || so.ngram_min < 1 || so.ngram_max < so.ngram_min ||
      so.rapid_context < 0 || so.rapid_chunk < 1 || !(so.fallback_threshold >= 0.0f) ||
      !(so.rollback_threshold >= 0.0f))
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "%s: k must be in [0, 32], 1 <= ngram_min <= ngram_max, rapid_chunk >= 1, "
                "and rapid_context and the thresholds must not be negative",
                fn);
  int64_t vocab = hasten_sequence_vocab_size(target);
  if (!hasten_sequence_can_verify(target))
    return fail(HASTEN_ERROR_NOT_FOUND,
                "%s: the target has no verify entry (it was compiled with --no-verify-entry)",
                fn);
  if (draft && hasten_sequence_vocab_size(draft) != vocab)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "%s: the draft's vocabulary (%lld tokens) is not the target's (%lld)", fn,
                (long long)hasten_sequence_vocab_size(draft), (long long)vocab);

  TokenEmitter emitter{o, generated, st};
  if (promptLength > 0) {
    if (hasten_status status = hasten_sequence_append(target, prompt, promptLength, nullptr))
      return status;
  } else if (lastLogits(target).empty()) {
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "%s: an empty prompt needs a sequence that was just fed tokens", fn);
  }
  st.prompt_tokens = (int64_t)promptLength;
  st.prefill_seconds = seconds() - emitter.start;
  if (o.max_new_tokens == 0)
    return HASTEN_OK;

  bool greedy = o.temperature <= 0.0f;
  Random random{o.seed};
  // The pending token: chosen and emitted, not yet in either cache.
  int64_t pending = sampleToken(lastLogits(target).data(), vocab, o, random);
  auto finish = [&](hasten_status status) { return emitter.finish(status); };
  if (emitter.emit(pending))
    return finish(HASTEN_OK);

  // What the draft model should hold before the pending token: the target's
  // tokens, or RAPID's shortened context followed by the accepted tokens.
  std::vector<int64_t> draftContext;
  if (draft) {
    const int64_t *tokens = hasten_sequence_tokens(target);
    draftContext = retrievalContext(
        std::vector<int64_t>(tokens, tokens + hasten_sequence_length(target)), so.rapid_context,
        so.rapid_chunk);
    ss.draft_context_tokens = (int64_t)draftContext.size();
  }

  // k = 0: a draft model's proposals stop by its confidence (DraftLength);
  // prompt lookup has none, so its K follows the acceptance rate (AdaptiveK).
  bool perProposal = so.k == 0 && draft;
  AdaptiveK adaptive;
  DraftLength draftLength;
  int k = so.k > 0 ? so.k : perProposal ? DraftLength::kMax : adaptive.choose();
  // The fused spec_step runs the policy-free case at its own K, greedy or
  // sampled at a temperature with no top-k or top-p cut (which it does not
  // apply).
  int64_t fusedK = (greedy || !cutsCandidates(o, vocab)) && so.k > 0 && so.fallback_threshold == 0.0f &&
                           so.rollback_threshold == 0.0f && so.rapid_context == 0
                       ? fusedSpeculationK(target, draft, !greedy)
                       : 0;
  if (fusedK != so.k)
    fusedK = 0;
  std::vector<int64_t> proposals, context, step;
  std::vector<std::vector<double>> draftProbs;
  std::vector<double> targetProbs, confidences;
  int draftSteps = 0;            // one-token draft steps while proposing,
  double draftStepSeconds = 0.0; // and their time (DraftLength's step cost)
  std::vector<float> draftLogits(vocab), verifyLogits;
  std::vector<float> uniforms(2 * fusedK + 1);
  int64_t capacity = hasten_sequence_capacity(target);
  for (;;) {
    // Room for the pending token and the proposals in both caches.
    int64_t room = capacity - hasten_sequence_length(target) - 1;
    int64_t steps = std::max<int64_t>(0, std::min<int64_t>(k, room));
    if (draft)
      steps = std::min<int64_t>(steps, hasten_sequence_capacity(draft) -
                                           (int64_t)draftContext.size());
    // A step emits the accepted proposals and one more token.
    steps = std::min<int64_t>(steps, o.max_new_tokens - st.generated_tokens - 1);

    // The module's fused step, when it applies: one call proposes, verifies
    // and accepts, for the same output.
    if (fusedK > 0 && steps == fusedK) {
      double fusedStart = seconds();
      // The draft must hold exactly the target's tokens (the draft
      // context, as RAPID is off).
      if (hasten_status status = bringUpTo(draft, draftContext, -1, nullptr, step))
        return finish(status);
      int64_t length = hasten_sequence_length(target);
      int64_t base = length;
      if (!greedy)
        for (float &u : uniforms) {
          // A draw in [0, 1) stays below 1 as a float.
          u = (float)random.uniform();
          if (u >= 1.0f)
            u = std::nextafter(1.0f, 0.0f);
        }
      if (hasten_status status = runFusedSpeculation(
              target, draft, pending, greedy ? 0.0f : o.temperature, uniforms.data(), proposals))
        return finish(status);
      ss.verify_seconds += seconds() - fusedStart;
      ++ss.steps;
      ++ss.fused_steps;
      ss.drafted += fusedK;
      ss.accepted += (int64_t)proposals.size() - 1;
      ss.last_k = k;
      draftContext.push_back(pending);
      draftContext.insert(draftContext.end(), proposals.begin(), proposals.end() - 1);
      for (size_t m = 0; m + 1 < proposals.size(); ++m)
        if (emitter.emit(proposals[m])) {
          hasten_sequence_truncate(target, base + 1 + (int64_t)m);
          return finish(HASTEN_OK);
        }
      if (emitter.emit(proposals.back()))
        return finish(HASTEN_OK);
      pending = proposals.back();
      continue;
    }

    // Propose.
    double draftStart = seconds();
    proposals.clear();
    draftProbs.clear();
    confidences.clear();
    draftSteps = 0;
    draftStepSeconds = 0.0;
    if (steps > 0 && draft) {
      // Bring the draft to its context plus the pending token.
      if (hasten_status status =
              bringUpTo(draft, draftContext, pending, draftLogits.data(), step))
        return finish(status);
      double allKept = 1.0;
      for (int64_t i = 0; i < steps; ++i) {
        // The draft's best token (which greedy proposes), and its
        // probability in the same pass where a policy reads it.
        bool needTop = so.fallback_threshold > 0.0f || (perProposal && greedy);
        TopToken best = needTop  ? topToken(draftLogits.data(), vocab)
                        : greedy ? TopToken{argmax(draftLogits.data(), vocab), 0.0}
                                 : TopToken{-1, 0.0};
        double top = best.probability;
        if (so.fallback_threshold > 0.0f && top < so.fallback_threshold)
          break;
        double confidence = top;
        if (!greedy) {
          draftProbs.emplace_back();
          tokenProbabilities(draftLogits.data(), vocab, o, draftProbs.back());
          confidence = *std::max_element(draftProbs.back().begin(), draftProbs.back().end());
        }
        // Stopping is lossless when it reads only the draft's distribution,
        // not the token drawn from it: the target then draws this position
        // itself.
        if (perProposal && !draftLength.proposeAnother((int)i, allKept, confidence)) {
          if (!greedy)
            draftProbs.pop_back();
          break;
        }
        int64_t token = greedy ? best.index : drawFrom(draftProbs.back(), random);
        allKept *= draftLength.rate(confidence);
        confidences.push_back(confidence);
        proposals.push_back(token);
        if (i + 1 < steps) {
          // No draft step for a proposal that no confidence would make.
          if (perProposal && !draftLength.mightProposeAnother((int)i + 1, allKept))
            break;
          double stepStart = seconds();
          if (hasten_status status =
                  hasten_sequence_append(draft, &token, 1, draftLogits.data()))
            return finish(status);
          draftStepSeconds += seconds() - stepStart;
          ++draftSteps;
        }
      }
    } else if (steps > 0) {
      const int64_t *tokens = hasten_sequence_tokens(target);
      context.assign(tokens, tokens + hasten_sequence_length(target));
      context.push_back(pending);
      proposeFromContext(context, so.ngram_min, so.ngram_max, (int)steps, proposals);
    }
    double draftSeconds = seconds() - draftStart;
    ss.draft_seconds += draftSeconds;

    // Verify the pending token and the proposals in one target pass.
    double verifyStart = seconds();
    int64_t base = hasten_sequence_length(target);
    step.assign(1, pending);
    step.insert(step.end(), proposals.begin(), proposals.end());
    verifyLogits.resize(step.size() * vocab);
    if (hasten_status status =
            hasten_sequence_verify(target, step.data(), step.size(), verifyLogits.data()))
      return finish(status);
    double verifySeconds = seconds() - verifyStart;
    ss.verify_seconds += verifySeconds;
    ++ss.steps;
    ss.drafted += (int64_t)proposals.size();

    // Accept the longest acceptable prefix; `next` is the target's token
    // after it.
    size_t kept = 0;
    int64_t next = -1;
    for (; kept < proposals.size(); ++kept) {
      const float *row = verifyLogits.data() + kept * vocab;
      int64_t token = proposals[kept];
      if (so.rollback_threshold > 0.0f &&
          negativeLogProbability(row, vocab, token) <= so.rollback_threshold)
        continue;
      if (greedy) {
        if (argmax(row, vocab) == token)
          continue;
        break;
      }
      tokenProbabilities(row, vocab, o, targetProbs);
      double q = draft ? draftProbs[kept][token] : 1.0;
      if (targetProbs[token] >= q || random.uniform() * q < targetProbs[token])
        continue;
      // Rejected: draw from the normalized max(0, p - q).
      double residual = 0.0;
      for (int64_t t = 0; t < vocab; ++t) {
        double qt = draft ? draftProbs[kept][t] : (t == token ? 1.0 : 0.0);
        targetProbs[t] = std::max(0.0, targetProbs[t] - qt);
        residual += targetProbs[t];
      }
      if (residual <= 0.0)
        tokenProbabilities(row, vocab, o, targetProbs);
      next = drawFrom(targetProbs, random);
      break;
    }
    const float *nextRow = verifyLogits.data() + kept * vocab;
    if (next < 0)
      next = sampleToken(nextRow, vocab, o, random);
    ss.accepted += (int64_t)kept;
    int32_t lastK = perProposal ? (int32_t)proposals.size() : k;

    // Roll back: the target keeps the pending token and the accepted ones.
    auto rollBack = [&](size_t acceptedTokens) {
      hasten_sequence_truncate(target, base + 1 + (int64_t)acceptedTokens);
      const float *row = verifyLogits.data() + acceptedTokens * vocab;
      lastLogits(target).assign(row, row + vocab);
    };
    rollBack(kept);
    if (draft) {
      draftContext.push_back(pending);
      draftContext.insert(draftContext.end(), proposals.begin(), proposals.begin() + kept);
    }
    for (size_t m = 0; m < kept; ++m)
      if (emitter.emit(proposals[m])) {
        // The last emitted token is returned, not run, as hasten_generate.
        rollBack(m);
        ss.last_k = lastK;
        return finish(HASTEN_OK);
      }
    ss.last_k = lastK;
    if (emitter.emit(next))
      return finish(HASTEN_OK);
    pending = next;
    if (perProposal) {
      draftLength.record(confidences, kept, draftSeconds, verifySeconds, draftSteps,
                         draftStepSeconds);
    } else if (so.k == 0) {
      adaptive.record((int64_t)proposals.size(), (int64_t)kept, draftSeconds, verifySeconds);
      k = adaptive.choose();
    }
  }
}

} // extern "C"
