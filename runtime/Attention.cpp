//===- Attention.cpp - tiled attention with online softmax -----------------===//
//
// softmax(scale * Q K^T + mask) V, one block of 64 queries against parts of
// 64 keys at a time, FlashAttention-2 style: each query row keeps a running
// maximum, sum and output accumulator, so the q_len x kv_len score matrix
// never exists. Keys and values come from strided tensors or from a paged
// KV cache through its block table: one-query decode reads them in place;
// query blocks read a per-thread copy of their (batch, kv head)'s keys,
// transposed 64 at a time, and values, packed once per call. Grouped-query
// attention reads key/value head h / (heads / kv_heads). Query blocks keep
// their scores in base-2 units (log2(e) folded into the scale), so that the
// exponentials are 2^x.
//
//===----------------------------------------------------------------------===//

#include "CpuFeatures.h"
#include "RuntimeInternal.h"
#include "hasten/KernelAbi.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

namespace {

template <int Rank>
using MemRef = hasten::runtime::MemRefDescriptor<float, Rank>;
template <int Rank>
using IntMemRef = hasten::runtime::MemRefDescriptor<int32_t, Rank>;

using hasten::abi::kCausal;
using hasten::abi::kHasMask;

constexpr int64_t kBlock = 64;   // queries per block
constexpr float kLog2E = 1.44269504f;
constexpr int64_t kPart = 64;    // keys per part (16 KB of keys at head_dim 64)
constexpr int64_t kMaxDim = 256; // head_dim limit of the fast path
/// Row pitch of a block's queries and accumulators: one cache line more
/// than a power of two, so that the rows' first lines fall in different L1
/// sets (at a 1 KB pitch, 64 rows shared 16 of its 64 sets and evicted each
/// other: QK^T and PV ran at under 60% of the FMA peak).
constexpr int64_t kRowPitch = kMaxDim + 16;
/// How far (in base-2 units) a part's scores may pass a row's running
/// maximum before the row rescales: probabilities up to 2^8.
constexpr float kRescaleSlack = 8.0f;
/// The score the block kernel gives a key that a row does not see: finite,
/// as exp2Finite wants its inputs.
constexpr float kHidden = -std::numeric_limits<float>::max();
/// A row's running maximum before it has seen a key: above kHidden, so that
/// hidden keys never become a maximum and give 2^(kHidden - kNoMaximum) = 0.
constexpr float kNoMaximum = -1e30f;
/// A part whose additive mask is below this everywhere contributes
/// exp(< -1e8 + |scores|) = 0 in f32 and is skipped (causal masks in
/// exported graphs are additive -1e9 or the float minimum).
constexpr float kMaskedOut = -1e8f;

/// Where the rows of keys (or values) of one (batch, head) live.
struct RowSource {
  const float *base;
  int64_t batchStride, headStride, rowStride, elemStride;
  // Paged: rows live in blocks of `blockSize` reached through `table`.
  const int32_t *table = nullptr;
  int64_t blockSize = 0, blockStride = 0;

  const float *row(int64_t b, int64_t h, int64_t t) const {
    if (!table)
      return base + b * batchStride + h * headStride + t * rowStride;
    return base + (int64_t)table[t / blockSize] * blockStride + h * headStride +
           (t % blockSize) * rowStride;
  }
};

struct AttentionJob {
  MemRef<4> q, out;
  RowSource k, v;
  const MemRef<4> *mask;
  int64_t batch, heads, kvHeads, qLen, kvLen, dim, vDim;
  float scale;
  bool causal;
  /// Whether query blocks prefetch their next part of keys and values into
  /// L2 (CpuCapabilities::prefetchToL2).
  bool prefetch;
  int64_t blocksPerHead;
  /// Distinguishes calls, for the per-thread packed keys and values.
  uint64_t call;
};

/// The mask row of query (b, h, i) and the distance between its keys (0
/// when the mask broadcasts along the keys).
const float *maskRow(const MemRef<4> &m, int64_t b, int64_t h, int64_t i) {
  auto idx = [&](int d, int64_t v) { return m.sizes[d] == 1 ? 0 : v * m.strides[d]; };
  return m.data() + idx(0, b) + idx(1, h) + idx(2, i);
}
int64_t maskKeyStride(const MemRef<4> &m) { return m.sizes[3] == 1 ? 0 : m.strides[3]; }

float maskAt(const MemRef<4> &m, int64_t b, int64_t h, int64_t i, int64_t j) {
  return maskRow(m, b, h, i)[j * maskKeyStride(m)];
}

/// The generic path: plain loops, any head_dim, any CPU. Also the exact
/// fallback for a row whose every key is masked (the softmax of equal
/// scores is uniform, which skipping tiles would lose).
__attribute__((always_inline)) inline void
attentionRowGeneric(const AttentionJob &job, int64_t b, int64_t h, int64_t i) {
  int64_t kvh = h / (job.heads / job.kvHeads), offset = job.kvLen - job.qLen;
  const float *q = job.q.data() + b * job.q.strides[0] + h * job.q.strides[1] +
                   i * job.q.strides[2];
  std::vector<float> scores(job.kvLen);
  float maximum = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < job.kvLen; ++j) {
    float s = -std::numeric_limits<float>::infinity();
    if (!(job.causal && j > i + offset)) {
      const float *k = job.k.row(b, kvh, j);
      float dot = 0.0f;
#pragma clang loop vectorize(enable)
      for (int64_t d = 0; d < job.dim; ++d)
        dot += q[d * job.q.strides[3]] * k[d * job.k.elemStride];
      s = dot * job.scale + (job.mask ? maskAt(*job.mask, b, h, i, j) : 0.0f);
    }
    scores[j] = s;
    maximum = std::max(maximum, s);
  }
  float *o = job.out.data() + b * job.out.strides[0] + h * job.out.strides[1] +
             i * job.out.strides[2];
  for (int64_t d = 0; d < job.vDim; ++d)
    o[d * job.out.strides[3]] = 0.0f;
  if (maximum == -std::numeric_limits<float>::infinity())
    return; // nothing to attend to (only possible with causal and kv_len < q_len)
  float sum = 0.0f;
  for (int64_t j = 0; j < job.kvLen; ++j)
    sum += scores[j] = std::exp(scores[j] - maximum);
  for (int64_t j = 0; j < job.kvLen; ++j) {
    if (scores[j] == 0.0f)
      continue;
    const float *v = job.v.row(b, kvh, j);
    for (int64_t d = 0; d < job.vDim; ++d)
      o[d * job.out.strides[3]] += scores[j] / sum * v[d * job.v.elemStride];
  }
}

