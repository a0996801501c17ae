// RUN: hasten-opt %s -hasten-matmul-to-runtime-calls="weights=f8" -verify-diagnostics

// expected-error @below {{weights must be f32 or bf16, got 'f8'}}
module {
  func.func @f(%a: memref<4x8xf32>, %b: memref<8x16xf32>, %c: memref<4x16xf32>) {
    linalg.matmul ins(%a, %b : memref<4x8xf32>, memref<8x16xf32>) outs(%c : memref<4x16xf32>)
    return
  }
}
