// RUN: not hasten-opt %s -hasten-matmul-to-runtime-calls="weights=f8" 2>&1 | FileCheck %s --check-prefix=WEIGHTS
// RUN: not hasten-opt %s -hasten-matmul-to-runtime-calls="weight-layout=blocked" 2>&1 | FileCheck %s --check-prefix=LAYOUT
// RUN: not hasten-opt %s -hasten-matmul-to-runtime-calls="weights=int4 int4-group=48" 2>&1 | FileCheck %s --check-prefix=GROUP

// WEIGHTS: error: weights must be f32, bf16, int8 or int4, got 'f8'
// LAYOUT: error: weight-layout must be plain or strips, got 'blocked'
// GROUP: error: int4-group must be 32, 64 or 128, got 48
module {
  func.func @f(%a: memref<4x8xf32>, %b: memref<8x16xf32>, %c: memref<4x16xf32>) {
    linalg.matmul ins(%a, %b : memref<4x8xf32>, memref<8x16xf32>) outs(%c : memref<4x16xf32>)
    return
  }
}
