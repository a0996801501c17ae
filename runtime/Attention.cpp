//===- Attention.cpp - tiled attention with online softmax -----------------===//
//
// softmax(scale * Q K^T + mask) V, one block of 64 queries against tiles of
// 64 keys at a time, FlashAttention-2 style: each query row keeps a running
// maximum, sum and output accumulator, so the q_len x kv_len score matrix
// never exists. Keys and values are read in place: from strided tensors, or
// from a paged KV cache through its block table. Grouped-query attention
// reads key/value head h / (heads / kv_heads).
//
//===----------------------------------------------------------------------===//

#include "RuntimeInternal.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace {

template <int Rank>
struct MemRef {
  float *allocated;
  float *aligned;
  int64_t offset;
  int64_t sizes[Rank];
  int64_t strides[Rank];
  float *data() const { return aligned + offset; }
};

template <int Rank>
struct IntMemRef {
  int32_t *allocated;
  int32_t *aligned;
  int64_t offset;
  int64_t sizes[Rank];
  int64_t strides[Rank];
  const int32_t *data() const { return aligned + offset; }
};

/// Flags; keep in sync with passes/AttentionToRuntimeCalls.cpp.
constexpr int32_t kCausal = 1;
constexpr int32_t kHasMask = 2;

constexpr int64_t kBlock = 64;   // queries per block
constexpr int64_t kTile = 64;    // keys per tile
constexpr int64_t kMaxDim = 256; // head_dim limit of the fast path
/// A tile whose additive mask is below this everywhere contributes
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
  int64_t blocksPerHead;
};

float maskAt(const MemRef<4> &m, int64_t b, int64_t h, int64_t i, int64_t j) {
  auto idx = [&](int d, int64_t v) { return m.sizes[d] == 1 ? 0 : v * m.strides[d]; };
  return m.data()[idx(0, b) + idx(1, h) + idx(2, i) + idx(3, j)];
}

/// The generic path: plain loops, any head_dim, any CPU. Also the exact
/// fallback for a row whose every key is masked (the softmax of equal
/// scores is uniform, which skipping tiles would lose).
void attentionRowGeneric(const AttentionJob &job, int64_t b, int64_t h, int64_t i) {
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

void attentionBlocksGeneric(int64_t begin, int64_t end, void *data) {
  auto *job = static_cast<AttentionJob *>(data);
  for (int64_t block = begin; block < end; ++block) {
    int64_t bh = block / job->blocksPerHead, i0 = (block % job->blocksPerHead) * kBlock;
    int64_t b = bh / job->heads, h = bh % job->heads;
    for (int64_t i = i0; i < std::min(job->qLen, i0 + kBlock); ++i)
      attentionRowGeneric(*job, b, h, i);
  }
}

/// exp on 16 lanes: 2^n * p(r) with x = n ln2 + r, |r| <= ln2/2, degree-6
/// polynomial (relative error about 2e-7). -inf gives 0.
__attribute__((target("avx512f"))) inline __m512 exp512(__m512 x) {
  const __m512 log2e = _mm512_set1_ps(1.44269504f), ln2hi = _mm512_set1_ps(0.693359375f),
               ln2lo = _mm512_set1_ps(-2.12194440e-4f);
  __m512 clamped = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
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
  __m512 result = _mm512_scalef_ps(p, n);
  __mmask16 negInf = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-std::numeric_limits<float>::infinity()),
                                        _CMP_EQ_OQ);
  return _mm512_maskz_mov_ps(~negInf, result);
}

