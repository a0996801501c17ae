#!/usr/bin/env python3
"""Step-distillation fusion: few-step samplers compiled into one `generate`
call (hasten-compile --sampler) against the same compiled denoiser called
step by step, in the same run, at 1 and 2 threads.

Denoisers: dit_small (a DiT in PixArt's adaLN-single style, 16x16x4 latent
as 64 tokens, width 128, depth 4, cross-attention to 16 context tokens:
compute-bound), dit_wide (4 tokens, width 512, depth 8, 95 MB of weights: a
step reads every weight for few rows, bound by memory bandwidth), both
exported with torch by test/models/denoisers/make_denoisers.py --bench;
dit_tiny and flow_vocoder (the test models).

  fused      the generate entry: a 4-step sampler (DDIM 999,759,499,259 for the
             DiTs, Euler flow for the vocoder) in one call
  stepwise   the module's `main` (the denoiser alone) called 4 times from
             Python through the runtime's C API, with the sampler's update
             in numpy in between, as a diffusers-style loop runs it;
             "main x4" is the 4 calls alone (no update, no loop), the floor
             of any step-by-step loop
  RCFG       rcfg-self against full CFG (scale 1.4), both fused
  stream     a 4-frame stream batch (one batched call per tick, one frame
             out per tick) against the sequential sampler, frames per second

"used" is the threads each side's last call ran with (fused/main, full/RCFG,
sequential/stream): the thread count is a ceiling, and the runtime runs an
entry on one thread where its first calls measured that faster.

Medians of --repeat runs after warm-up; the table names the CPU.

usage: bench/sampler_bench.py [--build build] [--threads 1,2] [--repeat 200]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "e2e"))
import hasten_ctypes as hc  # noqa: E402
import samplers  # noqa: E402
sys.path.insert(0, HERE)
import machine  # noqa: E402

MODELS = os.path.join(ROOT, "test", "models", "denoisers")
DDIM = [999, 759, 499, 259]


def median_ms(fn, repeat, warmup=5):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def compile_module(build, model, out, *flags):
    subprocess.run([os.path.join(build, "bin", "hasten-compile"), model, "-o", out, *flags],
                   check=True, capture_output=True)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="hasten-sampler-bench-")
    subprocess.run(["/usr/bin/python3", os.path.join(MODELS, "make_denoisers.py"), "-o", work,
                    "--bench"], check=True, capture_output=True)
    rt = hc.Runtime(os.path.join(args.build, "lib"))
    rt.lib.hasten_set_num_threads.argtypes = [hc.ctypes.c_int]
    rt.lib.hasten_entry_last_threads.argtypes = [hc.ctypes.c_void_p, hc.ctypes.c_char_p]

    def used(module, entry):
        """The threads the entry's last call ran with (the runtime runs a
        call on one thread where that measured faster)."""
        return rt.lib.hasten_entry_last_threads(module.handle, entry.encode())
    rng = np.random.default_rng(0)

    models = [
        ("dit_small", os.path.join(work, "dit_small.onnx"), "ddim", (4, 16, 16), (16, 16),
         "sample", "timestep", "encoder_hidden_states", np.int64),
        ("dit_wide", os.path.join(work, "dit_wide.onnx"), "ddim", (4, 4, 4), (4, 16),
         "sample", "timestep", "encoder_hidden_states", np.int64),
        ("dit_tiny", os.path.join(MODELS, "dit_tiny.onnx"), "ddim", (4, 8, 8), (4, 16),
         "sample", "timestep", "encoder_hidden_states", np.int64),
        ("flow_vocoder", os.path.join(MODELS, "flow_vocoder.onnx"), "euler-flow", (1, 256),
         (8, 16), "x", "t", "mel", np.float32),
    ]
    rows_fused, rows_cfg, rows_stream = [], [], []
    for name, path, rule, shape, cond_shape, x_name, t_name, c_name, t_type in models:
        spec = "ddim:timesteps=" + ",".join(map(str, DDIM)) if rule == "ddim" \
            else "euler-flow:steps=4"
        io = f"--sampler-inputs=x={x_name},t={t_name}"
        fused = rt.load(compile_module(args.build, path, os.path.join(work, name + ".so"),
                                       "--sampler=" + spec, io))
        stream = rt.load(compile_module(args.build, path, os.path.join(work, name + "-s.so"),
                                        "--sampler=" + spec, "--stream-batch=4", io))
        cfg = {}
        if rule == "ddim":
            for mode in ("full", "rcfg-self"):
                cfg[mode] = rt.load(compile_module(
                    args.build, path, os.path.join(work, f"{name}-{mode}.so"), "--sampler=" + spec,
                    f"--cfg={mode}", "--cfg-scale=1.4", io))
        noise = rng.standard_normal((1, *shape)).astype(np.float32)
        cond = rng.standard_normal((1, *cond_shape)).astype(np.float32)
        negative = rng.standard_normal((1, *cond_shape)).astype(np.float32)
        inputs = {x_name: noise, c_name: cond}

        def denoise(x, t, c):
            return fused.run("main", [x.astype(np.float32), np.full(1, t, t_type), *c])[0] \
                .astype(np.float64)

        def stepwise():
            if rule == "ddim":
                samplers.run(denoise, noise, [cond], rule="ddim", timesteps=DDIM)
            else:
                samplers.run(denoise, noise, [cond], rule="euler-flow", steps=4)

        times = [DDIM[i] if rule == "ddim" else i / 4 for i in range(4)]

        def main_only():
            for t in times:
                fused.run("main", [noise, np.full(1, t, t_type), cond])

        for threads in [int(t) for t in args.threads.split(",")]:
            rt.lib.hasten_set_num_threads(threads)
            f = median_ms(lambda: fused.generate_sample(inputs=inputs), args.repeat)
            f_used = used(fused, "generate")
            s = median_ms(stepwise, args.repeat)
            m = median_ms(main_only, args.repeat)
            rows_fused.append((name, threads, f, s, m, f"{f_used}/{used(fused, 'main')}"))
            if cfg:
                full = median_ms(lambda: cfg["full"].generate_sample(
                    inputs={**inputs, "negative_" + c_name: negative}), args.repeat)
                rcfg = median_ms(lambda: cfg["rcfg-self"].generate_sample(inputs=inputs),
                                 args.repeat)
                rows_cfg.append((name, threads, full, rcfg,
                                 f"{used(cfg['full'], 'generate')}/"
                                 f"{used(cfg['rcfg-self'], 'generate')}"))
            frames = stream.stream(seed=1)
            for _ in range(4):
                frames.push({c_name: cond})
            per_frame_stream = median_ms(lambda: frames.push({c_name: cond}), args.repeat)
            frames.free()
            rows_stream.append((name, threads, f, per_frame_stream,
                                f"{f_used}/{used(stream, 'generate_stream')}"))

    print(f"CPU: {machine.cpu_description()}")
    print("\n4-step sampler, one sample: fused generate vs the denoiser step by step "
          "(median ms)")
    print(f"{'model':14s} {'threads':>7s} {'used':>5s} {'fused':>9s} {'stepwise':>9s} "
          f"{'main x4':>9s} {'vs stepwise':>12s} {'vs main x4':>11s}")
    for name, threads, f, s, m, u in rows_fused:
        print(f"{name:14s} {threads:7d} {u:>5s} {f:9.3f} {s:9.3f} {m:9.3f} {s / f:11.2f}x "
              f"{m / f:10.2f}x")
    print("\nresidual CFG (rcfg-self) vs full CFG, both fused, scale 1.4 (median ms)")
    print(f"{'model':14s} {'threads':>7s} {'used':>5s} {'full CFG':>9s} {'RCFG':>9s} "
          f"{'speedup':>8s}")
    for name, threads, full, rcfg, u in rows_cfg:
        print(f"{name:14s} {threads:7d} {u:>5s} {full:9.3f} {rcfg:9.3f} {full / rcfg:7.2f}x")
    print("\nstream batch of 4 vs the sequential sampler: frames per second")
    print(f"{'model':14s} {'threads':>7s} {'used':>5s} {'sequential':>11s} {'stream':>9s} "
          f"{'speedup':>8s}")
    for name, threads, f, st, u in rows_stream:
        print(f"{name:14s} {threads:7d} {u:>5s} {1e3 / f:11.0f} {1e3 / st:9.0f} {f / st:7.2f}x")


if __name__ == "__main__":
    main()
