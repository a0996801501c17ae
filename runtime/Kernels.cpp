//===- Kernels.cpp - runtime kernels called by generated code --------------===//
//
// Matmul-class kernels on oneDNN. Generated code passes MLIR memref
// descriptors (C interface). Constant weights are reordered once into the
// layout oneDNN prefers for the problem (and to bf16 on request), and reused
// from then on; other operands go through oneDNN's primitive cache.
//
//===----------------------------------------------------------------------===//

#include "CpuFeatures.h"
#include "RuntimeInternal.h"
#include "hasten/KernelAbi.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <string>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <tuple>

// libgomp, the pool oneDNN runs on (declared here: clang's omp.h is libomp's).
extern "C" void GOMP_parallel(void (*fn)(void *), void *data, unsigned numThreads,
                              unsigned flags);
extern "C" int omp_get_thread_num(void);
extern "C" int omp_get_num_threads(void);
extern "C" int omp_get_max_threads(void);
extern "C" int omp_in_parallel(void);

namespace {

using namespace hasten::abi;

template <int Rank>
using MemRef = hasten::runtime::MemRefDescriptor<float, Rank>;

/// The elements of a descriptor whose memory holds bf16 (kBf16Storage).
template <int Rank>
const uint16_t *bf16Data(const MemRef<Rank> &m) {
  return reinterpret_cast<const uint16_t *>(m.aligned) + m.offset;
}

/// The first element, whatever its type: the identity of a weight.
template <int Rank>
const void *startOf(const MemRef<Rank> &m, int32_t flags) {
  return (flags & kBf16Storage) ? static_cast<const void *>(bf16Data(m)) : m.data();
}

dnnl::engine &engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

dnnl::stream &stream() {
  thread_local dnnl::stream s(engine());
  return s;
}

using dnnl::memory;

memory::desc describe(const int64_t *sizes, const int64_t *strides, int rank,
                      memory::data_type type) {
  memory::dims dims(sizes, sizes + rank), steps(strides, strides + rank);
  return memory::desc(dims, type, steps);
}

/// Constant weights reordered once into the layout (and type) oneDNN chose
/// for them; shared by the primitives of every row count.
struct PackedWeights {
  memory weights;
};

/// A matmul primitive for one problem shape over packed weights.
struct PackedMatmul {
  dnnl::matmul primitive;
  memory::desc scratchpadDesc;
  memory::desc srcDesc;
  std::shared_ptr<PackedWeights> packed;
};

/// Weights by (data, batch, K, N, strides, precision).
using WeightKey = std::tuple<const void *, int64_t, int64_t, int64_t, int64_t, int64_t,
                             int64_t, int32_t>;
/// Primitives by weights and (M, C's row stride, flags).
using PackKey = std::tuple<WeightKey, int64_t, int64_t, int32_t>;

std::mutex packMutex;
std::map<WeightKey, std::shared_ptr<PackedWeights>> packedWeights;
std::map<PackKey, std::shared_ptr<PackedMatmul>> packed;

/// HASTEN_PROFILE_KERNELS=1 prints, at exit, the time spent in each kernel
/// shape (for finding the slow ones).
struct KernelProfile {
  bool enabled = getenv("HASTEN_PROFILE_KERNELS") != nullptr;
  std::mutex mutex;
  std::map<std::string, std::pair<int64_t, double>> calls; // count, seconds
  ~KernelProfile() {
    if (!enabled)
      return;
    fprintf(stderr, "hasten kernel profile:\n");
    for (auto &[shape, stat] : calls)
      fprintf(stderr, "  %10.3f ms  %6lld calls  %s\n", stat.second * 1e3,
              (long long)stat.first, shape.c_str());
  }
  void record(const std::string &shape, double seconds) {
    std::lock_guard<std::mutex> lock(mutex);
    auto &stat = calls[shape];
    ++stat.first;
    stat.second += seconds;
  }
} profile;

/// oneDNN's library-managed scratchpad is shared between threads; modules
/// run from several threads at once, so every primitive takes a scratchpad
/// from the calling thread instead.
dnnl::primitive_attr threadSafeAttr() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

/// The calling thread's scratchpad buffer, at least `bytes` long.
void *threadScratchpadBuffer(size_t bytes) {
  thread_local std::vector<char> buffer;
  if (buffer.size() < bytes)
    buffer.resize(bytes);
  return buffer.data();
}

memory threadScratchpad(const memory::desc &desc) {
  return memory(desc, engine(), threadScratchpadBuffer(desc.get_size()));
}

/// Executes a reorder on the calling thread's scratchpad.
void reorderInto(memory &from, memory &to) {
  dnnl::reorder::primitive_desc pd(from, to, threadSafeAttr());
  dnnl::reorder(pd).execute(stream(), {{DNNL_ARG_FROM, from},
                                       {DNNL_ARG_TO, to},
                                       {DNNL_ARG_SCRATCHPAD, threadScratchpad(pd.scratchpad_desc())}});
}

/// A matmul primitive's operands as the calling thread binds them: memory
/// objects made once and pointed at each call's buffers, and A's reorder
/// into the primitive's layout or type (into this thread's own buffer)
/// when they differ. Creating them per call cost more than the product of
/// a small model's 64 x 128 x 128 step.
struct BoundMatmul {
  memory plainSrc, src, weights, dst, scratchpad;
  std::optional<dnnl::reorder> convert;
  memory::desc convertScratchpadDesc;

  BoundMatmul(const memory::desc &plain, const memory::desc &srcDesc,
              const memory::desc &weightsDesc, const memory::desc &dstDesc,
              const memory::desc &scratchpadDesc)
      : plainSrc(plain, engine(), DNNL_MEMORY_NONE),
        src(srcDesc == plain ? plainSrc : memory(srcDesc, engine())),
        weights(weightsDesc, engine(), DNNL_MEMORY_NONE),
        dst(dstDesc, engine(), DNNL_MEMORY_NONE),
        scratchpad(scratchpadDesc, engine(), DNNL_MEMORY_NONE) {
    if (srcDesc != plain) {
      dnnl::reorder::primitive_desc pd(plainSrc, src, threadSafeAttr());
      convert.emplace(pd);
      convertScratchpadDesc = pd.scratchpad_desc();
    }
  }

