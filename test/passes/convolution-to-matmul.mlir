// RUN: hasten-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(hasten-convolution-to-matmul))' | FileCheck %s

// A strided, dilated 1-D convolution: the windows are gathered as
// [n, o, c, k] (x[n, c, 2 o + 3 k]) and collapsed to [n o, c k]; the filter
// is collapsed and transposed to [c k, f]; the bias moves to [n o, f] as the
// matmul's accumulator, and the product back to [n, f, o].
// CHECK-DAG: #[[WINDOW:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d2, d1 * 2 + d3 * 3)>
// CHECK-LABEL: func.func @conv1d(
// CHECK-SAME: %[[X:.*]]: tensor<2x3x20xf32>, %[[BIAS:.*]]: tensor<2x4x6xf32>)
// CHECK: %[[COLS:.*]] = linalg.generic {indexing_maps = [#[[WINDOW]], #{{.*}}], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%[[X]] : tensor<2x3x20xf32>) outs(%{{.*}} : tensor<2x6x3x3xf32>)
// CHECK: %[[LHS:.*]] = tensor.collapse_shape %[[COLS]] {{\[}}[0, 1], [2, 3]] : tensor<2x6x3x3xf32> into tensor<12x9xf32>
// CHECK: %[[WFLAT:.*]] = tensor.collapse_shape %{{.*}} {{\[}}[0], [1, 2]] : tensor<4x3x3xf32> into tensor<4x9xf32>
// CHECK: %[[RHS:.*]] = linalg.transpose ins(%[[WFLAT]] : tensor<4x9xf32>) outs(%{{.*}} : tensor<9x4xf32>) permutation = [1, 0]
// CHECK: %[[ACC:.*]] = linalg.transpose ins(%[[BIAS]] : tensor<2x4x6xf32>) outs(%{{.*}} : tensor<2x6x4xf32>) permutation = [0, 2, 1]
// CHECK: %[[ACCFLAT:.*]] = tensor.collapse_shape %[[ACC]] {{\[}}[0, 1], [2]]
// CHECK: %[[P:.*]] = linalg.matmul ins(%[[LHS]], %[[RHS]] : tensor<12x9xf32>, tensor<9x4xf32>) outs(%[[ACCFLAT]] : tensor<12x4xf32>)
// CHECK: %[[ROWS:.*]] = tensor.expand_shape %[[P]] {{\[}}[0, 1], [2]] output_shape [2, 6, 4]
// CHECK: %[[Y:.*]] = linalg.transpose ins(%[[ROWS]] : tensor<2x6x4xf32>) outs(%{{.*}} : tensor<2x4x6xf32>) permutation = [0, 2, 1]
// CHECK: return %[[Y]]
func.func @conv1d(%x: tensor<2x3x20xf32>, %bias: tensor<2x4x6xf32>) -> tensor<2x4x6xf32> {
  %w = arith.constant dense<0.5> : tensor<4x3x3xf32>
  %y = linalg.conv_1d_ncw_fcw {dilations = dense<3> : tensor<1xi64>, strides = dense<2> : tensor<1xi64>} ins(%x, %w : tensor<2x3x20xf32>, tensor<4x3x3xf32>) outs(%bias : tensor<2x4x6xf32>) -> tensor<2x4x6xf32>
  return %y : tensor<2x4x6xf32>
}

// -----

