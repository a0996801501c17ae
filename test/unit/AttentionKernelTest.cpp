//===- AttentionKernelTest.cpp - the runtime's attention kernel ------------===//
//
// Calls the kernel as generated code does (memref descriptors) and compares
// with a direct double-precision softmax(scale Q K^T + mask) V: causal and
// masked, grouped-query heads, sizes that are not multiples of the tiles,
// tiles the mask rules out entirely, fully masked rows, strided operands,
// and the generic path for a head_dim the fast path does not take.
//
//===----------------------------------------------------------------------===//

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace {

struct MemRef4 {
  float *allocated, *aligned;
  int64_t offset, sizes[4], strides[4];
};

MemRef4 view(std::vector<float> &data, int64_t b, int64_t h, int64_t s, int64_t d) {
  return {data.data(), data.data(), 0, {b, h, s, d}, {h * s * d, s * d, d, 1}};
}

} // namespace

extern "C" void _mlir_ciface_hasten_rt_attention_f32(MemRef4 *q, MemRef4 *k, MemRef4 *v,
                                                     MemRef4 *mask, MemRef4 *out, float scale,
                                                     int32_t flags);

namespace {

struct Case {
  int64_t batch, heads, kvHeads, qLen, kvLen, dim;
  bool causal, mask;
  /// Mask out keys [maskFrom, maskTo) for every query (additive -1e9).
  int64_t maskFrom = 0, maskTo = 0;
  /// Mask out keys after the causal diagonal instead (what decoders pass;
  /// the kernel recognizes it and runs its causal path).
  bool causalMask = false;
  /// With a key index: every query gets +3 on each dimension and that key
  /// is 5 on each, so its score (about 120 at head_dim 64) dominates every
  /// row that sees it by about 117. A kernel that subtracted a maximum
  /// taken over fewer keys than the row sees would overflow exp there.
  int64_t spikeKey = -1;
  /// What masks keys [maskFrom, maskTo): -inf as masked_fill(-inf) exports
  /// write it, or the float minimum as Hugging Face's do.
  float maskedValue = -1e9f;
};

double maxRelativeError(const Case &c) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  auto fill = [&](int64_t n) {
    std::vector<float> v(n);
    for (float &x : v)
      x = normal(rng);
    return v;
  };
  std::vector<float> q = fill(c.batch * c.heads * c.qLen * c.dim);
  std::vector<float> k = fill(c.batch * c.kvHeads * c.kvLen * c.dim);
  std::vector<float> v = fill(c.batch * c.kvHeads * c.kvLen * c.dim);
  if (c.spikeKey >= 0) {
    for (float &x : q)
      x += 3.0f;
    for (int64_t bh = 0; bh < c.batch * c.kvHeads; ++bh)
      for (int64_t d = 0; d < c.dim; ++d)
        k[(bh * c.kvLen + c.spikeKey) * c.dim + d] = 5.0f;
  }
  // Mask [batch, 1, q_len, kv_len], broadcast over heads.
  std::vector<float> mask(c.batch * c.qLen * c.kvLen, 0.0f);
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t i = 0; i < c.qLen; ++i) {
      for (int64_t j = c.maskFrom; j < c.maskTo; ++j)
        mask[(b * c.qLen + i) * c.kvLen + j] = c.maskedValue;
      if (c.causalMask)
        for (int64_t j = i + c.kvLen - c.qLen + 1; j < c.kvLen; ++j)
          mask[(b * c.qLen + i) * c.kvLen + j] = -1e9f;
    }
  std::vector<float> out(c.batch * c.heads * c.qLen * c.dim, -7.0f);
  MemRef4 qm = view(q, c.batch, c.heads, c.qLen, c.dim);
  MemRef4 km = view(k, c.batch, c.kvHeads, c.kvLen, c.dim);
  MemRef4 vm = view(v, c.batch, c.kvHeads, c.kvLen, c.dim);
  MemRef4 mm = view(mask, c.batch, 1, c.qLen, c.kvLen);
  MemRef4 om = view(out, c.batch, c.heads, c.qLen, c.dim);
  float scale = 1.0f / std::sqrt((float)c.dim);
  _mlir_ciface_hasten_rt_attention_f32(&qm, &km, &vm, &mm, &om, scale,
                                       (c.causal ? 1 : 0) | (c.mask ? 2 : 0));
  double worst = 0.0;
  int64_t group = c.heads / c.kvHeads, offset = c.kvLen - c.qLen;
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t h = 0; h < c.heads; ++h)
      for (int64_t i = 0; i < c.qLen; ++i) {
        int64_t kvh = h / group;
        std::vector<double> s(c.kvLen);
        double maximum = -INFINITY;
        for (int64_t j = 0; j < c.kvLen; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < c.dim; ++d)
            dot += (double)q[((b * c.heads + h) * c.qLen + i) * c.dim + d] *
                   k[((b * c.kvHeads + kvh) * c.kvLen + j) * c.dim + d];
          // The mask is added in f32, as every f32 framework does: a score
          // plus -1e9 rounds to -1e9, so a fully masked row is uniform.
          s[j] = (double)((float)(dot * scale) +
                          (c.mask ? mask[(b * c.qLen + i) * c.kvLen + j] : 0.0f));
          if (c.causal && j > i + offset)
            s[j] = -INFINITY;
          maximum = std::max(maximum, s[j]);
        }
        double sum = 0;
        for (double &x : s)
          sum += x = std::exp(x - maximum);
        for (int64_t d = 0; d < c.dim; ++d) {
          double expected = 0;
          for (int64_t j = 0; j < c.kvLen; ++j)
            expected += s[j] / sum * v[((b * c.kvHeads + kvh) * c.kvLen + j) * c.dim + d];
          double got = out[((b * c.heads + h) * c.qLen + i) * c.dim + d];
          double error = std::abs(got - expected) / (1.0 + std::abs(expected));
          // std::max would skip a NaN; a NaN output is the worst error.
          worst = std::isnan(error) ? INFINITY : std::max(worst, error);
        }
      }
  return worst;
}

