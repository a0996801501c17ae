//===- CudaGemmTest.cpp - the runtime's GEMMs on cuBLASLt ------------------===//
//
// hasten_cuda_gemm maps a row-major product with any strides onto
// cuBLASLt's column-major one (runtime/CudaBlas.cpp). These tests run it
// against the stand-in driver and cuBLASLt (test/tools/Inputs/fake_cuda.c,
// which computes what cublasLt.h documents for the layouts, operations,
// batches and epilogue it is given) and compare with products computed
// here from the same strided storage: transposed views, padded rows, a
// single row or column, broadcast batches, the bias and activation
// epilogues, accumulation,
// bf16 operands, and the operands it must refuse.
//
//===----------------------------------------------------------------------===//

#include "../../runtime/CudaDriver.h"
#include "../../runtime/RuntimeInternal.h"

#include "hasten/KernelAbi.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

extern "C" void hasten_cuda_gemm(void *stream, int32_t flags, int64_t batch, int64_t m, int64_t n,
                                 int64_t k, const void *a, int64_t aBatch, int64_t aRow,
                                 int64_t aCol, const void *b, int64_t bBatch, int64_t bRow,
                                 int64_t bCol, const void *bias, void *c, int64_t cBatch,
                                 int64_t cRow, int64_t cCol);

