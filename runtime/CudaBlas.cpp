//===- CudaBlas.cpp - a CUDA module's GEMMs on cuBLASLt ---------------------===//
//
// hasten.gpu_gemm becomes a call of hasten_cuda_gemm on the stream of the
// kernels around it (passes/GpuGemmToLLVM.cpp). cuBLASLt is opened with
// dlopen when a module that needs it is loaded (the manifest's
// gpu_libraries), so the runtime still loads and runs everything else on
// machines without it.
//
// hasten's matrices are row-major views with any strides; cuBLASLt's are
// column-major. A row-major C = A B is the column-major C^T = B^T A^T, and
// a row-major matrix is its transpose in column-major order, so the call
// passes B as cuBLASLt's A and A as its B, each untransposed when its rows
// are contiguous and transposed when its columns are (a transposed view of
// a weight). Descriptors and the heuristic's algorithm are cached per
// thread and problem; each thread has one cuBLASLt handle and workspace.
//
//===----------------------------------------------------------------------===//

#include "CublasLt.h"
#include "CudaDriver.h"
#include "DynamicSymbols.h"
#include "RuntimeInternal.h"

#include "hasten/KernelAbi.h"

#include <dlfcn.h>

#include <array>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

namespace lt = hasten::runtime::cublaslt;
namespace abi = hasten::abi;

