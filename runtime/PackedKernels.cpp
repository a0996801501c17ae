//===- PackedKernels.cpp - matmuls over weights the compiler packed --------===//
//
// hasten_rt_matmul_packed's kernels: the weight arrives in the layout the
// compiler stored (include/hasten/WeightLayout.h, mapped read-only from the
// module), so nothing is repacked or copied at run time.
//
//   one row (decode)   a GEMV per format that streams each strip once: f32,
//                      bf16 (vdpbf16ps), int8 and int4 on vpdpbusd (AVX-512
//                      VNNI) or vpmaddwd/vpmaddubsw (AVX2), with x quantized
//                      per group of rows: to 14 bits for int8 (two int8
//                      planes for vpdpbusd), so that int8's error is its
//                      weights' alone; to int8 for int4 (as llama.cpp's
//                      Q4 x Q8 dot product). VNNI and AVX2 give the same bits;
//   up to 16 rows      the same per-row kernel over each strip while it is
//                      in cache, so that a row scores exactly as decoding
//                      it would (speculative verification relies on it);
//   more rows          f32/bf16 strips on oneDNN's GEMM in place; quantized
//                      strips dequantized one at a time into the f32 strip
//                      GEMM.
//
// Without AVX-512 (AVX2 for int8 and int4) a format takes a portable path
// (dequantize a strip, then plain loops).
//
//===----------------------------------------------------------------------===//

#include "CpuFeatures.h"
#include "RuntimeInternal.h"
#include "hasten/KernelAbi.h"
#include "hasten/WeightLayout.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

using namespace hasten::abi;
using hasten::runtime::MemRefDescriptor;

namespace {

using Matrix = MemRefDescriptor<float, 2>;

/// One product: the packed weight, its layout, and the rows of x and y.
struct PackedJob {
  StripLayout layout;
  const uint8_t *w;
  const float *x;
  int64_t xRowStride, xStride;
  float *y;
  int64_t yRowStride, rows;
  bool overwrite;
  /// int8 and int4: x quantized per row and group, and the kernel of one
  /// strip and row.
  const struct QuantizedRows *xq;
  void (*stripRow)(const PackedJob &, int64_t, int64_t);
};

/// Writes (or adds) one strip's 64 results, clipped to n.
inline void storeResults(const float *out, float *y, int64_t n0, int64_t n, bool overwrite) {
  int64_t width = std::min(kStripWidth, n - n0);
  for (int64_t j = 0; j < width; ++j)
    y[n0 + j] = overwrite ? out[j] : y[n0 + j] + out[j];
}

//===----------------------------------------------------------------------===//
// int8 and int4 strips, one row of x (AVX-512)
//===----------------------------------------------------------------------===//

/// x quantized for the GEMVs of the quantized formats, per row and group of
/// rows, each group with its scale (max |x| over the largest level, rounded
/// to nearest even) and sum. int4 takes int8 values in groups of its own G
/// (vpdpbusd's signed side, as llama.cpp's Q4 x Q8 dot product). int8 takes
/// 14-bit values (|xq| <= 8191) in groups of kInt8XGroup, so that an int8
/// product's error is its weight's alone: as int16 for the AVX2 GEMV, and
/// split into two int8 planes for vpdpbusd, xq = 128 high + low with low in
/// [0, 127] and high in [-64, 63].
struct QuantizedRows {
  int64_t group = 0, groups = 0;
  std::vector<int8_t> narrow;     // int4: [rows][Kp]
  std::vector<int16_t> wide;      // int8: [rows][Kp]
  std::vector<int8_t> high, low;  // int8: [rows][Kp]
  std::vector<float> scales;      // [rows][groups]
  std::vector<int32_t> sums;      // [rows][groups]
};

/// The largest level of x quantized to T: int8 for int4, 14 bits in int16
/// for int8 (what the two int8 planes hold).
template <typename T> constexpr float kXLevels = sizeof(T) == 1 ? 127.0f : 8191.0f;

/// Rows per scale of x in the int8 GEMVs: in a group, the unsigned bytes
/// times x and the zero point's share (up to 255 times x's sum) each stay
/// within 128 * 255 * 8191 < 2^28, so no int32 sum wraps.
constexpr int64_t kInt8XGroup = 128;

/// One group of x quantized: `count` values, contiguous or `stride` apart,
/// into T's symmetric levels (kXLevels: int8 +-127, int16 +-8191); returns their
/// sum, and the scale through `scale`.
template <typename T>
int32_t quantizeGroup(const float *x, int64_t stride, int64_t count, T *out, float &scale) {
  constexpr float kLevels = kXLevels<T>;
  float amax = 0.0f;
  for (int64_t r = 0; r < count; ++r)
    amax = std::max(amax, std::fabs(x[r * stride]));
  scale = amax / kLevels;
  if (scale == 0.0f)
    return 0;
  int32_t sum = 0;
  for (int64_t r = 0; r < count; ++r) {
    T v = (T)std::clamp(roundHalfEven(x[r * stride] / scale), -kLevels, kLevels);
    out[r] = v;
    sum += v;
  }
  return sum;
}

/// The same for contiguous x, 16 values at a time (count a multiple of 16):
/// the same divisions and roundings, so the same values. max(|x|, amax)
/// keeps amax for a NaN, as std::max(amax, |x|) does.
template <typename T>
__attribute__((target("avx512f,avx512bw"))) int32_t
quantizeGroup512(const float *x, int64_t count, T *out, float &scale) {
  constexpr float kLevels = kXLevels<T>;
  __m512 amax = _mm512_setzero_ps();
  for (int64_t r = 0; r < count; r += 16)
    amax = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + r)), amax);
  scale = _mm512_reduce_max_ps(amax) / kLevels;
  if (scale == 0.0f)
    return 0;
  const __m512 divisor = _mm512_set1_ps(scale), magic = _mm512_set1_ps(12582912.0f),
               low = _mm512_set1_ps(-kLevels), high = _mm512_set1_ps(kLevels);
  __m512i sum = _mm512_setzero_si512();
  for (int64_t r = 0; r < count; r += 16) {
    __m512 v = _mm512_div_ps(_mm512_loadu_ps(x + r), divisor);
    v = _mm512_sub_ps(_mm512_add_ps(v, magic), magic); // to nearest even, as roundHalfEven
    __m512i q = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(v, low), high));
    sum = _mm512_add_epi32(sum, q);
    if constexpr (sizeof(T) == 1)
      _mm_storeu_si128(reinterpret_cast<__m128i *>(out + r), _mm512_cvtepi32_epi8(q));
    else
      _mm256_storeu_si256(reinterpret_cast<__m256i *>(out + r), _mm512_cvtepi32_epi16(q));
  }
  return _mm512_reduce_add_epi32(sum);
}