__attribute__((always_inline)) inline void attentionBlocksPlain(int64_t begin, int64_t end,
                                                                void *data) {
  auto *job = static_cast<AttentionJob *>(data);
  for (int64_t block = begin; block < end; ++block) {
    int64_t bh = block / job->blocksPerHead, i0 = (block % job->blocksPerHead) * kBlock;
    int64_t b = bh / job->heads, h = bh % job->heads;
    for (int64_t i = i0; i < std::min(job->qLen, i0 + kBlock); ++i)
      attentionRowGeneric(*job, b, h, i);
  }
}

void attentionBlocksGeneric(int64_t begin, int64_t end, void *data) {
  attentionBlocksPlain(begin, end, data);
}

/// The same loops compiled for AVX2 and FMA (hosts without AVX-512).
__attribute__((target("avx2,fma"))) void attentionBlocksAvx2(int64_t begin, int64_t end,
                                                              void *data) {
  attentionBlocksPlain(begin, end, data);
}

/// The first 64-byte aligned float of `v` (which has 16 floats of slack).
float *alignedIn(std::vector<float> &v) {
  auto address = reinterpret_cast<uintptr_t>(v.data());
  return reinterpret_cast<float *>((address + 63) & ~uintptr_t(63));
}

/// exp on 16 lanes: 2^n * p(r) with x = n ln2 + r, |r| <= ln2/2, degree-6
/// polynomial (relative error about 2e-7). Inputs below -105 (-inf
/// included) are clamped to it, where n = -151 and p(r) < 0.72: the result
/// rounds to exactly 0, as exp does below -103.97, with no compare.
__attribute__((target("avx512f"))) inline __m512 exp512(__m512 x) {
  const __m512 log2e = _mm512_set1_ps(kLog2E), ln2hi = _mm512_set1_ps(0.693359375f),
               ln2lo = _mm512_set1_ps(-2.12194440e-4f);
  __m512 clamped = _mm512_max_ps(x, _mm512_set1_ps(-105.0f));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(clamped, log2e),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, ln2hi, clamped);
  r = _mm512_fnmadd_ps(n, ln2lo, r);
  __m512 p = _mm512_set1_ps(1.0f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

/// 2^x on 16 lanes for finite x: 2^n * p(f) with x = n + f, |f| <= 1/2, p
/// a degree-5 fit of 2^f (relative error 2.4e-7 in f32). One multiply and
/// two FMAs fewer than exp512, for the scores that the block kernel keeps
/// in base-2 units (log2(e) folded into the query scale), and no clamp:
/// below -149, scalef takes 2^n to exactly 0 by itself (kHidden included).
/// For -inf the polynomial would run on NaN (-inf - -inf); only scalef's
/// rule for an exponent of -inf would turn that into 0, and nothing here
/// relies on it.
__attribute__((target("avx512f"))) inline __m512 exp2Finite(__m512 x) {
  __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(1.3276447e-3f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6755335e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5507131e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022120e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314694e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0000001f));
  return _mm512_scalef_ps(p, n);
}

/// Decode reads K, then V, once, from memory. Each pass walks four quarters
/// of the keys side by side: an iteration's four keys are independent (their
/// dot products and lane sums overlap instead of queueing) and its loads
/// come from four places at once. Measured at 16384 keys: 23% faster on one
/// thread, 14% on two, than one key at a time.
constexpr int64_t kStreams = 4;

