#!/usr/bin/env python3
"""hasten against ONNX Runtime on the same .onnx files, in the same run.

Cases: MatMul 1024^3 with the weights as an initializer, and a GPT-2-small
transformer block at sequence 1 and 512; 1 and 2 threads. Each time is the
median of repeated runs after warm-up; ratios are ONNX Runtime time / hasten
time (above 1: hasten is faster). Each row also checks hasten's f32 output
against ONNX Runtime's (max relative error).

usage: bench/run_bench.py [--build build] [--threads 1,2] [--quick]
ONNX Runtime comes from PyPI into BUILD/bench-venv on first use (bench/ort_env.py).
"""
import argparse
import os
import re
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run(cmd, env=None):
    env = dict(os.environ if env is None else env)
    # numpy's OpenBLAS (imported by the Python bindings and the ONNX Runtime
    # runner, never used by them) starts a thread per core that can spin on
    # a core the measured runtime needs: on 2 cores it cost hasten's first
    # token 60 ms at 2 threads. Neither side of a comparison gets them.
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr}")
    return proc.stdout


sys.path.insert(0, HERE)
import machine  # noqa: E402
import ort_env  # noqa: E402


def hasten_ms(bin_dir, module, x, threads, repeat, out_dir=None):
    env = dict(os.environ, HASTEN_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    cmd = [os.path.join(bin_dir, "hasten-run"), module, "--input", f"x={x}",
           "--warmup", "2", "--repeat", str(repeat)]
    if out_dir:
        cmd += ["--output-dir", out_dir]
    out = run(cmd, env)
    return float(re.search(r"p50 ([0-9.]+) ms", out).group(1))


def ort_ms(python, model, x, threads, repeat, out_npy=None):
    cmd = [python, os.path.join(HERE, "ort_runner.py"), "single", model, "x", x, str(threads),
           str(repeat)]
    if out_npy:
        cmd.append(out_npy)
    return float(re.search(r"median_ms ([0-9.]+)", run(cmd)).group(1))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    python = ort_env.ort_python(args.build)
    bin_dir = os.path.join(args.build, "bin")
    work = os.path.join(args.build, "bench")
    run([sys.executable, os.path.join(HERE, "make_bench_models.py"), work])
    for model in ("matmul1024", "gpt2_block"):
        for weights in ("f32", "bf16"):
            run([os.path.join(bin_dir, "hasten-compile"), os.path.join(work, model + ".onnx"),
                 "-o", os.path.join(work, f"{model}.{weights}.so"), f"--weights={weights}"])
    scale = 0.3 if args.quick else 1.0
    cases = [("MatMul 1024^3", "matmul1024", "matmul1024.x.npy", (1024, 1024), 20),
             ("GPT-2 block, seq 1", "gpt2_block", "gpt2_block.s1.x.npy", (1, 1, 768), 50),
             ("GPT-2 block, seq 512", "gpt2_block", "gpt2_block.s512.x.npy", (1, 512, 768), 5)]
    print(f"CPU: {machine.cpu_description()}; ONNX Runtime "
          f"{ort_env.ort_version(python)} (Python, CPU)\n")
    header = (f"| case | threads | ONNX Runtime ms | hasten f32 ms | f32 ratio | "
              f"hasten bf16 ms | bf16 ratio | f32 max rel err |")
    print(header)
    print("|" + "---|" * 8)
    for threads in [int(t) for t in args.threads.split(",")]:
        for title, model, x, shape, repeat in cases:
            repeat = max(3, int(repeat * scale))
            onnx_path = os.path.join(work, model + ".onnx")
            xpath = os.path.join(work, x)
            ort_out = os.path.join(work, "ort_out.npy")
            ort = ort_ms(python, onnx_path, xpath, threads, repeat, ort_out)
            out_dir = os.path.join(work, "hasten_out")
            f32 = hasten_ms(bin_dir, os.path.join(work, model + ".f32.so"), xpath, threads,
                            repeat, out_dir)
            bf16 = hasten_ms(bin_dir, os.path.join(work, model + ".bf16.so"), xpath, threads,
                             repeat)
            expected = np.load(ort_out).reshape(shape)
            actual = np.load(os.path.join(out_dir, "y.npy"))
            err = float(np.max(np.abs(actual - expected)) / (np.max(np.abs(expected)) + 1e-30))
            print(f"| {title} | {threads} | {ort:.3f} | {f32:.3f} | {ort / f32:.2f}x | "
                  f"{bf16:.3f} | {ort / bf16:.2f}x | {err:.1e} |", flush=True)


if __name__ == "__main__":
    main()
