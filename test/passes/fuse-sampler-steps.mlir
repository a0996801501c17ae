// RUN: hasten-opt %s -split-input-file --hasten-fuse-sampler-steps -verify-diagnostics | FileCheck %s

// A flow sampler: the timestep-only subgraph (sin(t * f)) is evaluated for
// each step and passed as a constant; the Euler update is fused into the
// denoiser's last op; the two steps call one step function.
// CHECK-LABEL: func.func private @denoise_sampler_step(
// CHECK-SAME: %[[X:.*]]: tensor<1x4xf32>, %[[C:.*]]: tensor<1x4xf32>, %[[EMB:.*]]: tensor<1x4xf32>, %[[COEF:.*]]: tensor<8xf32>) -> tensor<1x4xf32>
// CHECK-NOT: math.sin
// CHECK-DAG: %[[A:.*]] = tensor.extract %[[COEF]][%c0]
// CHECK-DAG: %[[B:.*]] = tensor.extract %[[COEF]][%c1]
// CHECK: %[[Y:.*]] = linalg.generic {{.*}} ins(%[[X]], %[[EMB]], %[[C]] :
// CHECK: ^bb0(%[[XI:.*]]: f32, %[[EI:.*]]: f32, %[[CI:.*]]: f32,
// CHECK: %[[M:.*]] = arith.mulf %[[XI]], %[[EI]]
// CHECK: %[[V:.*]] = arith.addf %[[M]], %[[CI]]
// CHECK: %[[AX:.*]] = arith.mulf %[[A]], %[[XI]]
// CHECK: %[[BV:.*]] = arith.mulf %[[B]], %[[V]]
// CHECK: %[[NEXT:.*]] = arith.addf %[[AX]], %[[BV]]
// CHECK: linalg.yield %[[NEXT]]
// CHECK-NOT: linalg.generic
// CHECK: return %[[Y]]
// CHECK-LABEL: func.func @generate(
// CHECK-SAME: attributes {hasten.sampler_steps = 2 : i64}
// CHECK: %[[E0:.*]] = arith.constant dense<0.000000e+00> : tensor<1x4xf32>
// CHECK: %[[K:.*]] = arith.constant dense<[1.000000e+00, 5.000000e-01, 0.000000e+00, 0.000000e+00,
// CHECK: %[[S0:.*]] = call @denoise_sampler_step(%arg0, %arg1, %[[E0]], %[[K]])
// CHECK: %[[E1:.*]] = arith.constant dense<{{\[}}[0.47942555, 0.841470957, 0.997494995, 0.909297406]]>
// CHECK: %[[S1:.*]] = call @denoise_sampler_step(%[[S0]], %arg1, %[[E1]], %{{.*}})
// CHECK: return %[[S1]]
#bcast_t = affine_map<(d0, d1) -> (d0)>
#bcast_f = affine_map<(d0, d1) -> (d1)>
#id = affine_map<(d0, d1) -> (d0, d1)>
func.func @denoise(%x: tensor<1x4xf32>, %t: tensor<1xf32>, %c: tensor<1x4xf32>) -> tensor<1x4xf32> {
  %freq = arith.constant dense<[1.0, 2.0, 3.0, 4.0]> : tensor<4xf32>
  %e = tensor.empty() : tensor<1x4xf32>
  %emb = linalg.generic {indexing_maps = [#bcast_t, #bcast_f, #id], iterator_types = ["parallel", "parallel"]}
      ins(%t, %freq : tensor<1xf32>, tensor<4xf32>) outs(%e : tensor<1x4xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %m = arith.mulf %a, %b : f32
    %s = math.sin %m : f32
    linalg.yield %s : f32
  } -> tensor<1x4xf32>
  %y = linalg.generic {indexing_maps = [#id, #id, #id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%x, %emb, %c : tensor<1x4xf32>, tensor<1x4xf32>, tensor<1x4xf32>) outs(%e : tensor<1x4xf32>) {
  ^bb0(%a: f32, %b: f32, %d: f32, %o: f32):
    %m = arith.mulf %a, %b : f32
    %s = arith.addf %m, %d : f32
    linalg.yield %s : f32
  } -> tensor<1x4xf32>
  return %y : tensor<1x4xf32>
}
func.func @generate(%noise: tensor<1x4xf32>, %c: tensor<1x4xf32>) -> tensor<1x4xf32> {
  %r = hasten.sampler_loop @denoise(%noise) cond(%c : tensor<1x4xf32>) {rule = "euler-flow", prediction = "velocity", timesteps = array<f64: 0.0, 0.5>, schedule = array<f64: 0.0, 0.5, 1.0>, sample_index = 0, time_index = 1} : tensor<1x4xf32> -> tensor<1x4xf32>
  return %r : tensor<1x4xf32>
}

// -----

// Full CFG: the sample and the conditional and negative conditioning are
// batched into one call of the batch-2 denoiser; the halves are combined
// in the update. An integer timestep folds through linalg.index. DDIM from
// alpha 0.25 to a clean sample with scale 3:
// x' = 2 x - 1.732 (u + 3 (c - u)) = 2 x - 5.196 c + 3.464 u.
// CHECK-LABEL: func.func private @denoise_sampler_step(
// CHECK-SAME: %[[X:.*]]: tensor<1x4xf32>, %[[C:.*]]: tensor<1x4xf32>, %[[N:.*]]: tensor<1x4xf32>, %[[EMB:.*]]: tensor<2x4xf32>, %[[COEF:.*]]: tensor<8xf32>)
// CHECK: %[[XX:.*]] = tensor.concat dim(0) %[[X]], %[[X]]
// CHECK: %[[CN:.*]] = tensor.concat dim(0) %[[C]], %[[N]]
// CHECK: %[[P:.*]] = linalg.generic {{.*}} ins(%[[XX]], %[[EMB]], %[[CN]] :
// CHECK-DAG: %[[COND:.*]] = tensor.extract_slice %[[P]][0, 0] [1, 4] [1, 1]
// CHECK-DAG: %[[UNCOND:.*]] = tensor.extract_slice %[[P]][1, 0] [1, 4] [1, 1]
// CHECK: linalg.generic {{.*}} ins(%[[X]], %[[COND]], %[[UNCOND]] :
// CHECK-LABEL: func.func @generate(
// CHECK: arith.constant dense<{{\[}}[1.000000e+01, 1.100000e+01, 1.200000e+01, 1.300000e+01], [1.000000e+01, 1.100000e+01, 1.200000e+01, 1.300000e+01]]> : tensor<2x4xf32>
// CHECK: arith.constant dense<[2.000000e+00, -5.19615221, 3.46410155,
// CHECK: call @denoise_sampler_step(%arg0, %arg1, %arg2,
#t = affine_map<(d0, d1) -> (d0)>
#id2 = affine_map<(d0, d1) -> (d0, d1)>
func.func @denoise(%x: tensor<2x4xf32>, %t: tensor<2xi64>, %c: tensor<2x4xf32>) -> tensor<2x4xf32> {
  %e = tensor.empty() : tensor<2x4xf32>
  %emb = linalg.generic {indexing_maps = [#t, #id2], iterator_types = ["parallel", "parallel"]}
      ins(%t : tensor<2xi64>) outs(%e : tensor<2x4xf32>) {
  ^bb0(%a: i64, %o: f32):
    %j = linalg.index 1 : index
    %ji = arith.index_cast %j : index to i64
    %p = arith.addi %a, %ji : i64
    %s = arith.sitofp %p : i64 to f32
    linalg.yield %s : f32
  } -> tensor<2x4xf32>
  %y = linalg.generic {indexing_maps = [#id2, #id2, #id2, #id2], iterator_types = ["parallel", "parallel"]}
      ins(%x, %emb, %c : tensor<2x4xf32>, tensor<2x4xf32>, tensor<2x4xf32>) outs(%e : tensor<2x4xf32>) {
  ^bb0(%a: f32, %b: f32, %d: f32, %o: f32):
    %m = arith.mulf %a, %b : f32
    %s = arith.addf %m, %d : f32
    linalg.yield %s : f32
  } -> tensor<2x4xf32>
  return %y : tensor<2x4xf32>
}
func.func @generate(%noise: tensor<1x4xf32>, %c: tensor<1x4xf32>, %neg: tensor<1x4xf32>) -> tensor<1x4xf32> {
  %r = hasten.sampler_loop @denoise(%noise) cond(%c : tensor<1x4xf32>) negative(%neg : tensor<1x4xf32>) {rule = "ddim", prediction = "eps", timesteps = array<f64: 10.0>, schedule = array<f64: 0.25, 1.0>, sample_index = 0, time_index = 1, cfg = "full", cfg_scale = 3.0} : tensor<1x4xf32> -> tensor<1x4xf32>
  return %r : tensor<1x4xf32>
}

// -----

// Multi-step consistency with residual CFG: the step function also returns
// the residual noise, which starts as the initial noise; each step but the
// last re-noises with its slice of %renoise; a time subgraph the evaluator
// cannot run (softmax) stays, and the time is passed in.
// CHECK-LABEL: func.func private @denoise_sampler_step(
// CHECK-SAME: %[[X:.*]]: tensor<1x4xf32>, %[[T:.*]]: tensor<1xf32>, %[[Q:.*]]: tensor<1x4xf32>, %[[Z:.*]]: tensor<1x4xf32>, %{{.*}}: tensor<8xf32>) -> (tensor<1x4xf32>, tensor<1x4xf32>)
// CHECK: linalg.softmax dimension(0) ins(%[[T]]
// CHECK: %[[NEXT:.*]]:2 = linalg.generic {{.*}} ins(%[[X]], %{{.*}}, %[[Q]], %[[Z]] :
// CHECK: return %[[NEXT]]#0, %[[NEXT]]#1
// CHECK-LABEL: func.func @generate(
// CHECK-SAME: attributes {hasten.sampler_steps = 3 : i64}
// CHECK: %[[ZERO:.*]] = arith.constant dense<0.000000e+00> : tensor<1x4xf32>
// CHECK: %[[T0:.*]] = arith.constant dense<9.990000e+02> : tensor<1xf32>
// CHECK: %[[Z0:.*]] = tensor.extract_slice %arg1[0, 0, 0] [1, 1, 4] [1, 1, 1]
// CHECK: %[[S0:.*]]:2 = call @denoise_sampler_step(%arg0, %[[T0]], %arg0, %[[Z0]],
// CHECK: %[[Z1:.*]] = tensor.extract_slice %arg1[1, 0, 0] [1, 1, 4] [1, 1, 1]
// CHECK: %[[S1:.*]]:2 = call @denoise_sampler_step(%[[S0]]#0, %{{.*}}, %[[S0]]#1, %[[Z1]],
// CHECK: %[[S2:.*]]:2 = call @denoise_sampler_step(%[[S1]]#0, %{{.*}}, %[[S1]]#1, %[[ZERO]],
// CHECK: return %[[S2]]#0
#id3 = affine_map<(d0, d1) -> (d0, d1)>
func.func @denoise(%x: tensor<1x4xf32>, %t: tensor<f32>) -> tensor<1x4xf32> {
  %e = tensor.empty() : tensor<1x4xf32>
  %t1 = tensor.expand_shape %t [] output_shape [1] : tensor<f32> into tensor<1xf32>
  %s = linalg.softmax dimension(0) ins(%t1 : tensor<1xf32>) outs(%t1 : tensor<1xf32>) -> tensor<1xf32>
  %tt = tensor.collapse_shape %s [] : tensor<1xf32> into tensor<f32>
  %y = linalg.generic {indexing_maps = [#id3, affine_map<(d0, d1) -> ()>, #id3], iterator_types = ["parallel", "parallel"]}
      ins(%x, %tt : tensor<1x4xf32>, tensor<f32>) outs(%e : tensor<1x4xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %m = arith.mulf %a, %b : f32
    linalg.yield %m : f32
  } -> tensor<1x4xf32>
  return %y : tensor<1x4xf32>
}
func.func @generate(%noise: tensor<1x4xf32>, %renoise: tensor<2x1x4xf32>) -> tensor<1x4xf32> {
  %r = hasten.sampler_loop @denoise(%noise) renoise(%renoise : tensor<2x1x4xf32>) {rule = "consistency", prediction = "eps", timesteps = array<f64: 999.0, 499.0, 99.0>, schedule = array<f64: 0.25, 0.5, 0.75, 1.0>, sample_index = 0, time_index = 1, cfg = "rcfg-self", cfg_scale = 1.5} : tensor<1x4xf32> -> tensor<1x4xf32>
  return %r : tensor<1x4xf32>
}

// -----

// A stream batch of two frames: the new frame and the one in flight are
// denoised in one call; each row has its step's time and coefficients
// (dt 0.25 for the new frame, 0.75 for the other); the finished frame is
// the last row, the new state the first. The time feeds the op that reads
// the sample too, so nothing folds and the time is passed.
// CHECK-LABEL: func.func private @denoise_sampler_step(
// CHECK-SAME: %[[X:.*]]: tensor<2x4xf32>, %[[T:.*]]: tensor<2xf32>, %[[COEF:.*]]: tensor<8x2xf32>) -> tensor<2x4xf32>
// CHECK: linalg.generic {indexing_maps = [#{{.*}}, #{{.*}}, #[[ROW0:.*]], #[[ROW1:.*]], #{{.*}}], {{.*}} ins(%[[X]], %[[T]], %[[COEF]], %[[COEF]] :
// CHECK-LABEL: func.func @generate_stream(
// CHECK-SAME: attributes {hasten.sampler_steps = 1 : i64}
// CHECK: %[[FLAT:.*]] = tensor.collapse_shape %arg1 {{\[}}[0, 1], [2]]
// CHECK: %[[ROWS:.*]] = tensor.concat dim(0) %arg0, %[[FLAT]]
// CHECK: %[[TIME:.*]] = arith.constant dense<[0.000000e+00, 2.500000e-01]> : tensor<2xf32>
// CHECK: %[[K:.*]] = arith.constant dense<{{\[}}[1.000000e+00, 1.000000e+00], [2.500000e-01, 7.500000e-01],
// CHECK: %[[NEXT:.*]] = call @denoise_sampler_step(%[[ROWS]], %[[TIME]], %[[K]])
// CHECK-DAG: %[[DONE:.*]] = tensor.extract_slice %[[NEXT]][1, 0] [1, 4] [1, 1]
// CHECK-DAG: %[[FLIGHT:.*]] = tensor.extract_slice %[[NEXT]][0, 0] [1, 4] [1, 1]
// CHECK: %[[STATE:.*]] = tensor.expand_shape %[[FLIGHT]] {{\[}}[0, 1], [2]] output_shape [1, 1, 4]
// CHECK: return %[[DONE]], %[[STATE]]
#t4 = affine_map<(d0, d1) -> (d0)>
#id4 = affine_map<(d0, d1) -> (d0, d1)>
func.func @denoise(%x: tensor<2x4xf32>, %t: tensor<2xf32>) -> tensor<2x4xf32> {
  %e = tensor.empty() : tensor<2x4xf32>
  %y = linalg.generic {indexing_maps = [#id4, #t4, #id4], iterator_types = ["parallel", "parallel"]}
      ins(%x, %t : tensor<2x4xf32>, tensor<2xf32>) outs(%e : tensor<2x4xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %s = math.sin %b : f32
    %m = arith.mulf %a, %s : f32
    linalg.yield %m : f32
  } -> tensor<2x4xf32>
  return %y : tensor<2x4xf32>
}
func.func @generate_stream(%x: tensor<1x4xf32>, %state: tensor<1x1x4xf32>) -> (tensor<1x4xf32>, tensor<1x1x4xf32>) {
  %r, %s = hasten.sampler_stream @denoise(%x) state(%state : tensor<1x1x4xf32>) {rule = "euler-flow", prediction = "velocity", timesteps = array<f64: 0.0, 0.25>, schedule = array<f64: 0.0, 0.25, 1.0>, sample_index = 0, time_index = 1} : tensor<1x4xf32> -> tensor<1x4xf32>, tensor<1x1x4xf32>
  return %r, %s : tensor<1x4xf32>, tensor<1x1x4xf32>
}

// -----

// A stream batch carries what depends only on a frame's conditioning: the
// context's projection (collapse, matmul, expand, a slice of its keys) and
// a gather of one key per row into a broadcast bias are proven to keep each
// frame's row apart, so they are computed for the new frame alone (one row,
// the fill and the bias at one row too) and carried in the state
// (`carried_conditioning_0`, [1, 4]) in place of the raw conditioning; the
// step function takes the carried rows and no longer reads the raw ones.
// CHECK-LABEL: func.func private @denoise_sampler_step(
// CHECK-SAME: %[[X:.*]]: tensor<2x4xf32>, %[[C:.*]]: tensor<2x3x4xf32>, %[[T:.*]]: tensor<2xf32>, %[[G:.*]]: tensor<2x4xf32>, %[[COEF:.*]]: tensor<8x2xf32>) -> tensor<2x4xf32>
// CHECK-NOT: linalg.matmul
// CHECK: linalg.generic {{.*}} ins(%[[X]], %[[T]], %[[G]],
// CHECK: return
// CHECK-LABEL: func.func @generate_stream(
// CHECK-SAME: %[[NEWX:[^:]*]]: tensor<1x4xf32>, %[[NEWC:[^:]*]]: tensor<1x3x4xf32>, %[[STATE:[^:]*]]: tensor<1x1x4xf32>, %[[CARRIED:[^:]*]]: tensor<1x4xf32> {hasten.onnx_name = "carried_conditioning_0"})
// CHECK-SAME: -> (tensor<1x4xf32>, tensor<1x1x4xf32>, tensor<1x4xf32> {hasten.onnx_name = "carried_conditioning_0"})
// CHECK: %[[FLAT:.*]] = tensor.collapse_shape %[[NEWC]] {{\[}}[0, 1], [2]] : tensor<1x3x4xf32> into tensor<3x4xf32>
// CHECK: %[[FILL:.*]] = linalg.fill {{.*}} -> tensor<3x8xf32>
// CHECK: %[[P:.*]] = linalg.matmul ins(%[[FLAT]], %{{.*}} : tensor<3x4xf32>, tensor<4x8xf32>) outs(%[[FILL]] : tensor<3x8xf32>)
// CHECK: %[[K:.*]] = tensor.expand_shape %[[P]] {{\[}}[0, 1], [2]] output_shape [1, 3, 8]
// CHECK: %[[KEYS:.*]] = tensor.extract_slice %[[K]][0, 0, 0] [1, 3, 4] [1, 1, 1] : tensor<1x3x8xf32> to tensor<1x3x4xf32>
// CHECK: %[[BIAS:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<1x4xf32>)
// CHECK: %[[NEWG:.*]] = linalg.generic {{.*}} outs(%[[BIAS]] : tensor<1x4xf32>)
// CHECK: tensor.extract %[[KEYS]]
// CHECK: %[[ALL:.*]] = tensor.concat dim(0) %[[NEWG]], %[[CARRIED]] : (tensor<1x4xf32>, tensor<1x4xf32>) -> tensor<2x4xf32>
// CHECK: %[[NEXT:.*]] = call @denoise_sampler_step(%{{.*}}, %{{.*}}, %{{.*}}, %[[ALL]], %{{.*}})
// CHECK-DAG: %[[DONE:.*]] = tensor.extract_slice %[[NEXT]][1, 0] [1, 4] [1, 1]
// CHECK-DAG: %[[KEEP:.*]] = tensor.extract_slice %[[ALL]][0, 0] [1, 4] [1, 1]
// CHECK: return %[[DONE]], %{{.*}}, %[[KEEP]] : tensor<1x4xf32>, tensor<1x1x4xf32>, tensor<1x4xf32>
#row = affine_map<(d0, d1) -> (d0)>
#col = affine_map<(d0, d1) -> (d1)>
#id = affine_map<(d0, d1) -> (d0, d1)>
func.func @denoise(%x: tensor<2x4xf32>, %t: tensor<2xf32>, %c: tensor<2x3x4xf32>) -> tensor<2x4xf32> {
  %w = arith.constant dense<0.5> : tensor<4x8xf32>
  %zero = arith.constant 0.0 : f32
  %flat = tensor.collapse_shape %c [[0, 1], [2]] : tensor<2x3x4xf32> into tensor<6x4xf32>
  %e68 = tensor.empty() : tensor<6x8xf32>
  %f = linalg.fill ins(%zero : f32) outs(%e68 : tensor<6x8xf32>) -> tensor<6x8xf32>
  %p = linalg.matmul ins(%flat, %w : tensor<6x4xf32>, tensor<4x8xf32>) outs(%f : tensor<6x8xf32>) -> tensor<6x8xf32>
  %k = tensor.expand_shape %p [[0, 1], [2]] output_shape [2, 3, 8] : tensor<6x8xf32> into tensor<2x3x8xf32>
  %keys = tensor.extract_slice %k[0, 0, 0] [2, 3, 4] [1, 1, 1] : tensor<2x3x8xf32> to tensor<2x3x4xf32>
  %bias = arith.constant dense<[1.0, 2.0, 3.0, 4.0]> : tensor<4xf32>
  %e24 = tensor.empty() : tensor<2x4xf32>
  %b = linalg.generic {indexing_maps = [#col, #id], iterator_types = ["parallel", "parallel"]}
      ins(%bias : tensor<4xf32>) outs(%e24 : tensor<2x4xf32>) {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  } -> tensor<2x4xf32>
  %g = linalg.generic {indexing_maps = [#id], iterator_types = ["parallel", "parallel"]}
      outs(%b : tensor<2x4xf32>) {
  ^bb0(%o: f32):
    %r = linalg.index 0 : index
    %j = linalg.index 1 : index
    %c2 = arith.constant 2 : index
    %v = tensor.extract %keys[%r, %c2, %j] : tensor<2x3x4xf32>
    %s = arith.addf %o, %v : f32
    linalg.yield %s : f32
  } -> tensor<2x4xf32>
  %y = linalg.generic {indexing_maps = [#id, #row, #id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%x, %t, %g : tensor<2x4xf32>, tensor<2xf32>, tensor<2x4xf32>) outs(%e24 : tensor<2x4xf32>) {
  ^bb0(%a: f32, %tt: f32, %gg: f32, %o: f32):
    %sn = math.sin %tt : f32
    %m = arith.mulf %a, %sn : f32
    %n = arith.addf %m, %gg : f32
    linalg.yield %n : f32
  } -> tensor<2x4xf32>
  return %y : tensor<2x4xf32>
}
func.func @generate_stream(%x: tensor<1x4xf32>, %c: tensor<1x3x4xf32>, %state: tensor<1x1x4xf32>, %cstate: tensor<1x1x3x4xf32>) -> (tensor<1x4xf32>, tensor<1x1x4xf32>, tensor<1x1x3x4xf32>) {
  %r, %s, %cs = hasten.sampler_stream @denoise(%x) cond(%c : tensor<1x3x4xf32>) state(%state, %cstate : tensor<1x1x4xf32>, tensor<1x1x3x4xf32>) {rule = "euler-flow", prediction = "velocity", timesteps = array<f64: 0.0, 0.25>, schedule = array<f64: 0.0, 0.25, 1.0>, sample_index = 0, time_index = 1} : tensor<1x4xf32> -> tensor<1x4xf32>, tensor<1x1x4xf32>, tensor<1x1x3x4xf32>
  return %r, %s, %cs : tensor<1x4xf32>, tensor<1x1x4xf32>, tensor<1x1x3x4xf32>
}

// -----

// Not carried: a per-row constant (row r scaled by scale[r]) would give the
// frames different functions of their conditioning, so the state keeps the
// raw conditioning and every tick recomputes the scaled context.
// CHECK-LABEL: func.func private @denoise_sampler_step(
// CHECK-SAME: %{{.*}}: tensor<2x4xf32>, %[[C:.*]]: tensor<2x4xf32>, %{{.*}}: tensor<2xf32>, %{{.*}}: tensor<8x2xf32>)
// CHECK: linalg.generic {{.*}} ins({{.*}}%[[C]],
// CHECK-LABEL: func.func @generate_stream(
// CHECK-SAME: -> (tensor<1x4xf32>, tensor<1x1x4xf32>, tensor<1x1x4xf32>)
// CHECK: %[[CFLAT:.*]] = tensor.collapse_shape %arg3
// CHECK: %[[CALL:.*]] = tensor.concat dim(0) %arg1, %[[CFLAT]]
// CHECK: call @denoise_sampler_step(%{{.*}}, %[[CALL]],
#row = affine_map<(d0, d1) -> (d0)>
#id = affine_map<(d0, d1) -> (d0, d1)>
func.func @denoise(%x: tensor<2x4xf32>, %t: tensor<2xf32>, %c: tensor<2x4xf32>) -> tensor<2x4xf32> {
  %scale = arith.constant dense<[1.0, 2.0]> : tensor<2xf32>
  %e = tensor.empty() : tensor<2x4xf32>
  %g = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]}
      ins(%c, %scale : tensor<2x4xf32>, tensor<2xf32>) outs(%e : tensor<2x4xf32>) {
  ^bb0(%a: f32, %s: f32, %o: f32):
    %m = arith.mulf %a, %s : f32
    linalg.yield %m : f32
  } -> tensor<2x4xf32>
  %y = linalg.generic {indexing_maps = [#id, #row, #id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%x, %t, %g : tensor<2x4xf32>, tensor<2xf32>, tensor<2x4xf32>) outs(%e : tensor<2x4xf32>) {
  ^bb0(%a: f32, %tt: f32, %gg: f32, %o: f32):
    %sn = math.sin %tt : f32
    %m = arith.mulf %a, %sn : f32
    %n = arith.addf %m, %gg : f32
    linalg.yield %n : f32
  } -> tensor<2x4xf32>
  return %y : tensor<2x4xf32>
}
func.func @generate_stream(%x: tensor<1x4xf32>, %c: tensor<1x4xf32>, %state: tensor<1x1x4xf32>, %cstate: tensor<1x1x4xf32>) -> (tensor<1x4xf32>, tensor<1x1x4xf32>, tensor<1x1x4xf32>) {
  // expected-remark @+1 {{each tick recomputes the frames' conditioning-only values: 'linalg.generic' mixes the frames' rows or treats them differently}}
  %r, %s, %cs = hasten.sampler_stream @denoise(%x) cond(%c : tensor<1x4xf32>) state(%state, %cstate : tensor<1x1x4xf32>, tensor<1x1x4xf32>) {rule = "euler-flow", prediction = "velocity", timesteps = array<f64: 0.0, 0.25>, schedule = array<f64: 0.0, 0.25, 1.0>, sample_index = 0, time_index = 1} : tensor<1x4xf32> -> tensor<1x4xf32>, tensor<1x1x4xf32>, tensor<1x1x4xf32>
  return %r, %s, %cs : tensor<1x4xf32>, tensor<1x1x4xf32>, tensor<1x1x4xf32>
}

// -----

// Not carried: a sum over the frames' rows mixes them.
// CHECK-LABEL: func.func @generate_stream(
// CHECK-SAME: -> (tensor<1x4xf32>, tensor<1x1x4xf32>, tensor<1x1x4xf32>)
#id = affine_map<(d0, d1) -> (d0, d1)>
#sum = affine_map<(d0, d1) -> (d1)>
#row = affine_map<(d0, d1) -> (d0)>
#bcast = affine_map<(d0, d1) -> (d1)>
func.func @denoise(%x: tensor<2x4xf32>, %t: tensor<2xf32>, %c: tensor<2x4xf32>) -> tensor<2x4xf32> {
  %zero = arith.constant 0.0 : f32
  %e4 = tensor.empty() : tensor<4xf32>
  %z = linalg.fill ins(%zero : f32) outs(%e4 : tensor<4xf32>) -> tensor<4xf32>
  %total = linalg.generic {indexing_maps = [#id, #sum], iterator_types = ["reduction", "parallel"]}
      ins(%c : tensor<2x4xf32>) outs(%z : tensor<4xf32>) {
  ^bb0(%a: f32, %o: f32):
    %s = arith.addf %a, %o : f32
    linalg.yield %s : f32
  } -> tensor<4xf32>
  %e = tensor.empty() : tensor<2x4xf32>
  %y = linalg.generic {indexing_maps = [#id, #row, #bcast, #id], iterator_types = ["parallel", "parallel"]}
      ins(%x, %t, %total : tensor<2x4xf32>, tensor<2xf32>, tensor<4xf32>) outs(%e : tensor<2x4xf32>) {
  ^bb0(%a: f32, %tt: f32, %gg: f32, %o: f32):
    %sn = math.sin %tt : f32
    %m = arith.mulf %a, %sn : f32
    %n = arith.addf %m, %gg : f32
    linalg.yield %n : f32
  } -> tensor<2x4xf32>
  return %y : tensor<2x4xf32>
}
func.func @generate_stream(%x: tensor<1x4xf32>, %c: tensor<1x4xf32>, %state: tensor<1x1x4xf32>, %cstate: tensor<1x1x4xf32>) -> (tensor<1x4xf32>, tensor<1x1x4xf32>, tensor<1x1x4xf32>) {
  // expected-remark @+1 {{'linalg.generic' mixes the frames' rows}}
  %r, %s, %cs = hasten.sampler_stream @denoise(%x) cond(%c : tensor<1x4xf32>) state(%state, %cstate : tensor<1x1x4xf32>, tensor<1x1x4xf32>) {rule = "euler-flow", prediction = "velocity", timesteps = array<f64: 0.0, 0.25>, schedule = array<f64: 0.0, 0.25, 1.0>, sample_index = 0, time_index = 1} : tensor<1x4xf32> -> tensor<1x4xf32>, tensor<1x1x4xf32>, tensor<1x1x4xf32>
  return %r, %s, %cs : tensor<1x4xf32>, tensor<1x1x4xf32>, tensor<1x1x4xf32>
}

// -----

// Not carried: after the transpose the rows are the inner dimension of the
// collapsed [3 x 2] keys, so a frame's keys are not one block of rows.
// CHECK-LABEL: func.func @generate_stream(
// CHECK-SAME: -> (tensor<1x4xf32>, tensor<1x1x4xf32>, tensor<1x1x3x4xf32>)
#id = affine_map<(d0, d1) -> (d0, d1)>
#row = affine_map<(d0, d1) -> (d0)>
func.func @denoise(%x: tensor<2x4xf32>, %t: tensor<2xf32>, %c: tensor<2x3x4xf32>) -> tensor<2x4xf32> {
  %e324 = tensor.empty() : tensor<3x2x4xf32>
  %tr = linalg.transpose ins(%c : tensor<2x3x4xf32>) outs(%e324 : tensor<3x2x4xf32>) permutation = [1, 0, 2]
  %flat = tensor.collapse_shape %tr [[0, 1], [2]] : tensor<3x2x4xf32> into tensor<6x4xf32>
  %g = tensor.extract_slice %flat[0, 0] [2, 4] [1, 1] : tensor<6x4xf32> to tensor<2x4xf32>
  %e = tensor.empty() : tensor<2x4xf32>
  %y = linalg.generic {indexing_maps = [#id, #row, #id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%x, %t, %g : tensor<2x4xf32>, tensor<2xf32>, tensor<2x4xf32>) outs(%e : tensor<2x4xf32>) {
  ^bb0(%a: f32, %tt: f32, %gg: f32, %o: f32):
    %sn = math.sin %tt : f32
    %m = arith.mulf %a, %sn : f32
    %n = arith.addf %m, %gg : f32
    linalg.yield %n : f32
  } -> tensor<2x4xf32>
  return %y : tensor<2x4xf32>
}
func.func @generate_stream(%x: tensor<1x4xf32>, %c: tensor<1x3x4xf32>, %state: tensor<1x1x4xf32>, %cstate: tensor<1x1x3x4xf32>) -> (tensor<1x4xf32>, tensor<1x1x4xf32>, tensor<1x1x3x4xf32>) {
  // expected-remark @+1 {{'tensor.collapse_shape' mixes the frames' rows}}
  %r, %s, %cs = hasten.sampler_stream @denoise(%x) cond(%c : tensor<1x3x4xf32>) state(%state, %cstate : tensor<1x1x4xf32>, tensor<1x1x3x4xf32>) {rule = "euler-flow", prediction = "velocity", timesteps = array<f64: 0.0, 0.25>, schedule = array<f64: 0.0, 0.25, 1.0>, sample_index = 0, time_index = 1} : tensor<1x4xf32> -> tensor<1x4xf32>, tensor<1x1x4xf32>, tensor<1x1x3x4xf32>
  return %r, %s, %cs : tensor<1x4xf32>, tensor<1x1x4xf32>, tensor<1x1x3x4xf32>
}

// -----

// What depends only on the conditioning (here c * c, as a context's
// cross-attention keys would) is computed once, before the steps, and each
// step receives it.
// CHECK-LABEL: func.func private @denoise_sampler_step(
// CHECK-SAME: %[[X:.*]]: tensor<1x4xf32>, %[[C:.*]]: tensor<1x4xf32>, %[[T:.*]]: tensor<1xf32>, %[[K:.*]]: tensor<1x4xf32>, %{{.*}}: tensor<8xf32>)
// CHECK-NOT: arith.mulf %{{.*}}, %{{.*}} : f32
// CHECK: linalg.generic {{.*}} ins(%[[X]], %[[K]], %[[T]] :
// CHECK-LABEL: func.func @generate(
// CHECK: %[[SQUARED:.*]] = linalg.generic {{.*}} ins(%arg1 : tensor<1x4xf32>)
// CHECK: arith.mulf
// CHECK: call @denoise_sampler_step(%arg0, %arg1, %{{.*}}, %[[SQUARED]],
// CHECK: call @denoise_sampler_step(%{{.*}}, %arg1, %{{.*}}, %[[SQUARED]],
// CHECK-NOT: linalg.generic
// CHECK: return
#id5 = affine_map<(d0, d1) -> (d0, d1)>
#t5 = affine_map<(d0, d1) -> (d0)>
func.func @denoise(%x: tensor<1x4xf32>, %t: tensor<1xf32>, %c: tensor<1x4xf32>) -> tensor<1x4xf32> {
  %e = tensor.empty() : tensor<1x4xf32>
  %k = linalg.generic {indexing_maps = [#id5, #id5], iterator_types = ["parallel", "parallel"]}
      ins(%c : tensor<1x4xf32>) outs(%e : tensor<1x4xf32>) {
  ^bb0(%a: f32, %o: f32):
    %m = arith.mulf %a, %a : f32
    linalg.yield %m : f32
  } -> tensor<1x4xf32>
  %y = linalg.generic {indexing_maps = [#id5, #id5, #t5, #id5], iterator_types = ["parallel", "parallel"]}
      ins(%x, %k, %t : tensor<1x4xf32>, tensor<1x4xf32>, tensor<1xf32>) outs(%e : tensor<1x4xf32>) {
  ^bb0(%a: f32, %b: f32, %s: f32, %o: f32):
    %p = arith.addf %a, %b : f32
    %q = arith.subf %p, %s : f32
    linalg.yield %q : f32
  } -> tensor<1x4xf32>
  return %y : tensor<1x4xf32>
}
func.func @generate(%noise: tensor<1x4xf32>, %c: tensor<1x4xf32>) -> tensor<1x4xf32> {
  %r = hasten.sampler_loop @denoise(%noise) cond(%c : tensor<1x4xf32>) {rule = "euler-flow", prediction = "velocity", timesteps = array<f64: 0.0, 0.5>, schedule = array<f64: 0.0, 0.5, 1.0>, sample_index = 0, time_index = 1} : tensor<1x4xf32> -> tensor<1x4xf32>
  return %r : tensor<1x4xf32>
}