/// One query row read straight from K and V rows (contiguous head_dim):
/// for a decode step, packing the keys would cost more than the product.
__attribute__((target("avx512f"))) void attentionRowDirect(const AttentionJob &job, int64_t b,
                                                           int64_t h, int64_t i) {
  const float negInf = -std::numeric_limits<float>::infinity();
  int64_t kvh = h / (job.heads / job.kvHeads), offset = job.kvLen - job.qLen;
  int64_t D = job.dim, Dv = job.vDim;
  int64_t keys = job.causal ? std::min(job.kvLen, i + offset + 1) : job.kvLen;
  thread_local std::vector<float> scores;
  scores.resize(keys + 16);
  alignas(64) float q[kMaxDim];
  const float *qRow = job.q.data() + b * job.q.strides[0] + h * job.q.strides[1] +
                      i * job.q.strides[2];
  for (int64_t d = 0; d < D; ++d)
    q[d] = qRow[d * job.q.strides[3]] * job.scale;
  int64_t dVecs = (D + 15) / 16;
  __mmask16 dTail = (__mmask16)((1u << (D - 16 * (dVecs - 1))) - 1);
  const float *m = job.mask ? maskRow(*job.mask, b, h, i) : nullptr;
  int64_t step = job.mask ? maskKeyStride(*job.mask) : 0;
  // Key j of stream s is s * quarter + j; keys past 4 * quarter go alone.
  int64_t quarter = keys / kStreams;
  auto score = [&](int64_t j, __m512 dot) __attribute__((target("avx512f"))) {
    float value = _mm512_reduce_add_ps(dot) + (m ? m[j * step] : 0.0f);
    scores[j] = value;
    return value;
  };
  auto dotAt = [&](int64_t j, __m512 dot, int64_t u) __attribute__((target("avx512f"))) {
    __mmask16 lanes = u + 1 == dVecs ? dTail : (__mmask16)0xffff;
    return _mm512_fmadd_ps(_mm512_maskz_loadu_ps(lanes, q + 16 * u),
                           _mm512_maskz_loadu_ps(lanes, job.k.row(b, kvh, j) + 16 * u), dot);
  };
  float maximum = negInf;
  for (int64_t j = 0; j < quarter; ++j) {
    __m512 dots[kStreams];
    for (int64_t s = 0; s < kStreams; ++s)
      dots[s] = _mm512_setzero_ps();
    for (int64_t u = 0; u < dVecs; ++u)
      for (int64_t s = 0; s < kStreams; ++s)
        dots[s] = dotAt(s * quarter + j, dots[s], u);
    for (int64_t s = 0; s < kStreams; ++s)
      maximum = std::max(maximum, score(s * quarter + j, dots[s]));
  }
  for (int64_t j = kStreams * quarter; j < keys; ++j) {
    __m512 dot = _mm512_setzero_ps();
    for (int64_t u = 0; u < dVecs; ++u)
      dot = dotAt(j, dot, u);
    maximum = std::max(maximum, score(j, dot));
  }
  float *o = job.out.data() + b * job.out.strides[0] + h * job.out.strides[1] +
             i * job.out.strides[2];
  if (maximum == negInf) {
    attentionRowGeneric(job, b, h, i);
    return;
  }
  float sum = 0.0f;
  for (int64_t j = 0; j < keys; j += 16) {
    __mmask16 lanes = keys - j >= 16 ? (__mmask16)0xffff
                                     : (__mmask16)((1u << (keys - j)) - 1);
    __m512 p = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(lanes, &scores[j]),
                                    _mm512_set1_ps(maximum)));
    p = _mm512_maskz_mov_ps(lanes, p);
    _mm512_mask_storeu_ps(&scores[j], lanes, p);
    sum += _mm512_reduce_add_ps(p);
  }
  int64_t vVecs = (Dv + 15) / 16;
  __mmask16 vTail = (__mmask16)((1u << (Dv - 16 * (vVecs - 1))) - 1);
  for (int64_t u0 = 0; u0 < vVecs; u0 += 4) {
    int64_t chunk = std::min<int64_t>(4, vVecs - u0);
    // acc[s][u]: stream s's share of output vector u0 + u.
    __m512 acc[kStreams][4];
    for (int64_t s = 0; s < kStreams; ++s)
      for (int64_t u = 0; u < 4; ++u)
        acc[s][u] = _mm512_setzero_ps();
    auto accumulate = [&](int64_t j, __m512 *a) __attribute__((target("avx512f"))) {
      const float *v = job.v.row(b, kvh, j);
      __m512 p = _mm512_set1_ps(scores[j]);
      for (int64_t u = 0; u < chunk; ++u) {
        __mmask16 lanes = u0 + u + 1 == vVecs ? vTail : (__mmask16)0xffff;
        a[u] = _mm512_fmadd_ps(p, _mm512_maskz_loadu_ps(lanes, v + 16 * (u0 + u)), a[u]);
      }
    };
    for (int64_t j = 0; j < quarter; ++j)
      for (int64_t s = 0; s < kStreams; ++s)
        accumulate(s * quarter + j, acc[s]);
    for (int64_t j = kStreams * quarter; j < keys; ++j)
      accumulate(j, acc[0]);
    __m512 inv = _mm512_set1_ps(1.0f / sum);
    for (int64_t u = 0; u < chunk; ++u) {
      __m512 total = acc[0][u];
      for (int64_t s = 1; s < kStreams; ++s)
        total = _mm512_add_ps(total, acc[s][u]);
      alignas(64) float out[16];
      _mm512_store_ps(out, _mm512_mul_ps(total, inv));
      int64_t width = std::min<int64_t>(16, Dv - 16 * (u0 + u));
      for (int64_t d = 0; d < width; ++d)
        o[(16 * (u0 + u) + d) * job.out.strides[3]] = out[d];
    }
  }
}

/// Calls body(std::integral_constant<int, R>, rr) for the block's rows in
/// groups of R: six rows while six remain, then four, the last group
/// repeating its last row where fewer remain. rr lists the group's rows.
/// Six rows take 24 accumulators: ten loads per 24 FMAs instead of eight
/// per 16 (6% faster on Emerald Rapids, where L1 loads bound the four-row
/// form).
template <typename Body>
__attribute__((target("avx512f"), always_inline)) inline void forRowGroups(int64_t rows,
                                                                          Body body) {
  int64_t r = 0;
  for (; r + 6 <= rows; r += 6) {
    const int64_t rr[6] = {r, r + 1, r + 2, r + 3, r + 4, r + 5};
    body(std::integral_constant<int, 6>(), rr);
  }
  for (; r < rows; r += 4) {
    int64_t rr[4];
    for (int64_t u = 0; u < 4; ++u)
      rr[u] = std::min(r + u, rows - 1);
    body(std::integral_constant<int, 4>(), rr);
  }
}