  void run(const dnnl::matmul &matmul, const float *a, const void *w, float *c) {
    plainSrc.set_data_handle(const_cast<float *>(a));
    if (convert)
      convert->execute(stream(), {{DNNL_ARG_FROM, plainSrc},
                                  {DNNL_ARG_TO, src},
                                  {DNNL_ARG_SCRATCHPAD, threadScratchpad(convertScratchpadDesc)}});
    weights.set_data_handle(const_cast<void *>(w));
    dst.set_data_handle(c);
    scratchpad.set_data_handle(threadScratchpadBuffer(scratchpad.get_desc().get_size()));
    matmul.execute(stream(), {{DNNL_ARG_SRC, src},
                              {DNNL_ARG_WEIGHTS, weights},
                              {DNNL_ARG_DST, dst},
                              {DNNL_ARG_SCRATCHPAD, scratchpad}});
    stream().wait();
  }
};

/// Bumped by forgetWeights: a thread's bindings of packed weights made
/// before it may point at packs that are gone.
std::atomic<uint64_t> packsForgotten{0};

/// linalg.matmul accumulates into its output (C += A * B) unless the
/// compiler proved C was just zeroed (kOverwrite).
dnnl::primitive_attr outputAttr(int32_t flags) {
  dnnl::primitive_attr attr = threadSafeAttr();
  if (flags & kOverwrite)
    return attr;
  dnnl::post_ops ops;
  ops.append_sum(1.0f);
  attr.set_post_ops(ops);
  return attr;
}

/// The primitive for this shape, over the weights packed once for all row
/// counts: the first shape seen chooses the packed layout (format any), and
/// later shapes are created for that layout, so prompts of every length
/// share one packed copy. Only if oneDNN has no kernel for a layout is a
/// second copy packed.
std::shared_ptr<PackedMatmul> packWeights(const MemRef<3> &a, const MemRef<3> &b,
                                          const MemRef<3> &c, int32_t flags) {
  bool bf16 = flags & kBf16;
  int32_t precision = flags & (kBf16 | kBf16Storage);
  WeightKey weightKey{startOf(b, flags), b.sizes[0], b.sizes[1], b.sizes[2],
                      b.strides[0], b.strides[1], b.strides[2], precision};
  PackKey key{weightKey, a.sizes[1], c.strides[1], flags};
  std::lock_guard<std::mutex> lock(packMutex);
  auto it = packed.find(key);
  if (it != packed.end())
    return it->second;
  auto type = bf16 ? memory::data_type::bf16 : memory::data_type::f32;
  int64_t batch = a.sizes[0], m = a.sizes[1], k = a.sizes[2], n = b.sizes[2];
  memory::desc src({batch, m, k}, type, memory::format_tag::abc);
  memory::desc dst = describe(c.sizes, c.strides, 3, memory::data_type::f32);
  auto entry = std::make_shared<PackedMatmul>();
  std::shared_ptr<PackedWeights> &shared = packedWeights[weightKey];
  std::optional<dnnl::matmul::primitive_desc> pd;
  if (shared) {
    try {
      pd.emplace(dnnl::matmul::desc(src, shared->weights.get_desc(), dst), outputAttr(flags),
                 engine());
      entry->packed = shared;
    } catch (const dnnl::error &) {
      pd.reset(); // no kernel for this layout at this shape: pack again
    }
  }
  if (!pd) {
    memory::desc wAny({batch, k, n}, type, memory::format_tag::any);
    pd.emplace(dnnl::matmul::desc(src, wAny, dst), outputAttr(flags), engine());
    auto weights = std::make_shared<PackedWeights>();
    weights->weights = memory(pd->weights_desc(), engine());
    bool stored16 = flags & kBf16Storage;
    memory plain(describe(b.sizes, b.strides, 3,
                          stored16 ? memory::data_type::bf16 : memory::data_type::f32),
                 engine(), const_cast<void *>(startOf(b, flags)));
    reorderInto(plain, weights->weights);
    stream().wait();
    if (!shared)
      shared = weights;
    entry->packed = weights;
  }
  entry->primitive = dnnl::matmul(*pd);
  entry->scratchpadDesc = pd->scratchpad_desc();
  entry->srcDesc = pd->src_desc();
  packed.emplace(key, entry);
  return entry;
}

void batchMatmulImpl(const MemRef<3> &a, const MemRef<3> &b, const MemRef<3> &c,
                     int32_t flags);

void batchMatmul(const MemRef<3> &a, const MemRef<3> &b, const MemRef<3> &c, int32_t flags) {
  if (!profile.enabled)
    return batchMatmulImpl(a, b, c, flags);
  auto start = std::chrono::steady_clock::now();
  batchMatmulImpl(a, b, c, flags);
  char shape[256];
  snprintf(shape, sizeof(shape),
           "matmul %lldx[%lldx%lld]x[%lldx%lld] a-strides [%lld,%lld] b-strides [%lld,%lld] "
           "flags %d",
           (long long)a.sizes[0], (long long)a.sizes[1], (long long)a.sizes[2],
           (long long)b.sizes[1], (long long)b.sizes[2], (long long)a.strides[1],
           (long long)a.strides[2], (long long)b.strides[1], (long long)b.strides[2], flags);
  profile.record(shape, std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
                            .count());
}

using LoopBody = void (*)(int64_t begin, int64_t end, void *context);
struct ParallelJob {
  int64_t count;
  LoopBody body;
  void *context;
};

/// Each thread of the team runs one contiguous share of the iterations.
void runShare(void *data) {
  auto *job = static_cast<ParallelJob *>(data);
  int64_t threads = omp_get_num_threads(), thread = omp_get_thread_num();
  int64_t share = (job->count + threads - 1) / threads;
  int64_t begin = thread * share, end = std::min(job->count, begin + share);
  if (begin < end)
    job->body(begin, end, job->context);
}

/// Splits iterations [0, count) across the pool in contiguous shares, or
/// runs them on the calling thread when `work` is 0 (too small to be worth
/// it), when already inside a parallel region, or with one thread.
void parallelFor(int64_t count, int64_t work, LoopBody body, void *context) {
  if (count <= 1 || work == 0 || omp_in_parallel() || omp_get_max_threads() == 1) {
    if (count > 0)
      body(0, count, context);
    return;
  }
  ParallelJob job{count, body, context};
  GOMP_parallel(runShare, &job, 0, 0);
}

/// A balanced loop's iterations: thread t owns the contiguous share
/// [begin, end) of shares[t], packed as (end << 32) | begin so that its
/// owner (from the front) and thieves (from the back) claim iterations with
/// one compare-and-swap each.
struct BalancedJob {
  LoopBody body;
  void *context;
  std::vector<std::atomic<uint64_t>> shares;
};

uint64_t packShare(uint64_t begin, uint64_t end) { return (end << 32) | begin; }

void runBalanced(void *data) {
  auto *job = static_cast<BalancedJob *>(data);
  size_t self = size_t(omp_get_thread_num());
  // Our own share, one iteration at a time from its front.
  if (self < job->shares.size()) {
    std::atomic<uint64_t> &share = job->shares[self];
    uint64_t s = share.load();
    while (uint32_t(s) < (s >> 32)) {
      if (share.compare_exchange_weak(s, s + 1)) {
        int64_t i = int64_t(uint32_t(s));
        job->body(i, i + 1, job->context);
        s = share.load();
      }
    }
  }
  // Then from the back of the share with the most left, until none has any.
  for (;;) {
    size_t victim = job->shares.size();
    uint64_t most = 0;
    for (size_t t = 0; t < job->shares.size(); ++t) {
      uint64_t s = job->shares[t].load();
      uint64_t left = (s >> 32) > uint32_t(s) ? (s >> 32) - uint32_t(s) : 0;
      if (left > most)
        most = left, victim = t;
    }
    if (victim == job->shares.size())
      return;
    uint64_t s = job->shares[victim].load();
    uint64_t begin = uint32_t(s), end = s >> 32;
    if (begin < end && job->shares[victim].compare_exchange_strong(s, packShare(begin, end - 1)))
      job->body(int64_t(end - 1), int64_t(end), job->context);
  }
}

/// Like parallelFor, for iterations whose cost differs or whose threads run
/// at different speeds (a core slowed by a busy neighbour): each thread
/// starts on its own contiguous share, one iteration per call, and then
/// takes iterations from the back of the share with the most left, so that
/// no thread idles while another still has a backlog.
void parallelForBalanced(int64_t count, int64_t work, LoopBody body, void *context) {
  int64_t threads = omp_get_max_threads();
  if (count <= 1 || work == 0 || omp_in_parallel() || threads == 1 ||
      count > int64_t(UINT32_MAX)) {
    parallelFor(count, work, body, context);
    return;
  }
  BalancedJob job{body, context, std::vector<std::atomic<uint64_t>>(size_t(threads))};
  int64_t share = (count + threads - 1) / threads;
  for (int64_t t = 0; t < threads; ++t) {
    int64_t begin = std::min(count, t * share), end = std::min(count, begin + share);
    job.shares[size_t(t)].store(packShare(uint64_t(begin), uint64_t(end)));
  }
  GOMP_parallel(runBalanced, &job, 0, 0);
}

//===----------------------------------------------------------------------===//
// M = 1 (decode): a GEMV that streams the weights once
//===----------------------------------------------------------------------===//

/// y[n0:n1] (+)= x[0:k] * W[0:k, n0:n1], W row-major with leading dimension
/// ldw. Rows of the thread's column slice are streamed in order, four at a
/// time, into accumulators that stay in L1: each weight byte is read once,
/// sequentially, which is what decode's memory-bound products need.
template <bool Overwrite>
__attribute__((always_inline)) inline void gemvColumns(const float *x, const float *w, int64_t ldw, float *y, int64_t k,
                        int64_t n0, int64_t n1) {
  constexpr int64_t kSlice = 1024;
  float acc[kSlice];
  for (int64_t s0 = n0; s0 < n1; s0 += kSlice) {
    int64_t width = std::min(kSlice, n1 - s0);
    for (int64_t j = 0; j < width; ++j)
      acc[j] = Overwrite ? 0.0f : y[s0 + j];
    int64_t r = 0;
    for (; r + 4 <= k; r += 4) {
      const float x0 = x[r], x1 = x[r + 1], x2 = x[r + 2], x3 = x[r + 3];
      const float *w0 = w + r * ldw + s0, *w1 = w0 + ldw, *w2 = w1 + ldw, *w3 = w2 + ldw;
      for (int64_t j = 0; j < width; ++j)
        acc[j] += x0 * w0[j] + x1 * w1[j] + x2 * w2[j] + x3 * w3[j];
    }
    for (; r < k; ++r) {
      const float xr = x[r];
      const float *row = w + r * ldw + s0;
      for (int64_t j = 0; j < width; ++j)
        acc[j] += xr * row[j];
    }
    for (int64_t j = 0; j < width; ++j)
      y[s0 + j] = acc[j];
  }
}

/// The same product with W stored transposed: column n of W is the row
/// w[n * ldn, n * ldn + k), as in a tied LM head (the embedding matrix).
/// Each output is a dot product; four rows at a time share the loads of x,
/// and 16 partial sums per row keep the loop vectorizable without
/// reassociating.
template <bool Overwrite>
__attribute__((always_inline)) inline void gemvRowsTransposed(const float *x, const float *w, int64_t ldn, float *y,
                               int64_t k, int64_t n0, int64_t n1) {
  constexpr int64_t kLanes = 16;
  int64_t kMain = k / kLanes * kLanes;
  auto finish = [&](int64_t n, const float *acc) {
    float sum = 0.0f;
    for (int64_t l = 0; l < kLanes; ++l)
      sum += acc[l];
    for (int64_t r = kMain; r < k; ++r)
      sum += x[r] * w[n * ldn + r];
    y[n] = Overwrite ? sum : y[n] + sum;
  };
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) {
    float a0[kLanes] = {}, a1[kLanes] = {}, a2[kLanes] = {}, a3[kLanes] = {};
    const float *w0 = w + n * ldn, *w1 = w0 + ldn, *w2 = w1 + ldn, *w3 = w2 + ldn;
    for (int64_t r = 0; r < kMain; r += kLanes)
      for (int64_t l = 0; l < kLanes; ++l) {
        float xv = x[r + l];
        a0[l] += xv * w0[r + l];
        a1[l] += xv * w1[r + l];
        a2[l] += xv * w2[r + l];
        a3[l] += xv * w3[r + l];
      }
    finish(n, a0);
    finish(n + 1, a1);
    finish(n + 2, a2);
    finish(n + 3, a3);
  }
  for (; n < n1; ++n) {
    float a0[kLanes] = {};
    const float *w0 = w + n * ldn;
    for (int64_t r = 0; r < kMain; r += kLanes)
      for (int64_t l = 0; l < kLanes; ++l)
        a0[l] += x[r + l] * w0[r + l];
    finish(n, a0);
  }
}

