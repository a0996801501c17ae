// RUN: hasten-opt %s -split-input-file -verify-diagnostics

func.func @denoise(%x: tensor<1x4xf32>, %t: tensor<1xf32>) -> tensor<1x4xf32> {
  return %x : tensor<1x4xf32>
}
func.func @schedule(%noise: tensor<1x4xf32>) -> tensor<1x4xf32> {
  // expected-error @+1 {{'hasten.sampler_loop' op needs 3 schedule values (one per timestep and the end), got 2}}
  %r = hasten.sampler_loop @denoise(%noise) {rule = "euler-flow", prediction = "velocity", timesteps = array<f64: 0.0, 0.5>, schedule = array<f64: 0.0, 1.0>, sample_index = 0, time_index = 1} : tensor<1x4xf32> -> tensor<1x4xf32>
  return %r : tensor<1x4xf32>
}

// -----

func.func @denoise(%x: tensor<1x4xf32>, %t: tensor<1xf32>) -> tensor<1x4xf32> {
  return %x : tensor<1x4xf32>
}
func.func @prediction(%noise: tensor<1x4xf32>) -> tensor<1x4xf32> {
  // expected-error @+1 {{'hasten.sampler_loop' op a euler-flow sampler takes velocity predictions, not 'eps'}}
  %r = hasten.sampler_loop @denoise(%noise) {rule = "euler-flow", prediction = "eps", timesteps = array<f64: 0.0>, schedule = array<f64: 0.0, 1.0>, sample_index = 0, time_index = 1} : tensor<1x4xf32> -> tensor<1x4xf32>
  return %r : tensor<1x4xf32>
}

// -----

func.func @denoise(%x: tensor<1x4xf32>, %t: tensor<1xf32>) -> tensor<1x4xf32> {
  return %x : tensor<1x4xf32>
}
func.func @alpha(%noise: tensor<1x4xf32>) -> tensor<1x4xf32> {
  // expected-error @+1 {{'hasten.sampler_loop' op schedule value 1.500000e+00 is not an alpha in (0, 1]}}
  %r = hasten.sampler_loop @denoise(%noise) {rule = "ddim", prediction = "eps", timesteps = array<f64: 999.0>, schedule = array<f64: 1.5, 1.0>, sample_index = 0, time_index = 1} : tensor<1x4xf32> -> tensor<1x4xf32>
  return %r : tensor<1x4xf32>
}

// -----

func.func @denoise(%x: tensor<1x4xf32>, %t: tensor<1xf32>) -> tensor<1x4xf32> {
  return %x : tensor<1x4xf32>
}
func.func @rcfg_flow(%noise: tensor<1x4xf32>) -> tensor<1x4xf32> {
  // expected-error @+1 {{'hasten.sampler_loop' op residual CFG needs eps prediction (a ddim or consistency sampler)}}
  %r = hasten.sampler_loop @denoise(%noise) {rule = "euler-flow", prediction = "velocity", timesteps = array<f64: 0.0>, schedule = array<f64: 0.0, 1.0>, sample_index = 0, time_index = 1, cfg = "rcfg-self", cfg_scale = 2.0} : tensor<1x4xf32> -> tensor<1x4xf32>
  return %r : tensor<1x4xf32>
}

// -----

func.func @denoise(%x: tensor<1x4xf32>, %t: tensor<1xf32>) -> tensor<1x4xf32> {
  return %x : tensor<1x4xf32>
}
func.func @renoise(%noise: tensor<1x4xf32>) -> tensor<1x4xf32> {
  // expected-error @+1 {{'hasten.sampler_loop' op a multi-step consistency sampler needs its renoise tensor}}
  %r = hasten.sampler_loop @denoise(%noise) {rule = "consistency", prediction = "eps", timesteps = array<f64: 999.0, 499.0>, schedule = array<f64: 0.1, 0.5, 1.0>, sample_index = 0, time_index = 1} : tensor<1x4xf32> -> tensor<1x4xf32>
  return %r : tensor<1x4xf32>
}

// -----

func.func @denoise(%x: tensor<1x4xf32>, %t: tensor<1xf32>, %c: tensor<1x8xf32>) -> tensor<1x4xf32> {
  return %x : tensor<1x4xf32>
}
func.func @negative(%noise: tensor<1x4xf32>, %c: tensor<1x8xf32>) -> tensor<1x4xf32> {
  // expected-error @+1 {{'hasten.sampler_loop' op cfg 'full' takes 1 negative conditioning tensors, got 0}}
  %r = hasten.sampler_loop @denoise(%noise) cond(%c : tensor<1x8xf32>) {rule = "ddim", prediction = "eps", timesteps = array<f64: 999.0>, schedule = array<f64: 0.1, 1.0>, sample_index = 0, time_index = 1, cfg = "full", cfg_scale = 2.0} : tensor<1x4xf32> -> tensor<1x4xf32>
  return %r : tensor<1x4xf32>
}

