// RUN: hasten-opt %s -split-input-file -verify-diagnostics
// RUN: not hasten-opt %s -split-input-file -hasten-gpu-gemm=precision=fp8 2>&1 | FileCheck %s

// What hasten.gpu_gemm's verifier refuses, and the pass's unknown precision.

func.func @rank(%a: memref<4xf32>, %b: memref<4x6xf32>, %c: memref<1x6xf32>) {
  // expected-error @+1 {{takes matrices (rank 2) or batches of them (rank 3) of one rank}}
  hasten.gpu_gemm %a, %b into %c : memref<4xf32>, memref<4x6xf32> into memref<1x6xf32>
  return
}

// -----

func.func @integers(%a: memref<2x4xi8>, %b: memref<4x6xi8>, %c: memref<2x6xf32>) {
  // expected-error @+1 {{operands must be f32, bf16 or f16, got 'i8'}}
  hasten.gpu_gemm %a, %b into %c : memref<2x4xi8>, memref<4x6xi8> into memref<2x6xf32>
  return
}

// -----

func.func @mixed(%a: memref<2x4xf32>, %b: memref<4x6xbf16>, %c: memref<2x6xf32>) {
  // expected-error @+1 {{operands must have one element type, got 'f32' and 'bf16'}}
  hasten.gpu_gemm %a, %b into %c : memref<2x4xf32>, memref<4x6xbf16> into memref<2x6xf32>
  return
}

// -----

func.func @narrow_product(%a: memref<2x4xbf16>, %b: memref<4x6xbf16>, %c: memref<2x6xf16>) {
  // expected-error @+1 {{the product must be f32 or 'bf16', got 'f16'}}
  hasten.gpu_gemm %a, %b into %c : memref<2x4xbf16>, memref<4x6xbf16> into memref<2x6xf16>
  return
}

// -----

func.func @tf32_bf16(%a: memref<2x4xbf16>, %b: memref<4x6xbf16>, %c: memref<2x6xf32>) {
  // expected-error @+1 {{tf32 rounds f32 operands; these are 'bf16'}}
  hasten.gpu_gemm %a, %b into %c tf32 : memref<2x4xbf16>, memref<4x6xbf16> into memref<2x6xf32>
  return
}

// -----

func.func @shapes(%a: memref<2x5xf32>, %b: memref<4x6xf32>, %c: memref<2x6xf32>) {
  // expected-error @+1 {{shapes do not multiply}}
  hasten.gpu_gemm %a, %b into %c : memref<2x5xf32>, memref<4x6xf32> into memref<2x6xf32>
  return
}

// -----

func.func @batch(%a: memref<3x2x4xf32>, %b: memref<1x4x6xf32>, %c: memref<2x2x6xf32>) {
  // expected-error @+1 {{batch of 'memref<3x2x4xf32>' does not broadcast to 'memref<2x2x6xf32>'}}
  hasten.gpu_gemm %a, %b into %c : memref<3x2x4xf32>, memref<1x4x6xf32> into memref<2x2x6xf32>
  return
}

// -----

func.func @bias(%a: memref<2x4xf32>, %b: memref<4x6xf32>, %bias: memref<4xf32>, %c: memref<2x6xf32>) {
  // expected-error @+1 {{bias must be one 'f32' per column of the product, got 'memref<4xf32>'}}
  hasten.gpu_gemm %a, %b bias(%bias : memref<4xf32>) into %c : memref<2x4xf32>, memref<4x6xf32> into memref<2x6xf32>
  return
}

// -----

func.func @activation(%a: memref<2x4xf32>, %b: memref<4x6xf32>, %c: memref<2x6xf32>) {
  // expected-error @+1 {{activation must be relu or gelu_tanh, got 'gelu_erf'}}
  hasten.gpu_gemm %a, %b into %c activation "gelu_erf" : memref<2x4xf32>, memref<4x6xf32> into memref<2x6xf32>
  return
}

// -----

// CHECK: error: --hasten-gpu-gemm: precision must be f32, tf32, bf16 or f16, got 'fp8'
module {
}