namespace {

using hasten::runtime::resolveSymbol;

struct Library {
  void *handle = nullptr;
  lt::Status (*create)(lt::Handle *);
  lt::Status (*destroy)(lt::Handle);
  const char *(*statusName)(lt::Status);
  lt::Status (*descCreate)(lt::MatmulDesc *, int32_t, int32_t);
  lt::Status (*descDestroy)(lt::MatmulDesc);
  lt::Status (*descSet)(lt::MatmulDesc, int32_t, const void *, size_t);
  lt::Status (*layoutCreate)(lt::MatrixLayout *, int32_t, uint64_t, uint64_t, int64_t);
  lt::Status (*layoutDestroy)(lt::MatrixLayout);
  lt::Status (*layoutSet)(lt::MatrixLayout, int32_t, const void *, size_t);
  lt::Status (*prefCreate)(lt::Preference *);
  lt::Status (*prefDestroy)(lt::Preference);
  lt::Status (*prefSet)(lt::Preference, int32_t, const void *, size_t);
  lt::Status (*heuristic)(lt::Handle, lt::MatmulDesc, lt::MatrixLayout, lt::MatrixLayout,
                          lt::MatrixLayout, lt::MatrixLayout, lt::Preference, int,
                          lt::HeuristicResult *, int *);
  lt::Status (*matmul)(lt::Handle, lt::MatmulDesc, const void *, const void *, lt::MatrixLayout,
                       const void *, lt::MatrixLayout, const void *, const void *,
                       lt::MatrixLayout, void *, lt::MatrixLayout, const lt::Algo *, void *,
                       size_t, lt::Stream);
};

/// cuBLASLt, opened once per process; null with the reason in `error`.
/// HASTEN_CUBLASLT names the library (tests point it at a stand-in);
/// otherwise CUDA 13's, then 12's, from the library path.
const Library *library(std::string &error) {
  static std::once_flag once;
  static Library lib;
  static std::string failure;
  std::call_once(once, [] {
    const char *override = std::getenv("HASTEN_CUBLASLT");
    std::array<const char *, 3> names = {"libcublasLt.so.13", "libcublasLt.so.12",
                                         "libcublasLt.so"};
    std::string first;
    if (override && *override) {
      lib.handle = dlopen(override, RTLD_NOW | RTLD_LOCAL);
      if (!lib.handle) {
        const char *why = dlerror();
        first = why ? why : override;
      }
    } else {
      for (const char *name : names) {
        if ((lib.handle = dlopen(name, RTLD_NOW | RTLD_LOCAL)))
          break;
        if (first.empty()) {
          const char *why = dlerror();
          first = why ? why : name;
        }
      }
    }
    if (!lib.handle) {
      failure = "no cuBLASLt (" + first + ")";
      return;
    }
    std::string missing;
    lib.statusName =
        reinterpret_cast<const char *(*)(lt::Status)>(dlsym(lib.handle, "cublasLtGetStatusName"));
    auto get = [&](auto &fn, const char *symbol) {
      return resolveSymbol(lib.handle, fn, symbol, missing);
    };
    bool all = get(lib.create, "cublasLtCreate") && get(lib.destroy, "cublasLtDestroy") &&
               get(lib.descCreate, "cublasLtMatmulDescCreate") &&
               get(lib.descDestroy, "cublasLtMatmulDescDestroy") &&
               get(lib.descSet, "cublasLtMatmulDescSetAttribute") &&
               get(lib.layoutCreate, "cublasLtMatrixLayoutCreate") &&
               get(lib.layoutDestroy, "cublasLtMatrixLayoutDestroy") &&
               get(lib.layoutSet, "cublasLtMatrixLayoutSetAttribute") &&
               get(lib.prefCreate, "cublasLtMatmulPreferenceCreate") &&
               get(lib.prefDestroy, "cublasLtMatmulPreferenceDestroy") &&
               get(lib.prefSet, "cublasLtMatmulPreferenceSetAttribute") &&
               get(lib.heuristic, "cublasLtMatmulAlgoGetHeuristic") &&
               get(lib.matmul, "cublasLtMatmul");
    if (!all) {
      failure = "cuBLASLt lacks " + missing + " (CUDA 11.4 or newer is needed)";
      dlclose(lib.handle);
      lib.handle = nullptr;
    }
  });
  if (!lib.handle) {
    error = failure;
    return nullptr;
  }
  return &lib;
}

std::string describe(const Library &lib, const char *call, lt::Status status) {
  const char *name = lib.statusName ? lib.statusName(status) : nullptr;
  return std::string(call) + ": " +
         (name ? std::string(name) : "cuBLAS status " + std::to_string(status));
}

/// One matrix as cuBLASLt sees it: column-major rows x cols with leading
/// dimension ld, read transposed or not, and its batch stride.
struct Layout {
  uint64_t rows = 0, cols = 0;
  int64_t ld = 0, batchStride = 0;
  int32_t op = lt::kOpN;
};

/// The column-major matrix X^T for a row-major `rows x cols` X with strides
/// (rowStride, colStride): untransposed when X's rows are contiguous,
/// transposed when its columns are. A dimension of one has any stride.
bool columnMajorTranspose(int64_t rows, int64_t cols, int64_t rowStride, int64_t colStride,
                          Layout &out) {
  if (colStride == 1 || cols == 1) {
    out.op = lt::kOpN;
    out.rows = uint64_t(cols);
    out.cols = uint64_t(rows);
    out.ld = rows == 1 ? cols : rowStride;
  } else if (rowStride == 1 || rows == 1) {
    out.op = lt::kOpT;
    out.rows = uint64_t(rows);
    out.cols = uint64_t(cols);
    out.ld = cols == 1 ? rows : colStride;
  } else {
    return false;
  }
  return out.ld >= int64_t(out.rows) && out.ld > 0;
}

int32_t dataType(int32_t code) {
  return code == abi::kGemmBf16 ? lt::kR16BF : code == abi::kGemmF16 ? lt::kR16F : lt::kR32F;
}

const char *typeName(int32_t code) {
  return code == abi::kGemmBf16 ? "bf16" : code == abi::kGemmF16 ? "f16" : "f32";
}

/// Largest power of two (up to 256) dividing the address: the alignment
/// the heuristic may assume.
uint32_t alignmentOf(const void *pointer) {
  auto address = reinterpret_cast<uintptr_t>(pointer);
  uint32_t alignment = 256;
  while (alignment > 1 && address % alignment)
    alignment /= 2;
  return alignment;
}

/// A cached problem: the descriptors and the algorithm the heuristic chose.
struct Plan {
  lt::MatmulDesc desc = nullptr;
  lt::MatrixLayout a = nullptr, b = nullptr, d = nullptr;
  lt::Algo algo{};
  bool ok = false;
  /// Why the problem cannot run, reported again by every later call.
  std::string error;
};

/// The calling thread's cuBLASLt state: entries run on the calling thread's
/// stream (runtime/CudaDriver.cpp), so the handle and workspace are its.
struct ThreadBlas {
  const Library *lib = nullptr;
  lt::Handle handle = nullptr;
  void *workspace = nullptr;
  std::map<std::array<int64_t, 20>, Plan> plans;

