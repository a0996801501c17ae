/*===- hasten/KernelAbi.h - what generated code passes the runtime kernels ===*
 *
 * The flag bits that the compiler's runtime-call passes encode and the
 * runtime's kernels decode, and the one f32 -> bf16 rounding both use (the
 * compiler rounds stored weights, the runtime rounds weights and activations
 * it packs at run time; they must agree). Header-only: the runtime links no
 * compiler code.
 *
 *===----------------------------------------------------------------------===*/

#ifndef HASTEN_KERNELABI_H
#define HASTEN_KERNELABI_H

#include <cstdint>
#include <cstring>

namespace hasten::abi {

/// hasten_rt_*matmul*: B is a constant weight (packed once, at first use).
constexpr int32_t kConstantWeights = 1;
/// ... computed in bf16 with f32 accumulation.
constexpr int32_t kBf16 = 2;
/// ... C may be overwritten rather than accumulated into.
constexpr int32_t kOverwrite = 4;
/// ... B's elements are bf16 in memory (set by the *_bf16w entry points).
constexpr int32_t kBf16Storage = 8;

/// hasten_rt_*attention*: causal masking.
constexpr int32_t kCausal = 1;
/// ... the mask operand is present (additive f32).
constexpr int32_t kHasMask = 2;

/// hasten_cuda_gemm (the CUDA target's hasten.gpu_gemm): the operands' and
/// the product's element types (kGemmF32, ...) at these shifts, and the
/// flags after them.
constexpr int32_t kGemmF32 = 0, kGemmBf16 = 1, kGemmF16 = 2, kGemmTypeMask = 3;
constexpr int32_t kGemmOperandTypeShift = 0, kGemmResultTypeShift = 2;
/// ... C += A B rather than C = A B.
constexpr int32_t kGemmAccumulate = 16;
/// ... f32 operands may round to TF32.
constexpr int32_t kGemmTf32 = 32;
/// ... a bias per column of C is added (the bias pointer is set).
constexpr int32_t kGemmBias = 64;
/// ... ReLU, or GELU's tanh approximation, is applied last (after the bias).
constexpr int32_t kGemmRelu = 128, kGemmGeluTanh = 256;

/// Rounds f32 to bf16, to nearest even; NaN stays NaN.
inline uint16_t toBf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  if ((bits & 0x7fffffff) > 0x7f800000)
    return (uint16_t)((bits >> 16) | 0x40);
  bits += 0x7fff + ((bits >> 16) & 1);
  return (uint16_t)(bits >> 16);
}

} // namespace hasten::abi

#endif // HASTEN_KERNELABI_H
