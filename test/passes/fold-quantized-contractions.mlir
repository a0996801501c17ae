// RUN: hasten-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(hasten-fold-quantized-contractions{report-unfolded},canonicalize))' -verify-diagnostics | FileCheck %s

// ONNX Runtime's QDQ spelling of an int8 linear layer, as imported: uint8
// activations quantized and dequantized with one scale and zero point
// (0.5, 10), an int8 weight dequantized per column (0.25 and 0.125, zero
// point 0), an f32 matmul of [2, 3, 4] rows. It becomes the integer matmul
// of the stored values: the activations' top bit flipped (uint8 read as
// int8, so the zero point is 10 - 128 = -118) and collapsed as the f32
// operand was, the weight as stored, then one scale per column, 0.5 * 0.25
// and 0.5 * 0.125.
// CHECK-LABEL: func.func @u8_activations_per_column_weights
// CHECK-DAG: %[[SIGN:.*]] = arith.constant -128 : i8
// CHECK-DAG: %[[ZA:.*]] = arith.constant -118 : i32
// CHECK-DAG: %[[ZB:.*]] = arith.constant 0 : i32
// CHECK-DAG: %[[W:.*]] = arith.constant dense<{{\[}}[1, -2], [3, -4], [5, -6], [7, -8]]> : tensor<4x2xi8>
// CHECK-DAG: %[[SCALES:.*]] = arith.constant dense<[1.250000e-01, 6.250000e-02]> : tensor<2xf32>
// CHECK: %[[Q:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<2x3x4xi8>)
// CHECK: arith.fptoui
// CHECK: %[[FLIPPED:.*]] = linalg.generic {{.*}} ins(%[[Q]] : tensor<2x3x4xi8>)
// CHECK-NEXT: ^bb0(%[[IN:.*]]: i8, %{{.*}}: i8):
// CHECK-NEXT: arith.xori %[[IN]], %[[SIGN]] : i8
// CHECK: %[[ROWS:.*]] = tensor.collapse_shape %[[FLIPPED]] {{\[}}[0, 1], [2]] : tensor<2x3x4xi8> into tensor<6x4xi8>
// CHECK: %[[ZEROS:.*]] = linalg.fill ins(%{{.*}} : i32) outs(%{{.*}} : tensor<6x2xi32>)
// CHECK: %[[ACC:.*]] = linalg.quantized_matmul ins(%[[ROWS]], %[[W]], %[[ZA]], %[[ZB]] : tensor<6x4xi8>, tensor<4x2xi8>, i32, i32) outs(%[[ZEROS]] : tensor<6x2xi32>)
// CHECK: %[[Y:.*]] = linalg.generic {{.*}} ins(%[[ACC]], %[[SCALES]] : tensor<6x2xi32>, tensor<2xf32>)
// CHECK-NEXT: ^bb0(%[[ACC_IN:.*]]: i32, %[[SCALE:.*]]: f32, %{{.*}}: f32):
// CHECK-NEXT: %[[F:.*]] = arith.sitofp %[[ACC_IN]] : i32 to f32
// CHECK-NEXT: %[[P:.*]] = arith.mulf %[[F]], %[[SCALE]] : f32
// CHECK-NEXT: linalg.yield %[[P]]
// CHECK-NOT: linalg.matmul
// CHECK: return %[[Y]]
#id3 = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
#scalar3 = affine_map<(d0, d1, d2) -> ()>
#id2 = affine_map<(d0, d1) -> (d0, d1)>
#column = affine_map<(d0, d1) -> (0, d1)>
func.func @u8_activations_per_column_weights(%x: tensor<2x3x4xf32>) -> tensor<6x2xf32> {
  %sx = arith.constant dense<0.5> : tensor<f32>
  %zx = arith.constant dense<10> : tensor<i8>
  %wq = arith.constant dense<[[1, -2], [3, -4], [5, -6], [7, -8]]> : tensor<4x2xi8>
  %sw = arith.constant dense<[[0.25, 0.125]]> : tensor<1x2xf32>
  %zw = arith.constant dense<0> : tensor<1x2xi8>
  %lo = arith.constant 0.0 : f32
  %hi = arith.constant 255.0 : f32
  %e0 = tensor.empty() : tensor<2x3x4xi8>
  %xq = linalg.generic {indexing_maps = [#id3, #scalar3, #scalar3, #id3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%x, %sx, %zx : tensor<2x3x4xf32>, tensor<f32>, tensor<i8>) outs(%e0 : tensor<2x3x4xi8>) {
  ^bb0(%v: f32, %s: f32, %z: i8, %o: i8):
    %d = arith.divf %v, %s : f32
    %r = math.roundeven %d : f32
    %zf = arith.uitofp %z : i8 to f32
    %a = arith.addf %r, %zf : f32
    %c0 = arith.maximumf %a, %lo : f32
    %c1 = arith.minimumf %c0, %hi : f32
    %q = arith.fptoui %c1 : f32 to i8
    linalg.yield %q : i8
  } -> tensor<2x3x4xi8>
  %e1 = tensor.empty() : tensor<2x3x4xf32>
  %xd = linalg.generic {indexing_maps = [#id3, #scalar3, #scalar3, #id3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%xq, %sx, %zx : tensor<2x3x4xi8>, tensor<f32>, tensor<i8>) outs(%e1 : tensor<2x3x4xf32>) {
  ^bb0(%q: i8, %s: f32, %z: i8, %o: f32):
    %qf = arith.uitofp %q : i8 to f32
    %zf = arith.uitofp %z : i8 to f32
    %d = arith.subf %qf, %zf : f32
    %m = arith.mulf %d, %s : f32
    linalg.yield %m : f32
  } -> tensor<2x3x4xf32>
  %e2 = tensor.empty() : tensor<4x2xf32>
  %wd = linalg.generic {indexing_maps = [#id2, #column, #column, #id2], iterator_types = ["parallel", "parallel"]}
      ins(%wq, %sw, %zw : tensor<4x2xi8>, tensor<1x2xf32>, tensor<1x2xi8>) outs(%e2 : tensor<4x2xf32>) {
  ^bb0(%q: i8, %s: f32, %z: i8, %o: f32):
    %qf = arith.sitofp %q : i8 to f32
    %zf = arith.sitofp %z : i8 to f32
    %d = arith.subf %qf, %zf : f32
    %m = arith.mulf %d, %s : f32
    linalg.yield %m : f32
  } -> tensor<4x2xf32>
  %rows = tensor.collapse_shape %xd [[0, 1], [2]] : tensor<2x3x4xf32> into tensor<6x4xf32>
  %zero = arith.constant 0.0 : f32
  %e3 = tensor.empty() : tensor<6x2xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e3 : tensor<6x2xf32>) -> tensor<6x2xf32>
  %y = linalg.matmul ins(%rows, %wd : tensor<6x4xf32>, tensor<4x2xf32>) outs(%init : tensor<6x2xf32>) -> tensor<6x2xf32>
  return %y : tensor<6x2xf32>
}

// -----

// int8 activations without a zero point, an asymmetric uint8 weight with
// one scale (its per-axis parameters reshaped from [N] to [1, N] and all
// equal) and zero point 130: the constant weight is flipped at compile time
// (0 -> -128, 255 -> 127, 130 -> 2) and its zero point becomes 2; one
// scale, 0.5 * 0.25, for the tensor; a non-zero init (a Gemm's bias) is
// added.
// CHECK-LABEL: func.func @s8_activations_u8_weights_with_bias
// CHECK-DAG: %[[ZA:.*]] = arith.constant 0 : i32
// CHECK-DAG: %[[ZB:.*]] = arith.constant 2 : i32
// CHECK-DAG: %[[W:.*]] = arith.constant dense<{{\[}}[-128, 127], [2, 3]]> : tensor<2x2xi8>
// CHECK-DAG: %[[SCALE:.*]] = arith.constant 1.250000e-01 : f32
// CHECK: %[[ACC:.*]] = linalg.quantized_matmul ins(%arg0, %[[W]], %[[ZA]], %[[ZB]] : tensor<3x2xi8>, tensor<2x2xi8>, i32, i32)
// CHECK: linalg.generic {{.*}} ins(%[[ACC]], %arg1 : tensor<3x2xi32>, tensor<3x2xf32>)
// CHECK-NEXT: ^bb0(%[[A:.*]]: i32, %[[BIAS:.*]]: f32, %{{.*}}: f32):
// CHECK-NEXT: %[[F:.*]] = arith.sitofp %[[A]] : i32 to f32
// CHECK-NEXT: %[[P:.*]] = arith.mulf %[[F]], %[[SCALE]] : f32
// CHECK-NEXT: %[[S:.*]] = arith.addf %[[P]], %[[BIAS]] : f32
// CHECK-NEXT: linalg.yield %[[S]]
#id2 = affine_map<(d0, d1) -> (d0, d1)>
#scalar2 = affine_map<(d0, d1) -> ()>
#column = affine_map<(d0, d1) -> (0, d1)>
func.func @s8_activations_u8_weights_with_bias(%xq: tensor<3x2xi8>, %bias: tensor<3x2xf32>) -> tensor<3x2xf32> {
  %sx = arith.constant dense<0.5> : tensor<f32>
  %wq = arith.constant dense<[[0, -1], [-126, -125]]> : tensor<2x2xi8>
  %sw1 = arith.constant dense<[0.25, 0.25]> : tensor<2xf32>
  %sw = tensor.expand_shape %sw1 [[0, 1]] output_shape [1, 2] : tensor<2xf32> into tensor<1x2xf32>
  %zw = arith.constant dense<-126> : tensor<1x2xi8>
  %e1 = tensor.empty() : tensor<3x2xf32>
  %xd = linalg.generic {indexing_maps = [#id2, #scalar2, #id2], iterator_types = ["parallel", "parallel"]}
      ins(%xq, %sx : tensor<3x2xi8>, tensor<f32>) outs(%e1 : tensor<3x2xf32>) {
  ^bb0(%q: i8, %s: f32, %o: f32):
    %qf = arith.sitofp %q : i8 to f32
    %m = arith.mulf %qf, %s : f32
    linalg.yield %m : f32
  } -> tensor<3x2xf32>
  %e2 = tensor.empty() : tensor<2x2xf32>
  %wd = linalg.generic {indexing_maps = [#id2, #column, #column, #id2], iterator_types = ["parallel", "parallel"]}
      ins(%wq, %sw, %zw : tensor<2x2xi8>, tensor<1x2xf32>, tensor<1x2xi8>) outs(%e2 : tensor<2x2xf32>) {
  ^bb0(%q: i8, %s: f32, %z: i8, %o: f32):
    %qf = arith.uitofp %q : i8 to f32
    %zf = arith.uitofp %z : i8 to f32
    %d = arith.subf %qf, %zf : f32
    %m = arith.mulf %s, %d : f32
    linalg.yield %m : f32
  } -> tensor<2x2xf32>
  %y = linalg.matmul ins(%xd, %wd : tensor<3x2xf32>, tensor<2x2xf32>) outs(%bias : tensor<3x2xf32>) -> tensor<3x2xf32>
  return %y : tensor<3x2xf32>
}

// -----

// Left in f32, with a remark each: per-row activation scales; a weight
// whose zero point differs between columns; a scale that is a function
// argument.
// CHECK-LABEL: func.func @unfoldable
// CHECK-NOT: linalg.quantized_matmul
// CHECK-COUNT-3: linalg.matmul
#id2 = affine_map<(d0, d1) -> (d0, d1)>
#row = affine_map<(d0, d1) -> (d0, 0)>
#scalar2 = affine_map<(d0, d1) -> ()>
#column = affine_map<(d0, d1) -> (0, d1)>
func.func @unfoldable(%xq: tensor<2x2xi8>, %w: tensor<2x2xf32>, %runtime_scale: tensor<f32>) -> (tensor<2x2xf32>, tensor<2x2xf32>, tensor<2x2xf32>) {
  %rows = arith.constant dense<[[0.5], [0.25]]> : tensor<2x1xf32>
  %one = arith.constant dense<0.5> : tensor<f32>
  %zeros = arith.constant dense<0.0> : tensor<2x2xf32>
  %e = tensor.empty() : tensor<2x2xf32>
  %per_row = linalg.generic {indexing_maps = [#id2, #row, #id2], iterator_types = ["parallel", "parallel"]}
      ins(%xq, %rows : tensor<2x2xi8>, tensor<2x1xf32>) outs(%e : tensor<2x2xf32>) {
  ^bb0(%q: i8, %s: f32, %o: f32):
    %qf = arith.sitofp %q : i8 to f32
    %m = arith.mulf %qf, %s : f32
    linalg.yield %m : f32
  } -> tensor<2x2xf32>
  // expected-remark @below {{matmul of dequantized operands left as it is: the activation's scale is not one value for the tensor}}
  %y0 = linalg.matmul ins(%per_row, %w : tensor<2x2xf32>, tensor<2x2xf32>) outs(%zeros : tensor<2x2xf32>) -> tensor<2x2xf32>
  %xd = linalg.generic {indexing_maps = [#id2, #scalar2, #id2], iterator_types = ["parallel", "parallel"]}
      ins(%xq, %one : tensor<2x2xi8>, tensor<f32>) outs(%e : tensor<2x2xf32>) {
  ^bb0(%q: i8, %s: f32, %o: f32):
    %qf = arith.sitofp %q : i8 to f32
    %m = arith.mulf %qf, %s : f32
    linalg.yield %m : f32
  } -> tensor<2x2xf32>
  %zw = arith.constant dense<[[1, 2]]> : tensor<1x2xi8>
  %wd = linalg.generic {indexing_maps = [#id2, #scalar2, #column, #id2], iterator_types = ["parallel", "parallel"]}
      ins(%xq, %one, %zw : tensor<2x2xi8>, tensor<f32>, tensor<1x2xi8>) outs(%e : tensor<2x2xf32>) {
  ^bb0(%q: i8, %s: f32, %z: i8, %o: f32):
    %qf = arith.sitofp %q : i8 to f32
    %zf = arith.sitofp %z : i8 to f32
    %d = arith.subf %qf, %zf : f32
    %m = arith.mulf %d, %s : f32
    linalg.yield %m : f32
  } -> tensor<2x2xf32>
  // expected-remark @below {{matmul of dequantized operands left as it is: the weight's zero point is not one value for the tensor}}
  %y1 = linalg.matmul ins(%xd, %wd : tensor<2x2xf32>, tensor<2x2xf32>) outs(%zeros : tensor<2x2xf32>) -> tensor<2x2xf32>
  %xr = linalg.generic {indexing_maps = [#id2, #scalar2, #id2], iterator_types = ["parallel", "parallel"]}
      ins(%xq, %runtime_scale : tensor<2x2xi8>, tensor<f32>) outs(%e : tensor<2x2xf32>) {
  ^bb0(%q: i8, %s: f32, %o: f32):
    %qf = arith.sitofp %q : i8 to f32
    %m = arith.mulf %qf, %s : f32
    linalg.yield %m : f32
  } -> tensor<2x2xf32>
  // expected-remark @below {{matmul of dequantized operands left as it is: the activation's scale is not a constant}}
  %y2 = linalg.matmul ins(%xr, %xd : tensor<2x2xf32>, tensor<2x2xf32>) outs(%zeros : tensor<2x2xf32>) -> tensor<2x2xf32>
  return %y0, %y1, %y2 : tensor<2x2xf32>, tensor<2x2xf32>, tensor<2x2xf32>
}

// -----

// A QDQ convolution: the uint8 input (scale 0.5, zero point 10), padded by
// one with 0.0 in f32, becomes the flipped input padded with its zero
// point (10 - 128 = -118, which dequantizes to 0); the int8 filter is
// dequantized per output channel ([2, 1, 1, 1] scales 0.25 and 0.125),
// so the result is scaled along dim 1 of NCHW; the bias init is added.
// CHECK-LABEL: func.func @qdq_convolution
// CHECK-DAG: %[[ZX:.*]] = arith.constant -118 : i32
// CHECK-DAG: %[[ZX8:.*]] = arith.constant -118 : i8
// CHECK-DAG: %[[ZW:.*]] = arith.constant 0 : i32
// CHECK-DAG: %[[SCALES:.*]] = arith.constant dense<[1.250000e-01, 6.250000e-02]> : tensor<2xf32>
// CHECK: %[[FLIPPED:.*]] = linalg.generic {{.*}} ins(%arg0 : tensor<1x1x4x4xi8>)
// CHECK: arith.xori
// CHECK: %[[PADDED:.*]] = tensor.pad %[[FLIPPED]] low[0, 0, 1, 1] high[0, 0, 1, 1]
// CHECK-NEXT: ^bb0
// CHECK-NEXT: tensor.yield %[[ZX8]] : i8
// CHECK: %[[ACC:.*]] = linalg.conv_2d_nchw_fchw_q {dilations = dense<1> : tensor<2xi64>, strides = dense<2> : tensor<2xi64>} ins(%[[PADDED]], %{{.*}}, %[[ZX]], %[[ZW]] : tensor<1x1x6x6xi8>, tensor<2x1x3x3xi8>, i32, i32) outs(%{{.*}} : tensor<1x2x2x2xi32>)
// CHECK: linalg.generic {indexing_maps = [#{{.*}}, #[[CHANNEL:.*]], #{{.*}}, #{{.*}}], {{.*}} ins(%[[ACC]], %[[SCALES]], %arg1 : tensor<1x2x2x2xi32>, tensor<2xf32>, tensor<1x2x2x2xf32>)
// CHECK: arith.sitofp
// CHECK-NEXT: arith.mulf
// CHECK-NEXT: arith.addf
// CHECK-NOT: linalg.conv_2d_nchw_fchw ins
#id4 = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#scalar4 = affine_map<(d0, d1, d2, d3) -> ()>
#filter = affine_map<(d0, d1, d2, d3) -> (d0, 0, 0, 0)>
func.func @qdq_convolution(%xq: tensor<1x1x4x4xi8>, %bias: tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32> {
  %sx = arith.constant dense<0.5> : tensor<f32>
  %zx = arith.constant dense<10> : tensor<i8>
  %wq = arith.constant dense<3> : tensor<2x1x3x3xi8>
  %sw = arith.constant dense<[[[[0.25]]], [[[0.125]]]]> : tensor<2x1x1x1xf32>
  %e0 = tensor.empty() : tensor<1x1x4x4xf32>
  %xd = linalg.generic {indexing_maps = [#id4, #scalar4, #scalar4, #id4], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%xq, %sx, %zx : tensor<1x1x4x4xi8>, tensor<f32>, tensor<i8>) outs(%e0 : tensor<1x1x4x4xf32>) {
  ^bb0(%q: i8, %s: f32, %z: i8, %o: f32):
    %qf = arith.uitofp %q : i8 to f32
    %zf = arith.uitofp %z : i8 to f32
    %d = arith.subf %qf, %zf : f32
    %m = arith.mulf %d, %s : f32
    linalg.yield %m : f32
  } -> tensor<1x1x4x4xf32>
  %e1 = tensor.empty() : tensor<2x1x3x3xf32>
  %wd = linalg.generic {indexing_maps = [#id4, #filter, #id4], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%wq, %sw : tensor<2x1x3x3xi8>, tensor<2x1x1x1xf32>) outs(%e1 : tensor<2x1x3x3xf32>) {
  ^bb0(%q: i8, %s: f32, %o: f32):
    %qf = arith.sitofp %q : i8 to f32
    %m = arith.mulf %qf, %s : f32
    linalg.yield %m : f32
  } -> tensor<2x1x3x3xf32>
  %zero = arith.constant 0.0 : f32
  %padded = tensor.pad %xd low[0, 0, 1, 1] high[0, 0, 1, 1] {
  ^bb0(%i: index, %j: index, %k: index, %l: index):
    tensor.yield %zero : f32
  } : tensor<1x1x4x4xf32> to tensor<1x1x6x6xf32>
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<1> : tensor<2xi64>, strides = dense<2> : tensor<2xi64>}
      ins(%padded, %wd : tensor<1x1x6x6xf32>, tensor<2x1x3x3xf32>) outs(%bias : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  return %y : tensor<1x2x2x2xf32>
}

// -----

// MatMulInteger as imported (zero points subtracted in i32, then an i32
// matmul), with the activation's uint8 zero point computed at run time
// (DynamicQuantizeLinear's) and the weight's a constant: the zero point is
// read from its tensor, widened unsigned and moved by 128 like the values;
// the product accumulates into the matmul's own init, with no scaling.
// CHECK-LABEL: func.func @matmul_integer_runtime_zero_point
// CHECK-SAME: (%[[XQ:.*]]: tensor<2x3xi8>, %[[ZP:.*]]: tensor<i8>)
// CHECK-DAG: %[[C128:.*]] = arith.constant 128 : i32
// CHECK-DAG: %[[ZB:.*]] = arith.constant 5 : i32
// CHECK: %[[FLIPPED:.*]] = linalg.generic {{.*}} ins(%[[XQ]] : tensor<2x3xi8>)
// CHECK: %[[Z8:.*]] = tensor.extract %[[ZP]][] : tensor<i8>
// CHECK-NEXT: %[[Z32:.*]] = arith.extui %[[Z8]] : i8 to i32
// CHECK-NEXT: %[[ZA:.*]] = arith.subi %[[Z32]], %[[C128]] : i32
// CHECK: %[[ACC:.*]] = linalg.quantized_matmul ins(%[[FLIPPED]], %{{.*}}, %[[ZA]], %[[ZB]] : tensor<2x3xi8>, tensor<3x2xi8>, i32, i32) outs(%{{.*}} : tensor<2x2xi32>)
// CHECK-NEXT: return %[[ACC]]
#id2 = affine_map<(d0, d1) -> (d0, d1)>
#scalar2 = affine_map<(d0, d1) -> ()>
func.func @matmul_integer_runtime_zero_point(%xq: tensor<2x3xi8>, %zp: tensor<i8>) -> tensor<2x2xi32> {
  %wq = arith.constant dense<[[1, 2], [3, 4], [5, 6]]> : tensor<3x2xi8>
  %zw = arith.constant dense<5> : tensor<i8>
  %e0 = tensor.empty() : tensor<2x3xi32>
  %a = linalg.generic {indexing_maps = [#id2, #scalar2, #id2], iterator_types = ["parallel", "parallel"]}
      ins(%xq, %zp : tensor<2x3xi8>, tensor<i8>) outs(%e0 : tensor<2x3xi32>) {
  ^bb0(%q: i8, %z: i8, %o: i32):
    %qi = arith.extui %q : i8 to i32
    %zi = arith.extui %z : i8 to i32
    %d = arith.subi %qi, %zi : i32
    linalg.yield %d : i32
  } -> tensor<2x3xi32>
  %e1 = tensor.empty() : tensor<3x2xi32>
  %b = linalg.generic {indexing_maps = [#id2, #scalar2, #id2], iterator_types = ["parallel", "parallel"]}
      ins(%wq, %zw : tensor<3x2xi8>, tensor<i8>) outs(%e1 : tensor<3x2xi32>) {
  ^bb0(%q: i8, %z: i8, %o: i32):
    %qi = arith.extsi %q : i8 to i32
    %zi = arith.extsi %z : i8 to i32
    %d = arith.subi %qi, %zi : i32
    linalg.yield %d : i32
  } -> tensor<3x2xi32>
  %c0 = arith.constant 0 : i32
  %e2 = tensor.empty() : tensor<2x2xi32>
  %init = linalg.fill ins(%c0 : i32) outs(%e2 : tensor<2x2xi32>) -> tensor<2x2xi32>
  %y = linalg.matmul ins(%a, %b : tensor<2x3xi32>, tensor<3x2xi32>) outs(%init : tensor<2x2xi32>) -> tensor<2x2xi32>
  return %y : tensor<2x2xi32>
}

// -----

// ConvInteger as imported: both operands widened to i32 with their zero
// points subtracted (uint8 input, zero point 3; int8 filter, none), the
// input padded with 0 in i32. It becomes the int8 convolution of the
// flipped input padded with its zero point (3 - 128 = -125), accumulating
// into the convolution's own init, with nothing after it.
// CHECK-LABEL: func.func @conv_integer
// CHECK-DAG: %[[ZX:.*]] = arith.constant -125 : i32
// CHECK-DAG: %[[ZX8:.*]] = arith.constant -125 : i8
// CHECK-DAG: %[[ZW:.*]] = arith.constant 0 : i32
// CHECK: %[[FLIPPED:.*]] = linalg.generic {{.*}} ins(%arg0 : tensor<1x1x4x4xi8>)
// CHECK: %[[PADDED:.*]] = tensor.pad %[[FLIPPED]] low[0, 0, 1, 1] high[0, 0, 1, 1]
// CHECK: tensor.yield %[[ZX8]] : i8
// CHECK: %[[ACC:.*]] = linalg.conv_2d_nchw_fchw_q {{.*}} ins(%[[PADDED]], %{{.*}}, %[[ZX]], %[[ZW]] : tensor<1x1x6x6xi8>, tensor<2x1x3x3xi8>, i32, i32) outs(%arg1 : tensor<1x2x4x4xi32>)
// CHECK-NEXT: return %[[ACC]]
#id4 = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#scalar4 = affine_map<(d0, d1, d2, d3) -> ()>
func.func @conv_integer(%xq: tensor<1x1x4x4xi8>, %init: tensor<1x2x4x4xi32>) -> tensor<1x2x4x4xi32> {
  %zx = arith.constant dense<3> : tensor<i8>
  %wq = arith.constant dense<2> : tensor<2x1x3x3xi8>
  %e0 = tensor.empty() : tensor<1x1x4x4xi32>
  %x = linalg.generic {indexing_maps = [#id4, #scalar4, #id4], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%xq, %zx : tensor<1x1x4x4xi8>, tensor<i8>) outs(%e0 : tensor<1x1x4x4xi32>) {
  ^bb0(%q: i8, %z: i8, %o: i32):
    %qi = arith.extui %q : i8 to i32
    %zi = arith.extui %z : i8 to i32
    %d = arith.subi %qi, %zi : i32
    linalg.yield %d : i32
  } -> tensor<1x1x4x4xi32>
  %e1 = tensor.empty() : tensor<2x1x3x3xi32>
  %w = linalg.generic {indexing_maps = [#id4, #id4], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%wq : tensor<2x1x3x3xi8>) outs(%e1 : tensor<2x1x3x3xi32>) {
  ^bb0(%q: i8, %o: i32):
    %qi = arith.extsi %q : i8 to i32
    linalg.yield %qi : i32
  } -> tensor<2x1x3x3xi32>
  %zero = arith.constant 0 : i32
  %padded = tensor.pad %x low[0, 0, 1, 1] high[0, 0, 1, 1] {
  ^bb0(%i: index, %j: index, %k: index, %l: index):
    tensor.yield %zero : i32
  } : tensor<1x1x4x4xi32> to tensor<1x1x6x6xi32>
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>}
      ins(%padded, %w : tensor<1x1x6x6xi32>, tensor<2x1x3x3xi32>) outs(%init : tensor<1x2x4x4xi32>) -> tensor<1x2x4x4xi32>
  return %y : tensor<1x2x4x4xi32>
}