/// Transposes 16 rows of 16 floats in registers: afterwards r[i] holds
/// what was column i. Three rounds of shuffles (within 128-bit lanes, then
/// across them): 64 shuffles for 256 floats, where storing each float to
/// its transposed place took one store (or a scatter lane) apiece.
__attribute__((target("avx512f"), always_inline)) inline void transpose16x16(__m512 (&r)[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);     // per lane: a0 b0 a1 b1
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]); // per lane: a2 b2 a3 b3
  }
  // u[4 g + m]: lane L holds column 4 L + m of rows 4 g .. 4 g + 3.
  __m512 u[16];
  for (int g = 0; g < 4; ++g) {
    const __m512 *tg = t + 4 * g;
    u[4 * g + 0] = _mm512_shuffle_ps(tg[0], tg[2], 0x44);
    u[4 * g + 1] = _mm512_shuffle_ps(tg[0], tg[2], 0xEE);
    u[4 * g + 2] = _mm512_shuffle_ps(tg[1], tg[3], 0x44);
    u[4 * g + 3] = _mm512_shuffle_ps(tg[1], tg[3], 0xEE);
  }
  for (int m = 0; m < 4; ++m) {
    // Lanes 0 and 2, and 1 and 3, of rows 0-3 with rows 4-7, and of rows
    // 8-11 with rows 12-15; then those pairs into whole columns.
    __m512 even01 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x88);
    __m512 odd01 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xDD);
    __m512 even23 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x88);
    __m512 odd23 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xDD);
    r[m] = _mm512_shuffle_f32x4(even01, even23, 0x88);
    r[8 + m] = _mm512_shuffle_f32x4(even01, even23, 0xDD);
    r[4 + m] = _mm512_shuffle_f32x4(odd01, odd23, 0x88);
    r[12 + m] = _mm512_shuffle_f32x4(odd01, odd23, 0xDD);
  }
}

/// Packs the keys of (b, kvh) a part at a time, kt[part][d][c] = K[64 part
/// + c][d], zero past kv_len, 16 keys by 16 dimensions at a time through
/// registers (keys with contiguous head_dim; others element by element).
__attribute__((target("avx512f"))) void packKeysTransposed(const AttentionJob &job, int64_t b,
                                                           int64_t kvh, float *kt) {
  int64_t D = job.dim, parts = (job.kvLen + kPart - 1) / kPart;
  // The last part's columns past kv_len (rows of zeros past the end).
  int64_t lastPart = parts - 1, tailFrom = job.kvLen - lastPart * kPart;
  if (tailFrom < kPart)
    for (int64_t d = 0; d < D; ++d)
      std::memset(kt + (lastPart * D + d) * kPart + tailFrom, 0,
                  sizeof(float) * (kPart - tailFrom));
  if (job.k.elemStride != 1) {
    for (int64_t j = 0; j < job.kvLen; ++j) {
      const float *k = job.k.row(b, kvh, j);
      for (int64_t d = 0; d < D; ++d)
        kt[(j / kPart * D + d) * kPart + j % kPart] = k[d * job.k.elemStride];
    }
    return;
  }
  int64_t dVecs = (D + 15) / 16;
  for (int64_t j0 = 0; j0 < job.kvLen; j0 += 16) {
    int64_t rows = std::min<int64_t>(16, job.kvLen - j0);
    const float *src[16];
    for (int64_t r = 0; r < rows; ++r)
      src[r] = job.k.row(b, kvh, j0 + r);
    float *dst = kt + (j0 / kPart) * D * kPart + j0 % kPart;
    for (int64_t u = 0; u < dVecs; ++u) {
      int64_t width = std::min<int64_t>(16, D - 16 * u);
      __mmask16 lanes = (__mmask16)((1u << width) - 1);
      __m512 r[16];
      for (int64_t i = 0; i < 16; ++i)
        r[i] = i < rows ? _mm512_maskz_loadu_ps(lanes, src[i] + 16 * u) : _mm512_setzero_ps();
      transpose16x16(r);
      __mmask16 keys = (__mmask16)((1u << rows) - 1);
      for (int64_t d = 0; d < width; ++d)
        _mm512_mask_storeu_ps(dst + (16 * u + d) * kPart, keys, r[d]);
    }
  }
}

/// s[u][0..W) = q[u] . K for the R rows q against the first 16 W keys of a
/// part of 64 stored d-major (kPart[d * 64 + c]), in registers: 24 of the
/// 32 vector registers at six rows and four vectors. s[u][W..4) are the
/// hidden score: a part of at most 48 keys (the end of the keys, a
/// cross-attention over a short context) computes only what exists.
template <int R, int W>
__attribute__((target("avx512f"), always_inline)) inline void
scoreGroup(const float *kPart, int64_t D, const float *const *q, __m512 (&s)[R][4]) {
  // Accumulated in a local array and copied out once: accumulating in
  // `s` itself, clang stored all 24 vectors to the stack every iteration.
  __m512 a[R][W];
  for (int u = 0; u < R; ++u)
    for (int w = 0; w < W; ++w)
      a[u][w] = _mm512_setzero_ps();
  for (int64_t d = 0; d < D; ++d) {
    const float *row = kPart + d * 64;
    __m512 k[W];
    for (int w = 0; w < W; ++w)
      k[w] = _mm512_load_ps(row + 16 * w);
    for (int u = 0; u < R; ++u) {
      __m512 qd = _mm512_set1_ps(q[u][d]);
      for (int w = 0; w < W; ++w)
        a[u][w] = _mm512_fmadd_ps(qd, k[w], a[u][w]);
    }
  }
  for (int u = 0; u < R; ++u)
    for (int w = 0; w < 4; ++w)
      s[u][w] = w < W ? a[u][w] : _mm512_set1_ps(kHidden);
}