// 2-D, one image: the windows as columns, [c, kh, kw, oh, ow] (read along
// output rows: x[0, c, kh + oh, kw + ow]), collapsed to [c kh kw, oh ow];
// the filter (a transpose of a constant still counts as constant)
// collapsed to [f, c kh kw] multiplies them into the init collapsed to
// [f, oh ow], and the product expands back to NCHW with no move.
// CHECK-DAG: #[[WINDOW2:.*]] = affine_map<(d0, d1, d2, d3, d4) -> (0, d0, d1 + d3, d2 + d4)>
// CHECK-LABEL: func.func @conv2d(
// CHECK-SAME: %[[X:.*]]: tensor<1x2x4x4xf32>, %[[ACC:.*]]: tensor<1x5x3x3xf32>)
// CHECK: %[[W:.*]] = linalg.transpose
// CHECK: %[[COLS:.*]] = linalg.generic {indexing_maps = [#[[WINDOW2]], #{{.*}}]{{.*}} ins(%[[X]] : tensor<1x2x4x4xf32>) outs(%{{.*}} : tensor<2x2x2x3x3xf32>)
// CHECK: %[[RHS:.*]] = tensor.collapse_shape %[[COLS]] {{\[}}[0, 1, 2], [3, 4]] : tensor<2x2x2x3x3xf32> into tensor<8x9xf32>
// CHECK: %[[LHS:.*]] = tensor.collapse_shape %[[W]] {{\[}}[0], [1, 2, 3]] : tensor<5x2x2x2xf32> into tensor<5x8xf32>
// CHECK: %[[INIT:.*]] = tensor.collapse_shape %[[ACC]] {{\[}}[0, 1], [2, 3]] : tensor<1x5x3x3xf32> into tensor<5x9xf32>
// CHECK: %[[P:.*]] = linalg.matmul ins(%[[LHS]], %[[RHS]] : tensor<5x8xf32>, tensor<8x9xf32>) outs(%[[INIT]] : tensor<5x9xf32>)
// CHECK: %[[Y:.*]] = tensor.expand_shape %[[P]] {{\[}}[0, 1], [2, 3]] output_shape [1, 5, 3, 3]
// CHECK: return %[[Y]]
// CHECK-NOT: linalg.conv_2d_nchw_fchw
func.func @conv2d(%x: tensor<1x2x4x4xf32>, %acc: tensor<1x5x3x3xf32>) -> tensor<1x5x3x3xf32> {
  %c = arith.constant dense<0.25> : tensor<2x5x2x2xf32>
  %e = tensor.empty() : tensor<5x2x2x2xf32>
  %w = linalg.transpose ins(%c : tensor<2x5x2x2xf32>) outs(%e : tensor<5x2x2x2xf32>) permutation = [1, 0, 2, 3]
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>} ins(%x, %w : tensor<1x2x4x4xf32>, tensor<5x2x2x2xf32>) outs(%acc : tensor<1x5x3x3xf32>) -> tensor<1x5x3x3xf32>
  return %y : tensor<1x5x3x3xf32>
}

// -----

