/*===- hasten/WeightLayout.h - constant weights as the kernels read them ===*
 *
 * The layouts in which the compiler stores a matmul's constant weight and
 * the runtime's kernels read it, so that nothing is repacked at load: the
 * byte layout, the quantization (int8 per output column, int4 per group of
 * rows and column), and the packing itself. Header-only: the compiler packs
 * with it, the runtime reads with it.
 *
 * Every format stores W (K rows, N columns, y = x * W) in strips of 64
 * columns; a strip is one contiguous stream that a decode GEMV reads in
 * order. Columns past N and rows past K are zero.
 *
 *   f32-strips   [strips][Kp = K rounded up to 16][64] f32: oneDNN's
 *                BA16a64b, so prefill's GEMM reads it as is.
 *   bf16-strips  [strips][Kp/2 = K rounded up to 32, halved][64][2] bf16:
 *                row pairs interleaved (oneDNN's BA16a64b2a; vdpbf16ps).
 *   int8         [strips][Kp / 4 row quads][4 column sixteens][16][4]
 *                bytes for Kp = K rounded up to 32: byte 4 j + i of the
 *                sixteen v holds q[4 t + i][16 v + j] + 128 (the four rows of
 *                a column side by side, as vpdpbusd takes them); then f32
 *                scale[strips * 64]: W[k][n] ~ q[k][n] * scale[n]
 *                (symmetric, |q| <= 127).
 *   int4-gG      [strips][Kp / 4 row quads][2 halves][64] bytes for
 *                Kp = K rounded up to G: in half h of quad t, byte 4 j + i
 *                holds row 4 t + i of column 32 h + j in its low nibble and
 *                of column 32 h + 16 + j in its high one (the four rows of a
 *                column side by side, as vpdpbusd takes them); then f16
 *                scale[strips][Kp / G][64]:
 *                W[k][n] ~ (nibble - 8) * scale[k / G][n], the scale the
 *                one of a few candidates (kInt4ScaleDivisors) with the least
 *                squared error over the group. G is 32, 64 or 128.
 *   int8-zp,     a weight that arrives asymmetric (ONNX Runtime's
 *   int4-gG-zp   MatMulNBits with zero points, a uint8 DequantizeLinear):
 *                the bytes (or nibbles) hold the model's unsigned values q
 *                as they are, and u8 zero points follow the scales, one per
 *                scale in the same order: W ~ (q - zp) * scale. The kernels
 *                subtract zp * sum(x) where the symmetric formats subtract
 *                the fixed 128 (8) * sum(x).
 *
 * The data starts at offset 0 (the blob is 64-byte aligned); scales start at
 * the next multiple of 64 after the data, zero points at the next after the
 * scales.
 *
 *===----------------------------------------------------------------------===*/

#ifndef HASTEN_WEIGHTLAYOUT_H
#define HASTEN_WEIGHTLAYOUT_H

#include "hasten/KernelAbi.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <vector>

