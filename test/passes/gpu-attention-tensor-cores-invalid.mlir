// RUN: hasten-opt %s -split-input-file -verify-diagnostics -hasten-gpu-attention="target=sm_70 precision=bf16"
// RUN: not hasten-opt %s -hasten-gpu-attention="target=sm_80 precision=tf32" 2>&1 | FileCheck %s --check-prefix=PRECISION

// Volta's tensor cores multiply f16, not bf16: said, rather than silently
// running the SIMT kernel.
func.func @volta(%q: tensor<1x2x32x32xf16>, %k: tensor<1x2x32x32xf16>, %v: tensor<1x2x32x32xf16>) -> tensor<1x2x32x32xf16> {
  // expected-error @+1 {{hasten-gpu-attention: precision=bf16 needs sm_80 or newer (Volta's tensor cores multiply f16: use precision=f16)}}
  %o = hasten.attention %q, %k, %v heads(2, 2) : tensor<1x2x32x32xf16>, tensor<1x2x32x32xf16>, tensor<1x2x32x32xf16> -> tensor<1x2x32x32xf16>
  return %o : tensor<1x2x32x32xf16>
}
// PRECISION: hasten-gpu-attention: unknown precision 'tf32' (expected f32, bf16 or f16)
