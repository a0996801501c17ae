// RUN: hasten-opt %s -split-input-file -hasten-fuse-elementwise | FileCheck %s

#id = affine_map<(d0, d1) -> (d0, d1)>
#row = affine_map<(d0, d1) -> (d1)>

// bias-add then tanh then scale: one generic with all three in its body; the
// matmul and the reshapes around it stay as they are.
// CHECK-LABEL: func @chain_after_matmul
// CHECK: tensor.collapse_shape
// CHECK: %[[MM:.*]] = linalg.matmul
// CHECK: %[[FUSED:.*]] = linalg.generic
// CHECK-SAME: iterator_types = ["parallel", "parallel"]
// CHECK-SAME: ins(%[[MM]], %arg2
// CHECK: arith.addf
// CHECK: math.tanh
// CHECK: arith.mulf
// CHECK-NOT: linalg.generic
// CHECK: tensor.expand_shape %[[FUSED]]
func.func @chain_after_matmul(%x: tensor<2x4x8xf32>, %w: tensor<8x16xf32>, %b: tensor<16xf32>) -> tensor<2x4x16xf32> {
  %rows = tensor.collapse_shape %x [[0, 1], [2]] : tensor<2x4x8xf32> into tensor<8x8xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<8x16xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<8x16xf32>) -> tensor<8x16xf32>
  %mm = linalg.matmul ins(%rows, %w : tensor<8x8xf32>, tensor<8x16xf32>) outs(%acc : tensor<8x16xf32>) -> tensor<8x16xf32>
  %add = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]}
      ins(%mm, %b : tensor<8x16xf32>, tensor<16xf32>) outs(%e : tensor<8x16xf32>) {
  ^bb0(%a: f32, %c: f32, %o: f32):
    %s = arith.addf %a, %c : f32
    linalg.yield %s : f32
  } -> tensor<8x16xf32>
  %t = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%add : tensor<8x16xf32>) outs(%e : tensor<8x16xf32>) {
  ^bb0(%a: f32, %o: f32):
    %s = math.tanh %a : f32
    linalg.yield %s : f32
  } -> tensor<8x16xf32>
  %two = arith.constant 2.0 : f32
  %r = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%t : tensor<8x16xf32>) outs(%e : tensor<8x16xf32>) {
  ^bb0(%a: f32, %o: f32):
    %s = arith.mulf %a, %two : f32
    linalg.yield %s : f32
  } -> tensor<8x16xf32>
  %out = tensor.expand_shape %r [[0, 1], [2]] output_shape [2, 4, 16] : tensor<8x16xf32> into tensor<2x4x16xf32>
  return %out : tensor<2x4x16xf32>
}

// -----

#id = affine_map<(d0) -> (d0)>
#red = affine_map<(d0) -> ()>

// A producer with two users is not duplicated, and a reduction is not fused.
// CHECK-LABEL: func @not_fused
// CHECK: %[[EXP:.*]] = linalg.generic
// CHECK: math.exp
// CHECK: linalg.generic {{.*}}iterator_types = ["reduction"]{{.*}}ins(%[[EXP]]
// CHECK: linalg.generic {{.*}}ins(%[[EXP]]
func.func @not_fused(%x: tensor<8xf32>, %init: tensor<f32>) -> (tensor<f32>, tensor<8xf32>) {
  %e = tensor.empty() : tensor<8xf32>
  %exp = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]}
      ins(%x : tensor<8xf32>) outs(%e : tensor<8xf32>) {
  ^bb0(%a: f32, %o: f32):
    %s = math.exp %a : f32
    linalg.yield %s : f32
  } -> tensor<8xf32>
  %sum = linalg.generic {indexing_maps = [#id, #red], iterator_types = ["reduction"]}
      ins(%exp : tensor<8xf32>) outs(%init : tensor<f32>) {
  ^bb0(%a: f32, %o: f32):
    %s = arith.addf %a, %o : f32
    linalg.yield %s : f32
  } -> tensor<f32>
  %neg = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]}
      ins(%exp : tensor<8xf32>) outs(%e : tensor<8xf32>) {
  ^bb0(%a: f32, %o: f32):
    %s = arith.negf %a : f32
    linalg.yield %s : f32
  } -> tensor<8xf32>
  return %sum, %neg : tensor<f32>, tensor<8xf32>
}