// Left alone: a filter that is an argument (no packing to gain), and a
// window of fewer than 8 elements (the gather would be most of the work).
// CHECK-LABEL: func.func @left_alone(
// CHECK: linalg.conv_1d_ncw_fcw
// CHECK: linalg.conv_1d_ncw_fcw
// CHECK-NOT: linalg.matmul
func.func @left_alone(%x: tensor<1x3x10xf32>, %w: tensor<4x3x3xf32>, %acc: tensor<1x4x8xf32>,
                      %x1: tensor<1x2x10xf32>, %acc1: tensor<1x4x10xf32>) -> (tensor<1x4x8xf32>, tensor<1x4x10xf32>) {
  %y = linalg.conv_1d_ncw_fcw {dilations = dense<1> : tensor<1xi64>, strides = dense<1> : tensor<1xi64>} ins(%x, %w : tensor<1x3x10xf32>, tensor<4x3x3xf32>) outs(%acc : tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
  %w1 = arith.constant dense<1.0> : tensor<4x2x1xf32>
  %y1 = linalg.conv_1d_ncw_fcw {dilations = dense<1> : tensor<1xi64>, strides = dense<1> : tensor<1xi64>} ins(%x1, %w1 : tensor<1x2x10xf32>, tensor<4x2x1xf32>) outs(%acc1 : tensor<1x4x10xf32>) -> tensor<1x4x10xf32>
  return %y, %y1 : tensor<1x4x8xf32>, tensor<1x4x10xf32>
}

// -----

// The integer convolution of a QDQ model (conv_2d_nchw_fchw_q, from
// --hasten-fold-quantized-contractions), one image: the windows gathered
// in int8 as columns, and one linalg.quantized_matmul of the int8 filter
// by them into the i32 accumulator, the filter first, so the zero points
// swap places (the filter's, then the input's).
// CHECK-LABEL: func.func @conv2d_quantized(
// CHECK-SAME: %[[X:.*]]: tensor<1x2x4x4xi8>, %[[ACC:.*]]: tensor<1x5x3x3xi32>, %[[ZX:.*]]: i32, %[[ZW:.*]]: i32)
// CHECK: %[[COLS:.*]] = linalg.generic {{.*}} ins(%[[X]] : tensor<1x2x4x4xi8>) outs(%{{.*}} : tensor<2x2x2x3x3xi8>)
// CHECK: %[[RHS:.*]] = tensor.collapse_shape %[[COLS]] {{\[}}[0, 1, 2], [3, 4]] : tensor<2x2x2x3x3xi8> into tensor<8x9xi8>
// CHECK: %[[LHS:.*]] = tensor.collapse_shape %{{.*}} {{\[}}[0], [1, 2, 3]] : tensor<5x2x2x2xi8> into tensor<5x8xi8>
// CHECK: %[[FLAT:.*]] = tensor.collapse_shape %[[ACC]] {{\[}}[0, 1], [2, 3]] : tensor<1x5x3x3xi32> into tensor<5x9xi32>
// CHECK: %[[P:.*]] = linalg.quantized_matmul ins(%[[LHS]], %[[RHS]], %[[ZW]], %[[ZX]] : tensor<5x8xi8>, tensor<8x9xi8>, i32, i32) outs(%[[FLAT]] : tensor<5x9xi32>)
// CHECK: tensor.expand_shape %[[P]] {{\[}}[0, 1], [2, 3]] output_shape [1, 5, 3, 3]
// CHECK-NOT: linalg.conv_2d_nchw_fchw_q
func.func @conv2d_quantized(%x: tensor<1x2x4x4xi8>, %acc: tensor<1x5x3x3xi32>, %zx: i32, %zw: i32) -> tensor<1x5x3x3xi32> {
  %w = arith.constant dense<3> : tensor<5x2x2x2xi8>
  %y = linalg.conv_2d_nchw_fchw_q {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>} ins(%x, %w, %zx, %zw : tensor<1x2x4x4xi8>, tensor<5x2x2x2xi8>, i32, i32) outs(%acc : tensor<1x5x3x3xi32>) -> tensor<1x5x3x3xi32>
  return %y : tensor<1x5x3x3xi32>
}

// -----

// One image with strides and dilations: the windows read
// x[0, c, oh * 3 + kh * 2, ow * 3 + kw * 2] (stride 3, dilation 2).
// CHECK-DAG: #[[DILATED:.*]] = affine_map<(d0, d1, d2, d3, d4) -> (0, d0, d3 * 3 + d1 * 2, d4 * 3 + d2 * 2)>
// CHECK-LABEL: func.func @conv2d_dilated(
// CHECK: linalg.generic {indexing_maps = [#[[DILATED]], #{{.*}}]{{.*}} outs(%{{.*}} : tensor<2x3x3x3x3xf32>)
// CHECK: linalg.matmul ins(%{{.*}}, %{{.*}} : tensor<4x18xf32>, tensor<18x9xf32>)
func.func @conv2d_dilated(%x: tensor<1x2x11x11xf32>, %acc: tensor<1x4x3x3xf32>) -> tensor<1x4x3x3xf32> {
  %w = arith.constant dense<0.5> : tensor<4x2x3x3xf32>
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<2> : tensor<2xi64>, strides = dense<3> : tensor<2xi64>} ins(%x, %w : tensor<1x2x11x11xf32>, tensor<4x2x3x3xf32>) outs(%acc : tensor<1x4x3x3xf32>) -> tensor<1x4x3x3xf32>
  return %y : tensor<1x4x3x3xf32>
}

// -----

// A batch of two images in int8: windows as rows, the filter transposed,
// the input's zero point first (the windows are A).
// CHECK-LABEL: func.func @conv2d_quantized_batch(
// CHECK-SAME: %[[X:.*]]: tensor<2x2x4x4xi8>, %[[ACC:.*]]: tensor<2x5x3x3xi32>, %[[ZX:.*]]: i32, %[[ZW:.*]]: i32)
// CHECK: %[[COLS:.*]] = linalg.generic {{.*}} ins(%[[X]] : tensor<2x2x4x4xi8>) outs(%{{.*}} : tensor<2x3x3x2x2x2xi8>)
// CHECK: %[[LHS:.*]] = tensor.collapse_shape %[[COLS]] {{\[}}[0, 1, 2], [3, 4, 5]] : tensor<2x3x3x2x2x2xi8> into tensor<18x8xi8>
// CHECK: %[[RHS:.*]] = linalg.transpose ins(%{{.*}} : tensor<5x8xi8>) outs(%{{.*}} : tensor<8x5xi8>) permutation = [1, 0]
// CHECK: linalg.quantized_matmul ins(%[[LHS]], %[[RHS]], %[[ZX]], %[[ZW]] : tensor<18x8xi8>, tensor<8x5xi8>, i32, i32) outs(%{{.*}} : tensor<18x5xi32>)
// CHECK: linalg.transpose ins(%{{.*}} : tensor<2x3x3x5xi32>) outs(%{{.*}} : tensor<2x5x3x3xi32>) permutation = [0, 3, 1, 2]
func.func @conv2d_quantized_batch(%x: tensor<2x2x4x4xi8>, %acc: tensor<2x5x3x3xi32>, %zx: i32, %zw: i32) -> tensor<2x5x3x3xi32> {
  %w = arith.constant dense<3> : tensor<5x2x2x2xi8>
  %y = linalg.conv_2d_nchw_fchw_q {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>} ins(%x, %w, %zx, %zw : tensor<2x2x4x4xi8>, tensor<5x2x2x2xi8>, i32, i32) outs(%acc : tensor<2x5x3x3xi32>) -> tensor<2x5x3x3xi32>
  return %y : tensor<2x5x3x3xi32>
}