/// The same on AVX2, 8 values at a time (count a multiple of 8).
template <typename T>
__attribute__((target("avx2,fma"))) int32_t quantizeGroup256(const float *x, int64_t count,
                                                             T *out, float &scale) {
  constexpr float kLevels = kXLevels<T>;
  const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 amax = _mm256_setzero_ps();
  for (int64_t r = 0; r < count; r += 8)
    amax = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + r), magnitude), amax);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, amax);
  float top = 0.0f;
  for (float lane : lanes)
    top = std::max(top, lane);
  scale = top / kLevels;
  if (scale == 0.0f)
    return 0;
  const __m256 divisor = _mm256_set1_ps(scale), magic = _mm256_set1_ps(12582912.0f),
               low = _mm256_set1_ps(-kLevels), high = _mm256_set1_ps(kLevels);
  __m256i sum = _mm256_setzero_si256();
  for (int64_t r = 0; r < count; r += 8) {
    __m256 v = _mm256_div_ps(_mm256_loadu_ps(x + r), divisor);
    v = _mm256_sub_ps(_mm256_add_ps(v, magic), magic);
    __m256i q = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, low), high));
    sum = _mm256_add_epi32(sum, q);
    __m128i words = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    if constexpr (sizeof(T) == 1)
      _mm_storel_epi64(reinterpret_cast<__m128i *>(out + r), _mm_packs_epi16(words, words));
    else
      _mm_storeu_si128(reinterpret_cast<__m128i *>(out + r), words);
  }
  alignas(32) int32_t sums[8];
  _mm256_store_si256(reinterpret_cast<__m256i *>(sums), sum);
  return sums[0] + sums[1] + sums[2] + sums[3] + sums[4] + sums[5] + sums[6] + sums[7];
}