struct GemvJob {
  const float *x, *w;
  /// Row-major W: the distance between rows k; transposed: between columns n.
  int64_t ldw;
  bool transposed;
  float *y;
  int64_t k, n;
  bool overwrite;
  /// A few rows of x and y (verification): each row's product as the
  /// one-row GEMV computes it, over the same columns while they are in
  /// cache.
  int64_t rows = 1, xRowStride = 0, yRowStride = 0;
};

template <bool Overwrite>
__attribute__((always_inline)) inline void gemvAny(const GemvJob &job, int64_t n0, int64_t n1) {
  // Column blocks of 64 outer, rows inner: a block of W (64 columns of a
  // transposed W are 64 contiguous rows) is read from memory once.
  for (int64_t b0 = n0; b0 < n1; b0 += 64) {
    int64_t b1 = std::min(n1, b0 + 64);
    for (int64_t row = 0; row < job.rows; ++row) {
      const float *x = job.x + row * job.xRowStride;
      float *y = job.y + row * job.yRowStride;
      if (job.transposed)
        gemvRowsTransposed<Overwrite>(x, job.w, job.ldw, y, job.k, b0, b1);
      else
        gemvColumns<Overwrite>(x, job.w, job.ldw, y, job.k, b0, b1);
    }
  }
}

__attribute__((target("avx512f"))) void gemvAvx512(const GemvJob &job, int64_t n0,
                                                    int64_t n1) {
  job.overwrite ? gemvAny<true>(job, n0, n1) : gemvAny<false>(job, n0, n1);
}

__attribute__((target("avx2,fma"))) void gemvAvx2(const GemvJob &job, int64_t n0,
                                                   int64_t n1) {
  job.overwrite ? gemvAny<true>(job, n0, n1) : gemvAny<false>(job, n0, n1);
}

void gemvGeneric(const GemvJob &job, int64_t n0, int64_t n1) {
  job.overwrite ? gemvAny<true>(job, n0, n1) : gemvAny<false>(job, n0, n1);
}

//===----------------------------------------------------------------------===//
// A few rows of activations times a row-major activation (AVX-512)
//===----------------------------------------------------------------------===//

/// C (+)= A B with at most kFewRows rows of A: a small convolution's filters
/// times its windows (16 filters x 48 taps x 256 positions in the flow
/// vocoder), where oneDNN's general kernel reached a third of the FMA peak.
constexpr int64_t kFewRows = 16;
constexpr int64_t kFewRowsColumns = 64; // four vectors of C per row
/// Or any rows with a reduction this short (a patchify convolution: 128
/// filters x 16 taps), whose 64-column slice of B (16 KB) stays in L1 for
/// all of them; oneDNN took 11 us for 128 x 16 x 64.
constexpr int64_t kShortReduction = 64;
/// The longest reduction the few rows take here: each group of six rows
/// reads B's 64-column slice again, from L2 while it fits there (128 KB);
/// longer ones (an unfused attention's P V over a long past) go to oneDNN,
/// which blocks the reduction.
constexpr int64_t kFewRowsMaxReduction = 512;

struct FewRowsJob {
  const float *a;
  int64_t aRow, aCol; // A's strides
  const float *b;
  int64_t ldb;
  float *c;
  int64_t ldc, m, k, n;
  bool overwrite;
};

/// Rows [i0, i0 + R) by columns [j0, j0 + 64) clipped to n, in 4 R vector
/// registers (24 at six rows); B's 64-column slice is read once per row
/// group, from L1 after the first.
template <int R>
__attribute__((target("avx512f"), always_inline)) inline void
fewRowsTile(const FewRowsJob &job, int64_t i0, int64_t j0) {
  __mmask16 lanes[4];
  for (int w = 0; w < 4; ++w) {
    int64_t left = job.n - j0 - 16 * w;
    lanes[w] = left >= 16 ? (__mmask16)0xffff
               : left <= 0 ? (__mmask16)0
                           : (__mmask16)((1u << left) - 1);
  }
  __m512 acc[R][4];
  for (int u = 0; u < R; ++u)
    for (int w = 0; w < 4; ++w)
      acc[u][w] = job.overwrite
                      ? _mm512_setzero_ps()
                      : _mm512_maskz_loadu_ps(lanes[w], job.c + (i0 + u) * job.ldc + j0 + 16 * w);
  const float *a = job.a + i0 * job.aRow;
  for (int64_t kk = 0; kk < job.k; ++kk) {
    const float *bRow = job.b + kk * job.ldb + j0;
    __m512 bv[4];
    for (int w = 0; w < 4; ++w)
      bv[w] = _mm512_maskz_loadu_ps(lanes[w], bRow + 16 * w);
    for (int u = 0; u < R; ++u) {
      __m512 x = _mm512_set1_ps(a[u * job.aRow + kk * job.aCol]);
      for (int w = 0; w < 4; ++w)
        acc[u][w] = _mm512_fmadd_ps(x, bv[w], acc[u][w]);
    }
  }
  for (int u = 0; u < R; ++u)
    for (int w = 0; w < 4; ++w)
      _mm512_mask_storeu_ps(job.c + (i0 + u) * job.ldc + j0 + 16 * w, lanes[w], acc[u][w]);
}

/// Rows a parallel iteration takes: many rows over a short reduction (a
/// patchify convolution's 128 or more filters) split across the pool by
/// rows as well as by columns, which may be one block.
constexpr int64_t kFewRowsChunk = 48;

/// Iterations [begin, end): each is a chunk of up to 48 rows times a block
/// of 64 columns, six rows at a time, then four, then one.
__attribute__((target("avx512f"))) void fewRowsBlocks(int64_t begin, int64_t end, void *data) {
  const auto &job = *static_cast<const FewRowsJob *>(data);
  int64_t columnBlocks = (job.n + kFewRowsColumns - 1) / kFewRowsColumns;
  for (int64_t t = begin; t < end; ++t) {
    int64_t j0 = (t % columnBlocks) * kFewRowsColumns, i = (t / columnBlocks) * kFewRowsChunk;
    int64_t rowsEnd = std::min(job.m, i + kFewRowsChunk);
    for (; i + 6 <= rowsEnd; i += 6)
      fewRowsTile<6>(job, i, j0);
    for (; i + 4 <= rowsEnd; i += 4)
      fewRowsTile<4>(job, i, j0);
    for (; i < rowsEnd; ++i)
      fewRowsTile<1>(job, i, j0);
  }
}

/// Columns [begin * 64, end * 64) of the product, clipped to n.
void gemvBlocks(int64_t begin, int64_t end, void *data) {
  auto *job = static_cast<GemvJob *>(data);
  int64_t n0 = std::min(job->n, begin * 64), n1 = std::min(job->n, end * 64);
  const hasten::runtime::CpuCapabilities &cpu = hasten::runtime::cpuCapabilities();
  if (cpu.avx512)
    gemvAvx512(*job, n0, n1);
  else if (cpu.avx2)
    gemvAvx2(*job, n0, n1);
  else
    gemvGeneric(*job, n0, n1);
}

/// The weights are read once, split by blocks of 64 columns across the pool
/// (from 256 columns on).
void f32StripGemv(const MemRef<3> &a, const MemRef<3> &b, const MemRef<3> &c,
                  bool overwrite);

/// The GEMV's loops over W where it lies (row-major, or transposed when its
/// column stride is not 1), a few rows of A at a time: no packing, so they
/// also serve activations.
void gemvInPlace(const MemRef<3> &a, const MemRef<3> &b, const MemRef<3> &c, bool overwrite) {
  bool transposed = b.strides[2] != 1;
  GemvJob job{a.data(),   b.data(),   transposed ? b.strides[2] : b.strides[1],
              transposed, c.data(),   a.sizes[2],
              b.sizes[2], overwrite,  a.sizes[1],
              a.strides[1], c.strides[1]};
  int64_t blocks = (job.n + 63) / 64;
  parallelFor(blocks, job.n >= 256 ? job.n * job.rows : 0, gemvBlocks, &job);
}

/// Rows of A times W, unpacked. A transposed W (a tied LM head reading the
/// embedding table) is read in place even on AVX-512, where a plain W is
/// packed into strips: its columns are contiguous rows, already one stream,
/// and a packed copy would keep the table in memory twice.
void gemv(const MemRef<3> &a, const MemRef<3> &b, const MemRef<3> &c, bool overwrite) {
  bool transposed = b.strides[2] != 1;
  if (hasten::runtime::cpuCapabilities().avx512 && !transposed && a.sizes[1] == 1)
    return f32StripGemv(a, b, c, overwrite);
  gemvInPlace(a, b, c, overwrite);
}

