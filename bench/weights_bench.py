#!/usr/bin/env python3
"""Weights: compile time, load to first token, resident memory and decode
speed of the 124M GPT-2-shaped decoder (test/models/make_decoder.py --preset
gpt2-124m) with f32, bf16, int8 and int4 weights, against ONNX Runtime f32
in the same run.

Per precision: the compile's wall time; the stored weight bytes (by the
format the kernels read) and where they are mapped from; in a fresh process
(page cache warm: the module was just loaded once): the load alone and the load with a one-token prompt's logits;
decode per token at past 128 (the median of 7 blocks of 10 steps); VmRSS
after the decode steps, against the stored weights plus the KV cache; and
decode against its floor: the bytes a token reads (the stored weights but the
position table and, when the LM head has its own packed copy, the token
embedding table, of which a token reads one row) over the read bandwidth
probed right after each decode block at the same thread count, the median of
the blocks' ratios (the "floor ms" column uses the median probe) ("with KV" adds the keys and values attention reads at that past
length); and how many of 32 greedy tokens after the decoder bench's first
prompt (512 tokens) agree with f32's. The table names the CPU.

usage: bench/weights_bench.py [--build build] [--threads 1,2] [--precisions f32,bf16,int8,int4]
"""
import argparse
import os
import re
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "e2e"))
import hasten_ctypes as hc  # noqa: E402
sys.path.insert(0, HERE)
import machine  # noqa: E402
import ort_env  # noqa: E402
from run_bench import run  # noqa: E402

POSITION_TABLE = "pos_embed"


