#!/usr/bin/env python3
"""Attention alone: hasten.attention against ONNX Runtime running the
decomposed graph (MatMul, Mul, a Range/Less causal Where, Softmax, MatMul),
in the same run, 12 heads of 64, batch 1.

Rows: causal prefill at each length S (q_len = kv_len = S) and one-token
decode over a cache of S keys, at 1 and 2 threads. hasten runs three ways:
the runtime's kernel (--attention=kernel), the tiled IR of
--hasten-tile-attention (--attention=generated), and the same tiling with
causal tile skipping and diagonal-only masking turned off (every tile
computed and masked), which shows what skipping buys. Times are medians;
memory is the peak resident set of the process that ran it (inputs
included); GFLOP/s count the useful work only (the causal half of Q K^T
and P V: 2 S^2 d heads), against this machine's f32 FMA peak measured in
the same run (bench/fmapeak.c). ONNX Runtime is not run where its score
and probability matrices alone would not fit in memory. Prefill runs in 3
rounds, each an FMA probe and then every variant and ONNX Runtime back to
back: the ratios and shares of the peak are the medians of the rounds'
(listed after each ratio), since this machine's speed moves between
minutes and a ratio of runs minutes apart measured the drift. A decode's floor is
its K and V bytes over the read bandwidth: decode runs in 5 rounds (the
kernel, then the generated code, then a bandwidth probe at the same thread
count); times are the rounds' medians and the kernel's ratio to its floor
is the median of the rounds' ratios (the bandwidth here moves by up to 2x
between minutes; the "floor" shown uses the probe made at the start).

usage: bench/attention_bench.py [--build build] [--threads 1,2] [--lengths 1024,4096,16384]
ONNX Runtime comes from PyPI into BUILD/bench-venv on first use (bench/ort_env.py).
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import machine  # noqa: E402
import ort_env  # noqa: E402

HEADS, DIM = 12, 64
DECODE_ROUNDS = 5
PREFILL_ROUNDS = 3


def kv_bytes(length):
    """The K and V bytes one decode step reads."""
    return 2 * HEADS * length * DIM * 4


def measured(cmd, env=None):
    """Runs `cmd`; returns (stdout, peak resident bytes) of that process."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(write_fd, 1)
        os.close(read_fd)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.execve(cmd[0], cmd, env or dict(os.environ))
    os.close(write_fd)
    chunks = []
    while True:
        data = os.read(read_fd, 65536)
        if not data:
            break
        chunks.append(data)
    os.close(read_fd)
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}")
    return b"".join(chunks).decode(), usage.ru_maxrss * 1024


def attention_module(kind, decode, path):
    q = f"tensor<1x{HEADS}x{'1' if decode else '?'}x{DIM}xf32>"
    kv = f"tensor<1x{HEADS}x?x{DIM}xf32>"
    attrs = "" if decode else " causal"
    if kind == "noskip":
        attrs += (' tiling(#hasten.attention_tiling<target = "cpu", block_q = 64, tile_q = 64, '
                  'tile_kv = 64, kv_splits = 1, skip_masked = false, diagonal_mask = false, '
                  'warps = 0, mma = "", smem_layout = "row", vector_lanes = 16>)')
    with open(path, "w") as f:
        f.write(f"func.func @main(%q: {q}, %k: {kv}, %v: {kv}) -> {q} {{\n"
                f"  %o = hasten.attention %q, %k, %v heads({HEADS}, {HEADS}){attrs} : "
                f"{q}, {kv}, {kv} -> {q}\n  return %o : {q}\n}}\n")