//===----------------------------------------------------------------------===//
// M = 1 with bf16 weights: a GEMV on AVX512-BF16 (vdpbf16ps)
//===----------------------------------------------------------------------===//

/// Weights packed for the bf16 GEMV: strips of 64 columns, each strip K/2
/// rows of 64 bf16 pairs (W[2p][n] in the low half, W[2p+1][n] in the high
/// half), so that a strip is one contiguous stream and vdpbf16ps takes a
/// row of pairs as is.
struct PackedBf16Gemv {
  int64_t k, n, pairs, strips;
  std::vector<uint32_t> data;
  hasten::runtime::Bf16Strips view() const { return {data.data(), k, pairs, n, strips}; }
};

constexpr int64_t kStrip = 64;

std::mutex bf16GemvMutex;
std::map<std::tuple<const void *, int64_t, int64_t, int64_t, int64_t>,
         std::shared_ptr<PackedBf16Gemv>>
    bf16GemvPacks;

std::shared_ptr<PackedBf16Gemv> packBf16Gemv(const MemRef<3> &b, int32_t flags) {
  auto key = std::make_tuple(startOf(b, flags), b.sizes[1], b.sizes[2], b.strides[1],
                             b.strides[2]);
  std::lock_guard<std::mutex> lock(bf16GemvMutex);
  auto it = bf16GemvPacks.find(key);
  if (it != bf16GemvPacks.end())
    return it->second;
  auto p = std::make_shared<PackedBf16Gemv>();
  p->k = b.sizes[1];
  p->n = b.sizes[2];
  p->pairs = (p->k + 1) / 2;
  p->strips = (p->n + kStrip - 1) / kStrip;
  p->data.assign((size_t)(p->strips * p->pairs * kStrip), 0);
  auto element = [&](int64_t row, int64_t col) -> uint32_t {
    int64_t index = row * b.strides[1] + col * b.strides[2];
    return (flags & kBf16Storage) ? bf16Data(b)[index] : toBf16(b.data()[index]);
  };
  for (int64_t s = 0; s < p->strips; ++s)
    for (int64_t pair = 0; pair < p->pairs; ++pair)
      for (int64_t j = 0; j < kStrip; ++j) {
        int64_t col = s * kStrip + j, r0 = 2 * pair, r1 = r0 + 1;
        if (col >= p->n)
          continue;
        uint32_t lo = element(r0, col);
        uint32_t hi = r1 < p->k ? element(r1, col) : 0;
        p->data[(s * p->pairs + pair) * kStrip + j] = lo | (hi << 16);
      }
  bf16GemvPacks.emplace(key, p);
  return p;
}

/// f32 weights packed the same way for the f32 GEMV: strips of 64 columns,
/// each K rows of 64 floats, one contiguous stream per strip. Streaming a
/// strip reads memory strictly in order, which the hardware prefetchers
/// follow at full bandwidth; reading 64-column pieces of rows 12 KiB apart
/// (the unpacked layout) did not.
struct PackedF32Gemv {
  int64_t k, n, strips;
  std::vector<float> data;
  hasten::runtime::F32Strips view() const { return {data.data(), k, k, n, strips}; }
};

std::map<std::tuple<const float *, int64_t, int64_t, int64_t, int64_t>,
         std::shared_ptr<PackedF32Gemv>>
    f32GemvPacks;

std::shared_ptr<PackedF32Gemv> packF32Gemv(const MemRef<3> &b) {
  auto key = std::make_tuple(b.data(), b.sizes[1], b.sizes[2], b.strides[1], b.strides[2]);
  std::lock_guard<std::mutex> lock(bf16GemvMutex);
  auto it = f32GemvPacks.find(key);
  if (it != f32GemvPacks.end())
    return it->second;
  auto p = std::make_shared<PackedF32Gemv>();
  p->k = b.sizes[1];
  p->n = b.sizes[2];
  p->strips = (p->n + kStrip - 1) / kStrip;
  p->data.assign((size_t)(p->strips * p->k * kStrip), 0.0f);
  const float *w = b.data();
  for (int64_t s = 0; s < p->strips; ++s)
    for (int64_t r = 0; r < p->k; ++r)
      for (int64_t j = 0; j < kStrip && s * kStrip + j < p->n; ++j)
        p->data[(s * p->k + r) * kStrip + j] = w[r * b.strides[1] + (s * kStrip + j) * b.strides[2]];
  f32GemvPacks.emplace(key, p);
  return p;
}

/// Writes (or adds) a strip's 64 results to y[n0, min(n0 + 64, n)).
__attribute__((target("avx512f"), always_inline)) inline void
storeStrip(__m512 acc0, __m512 acc1, __m512 acc2, __m512 acc3, float *y, int64_t n0, int64_t n,
           bool overwrite) {
  alignas(64) float out[kStrip];
  _mm512_store_ps(out, acc0);
  _mm512_store_ps(out + 16, acc1);
  _mm512_store_ps(out + 32, acc2);
  _mm512_store_ps(out + 48, acc3);
  int64_t width = std::min(kStrip, n - n0);
  for (int64_t j = 0; j < width; ++j)
    y[n0 + j] = overwrite ? out[j] : y[n0 + j] + out[j];
}

struct F32GemvJob {
  const hasten::runtime::F32Strips *w;
  const float *x;
  int64_t xStride;
  float *y;
  bool overwrite;
};

/// `Streams` consecutive strips from `s` at once: independent streams from
/// memory, which a core needs to keep enough reads in flight (two measured
/// 29 GB/s on two threads where one gave 25.5).
template <int Streams>
__attribute__((target("avx512f"), always_inline)) inline void
f32Strips(const F32GemvJob &job, int64_t s) {
  const hasten::runtime::F32Strips &w = *job.w;
  __m512 acc[Streams][4];
  const float *rows[Streams];
  for (int u = 0; u < Streams; ++u) {
    rows[u] = w.data + (s + u) * w.rowsPerStrip * kStrip;
    for (int v = 0; v < 4; ++v)
      acc[u][v] = _mm512_setzero_ps();
  }
  for (int64_t r = 0; r < w.k; ++r) {
    __m512 x = _mm512_set1_ps(job.x[r * job.xStride]);
    for (int v = 0; v < 4; ++v)
      for (int u = 0; u < Streams; ++u)
        acc[u][v] = _mm512_fmadd_ps(x, _mm512_loadu_ps(rows[u] + r * kStrip + 16 * v),
                                    acc[u][v]);
  }
  for (int u = 0; u < Streams; ++u)
    storeStrip(acc[u][0], acc[u][1], acc[u][2], acc[u][3], job.y, (s + u) * kStrip, w.n,
               job.overwrite);
}

__attribute__((target("avx512f"))) void f32GemvStrips(int64_t begin, int64_t end, void *data) {
  auto *job = static_cast<F32GemvJob *>(data);
  int64_t s = begin;
  for (; s + 2 <= end; s += 2)
    f32Strips<2>(*job, s);
  if (s < end)
    f32Strips<1>(*job, s);
}

/// A few rows of x at once (verification and short prompts: M = 2 to 16):
/// each strip is read from memory once, by the first group of up to six
/// rows; the later groups find it in the cache. Per row and column the sum
/// runs in the same order as f32Strips', so each row's result is bit for
/// bit the one-row GEMV's: verifying a token scores it exactly as decoding
/// it does. Six rows keep 24 accumulators, the strip row's four vectors
/// and a broadcast in the 32 vector registers.
struct F32GemmJob {
  const hasten::runtime::F32Strips *w;
  const float *x;
  int64_t xRowStride, xStride;
  float *y;
  int64_t yRowStride, rows;
  bool overwrite;
};

template <int Rows>
__attribute__((target("avx512f"), always_inline)) inline void
f32StripRows(const F32GemmJob &job, int64_t s, int64_t row0) {
  const hasten::runtime::F32Strips &w = *job.w;
  __m512 acc[Rows][4];
  for (int i = 0; i < Rows; ++i)
    for (int v = 0; v < 4; ++v)
      acc[i][v] = _mm512_setzero_ps();
  const float *strip = w.data + s * w.rowsPerStrip * kStrip;
  const float *x = job.x + row0 * job.xRowStride;
  for (int64_t r = 0; r < w.k; ++r) {
    __m512 wv[4];
    for (int v = 0; v < 4; ++v)
      wv[v] = _mm512_loadu_ps(strip + r * kStrip + 16 * v);
    for (int i = 0; i < Rows; ++i) {
      __m512 xi = _mm512_set1_ps(x[i * job.xRowStride + r * job.xStride]);
      for (int v = 0; v < 4; ++v)
        acc[i][v] = _mm512_fmadd_ps(xi, wv[v], acc[i][v]);
    }
  }
  for (int i = 0; i < Rows; ++i)
    storeStrip(acc[i][0], acc[i][1], acc[i][2], acc[i][3],
               job.y + (row0 + i) * job.yRowStride, s * kStrip, w.n, job.overwrite);
}