/// Applies causality, the end of the keys and the additive mask to the
/// scores s of a group's rows (query i0 + rr[u]) against the part of keys
/// from j0, of which the first `cols` exist: keys a row does not see become
/// kHidden, and so do keys whose mask is at or below kMaskedOut (they add
/// exp(< -1e8) = 0 beside any visible key; a row that sees no other key
/// takes the exact path at the end). Returns how many of the part's keys
/// some row still sees (what P V must read).
template <int R>
__attribute__((target("avx512f"), always_inline)) inline int64_t
maskGroup(const AttentionJob &job, int64_t b, int64_t h, int64_t i0, const int64_t *rr,
          int64_t j0, int64_t cols, __m512 (&s)[R][4]) {
  const __m512 hidden = _mm512_set1_ps(kHidden);
  const __m512 maskedOut = _mm512_set1_ps(kMaskedOut), log2e = _mm512_set1_ps(kLog2E);
  int64_t offset = job.kvLen - job.qLen, keys = 0;
  for (int u = 0; u < R; ++u) {
    int64_t i = i0 + rr[u];
    int64_t visible = job.causal ? std::min(cols, i + offset - j0 + 1) : cols;
    uint64_t live = visible <= 0 ? 0 : visible >= 64 ? ~uint64_t(0) : (uint64_t(1) << visible) - 1;
    if (job.mask && live) {
      int64_t step = maskKeyStride(*job.mask);
      const float *m = maskRow(*job.mask, b, h, i) + j0 * step;
      alignas(64) float gathered[64];
      if (step != 1)
        for (int64_t c = 0; c < visible; ++c) // visible > 0: live has a lane
          gathered[c] = m[c * step];
      uint64_t kept = 0;
      for (int w = 0; w < 4; ++w) {
        __mmask16 lanes = __mmask16(live >> (16 * w));
        __m512 add = step == 1 ? _mm512_maskz_loadu_ps(lanes, m + 16 * w)
                               : _mm512_maskz_load_ps(lanes, gathered + 16 * w);
        lanes &= _mm512_cmp_ps_mask(add, maskedOut, _CMP_GT_OQ);
        s[u][w] = _mm512_mask_blend_ps(lanes, hidden, _mm512_fmadd_ps(add, log2e, s[u][w]));
        kept |= uint64_t(lanes) << (16 * w);
      }
      live = kept;
    } else {
      for (int w = 0; w < 4; ++w)
        s[u][w] = _mm512_mask_blend_ps(__mmask16(live >> (16 * w)), hidden, s[u][w]);
    }
    if (live)
      keys = std::max<int64_t>(keys, 64 - __builtin_clzll(live));
  }
  return keys;
}

/// out[u][0..16 W) = out[u][..] * corr[u] (without corr: 1) + sum over
/// c < keys of prob[u][c] * V[c][0..16 W) for the R rows, V rows `pitch`
/// floats apart.
/// Rows listed twice must have the same out (the last write wins, with the
/// same value).
template <int R, int W>
__attribute__((target("avx512f"), always_inline)) inline void
accumulateGroup(const float *v, int64_t pitch, int64_t keys, const float *const *prob,
                float *const *out, const float *corr) {
  __m512 a[R][W];
  for (int u = 0; u < R; ++u)
    for (int w = 0; w < W; ++w)
      a[u][w] = corr ? _mm512_mul_ps(_mm512_load_ps(out[u] + 16 * w), _mm512_set1_ps(corr[u]))
                     : _mm512_load_ps(out[u] + 16 * w);
  for (int64_t c = 0; c < keys; ++c) {
    __m512 vv[W];
    for (int w = 0; w < W; ++w)
      vv[w] = _mm512_load_ps(v + c * pitch + 16 * w);
    for (int u = 0; u < R; ++u) {
      __m512 p = _mm512_set1_ps(prob[u][c]);
      for (int w = 0; w < W; ++w)
        a[u][w] = _mm512_fmadd_ps(p, vv[w], a[u][w]);
    }
  }
  for (int u = 0; u < R; ++u)
    for (int w = 0; w < W; ++w)
      _mm512_store_ps(out[u] + 16 * w, a[u][w]);
}

/// Whether some row of the block sees a key of [j0, j0 + cols) through the
/// additive mask (a part that none sees is skipped).
bool blockSeesPart(const AttentionJob &job, int64_t b, int64_t h, int64_t i0, int64_t rows,
                   int64_t j0, int64_t cols) {
  int64_t step = maskKeyStride(*job.mask);
  for (int64_t r = 0; r < rows; ++r) {
    const float *m = maskRow(*job.mask, b, h, i0 + r) + j0 * step;
    int visible = 0;
    if (step == 1)
      for (int64_t c = 0; c < cols; ++c)
        visible |= m[c] > kMaskedOut;
    else
      for (int64_t c = 0; c < cols; ++c)
        visible |= m[c * step] > kMaskedOut;
    if (visible)
      return true;
  }
  return false;
}