/// The rows of a into `values` ([rows][Kp], zero past K), per group of
/// q.group rows (the last group may be shorter).
template <typename T>
void quantizeRows(const Matrix &a, const StripLayout &l, QuantizedRows &q, std::vector<T> &values) {
  int64_t rows = a.sizes[0];
  values.assign(size_t(rows * l.kPadded), 0);
  q.scales.resize(size_t(rows * q.groups));
  q.sums.resize(size_t(rows * q.groups));
  const hasten::runtime::CpuCapabilities &cpu = hasten::runtime::cpuCapabilities();
  bool contiguous = a.strides[1] == 1;
  for (int64_t row = 0; row < rows; ++row)
    for (int64_t g = 0; g < q.groups; ++g) {
      int64_t r0 = g * q.group, count = std::max<int64_t>(0, std::min(l.k, r0 + q.group) - r0);
      const float *x = a.data() + row * a.strides[0] + r0 * a.strides[1];
      T *out = values.data() + row * l.kPadded + r0;
      float &scale = q.scales[row * q.groups + g];
      int32_t &sum = q.sums[row * q.groups + g];
      if (contiguous && count % 16 == 0 && cpu.avx512)
        sum = quantizeGroup512(x, count, out, scale);
      else if (contiguous && count % 8 == 0 && cpu.avx2)
        sum = quantizeGroup256(x, count, out, scale);
      else
        sum = quantizeGroup(x, a.strides[1], count, out, scale);
    }
}

/// x for the GEMVs of l's format; int8's two planes only where the VNNI
/// GEMV reads them (`planes`), the AVX2 one reads the int16 values.
void quantizeRows(const Matrix &a, const StripLayout &l, QuantizedRows &q, bool planes) {
  bool int8 = isInt8(l.format);
  q.group = int8 ? kInt8XGroup : l.group;
  q.groups = (l.kPadded + q.group - 1) / q.group;
  if (!int8)
    return quantizeRows(a, l, q, q.narrow);
  quantizeRows(a, l, q, q.wide);
  if (!planes)
    return;
  q.high.resize(q.wide.size());
  q.low.resize(q.wide.size());
  for (size_t i = 0; i < q.wide.size(); ++i) {
    q.high[i] = int8_t(q.wide[i] >> 7); // floor: low = xq - 128 high is in [0, 127]
    q.low[i] = int8_t(q.wide[i] & 127);
  }
}

/// The zero points of 16 columns (from 16 bytes) times x's group sum: what
/// the unsigned values' offset adds to their dot products.
__attribute__((target("avx512f,avx512bw"), always_inline)) inline __m512i
zeroPointShare512(const uint8_t *zeroPoints, int32_t xSum) {
  __m512i zp = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(zeroPoints)));
  return _mm512_mullo_epi32(zp, _mm512_set1_epi32(xSum));
}

/// Prefetches for the cache line at `line` of a strip that a quantized GEMV
/// is about to read: 4 KiB ahead into L1 and 16 KiB ahead into L2. One core
/// streaming int4 strips with the hardware prefetchers alone kept too few
/// reads in flight (about 8 GB/s from L3 or DRAM on Emerald Rapids, where
/// the f32 GEMV's two streams reached the read probe): the L1 prefetches
/// made int4 decode about 1.45x faster on one thread (2, 4 and 8 KiB alike);
/// the L2 ones, in interleaved runs on the same host, int4 and int8 decode
/// another 5-10% faster on one thread (the same on two).
__attribute__((always_inline)) inline void prefetchStrip(const uint8_t *line) {
  _mm_prefetch(reinterpret_cast<const char *>(line + 4096), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char *>(line + 16384), _MM_HINT_T1);
}

