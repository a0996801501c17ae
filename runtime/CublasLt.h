//===- CublasLt.h - the part of cuBLASLt's API the runtime calls -*- C++ -*-===//
//
// The runtime opens cuBLASLt with dlopen, like the driver, and builds
// without the toolkit's headers, so the types and values it passes are
// declared here as cublasLt.h, cublas_api.h and library_types.h declare
// them (test/unit checks them against the toolkit's headers where those are
// installed). The fake cuBLASLt of the tests (test/tools/Inputs/
// fake_cuda.c) implements the same subset.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_RUNTIME_CUBLASLT_H
#define HASTEN_RUNTIME_CUBLASLT_H

#include <cstddef>
#include <cstdint>

namespace hasten::runtime::cublaslt {

using Status = int;
using Handle = struct cublasLtContext *;
using MatmulDesc = struct MatmulDescOpaque *;
using MatrixLayout = struct MatrixLayoutOpaque *;
using Preference = struct PreferenceOpaque *;
using Stream = struct CUstream_st *;

struct Algo {
  uint64_t data[8];
};
struct HeuristicResult {
  Algo algo;
  size_t workspaceSize;
  Status state;
  float wavesCount;
  int reserved[4];
};

constexpr Status kSuccess = 0;
// cudaDataType_t
constexpr int32_t kR32F = 0, kR16F = 2, kR16BF = 14;
// cublasComputeType_t
constexpr int32_t kCompute32F = 68, kCompute32FFastTf32 = 77;
// cublasOperation_t
constexpr int32_t kOpN = 0, kOpT = 1;
// cublasLtMatmulDescAttributes_t
constexpr int32_t kDescTransA = 3, kDescTransB = 4, kDescEpilogue = 7, kDescBiasPointer = 8;
// cublasLtEpilogue_t
constexpr uint32_t kEpilogueDefault = 1, kEpilogueBias = 4, kEpilogueRelu = 2,
                   kEpilogueReluBias = 6, kEpilogueGelu = 32, kEpilogueGeluBias = 36;
// cublasLtMatrixLayoutAttribute_t
constexpr int32_t kLayoutBatchCount = 5, kLayoutStridedBatchOffset = 6;
// cublasLtMatmulPreferenceAttributes_t
constexpr int32_t kPrefMaxWorkspaceBytes = 1, kPrefMinAlignmentA = 5, kPrefMinAlignmentB = 6,
                  kPrefMinAlignmentC = 7, kPrefMinAlignmentD = 8;

} // namespace hasten::runtime::cublaslt

#endif // HASTEN_RUNTIME_CUBLASLT_H