/// One block of up to 64 queries of one (batch, head), FlashAttention-2
/// style with the softmax in registers: for each part of 64 keys, each
/// group of six rows computes its scores into registers, masks them (only
/// where causality, the end of the keys or a mask reach into the part),
/// exponentiates them against its rows' running maxima and adds P V to its
/// accumulators. The part's keys and values (16 KB each at head_dim 64)
/// stay in L1 for all the block's groups, and no score leaves L1.
__attribute__((target("avx512f"))) void attentionBlockAvx512(const AttentionJob &job,
                                                             int64_t b, int64_t h,
                                                             int64_t i0) {
  int64_t rows = std::min(kBlock, job.qLen - i0), kvh = h / (job.heads / job.kvHeads);
  int64_t offset = job.kvLen - job.qLen, D = job.dim, Dv = job.vDim;
  int64_t dvVecs = (Dv + 15) / 16;
  // Per-thread scratch, too big for a pool thread's stack: the query block
  // and its accumulators, and the keys (transposed) and values of the whole
  // (batch, kv head), packed once and reused by every query block of the
  // heads that read them.
  struct Scratch {
    float *block = nullptr;
    std::vector<float> keys, values;
    uint64_t call = 0;
    int64_t b = -1, kvh = -1;
    ~Scratch() { std::free(block); }
  };
  thread_local Scratch scratch;
  if (!scratch.block)
    scratch.block =
        static_cast<float *>(std::aligned_alloc(64, sizeof(float) * kBlock * 2 * kRowPitch));
  auto qs = reinterpret_cast<float(*)[kRowPitch]>(scratch.block);
  auto acc = reinterpret_cast<float(*)[kRowPitch]>(scratch.block + kBlock * kRowPitch);
  int64_t parts = (job.kvLen + kPart - 1) / kPart, valuePitch = dvVecs * 16;
  if (scratch.call != job.call || scratch.b != b || scratch.kvh != kvh) {
    // Keys transposed a part at a time, kt[part][d][c] = K[64 part + c][d],
    // so that each part is one contiguous 16 KB run (at head_dim 64) that
    // stays in L1 while every row of the block reads it: rows of the whole
    // transposed K were kv_len apart (64 streams at a 64 KB stride at 16K
    // keys). Zero past kv_len. vt[j][d] = V[j][d], zero-padded. The
    // buffers only grow, and only what the packing does not write is
    // zeroed: a short sequence (a DiT's 64 tokens) packs once per block,
    // where zeroing whole buffers had cost as much as the packing.
    size_t keyFloats = parts * D * kPart + 16;
    size_t valueFloats = (parts * kPart + 1) * valuePitch + 16;
    if (scratch.keys.size() < keyFloats)
      scratch.keys.resize(keyFloats);
    if (scratch.values.size() < valueFloats)
      scratch.values.resize(valueFloats);
    float *kt = alignedIn(scratch.keys), *vt = alignedIn(scratch.values);
    packKeysTransposed(job, b, kvh, kt);
    for (int64_t j = 0; j < job.kvLen; ++j) {
      const float *v = job.v.row(b, kvh, j);
      float *row = vt + j * valuePitch;
      if (job.v.elemStride == 1)
        std::memcpy(row, v, Dv * sizeof(float));
      else
        for (int64_t d = 0; d < Dv; ++d)
          row[d] = v[d * job.v.elemStride];
      std::fill(row + Dv, row + valuePitch, 0.0f);
    }
    std::fill(vt + job.kvLen * valuePitch, vt + (parts * kPart + 1) * valuePitch, 0.0f);
    scratch.call = job.call;
    scratch.b = b;
    scratch.kvh = kvh;
  }
  const float *ktAll = alignedIn(scratch.keys), *vtAll = alignedIn(scratch.values);
  // Per row: the running maximum (kNoMaximum before any key), and the
  // running sum as a vector of partial sums (reduced once, at the end).
  float rowMax[kBlock];
  __m512 rowSums[kBlock];
  // Scores in base-2 units: exp(s) = 2^(s log2(e)).
  const float scale2 = job.scale * kLog2E;
  for (int64_t r = 0; r < rows; ++r) {
    const float *q = job.q.data() + b * job.q.strides[0] + h * job.q.strides[1] +
                     (i0 + r) * job.q.strides[2];
    for (int64_t d = 0; d < D; ++d)
      qs[r][d] = q[d * job.q.strides[3]] * scale2;
    std::fill(acc[r], acc[r] + dvVecs * 16, 0.0f);
    rowMax[r] = kNoMaximum;
    rowSums[r] = _mm512_setzero_ps();
  }
  // With causal masking, queries i0 .. i0+rows-1 see keys up to
  // i0 + rows - 1 + offset.
  int64_t lastKey = job.causal ? std::min(job.kvLen, i0 + rows + offset) : job.kvLen;
  for (int64_t j0 = 0; j0 < lastKey; j0 += kPart) {
    int64_t cols = std::min(kPart, lastKey - j0);
    // Vectors of 16 keys the part has (the rest of its 64 are not computed).
    int64_t vecs = (cols + 15) / 16;
    if (job.mask && !blockSeesPart(job, b, h, i0, rows, j0, cols))
      continue;
    const float *kPartKeys = ktAll + j0 * D, *vPart = vtAll + j0 * valuePitch;
    // The next part's keys and values (this block's, or the first of the
    // block after it) come into L2 while this part runs, a slice per group:
    // from 4096 keys on, a head's keys and values (2 MB at head_dim 64)
    // outgrow L2, and the hardware prefetcher stops at page ends. The
    // prefetches take load slots only, which the products leave free.
    // Only on Intel (CpuCapabilities::prefetchToL2): on Zen 4 it cost 1.5-2%.
    int64_t next = j0 + kPart < lastKey ? j0 + kPart : 0;
    const char *prefetchK = reinterpret_cast<const char *>(ktAll + next * D);
    const char *prefetchV = reinterpret_cast<const char *>(vtAll + next * valuePitch);
    int64_t kLines = D * kPart * 4 / 64, vLines = kPart * valuePitch * 4 / 64;
    int64_t groups = (rows + 5) / 6, line = 0;
    int64_t perGroup = job.prefetch ? (kLines + vLines + groups - 1) / groups : 0;
    forRowGroups(rows, [&](auto groupRows, const int64_t *rr)
                     __attribute__((target("avx512f"), always_inline)) {
      constexpr int R = decltype(groupRows)::value;
      for (int64_t end = std::min(line + perGroup, kLines + vLines); line < end; ++line)
        _mm_prefetch(line < kLines ? prefetchK + 64 * line : prefetchV + 64 * (line - kLines),
                     _MM_HINT_T1);
      // On the causal diagonal, the group's last row sees keys up to
      // i0 + rr[R - 1] + offset: the vectors past that hold no score any
      // row of the group sees (a third of the diagonal part's products).
      int64_t groupVecs = vecs;
      if (job.causal) {
        groupVecs = std::min(vecs, (i0 + rr[R - 1] + offset - j0 + 16) / 16);
        if (groupVecs <= 0)
          return;
      }
      const float *q[R];
      for (int u = 0; u < R; ++u)
        q[u] = qs[rr[u]];
      __m512 s[R][4];
      switch (groupVecs) {
      case 1: scoreGroup<R, 1>(kPartKeys, D, q, s); break;
      case 2: scoreGroup<R, 2>(kPartKeys, D, q, s); break;
      case 3: scoreGroup<R, 3>(kPartKeys, D, q, s); break;
      default: scoreGroup<R, 4>(kPartKeys, D, q, s); break;
      }
      // Only parts that causality, the end of the keys or a mask reach
      // into are masked; every row of the group sees all of the others.
      int64_t keys = kPart;
      if (job.mask || cols < kPart || (job.causal && j0 + kPart - 1 > i0 + rr[0] + offset))
        keys = maskGroup<R>(job, b, h, i0, rr, j0, cols, s);
      if (keys == 0)
        return;
      // Lazy rescaling (as FlashAttention-4 does): a row's maximum moves
      // only when the part's scores pass it by more than kRescaleSlack, so
      // after the first parts the rows rarely reduce their maxima across
      // lanes or rescale. Probabilities stay below 2^kRescaleSlack, far
      // from overflow. Each row goes from its maximum to its probabilities
      // before the next row starts, so that its scores' registers free up
      // (three passes over the six rows kept all 24 live and spilled more
      // of them; about 1% slower on Zen 4). All state is read before any
      // is written: a row listed twice computes the same values twice.
      float newMax[R], corr[R];
      bool passed = false;
      alignas(64) float probs[R][kPart];
      __m512 sums[R];
      for (int u = 0; u < R; ++u) {
        __m512 tileMax = _mm512_max_ps(_mm512_max_ps(s[u][0], s[u][1]),
                                       _mm512_max_ps(s[u][2], s[u][3]));
        float oldMax = rowMax[rr[u]];
        newMax[u] = oldMax;
        corr[u] = 1.0f;
        if (_mm512_cmp_ps_mask(tileMax, _mm512_set1_ps(oldMax + kRescaleSlack), _CMP_GT_OQ)) {
          float t = _mm512_reduce_max_ps(tileMax);
          newMax[u] = t;
          corr[u] = std::exp2(oldMax - t); // 0 from kNoMaximum
          passed = true;
        }
        __m512 m = _mm512_set1_ps(newMax[u]);
        __m512 p0, p1, p2, p3;
        if (groupVecs == 4) {
          p0 = exp2Finite(_mm512_sub_ps(s[u][0], m));
          p1 = exp2Finite(_mm512_sub_ps(s[u][1], m));
          p2 = exp2Finite(_mm512_sub_ps(s[u][2], m));
          p3 = exp2Finite(_mm512_sub_ps(s[u][3], m));
        } else {
          // Keys past the group's vectors have no probability to compute.
          const __m512 zero = _mm512_setzero_ps();
          p0 = exp2Finite(_mm512_sub_ps(s[u][0], m));
          p1 = groupVecs > 1 ? exp2Finite(_mm512_sub_ps(s[u][1], m)) : zero;
          p2 = groupVecs > 2 ? exp2Finite(_mm512_sub_ps(s[u][2], m)) : zero;
          p3 = zero;
        }
        _mm512_store_ps(probs[u], p0);
        _mm512_store_ps(probs[u] + 16, p1);
        _mm512_store_ps(probs[u] + 32, p2);
        _mm512_store_ps(probs[u] + 48, p3);
        sums[u] = _mm512_fmadd_ps(rowSums[rr[u]], _mm512_set1_ps(corr[u]),
                                  _mm512_add_ps(_mm512_add_ps(p0, p1), _mm512_add_ps(p2, p3)));
      }
      for (int u = 0; u < R; ++u) {
        rowMax[rr[u]] = newMax[u];
        rowSums[rr[u]] = sums[u];
      }
      // acc = acc * corr + P V, 64 columns of values at a time.
      const float *prob[R], *rescale = passed ? corr : nullptr;
      for (int u = 0; u < R; ++u)
        prob[u] = probs[u];
      for (int64_t dv = 0; dv < dvVecs; dv += 4) {
        float *out[R];
        for (int u = 0; u < R; ++u)
          out[u] = acc[rr[u]] + 16 * dv;
        switch (std::min<int64_t>(4, dvVecs - dv)) {
        case 4: accumulateGroup<R, 4>(vPart + 16 * dv, valuePitch, keys, prob, out, rescale); break;
        case 3: accumulateGroup<R, 3>(vPart + 16 * dv, valuePitch, keys, prob, out, rescale); break;
        case 2: accumulateGroup<R, 2>(vPart + 16 * dv, valuePitch, keys, prob, out, rescale); break;
        default: accumulateGroup<R, 1>(vPart + 16 * dv, valuePitch, keys, prob, out, rescale); break;
        }
      }
    });
  }
  for (int64_t r = 0; r < rows; ++r) {
    float rowSum = _mm512_reduce_add_ps(rowSums[r]);
    if (rowSum == 0.0f) {
      // Every part was skipped or masked: the exact (uniform) answer.
      attentionRowGeneric(job, b, h, i0 + r);
      continue;
    }
    float *o = job.out.data() + b * job.out.strides[0] + h * job.out.strides[1] +
               (i0 + r) * job.out.strides[2];
    float inv = 1.0f / rowSum;
    for (int64_t d = 0; d < Dv; ++d)
      o[d * job.out.strides[3]] = acc[r][d] * inv;
  }
}

