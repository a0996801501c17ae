//===- CublasLtAbiTest.cpp - the runtime's cuBLASLt declarations ----------===//
//
// The runtime declares the part of cuBLASLt's API it calls itself
// (runtime/CublasLt.h), since it builds without the toolkit. Where the
// toolkit's headers are installed (this file is built only then), its
// values and layouts must be the toolkit's.
//
//===----------------------------------------------------------------------===//

#include "../../runtime/CublasLt.h"

#include <cublasLt.h>

#include <gtest/gtest.h>

#include <cstddef>

namespace lt = hasten::runtime::cublaslt;

static_assert(lt::kSuccess == CUBLAS_STATUS_SUCCESS);
static_assert(lt::kR32F == CUDA_R_32F && lt::kR16F == CUDA_R_16F && lt::kR16BF == CUDA_R_16BF);
static_assert(lt::kCompute32F == CUBLAS_COMPUTE_32F &&
              lt::kCompute32FFastTf32 == CUBLAS_COMPUTE_32F_FAST_TF32);
static_assert(lt::kOpN == CUBLAS_OP_N && lt::kOpT == CUBLAS_OP_T);
static_assert(lt::kDescTransA == CUBLASLT_MATMUL_DESC_TRANSA &&
              lt::kDescTransB == CUBLASLT_MATMUL_DESC_TRANSB &&
              lt::kDescEpilogue == CUBLASLT_MATMUL_DESC_EPILOGUE &&
              lt::kDescBiasPointer == CUBLASLT_MATMUL_DESC_BIAS_POINTER);
static_assert(lt::kEpilogueDefault == CUBLASLT_EPILOGUE_DEFAULT &&
              lt::kEpilogueBias == CUBLASLT_EPILOGUE_BIAS &&
              lt::kEpilogueRelu == CUBLASLT_EPILOGUE_RELU &&
              lt::kEpilogueReluBias == CUBLASLT_EPILOGUE_RELU_BIAS &&
              lt::kEpilogueGelu == CUBLASLT_EPILOGUE_GELU &&
              lt::kEpilogueGeluBias == CUBLASLT_EPILOGUE_GELU_BIAS);
static_assert(lt::kLayoutBatchCount == CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT &&
              lt::kLayoutStridedBatchOffset == CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET);
static_assert(lt::kPrefMaxWorkspaceBytes == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES &&
              lt::kPrefMinAlignmentA == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES &&
              lt::kPrefMinAlignmentB == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES &&
              lt::kPrefMinAlignmentC == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES &&
              lt::kPrefMinAlignmentD == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES);
static_assert(sizeof(lt::Algo) == sizeof(cublasLtMatmulAlgo_t));
static_assert(sizeof(lt::HeuristicResult) == sizeof(cublasLtMatmulHeuristicResult_t));
static_assert(offsetof(lt::HeuristicResult, state) ==
              offsetof(cublasLtMatmulHeuristicResult_t, state));
static_assert(offsetof(lt::HeuristicResult, workspaceSize) ==
              offsetof(cublasLtMatmulHeuristicResult_t, workspaceSize));

TEST(CublasLtAbi, MatchesTheToolkitHeaders) {
  // The checks are the static_asserts above; this records that they ran.
  SUCCEED() << "cuBLASLt " << CUBLAS_VER_MAJOR << "." << CUBLAS_VER_MINOR;
}