__attribute__((target("avx512f"))) void f32GemmStrips(int64_t begin, int64_t end, void *data) {
  auto *job = static_cast<F32GemmJob *>(data);
  for (int64_t s = begin; s < end; ++s)
    for (int64_t row0 = 0; row0 < job->rows; row0 += 6)
      switch (std::min<int64_t>(6, job->rows - row0)) {
      case 6:
        f32StripRows<6>(*job, s, row0);
        break;
      case 5:
        f32StripRows<5>(*job, s, row0);
        break;
      case 4:
        f32StripRows<4>(*job, s, row0);
        break;
      case 3:
        f32StripRows<3>(*job, s, row0);
        break;
      case 2:
        f32StripRows<2>(*job, s, row0);
        break;
      default:
        f32StripRows<1>(*job, s, row0);
      }
}

struct Bf16GemvJob {
  const hasten::runtime::Bf16Strips *w;
  const uint32_t *xPairs;
  float *y;
  bool overwrite;
};

/// As f32Strips, with bf16 pairs and vdpbf16ps.
template <int Streams>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"), always_inline)) inline void
bf16Strips(const Bf16GemvJob &job, int64_t s) {
  const hasten::runtime::Bf16Strips &w = *job.w;
  __m512 acc[Streams][4];
  const uint32_t *rows[Streams];
  for (int u = 0; u < Streams; ++u) {
    rows[u] = w.data + (s + u) * w.pairs * kStrip;
    for (int v = 0; v < 4; ++v)
      acc[u][v] = _mm512_setzero_ps();
  }
  for (int64_t p = 0; p < w.pairs; ++p) {
    __m512bh x = (__m512bh)_mm512_set1_epi32((int)job.xPairs[p]);
    for (int v = 0; v < 4; ++v)
      for (int u = 0; u < Streams; ++u)
        acc[u][v] = _mm512_dpbf16_ps(
            acc[u][v], x, (__m512bh)_mm512_loadu_si512(rows[u] + p * kStrip + 16 * v));
  }
  for (int u = 0; u < Streams; ++u)
    storeStrip(acc[u][0], acc[u][1], acc[u][2], acc[u][3], job.y, (s + u) * kStrip, w.n,
               job.overwrite);
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void
bf16GemvStrips(int64_t begin, int64_t end, void *data) {
  auto *job = static_cast<Bf16GemvJob *>(data);
  int64_t s = begin;
  for (; s + 2 <= end; s += 2)
    bf16Strips<2>(*job, s);
  if (s < end)
    bf16Strips<1>(*job, s);
}

/// y (+)= x * W with W packed in strips (AVX-512).
void f32StripGemv(const MemRef<3> &a, const MemRef<3> &b, const MemRef<3> &c,
                  bool overwrite) {
  std::shared_ptr<PackedF32Gemv> packed = packF32Gemv(b);
  hasten::runtime::F32Strips w = packed->view();
  F32GemvJob job{&w, a.data(), a.strides[2], c.data(), overwrite};
  parallelFor(w.strips, w.n >= 256 ? w.n : 0, f32GemvStrips, &job);
}

/// Y (+)= X * W for the few rows of X (AVX-512), W packed as for the GEMV.
void f32StripGemm(const MemRef<3> &a, const MemRef<3> &b, const MemRef<3> &c,
                  bool overwrite) {
  std::shared_ptr<PackedF32Gemv> packed = packF32Gemv(b);
  hasten::runtime::F32Strips w = packed->view();
  F32GemmJob job{&w,           a.data(),   a.strides[1], a.strides[2], c.data(),
                 c.strides[1], a.sizes[1], overwrite};
  parallelFor(w.strips, w.n >= 256 ? w.n * job.rows : 0, f32GemmStrips, &job);
}

/// y (+)= x * W with W's packed bf16 copy and x rounded to bf16; f32
/// accumulation, as oneDNN's bf16 matmul does.
void bf16Gemv(const MemRef<3> &a, const MemRef<3> &b, const MemRef<3> &c, int32_t flags) {
  bool overwrite = flags & kOverwrite;
  std::shared_ptr<PackedBf16Gemv> packed = packBf16Gemv(b, flags);
  hasten::runtime::Bf16Strips w = packed->view();
  thread_local std::vector<uint32_t> xPairs;
  xPairs.assign(w.pairs, 0);
  const float *x = a.data();
  for (int64_t r = 0; r < w.k; ++r)
    xPairs[r / 2] |= (uint32_t)toBf16(x[r * a.strides[2]]) << (16 * (r % 2));
  Bf16GemvJob job{&w, xPairs.data(), c.data(), overwrite};
  parallelFor(w.strips, w.n >= 256 ? w.n : 0, bf16GemvStrips, &job);
}

/// A matmul of two activations for one problem (shapes, strides, flags),
/// with its operands' memory objects, pointed at each call's buffers.
struct ActivationMatmul {
  dnnl::matmul primitive;
  BoundMatmul operands;
};

/// The calling thread's primitive for this problem. Small models call the
/// same few products thousands of times, and building a primitive
/// descriptor, its attributes and three memory objects took several times
/// the product's own time at a 16 x 48 x 256 convolution (oneDNN caches the
/// primitive, not the descriptor).
ActivationMatmul &activationMatmul(const MemRef<3> &a, const MemRef<3> &b, const MemRef<3> &c,
                                   int32_t flags) {
  using Key = std::array<int64_t, 19>;
  Key key{a.sizes[0], a.sizes[1], a.sizes[2], a.strides[0], a.strides[1], a.strides[2],
          b.sizes[0], b.sizes[1], b.sizes[2], b.strides[0], b.strides[1], b.strides[2],
          c.sizes[0], c.sizes[1], c.sizes[2], c.strides[0], c.strides[1], c.strides[2], flags};
  // Bounded: prompts of every length would each add their attention's shapes.
  constexpr size_t kMaxProblems = 256;
  thread_local std::map<Key, std::unique_ptr<ActivationMatmul>> problems;
  auto it = problems.find(key);
  if (it != problems.end())
    return *it->second;
  if (problems.size() >= kMaxProblems)
    problems.clear();
  memory::desc srcDesc = describe(a.sizes, a.strides, 3, memory::data_type::f32);
  memory::desc wDesc = describe(b.sizes, b.strides, 3, memory::data_type::f32);
  memory::desc dstDesc = describe(c.sizes, c.strides, 3, memory::data_type::f32);
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(srcDesc, wDesc, dstDesc),
                                  outputAttr(flags), engine());
  auto entry = std::unique_ptr<ActivationMatmul>(new ActivationMatmul{
      dnnl::matmul(pd), BoundMatmul(srcDesc, srcDesc, wDesc, dstDesc, pd.scratchpad_desc())});
  return *problems.emplace(key, std::move(entry)).first->second;
}

/// Products with at most this many rows and constant f32 weights run on the
/// strip kernels instead of oneDNN's GEMM, which took twice a GEMV's time
/// for 2 rows of a 100 MB decoder.
constexpr int64_t kSmallRows = 16;