def ort_model(decode, path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    f = TensorProto.FLOAT
    nodes = [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
             helper.make_node("MatMul", ["q", "kt"], ["qk"]),
             helper.make_node("Mul", ["qk", "scale"], ["scores"])]
    inits = [numpy_helper.from_array(np.array(DIM ** -0.5, np.float32), "scale")]
    last = "scores"
    if not decode:
        # mask[i, j] = j > i, from Range and Less, as exporters write it.
        nodes += [helper.make_node("Shape", ["q"], ["shape"]),
                  helper.make_node("Gather", ["shape", "two"], ["s"], axis=0),
                  helper.make_node("Range", ["zero", "s", "one"], ["r"]),
                  helper.make_node("Unsqueeze", ["r", "axis1"], ["rows"]),
                  helper.make_node("Unsqueeze", ["r", "axis0"], ["cols"]),
                  helper.make_node("Less", ["rows", "cols"], ["hidden"]),
                  helper.make_node("Where", ["hidden", "ninf", "scores"], ["masked"])]
        inits += [numpy_helper.from_array(np.array(2, np.int64), "two"),
                  numpy_helper.from_array(np.array(0, np.int64), "zero"),
                  numpy_helper.from_array(np.array(1, np.int64), "one"),
                  numpy_helper.from_array(np.array([1], np.int64), "axis1"),
                  numpy_helper.from_array(np.array([0], np.int64), "axis0"),
                  numpy_helper.from_array(np.array(-np.inf, np.float32), "ninf")]
        last = "masked"
    nodes += [helper.make_node("Softmax", [last], ["p"], axis=-1),
              helper.make_node("MatMul", ["p", "v"], ["o"])]
    qs = [1, HEADS, 1 if decode else "S", DIM]
    kvs = [1, HEADS, "T" if decode else "S", DIM]
    graph = helper.make_graph(nodes, "attention",
                              [helper.make_tensor_value_info("q", f, qs),
                               helper.make_tensor_value_info("k", f, kvs),
                               helper.make_tensor_value_info("v", f, kvs)],
                              [helper.make_tensor_value_info("o", f, qs)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--lengths", default="1024,4096,16384")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    bin_dir = os.path.join(args.build, "bin")
    work = os.path.join(args.build, "bench", "attention")
    os.makedirs(work, exist_ok=True)
    python = ort_env.ort_python(args.build)
    total_memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")

    modules = {}
    for decode in (False, True):
        for kind in ("kernel", "generated") + (() if decode else ("noskip",)):
            source = os.path.join(work, f"{'decode' if decode else 'prefill'}-{kind}.mlir")
            attention_module(kind, decode, source)
            module = source[:-5] + ".so"
            mode = "kernel" if kind == "kernel" else "generated"
            subprocess.run([os.path.join(bin_dir, "hasten-compile"), source, "-o", module,
                            f"--attention={mode}"], check=True)
            modules[(decode, kind)] = module
        ort_model(decode, os.path.join(work, f"{'decode' if decode else 'prefill'}.onnx"))

    rng = np.random.default_rng(0)
    rows = []
    peaks, bandwidths = {}, {}
    for threads in [int(t) for t in args.threads.split(",")]:
        peaks[threads] = machine.fma_peak(work, threads)
        bandwidths[threads] = machine.read_bandwidth(work, threads)
        env = dict(os.environ, HASTEN_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
        for length in [int(s) for s in args.lengths.split(",")]:
            for decode in (False, True):
                q = rng.standard_normal((1, HEADS, 1 if decode else length, DIM), np.float32)
                k = rng.standard_normal((1, HEADS, length, DIM), np.float32)
                v = rng.standard_normal((1, HEADS, length, DIM), np.float32)
                paths = {}
                for name, value in (("q", q), ("k", k), ("v", v)):
                    paths[name] = os.path.join(work, f"{name}.npy")
                    np.save(paths[name], value)
                # Prefill runs in rounds (below): past 4096 tokens, one run
                # of each per round.
                repeat = 4 * max(3, args.repeat) if decode else (
                    max(3, args.repeat) if length <= 4096 else 1)
                flops = 4.0 * HEADS * DIM * length * (1 if decode else (length + 1) / 2)
                results = {}
                # Prefill's fastest run: on this shared host, neighbours slow
                # cache-bound code down by up to 25% from one second to the
                # next while the FMA peak probe stays put.
                fastest = {}
                floor_ratios = []
                # Prefill: each round's ratios (ORT / kernel, generated /
                # kernel, no-skip / generated) and share of the FMA peak
                # probed in that round.
                round_ratios = {"ort": [], "generated": [], "noskip": []}
                round_shares = {"kernel": [], "generated": []}
                # ONNX Runtime's scores and probabilities: 2 x heads x S x T floats.
                ort_bytes = 2 * HEADS * (1 if decode else length) * length * 4
                ort_fits = ort_bytes < total_memory / 2

                def run_ort():
                    """ONNX Runtime's median ms and the process's peak resident bytes."""
                    out, rss = measured(
                        [python, os.path.join(HERE, "ort_runner.py"), "multi",
                         os.path.join(work, f"{'decode' if decode else 'prefill'}.onnx"),
                         str(threads), str(repeat)] + [f"{n}={paths[n]}" for n in "qkv"], env)
                    return float(re.search(r"median_ms ([0-9.]+)", out).group(1)), rss

                def command(kind):
                    cmd = [os.path.join(bin_dir, "hasten-run"), modules[(decode, kind)],
                           "--repeat", str(repeat)]
                    for name in ("q", "k", "v"):
                        cmd += ["--input", f"arg{'qkv'.index(name)}={paths[name]}"]
                    return cmd

                def p50(out):
                    # One run prints "latency: T ms", more "p50 T ms, ... min T ms".
                    return float(re.search(r"(?:p50|latency:) ([0-9.]+) ms", out).group(1))

                def fastest_ms(out):
                    return float(re.search(r"(?:min|latency:) ([0-9.]+) ms", out).group(1))

                def summarize(times):
                    """Each kind's rounds as (median ms, largest peak resident bytes)."""
                    for kind, runs in times.items():
                        results[kind] = (statistics.median(t for t, _ in runs),
                                         max(r for _, r in runs))

                if decode:
                    # The bandwidth here moves by up to 2x from minute to
                    # minute: each round runs the kernel and the generated
                    # code, then a read probe at the same thread count; the
                    # times are the rounds' medians and the floor ratio the
                    # median of the rounds' ratios (as weights_bench.py).
                    times = {"kernel": [], "generated": []}
                    for _ in range(DECODE_ROUNDS):
                        for kind in times:
                            out, rss = measured(command(kind), env)
                            times[kind].append((p50(out), rss))
                        probe = machine.read_bandwidth(work, threads, mib=256, passes=3)
                        floor_ratios.append(times["kernel"][-1][0] /
                                            (kv_bytes(length) / probe * 1e3))
                    summarize(times)
                    if ort_fits:
                        results["ort"] = run_ort()
                else:
                    # The same machine runs several times slower or faster
                    # from one minute to the next: each round runs every
                    # variant and ONNX Runtime back to back, with an FMA
                    # probe, and the ratios and shares of the peak are the
                    # medians of the rounds' (times: the rounds' medians).
                    times = {"kernel": [], "generated": [], "noskip": []}
                    if ort_fits:
                        times["ort"] = []
                    for _ in range(PREFILL_ROUNDS):
                        probe = machine.fma_peak(work, threads)
                        for kind in times:
                            if kind == "ort":
                                ms, rss = run_ort()
                            else:
                                out, rss = measured(command(kind), env)
                                ms = p50(out)
                                best = fastest_ms(out)
                                # As a share of this round's probe.
                                best_share = 100 * flops / (best / 1e3) / probe
                                fastest[kind] = max(fastest.get(kind, 0), best_share)
                            times[kind].append((ms, rss))
                        latest = {kind: runs[-1][0] for kind, runs in times.items()}
                        for kind in round_shares:
                            round_shares[kind].append(100 * flops / (latest[kind] / 1e3) / probe)
                        if ort_fits:
                            round_ratios["ort"].append(latest["ort"] / latest["kernel"])
                        round_ratios["generated"].append(latest["generated"] / latest["kernel"])
                        round_ratios["noskip"].append(latest["noskip"] / latest["generated"])
                    summarize(times)
                rows.append((threads, length, decode, flops, results, ort_bytes, floor_ratios,
                             fastest, round_ratios, round_shares))
                print(f"threads {threads}, {'decode' if decode else 'prefill'} {length}: "
                      + ", ".join(f"{k} {v[0]:.2f} ms" for k, v in results.items()),
                      file=sys.stderr)

    print(f"CPU: {machine.cpu_description()}; ONNX Runtime {ort_env.ort_version(python)} "
          "(Python, CPU); f32 FMA peak measured now: "
          + ", ".join(f"{p / 1e9:.0f} GFLOP/s on {t} thread{'s' if t > 1 else ''}"
                      for t, p in peaks.items()) + "; read bandwidth measured now: "
          + ", ".join(f"{b / 1e9:.1f} GB/s on {t} thread{'s' if t > 1 else ''}"
                      for t, b in bandwidths.items())
          + f"; {HEADS} heads x {DIM}, batch 1. A decode's floor is its K and V bytes over "
          "the bandwidth probed right after each of its rounds.\n")
    print("| case | threads | ORT ms (MB) | kernel ms (MB) | generated ms (MB) | "
          "no-skip ms | ORT / kernel | generated / kernel | no-skip / generated | "
          "kernel GFLOP/s (% peak) | generated GFLOP/s (% peak) |")
    print("|" + "---|" * 11)
    for (threads, length, decode, flops, results, ort_bytes, floor_ratios, fastest, round_ratios,
         round_shares) in rows:
        def cell(kind):
            if kind not in results:
                return "n/a" if kind != "ort" else f"not run ({ort_bytes / 1e9:.0f} GB of scores)"
            ms, rss = results[kind]
            return f"{ms:.2f} ({rss / 1e6:.0f})"

        def rate(kind):
            ms = results[kind][0]
            if round_shares[kind]:
                # Prefill: the median of the rounds' shares of their probes.
                share = statistics.median(round_shares[kind])
            else:
                share = 100 * flops / (ms / 1e3) / peaks[threads]
            text = f"{flops / (ms / 1e3) / 1e9:.0f} ({share:.0f}%"
            if kind in fastest:
                text += f"; fastest run {fastest[kind]:.0f}%"
            return text + ")"

        def ratio(kind, numerator, denominator):
            if round_ratios[kind]:
                rounds = round_ratios[kind]
                return (f"{statistics.median(rounds):.2f}x ("
                        + "/".join(f"{r:.2f}" for r in sorted(rounds)) + ")")
            return f"{numerator / denominator:.2f}x"

        kernel = results["kernel"][0]
        generated = results["generated"][0]
        ratio_ort = ratio("ort", results["ort"][0], kernel) if "ort" in results else "n/a"
        noskip = f"{results['noskip'][0]:.2f}" if "noskip" in results else "n/a"
        skip_gain = (ratio("noskip", results["noskip"][0], generated) if "noskip" in results
                     else "n/a")
        if decode:
            floor_ms = kv_bytes(length) / bandwidths[threads] * 1e3
            case = (f"decode over {length} (floor {floor_ms:.2f} ms, kernel at "
                    f"{statistics.median(floor_ratios):.2f}x, rounds "
                    + "/".join(f"{r:.2f}" for r in sorted(floor_ratios)) + ")")
        else:
            case = f"causal prefill {length}"
        print(f"| {case} | {threads} | {cell('ort')} | {cell('kernel')} | {cell('generated')} | "
              f"{noskip} | {ratio_ort} | {ratio('generated', generated, kernel)} | {skip_gain} | "
              f"{rate('kernel')} | {rate('generated')} |")


if __name__ == "__main__":
    main()
