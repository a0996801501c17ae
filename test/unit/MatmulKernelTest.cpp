//===- MatmulKernelTest.cpp - the runtime's f32 matmul on activations ------===//
//
// Calls hasten_rt_matmul_f32 as generated code does (memref descriptors,
// no constant weights: a convolution's filter times its gathered windows)
// and compares with a double-precision product: every row count from 1 to
// 18 (the GEMV's loops up to 4 rows, register tiles beyond), many rows
// over a short reduction (register tiles) and over a long one (oneDNN),
// column counts off the 64-column blocks, strided
// A (a transposed view) and padded rows of B and C, accumulating into C
// and overwriting it.
//
//===----------------------------------------------------------------------===//

#include "hasten/KernelAbi.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace {

struct MemRef2 {
  float *allocated, *aligned;
  int64_t offset, sizes[2], strides[2];
};

} // namespace

extern "C" void _mlir_ciface_hasten_rt_matmul_f32(MemRef2 *a, MemRef2 *b, MemRef2 *c,
                                                  int32_t flags);

namespace {

struct Case {
  int64_t m, k, n;
  bool transposedA, overwrite;
};

/// The largest |C - reference| over the largest |reference|, after one call.
double relativeError(const Case &c) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal;
  auto fill = [&](size_t count) {
    std::vector<float> v(count);
    for (float &x : v)
      x = normal(rng);
    return v;
  };
  // B and C with rows padded by 3 floats; A as [m, k] or a [k, m] buffer
  // read transposed.
  int64_t ldb = c.n + 3, ldc = c.n + 3;
  std::vector<float> a = fill(c.m * c.k), b = fill(c.k * ldb), out = fill(c.m * ldc);
  std::vector<float> before = out;
  MemRef2 am{a.data(), a.data(), 0, {c.m, c.k},
             {c.transposedA ? 1 : c.k, c.transposedA ? c.m : 1}};
  MemRef2 bm{b.data(), b.data(), 0, {c.k, c.n}, {ldb, 1}};
  MemRef2 cm{out.data(), out.data(), 0, {c.m, c.n}, {ldc, 1}};
  _mlir_ciface_hasten_rt_matmul_f32(&am, &bm, &cm, c.overwrite ? hasten::abi::kOverwrite : 0);
  double worst = 0, largest = 0;
  for (int64_t i = 0; i < c.m; ++i)
    for (int64_t j = 0; j < ldc; ++j) {
      if (j >= c.n) {
        // The padding past each row stays as it was.
        if (out[i * ldc + j] != before[i * ldc + j])
          return INFINITY;
        continue;
      }
      double expected = c.overwrite ? 0.0 : before[i * ldc + j];
      for (int64_t p = 0; p < c.k; ++p)
        expected += (double)a[i * am.strides[0] + p * am.strides[1]] * b[p * ldb + j];
      largest = std::max(largest, std::fabs(expected));
      double error = std::fabs(out[i * ldc + j] - expected);
      worst = std::isnan(error) ? INFINITY : std::max(worst, error);
    }
  return worst / largest;
}

TEST(MatmulKernel, FewRowsOfActivationsMatchDoubles) {
  for (int64_t m = 1; m <= 18; ++m)
    for (int64_t n : {5, 64, 100, 257})
      for (bool overwrite : {false, true}) {
        Case c{m, 48, n, m % 3 == 0, overwrite};
        EXPECT_LT(relativeError(c), 1e-5)
            << "m " << c.m << " k " << c.k << " n " << c.n
            << (c.transposedA ? " transposed A" : "") << (c.overwrite ? " overwrite" : "");
      }
  // A long reduction, a one-column product, a patchify convolution's 128
  // filters over 16 taps, and many rows over a long reduction.
  EXPECT_LT(relativeError({16, 300, 70, false, false}), 1e-5);
  EXPECT_LT(relativeError({9, 700, 65, false, false}), 1e-5);
  EXPECT_LT(relativeError({7, 9, 1, false, true}), 1e-5);
  EXPECT_LT(relativeError({131, 16, 70, true, false}), 1e-5);
  // Enough work for the pool, split by rows (one column block) and by both.
  EXPECT_LT(relativeError({500, 60, 50, false, false}), 1e-5);
  EXPECT_LT(relativeError({100, 40, 300, false, true}), 1e-5);
  EXPECT_LT(relativeError({40, 100, 90, false, true}), 1e-5);
}

} // namespace