/// The VNNI GEMV of int4 for one strip and row of x, quantized to int8 per
/// group of the weight's G rows: vpdpbusd multiplies four rows of a column
/// (nibbles) by four int8 values of x and adds them into one int32 per
/// column, 64 products an instruction; a group's sums, less the nibbles'
/// offset's share (8 * sum xq, or the column's zero point times it), are
/// scaled by x's scale and the group's f16 scales into f32:
///   y[n] = sum_g wscale[g][n] xscale[g] (sum_k nibble xq - 8 sum xq)
template <bool ZeroPoints>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void
vnniInt4Strip(const PackedJob &job, int64_t s, int64_t row) {
  const StripLayout &l = job.layout;
  const QuantizedRows &q = *job.xq;
  const uint8_t *strip = job.w + size_t(s) * l.stripBytes;
  const int8_t *xq = q.narrow.data() + row * l.kPadded;
  const float *xScales = q.scales.data() + row * q.groups;
  const int32_t *xSums = q.sums.data() + row * q.groups;
  const __m512i low = _mm512_set1_epi8(0x0f);
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                   _mm512_setzero_ps()};
  for (int64_t g = 0; g < q.groups; ++g) {
    if (xScales[g] == 0.0f)
      continue;
    __m512i part[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                       _mm512_setzero_si512()};
    for (int64_t t = g * l.group / 4; t < (g + 1) * l.group / 4; ++t) {
      int32_t quad;
      std::memcpy(&quad, xq + 4 * t, 4);
      __m512i x = _mm512_set1_epi32(quad);
      for (int h = 0; h < 2; ++h) {
        prefetchStrip(strip + t * 128 + h * 64);
        __m512i bytes = _mm512_loadu_si512(strip + t * 128 + h * 64);
        __m512i lo = _mm512_and_si512(bytes, low);                        // columns 32h + 0..15
        __m512i hi = _mm512_and_si512(_mm512_srli_epi16(bytes, 4), low); // columns 32h + 16..31
        part[2 * h] = _mm512_dpbusd_epi32(part[2 * h], lo, x);
        part[2 * h + 1] = _mm512_dpbusd_epi32(part[2 * h + 1], hi, x);
      }
    }
    __m512i offset = _mm512_set1_epi32(8 * xSums[g]);
    __m512 xScale = _mm512_set1_ps(xScales[g]);
    size_t at = (size_t(s) * l.scaleGroups() + g) * kStripWidth;
    for (int v = 0; v < 4; ++v) {
      __m512i share = offset;
      if constexpr (ZeroPoints)
        share = zeroPointShare512(job.w + l.zeroPointOffset + at + 16 * v, xSums[g]);
      __m512 dot = _mm512_cvtepi32_ps(_mm512_sub_epi32(part[v], share));
      __m512 scale = _mm512_mul_ps(
          _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(
              reinterpret_cast<const uint16_t *>(job.w + l.scaleOffset) + at + 16 * v))),
          xScale);
      acc[v] = _mm512_fmadd_ps(scale, dot, acc[v]);
    }
  }
  alignas(64) float out[kStripWidth];
  for (int v = 0; v < 4; ++v)
    _mm512_store_ps(out + 16 * v, acc[v]);
  storeResults(out, job.y + row * job.yRowStride, s * kStripWidth, l.n, job.overwrite);
}

/// The VNNI GEMV of int8 for one strip and row of x, quantized to 14 bits
/// per group of kInt8XGroup rows and split into two int8 planes (xq = 128
/// high + low): vpdpbusd multiplies four rows of a column (the unsigned
/// bytes u = q + 128, or the model's own with zero points) by four values of
/// each plane, 64 products an instruction; a group's sums combine exactly in
/// int32, less the offset's share (128 * sum xq, or the column's zero point
/// times it), and are scaled by x's scale into f32; the column's scale
/// applies once at the end.
///   y[n] = wscale[n] sum_g xscale[g] (128 sum_k u high + sum_k u low - zp sum xq)
template <bool ZeroPoints>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void
vnniInt8Strip(const PackedJob &job, int64_t s, int64_t row) {
  const StripLayout &l = job.layout;
  const QuantizedRows &q = *job.xq;
  const uint8_t *strip = job.w + size_t(s) * l.stripBytes;
  const int8_t *high = q.high.data() + row * l.kPadded, *low = q.low.data() + row * l.kPadded;
  const float *xScales = q.scales.data() + row * q.groups;
  const int32_t *xSums = q.sums.data() + row * q.groups;
  __m512 acc[4];
  for (__m512 &a : acc)
    a = _mm512_setzero_ps();
  for (int64_t g = 0; g < q.groups; ++g) {
    if (xScales[g] == 0.0f)
      continue;
    __m512i highPart[4], lowPart[4];
    for (int v = 0; v < 4; ++v)
      highPart[v] = lowPart[v] = _mm512_setzero_si512();
    int64_t end = std::min(l.kPadded, (g + 1) * q.group) / 4;
    for (int64_t t = g * q.group / 4; t < end; ++t) {
      int32_t quads[2];
      std::memcpy(&quads[0], high + 4 * t, 4);
      std::memcpy(&quads[1], low + 4 * t, 4);
      __m512i xHigh = _mm512_set1_epi32(quads[0]), xLow = _mm512_set1_epi32(quads[1]);
      for (int v = 0; v < 4; ++v) {
        prefetchStrip(strip + t * 256 + v * 64);
        __m512i bytes = _mm512_loadu_si512(strip + t * 256 + v * 64);
        highPart[v] = _mm512_dpbusd_epi32(highPart[v], bytes, xHigh);
        lowPart[v] = _mm512_dpbusd_epi32(lowPart[v], bytes, xLow);
      }
    }
    __m512 xScale = _mm512_set1_ps(xScales[g]);
    for (int v = 0; v < 4; ++v) {
      __m512i share = ZeroPoints ? zeroPointShare512(job.w + l.zeroPointOffset + s * kStripWidth +
                                                         16 * v,
                                                     xSums[g])
                                 : _mm512_set1_epi32(128 * xSums[g]);
      __m512i dot = _mm512_sub_epi32(
          _mm512_add_epi32(_mm512_slli_epi32(highPart[v], 7), lowPart[v]), share);
      acc[v] = _mm512_fmadd_ps(xScale, _mm512_cvtepi32_ps(dot), acc[v]);
    }
  }
  const float *columnScales =
      reinterpret_cast<const float *>(job.w + l.scaleOffset) + s * kStripWidth;
  alignas(64) float out[kStripWidth];
  for (int v = 0; v < 4; ++v)
    _mm512_store_ps(out + 16 * v, _mm512_mul_ps(acc[v], _mm512_loadu_ps(columnScales + 16 * v)));
  storeResults(out, job.y + row * job.yRowStride, s * kStripWidth, l.n, job.overwrite);
}