namespace hasten::abi {

/// The format of a packed weight, in bits 8..15 of a matmul call's flags.
enum class WeightFormat : int32_t {
  Plain = 0, ///< a strided f32 (or bf16) memref, as before packing
  F32Strips = 1,
  Bf16Strips = 2,
  Int8 = 3,
  Int4G32 = 4,
  Int4G64 = 5,
  Int4G128 = 6,
  Int8Zp = 7,
  Int4G32Zp = 8,
  Int4G64Zp = 9,
  Int4G128Zp = 10,
};
constexpr WeightFormat kLastWeightFormat = WeightFormat::Int4G128Zp;
constexpr int32_t kWeightFormatShift = 8;
constexpr int32_t kWeightFormatMask = 0xff << kWeightFormatShift;

inline WeightFormat weightFormatOf(int32_t flags) {
  return WeightFormat((flags & kWeightFormatMask) >> kWeightFormatShift);
}

inline bool isInt8(WeightFormat format) {
  return format == WeightFormat::Int8 || format == WeightFormat::Int8Zp;
}
/// int4's rows per scale group, or 0 for the other formats.
inline int64_t int4Group(WeightFormat format) {
  switch (format) {
  case WeightFormat::Int4G32:
  case WeightFormat::Int4G32Zp:
    return 32;
  case WeightFormat::Int4G64:
  case WeightFormat::Int4G64Zp:
    return 64;
  case WeightFormat::Int4G128:
  case WeightFormat::Int4G128Zp:
    return 128;
  default:
    return 0;
  }
}
inline bool hasZeroPoints(WeightFormat format) {
  return format >= WeightFormat::Int8Zp && format <= WeightFormat::Int4G128Zp;
}
/// The int4 format of a group size (32, 64 or 128), with zero points or not.
inline WeightFormat int4Format(int64_t group, bool zeroPoints) {
  int offset = group == 32 ? 0 : group == 64 ? 1 : 2;
  return WeightFormat(int(zeroPoints ? WeightFormat::Int4G32Zp : WeightFormat::Int4G32) + offset);
}

inline const char *weightFormatName(WeightFormat format) {
  switch (format) {
  case WeightFormat::Plain:
    return "plain";
  case WeightFormat::F32Strips:
    return "f32-strips";
  case WeightFormat::Bf16Strips:
    return "bf16-strips";
  case WeightFormat::Int8:
    return "int8";
  case WeightFormat::Int4G32:
    return "int4-g32";
  case WeightFormat::Int4G64:
    return "int4-g64";
  case WeightFormat::Int4G128:
    return "int4-g128";
  case WeightFormat::Int8Zp:
    return "int8-zp";
  case WeightFormat::Int4G32Zp:
    return "int4-g32-zp";
  case WeightFormat::Int4G64Zp:
    return "int4-g64-zp";
  case WeightFormat::Int4G128Zp:
    return "int4-g128-zp";
  }
  return "unknown";
}

constexpr int64_t kStripWidth = 64;

inline int64_t roundUp(int64_t value, int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

/// Where the parts of a packed K x N weight lie.
struct StripLayout {
  WeightFormat format = WeightFormat::Plain;
  int64_t k = 0, n = 0;
  int64_t strips = 0;
  /// Rows stored per strip (K padded to the format's row block).
  int64_t kPadded = 0;
  /// int4's rows per scale group of W (and of x in its GEMV); 0 for the
  /// other formats.
  int64_t group = 0;
  /// Bytes of one strip's data.
  size_t stripBytes = 0;
  size_t scaleOffset = 0;
  /// Where the zero points start (formats with zero points).
  size_t zeroPointOffset = 0;
  size_t totalBytes = 0;

  /// Scale groups along K of a strip: 1 for int8 (per column), none for
  /// f32 and bf16.
  int64_t scaleGroups() const {
    return isInt8(format) ? 1 : int4Group(format) ? kPadded / group : 0;
  }

  static StripLayout of(WeightFormat format, int64_t k, int64_t n) {
    StripLayout l;
    l.format = format;
    l.k = k;
    l.n = n;
    l.strips = (n + kStripWidth - 1) / kStripWidth;
    switch (format) {
    case WeightFormat::Plain:
      return l;
    case WeightFormat::F32Strips:
      l.kPadded = roundUp(k, 16);
      l.stripBytes = size_t(l.kPadded) * kStripWidth * 4;
      break;
    case WeightFormat::Bf16Strips:
      l.kPadded = roundUp(k, 32);
      l.stripBytes = size_t(l.kPadded) * kStripWidth * 2;
      break;
    case WeightFormat::Int8:
    case WeightFormat::Int8Zp:
      l.kPadded = roundUp(k, 32);
      l.stripBytes = size_t(l.kPadded) * kStripWidth;
      break;
    default:
      l.group = int4Group(format);
      l.kPadded = roundUp(k, l.group);
      l.stripBytes = size_t(l.kPadded) * kStripWidth / 2;
      break;
    }
    size_t data = l.stripBytes * size_t(l.strips);
    size_t scales = size_t(l.strips) * size_t(l.scaleGroups()) * kStripWidth;
    l.scaleOffset = size_t(roundUp(int64_t(data), 64));
    l.totalBytes = l.scaleOffset + scales * (isInt8(format) ? 4 : 2);
    if (hasZeroPoints(format)) {
      l.zeroPointOffset = size_t(roundUp(int64_t(l.totalBytes), 64));
      l.totalBytes = l.zeroPointOffset + scales;
    }
    return l;
  }
};

/// Where the byte of (row, column j < 64 of its strip) is in an int8 strip.
inline size_t int8Byte(int64_t row, int64_t j) {
  return size_t(row / 4) * 256 + size_t(j / 16) * 64 + size_t(j % 16) * 4 + size_t(row % 4);
}

/// Where the nibble of (row, column j < 64 of its strip) is in an int4
/// strip: the byte, and whether it is the high nibble.
inline size_t int4Byte(int64_t row, int64_t j, bool &high) {
  int64_t half = j / 32, within = j % 32;
  high = within >= 16;
  return size_t(row / 4) * 128 + size_t(half) * 64 + size_t(within % 16) * 4 + size_t(row % 4);
}

/// IEEE half, round to nearest even (what numpy's astype(float16) does),
/// in integer arithmetic: the compiler is built for any x86-64, where a
/// _Float16 conversion is a library call per value (F16C is not assumed).
/// A NaN keeps its sign and top payload bits, made quiet.
inline uint16_t toF16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  uint32_t sign = (bits >> 16) & 0x8000u, magnitude = bits & 0x7fffffffu;
  if (magnitude >= 0x7f800000u) // inf, NaN
    return uint16_t(sign | 0x7c00u | (magnitude > 0x7f800000u ? 0x200u | (magnitude >> 13) : 0));
  if (magnitude >= 0x47800000u) // >= 65536: past the largest half (65504 rounds below it)
    return uint16_t(sign | 0x7c00u);
  if (magnitude < 0x38800000u) { // below 2^-14: a subnormal half or zero
    // Adding 0.5 aligns the half's subnormal steps (2^-24) with the float's
    // last mantissa bit: the float addition rounds to nearest even.
    float aligned;
    std::memcpy(&aligned, &magnitude, 4);
    aligned += 0.5f;
    uint32_t alignedBits;
    std::memcpy(&alignedBits, &aligned, 4);
    return uint16_t(sign | (alignedBits - 0x3f000000u));
  }
  // A normal half: rebias the exponent, round the 13 dropped bits to nearest
  // even (a carry into the exponent is the right result, up to infinity).
  uint32_t odd = (magnitude >> 13) & 1u;
  magnitude += 0xc8000000u + 0xfffu + odd; // (15 - 127) << 23, wrapping
  return uint16_t(sign | (magnitude >> 13));
}
inline float fromF16(uint16_t half) {
  uint32_t sign = uint32_t(half & 0x8000u) << 16, exponent = (half >> 10) & 0x1fu,
           mantissa = half & 0x3ffu, bits;
  if (exponent == 0) { // zero or subnormal: mantissa * 2^-24, exact in float
    float value = float(mantissa) * 5.9604644775390625e-8f;
    std::memcpy(&bits, &value, 4);
    bits |= sign;
  } else if (exponent == 31) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  }
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
}