// -----

// Full CFG runs the denoiser at twice the sample's batch.
func.func @denoise(%x: tensor<1x4xf32>, %t: tensor<1xf32>, %c: tensor<1x8xf32>) -> tensor<1x4xf32> {
  return %x : tensor<1x4xf32>
}
func.func @cfg_batch(%noise: tensor<1x4xf32>, %c: tensor<1x8xf32>, %n: tensor<1x8xf32>) -> tensor<1x4xf32> {
  // expected-error @+1 {{'hasten.sampler_loop' op 'denoise' takes and returns samples of type 'tensor<1x4xf32>', the sampler needs 'tensor<2x4xf32>'}}
  %r = hasten.sampler_loop @denoise(%noise) cond(%c : tensor<1x8xf32>) negative(%n : tensor<1x8xf32>) {rule = "ddim", prediction = "eps", timesteps = array<f64: 999.0>, schedule = array<f64: 0.1, 1.0>, sample_index = 0, time_index = 1, cfg = "full", cfg_scale = 2.0} : tensor<1x4xf32> -> tensor<1x4xf32>
  return %r : tensor<1x4xf32>
}

// -----

func.func @denoise(%x: tensor<1x4xf32>, %t: tensor<3xf32>) -> tensor<1x4xf32> {
  return %x : tensor<1x4xf32>
}
func.func @time(%noise: tensor<1x4xf32>) -> tensor<1x4xf32> {
  // expected-error @+1 {{'hasten.sampler_loop' op the time argument of 'denoise' is 'tensor<3xf32>', not a scalar or one value per batch element}}
  %r = hasten.sampler_loop @denoise(%noise) {rule = "ddim", prediction = "eps", timesteps = array<f64: 999.0>, schedule = array<f64: 0.1, 1.0>, sample_index = 0, time_index = 1} : tensor<1x4xf32> -> tensor<1x4xf32>
  return %r : tensor<1x4xf32>
}

// -----

func.func @denoise(%x: tensor<1x4xf32>, %t: tensor<1xf32>, %c: tensor<1x8xf32>) -> tensor<1x4xf32> {
  return %x : tensor<1x4xf32>
}
func.func @arity(%noise: tensor<1x4xf32>) -> tensor<1x4xf32> {
  // expected-error @+1 {{'hasten.sampler_loop' op 'denoise' takes 3 arguments: the sample, the time and 0 conditioning tensors do not fit}}
  %r = hasten.sampler_loop @denoise(%noise) {rule = "ddim", prediction = "eps", timesteps = array<f64: 999.0>, schedule = array<f64: 0.1, 1.0>, sample_index = 0, time_index = 1} : tensor<1x4xf32> -> tensor<1x4xf32>
  return %r : tensor<1x4xf32>
}

// -----

func.func @denoise(%x: tensor<2x4xf32>, %t: tensor<2xf32>) -> tensor<2x4xf32> {
  return %x : tensor<2x4xf32>
}
func.func @stream_state(%x: tensor<1x4xf32>, %state: tensor<2x1x4xf32>) -> (tensor<1x4xf32>, tensor<2x1x4xf32>) {
  // expected-error @+1 {{'hasten.sampler_stream' op the state must be [steps - 1, sample...] = 'tensor<1x1x4xf32>', got 'tensor<2x1x4xf32>'}}
  %r, %s = hasten.sampler_stream @denoise(%x) state(%state : tensor<2x1x4xf32>) {rule = "euler-flow", prediction = "velocity", timesteps = array<f64: 0.0, 0.5>, schedule = array<f64: 0.0, 0.5, 1.0>, sample_index = 0, time_index = 1} : tensor<1x4xf32> -> tensor<1x4xf32>, tensor<2x1x4xf32>
  return %r, %s : tensor<1x4xf32>, tensor<2x1x4xf32>
}

// -----

func.func @denoise(%x: tensor<1x4xf32>, %t: tensor<1xf32>) -> tensor<1x4xf32> {
  return %x : tensor<1x4xf32>
}
func.func @stream_batch(%x: tensor<1x4xf32>, %state: tensor<1x1x4xf32>) -> (tensor<1x4xf32>, tensor<1x1x4xf32>) {
  // expected-error @+1 {{'hasten.sampler_stream' op 'denoise' takes and returns samples of type 'tensor<1x4xf32>', the stream needs 'tensor<2x4xf32>'}}
  %r, %s = hasten.sampler_stream @denoise(%x) state(%state : tensor<1x1x4xf32>) {rule = "ddim", prediction = "eps", timesteps = array<f64: 999.0, 499.0>, schedule = array<f64: 0.1, 0.5, 1.0>, sample_index = 0, time_index = 1} : tensor<1x4xf32> -> tensor<1x4xf32>, tensor<1x1x4xf32>
  return %r, %s : tensor<1x4xf32>, tensor<1x1x4xf32>
}
