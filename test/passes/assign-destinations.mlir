// RUN: hasten-opt %s -split-input-file -allow-unregistered-dialect -pass-pipeline='builtin.module(func.func(hasten-assign-destinations))' | FileCheck %s

// An elementwise op whose input dies there writes into that input: the
// residual add updates %x in place.
// CHECK-LABEL: func.func @dying_input(
// CHECK-SAME: %[[N:.*]]: index
// CHECK: %[[X:.*]] = linalg.generic
// CHECK-NOT: tensor.empty
// CHECK: linalg.generic {{.*}} ins(%[[X]], %{{.*}} : tensor<?x64xf32>, tensor<?x64xf32>) outs(%[[X]] : tensor<?x64xf32>)
#id = affine_map<(i, j) -> (i, j)>
func.func @dying_input(%n: index, %a: tensor<?x64xf32>, %y: tensor<?x64xf32>) -> tensor<?x64xf32> {
  %e0 = tensor.empty(%n) : tensor<?x64xf32>
  %x = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%a : tensor<?x64xf32>) outs(%e0 : tensor<?x64xf32>) {
  ^bb0(%in: f32, %out: f32):
    %m = arith.mulf %in, %in : f32
    linalg.yield %m : f32
  } -> tensor<?x64xf32>
  %e1 = tensor.empty(%n) : tensor<?x64xf32>
  %sum = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%x, %y : tensor<?x64xf32>, tensor<?x64xf32>) outs(%e1 : tensor<?x64xf32>) {
  ^bb0(%in: f32, %in1: f32, %out: f32):
    %s = arith.addf %in, %in1 : f32
    linalg.yield %s : f32
  } -> tensor<?x64xf32>
  return %sum : tensor<?x64xf32>
}

// -----