void batchMatmulImpl(const MemRef<3> &a, const MemRef<3> &b, const MemRef<3> &c,
                     int32_t flags) {
  // bf16 needs AVX-512 (oneDNN emulates it on cores without bf16
  // instructions); below that, the weights are widened to f32 once, when
  // packed, and the products run in f32.
  if ((flags & kBf16) && !hasten::runtime::cpuCapabilities().avx512) {
    static std::once_flag noted;
    std::call_once(noted, [] {
      fprintf(stderr, "hasten: note: this CPU has no AVX-512, so bf16 weights are converted "
                      "to f32 when packed (slower than on a CPU with bf16 support)\n");
    });
    flags &= ~kBf16;
  }
  // Decode-shaped products with f32 weights: one row of A, contiguous rows
  // (or, for a transposed W, columns) of W, contiguous C. (Weights stored
  // as bf16 go to the packed path, which widens them.)
  if ((flags & kConstantWeights) && !(flags & (kBf16 | kBf16Storage)) && a.sizes[0] == 1 &&
      b.sizes[0] == 1 && a.sizes[1] == 1 && a.strides[2] == 1 &&
      (b.strides[2] == 1 || b.strides[1] == 1) && c.strides[2] == 1) {
    gemv(a, b, c, flags & kOverwrite);
    return;
  }
  // A few rows (verification, short prompts): the GEMV's strips, read once;
  // a transposed W in place.
  if ((flags & kConstantWeights) && !(flags & (kBf16 | kBf16Storage)) &&
      hasten::runtime::cpuCapabilities().avx512 && a.sizes[0] == 1 && b.sizes[0] == 1 &&
      a.sizes[1] > 1 && a.sizes[1] <= kSmallRows && c.strides[2] == 1) {
    if (b.strides[2] != 1 && b.strides[1] == 1 && a.strides[2] == 1)
      gemv(a, b, c, flags & kOverwrite);
    else
      f32StripGemm(a, b, c, flags & kOverwrite);
    return;
  }
  if ((flags & kConstantWeights) && (flags & kBf16) &&
      hasten::runtime::cpuCapabilities().avx512Bf16 && a.sizes[0] == 1 &&
      b.sizes[0] == 1 && a.sizes[1] == 1 && c.strides[2] == 1) {
    bf16Gemv(a, b, c, flags);
    return;
  }
  if ((flags & kConstantWeights) && a.sizes[0] == b.sizes[0]) {
    // Output rows a multiple of 4 KiB apart alias in the caches and halve
    // the GEMM's speed (N = 3072 in f32 is 12 KiB): such outputs are
    // computed into a buffer with padded rows and copied back.
    MemRef<3> target = c;
    thread_local std::vector<float> padded; // reused: no allocation per call
    bool pad = (flags & kOverwrite) && !(flags & kBf16) && c.strides[2] == 1 && c.sizes[1] >= 64 &&
               (c.strides[1] * 4) % 4096 == 0;
    if (pad) {
      int64_t ld = c.sizes[2] + 16;
      size_t needed = (size_t)(c.sizes[0] * c.sizes[1] * ld);
      if (padded.size() < needed)
        padded.resize(needed);
      target.allocated = target.aligned = padded.data();
      target.offset = 0;
      target.strides[0] = c.sizes[1] * ld;
      target.strides[1] = ld;
    }
    // The pack and its bound operands, per thread: finding the pack takes
    // a lock and a map walk.
    using Key = std::array<int64_t, 17>;
    Key key{reinterpret_cast<int64_t>(startOf(b, flags)), b.sizes[0], b.sizes[1], b.sizes[2],
            b.strides[0], b.strides[1], b.strides[2], a.sizes[1], a.strides[0], a.strides[1],
            a.strides[2], target.strides[0], target.strides[1], target.strides[2], flags,
            a.sizes[0], c.sizes[2]};
    struct Bound {
      std::shared_ptr<PackedMatmul> packed;
      BoundMatmul operands;
    };
    constexpr size_t kMaxBound = 256;
    thread_local std::map<Key, Bound> bound;
    thread_local uint64_t boundAfter = 0;
    if (uint64_t forgotten = packsForgotten.load(std::memory_order_acquire);
        forgotten != boundAfter || bound.size() >= kMaxBound) {
      bound.clear();
      boundAfter = forgotten;
    }
    auto it = bound.find(key);
    if (it == bound.end()) {
      std::shared_ptr<PackedMatmul> p = packWeights(a, b, target, flags);
      it = bound
               .emplace(key, Bound{p, BoundMatmul(
                                          describe(a.sizes, a.strides, 3, memory::data_type::f32),
                                          p->srcDesc, p->packed->weights.get_desc(),
                                          describe(target.sizes, target.strides, 3,
                                                   memory::data_type::f32),
                                          p->scratchpadDesc)})
               .first;
    }
    Bound &p = it->second;
    p.operands.run(p.packed->primitive, a.data(), p.packed->packed->weights.get_data_handle(),
                   target.data());
    if (pad)
      for (int64_t batch = 0; batch < c.sizes[0]; ++batch)
        for (int64_t row = 0; row < c.sizes[1]; ++row)
          std::memcpy(c.data() + batch * c.strides[0] + row * c.strides[1],
                      target.data() + batch * target.strides[0] + row * target.strides[1],
                      c.sizes[2] * sizeof(float));
    return;
  }
  // Activations on both sides (attention, a convolution's columns): f32.
  if (flags & kBf16Storage)
    throw std::runtime_error("bf16-stored weights need one weight matrix per batch");
  // A few rows against a row-major right side (a one-filter convolution:
  // its filter times the windows): the GEMV's loops read B in place, once
  // per block of 64 columns. oneDNN's general kernel ran a 1 x 112 x 1024
  // product at a tenth of the FMA peak (17 us; 7.6 us now).
  if (!(flags & kBf16) && a.sizes[0] == 1 && b.sizes[0] == 1 && a.sizes[1] <= 4 &&
      a.strides[2] == 1 && b.strides[2] == 1 && c.strides[2] == 1)
    return gemvInPlace(a, b, c, flags & kOverwrite);
  if (!(flags & kBf16) && hasten::runtime::cpuCapabilities().avx512 && a.sizes[0] == 1 &&
      b.sizes[0] == 1 && ((a.sizes[1] <= kFewRows && a.sizes[2] <= kFewRowsMaxReduction) ||
       a.sizes[2] <= kShortReduction) &&
      b.strides[2] == 1 && c.strides[2] == 1) {
    FewRowsJob job{a.data(), a.strides[1], a.strides[2], b.data(), b.strides[1], c.data(),
                   c.strides[1], a.sizes[1], a.sizes[2], b.sizes[2], (flags & kOverwrite) != 0};
    int64_t work = job.m * job.k * job.n;
    int64_t iterations = (job.n + kFewRowsColumns - 1) / kFewRowsColumns *
                         ((job.m + kFewRowsChunk - 1) / kFewRowsChunk);
    parallelFor(iterations, work >= (1 << 18) ? work : 0, fewRowsBlocks, &job);
    return;
  }
  ActivationMatmul &p = activationMatmul(a, b, c, flags);
  p.operands.run(p.primitive, a.data(), b.data(), c.data());
}


template <typename Fn>
void guarded(const char *kernel, Fn &&body) {
  try {
    body();
  } catch (const dnnl::error &e) {
    hasten::runtime::setKernelError(std::string(kernel) + ": oneDNN error: " + e.what());
  } catch (const std::exception &e) {
    hasten::runtime::setKernelError(std::string(kernel) + ": " + e.what());
  }
}

MemRef<3> asBatch(const MemRef<2> &m) {
  return {m.allocated, m.aligned, m.offset, {1, m.sizes[0], m.sizes[1]},
          {m.sizes[0] * m.strides[0], m.strides[0], m.strides[1]}};
}

//===----------------------------------------------------------------------===//
// int8 x int8 -> int32 (linalg.quantized_matmul: QDQ models, MatMulInteger)
//===----------------------------------------------------------------------===//

using MemRefI8 = hasten::runtime::MemRefDescriptor<int8_t, 2>;
using MemRefI32 = hasten::runtime::MemRefDescriptor<int32_t, 2>;

/// Constant int8 weights reordered once into oneDNN's layout for them, and
/// their column sums (what an activation's zero point subtracts).
struct PackedInt8Weights {
  memory weights;
  std::vector<int32_t> columnSums;
};

/// A primitive for one problem shape, over packed weights when constant.
struct Int8Matmul {
  dnnl::matmul primitive;
  memory::desc scratchpadDesc, weightsDesc;
  std::shared_ptr<PackedInt8Weights> packed;
};

/// Weights by (data, K, N, strides); primitives by (weights, constant, M,
/// A's and C's row strides).
using Int8WeightKey = std::tuple<const void *, int64_t, int64_t, int64_t, int64_t>;
using Int8MatmulKey = std::tuple<Int8WeightKey, bool, int64_t, int64_t, int64_t>;
std::mutex int8Mutex;
std::map<Int8WeightKey, std::shared_ptr<PackedInt8Weights>> int8Weights;
std::map<Int8MatmulKey, std::shared_ptr<Int8Matmul>> int8Matmuls;

std::vector<int32_t> columnSums(const MemRefI8 &b) {
  int64_t k = b.sizes[0], n = b.sizes[1];
  std::vector<int32_t> sums(n, 0);
  for (int64_t r = 0; r < k; ++r)
    for (int64_t c = 0; c < n; ++c)
      sums[c] += b.data()[r * b.strides[0] + c * b.strides[1]];
  return sums;
}

std::map<Int8WeightKey, std::vector<int32_t>> int8ColumnSums;

/// A constant weight's column sums, computed once (the kernels without
/// oneDNN would otherwise read the whole weight again on every call).
const std::vector<int32_t> &constantColumnSums(const MemRefI8 &b) {
  Int8WeightKey key{b.data(), b.sizes[0], b.sizes[1], b.strides[0], b.strides[1]};
  std::lock_guard<std::mutex> lock(int8Mutex);
  auto it = int8ColumnSums.find(key);
  if (it == int8ColumnSums.end())
    it = int8ColumnSums.emplace(key, columnSums(b)).first;
  return it->second;
}