def child(build, module_path, threads, past, rounds, membw):
    """Load to first token, decode ms, RSS (kB), capacity, load ms, greedy tokens, and
    per round (a block of decode steps, then a read-bandwidth probe at the same thread
    count right after it): the block's median ms/token and the probe's bytes/s, in a
    fresh process. The probes sit between the decode blocks because this machine's
    bandwidth moves by up to 2x from minute to minute: a floor measured at another
    time than the decode says more about the neighbours than about the kernels."""
    code = f"""
import re, subprocess, sys, time, statistics
t0 = time.perf_counter()
sys.path.insert(0, {os.path.join(ROOT, 'test', 'e2e')!r})
import hasten_ctypes as hc
rt = hc.Runtime({os.path.join(build, 'lib')!r})
t1 = time.perf_counter()
m = rt.load({module_path!r})
loaded = (time.perf_counter() - t1) * 1e3
seq = m.sequence()
seq.append([7])
first = (time.perf_counter() - t1) * 1e3
seq.truncate(0); seq.append([(i * 7) % 50000 + 1 for i in range({past})])
blocks, bandwidths = [], []
for r in range({rounds}):
    times = []
    for i in range(12):
        t = time.perf_counter(); seq.append([3]); times.append(time.perf_counter() - t)
        seq.truncate({past})
    blocks.append(statistics.median(times[2:]) * 1e3)
    if {membw!r}:
        out = subprocess.run([{membw!r}, '{threads}'], capture_output=True,
                             text=True, check=True).stdout
        bandwidths.append(float(re.search(r"read_gbps ([0-9.]+)", out).group(1)) * 1e9)
rss = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS:'))
seq.truncate(0)
logits = seq.append([(i * 7) % 50000 + 1 for i in range(512)])
greedy = []
for i in range(32):
    greedy.append(int(logits.argmax())); logits = seq.append([greedy[-1]])
print(first, rss, m.capacity, loaded, ",".join(map(str, greedy)),
      ",".join(map(str, blocks)), ",".join(map(str, bandwidths)) or "-")
"""
    env = dict(os.environ, HASTEN_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    out = run([sys.executable, "-c", code], env).split()
    blocks = [float(t) for t in out[5].split(",")]
    bandwidths = [float(b) for b in out[6].split(",")] if out[6] != "-" else []
    return dict(first=float(out[0]), rss=int(out[1]), capacity=int(out[2]),
                loaded=float(out[3]), greedy=[int(t) for t in out[4].split(",")],
                blocks=blocks, bandwidths=bandwidths)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeat", type=int, default=5, help="ONNX Runtime's repeats")
    parser.add_argument("--rounds", type=int, default=7,
                        help="decode blocks, each followed by a bandwidth probe")
    parser.add_argument("--past", type=int, default=128)
    parser.add_argument("--precisions", default="f32,bf16,int8,int4")
    args = parser.parse_args()
    python = ort_env.ort_python(args.build)
    bin_dir = os.path.join(args.build, "bin")
    work = os.path.join(args.build, "bench")
    os.makedirs(work, exist_ok=True)
    model = os.path.join(work, "gpt2-124m.onnx")
    if not os.path.exists(model):
        print("exporting gpt2-124m.onnx ...", file=sys.stderr)
        run([sys.executable, os.path.join(ROOT, "test", "models", "make_decoder.py"),
             "--preset", "gpt2-124m", "--external-data", "-o", model])
    rt = hc.Runtime(os.path.join(args.build, "lib"))
    precisions = args.precisions.split(",")
    compiled = {}
    for p in precisions:
        path = os.path.join(work, f"weights-{p}.so")
        print(f"compiling {os.path.basename(path)} ...", file=sys.stderr)
        start = time.perf_counter()
        run([os.path.join(bin_dir, "hasten-compile"), model, "-o", path, f"--weights={p}"])
        seconds = time.perf_counter() - start
        m = rt.load(path)
        weights = m.weights()
        stored = sum(b for _n, _f, b in weights)
        packed_head = any(f != "plain" and n.startswith("embed.") for n, f, _b in weights)
        unread = sum(b for n, f, b in weights if f == "plain" and
                     (n == POSITION_TABLE or (packed_head and n == "embed")))
        formats = {}
        for _n, f, b in weights:
            formats[f] = formats.get(f, 0) + b
        compiled[p] = dict(path=path, seconds=seconds, stored=stored, read=stored - unread,
                           formats=formats, file=os.path.getsize(path))
        m.free()

    membw = machine.membw_binary(work)
    rows, bandwidths = [], {}
    for threads in [int(t) for t in args.threads.split(",")]:
        out = run([python, os.path.join(HERE, "ort_runner.py"), "decoder", model, str(threads),
                   "16", str(args.past), str(args.repeat)])
        ort_decode = float(re.search(r"decode_ms ([0-9.]+)", out).group(1))
        ort_rss = int(re.search(r"rss_kb ([0-9]+)", out).group(1)) * 1024
        for p in precisions:
            c = compiled[p]
            child(args.build, c["path"], threads, args.past, 1, "")  # warm the page cache
            r = child(args.build, c["path"], threads, args.past, args.rounds, membw)
            c["greedy"] = r["greedy"]
            bandwidths.setdefault(threads, []).extend(r["bandwidths"])
            kv = r["capacity"] * 12 * 2 * 768 * 4
            # What attention reads too: the keys and values of `past` tokens.
            kv_read = args.past * 12 * 2 * 768 * 4
            # Each block against the bandwidth probed right after it; medians of those.
            ratio = statistics.median(ms / (c["read"] / bw * 1e3)
                                      for ms, bw in zip(r["blocks"], r["bandwidths"]))
            kv_ratio = statistics.median(ms / ((c["read"] + kv_read) / bw * 1e3)
                                         for ms, bw in zip(r["blocks"], r["bandwidths"]))
            floor = c["read"] / statistics.median(r["bandwidths"]) * 1e3
            rows.append((threads, p, r["loaded"], r["first"], statistics.median(r["blocks"]),
                         floor, ratio, kv_ratio, r["rss"] * 1024, kv, ort_decode, ort_rss))

    print(f"CPU: {machine.cpu_description()}; ONNX Runtime {ort_env.ort_version(python)} "
          f"(Python, CPU, f32); read bandwidth probed between the decode blocks: "
          + ", ".join(f"median {statistics.median(bw) / 1e9:.1f} GB/s "
                      f"({min(bw) / 1e9:.1f}-{max(bw) / 1e9:.1f}) on {t} thread{'s' if t > 1 else ''}"
                      for t, bw in bandwidths.items()))
    print("model: test/models/make_decoder.py --preset gpt2-124m (124M parameters, 498 MB f32)\n")
    print("| weights | compile s | stored MB (by format) | .so MB |")
    print("|---|---|---|---|")
    for p in precisions:
        c = compiled[p]
        fmts = ", ".join(f"{f} {b / 1e6:.0f}" for f, b in sorted(c["formats"].items()))
        print(f"| {p} | {c['seconds']:.1f} | {c['stored'] / 1e6:.0f} ({fmts}) | "
              f"{c['file'] / 1e6:.0f} |")
    print()
    print("| threads | weights | load ms | load to first token ms | decode ms/token | floor ms | "
          "x floor | x floor with KV | vs ORT f32 | RSS MB | RSS / (weights + KV) | ORT RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for threads, p, loaded, first, decode, floor, ratio, kv_ratio, rss, kv, ort_decode, ort_rss in rows:
        stored = compiled[p]["stored"]
        print(f"| {threads} | {p} | {loaded:.1f} | {first:.1f} | {decode:.2f} | {floor:.2f} | "
              f"{ratio:.2f}x | {kv_ratio:.2f}x | "
              f"{ort_decode / decode:.2f}x ({ort_decode:.2f} ms) | "
              f"{rss / 1e6:.0f} | {rss / (stored + kv):.2f}x | {ort_rss / 1e6:.0f} |")
    if "f32" in compiled:
        print("\ngreedy tokens after the decoder bench's 512-token prompt that agree with f32 "
              "(of 32): " +
              ", ".join(f"{p} {agreement(compiled[p]['greedy'], compiled['f32']['greedy'])}"
                        for p in precisions if p != "f32"))


def agreement(a, b):
    """Leading greedy tokens two precisions agree on."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


if __name__ == "__main__":
    main()