namespace {

namespace abi = hasten::abi;
namespace rt = hasten::runtime;

/// A device buffer's floats back to the host, as the runtime copies outputs.
bool download(std::vector<float> &host, void *device, std::string &error) {
  std::vector<rt::StagedCopy> copies{{host.data(), device, host.size() * sizeof(float)}};
  return rt::cudaDownloadOutputs(copies, error);
}

/// A strided matrix (batch of them) in host storage of `T`.
template <typename T> struct Matrix {
  int64_t batch, rows, cols, batchStride, rowStride, colStride;
  std::vector<T> storage;
  T &at(int64_t b, int64_t i, int64_t j) {
    return storage[b * batchStride + i * rowStride + j * colStride];
  }
};

template <typename T>
Matrix<T> matrix(int64_t batch, int64_t rows, int64_t cols, int64_t batchStride, int64_t rowStride,
                 int64_t colStride, std::mt19937 &rng, T (*make)(float)) {
  Matrix<T> x{batch, rows, cols, batchStride, rowStride, colStride, {}};
  int64_t last = (batch - 1) * batchStride + (rows - 1) * rowStride + (cols - 1) * colStride;
  std::normal_distribution<float> normal;
  x.storage.resize(size_t(last + 1));
  for (T &v : x.storage)
    v = make(normal(rng));
  return x;
}

float identity(float x) { return x; }
uint16_t bf16(float x) { return abi::toBf16(x); }
float fromBf16(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

class CudaGemmTest : public ::testing::Test {
protected:
  void SetUp() override {
    std::string fake = std::string(HASTEN_RUNTIME_DIR) + "/libhasten_fake_cuda.so";
    setenv("HASTEN_CUDA_DRIVER", fake.c_str(), 1);
    setenv("HASTEN_CUBLASLT", fake.c_str(), 1);
    std::string error;
    ASSERT_TRUE(rt::cudaAvailable({}, error)) << error;
    ASSERT_TRUE(rt::cudaBlasAvailable(error)) << error;
    rt::takeKernelError();
  }

  template <typename T> void *upload(const Matrix<T> &x) {
    std::string error;
    void *device = rt::cudaUpload(x.storage.data(), x.storage.size() * sizeof(T), error);
    EXPECT_NE(device, nullptr) << error;
    devices.push_back(device);
    return device;
  }
  void TearDown() override {
    for (void *device : devices)
      rt::cudaFree(device);
  }

  /// Runs C (+)= act(A B (+ bias)) on the device and checks every element of
  /// C's storage: the product where C has elements, untouched elsewhere.
  /// Returns the largest error relative to 1 + |expected|.
  template <typename In>
  double check(Matrix<In> a, Matrix<In> b, Matrix<float> c, int32_t flags,
             const std::vector<float> *bias, float (*value)(In), double tolerance = 1e-5) {
    int64_t batch = c.batch, m = c.rows, n = c.cols, k = a.cols;
    void *da = upload(a), *db = upload(b), *dc = upload(c), *dbias = nullptr;
    if (bias) {
      std::string error;
      dbias = rt::cudaUpload(bias->data(), bias->size() * sizeof(float), error);
      devices.push_back(dbias);
      flags |= abi::kGemmBias;
    }
    hasten_cuda_gemm(nullptr, flags, batch, m, n, k, da, a.batch == 1 ? 0 : a.batchStride,
                     a.rowStride, a.colStride, db, b.batch == 1 ? 0 : b.batchStride,
                     b.rowStride, b.colStride, dbias, dc, c.batchStride, c.rowStride,
                     c.colStride);
    EXPECT_FALSE(rt::hasKernelError()) << rt::takeKernelError();
    Matrix<float> expected = c;
    for (int64_t p = 0; p < batch; ++p)
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double sum = 0;
          for (int64_t q = 0; q < k; ++q)
            sum += double(value(a.at(a.batch == 1 ? 0 : p, i, q))) *
                   double(value(b.at(b.batch == 1 ? 0 : p, q, j)));
          if (flags & abi::kGemmAccumulate)
            sum += c.at(p, i, j);
          if (bias)
            sum += (*bias)[size_t(j)];
          if (flags & abi::kGemmRelu)
            sum = std::max(sum, 0.0);
          if (flags & abi::kGemmGeluTanh)
            sum = 0.5 * sum *
                  (1 + std::tanh(std::sqrt(2 / M_PI) * (sum + 0.044715 * sum * sum * sum)));
          expected.at(p, i, j) = float(sum);
        }
    std::vector<float> got(c.storage.size());
    std::string error;
    EXPECT_TRUE(download(got, dc, error)) << error;
    double worst = 0;
    for (size_t e = 0; e < got.size(); ++e) {
      double err = std::fabs(double(got[e]) - expected.storage[e]) /
                   (1 + std::fabs(expected.storage[e]));
      worst = std::max(worst, err);
      EXPECT_LE(err, tolerance) << "element " << e << " of C's storage: " << got[e] << " vs "
                                << expected.storage[e];
    }
    return worst;
  }

  std::mt19937 rng{42};
  std::vector<void *> devices;
};

TEST_F(CudaGemmTest, RowMajorOperands) {
  auto a = matrix<float>(1, 5, 3, 0, 3, 1, rng, identity);
  auto b = matrix<float>(1, 3, 7, 0, 7, 1, rng, identity);
  auto c = matrix<float>(1, 5, 7, 0, 7, 1, rng, identity);
  check(a, b, c, 0, nullptr, identity);
}

TEST_F(CudaGemmTest, TransposedViewsAndPaddedRows) {
  // B a transposed view of a [7, 3] weight (rows 1 apart, columns 3), A a
  // transposed view of a [3, 5] matrix, C with rows padded by 2 elements
  // that the product must leave alone.
  auto a = matrix<float>(1, 5, 3, 0, 1, 5, rng, identity);
  auto b = matrix<float>(1, 3, 7, 0, 1, 3, rng, identity);
  auto c = matrix<float>(1, 5, 7, 0, 9, 1, rng, identity);
  check(a, b, c, 0, nullptr, identity);
  auto padded = matrix<float>(1, 5, 3, 0, 6, 1, rng, identity);
  check(padded, b, c, 0, nullptr, identity);
}

TEST_F(CudaGemmTest, OneRowOrOneColumn) {
  // A decode step's one token (any row stride) and a product with one
  // column.
  auto row = matrix<float>(1, 1, 4, 0, 100, 1, rng, identity);
  auto b = matrix<float>(1, 4, 6, 0, 6, 1, rng, identity);
  auto c = matrix<float>(1, 1, 6, 0, 50, 1, rng, identity);
  check(row, b, c, 0, nullptr, identity);
  auto a = matrix<float>(1, 3, 4, 0, 4, 1, rng, identity);
  auto column = matrix<float>(1, 4, 1, 0, 1, 9, rng, identity);
  auto c1 = matrix<float>(1, 3, 1, 0, 1, 1, rng, identity);
  check(a, column, c1, 0, nullptr, identity);
  // K = 1: an outer product.
  auto a1 = matrix<float>(1, 3, 1, 0, 1, 1, rng, identity);
  auto b1 = matrix<float>(1, 1, 5, 0, 5, 1, rng, identity);
  auto c2 = matrix<float>(1, 3, 5, 0, 5, 1, rng, identity);
  check(a1, b1, c2, 0, nullptr, identity);
}

TEST_F(CudaGemmTest, BatchesBiasAndAccumulation) {
  // Three batches of A against one B (broadcast), C accumulated into,
  // plus a bias per column.
  auto a = matrix<float>(3, 4, 5, 20, 5, 1, rng, identity);
  auto b = matrix<float>(1, 5, 6, 0, 6, 1, rng, identity);
  auto c = matrix<float>(3, 4, 6, 24, 6, 1, rng, identity);
  std::vector<float> bias = {0.5f, -1.0f, 2.0f, 0.25f, -0.75f, 3.0f};
  check(a, b, c, abi::kGemmAccumulate, &bias, identity);
  // Batched activations on both sides (attention-like), overwriting C.
  auto q = matrix<float>(2, 3, 4, 12, 4, 1, rng, identity);
  auto kt = matrix<float>(2, 4, 5, 20, 1, 4, rng, identity);
  auto s = matrix<float>(2, 3, 5, 15, 5, 1, rng, identity);
  check(q, kt, s, 0, nullptr, identity);
}

TEST_F(CudaGemmTest, ActivationsAfterTheBias) {
  // ReLU and tanh-GELU applied last: after the bias, and after what C held
  // when accumulating (cuBLASLt's D = act(A B + C + bias)).
  auto a = matrix<float>(1, 5, 7, 0, 7, 1, rng, identity);
  auto b = matrix<float>(1, 7, 6, 0, 6, 1, rng, identity);
  auto c = matrix<float>(1, 5, 6, 0, 6, 1, rng, identity);
  std::vector<float> bias = {0.5f, -1.0f, 2.0f, 0.25f, -0.75f, -3.0f};
  check(a, b, c, abi::kGemmRelu, &bias, identity);
  check(a, b, c, abi::kGemmGeluTanh, &bias, identity);
  check(a, b, c, abi::kGemmGeluTanh | abi::kGemmAccumulate, nullptr, identity);
  check(a, b, c, abi::kGemmRelu | abi::kGemmAccumulate, nullptr, identity);
}

TEST_F(CudaGemmTest, Bf16Operands) {
  auto a = matrix<uint16_t>(1, 6, 8, 0, 8, 1, rng, bf16);
  auto b = matrix<uint16_t>(1, 8, 4, 0, 1, 8, rng, bf16);
  auto c = matrix<float>(1, 6, 4, 0, 4, 1, rng, identity);
  check(a, b, c, abi::kGemmBf16 << abi::kGemmOperandTypeShift, nullptr, fromBf16);
}

TEST_F(CudaGemmTest, Tf32RoundsTheOperands) {
  // Within TF32's roundoff of the exact product, and not equal to it.
  auto a = matrix<float>(1, 4, 64, 0, 64, 1, rng, identity);
  auto b = matrix<float>(1, 64, 4, 0, 4, 1, rng, identity);
  auto c = matrix<float>(1, 4, 4, 0, 4, 1, rng, identity);
  EXPECT_GT(check(a, b, c, abi::kGemmTf32, nullptr, identity, 2e-2), 1e-5);
}

TEST_F(CudaGemmTest, RefusesWhatCuBlasLtCannotRead) {
  // An operand with no unit stride, and a product that is not row-major:
  // run errors naming the problem, and nothing written.
  auto a = matrix<float>(1, 3, 4, 0, 8, 2, rng, identity);
  auto b = matrix<float>(1, 4, 5, 0, 5, 1, rng, identity);
  auto c = matrix<float>(1, 3, 5, 0, 5, 1, rng, identity);
  void *da = upload(a), *db = upload(b), *dc = upload(c);
  hasten_cuda_gemm(nullptr, 0, 1, 3, 5, 4, da, 0, 8, 2, db, 0, 5, 1, nullptr, dc, 0, 5, 1);
  EXPECT_EQ(rt::takeKernelError(),
            "cuBLASLt: a GEMM operand (3x5x4, f32 operands) has no unit stride in either "
            "dimension");
  hasten_cuda_gemm(nullptr, 0, 1, 3, 5, 4, db, 0, 1, 3, db, 0, 5, 1, nullptr, dc, 0, 1, 3);
  EXPECT_EQ(rt::takeKernelError(), "cuBLASLt: a GEMM's product (3x5x4, f32 operands) is not "
                                   "row-major");
  std::vector<float> got(c.storage.size());
  std::string error;
  ASSERT_TRUE(download(got, dc, error));
  EXPECT_EQ(got, c.storage);
}

} // namespace
