// RUN: hasten-opt %s -split-input-file --hasten-fuse-attention --canonicalize | FileCheck %s

// nanoGPT's spelling: Q K^T (keys transposed by linalg.transpose), a Mul by
// the scale, masked_fill(dropped, -inf) with a [1, 1, S, T] mask, softmax,
// times V. The select becomes an additive mask over [1, 1, S, T] only; the
// transpose, the score matrix and the softmax are gone.

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#scalar = affine_map<(d0, d1, d2, d3) -> ()>
#rows = affine_map<(d0, d1, d2, d3) -> (0, 0, d2, d3)>
// CHECK-LABEL: func.func @masked_fill(
// CHECK-SAME: %[[Q:[^:]*]]: tensor<1x2x4x8xf32>, %[[K:[^:]*]]: tensor<1x2x4x8xf32>, %[[V:[^:]*]]: tensor<1x2x4x8xf32>, %[[DROP:[^:]*]]: tensor<1x1x4x4xi1>
// CHECK-NOT: linalg.transpose
// CHECK: %[[MASK:.*]] = linalg.generic {{.*}} ins(%[[DROP]], %{{.*}} : tensor<1x1x4x4xi1>, tensor<f32>) outs(%{{.*}} : tensor<1x1x4x4xf32>)
// CHECK: arith.select
// CHECK: %[[O:.*]] = hasten.attention %[[Q]], %[[K]], %[[V]] mask(%[[MASK]] : tensor<1x1x4x4xf32>) heads(2, 2) scale(2.500000e-01)
// CHECK-NOT: linalg.softmax
// CHECK-NOT: linalg.batch_matmul
// CHECK: return %[[O]]
func.func @masked_fill(%q: tensor<1x2x4x8xf32>, %k: tensor<1x2x4x8xf32>, %v: tensor<1x2x4x8xf32>,
                       %dropped: tensor<1x1x4x4xi1>) -> tensor<1x2x4x8xf32> {
  %zero = arith.constant 0.0 : f32
  %scale = arith.constant dense<0.25> : tensor<f32>
  %ninf = arith.constant dense<0xFF800000> : tensor<f32>
  %kt_init = tensor.empty() : tensor<1x2x8x4xf32>
  %kt = linalg.transpose ins(%k : tensor<1x2x4x8xf32>) outs(%kt_init : tensor<1x2x8x4xf32>) permutation = [0, 1, 3, 2]
  %q3 = tensor.collapse_shape %q [[0, 1], [2], [3]] : tensor<1x2x4x8xf32> into tensor<2x4x8xf32>
  %kt3 = tensor.collapse_shape %kt [[0, 1], [2], [3]] : tensor<1x2x8x4xf32> into tensor<2x8x4xf32>
  %s_init = tensor.empty() : tensor<2x4x4xf32>
  %s_zero = linalg.fill ins(%zero : f32) outs(%s_init : tensor<2x4x4xf32>) -> tensor<2x4x4xf32>
  %s3 = linalg.batch_matmul ins(%q3, %kt3 : tensor<2x4x8xf32>, tensor<2x8x4xf32>) outs(%s_zero : tensor<2x4x4xf32>) -> tensor<2x4x4xf32>
  %s = tensor.expand_shape %s3 [[0, 1], [2], [3]] output_shape [1, 2, 4, 4] : tensor<2x4x4xf32> into tensor<1x2x4x4xf32>
  %e = tensor.empty() : tensor<1x2x4x4xf32>
  %scaled = linalg.generic {indexing_maps = [#id, #scalar, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%s, %scale : tensor<1x2x4x4xf32>, tensor<f32>) outs(%e : tensor<1x2x4x4xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %m = arith.mulf %a, %b : f32
    linalg.yield %m : f32
  } -> tensor<1x2x4x4xf32>
  %masked = linalg.generic {indexing_maps = [#rows, #scalar, #id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%dropped, %ninf, %scaled : tensor<1x1x4x4xi1>, tensor<f32>, tensor<1x2x4x4xf32>) outs(%e : tensor<1x2x4x4xf32>) {
  ^bb0(%c: i1, %n: f32, %a: f32, %o: f32):
    %r = arith.select %c, %n, %a : f32
    linalg.yield %r : f32
  } -> tensor<1x2x4x4xf32>
  %p = linalg.softmax dimension(3) ins(%masked : tensor<1x2x4x4xf32>) outs(%e : tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %p3 = tensor.collapse_shape %p [[0, 1], [2], [3]] : tensor<1x2x4x4xf32> into tensor<2x4x4xf32>
  %v3 = tensor.collapse_shape %v [[0, 1], [2], [3]] : tensor<1x2x4x8xf32> into tensor<2x4x8xf32>
  %o_init = tensor.empty() : tensor<2x4x8xf32>
  %o_zero = linalg.fill ins(%zero : f32) outs(%o_init : tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %o3 = linalg.batch_matmul ins(%p3, %v3 : tensor<2x4x4xf32>, tensor<2x4x8xf32>) outs(%o_zero : tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %o = tensor.expand_shape %o3 [[0, 1], [2], [3]] output_shape [1, 2, 4, 8] : tensor<2x4x8xf32> into tensor<1x2x4x8xf32>
  return %o : tensor<1x2x4x8xf32>
}

// -----

// The same in bf16: fused all the same, computing in f32 (the operands
// widened, the mask built in bf16 as the model wrote it and widened, the
// result rounded back to bf16).

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#scalar = affine_map<(d0, d1, d2, d3) -> ()>
#rows = affine_map<(d0, d1, d2, d3) -> (0, 0, d2, d3)>
// CHECK-LABEL: func.func @masked_fill_bf16(
// CHECK-SAME: %[[Q:[^:]*]]: tensor<1x2x4x8xbf16>, %[[K:[^:]*]]: tensor<1x2x4x8xbf16>, %[[V:[^:]*]]: tensor<1x2x4x8xbf16>, %[[DROP:[^:]*]]: tensor<1x1x4x4xi1>
// CHECK: %[[QF:.*]] = linalg.generic {{.*}} ins(%[[Q]] : tensor<1x2x4x8xbf16>) outs(%{{.*}} : tensor<1x2x4x8xf32>)
// CHECK: arith.extf %{{.*}} : bf16 to f32
// CHECK: %[[KF:.*]] = linalg.generic {{.*}} ins(%[[K]] : tensor<1x2x4x8xbf16>) outs(%{{.*}} : tensor<1x2x4x8xf32>)
// CHECK: %[[VF:.*]] = linalg.generic {{.*}} ins(%[[V]] : tensor<1x2x4x8xbf16>) outs(%{{.*}} : tensor<1x2x4x8xf32>)
// CHECK: %[[MASK:.*]] = linalg.generic {{.*}} ins(%[[DROP]], %{{.*}} : tensor<1x1x4x4xi1>, tensor<bf16>) outs(%{{.*}} : tensor<1x1x4x4xbf16>)
// CHECK: %[[MASKF:.*]] = linalg.generic {{.*}} ins(%[[MASK]] : tensor<1x1x4x4xbf16>) outs(%{{.*}} : tensor<1x1x4x4xf32>)
// CHECK: %[[OF:.*]] = hasten.attention %[[QF]], %[[KF]], %[[VF]] mask(%[[MASKF]] : tensor<1x1x4x4xf32>) heads(2, 2) scale(2.500000e-01) : tensor<1x2x4x8xf32>
// CHECK: %[[O:.*]] = linalg.generic {{.*}} ins(%[[OF]] : tensor<1x2x4x8xf32>) outs(%{{.*}} : tensor<1x2x4x8xbf16>)
// CHECK: arith.truncf %{{.*}} : f32 to bf16
// CHECK-NOT: linalg.softmax
// CHECK-NOT: linalg.batch_matmul
// CHECK: return %[[O]]
func.func @masked_fill_bf16(%q: tensor<1x2x4x8xbf16>, %k: tensor<1x2x4x8xbf16>, %v: tensor<1x2x4x8xbf16>,
                            %dropped: tensor<1x1x4x4xi1>) -> tensor<1x2x4x8xbf16> {
  %zero = arith.constant 0.0 : bf16
  %scale = arith.constant dense<0.25> : tensor<bf16>
  %ninf = arith.constant dense<0xFF80> : tensor<bf16>
  %kt_init = tensor.empty() : tensor<1x2x8x4xbf16>
  %kt = linalg.transpose ins(%k : tensor<1x2x4x8xbf16>) outs(%kt_init : tensor<1x2x8x4xbf16>) permutation = [0, 1, 3, 2]
  %q3 = tensor.collapse_shape %q [[0, 1], [2], [3]] : tensor<1x2x4x8xbf16> into tensor<2x4x8xbf16>
  %kt3 = tensor.collapse_shape %kt [[0, 1], [2], [3]] : tensor<1x2x8x4xbf16> into tensor<2x8x4xbf16>
  %s_init = tensor.empty() : tensor<2x4x4xbf16>
  %s_zero = linalg.fill ins(%zero : bf16) outs(%s_init : tensor<2x4x4xbf16>) -> tensor<2x4x4xbf16>
  %s3 = linalg.batch_matmul ins(%q3, %kt3 : tensor<2x4x8xbf16>, tensor<2x8x4xbf16>) outs(%s_zero : tensor<2x4x4xbf16>) -> tensor<2x4x4xbf16>
  %s = tensor.expand_shape %s3 [[0, 1], [2], [3]] output_shape [1, 2, 4, 4] : tensor<2x4x4xbf16> into tensor<1x2x4x4xbf16>
  %e = tensor.empty() : tensor<1x2x4x4xbf16>
  %scaled = linalg.generic {indexing_maps = [#id, #scalar, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%s, %scale : tensor<1x2x4x4xbf16>, tensor<bf16>) outs(%e : tensor<1x2x4x4xbf16>) {
  ^bb0(%a: bf16, %b: bf16, %o: bf16):
    %m = arith.mulf %a, %b : bf16
    linalg.yield %m : bf16
  } -> tensor<1x2x4x4xbf16>
  %masked = linalg.generic {indexing_maps = [#rows, #scalar, #id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%dropped, %ninf, %scaled : tensor<1x1x4x4xi1>, tensor<bf16>, tensor<1x2x4x4xbf16>) outs(%e : tensor<1x2x4x4xbf16>) {
  ^bb0(%c: i1, %n: bf16, %a: bf16, %o: bf16):
    %r = arith.select %c, %n, %a : bf16
    linalg.yield %r : bf16
  } -> tensor<1x2x4x4xbf16>
  %p = linalg.softmax dimension(3) ins(%masked : tensor<1x2x4x4xbf16>) outs(%e : tensor<1x2x4x4xbf16>) -> tensor<1x2x4x4xbf16>
  %p3 = tensor.collapse_shape %p [[0, 1], [2], [3]] : tensor<1x2x4x4xbf16> into tensor<2x4x4xbf16>
  %v3 = tensor.collapse_shape %v [[0, 1], [2], [3]] : tensor<1x2x4x8xbf16> into tensor<2x4x8xbf16>
  %o_init = tensor.empty() : tensor<2x4x8xbf16>
  %o_zero = linalg.fill ins(%zero : bf16) outs(%o_init : tensor<2x4x8xbf16>) -> tensor<2x4x8xbf16>
  %o3 = linalg.batch_matmul ins(%p3, %v3 : tensor<2x4x4xbf16>, tensor<2x4x8xbf16>) outs(%o_zero : tensor<2x4x8xbf16>) -> tensor<2x4x8xbf16>
  %o = tensor.expand_shape %o3 [[0, 1], [2], [3]] output_shape [1, 2, 4, 8] : tensor<2x4x8xbf16> into tensor<1x2x4x8xbf16>
  return %o : tensor<1x2x4x8xbf16>
}

// -----

// Whisper's spelling: Q and K each scaled by d^-1/4 (the scales multiply),
// one key/value head broadcast to every query head (MQA: heads(4, 1)), the
// softmax written out (max, sub, exp, sum, div), no mask.

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#scalar = affine_map<(d0, d1, d2, d3) -> ()>
#one_head = affine_map<(d0, d1, d2, d3) -> (d0, 0, d2, d3)>
#row = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, 0)>
// CHECK-LABEL: func.func @split_scale_mqa(
// CHECK-SAME: %[[Q:[^:]*]]: tensor<1x4x3x16xf32>, %[[KT:[^:]*]]: tensor<1x1x16x5xf32>, %[[V:[^:]*]]: tensor<1x1x5x16xf32>
// CHECK: %[[K:.*]] = linalg.transpose ins(%[[KT]] : tensor<1x1x16x5xf32>) outs(%{{.*}} : tensor<1x1x5x16xf32>) permutation = [0, 1, 3, 2]
// CHECK: %[[O:.*]] = hasten.attention %[[Q]], %[[K]], %[[V]] heads(4, 1) scale(2.500000e-01) :
// CHECK-NOT: math.exp
// CHECK: return %[[O]]
func.func @split_scale_mqa(%q: tensor<1x4x3x16xf32>, %kt: tensor<1x1x16x5xf32>,
                           %v: tensor<1x1x5x16xf32>) -> tensor<1x4x3x16xf32> {
  %zero = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %quarter = arith.constant dense<0.5> : tensor<f32>
  %qe = tensor.empty() : tensor<1x4x3x16xf32>
  %qs = linalg.generic {indexing_maps = [#id, #scalar, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%q, %quarter : tensor<1x4x3x16xf32>, tensor<f32>) outs(%qe : tensor<1x4x3x16xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %m = arith.mulf %a, %b : f32
    linalg.yield %m : f32
  } -> tensor<1x4x3x16xf32>
  %ke = tensor.empty() : tensor<1x1x16x5xf32>
  %ks = linalg.generic {indexing_maps = [#id, #scalar, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%kt, %quarter : tensor<1x1x16x5xf32>, tensor<f32>) outs(%ke : tensor<1x1x16x5xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %m = arith.mulf %b, %a : f32
    linalg.yield %m : f32
  } -> tensor<1x1x16x5xf32>
  %kr_init = tensor.empty() : tensor<1x4x16x5xf32>
  %kr = linalg.generic {indexing_maps = [#one_head, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%ks : tensor<1x1x16x5xf32>) outs(%kr_init : tensor<1x4x16x5xf32>) {
  ^bb0(%a: f32, %o: f32):
    linalg.yield %a : f32
  } -> tensor<1x4x16x5xf32>
  %vr_init = tensor.empty() : tensor<1x4x5x16xf32>
  %vr = linalg.generic {indexing_maps = [#one_head, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%v : tensor<1x1x5x16xf32>) outs(%vr_init : tensor<1x4x5x16xf32>) {
  ^bb0(%a: f32, %o: f32):
    linalg.yield %a : f32
  } -> tensor<1x4x5x16xf32>
  %q3 = tensor.collapse_shape %qs [[0, 1], [2], [3]] : tensor<1x4x3x16xf32> into tensor<4x3x16xf32>
  %k3 = tensor.collapse_shape %kr [[0, 1], [2], [3]] : tensor<1x4x16x5xf32> into tensor<4x16x5xf32>
  %s_init = tensor.empty() : tensor<4x3x5xf32>
  %s_zero = linalg.fill ins(%zero : f32) outs(%s_init : tensor<4x3x5xf32>) -> tensor<4x3x5xf32>
  %s3 = linalg.batch_matmul ins(%q3, %k3 : tensor<4x3x16xf32>, tensor<4x16x5xf32>) outs(%s_zero : tensor<4x3x5xf32>) -> tensor<4x3x5xf32>
  %s = tensor.expand_shape %s3 [[0, 1], [2], [3]] output_shape [1, 4, 3, 5] : tensor<4x3x5xf32> into tensor<1x4x3x5xf32>
  %r_init = tensor.empty() : tensor<1x4x3xf32>
  %max_init = linalg.fill ins(%ninf : f32) outs(%r_init : tensor<1x4x3xf32>) -> tensor<1x4x3xf32>
  %max = linalg.reduce ins(%s : tensor<1x4x3x5xf32>) outs(%max_init : tensor<1x4x3xf32>) dimensions = [3]
    (%in: f32, %acc: f32) {
      %m = arith.maximumf %in, %acc : f32
      linalg.yield %m : f32
    }
  %max4 = tensor.expand_shape %max [[0], [1], [2, 3]] output_shape [1, 4, 3, 1] : tensor<1x4x3xf32> into tensor<1x4x3x1xf32>
  %e = tensor.empty() : tensor<1x4x3x5xf32>
  %shifted = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%s, %max4 : tensor<1x4x3x5xf32>, tensor<1x4x3x1xf32>) outs(%e : tensor<1x4x3x5xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %d = arith.subf %a, %b : f32
    linalg.yield %d : f32
  } -> tensor<1x4x3x5xf32>
  %exp = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%shifted : tensor<1x4x3x5xf32>) outs(%e : tensor<1x4x3x5xf32>) {
  ^bb0(%a: f32, %o: f32):
    %x = math.exp %a : f32
    linalg.yield %x : f32
  } -> tensor<1x4x3x5xf32>
  %sum_init = linalg.fill ins(%zero : f32) outs(%r_init : tensor<1x4x3xf32>) -> tensor<1x4x3xf32>
  %sum = linalg.reduce ins(%exp : tensor<1x4x3x5xf32>) outs(%sum_init : tensor<1x4x3xf32>) dimensions = [3]
    (%in: f32, %acc: f32) {
      %a = arith.addf %in, %acc : f32
      linalg.yield %a : f32
    }
  %sum4 = tensor.expand_shape %sum [[0], [1], [2, 3]] output_shape [1, 4, 3, 1] : tensor<1x4x3xf32> into tensor<1x4x3x1xf32>
  %p = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%exp, %sum4 : tensor<1x4x3x5xf32>, tensor<1x4x3x1xf32>) outs(%e : tensor<1x4x3x5xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %d = arith.divf %a, %b : f32
    linalg.yield %d : f32
  } -> tensor<1x4x3x5xf32>
  %p3 = tensor.collapse_shape %p [[0, 1], [2], [3]] : tensor<1x4x3x5xf32> into tensor<4x3x5xf32>
  %v3 = tensor.collapse_shape %vr [[0, 1], [2], [3]] : tensor<1x4x5x16xf32> into tensor<4x5x16xf32>
  %o_init = tensor.empty() : tensor<4x3x16xf32>
  %o_zero = linalg.fill ins(%zero : f32) outs(%o_init : tensor<4x3x16xf32>) -> tensor<4x3x16xf32>
  %o3 = linalg.batch_matmul ins(%p3, %v3 : tensor<4x3x5xf32>, tensor<4x5x16xf32>) outs(%o_zero : tensor<4x3x16xf32>) -> tensor<4x3x16xf32>
  %o = tensor.expand_shape %o3 [[0, 1], [2], [3]] output_shape [1, 4, 3, 16] : tensor<4x3x16xf32> into tensor<1x4x3x16xf32>
  return %o : tensor<1x4x3x16xf32>
}

// -----

// Llama's repeat_kv (unsqueeze, broadcast along a new axis, reshape to the
// query heads) on K and V: heads(4, 2) reading the two key/value heads in
// place. Hugging Face's masks: torch.where(causal, scores, finfo.min), then
// + (1 - attention_mask) * finfo.min per batch and key. Both masks become
// one additive [2, 1, 3, 3] mask: where(causal, 0, min) + pad, the chain at
// zero scores.

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#scalar = affine_map<(d0, d1, d2, d3) -> ()>
#rows = affine_map<(d0, d1, d2, d3) -> (0, 0, d2, d3)>
#keys = affine_map<(d0, d1, d2, d3) -> (d0, 0, 0, d3)>
#id5 = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, d2, d3, d4)>
#unsq = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, 0, d3, d4)>
// CHECK-LABEL: func.func @repeat_kv_padded(
// CHECK-SAME: %[[Q:[^:]*]]: tensor<2x4x3x8xf32>, %[[K:[^:]*]]: tensor<2x2x3x8xf32>, %[[V:[^:]*]]: tensor<2x2x3x8xf32>, %[[CAUSAL:[^:]*]]: tensor<1x1x3x3xi1>, %[[PAD:[^:]*]]: tensor<2x1x1x3xf32>
// CHECK-NOT: tensor<2x2x2x3x8xf32>
// CHECK: %[[MASK:.*]] = linalg.generic {{.*}} ins(%[[CAUSAL]], %{{.*}}, %[[PAD]] : tensor<1x1x3x3xi1>, tensor<f32>, tensor<2x1x1x3xf32>) outs(%{{.*}} : tensor<2x1x3x3xf32>)
// CHECK-NEXT: ^bb0(%[[C:.*]]: i1, %[[MIN:.*]]: f32, %[[P:.*]]: f32, %{{.*}}: f32):
// CHECK-NEXT: %[[W:.*]] = arith.select %[[C]], %{{.*}}, %[[MIN]] : f32
// CHECK-NEXT: %[[SUM:.*]] = arith.addf %[[W]], %[[P]] : f32
// CHECK-NEXT: linalg.yield %[[SUM]]
// CHECK: %[[O:.*]] = hasten.attention %[[Q]], %[[K]], %[[V]] mask(%[[MASK]] : tensor<2x1x3x3xf32>) heads(4, 2) scale(0.353553385)
// CHECK-NOT: linalg.softmax
// CHECK: return %[[O]]
func.func @repeat_kv_padded(%q: tensor<2x4x3x8xf32>, %k: tensor<2x2x3x8xf32>, %v: tensor<2x2x3x8xf32>,
                            %causal: tensor<1x1x3x3xi1>, %pad: tensor<2x1x1x3xf32>) -> tensor<2x4x3x8xf32> {
  %zero = arith.constant 0.0 : f32
  %sqrt_d = arith.constant dense<2.828427> : tensor<f32>
  %min = arith.constant dense<-3.40282347E+38> : tensor<f32>
  %k5 = tensor.expand_shape %k [[0], [1], [2, 3], [4]] output_shape [2, 2, 1, 3, 8] : tensor<2x2x3x8xf32> into tensor<2x2x1x3x8xf32>
  %kr_init = tensor.empty() : tensor<2x2x2x3x8xf32>
  %kr5 = linalg.generic {indexing_maps = [#unsq, #id5], iterator_types = ["parallel", "parallel", "parallel", "parallel", "parallel"]}
      ins(%k5 : tensor<2x2x1x3x8xf32>) outs(%kr_init : tensor<2x2x2x3x8xf32>) {
  ^bb0(%a: f32, %o: f32):
    linalg.yield %a : f32
  } -> tensor<2x2x2x3x8xf32>
  %kr = tensor.collapse_shape %kr5 [[0], [1, 2], [3], [4]] : tensor<2x2x2x3x8xf32> into tensor<2x4x3x8xf32>
  %kt_init = tensor.empty() : tensor<2x4x8x3xf32>
  %kt = linalg.transpose ins(%kr : tensor<2x4x3x8xf32>) outs(%kt_init : tensor<2x4x8x3xf32>) permutation = [0, 1, 3, 2]
  %v5 = tensor.expand_shape %v [[0], [1], [2, 3], [4]] output_shape [2, 2, 1, 3, 8] : tensor<2x2x3x8xf32> into tensor<2x2x1x3x8xf32>
  %vr5 = linalg.generic {indexing_maps = [#unsq, #id5], iterator_types = ["parallel", "parallel", "parallel", "parallel", "parallel"]}
      ins(%v5 : tensor<2x2x1x3x8xf32>) outs(%kr_init : tensor<2x2x2x3x8xf32>) {
  ^bb0(%a: f32, %o: f32):
    linalg.yield %a : f32
  } -> tensor<2x2x2x3x8xf32>
  %v3 = tensor.collapse_shape %vr5 [[0, 1, 2], [3], [4]] : tensor<2x2x2x3x8xf32> into tensor<8x3x8xf32>
  %q3 = tensor.collapse_shape %q [[0, 1], [2], [3]] : tensor<2x4x3x8xf32> into tensor<8x3x8xf32>
  %kt3 = tensor.collapse_shape %kt [[0, 1], [2], [3]] : tensor<2x4x8x3xf32> into tensor<8x8x3xf32>
  %s_init = tensor.empty() : tensor<8x3x3xf32>
  %s_zero = linalg.fill ins(%zero : f32) outs(%s_init : tensor<8x3x3xf32>) -> tensor<8x3x3xf32>
  %s3 = linalg.batch_matmul ins(%q3, %kt3 : tensor<8x3x8xf32>, tensor<8x8x3xf32>) outs(%s_zero : tensor<8x3x3xf32>) -> tensor<8x3x3xf32>
  %s = tensor.expand_shape %s3 [[0, 1], [2], [3]] output_shape [2, 4, 3, 3] : tensor<8x3x3xf32> into tensor<2x4x3x3xf32>
  %e = tensor.empty() : tensor<2x4x3x3xf32>
  %scaled = linalg.generic {indexing_maps = [#id, #scalar, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%s, %sqrt_d : tensor<2x4x3x3xf32>, tensor<f32>) outs(%e : tensor<2x4x3x3xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %d = arith.divf %a, %b : f32
    linalg.yield %d : f32
  } -> tensor<2x4x3x3xf32>
  %where = linalg.generic {indexing_maps = [#rows, #id, #scalar, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%causal, %scaled, %min : tensor<1x1x3x3xi1>, tensor<2x4x3x3xf32>, tensor<f32>) outs(%e : tensor<2x4x3x3xf32>) {
  ^bb0(%c: i1, %a: f32, %m: f32, %o: f32):
    %r = arith.select %c, %a, %m : f32
    linalg.yield %r : f32
  } -> tensor<2x4x3x3xf32>
  %padded = linalg.generic {indexing_maps = [#id, #keys, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%where, %pad : tensor<2x4x3x3xf32>, tensor<2x1x1x3xf32>) outs(%e : tensor<2x4x3x3xf32>) {
  ^bb0(%a: f32, %p: f32, %o: f32):
    %r = arith.addf %a, %p : f32
    linalg.yield %r : f32
  } -> tensor<2x4x3x3xf32>
  %p = linalg.softmax dimension(3) ins(%padded : tensor<2x4x3x3xf32>) outs(%e : tensor<2x4x3x3xf32>) -> tensor<2x4x3x3xf32>
  %p3 = tensor.collapse_shape %p [[0, 1], [2], [3]] : tensor<2x4x3x3xf32> into tensor<8x3x3xf32>
  %o_init = tensor.empty() : tensor<8x3x8xf32>
  %o_zero = linalg.fill ins(%zero : f32) outs(%o_init : tensor<8x3x8xf32>) -> tensor<8x3x8xf32>
  %o3 = linalg.batch_matmul ins(%p3, %v3 : tensor<8x3x3xf32>, tensor<8x3x8xf32>) outs(%o_zero : tensor<8x3x8xf32>) -> tensor<8x3x8xf32>
  %o = tensor.expand_shape %o3 [[0, 1], [2], [3]] output_shape [2, 4, 3, 8] : tensor<8x3x8xf32> into tensor<2x4x3x8xf32>
  return %o : tensor<2x4x3x8xf32>
}

// -----

// nanoGPT's masked_fill(bias[:, :, :T, :T] == 0, -inf): a lower-triangular
// constant sliced square from its corner (T x T, the same size value for
// both) is the causal rule. No mask is built.

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#rows = affine_map<(d0, d1, d2, d3) -> (0, 0, d2, d3)>
#scalar = affine_map<(d0, d1, d2, d3) -> ()>
// CHECK-LABEL: func.func @tril_buffer_causal(
// CHECK-NOT: scf.if
// CHECK: hasten.attention %arg0, %arg1, %arg2 heads(2, 2) causal scale(1.000000e+00)
// CHECK-NOT: linalg.softmax
func.func @tril_buffer_causal(%q: tensor<1x2x?x8xf32>, %k: tensor<1x2x?x8xf32>, %v: tensor<1x2x?x8xf32>) -> tensor<1x2x?x8xf32> {
  %zero = arith.constant 0.0 : f32
  %c2 = arith.constant 2 : index
  %ninf = arith.constant dense<0xFF800000> : tensor<f32>
  %bias = arith.constant dense<[[[[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]]]]> : tensor<1x1x4x4xf32>
  %s_len = tensor.dim %q, %c2 : tensor<1x2x?x8xf32>
  %t_len = tensor.dim %k, %c2 : tensor<1x2x?x8xf32>
  %rows = tensor.extract_slice %bias[0, 0, 0, 0] [1, 1, %t_len, 4] [1, 1, 1, 1] : tensor<1x1x4x4xf32> to tensor<1x1x?x4xf32>
  %square = tensor.extract_slice %rows[0, 0, 0, 0] [1, 1, %t_len, %t_len] [1, 1, 1, 1] : tensor<1x1x?x4xf32> to tensor<1x1x?x?xf32>
  %ci = tensor.empty(%t_len, %t_len) : tensor<1x1x?x?xi1>
  %zerot = arith.constant dense<0.0> : tensor<f32>
  %cond = linalg.generic {indexing_maps = [#id, #scalar, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%square, %zerot : tensor<1x1x?x?xf32>, tensor<f32>) outs(%ci : tensor<1x1x?x?xi1>) {
  ^bb0(%x: f32, %z: f32, %o: i1):
    %eq = arith.cmpf oeq, %x, %z : f32
    linalg.yield %eq : i1
  } -> tensor<1x1x?x?xi1>
  %kt_init = tensor.empty(%t_len) : tensor<1x2x8x?xf32>
  %kt = linalg.transpose ins(%k : tensor<1x2x?x8xf32>) outs(%kt_init : tensor<1x2x8x?xf32>) permutation = [0, 1, 3, 2]
  %q3 = tensor.collapse_shape %q [[0, 1], [2], [3]] : tensor<1x2x?x8xf32> into tensor<2x?x8xf32>
  %kt3 = tensor.collapse_shape %kt [[0, 1], [2], [3]] : tensor<1x2x8x?xf32> into tensor<2x8x?xf32>
  %s_init = tensor.empty(%s_len, %t_len) : tensor<2x?x?xf32>
  %s_zero = linalg.fill ins(%zero : f32) outs(%s_init : tensor<2x?x?xf32>) -> tensor<2x?x?xf32>
  %s3 = linalg.batch_matmul ins(%q3, %kt3 : tensor<2x?x8xf32>, tensor<2x8x?xf32>) outs(%s_zero : tensor<2x?x?xf32>) -> tensor<2x?x?xf32>
  %s = tensor.expand_shape %s3 [[0, 1], [2], [3]] output_shape [1, 2, %s_len, %t_len] : tensor<2x?x?xf32> into tensor<1x2x?x?xf32>
  %e = tensor.empty(%s_len, %t_len) : tensor<1x2x?x?xf32>
  %masked = linalg.generic {indexing_maps = [#rows, #scalar, #id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%cond, %ninf, %s : tensor<1x1x?x?xi1>, tensor<f32>, tensor<1x2x?x?xf32>) outs(%e : tensor<1x2x?x?xf32>) {
  ^bb0(%c: i1, %n: f32, %a: f32, %o: f32):
    %r = arith.select %c, %n, %a : f32
    linalg.yield %r : f32
  } -> tensor<1x2x?x?xf32>
  %p = linalg.softmax dimension(3) ins(%masked : tensor<1x2x?x?xf32>) outs(%e : tensor<1x2x?x?xf32>) -> tensor<1x2x?x?xf32>
  %p3 = tensor.collapse_shape %p [[0, 1], [2], [3]] : tensor<1x2x?x?xf32> into tensor<2x?x?xf32>
  %v3 = tensor.collapse_shape %v [[0, 1], [2], [3]] : tensor<1x2x?x8xf32> into tensor<2x?x8xf32>
  %o_init = tensor.empty(%s_len) : tensor<2x?x8xf32>
  %o_zero = linalg.fill ins(%zero : f32) outs(%o_init : tensor<2x?x8xf32>) -> tensor<2x?x8xf32>
  %o3 = linalg.batch_matmul ins(%p3, %v3 : tensor<2x?x?xf32>, tensor<2x?x8xf32>) outs(%o_zero : tensor<2x?x8xf32>) -> tensor<2x?x8xf32>
  %o = tensor.expand_shape %o3 [[0, 1], [2], [3]] output_shape [1, 2, %s_len, 8] : tensor<2x?x8xf32> into tensor<1x2x?x8xf32>
  return %o : tensor<1x2x?x8xf32>
}

// -----

// Hugging Face's slice bias[:, :, T - S + off : T + off, :T] of a boolean
// tril, kept where true: causal only when the slice starts at T - S, which
// the IR cannot prove for an arbitrary offset. Both forms are compiled,
// behind the run-time test.

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#rows = affine_map<(d0, d1, d2, d3) -> (0, 0, d2, d3)>
#scalar = affine_map<(d0, d1, d2, d3) -> ()>
// CHECK-LABEL: func.func @bool_buffer_offset(
// CHECK: %[[HOLDS:.*]] = arith.cmpi eq
// CHECK: scf.if %[[HOLDS]]
// CHECK: hasten.attention {{[^(]*}} heads(2, 2) causal scale
// CHECK: } else {
// CHECK: hasten.attention {{.*}} mask(
// CHECK-NOT: causal
func.func @bool_buffer_offset(%q: tensor<1x2x?x8xf32>, %k: tensor<1x2x?x8xf32>, %v: tensor<1x2x?x8xf32>, %off: index) -> tensor<1x2x?x8xf32> {
  %zero = arith.constant 0.0 : f32
  %c2 = arith.constant 2 : index
  %ninf = arith.constant dense<0xFF800000> : tensor<f32>
  %bias = arith.constant dense<[[[[true, false, false, false], [true, true, false, false], [true, true, true, false], [true, true, true, true]]]]> : tensor<1x1x4x4xi1>
  %s_len = tensor.dim %q, %c2 : tensor<1x2x?x8xf32>
  %t_len = tensor.dim %k, %c2 : tensor<1x2x?x8xf32>
  %diag = arith.subi %t_len, %s_len : index
  %start = arith.addi %diag, %off : index
  %cond = tensor.extract_slice %bias[0, 0, %start, 0] [1, 1, %s_len, %t_len] [1, 1, 1, 1] : tensor<1x1x4x4xi1> to tensor<1x1x?x?xi1>
  %kt_init = tensor.empty(%t_len) : tensor<1x2x8x?xf32>
  %kt = linalg.transpose ins(%k : tensor<1x2x?x8xf32>) outs(%kt_init : tensor<1x2x8x?xf32>) permutation = [0, 1, 3, 2]
  %q3 = tensor.collapse_shape %q [[0, 1], [2], [3]] : tensor<1x2x?x8xf32> into tensor<2x?x8xf32>
  %kt3 = tensor.collapse_shape %kt [[0, 1], [2], [3]] : tensor<1x2x8x?xf32> into tensor<2x8x?xf32>
  %s_init = tensor.empty(%s_len, %t_len) : tensor<2x?x?xf32>
  %s_zero = linalg.fill ins(%zero : f32) outs(%s_init : tensor<2x?x?xf32>) -> tensor<2x?x?xf32>
  %s3 = linalg.batch_matmul ins(%q3, %kt3 : tensor<2x?x8xf32>, tensor<2x8x?xf32>) outs(%s_zero : tensor<2x?x?xf32>) -> tensor<2x?x?xf32>
  %s = tensor.expand_shape %s3 [[0, 1], [2], [3]] output_shape [1, 2, %s_len, %t_len] : tensor<2x?x?xf32> into tensor<1x2x?x?xf32>
  %e = tensor.empty(%s_len, %t_len) : tensor<1x2x?x?xf32>
  %masked = linalg.generic {indexing_maps = [#rows, #scalar, #id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%cond, %ninf, %s : tensor<1x1x?x?xi1>, tensor<f32>, tensor<1x2x?x?xf32>) outs(%e : tensor<1x2x?x?xf32>) {
  ^bb0(%c: i1, %n: f32, %a: f32, %o: f32):
    %r = arith.select %c, %a, %n : f32
    linalg.yield %r : f32
  } -> tensor<1x2x?x?xf32>
  %p = linalg.softmax dimension(3) ins(%masked : tensor<1x2x?x?xf32>) outs(%e : tensor<1x2x?x?xf32>) -> tensor<1x2x?x?xf32>
  %p3 = tensor.collapse_shape %p [[0, 1], [2], [3]] : tensor<1x2x?x?xf32> into tensor<2x?x?xf32>
  %v3 = tensor.collapse_shape %v [[0, 1], [2], [3]] : tensor<1x2x?x8xf32> into tensor<2x?x8xf32>
  %o_init = tensor.empty(%s_len) : tensor<2x?x8xf32>
  %o_zero = linalg.fill ins(%zero : f32) outs(%o_init : tensor<2x?x8xf32>) -> tensor<2x?x8xf32>
  %o3 = linalg.batch_matmul ins(%p3, %v3 : tensor<2x?x?xf32>, tensor<2x?x8xf32>) outs(%o_zero : tensor<2x?x8xf32>) -> tensor<2x?x8xf32>
  %o = tensor.expand_shape %o3 [[0, 1], [2], [3]] output_shape [1, 2, %s_len, 8] : tensor<2x?x8xf32> into tensor<1x2x?x8xf32>
  return %o : tensor<1x2x?x8xf32>
}

// -----

// An upper-triangular buffer is not the causal rule: it stays a mask.

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#rows = affine_map<(d0, d1, d2, d3) -> (0, 0, d2, d3)>
#scalar = affine_map<(d0, d1, d2, d3) -> ()>
// CHECK-LABEL: func.func @upper_triangle(
// CHECK-NOT: causal
// CHECK: hasten.attention {{.*}} mask(
func.func @upper_triangle(%q: tensor<1x2x?x8xf32>, %k: tensor<1x2x?x8xf32>, %v: tensor<1x2x?x8xf32>) -> tensor<1x2x?x8xf32> {
  %zero = arith.constant 0.0 : f32
  %c2 = arith.constant 2 : index
  %ninf = arith.constant dense<0xFF800000> : tensor<f32>
  %bias = arith.constant dense<[[[[true, true, true, true], [false, true, true, true], [false, false, true, true], [false, false, false, true]]]]> : tensor<1x1x4x4xi1>
  %s_len = tensor.dim %q, %c2 : tensor<1x2x?x8xf32>
  %t_len = tensor.dim %k, %c2 : tensor<1x2x?x8xf32>
  %cond = tensor.extract_slice %bias[0, 0, 0, 0] [1, 1, %s_len, %t_len] [1, 1, 1, 1] : tensor<1x1x4x4xi1> to tensor<1x1x?x?xi1>
  %kt_init = tensor.empty(%t_len) : tensor<1x2x8x?xf32>
  %kt = linalg.transpose ins(%k : tensor<1x2x?x8xf32>) outs(%kt_init : tensor<1x2x8x?xf32>) permutation = [0, 1, 3, 2]
  %q3 = tensor.collapse_shape %q [[0, 1], [2], [3]] : tensor<1x2x?x8xf32> into tensor<2x?x8xf32>
  %kt3 = tensor.collapse_shape %kt [[0, 1], [2], [3]] : tensor<1x2x8x?xf32> into tensor<2x8x?xf32>
  %s_init = tensor.empty(%s_len, %t_len) : tensor<2x?x?xf32>
  %s_zero = linalg.fill ins(%zero : f32) outs(%s_init : tensor<2x?x?xf32>) -> tensor<2x?x?xf32>
  %s3 = linalg.batch_matmul ins(%q3, %kt3 : tensor<2x?x8xf32>, tensor<2x8x?xf32>) outs(%s_zero : tensor<2x?x?xf32>) -> tensor<2x?x?xf32>
  %s = tensor.expand_shape %s3 [[0, 1], [2], [3]] output_shape [1, 2, %s_len, %t_len] : tensor<2x?x?xf32> into tensor<1x2x?x?xf32>
  %e = tensor.empty(%s_len, %t_len) : tensor<1x2x?x?xf32>
  %masked = linalg.generic {indexing_maps = [#rows, #scalar, #id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%cond, %ninf, %s : tensor<1x1x?x?xi1>, tensor<f32>, tensor<1x2x?x?xf32>) outs(%e : tensor<1x2x?x?xf32>) {
  ^bb0(%c: i1, %n: f32, %a: f32, %o: f32):
    %r = arith.select %c, %a, %n : f32
    linalg.yield %r : f32
  } -> tensor<1x2x?x?xf32>
  %p = linalg.softmax dimension(3) ins(%masked : tensor<1x2x?x?xf32>) outs(%e : tensor<1x2x?x?xf32>) -> tensor<1x2x?x?xf32>
  %p3 = tensor.collapse_shape %p [[0, 1], [2], [3]] : tensor<1x2x?x?xf32> into tensor<2x?x?xf32>
  %v3 = tensor.collapse_shape %v [[0, 1], [2], [3]] : tensor<1x2x?x8xf32> into tensor<2x?x8xf32>
  %o_init = tensor.empty(%s_len) : tensor<2x?x8xf32>
  %o_zero = linalg.fill ins(%zero : f32) outs(%o_init : tensor<2x?x8xf32>) -> tensor<2x?x8xf32>
  %o3 = linalg.batch_matmul ins(%p3, %v3 : tensor<2x?x?xf32>, tensor<2x?x8xf32>) outs(%o_zero : tensor<2x?x8xf32>) -> tensor<2x?x8xf32>
  %o = tensor.expand_shape %o3 [[0, 1], [2], [3]] output_shape [1, 2, %s_len, 8] : tensor<2x?x8xf32> into tensor<1x2x?x8xf32>
  return %o : tensor<1x2x?x8xf32>
}

// -----

// A causal mask from Range and Less (rows[i] < cols[j] is dropped, with
// -inf): the causal rule.

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#scalar = affine_map<(d0, d1, d2, d3) -> ()>
#qk = affine_map<(d0, d1, d2, d3) -> (d2, d3)>
#iota = affine_map<(d0) -> (d0)>
#col = affine_map<(d0, d1) -> (d0, 0)>
#row = affine_map<(d0, d1) -> (0, d1)>
#id2 = affine_map<(d0, d1) -> (d0, d1)>
// CHECK-LABEL: func.func @range_less_causal(
// CHECK-NOT: mask(
// CHECK: hasten.attention %arg0, %arg1, %arg2 heads(2, 2) causal
func.func @range_less_causal(%q: tensor<1x2x4x8xf32>, %k: tensor<1x2x4x8xf32>, %v: tensor<1x2x4x8xf32>) -> tensor<1x2x4x8xf32> {
  %zero = arith.constant 0.0 : f32
  %ninf = arith.constant dense<0xFF800000> : tensor<f32>
  %re = tensor.empty() : tensor<4xi64>
  %range = linalg.generic {indexing_maps = [#iota], iterator_types = ["parallel"]} outs(%re : tensor<4xi64>) {
  ^bb0(%o: i64):
    %i = linalg.index 0 : index
    %c = arith.index_cast %i : index to i64
    linalg.yield %c : i64
  } -> tensor<4xi64>
  %rows = tensor.expand_shape %range [[0, 1]] output_shape [4, 1] : tensor<4xi64> into tensor<4x1xi64>
  %cols = tensor.expand_shape %range [[0, 1]] output_shape [1, 4] : tensor<4xi64> into tensor<1x4xi64>
  %ce = tensor.empty() : tensor<4x4xi1>
  %cond = linalg.generic {indexing_maps = [#col, #row, #id2], iterator_types = ["parallel", "parallel"]}
      ins(%rows, %cols : tensor<4x1xi64>, tensor<1x4xi64>) outs(%ce : tensor<4x4xi1>) {
  ^bb0(%r: i64, %c: i64, %o: i1):
    %h = arith.cmpi slt, %r, %c : i64
    linalg.yield %h : i1
  } -> tensor<4x4xi1>
  %kt_init = tensor.empty() : tensor<1x2x8x4xf32>
  %kt = linalg.transpose ins(%k : tensor<1x2x4x8xf32>) outs(%kt_init : tensor<1x2x8x4xf32>) permutation = [0, 1, 3, 2]
  %q3 = tensor.collapse_shape %q [[0, 1], [2], [3]] : tensor<1x2x4x8xf32> into tensor<2x4x8xf32>
  %kt3 = tensor.collapse_shape %kt [[0, 1], [2], [3]] : tensor<1x2x8x4xf32> into tensor<2x8x4xf32>
  %s_init = tensor.empty() : tensor<2x4x4xf32>
  %s_zero = linalg.fill ins(%zero : f32) outs(%s_init : tensor<2x4x4xf32>) -> tensor<2x4x4xf32>
  %s3 = linalg.batch_matmul ins(%q3, %kt3 : tensor<2x4x8xf32>, tensor<2x8x4xf32>) outs(%s_zero : tensor<2x4x4xf32>) -> tensor<2x4x4xf32>
  %s = tensor.expand_shape %s3 [[0, 1], [2], [3]] output_shape [1, 2, 4, 4] : tensor<2x4x4xf32> into tensor<1x2x4x4xf32>
  %e = tensor.empty() : tensor<1x2x4x4xf32>
  %masked = linalg.generic {indexing_maps = [#qk, #scalar, #id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%cond, %ninf, %s : tensor<4x4xi1>, tensor<f32>, tensor<1x2x4x4xf32>) outs(%e : tensor<1x2x4x4xf32>) {
  ^bb0(%c: i1, %n: f32, %a: f32, %o: f32):
    %x = arith.select %c, %n, %a : f32
    linalg.yield %x : f32
  } -> tensor<1x2x4x4xf32>
  %p = linalg.softmax dimension(3) ins(%masked : tensor<1x2x4x4xf32>) outs(%e : tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %p3 = tensor.collapse_shape %p [[0, 1], [2], [3]] : tensor<1x2x4x4xf32> into tensor<2x4x4xf32>
  %v3 = tensor.collapse_shape %v [[0, 1], [2], [3]] : tensor<1x2x4x8xf32> into tensor<2x4x8xf32>
  %o_init = tensor.empty() : tensor<2x4x8xf32>
  %o_zero = linalg.fill ins(%zero : f32) outs(%o_init : tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %o3 = linalg.batch_matmul ins(%p3, %v3 : tensor<2x4x4xf32>, tensor<2x4x8xf32>) outs(%o_zero : tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %o = tensor.expand_shape %o3 [[0, 1], [2], [3]] output_shape [1, 2, 4, 8] : tensor<2x4x8xf32> into tensor<1x2x4x8xf32>
  return %o : tensor<1x2x4x8xf32>
}

// -----

// cols[j] < rows[i] dropped keeps the keys at and after each query: not
// causal, it stays a mask.

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#scalar = affine_map<(d0, d1, d2, d3) -> ()>
#qk = affine_map<(d0, d1, d2, d3) -> (d2, d3)>
#iota = affine_map<(d0) -> (d0)>
#col = affine_map<(d0, d1) -> (d0, 0)>
#row = affine_map<(d0, d1) -> (0, d1)>
#id2 = affine_map<(d0, d1) -> (d0, d1)>
// CHECK-LABEL: func.func @range_less_anticausal(
// CHECK-NOT: causal
// CHECK: hasten.attention {{.*}} mask(
func.func @range_less_anticausal(%q: tensor<1x2x4x8xf32>, %k: tensor<1x2x4x8xf32>, %v: tensor<1x2x4x8xf32>) -> tensor<1x2x4x8xf32> {
  %zero = arith.constant 0.0 : f32
  %ninf = arith.constant dense<0xFF800000> : tensor<f32>
  %re = tensor.empty() : tensor<4xi64>
  %range = linalg.generic {indexing_maps = [#iota], iterator_types = ["parallel"]} outs(%re : tensor<4xi64>) {
  ^bb0(%o: i64):
    %i = linalg.index 0 : index
    %c = arith.index_cast %i : index to i64
    linalg.yield %c : i64
  } -> tensor<4xi64>
  %rows = tensor.expand_shape %range [[0, 1]] output_shape [4, 1] : tensor<4xi64> into tensor<4x1xi64>
  %cols = tensor.expand_shape %range [[0, 1]] output_shape [1, 4] : tensor<4xi64> into tensor<1x4xi64>
  %ce = tensor.empty() : tensor<4x4xi1>
  %cond = linalg.generic {indexing_maps = [#col, #row, #id2], iterator_types = ["parallel", "parallel"]}
      ins(%rows, %cols : tensor<4x1xi64>, tensor<1x4xi64>) outs(%ce : tensor<4x4xi1>) {
  ^bb0(%r: i64, %c: i64, %o: i1):
    %h = arith.cmpi slt, %c, %r : i64
    linalg.yield %h : i1
  } -> tensor<4x4xi1>
  %kt_init = tensor.empty() : tensor<1x2x8x4xf32>
  %kt = linalg.transpose ins(%k : tensor<1x2x4x8xf32>) outs(%kt_init : tensor<1x2x8x4xf32>) permutation = [0, 1, 3, 2]
  %q3 = tensor.collapse_shape %q [[0, 1], [2], [3]] : tensor<1x2x4x8xf32> into tensor<2x4x8xf32>
  %kt3 = tensor.collapse_shape %kt [[0, 1], [2], [3]] : tensor<1x2x8x4xf32> into tensor<2x8x4xf32>
  %s_init = tensor.empty() : tensor<2x4x4xf32>
  %s_zero = linalg.fill ins(%zero : f32) outs(%s_init : tensor<2x4x4xf32>) -> tensor<2x4x4xf32>
  %s3 = linalg.batch_matmul ins(%q3, %kt3 : tensor<2x4x8xf32>, tensor<2x8x4xf32>) outs(%s_zero : tensor<2x4x4xf32>) -> tensor<2x4x4xf32>
  %s = tensor.expand_shape %s3 [[0, 1], [2], [3]] output_shape [1, 2, 4, 4] : tensor<2x4x4xf32> into tensor<1x2x4x4xf32>
  %e = tensor.empty() : tensor<1x2x4x4xf32>
  %masked = linalg.generic {indexing_maps = [#qk, #scalar, #id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%cond, %ninf, %s : tensor<4x4xi1>, tensor<f32>, tensor<1x2x4x4xf32>) outs(%e : tensor<1x2x4x4xf32>) {
  ^bb0(%c: i1, %n: f32, %a: f32, %o: f32):
    %x = arith.select %c, %n, %a : f32
    linalg.yield %x : f32
  } -> tensor<1x2x4x4xf32>
  %p = linalg.softmax dimension(3) ins(%masked : tensor<1x2x4x4xf32>) outs(%e : tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %p3 = tensor.collapse_shape %p [[0, 1], [2], [3]] : tensor<1x2x4x4xf32> into tensor<2x4x4xf32>
  %v3 = tensor.collapse_shape %v [[0, 1], [2], [3]] : tensor<1x2x4x8xf32> into tensor<2x4x8xf32>
  %o_init = tensor.empty() : tensor<2x4x8xf32>
  %o_zero = linalg.fill ins(%zero : f32) outs(%o_init : tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %o3 = linalg.batch_matmul ins(%p3, %v3 : tensor<2x4x4xf32>, tensor<2x4x8xf32>) outs(%o_zero : tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %o = tensor.expand_shape %o3 [[0, 1], [2], [3]] output_shape [1, 2, 4, 8] : tensor<2x4x8xf32> into tensor<1x2x4x8xf32>
  return %o : tensor<1x2x4x8xf32>
}

// -----

// torch.onnx's scaled_dot_product_attention (transformers 4.5x through
// Optimum): Q and K each scaled by sqrt(1/sqrt(d)) computed on [1] tensors
// in the graph, a 0/-inf additive mask, and the probabilities guarded with
// Where(IsNaN(p), 0, p). The op gives a row with no visible key zeros, so
// the guard is absorbed; the two scales combine into 1/sqrt(8).

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#one = affine_map<(d0, d1, d2, d3) -> (0)>
#rows = affine_map<(d0, d1, d2, d3) -> (0, 0, d2, d3)>
#vec = affine_map<(d0) -> (d0)>
// CHECK-LABEL: func.func @sdpa_nan_guard(
// CHECK-SAME: %[[Q:[^:]*]]: tensor<1x2x4x8xf32>, %[[K:[^:]*]]: tensor<1x2x4x8xf32>, %[[V:[^:]*]]: tensor<1x2x4x8xf32>, %[[BIAS:[^:]*]]: tensor<1x1x4x4xf32>
// CHECK: %[[O:.*]] = hasten.attention %[[Q]], %[[K]], %[[V]] mask(%{{.*}} : tensor<1x1x4x4xf32>) heads(2, 2) scale(0.353553385)
// CHECK-NOT: arith.cmpf
// CHECK-NOT: linalg.softmax
// CHECK-NOT: linalg.batch_matmul
// CHECK: return %[[O]]
func.func @sdpa_nan_guard(%q: tensor<1x2x4x8xf32>, %k: tensor<1x2x4x8xf32>, %v: tensor<1x2x4x8xf32>,
                          %bias: tensor<1x1x4x4xf32>) -> tensor<1x2x4x8xf32> {
  %zero = arith.constant 0.0 : f32
  %eight = arith.constant dense<8.0> : tensor<1xf32>
  %ones = arith.constant dense<1.0> : tensor<1xf32>
  %zeros = arith.constant dense<0.0> : tensor<1xf32>
  %e1 = tensor.empty() : tensor<1xf32>
  %root = linalg.generic {indexing_maps = [#vec, #vec], iterator_types = ["parallel"]}
      ins(%eight : tensor<1xf32>) outs(%e1 : tensor<1xf32>) {
  ^bb0(%a: f32, %o: f32):
    %r = math.sqrt %a : f32
    linalg.yield %r : f32
  } -> tensor<1xf32>
  %inverse = linalg.generic {indexing_maps = [#vec, #vec, #vec], iterator_types = ["parallel"]}
      ins(%ones, %root : tensor<1xf32>, tensor<1xf32>) outs(%e1 : tensor<1xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %r = arith.divf %a, %b : f32
    linalg.yield %r : f32
  } -> tensor<1xf32>
  %quarter = linalg.generic {indexing_maps = [#vec, #vec], iterator_types = ["parallel"]}
      ins(%inverse : tensor<1xf32>) outs(%e1 : tensor<1xf32>) {
  ^bb0(%a: f32, %o: f32):
    %r = math.sqrt %a : f32
    linalg.yield %r : f32
  } -> tensor<1xf32>
  %eq = tensor.empty() : tensor<1x2x4x8xf32>
  %qs = linalg.generic {indexing_maps = [#id, #one, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%q, %quarter : tensor<1x2x4x8xf32>, tensor<1xf32>) outs(%eq : tensor<1x2x4x8xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %m = arith.mulf %a, %b : f32
    linalg.yield %m : f32
  } -> tensor<1x2x4x8xf32>
  %kt_init = tensor.empty() : tensor<1x2x8x4xf32>
  %kt = linalg.transpose ins(%k : tensor<1x2x4x8xf32>) outs(%kt_init : tensor<1x2x8x4xf32>) permutation = [0, 1, 3, 2]
  %kts = linalg.generic {indexing_maps = [#id, #one, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%kt, %quarter : tensor<1x2x8x4xf32>, tensor<1xf32>) outs(%kt_init : tensor<1x2x8x4xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %m = arith.mulf %a, %b : f32
    linalg.yield %m : f32
  } -> tensor<1x2x8x4xf32>
  %q3 = tensor.collapse_shape %qs [[0, 1], [2], [3]] : tensor<1x2x4x8xf32> into tensor<2x4x8xf32>
  %kt3 = tensor.collapse_shape %kts [[0, 1], [2], [3]] : tensor<1x2x8x4xf32> into tensor<2x8x4xf32>
  %s_init = tensor.empty() : tensor<2x4x4xf32>
  %s_zero = linalg.fill ins(%zero : f32) outs(%s_init : tensor<2x4x4xf32>) -> tensor<2x4x4xf32>
  %s3 = linalg.batch_matmul ins(%q3, %kt3 : tensor<2x4x8xf32>, tensor<2x8x4xf32>) outs(%s_zero : tensor<2x4x4xf32>) -> tensor<2x4x4xf32>
  %s = tensor.expand_shape %s3 [[0, 1], [2], [3]] output_shape [1, 2, 4, 4] : tensor<2x4x4xf32> into tensor<1x2x4x4xf32>
  %e = tensor.empty() : tensor<1x2x4x4xf32>
  %masked = linalg.generic {indexing_maps = [#id, #rows, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%s, %bias : tensor<1x2x4x4xf32>, tensor<1x1x4x4xf32>) outs(%e : tensor<1x2x4x4xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %r = arith.addf %a, %b : f32
    linalg.yield %r : f32
  } -> tensor<1x2x4x4xf32>
  %p = linalg.softmax dimension(3) ins(%masked : tensor<1x2x4x4xf32>) outs(%e : tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %eb = tensor.empty() : tensor<1x2x4x4xi1>
  %nan = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%p : tensor<1x2x4x4xf32>) outs(%eb : tensor<1x2x4x4xi1>) {
  ^bb0(%a: f32, %o: i1):
    %c = arith.cmpf uno, %a, %a : f32
    linalg.yield %c : i1
  } -> tensor<1x2x4x4xi1>
  %guarded = linalg.generic {indexing_maps = [#id, #one, #id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%nan, %zeros, %p : tensor<1x2x4x4xi1>, tensor<1xf32>, tensor<1x2x4x4xf32>) outs(%e : tensor<1x2x4x4xf32>) {
  ^bb0(%c: i1, %z: f32, %a: f32, %o: f32):
    %r = arith.select %c, %z, %a : f32
    linalg.yield %r : f32
  } -> tensor<1x2x4x4xf32>
  %p3 = tensor.collapse_shape %guarded [[0, 1], [2], [3]] : tensor<1x2x4x4xf32> into tensor<2x4x4xf32>
  %v3 = tensor.collapse_shape %v [[0, 1], [2], [3]] : tensor<1x2x4x8xf32> into tensor<2x4x8xf32>
  %o_init = tensor.empty() : tensor<2x4x8xf32>
  %o_zero = linalg.fill ins(%zero : f32) outs(%o_init : tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %o3 = linalg.batch_matmul ins(%p3, %v3 : tensor<2x4x4xf32>, tensor<2x4x8xf32>) outs(%o_zero : tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %o = tensor.expand_shape %o3 [[0, 1], [2], [3]] output_shape [1, 2, 4, 8] : tensor<2x4x8xf32> into tensor<1x2x4x8xf32>
  return %o : tensor<1x2x4x8xf32>
}