TEST(AttentionKernel, MatchesReferenceAcrossShapes) {
  const Case cases[] = {
      // Prefill-like, causal, sizes off the 64 tiles.
      {1, 4, 4, 100, 100, 64, true, false},
      // Decode: one query over a long past; grouped-query heads.
      {1, 8, 2, 1, 130, 64, false, false},
      // Chunked prefill on a cache: queries are the last 70 of 200 keys.
      {2, 4, 1, 70, 200, 32, true, false},
      // An additive causal-style mask that rules out whole key tiles.
      {1, 2, 2, 65, 300, 64, false, true, 64, 256},
      // Every key masked: the softmax of equal scores is uniform.
      {1, 2, 2, 3, 10, 16, false, true, 0, 10},
      // A causal additive mask, as decoder exports build it, over a past.
      {1, 4, 2, 130, 150, 64, false, true, 0, 0, true},
      // Nearly causal (one extra key hidden): must stay on the mask path.
      {1, 4, 2, 130, 150, 64, false, true, 3, 4, true},
      // Key parts that every row of a group sees whole (no masking):
      // causal with grouped-query heads; without causality at head_dim 80
      // (value columns in a group of 64 and one of 16) and 70 queries (row
      // groups of six and a last one of four); chunked causal at head_dim
      // 48 and 96.
      {1, 2, 1, 600, 600, 64, true, false},
      {1, 2, 2, 70, 520, 80, false, false},
      {1, 3, 3, 131, 300, 48, true, false},
      {1, 2, 1, 600, 600, 96, true, false, 0, 0, false, 10},
      {1, 2, 2, 70, 520, 64, false, false, 0, 0, false, 3},
      // A spike in the fifth part of the keys: every row's maximum passes
      // its running one by far more than the rescaling slack, after four
      // parts have been summed against the old one.
      {1, 2, 2, 70, 520, 64, false, false, 0, 0, false, 300},
      {1, 2, 1, 200, 200, 64, true, false, 0, 0, false, 130},
      // Keys masked with -inf and with the float minimum, across parts,
      // part boundaries and the row groups' visible ends.
      {1, 2, 2, 70, 520, 64, false, true, 100, 400, false, -1,
       -std::numeric_limits<float>::infinity()},
      {1, 2, 2, 70, 520, 64, false, true, 30, 500, false, -1,
       std::numeric_limits<float>::lowest()},
      // head_dim beyond the fast path.
      {1, 2, 2, 5, 9, 320, true, false},
  };
  for (const Case &c : cases)
    EXPECT_LT(maxRelativeError(c), 2e-5)
        << "batch " << c.batch << " heads " << c.heads << "/" << c.kvHeads << " q " << c.qLen
        << " kv " << c.kvLen << " dim " << c.dim << (c.causal ? " causal" : "")
        << (c.mask ? " masked" : "") << (c.spikeKey >= 0 ? " spike" : "");
}

TEST(AttentionKernel, ReadsStridedKeysInPlace) {
  // Keys and values as a view of a larger cache: [1, 2, capacity 16, 8]
  // holding 5 tokens.
  std::vector<float> q(2 * 8), cache(2 * 2 * 16 * 8), out(2 * 8);
  for (size_t i = 0; i < q.size(); ++i)
    q[i] = 0.1f * (float)i;
  for (size_t i = 0; i < cache.size(); ++i)
    cache[i] = std::sin(0.37f * (float)i);
  MemRef4 qm = view(q, 1, 2, 1, 8), om = view(out, 1, 2, 1, 8);
  MemRef4 km{cache.data(), cache.data(), 0, {1, 2, 5, 8}, {2 * 2 * 16 * 8, 16 * 8, 8, 1}};
  MemRef4 vm = km;
  vm.offset = 2 * 16 * 8;
  _mlir_ciface_hasten_rt_attention_f32(&qm, &km, &vm, &qm, &om, 0.5f, 0);
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t d = 0; d < 8; ++d) {
      double s[5], maximum = -INFINITY, sum = 0, expected = 0;
      for (int j = 0; j < 5; ++j) {
        double dot = 0;
        for (int e = 0; e < 8; ++e)
          dot += (double)q[h * 8 + e] * cache[(h * 16 + j) * 8 + e];
        s[j] = 0.5 * dot;
        maximum = std::max(maximum, s[j]);
      }
      for (double &x : s)
        sum += x = std::exp(x - maximum);
      for (int j = 0; j < 5; ++j)
        expected += s[j] / sum * cache[2 * 16 * 8 + (h * 16 + j) * 8 + d];
      EXPECT_NEAR(out[h * 8 + d], expected, 1e-5);
    }
}

} // namespace