__attribute__((target("avx512f"))) void attentionBlocksAvx512(int64_t begin, int64_t end,
                                                              void *data) {
  auto *job = static_cast<AttentionJob *>(data);
  for (int64_t block = begin; block < end; ++block) {
    int64_t bh = block / job->blocksPerHead, i0 = (block % job->blocksPerHead) * kBlock;
    int64_t rows = std::min(kBlock, job->qLen - i0);
    if (rows < 4 && job->k.elemStride == 1 && job->v.elemStride == 1) {
      for (int64_t i = i0; i < i0 + rows; ++i)
        attentionRowDirect(*job, bh / job->heads, bh % job->heads, i);
      continue;
    }
    attentionBlockAvx512(*job, bh / job->heads, bh % job->heads, i0);
  }
}

/// Whether an additive mask is exactly the causal one (0 up to key
/// i + kv_len - q_len for query i, masked out after), as exporters build it
/// for decoders. The kernel then skips what causality rules out instead of
/// reading and adding the mask; the result is the same, since the masked
/// keys contribute exp(-1e9 - max) = 0 either way.
bool isCausalMask(const AttentionJob &job) {
  const MemRef<4> &m = *job.mask;
  int64_t offset = job.kvLen - job.qLen;
  if (offset < 0 || m.sizes[3] != job.kvLen || m.sizes[2] != job.qLen)
    return false;
  for (int64_t b = 0; b < m.sizes[0]; ++b)
    for (int64_t h = 0; h < m.sizes[1]; ++h)
      for (int64_t i = 0; i < job.qLen; ++i) {
        const float *row = maskRow(m, b, h, i);
        int64_t step = maskKeyStride(m), visible = i + offset + 1;
        int bad = 0;
        for (int64_t j = 0; j < visible; ++j)
          bad |= row[j * step] != 0.0f;
        for (int64_t j = visible; j < job.kvLen; ++j)
          bad |= !(row[j * step] <= kMaskedOut);
        if (bad)
          return false;
      }
  return true;
}

