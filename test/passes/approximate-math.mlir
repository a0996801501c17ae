// RUN: hasten-opt %s -hasten-approximate-math | FileCheck %s

// exp and tanh on f32 become inline polynomial arithmetic (fma chains), not
// calls; f64 keeps its libm-backed op.
// CHECK-LABEL: func @f32_ops
// CHECK-NOT: math.exp
// CHECK-NOT: math.tanh
// CHECK: math.fma
// CHECK: return
func.func @f32_ops(%x: f32) -> (f32, f32) {
  %e = math.exp %x : f32
  %t = math.tanh %x : f32
  return %e, %t : f32, f32
}

// CHECK-LABEL: func @f64_op
// CHECK: math.exp %{{.*}} : f64
func.func @f64_op(%x: f64) -> f64 {
  %e = math.exp %x : f64
  return %e : f64
}