/// Rounds to nearest, ties to even, as std::nearbyint does in the default
/// rounding mode (and numpy's rint), without a libm call per element: adding
/// and subtracting 1.5 * 2^23 leaves no fraction bits for |x| < 2^22.
inline float roundHalfEven(float x) {
  constexpr float kMagic = 12582912.0f;
  if (!(std::fabs(x) < 4194304.0f))
    return std::nearbyint(x);
  return (x + kMagic) - kMagic; // IEEE arithmetic: the compiler may not fold it
}

/// The int8 scale of a column whose largest magnitude is `amax`.
inline float int8Scale(float amax) { return amax / 127.0f; }
inline int8_t quantizeInt8(float w, float scale) {
  if (scale == 0.0f)
    return 0;
  float q = roundHalfEven(w / scale);
  return (int8_t)std::clamp(q, -127.0f, 127.0f);
}
/// Candidate int4 scales for a group whose value of largest magnitude is
/// `extreme` (the first such in row order): extreme / -m for these m, so
/// that the extreme lands on the negative side, where -8 is; the packer
/// chooses among them (chooseInt4Scale). A weight's nibble is
/// int4Level(w, 1 / step) + 8, with the f32 reciprocal of the candidate's
/// f16 step (one division per group, not per weight).
constexpr float kInt4ScaleDivisors[] = {8.0f, 7.5f, 7.0f, 6.5f, 6.0f};
inline uint16_t int4Scale(float extreme, float divisor) {
  return extreme == 0.0f ? 0 : toF16(extreme / -divisor); // +0, not -0, for zeros
}
/// The value in [-8, 7] of w * inverse, rounded half to even, branch-free
/// (clamped to [-9, 8] first, which rounds and clamps to the same result).
inline float int4Level(float w, float inverse) {
  constexpr float kMagic = 12582912.0f; // 1.5 * 2^23: no fraction bits left
  float x = std::min(std::max(w * inverse, -9.0f), 8.0f);
  float q = (x + kMagic) - kMagic;
  return std::min(std::max(q, -8.0f), 7.0f);
}
/// What choosing a group's int4 scale needs of the levels q that
/// (inverse) gives its `count` values w: sum w q and sum q q, in f32, each
/// summed in four lanes (value i into lane i % 4, in order), then (lane 0 +
/// lane 1) + (lane 2 + lane 3): the order a numpy reference can repeat, and
/// one the compiler vectorizes. Each product is its own statement, so that
/// no fused multiply-add changes its rounding.
struct Int4Fit {
  float wq = 0.0f, qq = 0.0f;
};
inline Int4Fit int4Fit(const float *values, int64_t count, float inverse) {
  float wq[4] = {0.0f, 0.0f, 0.0f, 0.0f}, qq[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  auto add = [&](int lane, float w) {
    float q = int4Level(w, inverse);
    float product = w * q, square = q * q;
    wq[lane] += product;
    qq[lane] += square;
  };
  int64_t i = 0;
  for (; i + 4 <= count; i += 4)
    for (int lane = 0; lane < 4; ++lane)
      add(lane, values[i + lane]);
  for (; i < count; ++i)
    add(int(i % 4), values[i]);
  return {(wq[0] + wq[1]) + (wq[2] + wq[3]), (qq[0] + qq[1]) + (qq[2] + qq[3])};
}

/// A group's int4 scale and the reciprocal its levels come from: for each
/// candidate (kInt4ScaleDivisors) the levels q of the group, then the scale
/// that fits those levels best (least squares: sum w q / sum q q, rounded
/// to f16), and of those the one with the least squared error, computed in
/// double from the f32 sums (sum w w is the same for all, so it is left
/// out): s^2 sum q q - 2 s sum w q. The first wins a tie. As llama.cpp's
/// quantizers do, the levels stay those of the candidate.
struct Int4Choice {
  uint16_t scale = 0;
  float inverse = 0.0f;
};
inline Int4Choice chooseInt4Scale(const float *values, int64_t count, float extreme) {
  Int4Choice best;
  double bestError = 0.0;
  for (size_t c = 0; c < std::size(kInt4ScaleDivisors); ++c) {
    float step = fromF16(int4Scale(extreme, kInt4ScaleDivisors[c]));
    // A zero step (an f16 underflow) quantizes everything to 0.
    bool zero = step == 0.0f || !std::isfinite(step);
    float inverse = zero ? 0.0f : 1.0f / step;
    Int4Fit fit = int4Fit(values, count, inverse);
    uint16_t scale = fit.qq > 0.0f ? toF16(fit.wq / fit.qq) : 0;
    double s = fromF16(scale);
    if (!std::isfinite(s)) // past f16's range: keep the candidate's own scale
      scale = int4Scale(extreme, kInt4ScaleDivisors[c]), s = step;
    double fitted = s * s * double(fit.qq), cross = 2.0 * s * double(fit.wq); // no FMA
    double error = fitted - cross;
    if (c == 0 || error < bestError) {
      bestError = error;
      best = {scale, inverse};
    }
  }
  return best;
}

/// The largest magnitude of `count` values, NaNs skipped, in eight running
/// maxima (which the compiler vectorizes; one chain of maxss it may not
/// reorder): the same maximum in any order.
inline float largestMagnitude(const float *values, int64_t count) {
  float lanes[8] = {};
  int64_t i = 0;
  for (; i + 8 <= count; i += 8)
    for (int lane = 0; lane < 8; ++lane)
      lanes[lane] = std::max(lanes[lane], std::fabs(values[i + lane]));
  for (; i < count; ++i)
    lanes[0] = std::max(lanes[0], std::fabs(values[i]));
  float largest = 0.0f;
  for (float lane : lanes)
    largest = std::max(largest, lane);
  return largest;
}

/// The first of `count` values of the largest magnitude (0 when all are 0
/// or NaN): the group's extreme that int4's candidate scales divide.
inline float firstExtreme(const float *values, int64_t count) {
  float largest = largestMagnitude(values, count);
  if (largest == 0.0f)
    return 0.0f; // +0, whatever the zeros' signs
  for (int64_t i = 0; i < count; ++i)
    if (std::fabs(values[i]) == largest)
      return values[i];
  return 0.0f;
}

/// Padding of an int8 strip (rows past K, columns past `width`) holds 0,
/// stored as 128.
inline void padInt8Strip(const StripLayout &l, uint8_t *data, int64_t width) {
  for (int64_t j = 0; j < kStripWidth; ++j)
    for (int64_t r = j < width ? l.k : 0; r < l.kPadded; ++r)
      data[int8Byte(r, j)] = 128;
}

/// Packs a weight that arrives quantized (an ONNX DequantizeLinear of an
/// int8 initializer, ONNX Runtime's MatMulNBits) without requantizing:
/// `stored(row, col)` is the byte (int8: q + 128, int8-zp: q) or nibble
/// (int4: q + 8, int4-zp: q) the format holds, `scale(group, col)` and
/// `zeroPoint(group, col)` (formats with zero points) as given; int8 has one
/// group.
template <typename Stored, typename Scale, typename ZeroPoint>
void packQuantized(const StripLayout &l, Stored stored, Scale scale, ZeroPoint zeroPoint,
                   uint8_t *out) {
  std::memset(out, 0, l.totalBytes);
  bool int8 = isInt8(l.format), zeroPoints = hasZeroPoints(l.format);
  int64_t groups = l.scaleGroups();
  for (int64_t s = 0; s < l.strips; ++s) {
    uint8_t *data = out + size_t(s) * l.stripBytes;
    int64_t width = std::min(kStripWidth, l.n - s * kStripWidth);
    for (int64_t j = 0; j < kStripWidth; ++j) {
      int64_t c = s * kStripWidth + j;
      bool inside = j < width;
      // Padding (rows past K, columns past N) holds the zero point: it
      // dequantizes to 0.
      auto zeroOf = [&](int64_t g) -> uint8_t {
        return inside && zeroPoints ? zeroPoint(g, c) : int8 ? 128 : 8;
      };
      for (int64_t g = 0; g < groups; ++g) {
        size_t at = (size_t(s) * groups + g) * kStripWidth + j;
        if (zeroPoints)
          out[l.zeroPointOffset + at] = zeroOf(g);
        if (!inside)
          continue;
        if (int8)
          reinterpret_cast<float *>(out + l.scaleOffset)[at] = scale(g, c);
        else
          reinterpret_cast<uint16_t *>(out + l.scaleOffset)[at] = toF16(scale(g, c));
      }
      for (int64_t r = 0; r < l.kPadded; ++r) {
        uint8_t value = inside && r < l.k ? stored(r, c) : zeroOf(int8 ? 0 : r / l.group);
        if (int8) {
          data[int8Byte(r, j)] = value;
        } else {
          bool high;
          size_t byte = int4Byte(r, j, high);
          data[byte] |= high ? uint8_t(value << 4) : value;
        }
      }
    }
  }
}

/// Packs strips [first, last) of W, read through `at(row, col)` -> float,
/// into `out` (layout.totalBytes bytes, zero where those strips go),
/// quantizing it for the int8 and int4 formats (those without zero points).
/// A strip writes only its own bytes and scales: ranges of strips pack in
/// parallel.
template <typename Element>
void packWeightStrips(const StripLayout &l, Element at, uint8_t *out, int64_t first,
                      int64_t last) {
  auto column = [&](int64_t s, int64_t j) { return s * kStripWidth + j; };
  // The quantized formats look at a column at a time: a strip's `width`
  // columns are copied column-major first, 16 rows at a time (a 16 x 64
  // block of W and a cache line of each column's copy: copied a row at a
  // time, each store went to another line of a buffer larger than L2, and
  // the copy took a quarter of an int8 compile's packing).
  std::vector<float> strided;
  auto gather = [&](int64_t s, int64_t width) {
    strided.resize(size_t(l.k) * kStripWidth);
    for (int64_t r0 = 0; r0 < l.k; r0 += 16)
      for (int64_t j = 0; j < width; ++j)
        for (int64_t r = r0; r < std::min(l.k, r0 + 16); ++r)
          strided[size_t(j) * l.k + r] = at(r, column(s, j));
  };
  for (int64_t s = first; s < last; ++s) {
    uint8_t *strip = out + size_t(s) * l.stripBytes;
    int64_t width = std::min(kStripWidth, l.n - s * kStripWidth);
    switch (l.format) {
    case WeightFormat::Plain:
      return;
    case WeightFormat::F32Strips: {
      auto *data = reinterpret_cast<float *>(strip);
      for (int64_t r = 0; r < l.k; ++r)
        for (int64_t j = 0; j < width; ++j)
          data[r * kStripWidth + j] = at(r, column(s, j));
      break;
    }
    case WeightFormat::Bf16Strips: {
      auto *data = reinterpret_cast<uint16_t *>(strip);
      for (int64_t r = 0; r < l.k; ++r)
        for (int64_t j = 0; j < width; ++j)
          data[(r / 2) * kStripWidth * 2 + j * 2 + (r % 2)] = toBf16(at(r, column(s, j)));
      break;
    }
    case WeightFormat::Int8: {
      uint8_t *data = strip;
      auto *scales = reinterpret_cast<float *>(out + l.scaleOffset) + s * kStripWidth;
      gather(s, width);
      for (int64_t j = 0; j < width; ++j) {
        const float *values = strided.data() + size_t(j) * l.k;
        scales[j] = int8Scale(largestMagnitude(values, l.k));
        for (int64_t r = 0; r < l.k; ++r)
          data[int8Byte(r, j)] = uint8_t(quantizeInt8(values[r], scales[j]) + 128);
      }
      padInt8Strip(l, data, width);
      break;
    }
    default: { // int4 without zero points
      int64_t groups = l.kPadded / l.group;
      auto *scales = reinterpret_cast<uint16_t *>(out + l.scaleOffset) +
                     size_t(s) * groups * kStripWidth;
      gather(s, width);
      // A group's nibbles, computed apart from their scattered stores so
      // that the compiler vectorizes them.
      std::vector<uint8_t> nibbles(size_t(l.group), 8);
      for (int64_t j = 0; j < width; ++j)
        for (int64_t g = 0; g < groups; ++g) {
          int64_t r0 = g * l.group, r1 = std::min(l.k, r0 + l.group);
          const float *values = strided.data() + size_t(j) * l.k + r0;
          Int4Choice choice = chooseInt4Scale(values, r1 - r0, firstExtreme(values, r1 - r0));
          scales[g * kStripWidth + j] = choice.scale;
          for (int64_t i = 0; i < r1 - r0; ++i)
            nibbles[size_t(i)] = uint8_t(int4Level(values[i], choice.inverse) + 8.0f);
          std::fill(nibbles.begin() + (r1 - r0), nibbles.end(), uint8_t(8));
          for (int64_t i = 0; i < l.group; ++i) {
            bool high;
            size_t byte = int4Byte(r0 + i, j, high); // sets high: before it is read
            strip[byte] |= high ? uint8_t(nibbles[size_t(i)] << 4) : nibbles[size_t(i)];
          }
        }
      // Columns past N hold nibble 8 (zero) like padded rows.
      for (int64_t j = width; j < kStripWidth; ++j)
        for (int64_t r = 0; r < l.kPadded; ++r) {
          bool high;
          size_t byte = int4Byte(r, j, high);
          strip[byte] |= high ? 0x80 : 8;
        }
      break;
    }
    }
  }
}

/// Packs all of W (packWeightStrips) into `out`, cleared first.
template <typename Element>
void packWeight(const StripLayout &l, Element at, uint8_t *out) {
  std::memset(out, 0, l.totalBytes);
  packWeightStrips(l, at, out, 0, l.strips);
}

} // namespace hasten::abi

#endif // HASTEN_WEIGHTLAYOUT_H