  ~ThreadBlas() {
    if (!lib)
      return;
    for (auto &[key, plan] : plans) {
      if (plan.desc)
        lib->descDestroy(plan.desc);
      for (lt::MatrixLayout layout : {plan.a, plan.b, plan.d})
        if (layout)
          lib->layoutDestroy(layout);
    }
    if (handle)
      lib->destroy(handle);
    hasten::runtime::cudaFree(workspace);
  }
};

/// cuBLASLt's recommendation for Hopper; smaller cards need less.
constexpr size_t kWorkspaceBytes = size_t(32) << 20;

ThreadBlas *threadBlas() {
  thread_local ThreadBlas blas;
  if (blas.handle)
    return &blas;
  std::string error;
  const Library *lib = library(error);
  if (!lib) {
    hasten::runtime::setKernelError("CUDA: " + error);
    return nullptr;
  }
  lt::Handle handle = nullptr;
  if (lt::Status s = lib->create(&handle); s != lt::kSuccess) {
    hasten::runtime::setKernelError("cuBLASLt " + describe(*lib, "cublasLtCreate", s));
    return nullptr;
  }
  void *workspace = hasten::runtime::cudaZeros(kWorkspaceBytes, error);
  if (!workspace) {
    lib->destroy(handle);
    hasten::runtime::setKernelError("cuBLASLt workspace: " + error);
    return nullptr;
  }
  blas.lib = lib;
  blas.handle = handle;
  blas.workspace = workspace;
  return &blas;
}

} // namespace

bool hasten::runtime::cudaBlasAvailable(std::string &error) {
  return library(error) != nullptr;
}

/// cuBLASLt's epilogue for a GEMM's flags: the bias, then the activation.
static uint32_t epilogueFor(int32_t flags) {
  bool bias = flags & abi::kGemmBias;
  if (flags & abi::kGemmRelu)
    return bias ? lt::kEpilogueReluBias : lt::kEpilogueRelu;
  if (flags & abi::kGemmGeluTanh)
    return bias ? lt::kEpilogueGeluBias : lt::kEpilogueGelu;
  return bias ? lt::kEpilogueBias : lt::kEpilogueDefault;
}