/// The oneDNN s8 x s8 -> s32 product for this shape (weights packed once
/// when constant), or null when oneDNN has no kernel for it.
std::shared_ptr<Int8Matmul> int8MatmulFor(const MemRefI8 &a, const MemRefI8 &b,
                                          const MemRefI32 &c, bool constant) {
  Int8WeightKey weightKey{b.data(), b.sizes[0], b.sizes[1], b.strides[0], b.strides[1]};
  Int8MatmulKey key{weightKey, constant, a.sizes[0], a.strides[0], c.strides[0]};
  std::lock_guard<std::mutex> lock(int8Mutex);
  auto it = int8Matmuls.find(key);
  if (it != int8Matmuls.end())
    return it->second;
  memory::desc src = describe(a.sizes, a.strides, 2, memory::data_type::s8);
  memory::desc dst = describe(c.sizes, c.strides, 2, memory::data_type::s32);
  memory::desc plain = describe(b.sizes, b.strides, 2, memory::data_type::s8);
  auto entry = std::make_shared<Int8Matmul>();
  try {
    if (!constant) {
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, plain, dst), threadSafeAttr(),
                                      engine());
      entry->primitive = dnnl::matmul(pd);
      entry->scratchpadDesc = pd.scratchpad_desc();
      entry->weightsDesc = plain;
    } else {
      std::shared_ptr<PackedInt8Weights> &shared = int8Weights[weightKey];
      std::optional<dnnl::matmul::primitive_desc> pd;
      if (shared) {
        try {
          pd.emplace(dnnl::matmul::desc(src, shared->weights.get_desc(), dst), threadSafeAttr(),
                     engine());
          entry->packed = shared;
        } catch (const dnnl::error &) {
          pd.reset(); // no kernel for that layout at this shape: pack again
        }
      }
      if (!pd) {
        memory::desc any({b.sizes[0], b.sizes[1]}, memory::data_type::s8,
                         memory::format_tag::any);
        pd.emplace(dnnl::matmul::desc(src, any, dst), threadSafeAttr(), engine());
        auto weights = std::make_shared<PackedInt8Weights>();
        weights->weights = memory(pd->weights_desc(), engine());
        memory given(plain, engine(), const_cast<int8_t *>(b.data()));
        reorderInto(given, weights->weights);
        stream().wait();
        weights->columnSums = columnSums(b);
        if (!shared)
          shared = weights;
        entry->packed = weights;
      }
      entry->primitive = dnnl::matmul(*pd);
      entry->scratchpadDesc = pd->scratchpad_desc();
      entry->weightsDesc = pd->weights_desc();
    }
  } catch (const dnnl::error &) {
    entry = nullptr;
  }
  int8Matmuls.emplace(key, entry);
  return entry;
}

/// Rows [r0, r1) of A B in int32, exactly: each row's sums over columns in
/// slices that stay in L1, the int8 products widened to int32.
template <typename Out>
__attribute__((always_inline)) inline void int8ProductRows(const MemRefI8 &a, const MemRefI8 &b, Out out, int64_t r0,
                            int64_t r1) {
  constexpr int64_t kSlice = 512;
  int64_t k = a.sizes[1], n = b.sizes[1];
  int32_t acc[kSlice];
  for (int64_t i = r0; i < r1; ++i)
    for (int64_t s0 = 0; s0 < n; s0 += kSlice) {
      int64_t width = std::min(kSlice, n - s0);
      for (int64_t j = 0; j < width; ++j)
        acc[j] = 0;
      for (int64_t r = 0; r < k; ++r) {
        int32_t x = a.data()[i * a.strides[0] + r * a.strides[1]];
        const int8_t *row = b.data() + r * b.strides[0] + s0 * b.strides[1];
        if (b.strides[1] == 1)
          for (int64_t j = 0; j < width; ++j)
            acc[j] += x * int32_t(row[j]);
        else
          for (int64_t j = 0; j < width; ++j)
            acc[j] += x * int32_t(row[j * b.strides[1]]);
      }
      for (int64_t j = 0; j < width; ++j)
        out(i, s0 + j) = acc[j];
    }
}

struct Int8ProductJob {
  const MemRefI8 *a, *b;
  const MemRefI32 *c;
};

void int8ProductShare(int64_t r0, int64_t r1, void *context) {
  auto *job = static_cast<const Int8ProductJob *>(context);
  const MemRefI32 &c = *job->c;
  int8ProductRows(*job->a, *job->b,
                  [&](int64_t i, int64_t j) -> int32_t & {
                    return c.data()[i * c.strides[0] + j * c.strides[1]];
                  },
                  r0, r1);
}

__attribute__((target("avx2"))) void int8ProductShareAvx2(int64_t r0, int64_t r1,
                                                           void *context) {
  auto *job = static_cast<const Int8ProductJob *>(context);
  const MemRefI32 &c = *job->c;
  int8ProductRows(*job->a, *job->b,
                  [&](int64_t i, int64_t j) -> int32_t & {
                    return c.data()[i * c.strides[0] + j * c.strides[1]];
                  },
                  r0, r1);
}

/// A B into `c` without oneDNN: on CPUs without VNNI, oneDNN's int8 kernels
/// multiply with vpmaddubsw, whose 16-bit pair sums saturate for full-range
/// operands (255 * 127 * 2 > 32767; ONNX Runtime's reduce_range exists for
/// this), so hasten computes those products itself, exactly.
void int8ProductExact(const MemRefI8 &a, const MemRefI8 &b, const MemRefI32 &c) {
  Int8ProductJob job{&a, &b, &c};
  auto share = hasten::runtime::cpuCapabilities().avx2 ? int8ProductShareAvx2
                                                        : int8ProductShare;
  ::parallelFor(a.sizes[0], a.sizes[0] * a.sizes[1] * b.sizes[1] >= (1 << 16) ? a.sizes[0] : 0,
                share, &job);
}

/// C (+)= sum_k (A[m, k] - za) (B[k, n] - zb): A B (oneDNN's with VNNI,
/// else int8ProductExact), then the zero points' terms, -zb rowsum(A)[m]
/// - za colsum(B)[n] + K za zb.
void int8Matmul(const MemRefI8 &a, const MemRefI8 &b, const MemRefI32 &c, int32_t za,
                int32_t zb, int32_t flags) {
  int64_t m = a.sizes[0], k = a.sizes[1], n = b.sizes[1];
  bool overwrite = flags & kOverwrite;
  auto at = [&](int64_t i, int64_t j) -> int32_t & {
    return c.data()[i * c.strides[0] + j * c.strides[1]];
  };
  // The product goes to C itself when it may be overwritten, else to a
  // dense temporary that is added.
  std::vector<int32_t> scratch;
  MemRefI32 product = c;
  if (!overwrite) {
    scratch.assign(m * n, 0);
    product = {scratch.data(), scratch.data(), 0, {m, n}, {n, 1}};
  }
  std::shared_ptr<Int8Matmul> p = hasten::runtime::cpuCapabilities().avx512Vnni
                                     ? int8MatmulFor(a, b, product, flags & kConstantWeights)
                                     : nullptr;
  std::vector<int32_t> sums;
  const std::vector<int32_t> *bSums = p && p->packed ? &p->packed->columnSums : nullptr;
  if (za != 0 && !bSums)
    bSums = (flags & kConstantWeights) ? &constantColumnSums(b) : &(sums = columnSums(b));
  auto out = [&](int64_t i, int64_t j) -> int32_t & {
    return product.data()[i * product.strides[0] + j * product.strides[1]];
  };
  if (p) {
    memory weights = p->packed ? p->packed->weights
                               : memory(p->weightsDesc, engine(), const_cast<int8_t *>(b.data()));
    p->primitive.execute(
        stream(),
        {{DNNL_ARG_SRC, memory(describe(a.sizes, a.strides, 2, memory::data_type::s8), engine(),
                               const_cast<int8_t *>(a.data()))},
         {DNNL_ARG_WEIGHTS, weights},
         {DNNL_ARG_DST, memory(describe(product.sizes, product.strides, 2,
                                        memory::data_type::s32),
                               engine(), product.data())},
         {DNNL_ARG_SCRATCHPAD, threadScratchpad(p->scratchpadDesc)}});
    stream().wait();
  } else {
    int8ProductExact(a, b, product);
  }
  // The zero points' terms: nothing to add for symmetric operands (ONNX
  // Runtime's int8 weights, say), else one per row plus one per column.
  std::vector<int32_t> columnTerms(n, 0);
  if (za != 0)
    for (int64_t j = 0; j < n; ++j)
      columnTerms[j] = -za * (*bSums)[j];
  for (int64_t i = 0; i < m; ++i) {
    int32_t rowSum = 0;
    if (zb != 0)
      for (int64_t r = 0; r < k; ++r)
        rowSum += a.data()[i * a.strides[0] + r * a.strides[1]];
    int32_t rowTerm = int32_t(k) * za * zb - zb * rowSum;
    if (overwrite && za == 0 && zb == 0)
      continue; // C already holds the product
    if (overwrite && c.strides[1] == 1) {
      int32_t *row = c.data() + i * c.strides[0];
      for (int64_t j = 0; j < n; ++j)
        row[j] += rowTerm + columnTerms[j];
      continue;
    }
    for (int64_t j = 0; j < n; ++j) {
      int32_t v = out(i, j) + rowTerm + columnTerms[j];
      if (overwrite)
        at(i, j) = v;
      else
        at(i, j) += v;
    }
  }
}

/// Erases the entries of `cache` whose weight (`weightOf(key)`) lies in
/// [begin, end).
template <typename Cache, typename WeightOf>
void eraseWeightsIn(Cache &cache, const void *begin, const void *end, WeightOf weightOf) {
  auto inside = [&](const void *p) {
    return std::less_equal<const void *>()(begin, p) && std::less<const void *>()(p, end);
  };
  for (auto it = cache.begin(); it != cache.end();)
    it = inside(weightOf(it->first)) ? cache.erase(it) : std::next(it);
}

} // namespace

