//===- RuntimeInternal.h - shared by the runtime's source files ------------===//

#ifndef HASTEN_RUNTIME_RUNTIMEINTERNAL_H
#define HASTEN_RUNTIME_RUNTIMEINTERNAL_H

#include "hasten/runtime.h"

#include <csetjmp>
#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

namespace hasten::runtime {

/// Kernels called from generated code cannot return errors through it; they
/// record the first error of the current run here, and hasten_run reports it
/// after the entry returns.
void setKernelError(const std::string &message);
/// Returns and clears the current thread's kernel error ("" if none).
std::string takeKernelError();
/// Whether the current run has failed (later GPU calls then do nothing).
bool hasKernelError();

/// Runs body(begin, end, context) over [0, count) split across the thread
/// pool, or on the calling thread when `work` is 0 (not worth it).
void parallelFor(int64_t count, int64_t work, void (*body)(int64_t, int64_t, void *),
                 void *context);
/// The same, one iteration per call, with threads that finish their share
/// taking iterations from the others' (for uneven iterations or threads).
void parallelForBalanced(int64_t count, int64_t work,
                         void (*body)(int64_t, int64_t, void *), void *context);

/// Drops what the kernels packed from weights in [begin, end): they find
/// their packs by the weight's address, which a module loaded after this
/// one's mapping is gone may reuse for other weights of the same shape.
void forgetWeights(const void *begin, const void *end);

/// What one hasten_run's entry has allocated (runtime/Allocation.cpp): on a
/// failed allocation the allocator frees it all and longjmps to `escape`.
struct RunAllocations {
  std::jmp_buf escape;
  std::unordered_set<void *> live;
  size_t failedBytes = 0;
};
/// Tracks the calling thread's allocations from generated code in `run`.
void beginRun(RunAllocations &run);
/// Stops tracking; after a failed allocation, frees what the run allocated.
void endRun(RunAllocations &run, bool failed);

/// A tensor over device memory (a CUDA module's KV cache): hasten_run
/// passes it to a CUDA entry without copying.
hasten_status wrapDeviceTensor(hasten_dtype dtype, int rank, const int64_t *dims, void *device,
                               hasten_tensor **out);

/// The tokens of each KV pool created from now on that a CUDA module keeps
/// in device memory (hasten_module_set_kv_device_tokens; -1: all of them).
int64_t kvDeviceTokens(const hasten_module *module);
void setKVDeviceTokens(hasten_module *module, int64_t tokens);

/// Sets the calling thread's hasten_last_error() and returns `status`.
hasten_status failWith(hasten_status status, const std::string &message);
/// The same with a printf-style message.
hasten_status fail(hasten_status status, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/// The logits after a sequence's last token (empty when unknown, as after
/// a truncate), which generation continues from.
std::vector<float> &lastLogits(hasten_sequence *sequence);

/// K of the module's fused spec_step entry when `target` (its main model)
/// and `draft` (its "draft" namespace) can run it, greedily or, with
/// `sampled`, at a temperature (modules compiled before sampling moved
/// inside the step only run greedy ones), else 0.
int64_t fusedSpeculationK(const hasten_sequence *target, const hasten_sequence *draft,
                          bool sampled);
/// One fused speculation step on `pending` (chosen, not yet in either
/// cache; the draft must hold exactly the target's tokens): `emitted`
/// receives the accepted proposals and the target's next token, and both
/// sequences keep the pending token and the accepted proposals they ran.
/// At `temperature` > 0 the step samples with `uniforms`, 2K + 1 draws in
/// [0, 1); at 0 it is greedy and `uniforms` may be null.
hasten_status runFusedSpeculation(hasten_sequence *target, hasten_sequence *draft,
                                  int64_t pending, float temperature, const float *uniforms,
                                  std::vector<int64_t> &emitted);

/// An MLIR memref descriptor of rank `Rank` as generated code passes it
/// through the C interface.
template <typename T, int Rank>
struct MemRefDescriptor {
  T *allocated;
  T *aligned;
  int64_t offset;
  int64_t sizes[Rank];
  int64_t strides[Rank];
  T *data() const { return aligned + offset; }
};

/// f32 weights in strips of 64 columns (include/hasten/WeightLayout.h):
/// strip s holds rows [0, k) of columns [64 s, 64 s + 64), `rowsPerStrip`
/// rows apart (k, or k padded by the compiler).
struct F32Strips {
  const float *data;
  int64_t k, rowsPerStrip, n, strips;
};
/// bf16 weights in strips of row pairs: `pairs` (padded) pairs per strip.
struct Bf16Strips {
  const uint32_t *data;
  int64_t k, pairs, n, strips;
};

/// C (+)= A * W with W packed by the compiler in `flags`' format
/// (PackedKernels.cpp). A is M x K, C is M x N, both f32 with unit column
/// stride.
void packedMatmul(const MemRefDescriptor<float, 2> &a, const uint8_t *w,
                  const MemRefDescriptor<float, 2> &c, int32_t flags);

/// The f32 strip kernels of Kernels.cpp (AVX-512): one row of x, and up to
/// 16 rows, each row's sums in the one-row kernel's order.
void f32StripsGemv(const F32Strips &w, const float *x, int64_t xStride, float *y,
                   bool overwrite);
void f32StripsRows(const F32Strips &w, const float *x, int64_t xRowStride, int64_t xStride,
                   int64_t rows, float *y, int64_t yRowStride, bool overwrite);
/// C (+)= A * W over W in oneDNN's blocked layout (the f32 or bf16 strips),
/// false when oneDNN has only its reference kernel for it.
bool stripsMatmulOneDnn(const MemRefDescriptor<float, 2> &a, const void *w,
                        const MemRefDescriptor<float, 2> &c, bool bf16, bool overwrite);
/// bf16 strips, x rounded to bf16 pairs (AVX512-BF16).
void bf16StripsGemv(const Bf16Strips &w, const float *x, int64_t xStride, float *y,
                    bool overwrite);

} // namespace hasten::runtime

#endif // HASTEN_RUNTIME_RUNTIMEINTERNAL_H