// -----

// A batch of two whose output rows are long (40 positions): the windows as
// columns [c k, n o] (x[n, c, o + k], read along output rows), the filter
// as the product's left operand, the bias moved to [f, n o] as its
// accumulator and the product back to [n, f, o]. Both moves are elementwise
// generics (not linalg.transpose), which --hasten-fuse-elementwise folds
// into the loops that produce the bias and consume the result.
// CHECK-DAG: #[[BATCH_WINDOWS:.*]] = affine_map<(d0, d1, d2, d3) -> (d2, d0, d1 + d3)>
// CHECK-DAG: #[[SWAP:.*]] = affine_map<(d0, d1, d2) -> (d1, d0, d2)>
// CHECK-DAG: #[[ID3:.*]] = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
// CHECK-LABEL: func.func @conv1d_batch_long_rows(
// CHECK-SAME: %[[X:.*]]: tensor<2x3x42xf32>, %[[BIAS:.*]]: tensor<2x4x40xf32>)
// CHECK: %[[COLS:.*]] = linalg.generic {indexing_maps = [#[[BATCH_WINDOWS]], #{{.*}}]{{.*}} ins(%[[X]] : tensor<2x3x42xf32>) outs(%{{.*}} : tensor<3x3x2x40xf32>)
// CHECK: %[[RHS:.*]] = tensor.collapse_shape %[[COLS]] {{\[}}[0, 1], [2, 3]] : tensor<3x3x2x40xf32> into tensor<9x80xf32>
// CHECK: %[[W:.*]] = tensor.collapse_shape %{{.*}} {{\[}}[0], [1, 2]] : tensor<4x3x3xf32> into tensor<4x9xf32>
// CHECK: %[[BYF:.*]] = linalg.generic {indexing_maps = [#[[SWAP]], #[[ID3]]], iterator_types = ["parallel", "parallel", "parallel"]} ins(%[[BIAS]] : tensor<2x4x40xf32>) outs(%{{.*}} : tensor<4x2x40xf32>)
// CHECK-NEXT: ^bb0(%[[B_IN:.*]]: f32, %{{.*}}: f32):
// CHECK-NEXT: linalg.yield %[[B_IN]] : f32
// CHECK: %[[ACC:.*]] = tensor.collapse_shape %[[BYF]] {{\[}}[0], [1, 2]] : tensor<4x2x40xf32> into tensor<4x80xf32>
// CHECK: %[[P:.*]] = linalg.matmul ins(%[[W]], %[[RHS]] : tensor<4x9xf32>, tensor<9x80xf32>) outs(%[[ACC]] : tensor<4x80xf32>)
// CHECK: %[[E:.*]] = tensor.expand_shape %[[P]] {{\[}}[0], [1, 2]] output_shape [4, 2, 40]
// CHECK: %[[Y:.*]] = linalg.generic {indexing_maps = [#[[SWAP]], #[[ID3]]], iterator_types = ["parallel", "parallel", "parallel"]} ins(%[[E]] : tensor<4x2x40xf32>) outs(%{{.*}} : tensor<2x4x40xf32>)
// CHECK-NEXT: ^bb0(%[[Y_IN:.*]]: f32, %{{.*}}: f32):
// CHECK-NEXT: linalg.yield %[[Y_IN]] : f32
// CHECK: return %[[Y]]
func.func @conv1d_batch_long_rows(%x: tensor<2x3x42xf32>, %bias: tensor<2x4x40xf32>) -> tensor<2x4x40xf32> {
  %w = arith.constant dense<0.5> : tensor<4x3x3xf32>
  %y = linalg.conv_1d_ncw_fcw {dilations = dense<1> : tensor<1xi64>, strides = dense<1> : tensor<1xi64>} ins(%x, %w : tensor<2x3x42xf32>, tensor<4x3x3xf32>) outs(%bias : tensor<2x4x40xf32>) -> tensor<2x4x40xf32>
  return %y : tensor<2x4x40xf32>
}