//===----------------------------------------------------------------------===//
// int8 and int4 strips, one row of x (AVX2)
//===----------------------------------------------------------------------===//

// The AVX2 GEMVs do the VNNI kernels' arithmetic on 256-bit registers: the
// integer sums of a group are the same numbers, and the float steps the same
// operations in the same order, so every column gets the VNNI kernels'
// result, bit for bit. A strip is done a part at a time (int4: a half of 32
// columns, int8: a sixteen), so that the accumulators fit in 16 registers.

/// The dot products of 8 columns (32 bytes: four rows of each column side by
/// side) of nibbles with four int8 values of x, as int32: vpmaddubsw (pairs,
/// at most 2 * 15 * 127: no saturation) then vpmaddwd by ones: vpdpbusd's
/// four-row dot product.
__attribute__((target("avx2,fma,f16c"), always_inline)) inline __m256i
nibbleDot(__m256i nibbles, __m256i x) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(nibbles, x), _mm256_set1_epi16(1));
}

/// The zero points of 8 columns times x's group sum (AVX2).
__attribute__((target("avx2,fma,f16c"), always_inline)) inline __m256i
zeroPointShare256(const uint8_t *zeroPoints, int32_t xSum) {
  __m256i zp = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(zeroPoints)));
  return _mm256_mullo_epi32(zp, _mm256_set1_epi32(xSum));
}

/// The AVX2 GEMV of int4 (vnniInt4Strip's arithmetic), half a strip at a
/// time; each half is one cache line per row quad.
template <bool ZeroPoints>
__attribute__((target("avx2,fma,f16c"))) void avx2Int4Strip(const PackedJob &job, int64_t s,
                                                            int64_t row) {
  const StripLayout &l = job.layout;
  const QuantizedRows &q = *job.xq;
  const uint8_t *strip = job.w + size_t(s) * l.stripBytes;
  const int8_t *xq = q.narrow.data() + row * l.kPadded;
  const float *xScales = q.scales.data() + row * q.groups;
  const int32_t *xSums = q.sums.data() + row * q.groups;
  const __m256i low = _mm256_set1_epi8(0x0f);
  alignas(64) float out[kStripWidth];
  for (int half = 0; half < 2; ++half) {
    __m256 acc[4];
    for (__m256 &a : acc)
      a = _mm256_setzero_ps();
    for (int64_t g = 0; g < q.groups; ++g) {
      if (xScales[g] == 0.0f)
        continue;
      __m256i sums[4];
      for (__m256i &p : sums)
        p = _mm256_setzero_si256();
      for (int64_t t = g * l.group / 4; t < (g + 1) * l.group / 4; ++t) {
        int32_t quad;
        std::memcpy(&quad, xq + 4 * t, 4);
        __m256i x = _mm256_set1_epi32(quad);
        // Bytes 0..31 and 32..63 of the half: columns 0..7 and 8..15 in the
        // low nibbles, 16..23 and 24..31 in the high ones.
        const uint8_t *bytes = strip + t * 128 + half * 64;
        for (int b = 0; b < 2; ++b) {
          __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(bytes + 32 * b));
          __m256i lo = _mm256_and_si256(packed, low);
          __m256i hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low);
          sums[b] = _mm256_add_epi32(sums[b], nibbleDot(lo, x));
          sums[2 + b] = _mm256_add_epi32(sums[2 + b], nibbleDot(hi, x));
        }
      }
      __m256i offset = _mm256_set1_epi32(8 * xSums[g]);
      __m256 xScale = _mm256_set1_ps(xScales[g]);
      size_t at = (size_t(s) * l.scaleGroups() + g) * kStripWidth + half * 32;
      for (int v = 0; v < 4; ++v) {
        __m256i share = offset;
        if constexpr (ZeroPoints)
          share = zeroPointShare256(job.w + l.zeroPointOffset + at + 8 * v, xSums[g]);
        __m256 dot = _mm256_cvtepi32_ps(_mm256_sub_epi32(sums[v], share));
        __m256 scale = _mm256_mul_ps(
            _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(
                reinterpret_cast<const uint16_t *>(job.w + l.scaleOffset) + at + 8 * v))),
            xScale);
        acc[v] = _mm256_fmadd_ps(scale, dot, acc[v]);
      }
    }
    for (int v = 0; v < 4; ++v)
      _mm256_store_ps(out + half * 32 + 8 * v, acc[v]);
  }
  storeResults(out, job.y + row * job.yRowStride, s * kStripWidth, l.n, job.overwrite);
}