// Not in place: an input that is used again later, a function argument and
// an input (used once) read transposed. Each op gets its own empty tensor, right before
// it, instead of the one they shared.
// CHECK-LABEL: func.func @live_inputs(
// CHECK: %[[X:.*]] = linalg.generic
// CHECK: %[[E1:.*]] = tensor.empty
// CHECK-NEXT: linalg.generic {{.*}} ins(%[[X]], %{{.*}} : tensor<8x8xf32>, tensor<8x8xf32>) outs(%[[E1]] : tensor<8x8xf32>)
// CHECK: %[[E2:.*]] = tensor.empty
// CHECK-NEXT: linalg.generic {{.*}} outs(%[[E2]] : tensor<8x8xf32>)
// CHECK: %[[ONCE:.*]] = linalg.generic
// CHECK: %[[E3:.*]] = tensor.empty
// CHECK-NEXT: linalg.generic {{.*}} ins(%[[ONCE]] : tensor<8x8xf32>) outs(%[[E3]] : tensor<8x8xf32>)
#id2 = affine_map<(i, j) -> (i, j)>
#tr = affine_map<(i, j) -> (j, i)>
func.func @live_inputs(%a: tensor<8x8xf32>)
    -> (tensor<8x8xf32>, tensor<8x8xf32>, tensor<8x8xf32>, tensor<8x8xf32>) {
  %e = tensor.empty() : tensor<8x8xf32>
  %x = linalg.generic {indexing_maps = [#id2, #id2], iterator_types = ["parallel", "parallel"]}
      ins(%a : tensor<8x8xf32>) outs(%e : tensor<8x8xf32>) {
  ^bb0(%in: f32, %out: f32):
    %m = arith.mulf %in, %in : f32
    linalg.yield %m : f32
  } -> tensor<8x8xf32>
  %sum = linalg.generic {indexing_maps = [#id2, #id2, #id2], iterator_types = ["parallel", "parallel"]}
      ins(%x, %a : tensor<8x8xf32>, tensor<8x8xf32>) outs(%e : tensor<8x8xf32>) {
  ^bb0(%in: f32, %in1: f32, %out: f32):
    %s = arith.addf %in, %in1 : f32
    linalg.yield %s : f32
  } -> tensor<8x8xf32>
  %arg_only = linalg.generic {indexing_maps = [#id2, #id2], iterator_types = ["parallel", "parallel"]}
      ins(%a : tensor<8x8xf32>) outs(%e : tensor<8x8xf32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<8x8xf32>
  %once = linalg.generic {indexing_maps = [#id2, #id2], iterator_types = ["parallel", "parallel"]}
      ins(%a : tensor<8x8xf32>) outs(%e : tensor<8x8xf32>) {
  ^bb0(%in: f32, %out: f32):
    %d = arith.addf %in, %in : f32
    linalg.yield %d : f32
  } -> tensor<8x8xf32>
  %t = linalg.generic {indexing_maps = [#tr, #id2], iterator_types = ["parallel", "parallel"]}
      ins(%once : tensor<8x8xf32>) outs(%e : tensor<8x8xf32>) {
  ^bb0(%in: f32, %out: f32):
    linalg.yield %in : f32
  } -> tensor<8x8xf32>
  return %x, %sum, %arg_only, %t : tensor<8x8xf32>, tensor<8x8xf32>, tensor<8x8xf32>, tensor<8x8xf32>
}

// -----

// One zero-filled accumulator that CSE shared between two matmuls far apart:
// each matmul gets its own, filled right before it.
// CHECK-LABEL: func.func @shared_accumulator(
// CHECK: "test.before"
// CHECK-NEXT: %[[E0:.*]] = tensor.empty(%{{.*}}) : tensor<?x16xf32>
// CHECK-NEXT: %[[F0:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%[[E0]] : tensor<?x16xf32>)
// CHECK-NEXT: %[[M0:.*]] = linalg.matmul {{.*}} outs(%[[F0]] : tensor<?x16xf32>)
// CHECK-NEXT: "test.between"(%[[M0]])
// CHECK-NEXT: %[[E1:.*]] = tensor.empty(%{{.*}}) : tensor<?x16xf32>
// CHECK-NEXT: %[[F1:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%[[E1]] : tensor<?x16xf32>)
// CHECK-NEXT: linalg.matmul {{.*}} outs(%[[F1]] : tensor<?x16xf32>)
// CHECK-NOT: linalg.fill
func.func @shared_accumulator(%n: index, %a: tensor<?x8xf32>, %w: tensor<8x16xf32>) -> tensor<?x16xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty(%n) : tensor<?x16xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<?x16xf32>) -> tensor<?x16xf32>
  "test.before"() : () -> ()
  %m0 = linalg.matmul ins(%a, %w : tensor<?x8xf32>, tensor<8x16xf32>) outs(%acc : tensor<?x16xf32>) -> tensor<?x16xf32>
  "test.between"(%m0) : (tensor<?x16xf32>) -> ()
  %m1 = linalg.matmul ins(%a, %w : tensor<?x8xf32>, tensor<8x16xf32>) outs(%acc : tensor<?x16xf32>) -> tensor<?x16xf32>
  return %m1 : tensor<?x16xf32>
}

// -----

// A reshaped argument is still the caller's buffer: the op that reads the
// expanded view (and is its only user) gets a fresh tensor, not the view.
// CHECK-LABEL: func.func @reshaped_argument(
// CHECK: %[[VIEW:.*]] = tensor.expand_shape %arg0
// CHECK: %[[E:.*]] = tensor.empty
// CHECK-NEXT: linalg.generic {{.*}} ins(%[[VIEW]] : tensor<2x4xf32>) outs(%[[E]] : tensor<2x4xf32>)
#id3 = affine_map<(i, j) -> (i, j)>
func.func @reshaped_argument(%x: tensor<8xf32>) -> tensor<2x4xf32> {
  %view = tensor.expand_shape %x [[0, 1]] output_shape [2, 4] : tensor<8xf32> into tensor<2x4xf32>
  %e = tensor.empty() : tensor<2x4xf32>
  %y = linalg.generic {indexing_maps = [#id3, #id3], iterator_types = ["parallel", "parallel"]}
      ins(%view : tensor<2x4xf32>) outs(%e : tensor<2x4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %m = arith.mulf %in, %in : f32
    linalg.yield %m : f32
  } -> tensor<2x4xf32>
  return %y : tensor<2x4xf32>
}
