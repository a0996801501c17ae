#!/usr/bin/env python3
"""Decoder generation: hasten against ONNX Runtime on the same 124M
GPT-2-shaped exports, batch 1, in the same run: the project's own graph
(test/models/make_decoder.py --preset gpt2-124m), a torch.onnx export of
Hugging Face-style GPT-2 attention (bench/make_torch_decoder.py), and
transformers' own GPT-2 exported by Optimum (bench/make_optimum_decoder.py).

Rows: decode at past 128 (ms per token) and prefill of 512 tokens, at 1 and
2 threads; hasten with f32 weights and with --weights=bf16. ONNX Runtime
drives the ONNX graph with past/present tensors; hasten runs its prefill
and decode entries through the runtime's sequence API. Times are medians;
ratios are ONNX Runtime time / hasten time. The decode floor is the bytes
of weights a token reads divided by the machine's read bandwidth, measured
in the same run at the same thread count (bench/membw.c); the table names
the CPU.

usage: bench/decoder_bench.py [--build build] [--threads 1,2] [--repeat 5] [--exports own,torch,optimum]
ONNX Runtime comes from PyPI into BUILD/bench-venv on first use (bench/ort_env.py).
"""
import argparse
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "e2e"))
import hasten_ctypes as hc  # noqa: E402
sys.path.insert(0, HERE)
import machine  # noqa: E402
import ort_env  # noqa: E402
from run_bench import run  # noqa: E402


# Export name: (file in BUILD/bench, command that writes it given -o, what it is,
# weight bytes a decode step does not read: the position table, and in the
# torch export the token embedding table, which it keeps next to the LM
# head's own transposed copy and reads one row of).
POSITIONS, TOKENS = 1024 * 768 * 4, 50257 * 768 * 4
EXPORTS = {
    "own": ("gpt2-124m.onnx",
            lambda build: [sys.executable,
                           os.path.join(ROOT, "test", "models", "make_decoder.py"),
                           "--preset", "gpt2-124m", "--external-data"],
            "test/models/make_decoder.py --preset gpt2-124m (the project's own ONNX graph)",
            POSITIONS),
    "torch": ("gpt2-124m-torch.onnx",
              lambda build: ["/usr/bin/python3", os.path.join(HERE, "make_torch_decoder.py")],
              "bench/make_torch_decoder.py (Hugging Face GPT-2 attention, torch.onnx 1.13)",
              POSITIONS + TOKENS),
    "optimum": ("gpt2-124m-optimum.onnx",
                lambda build: [ort_env.exporter_python(build),
                               os.path.join(HERE, "make_optimum_decoder.py")],
                "bench/make_optimum_decoder.py (transformers' GPT2LMHeadModel exported by "
                "Optimum, opset 18)",
                POSITIONS + TOKENS),
}