/// The AVX2 GEMV of int8 (vnniInt8Strip's arithmetic), a column sixteen at a
/// time (one cache line per row quad): 16 bytes (4 columns) widen to int16,
/// vpmaddwd multiplies them by x's 14-bit values (at most 2 * 255 * 8191 a
/// pair: no overflow), and vphaddd adds a column's two pair lanes; each
/// column's int32 sum is then vpdpbusd's 128 high + low.
template <bool ZeroPoints>
__attribute__((target("avx2,fma,f16c"))) void avx2Int8Strip(const PackedJob &job, int64_t s,
                                                            int64_t row) {
  const StripLayout &l = job.layout;
  const QuantizedRows &q = *job.xq;
  const uint8_t *strip = job.w + size_t(s) * l.stripBytes;
  const int16_t *xq = q.wide.data() + row * l.kPadded;
  const float *xScales = q.scales.data() + row * q.groups;
  const int32_t *xSums = q.sums.data() + row * q.groups;
  const float *columnScales =
      reinterpret_cast<const float *>(job.w + l.scaleOffset) + s * kStripWidth;
  alignas(32) float out[kStripWidth];
  for (int v = 0; v < 4; ++v) {
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t g = 0; g < q.groups; ++g) {
      if (xScales[g] == 0.0f)
        continue;
      __m256i pairs[4];
      for (__m256i &p : pairs)
        p = _mm256_setzero_si256();
      int64_t end = std::min(l.kPadded, (g + 1) * q.group) / 4;
      for (int64_t t = g * q.group / 4; t < end; ++t) {
        int64_t quad;
        std::memcpy(&quad, xq + 4 * t, 8);
        __m256i x = _mm256_set1_epi64x(quad);
        const uint8_t *bytes = strip + t * 256 + v * 64;
        for (int i = 0; i < 4; ++i) {
          __m256i w = _mm256_cvtepu8_epi16(
              _mm_loadu_si128(reinterpret_cast<const __m128i *>(bytes + 16 * i)));
          pairs[i] = _mm256_add_epi32(pairs[i], _mm256_madd_epi16(w, x));
        }
      }
      __m256 xScale = _mm256_set1_ps(xScales[g]);
      for (int h = 0; h < 2; ++h) {
        // Lanes 2c and 2c + 1 of pairs[i] are column 4i + c's: hadd gives
        // columns 0 1 4 5 | 2 3 6 7 of the eight, the permute orders them.
        __m256i dot = _mm256_permute4x64_epi64(
            _mm256_hadd_epi32(pairs[2 * h], pairs[2 * h + 1]), _MM_SHUFFLE(3, 1, 2, 0));
        __m256i share =
            ZeroPoints ? zeroPointShare256(job.w + l.zeroPointOffset + s * kStripWidth + 16 * v +
                                               8 * h,
                                           xSums[g])
                       : _mm256_set1_epi32(128 * xSums[g]);
        acc[h] = _mm256_fmadd_ps(xScale, _mm256_cvtepi32_ps(_mm256_sub_epi32(dot, share)), acc[h]);
      }
    }
    for (int h = 0; h < 2; ++h)
      _mm256_store_ps(out + 16 * v + 8 * h,
                      _mm256_mul_ps(acc[h], _mm256_loadu_ps(columnScales + 16 * v + 8 * h)));
  }
  storeResults(out, job.y + row * job.yRowStride, s * kStripWidth, l.n, job.overwrite);
}

