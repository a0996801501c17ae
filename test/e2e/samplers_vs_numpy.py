#!/usr/bin/env python3
"""hasten-compile --sampler against the numpy sampler loops (samplers.py).

For the two denoisers torch exported (test/models/denoisers): the imported
denoiser matches torch's outputs; every sampler rule, step count, prediction
type and CFG variant compiled into a `generate` entry matches the numpy loop
around the same module's `main` (the denoiser alone) within rel 1e-4; the
runtime draws the noise it is not given reproducibly; and bad sampler
options and inputs are refused with messages that name them.

  samplers_vs_numpy.py BUILD_DIR
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import hasten_ctypes  # noqa: E402
import samplers  # noqa: E402
from e2e_common import Checks  # noqa: E402

MODELS = os.path.join(HERE, "..", "models", "denoisers")
DIT = os.path.join(MODELS, "dit_tiny.onnx")
VOCODER = os.path.join(MODELS, "flow_vocoder.onnx")


def rel_error(got, want):
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


def main():
    build = sys.argv[1]
    bin_dir = os.path.join(build, "bin")
    rt = hasten_ctypes.Runtime(os.path.join(build, "lib"))
    checks = Checks()
    work = tempfile.mkdtemp(prefix="hasten-samplers-")

    def compile_module(model, tag, *flags):
        out = os.path.join(work, tag + ".so")
        proc = subprocess.run([os.path.join(bin_dir, "hasten-compile"), model, "-o", out,
                               *flags], capture_output=True, text=True)
        return out if proc.returncode == 0 else proc.stderr

    # The denoisers themselves, against torch.
    for model, tag in ((DIT, "dit_tiny"), (VOCODER, "flow_vocoder")):
        ref = np.load(os.path.join(MODELS, tag + ".reference.npz"))
        path = compile_module(model, tag + "_b3", "--bind-dim", "batch=3")
        module = rt.load(path)
        names = [n for n in ref.files if n != "output"]
        order = {"dit_tiny": ["sample", "timestep", "encoder_hidden_states"],
                 "flow_vocoder": ["x", "t", "mel"]}[tag]
        assert sorted(names) == sorted(order)
        got = module.run("main", [ref[n] for n in order])[0]
        err = rel_error(got, ref["output"])
        checks.check(err <= 1e-5, f"{tag}: the imported denoiser matches torch (rel {err:.1e})")
        module.free()

    rng = np.random.default_rng(7)
    # (model, tag, hasten-compile flags, numpy loop arguments, batch)
    dit = {"x": "sample", "t": "timestep", "cond": ["encoder_hidden_states"],
           "cond_shape": (4, 16), "shape": (4, 8, 8), "time": np.int64}
    voc = {"x": "x", "t": "t", "cond": ["mel"], "cond_shape": (8, 16), "shape": (1, 256),
           "time": np.float32}
    cases = [
        (VOCODER, voc, "flow1", ["--sampler=euler-flow:steps=1"], dict(rule="euler-flow", steps=1)),
        (VOCODER, voc, "flow4", ["--sampler=euler-flow:steps=4"], dict(rule="euler-flow", steps=4)),
        (VOCODER, voc, "flow3-cfg", ["--sampler=euler-flow:steps=3", "--cfg-scale=2.5"],
         dict(rule="euler-flow", steps=3, cfg="full", scale=2.5)),
        (VOCODER, voc, "flow2-b2", ["--sampler=euler-flow:steps=2", "--sampler-batch=2"],
         dict(rule="euler-flow", steps=2), 2),
        (DIT, dit, "ddim4", ["--sampler=ddim:timesteps=999,759,499,259"],
         dict(rule="ddim", timesteps=[999, 759, 499, 259])),
        (DIT, dit, "ddim2-v", ["--sampler=ddim:steps=2,prediction=v"],
         dict(rule="ddim", timesteps=samplers.ddim_timesteps(2), prediction="v")),
        (DIT, dit, "ddim3-sample-linear",
         ["--sampler=ddim:steps=3,prediction=sample,beta-schedule=linear"],
         dict(rule="ddim", timesteps=samplers.ddim_timesteps(3), prediction="sample",
              alphas=samplers.alphas_cumprod("linear"))),
        (DIT, dit, "ddim4-cfg", ["--sampler=ddim:timesteps=999,759,499,259", "--cfg=full",
                                 "--cfg-scale=3"],
         dict(rule="ddim", timesteps=[999, 759, 499, 259], cfg="full", scale=3.0)),
        (DIT, dit, "ddim4-rcfg-self", ["--sampler=ddim:timesteps=999,759,499,259",
                                       "--cfg=rcfg-self", "--cfg-scale=1.4"],
         dict(rule="ddim", timesteps=[999, 759, 499, 259], cfg="rcfg-self", scale=1.4)),
        (DIT, dit, "cm1", ["--sampler=consistency:steps=1"],
         dict(rule="consistency", timesteps=samplers.lcm_timesteps(1))),
        # A last timestep near 0, where LCM's boundary condition (c_skip,
        # c_out) moves the result.
        (DIT, dit, "cm3-small-t", ["--sampler=consistency:timesteps=999,499,1"],
         dict(rule="consistency", timesteps=[999, 499, 1])),
        (DIT, dit, "cm4", ["--sampler=consistency:steps=4"],
         dict(rule="consistency", timesteps=samplers.lcm_timesteps(4))),
        (DIT, dit, "cm4-rcfg-onetime", ["--sampler=consistency:steps=4", "--cfg=rcfg-onetime",
                                        "--cfg-scale=1.6"],
         dict(rule="consistency", timesteps=samplers.lcm_timesteps(4), cfg="rcfg-onetime",
              scale=1.6)),
        (DIT, dit, "cm2-rcfg-self-b2", ["--sampler=consistency:steps=2", "--cfg=rcfg-self",
                                        "--cfg-scale=1.2", "--sampler-batch=2"],
         dict(rule="consistency", timesteps=samplers.lcm_timesteps(2), cfg="rcfg-self",
              scale=1.2), 2),
    ]
    for case in cases:
        model, io, tag, flags, loop = case[:5]
        batch = case[5] if len(case) > 5 else 1
        path = compile_module(model, tag, *flags,
                              f"--sampler-inputs=x={io['x']},t={io['t']}")
        if not path.endswith(".so"):
            checks.check(False, f"{tag}: compiles ({path.strip()})")
            continue
        module = rt.load(path)

        def denoise(x, t, cond, module=module):
            time = np.full(x.shape[0], t, dtype=io["time"])
            return module.run("main", [x.astype(np.float32), time, *cond])[0].astype(np.float64)

        noise = rng.standard_normal((batch, *io["shape"])).astype(np.float32)
        cond = [rng.standard_normal((batch, *io["cond_shape"])).astype(np.float32)]
        inputs = {io["x"]: noise, io["cond"][0]: cond[0]}
        negative = None
        if loop.get("cfg") in ("full", "rcfg-onetime"):
            negative = [rng.standard_normal((batch, *io["cond_shape"])).astype(np.float32)]
            inputs["negative_" + io["cond"][0]] = negative[0]
        renoise = None
        steps = len(loop.get("timesteps", [])) or loop.get("steps")
        if loop["rule"] == "consistency" and steps > 1:
            renoise = rng.standard_normal((steps - 1, batch, *io["shape"])).astype(np.float32)
            inputs["renoise"] = renoise
        want = samplers.run(denoise, noise, cond, negative=negative, renoise=renoise, **loop)
        given = {k: v.copy() for k, v in inputs.items()}
        got, stats = module.generate_sample(seed=0, inputs=inputs)
        checks.check(all(np.array_equal(given[k], inputs[k]) for k in inputs),
                     f"{tag}: the inputs are left as they were")
        err = rel_error(got, want)
        calls = steps + (loop.get("cfg") == "rcfg-onetime")
        checks.check(err <= 1e-4 and stats.steps == calls,
                     f"{tag}: the fused sampler matches the numpy loop (rel {err:.1e}, "
                     f"{stats.steps} denoiser calls)")
        # The sampler really samples: the result is not the noise, and one
        # step fewer in the reference is far from it.
        checks.check(rel_error(got, noise) > 0.05, f"{tag}: the sample moved from the noise")
        module.free()

    # Noise drawn by the runtime: reproducible, Gaussian, and the same as
    # passing it in.
    module = rt.load(os.path.join(work, "cm4.so"))
    cond = {"encoder_hidden_states": rng.standard_normal((1, 4, 16)).astype(np.float32)}
    a, _ = module.generate_sample(seed=11, inputs=cond)
    b, _ = module.generate_sample(seed=11, inputs=cond)
    c, _ = module.generate_sample(seed=12, inputs=cond)
    checks.check(np.array_equal(a, b) and rel_error(a, c) > 0.05,
                 "the same seed gives the same sample, another seed another one")
    noise = rt.gaussian_noise(11, 0, 256).reshape(1, 4, 8, 8)
    renoise = rt.gaussian_noise(11, 2, 3 * 256).reshape(3, 1, 4, 8, 8)
    given, _ = module.generate_sample(seed=99, inputs={**cond, "sample": noise,
                                                       "renoise": renoise})
    checks.check(np.array_equal(a, given),
                 "drawn noise is hasten_gaussian_noise(seed, input index): giving it is the same")
    draws = rt.gaussian_noise(5, 0, 200000).astype(np.float64)
    checks.check(abs(draws.mean()) < 0.01 and abs(draws.std() - 1) < 0.01 and
                 abs(np.mean(draws ** 4) - 3) < 0.1,
                 f"the noise is standard normal (mean {draws.mean():.4f}, std {draws.std():.4f})")
    try:
        module.generate_sample(seed=1, inputs={})
        checks.check(False, "a missing conditioning input is refused")
    except hasten_ctypes.HastenError as e:
        checks.check("'encoder_hidden_states' is not given" in str(e),
                     f"a missing conditioning input is refused: {e}")
    try:
        module.generate_sample(seed=1, inputs={**cond, "latents": noise})
        checks.check(False, "an unknown input name is refused")
    except hasten_ctypes.HastenError as e:
        checks.check("no input named 'latents'" in str(e) and "sample" in str(e),
                     f"an unknown input name is refused: {e}")
    try:
        module.generate_sample(seed=1, inputs={**cond, "sample": noise[:, :2]})
        checks.check(False, "noise of the wrong shape is refused")
    except hasten_ctypes.HastenError as e:
        checks.check("sample" in str(e), f"noise of the wrong shape is refused: {e}")
    module.free()

    # Stream batch: N frames in flight, one batched call per tick; every
    # frame comes out as the sequential sampler makes it, N - 1 ticks later.
    for model, io, spec, steps in ((DIT, dit, "ddim:timesteps=999,759,499,259", 4),
                                   (VOCODER, voc, "euler-flow:steps=3", 3)):
        inputs_flag = f"--sampler-inputs=x={io['x']},t={io['t']}"
        tag = spec.split(":")[0]
        streamed = compile_module(model, tag + "-stream", "--sampler=" + spec,
                                  f"--stream-batch={steps}", inputs_flag)
        sequential = compile_module(model, tag + "-sequential", "--sampler=" + spec, inputs_flag)
        if not streamed.endswith(".so") or not sequential.endswith(".so"):
            checks.check(False, f"{tag} stream: compiles ({streamed.strip()[-200:]})")
            continue
        # What depends only on a frame's conditioning (the DiT's
        # cross-attention keys and values, the vocoder's mel upsampling)
        # travels in the state instead of the raw conditioning.
        signature = subprocess.run([os.path.join(bin_dir, "hasten-run"), streamed, "--signature",
                                    "--entry", "generate_stream"],
                                   capture_output=True, text=True).stdout
        carried = signature.count("input  carried_conditioning_")
        checks.check(carried >= 1 and io["cond"][0] + "_state" not in signature,
                     f"{tag} stream: {carried} conditioning-only values carried in the state, "
                     "not the raw conditioning")
        smod, qmod = rt.load(streamed), rt.load(sequential)
        stream = smod.stream(seed=3)
        frames = [(rng.standard_normal((1, *io["shape"])).astype(np.float32),
                   rng.standard_normal((1, *io["cond_shape"])).astype(np.float32))
                  for _ in range(steps + 3)]
        outs = [stream.push({io["x"]: x, io["cond"][0]: c}) for x, c in frames]
        early = all(o is None for o in outs[:steps - 1])
        errs = [rel_error(outs[k], qmod.generate_sample(
                    inputs={io["x"]: frames[k - steps + 1][0],
                            io["cond"][0]: frames[k - steps + 1][1]})[0])
                for k in range(steps - 1, len(frames))]
        checks.check(early and stream.depth == steps and max(errs) <= 1e-5,
                     f"{tag} stream batch {steps}: {len(errs)} frames equal the sequential "
                     f"sampler's (max rel {max(errs):.1e}), none before tick {steps}")
        # Drawn noise: frame k's is noise stream k * 65536 (the sample is
        # input 0).
        stream2 = smod.stream(seed=5)
        drawn = [stream2.push({io["cond"][0]: c}) for _, c in frames[:steps]]
        noise0 = rt.gaussian_noise(5, 0, int(np.prod(io["shape"]))).reshape(1, *io["shape"])
        want = qmod.generate_sample(inputs={io["x"]: noise0, io["cond"][0]: frames[0][1]})[0]
        checks.check(rel_error(drawn[-1], want) <= 1e-5,
                     f"{tag} stream: drawn noise is frame k's noise stream k * 65536")
        stream.free()
        stream2.free()
        smod.free()
        qmod.free()

    # Options that cannot work are refused before any work, naming them.
    refusals = [
        (VOCODER, ["--sampler=euler-flow:steps=2", "--cfg=rcfg-self", "--cfg-scale=2",
                   "--sampler-inputs=x=x,t=t"], "needs an eps-prediction ddim or consistency"),
        (VOCODER, ["--sampler=euler-flow:steps=2"],
         "names 'sample', which is not a graph input (its inputs: x, t, mel)"),
        (DIT, ["--sampler=ddim:timesteps=259,499"], "not decreasing integers"),
        (DIT, ["--sampler=heun:steps=2"], "unknown sampler 'heun'"),
        (DIT, ["--sampler=ddim:steps=2,sigma=3"], "not 'sigma'"),
        (DIT, ["--sampler=ddim:steps=2", "--sampler-inputs=x=sample,t=timestep,cond=text"],
         "cond=text is not one of the denoiser's other inputs"),
        (DIT, ["--sampler=ddim:steps=2", "--cfg=full"], "--cfg=full needs --cfg-scale"),
        (DIT, ["--sampler=ddim:steps=3", "--stream-batch=2"],
         "--stream-batch=2 must equal the sampler's steps (3"),
        (DIT, ["--sampler=ddim:steps=2", "--stream-batch=2", "--cfg-scale=2"],
         "--stream-batch runs ddim and euler-flow samplers without CFG"),
    ]
    for model, flags, message in refusals:
        out = compile_module(model, "refused", *flags)
        shown = out.strip().splitlines()[0] if not out.endswith(".so") else "compiled"
        checks.check(not out.endswith(".so") and message in out,
                     f"refused: {' '.join(flags)} ({shown})")

    print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