void hasten::runtime::forgetWeights(const void *begin, const void *end) {
  auto weight = [](const auto &key) -> const void * { return std::get<0>(key); };
  auto packedWeight = [](const auto &key) -> const void * {
    return std::get<0>(std::get<0>(key));
  };
  {
    std::lock_guard<std::mutex> lock(packMutex);
    eraseWeightsIn(packedWeights, begin, end, weight);
    eraseWeightsIn(packed, begin, end, packedWeight);
  }
  {
    std::lock_guard<std::mutex> lock(bf16GemvMutex);
    eraseWeightsIn(bf16GemvPacks, begin, end, weight);
    eraseWeightsIn(f32GemvPacks, begin, end, weight);
  }
  std::lock_guard<std::mutex> lock(int8Mutex);
  eraseWeightsIn(int8Weights, begin, end, weight);
  eraseWeightsIn(int8ColumnSums, begin, end, weight);
  eraseWeightsIn(int8Matmuls, begin, end, packedWeight);
  packsForgotten.fetch_add(1, std::memory_order_release);
}

void hasten::runtime::f32StripsGemv(const F32Strips &w, const float *x, int64_t xStride,
                                     float *y, bool overwrite) {
  F32GemvJob job{&w, x, xStride, y, overwrite};
  ::parallelFor(w.strips, w.n >= 256 ? w.n : 0, f32GemvStrips, &job);
}

void hasten::runtime::f32StripsRows(const F32Strips &w, const float *x, int64_t xRowStride,
                                     int64_t xStride, int64_t rows, float *y,
                                     int64_t yRowStride, bool overwrite) {
  F32GemmJob job{&w, x, xRowStride, xStride, y, yRowStride, rows, overwrite};
  ::parallelFor(w.strips, w.n >= 256 ? w.n * rows : 0, f32GemmStrips, &job);
}

void hasten::runtime::bf16StripsGemv(const Bf16Strips &w, const float *x, int64_t xStride,
                                      float *y, bool overwrite) {
  thread_local std::vector<uint32_t> xPairs;
  xPairs.assign(w.pairs, 0);
  for (int64_t r = 0; r < w.k; ++r)
    xPairs[r / 2] |= (uint32_t)toBf16(x[r * xStride]) << (16 * (r % 2));
  Bf16GemvJob job{&w, xPairs.data(), y, overwrite};
  ::parallelFor(w.strips, w.n >= 256 ? w.n : 0, bf16GemvStrips, &job);
}

/// A GEMM over weights the compiler stored as oneDNN's BA16a64b (f32) or
/// BA16a64b2a (bf16): primitives by shape, over the weights in place. False
/// when oneDNN has no optimized kernel for them (it would fall back to its
/// reference implementation), so that the caller uses its own.
bool hasten::runtime::stripsMatmulOneDnn(const MemRefDescriptor<float, 2> &a, const void *w,
                                          const MemRefDescriptor<float, 2> &c, bool bf16,
                                          bool overwrite) {
  struct Primitive {
    std::optional<dnnl::matmul> matmul;
    memory::desc srcDesc, scratchpadDesc, weightsDesc;
  };
  using Key = std::tuple<const void *, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                         bool, bool>;
  static std::mutex mutex;
  static std::map<Key, std::shared_ptr<Primitive>> cache;
  int64_t m = a.sizes[0], k = a.sizes[1], n = c.sizes[1];
  Key key{w, m, k, n, a.strides[0], c.strides[0], a.strides[1], bf16, overwrite};
  // The primitive for this problem, shared by the threads.
  auto primitive = [&]() -> std::shared_ptr<Primitive> {
    std::lock_guard<std::mutex> lock(mutex);
    auto &slot = cache[key];
    if (!slot) {
      slot = std::make_shared<Primitive>();
      auto type = bf16 ? memory::data_type::bf16 : memory::data_type::f32;
      memory::desc weights({k, n}, type,
                           bf16 ? memory::format_tag::BA16a64b2a : memory::format_tag::BA16a64b);
      memory::desc src = bf16 ? memory::desc({m, k}, type, memory::format_tag::ab)
                              : describe(a.sizes, a.strides, 2, type);
      memory::desc dst = describe(c.sizes, c.strides, 2, memory::data_type::f32);
      try {
        dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, weights, dst),
                                        outputAttr(overwrite ? kOverwrite : 0), engine());
        if (std::string(pd.impl_info_str()).find("ref") == std::string::npos) {
          slot->matmul.emplace(pd);
          slot->srcDesc = pd.src_desc();
          slot->scratchpadDesc = pd.scratchpad_desc();
          slot->weightsDesc = pd.weights_desc();
        }
      } catch (const dnnl::error &) {
      }
    }
    return slot;
  };
  // The calling thread's bound operands for each primitive.
  struct Bound {
    std::shared_ptr<Primitive> primitive;
    std::optional<BoundMatmul> operands;
  };
  constexpr size_t kMaxBound = 256;
  thread_local std::map<Key, Bound> bound;
  auto it = bound.find(key);
  if (it == bound.end()) {
    std::shared_ptr<Primitive> p = primitive();
    if (bound.size() >= kMaxBound)
      bound.clear();
    Bound b{p, std::nullopt};
    if (p->matmul)
      b.operands.emplace(describe(a.sizes, a.strides, 2, memory::data_type::f32), p->srcDesc,
                         p->weightsDesc,
                         describe(c.sizes, c.strides, 2, memory::data_type::f32),
                         p->scratchpadDesc);
    it = bound.emplace(key, std::move(b)).first;
  }
  Bound &b = it->second;
  if (!b.primitive->matmul)
    return false;
  b.operands->run(*b.primitive->matmul, a.data(), w, c.data());
  return true;
}

void hasten::runtime::parallelFor(int64_t count, int64_t work,
                                  void (*body)(int64_t, int64_t, void *), void *context) {
  ::parallelFor(count, work, body, context);
}

void hasten::runtime::parallelForBalanced(int64_t count, int64_t work,
                                          void (*body)(int64_t, int64_t, void *),
                                          void *context) {
  ::parallelForBalanced(count, work, body, context);
}

extern "C" {

/// Runs iterations [0, count) of an outlined generated loop. `work` is the
/// loop's total iteration count, or 0 when the compiler judged it too small
/// to be worth waking the pool.
__attribute__((visibility("default"))) void
hasten_rt_parallel_for(int64_t count, int64_t work, LoopBody body, void *context) {
  parallelFor(count, work, body, context);
}

__attribute__((visibility("default"))) void
_mlir_ciface_hasten_rt_matmul_f32(MemRef<2> *a, MemRef<2> *b, MemRef<2> *c, int32_t flags) {
  guarded("matmul", [&] {
    if (a->sizes[0] == 0 || b->sizes[1] == 0 || a->sizes[1] == 0)
      return;
    batchMatmul(asBatch(*a), asBatch(*b), asBatch(*c), flags);
  });
}

__attribute__((visibility("default"))) void
_mlir_ciface_hasten_rt_batch_matmul_f32(MemRef<3> *a, MemRef<3> *b, MemRef<3> *c,
                                        int32_t flags) {
  guarded("batch_matmul", [&] {
    if (a->sizes[0] == 0 || a->sizes[1] == 0 || b->sizes[2] == 0 || a->sizes[2] == 0)
      return;
    batchMatmul(*a, *b, *c, flags);
  });
}

/// The same with the weight packed by the compiler (include/hasten/
/// WeightLayout.h; the format in flags bits 8-15).
__attribute__((visibility("default"))) void
_mlir_ciface_hasten_rt_matmul_packed(MemRef<2> *a, hasten::runtime::MemRefDescriptor<uint8_t, 1> *w,
                                     MemRef<2> *c, int32_t flags) {
  guarded("matmul", [&] {
    if (a->sizes[0] == 0 || c->sizes[1] == 0)
      return;
    hasten::runtime::packedMatmul(*a, w->data(), *c, flags);
  });
}

/// The same with constant weights that the compiler stored as bf16 (B's
/// descriptor points at bf16 elements; A and C are f32).
__attribute__((visibility("default"))) void
_mlir_ciface_hasten_rt_matmul_bf16w(MemRef<2> *a, MemRef<2> *b, MemRef<2> *c, int32_t flags) {
  _mlir_ciface_hasten_rt_matmul_f32(a, b, c, flags | kBf16 | kBf16Storage | kConstantWeights);
}

__attribute__((visibility("default"))) void
_mlir_ciface_hasten_rt_batch_matmul_bf16w(MemRef<3> *a, MemRef<3> *b, MemRef<3> *c,
                                          int32_t flags) {
  _mlir_ciface_hasten_rt_batch_matmul_f32(a, b, c,
                                          flags | kBf16 | kBf16Storage | kConstantWeights);
}

/// C (+)= (A - za)(B - zb) on int8 operands with int32 results (B constant
/// with kConstantWeights: packed once, at first use).
__attribute__((visibility("default"))) void
_mlir_ciface_hasten_rt_matmul_i8(MemRefI8 *a, MemRefI8 *b, MemRefI32 *c, int32_t za, int32_t zb,
                                 int32_t flags) {
  guarded("matmul_i8", [&] {
    if (a->sizes[0] == 0 || b->sizes[1] == 0)
      return;
    if (a->sizes[1] == 0) {
      if (flags & kOverwrite)
        for (int64_t i = 0; i < c->sizes[0]; ++i)
          for (int64_t j = 0; j < c->sizes[1]; ++j)
            c->data()[i * c->strides[0] + j * c->strides[1]] = 0;
      return;
    }
    int8Matmul(*a, *b, *c, za, zb, flags);
  });
}

} // extern "C"