/// Strips [begin, end), each for every row while it is in cache.
void quantizedStrips(int64_t begin, int64_t end, void *data) {
  auto *job = static_cast<PackedJob *>(data);
  for (int64_t s = begin; s < end; ++s)
    for (int64_t row = 0; row < job->rows; ++row)
      job->stripRow(*job, s, row);
}

//===----------------------------------------------------------------------===//
// Any format, a strip dequantized to f32 at a time
//===----------------------------------------------------------------------===//

/// Strip s of W as f32 rows of 64 (scales applied), k rows.
void dequantizeStrip(const StripLayout &l, const uint8_t *w, int64_t s, float *out) {
  const uint8_t *strip = w + size_t(s) * l.stripBytes;
  switch (l.format) {
  case WeightFormat::F32Strips:
    std::memcpy(out, strip, size_t(l.k) * kStripWidth * 4);
    return;
  case WeightFormat::Bf16Strips: {
    const auto *pairs = reinterpret_cast<const uint16_t *>(strip);
    for (int64_t r = 0; r < l.k; ++r)
      for (int64_t j = 0; j < kStripWidth; ++j) {
        uint32_t bits = uint32_t(pairs[(r / 2) * kStripWidth * 2 + j * 2 + (r % 2)]) << 16;
        std::memcpy(&out[r * kStripWidth + j], &bits, 4);
      }
    return;
  }
  case WeightFormat::Int8:
  case WeightFormat::Int8Zp: {
    const float *scales = reinterpret_cast<const float *>(w + l.scaleOffset) + s * kStripWidth;
    const uint8_t *zeroPoints = w + l.zeroPointOffset + s * kStripWidth;
    bool zp = hasZeroPoints(l.format);
    for (int64_t r = 0; r < l.k; ++r)
      for (int64_t j = 0; j < kStripWidth; ++j)
        out[r * kStripWidth + j] =
            float(int(strip[int8Byte(r, j)]) - (zp ? int(zeroPoints[j]) : 128)) * scales[j];
    return;
  }
  default: { // int4
    int64_t groups = l.kPadded / l.group;
    size_t first = size_t(s) * groups * kStripWidth;
    const auto *scales = reinterpret_cast<const uint16_t *>(w + l.scaleOffset) + first;
    const uint8_t *zeroPoints = w + l.zeroPointOffset + first;
    bool zp = hasZeroPoints(l.format);
    float groupScales[kStripWidth]; // widened once per group, not per element
    int groupZeros[kStripWidth];
    for (int64_t r = 0; r < l.k; ++r) {
      if (r % l.group == 0)
        for (int64_t j = 0; j < kStripWidth; ++j) {
          groupScales[j] = fromF16(scales[(r / l.group) * kStripWidth + j]);
          groupZeros[j] = zp ? zeroPoints[(r / l.group) * kStripWidth + j] : 8;
        }
      for (int64_t j = 0; j < kStripWidth; ++j) {
        bool high;
        uint8_t byte = strip[int4Byte(r, j, high)];
        int nibble = high ? (byte >> 4) : (byte & 15);
        out[r * kStripWidth + j] = float(nibble - groupZeros[j]) * groupScales[j];
      }
    }
    return;
  }
  case WeightFormat::Plain:
    return;
  }
}