void runAttention(AttentionJob &job) {
  if (job.batch == 0 || job.heads == 0 || job.qLen == 0)
    return;
  if (job.mask && !job.causal && job.qLen > 1 && isCausalMask(job)) {
    job.mask = nullptr;
    job.causal = true;
  }
  if (job.kvHeads <= 0 || job.heads % job.kvHeads != 0) {
    hasten::runtime::setKernelError("attention: " + std::to_string(job.heads) +
                                    " query heads are not a multiple of " +
                                    std::to_string(job.kvHeads) + " key/value heads");
    return;
  }
  static std::atomic<uint64_t> calls{0};
  job.call = ++calls;
  job.blocksPerHead = (job.qLen + kBlock - 1) / kBlock;
  int64_t blocks = job.batch * job.heads * job.blocksPerHead;
  int64_t work = job.batch * job.heads * job.qLen * job.kvLen * (job.dim + job.vDim);
  const hasten::runtime::CpuCapabilities &cpu = hasten::runtime::cpuCapabilities();
  bool fast = cpu.avx512 && job.dim <= kMaxDim && job.vDim <= kMaxDim;
  // Balanced: on a machine whose cores run at different speeds from minute
  // to minute (neighbours), equal shares left the faster core idle.
  hasten::runtime::parallelForBalanced(blocks, work >= (1 << 16) ? work : 0,
                                       fast       ? attentionBlocksAvx512
                                       : cpu.avx2 ? attentionBlocksAvx2
                                                  : attentionBlocksGeneric,
                                       &job);
}

AttentionJob makeJob(const MemRef<4> &q, const MemRef<4> &out, const MemRef<4> *mask,
                     float scale, int32_t flags) {
  AttentionJob job{};
  job.q = q;
  job.out = out;
  job.mask = (flags & kHasMask) ? mask : nullptr;
  job.batch = q.sizes[0];
  job.heads = q.sizes[1];
  job.qLen = q.sizes[2];
  job.dim = q.sizes[3];
  job.vDim = out.sizes[3];
  job.scale = scale;
  job.causal = flags & kCausal;
  job.prefetch = hasten::runtime::cpuCapabilities().prefetchToL2;
  return job;
}

} // namespace

extern "C" {

/// out = attention(q, k, v[, mask]) on strided [batch, heads, len, dim]
/// tensors; `mask` broadcasts to [batch, heads, q_len, kv_len] (it is
/// ignored without kHasMask).
__attribute__((visibility("default"))) void
_mlir_ciface_hasten_rt_attention_f32(MemRef<4> *q, MemRef<4> *k, MemRef<4> *v,
                                     MemRef<4> *mask, MemRef<4> *out, float scale,
                                     int32_t flags) {
  AttentionJob job = makeJob(*q, *out, mask, scale, flags);
  job.kvHeads = k->sizes[1];
  job.kvLen = k->sizes[2];
  job.k = {k->data(), k->strides[0], k->strides[1], k->strides[2], k->strides[3]};
  job.v = {v->data(), v->strides[0], v->strides[1], v->strides[2], v->strides[3]};
  runAttention(job);
}

/// The same with keys and values in a paged KV cache: `pool` is
/// [blocks, layers, 2, kv_heads, block_size, head_dim], `table` maps the
/// sequence's blocks to pool blocks, and the first `kv_len` tokens of
/// layer `layer` are attended.
__attribute__((visibility("default"))) void
_mlir_ciface_hasten_rt_paged_attention_f32(MemRef<4> *q, MemRef<6> *pool, IntMemRef<1> *table,
                                           int64_t layer, int64_t kvLen, MemRef<4> *mask,
                                           MemRef<4> *out, float scale, int32_t flags) {
  AttentionJob job = makeJob(*q, *out, mask, scale, flags);
  job.kvHeads = pool->sizes[3];
  job.kvLen = kvLen;
  int64_t blockSize = pool->sizes[4];
  const float *layerBase = pool->data() + layer * pool->strides[1];
  job.k = {layerBase, 0, pool->strides[3], pool->strides[4], pool->strides[5],
           table->data(), blockSize, pool->strides[0]};
  job.v = {layerBase + pool->strides[2], 0, pool->strides[3], pool->strides[4],
           pool->strides[5], table->data(), blockSize, pool->strides[0]};
  if (q->sizes[0] != 1) {
    hasten::runtime::setKernelError("paged attention: batch must be 1");
    return;
  }
  runAttention(job);
}

} // extern "C"