/// One block of up to 64 queries of one (batch, head), all key tiles.
__attribute__((target("avx512f"))) void attentionBlockAvx512(const AttentionJob &job,
                                                             int64_t b, int64_t h,
                                                             int64_t i0) {
  const float negInf = -std::numeric_limits<float>::infinity();
  int64_t rows = std::min(kBlock, job.qLen - i0), kvh = h / (job.heads / job.kvHeads);
  int64_t offset = job.kvLen - job.qLen, D = job.dim, Dv = job.vDim;
  int64_t dvVecs = (Dv + 15) / 16;
  // Per-thread scratch (256 KiB, too much for a pool thread's stack).
  struct Scratch {
    float *memory = nullptr;
    ~Scratch() { std::free(memory); }
  };
  thread_local Scratch scratch;
  if (!scratch.memory)
    scratch.memory = static_cast<float *>(
        std::aligned_alloc(64, sizeof(float) * (3 * kBlock * kMaxDim + kMaxDim * kTile)));
  auto qs = reinterpret_cast<float(*)[kMaxDim]>(scratch.memory);
  auto acc = reinterpret_cast<float(*)[kMaxDim]>(scratch.memory + kBlock * kMaxDim);
  auto vt = reinterpret_cast<float(*)[kMaxDim]>(scratch.memory + 2 * kBlock * kMaxDim);
  auto kt = reinterpret_cast<float(*)[kTile]>(scratch.memory + 3 * kBlock * kMaxDim);
  alignas(64) float s[kTile];
  float rowMax[kBlock], rowSum[kBlock];
  for (int64_t r = 0; r < rows; ++r) {
    const float *q = job.q.data() + b * job.q.strides[0] + h * job.q.strides[1] +
                     (i0 + r) * job.q.strides[2];
    for (int64_t d = 0; d < D; ++d)
      qs[r][d] = q[d * job.q.strides[3]] * job.scale;
    std::fill(acc[r], acc[r] + dvVecs * 16, 0.0f);
    rowMax[r] = negInf;
    rowSum[r] = 0.0f;
  }
  // With causal masking, queries i0 .. i0+rows-1 see keys up to
  // i0 + rows - 1 + offset.
  int64_t lastKey = job.causal ? std::min(job.kvLen, i0 + rows + offset) : job.kvLen;
  for (int64_t j0 = 0; j0 < lastKey; j0 += kTile) {
    int64_t cols = std::min(kTile, lastKey - j0);
    if (job.mask) {
      bool allMasked = true;
      for (int64_t r = 0; r < rows && allMasked; ++r)
        for (int64_t c = 0; c < cols && allMasked; ++c)
          allMasked = maskAt(*job.mask, b, h, i0 + r, j0 + c) <= kMaskedOut;
      if (allMasked)
        continue;
    }
    for (int64_t c = 0; c < kTile; ++c) {
      if (c < cols) {
        const float *k = job.k.row(b, kvh, j0 + c);
        const float *v = job.v.row(b, kvh, j0 + c);
        for (int64_t d = 0; d < D; ++d)
          kt[d][c] = k[d * job.k.elemStride];
        for (int64_t d = 0; d < Dv; ++d)
          vt[c][d] = v[d * job.v.elemStride];
        for (int64_t d = Dv; d < dvVecs * 16; ++d)
          vt[c][d] = 0.0f;
      } else {
        for (int64_t d = 0; d < D; ++d)
          kt[d][c] = 0.0f;
        for (int64_t d = 0; d < dvVecs * 16; ++d)
          vt[c][d] = 0.0f;
      }
    }
    for (int64_t r = 0; r < rows; ++r) {
      int64_t i = i0 + r;
      // Scores of this row against the tile, 64 keys in 4 vectors.
      __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
      for (int64_t d = 0; d < D; ++d) {
        __m512 qd = _mm512_set1_ps(qs[r][d]);
        s0 = _mm512_fmadd_ps(qd, _mm512_load_ps(&kt[d][0]), s0);
        s1 = _mm512_fmadd_ps(qd, _mm512_load_ps(&kt[d][16]), s1);
        s2 = _mm512_fmadd_ps(qd, _mm512_load_ps(&kt[d][32]), s2);
        s3 = _mm512_fmadd_ps(qd, _mm512_load_ps(&kt[d][48]), s3);
      }
      _mm512_store_ps(s, s0);
      _mm512_store_ps(s + 16, s1);
      _mm512_store_ps(s + 32, s2);
      _mm512_store_ps(s + 48, s3);
      int64_t visible = job.causal ? std::min(cols, i + offset - j0 + 1) : cols;
      for (int64_t c = 0; c < kTile; ++c) {
        if (c >= visible)
          s[c] = negInf;
        else if (job.mask)
          s[c] += maskAt(*job.mask, b, h, i, j0 + c);
      }
      float tileMax = negInf;
      for (int64_t c = 0; c < visible; ++c)
        tileMax = std::max(tileMax, s[c]);
      float newMax = std::max(rowMax[r], tileMax);
      if (newMax == negInf)
        continue;
      float correction = rowMax[r] == negInf ? 0.0f : std::exp(rowMax[r] - newMax);
      __m512 m = _mm512_set1_ps(newMax);
      __m512 p0 = exp512(_mm512_sub_ps(_mm512_load_ps(s), m));
      __m512 p1 = exp512(_mm512_sub_ps(_mm512_load_ps(s + 16), m));
      __m512 p2 = exp512(_mm512_sub_ps(_mm512_load_ps(s + 32), m));
      __m512 p3 = exp512(_mm512_sub_ps(_mm512_load_ps(s + 48), m));
      _mm512_store_ps(s, p0);
      _mm512_store_ps(s + 16, p1);
      _mm512_store_ps(s + 32, p2);
      _mm512_store_ps(s + 48, p3);
      float tileSum = _mm512_reduce_add_ps(
          _mm512_add_ps(_mm512_add_ps(p0, p1), _mm512_add_ps(p2, p3)));
      rowSum[r] = rowSum[r] * correction + tileSum;
      rowMax[r] = newMax;
      __m512 corr = _mm512_set1_ps(correction);
      for (int64_t dv = 0; dv < dvVecs; ++dv) {
        __m512 a = _mm512_mul_ps(_mm512_load_ps(&acc[r][16 * dv]), corr);
        for (int64_t c = 0; c < visible; ++c)
          a = _mm512_fmadd_ps(_mm512_set1_ps(s[c]), _mm512_load_ps(&vt[c][16 * dv]), a);
        _mm512_store_ps(&acc[r][16 * dv], a);
      }
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    if (rowSum[r] == 0.0f) {
      // Every tile was skipped or masked: the exact (uniform) answer.
      attentionRowGeneric(job, b, h, i0 + r);
      continue;
    }
    float *o = job.out.data() + b * job.out.strides[0] + h * job.out.strides[1] +
               (i0 + r) * job.out.strides[2];
    float inv = 1.0f / rowSum[r];
    for (int64_t d = 0; d < Dv; ++d)
      o[d * job.out.strides[3]] = acc[r][d] * inv;
  }
}

__attribute__((target("avx512f"))) void attentionBlocksAvx512(int64_t begin, int64_t end,
                                                              void *data) {
  auto *job = static_cast<AttentionJob *>(data);
  for (int64_t block = begin; block < end; ++block) {
    int64_t bh = block / job->blocksPerHead, i0 = (block % job->blocksPerHead) * kBlock;
    attentionBlockAvx512(*job, bh / job->heads, bh % job->heads, i0);
  }
}

void runAttention(AttentionJob &job) {
  if (job.batch == 0 || job.heads == 0 || job.qLen == 0)
    return;
  if (job.kvHeads <= 0 || job.heads % job.kvHeads != 0) {
    hasten::runtime::setKernelError("attention: " + std::to_string(job.heads) +
                                    " query heads are not a multiple of " +
                                    std::to_string(job.kvHeads) + " key/value heads");
    return;
  }
  job.blocksPerHead = (job.qLen + kBlock - 1) / kBlock;
  int64_t blocks = job.batch * job.heads * job.blocksPerHead;
  int64_t work = job.batch * job.heads * job.qLen * job.kvLen * (job.dim + job.vDim);
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  bool fast = avx512 && job.dim <= kMaxDim && job.vDim <= kMaxDim;
  hasten::runtime::parallelFor(blocks, work >= (1 << 16) ? work : 0,
                               fast ? attentionBlocksAvx512 : attentionBlocksGeneric, &job);
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
