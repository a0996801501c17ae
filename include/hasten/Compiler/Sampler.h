//===- Sampler.h - the generate entry of a denoiser -------------*- C++ -*-===//
//
// hasten-compile --sampler=SPEC: parses the sampler specification into a
// schedule and adds the `generate` entry, whose body is one
// hasten.sampler_loop around the imported denoiser (`main`);
// --hasten-fuse-sampler-steps then compiles it into fused steps.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_COMPILER_SAMPLER_H
#define HASTEN_COMPILER_SAMPLER_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Support/LLVM.h"

#include <string>
#include <vector>

namespace hasten {

struct SamplerOptions {
  /// RULE[:key=value,...]: `euler-flow:steps=N`,
  /// `ddim:timesteps=999,759,499,259` or `ddim:steps=N`, `consistency:steps=N`;
  /// keys prediction=, beta-schedule=, beta-start=, beta-end=. Empty: no
  /// sampler.
  std::string spec;
  /// `x=NAME,t=NAME[,cond=NAME...]`: the sampled and the time input
  /// (defaults `sample` and `timestep`); the other inputs are conditioning.
  std::string inputs;
  /// none, full, rcfg-self or rcfg-onetime.
  std::string cfg = "none";
  double cfgScale = 1.0;
  /// Samples per generate call.
  int64_t batch = 1;
  /// StreamDiffusion's stream batch: this many frames in flight, one per
  /// step (it must equal the steps), denoised in one call per tick by the
  /// `generate_stream` entry instead of `generate`. 0: none.
  int64_t streamBatch = 0;
};

/// A parsed specification: what the hasten.sampler_loop op holds.
struct SamplerPlan {
  std::string rule, prediction;
  /// The values the denoiser's time input takes, one per step.
  std::vector<double> timesteps;
  /// Flow times (with the end time) or cumulative alphas (with the end's).
  std::vector<double> schedule;
  std::string sampleInput = "sample", timeInput = "timestep";
  std::vector<std::string> conditioningInputs;
};

/// Parses `options`; false, with `error` set, for anything malformed.
bool parseSampler(const SamplerOptions &options, SamplerPlan &plan, std::string &error);

/// The batch the denoiser is imported at: twice the samples for full CFG,
/// the frames in flight times the samples for a stream batch.
int64_t samplerDenoiserBatch(const SamplerOptions &options);

/// Adds `generate` to `module` (whose imported denoiser is `main`): the
/// sampled input (the initial noise), the conditioning inputs by their
/// names, `negative_<name>` for each with CFG's negative pass, and
/// `renoise` for a multi-step consistency sampler; one output, the sample.
/// With a stream batch, adds `generate_stream` instead: the new frame's
/// noise and conditioning, and the frames in flight as `<name>_state`, in;
/// the finished frame and the new states out.
mlir::LogicalResult addSamplerEntry(mlir::ModuleOp module, const SamplerOptions &options,
                                    const SamplerPlan &plan);

} // namespace hasten

#endif // HASTEN_COMPILER_SAMPLER_H