def hasten_times(build, module_path, threads, prefill, past, repeat):
    """Runs in a child process so that the thread count applies from the
    start: returns prefill ms, decode ms, greedy token."""
    code = f"""
import sys, time, statistics, numpy as np
sys.path.insert(0, {os.path.join(ROOT, 'test', 'e2e')!r})
import hasten_ctypes as hc
rt = hc.Runtime({os.path.join(build, 'lib')!r})
m = rt.load({module_path!r})
seq = m.sequence()
def ids(n, o): return [(i * 7 + o) % 50000 + 1 for i in range(n)]
times = []
for i in range({repeat} + 2):
    seq.truncate(0)
    t = time.perf_counter(); logits = seq.append(ids({prefill}, 0)); times.append(time.perf_counter() - t)
prefill = statistics.median(times[2:]) * 1e3
greedy = int(np.argmax(logits))
seq.truncate(0); seq.append(ids({past}, 0))
times = []
for i in range(max(3 * {repeat}, 10) + 2):
    t = time.perf_counter(); seq.append(ids(1, 3)); times.append(time.perf_counter() - t)
    seq.truncate({past})
decode = statistics.median(times[2:]) * 1e3
print(f"{{prefill}} {{decode}} {{greedy}}")
"""
    env = dict(os.environ, HASTEN_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    out = run([sys.executable, "-c", code], env).split()
    return float(out[0]), float(out[1]), int(out[2])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--prefill", type=int, default=512)
    parser.add_argument("--past", type=int, default=128)
    parser.add_argument("--precisions", default="f32,bf16")
    parser.add_argument("--exports", default="own,torch,optimum",
                        help="which 124M exports to measure: own (make_decoder.py), torch "
                             "(make_torch_decoder.py, needs python3-torch), optimum "
                             "(make_optimum_decoder.py, in a venv of torch 2.x, transformers "
                             "and optimum-onnx from PyPI)")
    args = parser.parse_args()
    python = ort_env.ort_python(args.build)
    bin_dir = os.path.join(args.build, "bin")
    work = os.path.join(args.build, "bench")
    os.makedirs(work, exist_ok=True)
    exports = {}
    for export in args.exports.split(","):
        model = os.path.join(work, EXPORTS[export][0])
        if not os.path.exists(model):
            print(f"exporting {os.path.basename(model)} ...", file=sys.stderr)
            run(EXPORTS[export][1](args.build) + ["-o", model])
        exports[export] = model
    precisions = args.precisions.split(",")
    rt = hc.Runtime(os.path.join(args.build, "lib"))

    table = []  # (export, threads, ort prefill, ort decode, ort greedy, results, floor)
    bandwidths = {}
    read_bytes = {}
    for export, model in exports.items():
        modules = {}
        for precision in precisions:
            path = model[:-len(".onnx")] + f"-{precision}.so"
            if not os.path.exists(path) or os.path.getmtime(path) < os.path.getmtime(
                    os.path.join(bin_dir, "hasten-compile")):
                print(f"compiling {os.path.basename(path)} ...", file=sys.stderr)
                run([os.path.join(bin_dir, "hasten-compile"), model, "-o", path,
                     f"--weights={precision}"])
            modules[precision] = path
        # The weights a decode step reads.
        read_bytes[export] = rt.load(modules[precisions[0]]).weight_bytes - EXPORTS[export][3]
        for threads in [int(t) for t in args.threads.split(",")]:
            out = run([python, os.path.join(HERE, "ort_runner.py"), "decoder", model,
                       str(threads), str(args.prefill), str(args.past), str(args.repeat)])
            ort_prefill = float(re.search(r"prefill_ms ([0-9.]+)", out).group(1))
            ort_decode = float(re.search(r"decode_ms ([0-9.]+)", out).group(1))
            ort_greedy = int(re.search(r"greedy ([0-9]+)", out).group(1))
            results = {p: hasten_times(args.build, path, threads, args.prefill, args.past,
                                       args.repeat) for p, path in modules.items()}
            if threads not in bandwidths:
                bandwidths[threads] = machine.read_bandwidth(work, threads)
            floor = read_bytes[export] / bandwidths[threads] * 1e3
            table.append((export, threads, ort_prefill, ort_decode, ort_greedy, results, floor))

    print(f"CPU: {machine.cpu_description()}; ONNX Runtime {ort_env.ort_version(python)} "
          f"(Python, CPU); floor = the f32 weights a token reads ("
          + ", ".join(f"{e} {b / 1e6:.0f} MB" for e, b in read_bytes.items()) + ") / "
          f"read bandwidth measured now ("
          + ", ".join(f"{bw / 1e9:.1f} GB/s on {t} thread{'s' if t > 1 else ''}"
                      for t, bw in bandwidths.items()) + ")")
    print("exports: " + "; ".join(f"{e}: {EXPORTS[e][2]}" for e in exports) + "\n")
    header = "| export | case | threads | ORT ms |" + "".join(
        f" hasten {p} ms | ratio |" for p in precisions) + " f32 floor ms |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for export, threads, ort_prefill, ort_decode, ort_greedy, results, floor in table:
        line = f"| {export} | decode, past {args.past} (per token) | {threads} | {ort_decode:.2f} |"
        for p in precisions:
            ms = results[p][1]
            line += f" {ms:.2f} | {ort_decode / ms:.2f}x |"
        print(line + f" {floor:.1f} (f32 at {ms_to_x(results, 'f32', floor)}) |")
        line = f"| {export} | prefill, {args.prefill} tokens | {threads} | {ort_prefill:.1f} |"
        for p in precisions:
            ms = results[p][0]
            line += f" {ms:.1f} | {ort_prefill / ms:.2f}x |"
        print(line + " |")
    for export, threads, _, _, ort_greedy, results, _ in table:
        agree = {p: r[2] == ort_greedy for p, r in results.items()}
        print(f"{export}, threads {threads}: greedy token after the prefill, ORT {ort_greedy}, "
              "hasten " + ", ".join(f"{p} {r[2]}" for p, r in results.items())
              + ("" if all(agree.values()) else "  (differs)"))


def ms_to_x(results, precision, floor):
    if precision not in results:
        return "n/a"
    return f"{results[precision][1] / floor:.2f}x the floor"


if __name__ == "__main__":
    main()