extern "C" __attribute__((visibility("default"))) void
hasten_cuda_gemm(void *stream, int32_t flags, int64_t batch, int64_t m, int64_t n, int64_t k,
                 const void *a, int64_t aBatch, int64_t aRow, int64_t aCol, const void *b,
                 int64_t bBatch, int64_t bRow, int64_t bCol, const void *bias, void *c,
                 int64_t cBatch, int64_t cRow, int64_t cCol) {
  using hasten::runtime::setKernelError;
  if (hasten::runtime::hasKernelError() || batch <= 0 || m <= 0 || n <= 0)
    return;
  int32_t operandType = (flags >> abi::kGemmOperandTypeShift) & abi::kGemmTypeMask;
  int32_t resultType = (flags >> abi::kGemmResultTypeShift) & abi::kGemmTypeMask;
  // "3x6x4, f32 operands", for errors only (not formatted on every call).
  auto shape = [&] {
    return std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k) +
           (batch > 1 ? " (batch " + std::to_string(batch) + ")" : "") + ", " +
           typeName(operandType) + " operands";
  };
  if (k <= 0) {
    setKernelError("cuBLASLt: a GEMM with K = 0 (" + shape() + ")");
    return;
  }
  // C^T = B^T A^T in column-major terms: cuBLASLt's A is our B, its B our A.
  Layout la, lb, ld;
  if (!columnMajorTranspose(k, n, bRow, bCol, la) ||
      !columnMajorTranspose(m, k, aRow, aCol, lb)) {
    setKernelError("cuBLASLt: a GEMM operand (" + shape() +
                   ") has no unit stride in either dimension");
    return;
  }
  if (!columnMajorTranspose(m, n, cRow, cCol, ld) || ld.op != lt::kOpN) {
    setKernelError("cuBLASLt: a GEMM's product (" + shape() + ") is not row-major");
    return;
  }
  la.batchStride = bBatch;
  lb.batchStride = aBatch;
  ld.batchStride = cBatch;
  ThreadBlas *blas = threadBlas();
  if (!blas)
    return;
  const Library &lib = *blas->lib;
  bool hasBias = flags & abi::kGemmBias;
  std::array<int64_t, 20> key = {
      flags, batch, m, n, k, aBatch, aRow, aCol, bBatch, bRow, bCol, cBatch, cRow, cCol,
      alignmentOf(a), alignmentOf(b), alignmentOf(c), hasBias ? alignmentOf(bias) : 0, 0, 0};
  Plan &plan = blas->plans[key];
  auto fail = [&](const char *call, lt::Status s) {
    plan.error = "cuBLASLt " + describe(lib, call, s) + " for a " + shape() + " GEMM";
    setKernelError(plan.error);
  };
  if (!plan.desc) {
    int32_t compute = (flags & abi::kGemmTf32) ? lt::kCompute32FFastTf32 : lt::kCompute32F;
    uint32_t epilogue = epilogueFor(flags);
    lt::Status s = lib.descCreate(&plan.desc, compute, lt::kR32F);
    if (s == lt::kSuccess)
      s = lib.descSet(plan.desc, lt::kDescTransA, &la.op, sizeof(la.op));
    if (s == lt::kSuccess)
      s = lib.descSet(plan.desc, lt::kDescTransB, &lb.op, sizeof(lb.op));
    if (s == lt::kSuccess)
      s = lib.descSet(plan.desc, lt::kDescEpilogue, &epilogue, sizeof(epilogue));
    struct {
      Layout *layout;
      lt::MatrixLayout *handle;
      int32_t type;
    } matrices[] = {{&la, &plan.a, dataType(operandType)},
                    {&lb, &plan.b, dataType(operandType)},
                    {&ld, &plan.d, dataType(resultType)}};
    for (auto &x : matrices) {
      if (s != lt::kSuccess)
        break;
      s = lib.layoutCreate(x.handle, x.type, x.layout->rows, x.layout->cols, x.layout->ld);
      int32_t count = int32_t(batch);
      if (s == lt::kSuccess && batch > 1)
        s = lib.layoutSet(*x.handle, lt::kLayoutBatchCount, &count, sizeof(count));
      if (s == lt::kSuccess && batch > 1)
        s = lib.layoutSet(*x.handle, lt::kLayoutStridedBatchOffset, &x.layout->batchStride,
                          sizeof(int64_t));
    }
    if (s != lt::kSuccess)
      return fail("describing the GEMM", s);
    lt::Preference preference = nullptr;
    s = lib.prefCreate(&preference);
    uint64_t workspace = kWorkspaceBytes;
    uint32_t alignments[] = {alignmentOf(b), alignmentOf(a), alignmentOf(c), alignmentOf(c)};
    int32_t alignmentAttrs[] = {lt::kPrefMinAlignmentA, lt::kPrefMinAlignmentB,
                                lt::kPrefMinAlignmentC, lt::kPrefMinAlignmentD};
    if (s == lt::kSuccess)
      s = lib.prefSet(preference, lt::kPrefMaxWorkspaceBytes, &workspace, sizeof(workspace));
    for (int i = 0; i < 4 && s == lt::kSuccess; ++i)
      s = lib.prefSet(preference, alignmentAttrs[i], &alignments[i], sizeof(uint32_t));
    lt::HeuristicResult result{};
    int found = 0;
    if (s == lt::kSuccess)
      s = lib.heuristic(blas->handle, plan.desc, plan.a, plan.b, plan.d, plan.d, preference, 1,
                        &result, &found);
    if (preference)
      lib.prefDestroy(preference);
    if (s != lt::kSuccess)
      return fail("cublasLtMatmulAlgoGetHeuristic", s);
    if (found == 0) {
      plan.error = "cuBLASLt has no algorithm for a " + shape() + " GEMM on this GPU";
      setKernelError(plan.error);
      return;
    }
    plan.algo = result.algo;
    plan.ok = true;
  }
  if (!plan.ok) {
    setKernelError(plan.error);
    return;
  }
  if (hasBias) {
    if (lt::Status s = lib.descSet(plan.desc, lt::kDescBiasPointer, &bias, sizeof(bias));
        s != lt::kSuccess)
      return fail("cublasLtMatmulDescSetAttribute (bias)", s);
  }
  float alpha = 1.0f, beta = (flags & abi::kGemmAccumulate) ? 1.0f : 0.0f;
  if (lt::Status s = lib.matmul(blas->handle, plan.desc, &alpha, b, plan.a, a, plan.b, &beta, c,
                                plan.d, c, plan.d, &plan.algo, blas->workspace, kWorkspaceBytes,
                                static_cast<lt::Stream>(stream));
      s != lt::kSuccess)
    fail("cublasLtMatmul", s);
}