/// Strips [begin, end): dequantized into a per-thread buffer, then every row
/// through the f32 strip GEMM (AVX-512) or plain loops.
void dequantizedStrips(int64_t begin, int64_t end, void *data) {
  auto *job = static_cast<PackedJob *>(data);
  const StripLayout &l = job->layout;
  thread_local std::vector<float> buffer;
  buffer.resize(size_t(l.k) * kStripWidth);
  bool avx512 = hasten::runtime::cpuCapabilities().avx512;
  for (int64_t s = begin; s < end; ++s) {
    dequantizeStrip(l, job->w, s, buffer.data());
    int64_t n0 = s * kStripWidth, width = std::min(kStripWidth, l.n - n0);
    if (avx512) {
      hasten::runtime::F32Strips strip{buffer.data(), l.k, l.k, width, 1};
      hasten::runtime::f32StripsRows(strip, job->x, job->xRowStride, job->xStride, job->rows,
                                     job->y + n0, job->yRowStride, job->overwrite);
      continue;
    }
    for (int64_t row = 0; row < job->rows; ++row) {
      float out[kStripWidth] = {};
      const float *x = job->x + row * job->xRowStride;
      for (int64_t r = 0; r < l.k; ++r) {
        float xr = x[r * job->xStride];
        const float *w = buffer.data() + r * kStripWidth;
        for (int64_t j = 0; j < kStripWidth; ++j)
          out[j] += xr * w[j];
      }
      float *y = job->y + row * job->yRowStride;
      for (int64_t j = 0; j < width; ++j)
        y[n0 + j] = job->overwrite ? out[j] : y[n0 + j] + out[j];
    }
  }
}

/// Rows that go through the per-row kernels (decode, verification, short
/// prompts); longer products take the GEMM paths.
constexpr int64_t kFewRows = 16;

} // namespace

void hasten::runtime::packedMatmul(const Matrix &a, const uint8_t *w, const Matrix &c,
                                   int32_t flags) {
  WeightFormat format = weightFormatOf(flags);
  int64_t m = a.sizes[0], k = a.sizes[1], n = c.sizes[1];
  if (format == WeightFormat::Plain || format > kLastWeightFormat)
    throw std::runtime_error("unknown packed weight format " + std::to_string(int(format)));
  if (c.strides[1] != 1)
    throw std::runtime_error("packed matmul: the output's columns must be contiguous");
  StripLayout layout = StripLayout::of(format, k, n);
  bool overwrite = flags & kOverwrite;
  const CpuCapabilities &cpu = cpuCapabilities();
  PackedJob job{layout, w, a.data(), a.strides[0], a.strides[1], c.data(), c.strides[0],
                m,      overwrite, nullptr, nullptr};
  int64_t work = n >= 256 ? n * m : 0;
  if (cpu.avx512) {
    if (format == WeightFormat::F32Strips) {
      F32Strips strips{reinterpret_cast<const float *>(w), k, layout.kPadded, n, layout.strips};
      if (m == 1)
        return f32StripsGemv(strips, a.data(), a.strides[1], c.data(), overwrite);
      if (m <= kFewRows || !stripsMatmulOneDnn(a, w, c, /*bf16=*/false, overwrite))
        return f32StripsRows(strips, a.data(), a.strides[0], a.strides[1], m, c.data(),
                             c.strides[0], overwrite);
      return;
    }
    if (format == WeightFormat::Bf16Strips && cpu.avx512Bf16) {
      Bf16Strips strips{reinterpret_cast<const uint32_t *>(w), k, layout.kPadded / 2, n,
                        layout.strips};
      if (m <= kFewRows) {
        for (int64_t row = 0; row < m; ++row)
          bf16StripsGemv(strips, a.data() + row * a.strides[0], a.strides[1],
                         c.data() + row * c.strides[0], overwrite);
        return;
      }
      if (stripsMatmulOneDnn(a, w, c, /*bf16=*/true, overwrite))
        return;
    }
  }
  // int8 and int4, a few rows: x quantized, then the VNNI or AVX2 GEMVs.
  bool int4 = int4Group(format) != 0, zeroPoints = hasZeroPoints(format);
  if ((isInt8(format) || int4) && m <= kFewRows && (cpu.avx512Vnni || cpu.avx2)) {
    thread_local QuantizedRows xq;
    quantizeRows(a, layout, xq, /*planes=*/cpu.avx512Vnni);
    job.xq = &xq;
    using StripFn = void (*)(const PackedJob &, int64_t, int64_t);
    static constexpr StripFn kVnni[2][2] = {{vnniInt8Strip<false>, vnniInt8Strip<true>},
                                            {vnniInt4Strip<false>, vnniInt4Strip<true>}};
    static constexpr StripFn kAvx2[2][2] = {{avx2Int8Strip<false>, avx2Int8Strip<true>},
                                            {avx2Int4Strip<false>, avx2Int4Strip<true>}};
    job.stripRow = (cpu.avx512Vnni ? kVnni : kAvx2)[int4][zeroPoints];
    return parallelFor(layout.strips, work, quantizedStrips, &job);
  }
  parallelFor(layout.strips, work, dequantizedStrips, &job);
}