// -----

// A batched convolution's product comes back from [f, n, o] to [n, f, o]
// through a permuting copy (--hasten-convolution-to-matmul); the epilogue
// absorbs it and reads the product through the permuted map, so no pass of
// its own moves the tensor. Likewise the bias broadcast is written in the
// product's layout directly.
#id3 = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
#swap = affine_map<(d0, d1, d2) -> (d1, d0, d2)>
#bias = affine_map<(d0, d1, d2) -> (d1, 0)>
// CHECK-DAG: #[[BIAS_F:.*]] = affine_map<(d0, d1, d2) -> (d0, 0)>
// CHECK-DAG: #[[SWAP:.*]] = affine_map<(d0, d1, d2) -> (d1, d0, d2)>
// CHECK-DAG: #[[ID3:.*]] = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
// CHECK-LABEL: func @permutes_fold_into_neighbours
// CHECK: %[[ACC:.*]] = linalg.generic {indexing_maps = [#[[BIAS_F]], #[[ID3]]]{{.*}} ins(%arg1 : tensor<4x1xf32>) outs(%{{.*}} : tensor<4x2x8xf32>)
// CHECK: %[[MM:.*]] = linalg.matmul
// CHECK: %[[E:.*]] = tensor.expand_shape %[[MM]]
// CHECK: %[[OUT:.*]] = linalg.generic {indexing_maps = [#[[SWAP]], #[[ID3]]]{{.*}} ins(%[[E]] : tensor<4x2x8xf32>) outs(%{{.*}} : tensor<2x4x8xf32>)
// CHECK: math.tanh
// CHECK-NOT: linalg.generic
// CHECK: return %[[OUT]]
func.func @permutes_fold_into_neighbours(%w: tensor<4x3xf32>, %b: tensor<4x1xf32>, %cols: tensor<3x16xf32>) -> tensor<2x4x8xf32> {
  %nfo = tensor.empty() : tensor<2x4x8xf32>
  %fno = tensor.empty() : tensor<4x2x8xf32>
  %bias = linalg.generic {indexing_maps = [#bias, #id3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%b : tensor<4x1xf32>) outs(%nfo : tensor<2x4x8xf32>) {
  ^bb0(%a: f32, %o: f32):
    linalg.yield %a : f32
  } -> tensor<2x4x8xf32>
  %moved = linalg.generic {indexing_maps = [#swap, #id3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%bias : tensor<2x4x8xf32>) outs(%fno : tensor<4x2x8xf32>) {
  ^bb0(%a: f32, %o: f32):
    linalg.yield %a : f32
  } -> tensor<4x2x8xf32>
  %acc = tensor.collapse_shape %moved [[0], [1, 2]] : tensor<4x2x8xf32> into tensor<4x16xf32>
  %mm = linalg.matmul ins(%w, %cols : tensor<4x3xf32>, tensor<3x16xf32>) outs(%acc : tensor<4x16xf32>) -> tensor<4x16xf32>
  %e = tensor.expand_shape %mm [[0], [1, 2]] output_shape [4, 2, 8] : tensor<4x16xf32> into tensor<4x2x8xf32>
  %back = linalg.generic {indexing_maps = [#swap, #id3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%e : tensor<4x2x8xf32>) outs(%nfo : tensor<2x4x8xf32>) {
  ^bb0(%a: f32, %o: f32):
    linalg.yield %a : f32
  } -> tensor<2x4x8xf32>
  %r = linalg.generic {indexing_maps = [#id3, #id3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%back : tensor<2x4x8xf32>) outs(%nfo : tensor<2x4x8xf32>) {
  ^bb0(%a: f32, %o: f32):
    %t = math.tanh %a : f32
    linalg.yield %t : f32
  } -> tensor<2x4x8xf32>
  return %r : tensor<2x4x8xf32>
}
