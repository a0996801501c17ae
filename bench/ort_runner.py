#!/usr/bin/env python3
"""Times ONNX Runtime (the Python package, CPU) for the benchmarks; runs in
the bench venv (bench/ort_env.py) as a child process, so that its thread pool
never meets hasten's.

  ort_runner.py single MODEL INPUT_NAME INPUT.npy THREADS REPEAT [OUT.npy]
      prints "median_ms <ms>" after warm-up; OUT.npy gets the first output.
  ort_runner.py multi MODEL THREADS REPEAT NAME=INPUT.npy...
      prints "median_ms <ms>" after one warm-up run.
  ort_runner.py decoder MODEL THREADS PREFILL_TOKENS DECODE_PAST REPEAT
      an Optimum-style decoder with past/present, batch 1: prints
      "prefill_ms", "decode_ms" (one token after DECODE_PAST tokens) and
      "greedy" (the argmax of the prefill's last logits, a cross-check).

Sessions use intra_op_num_threads=THREADS, inter_op_num_threads=1,
sequential execution and ORT_ENABLE_ALL, to compare thread for thread.
"""
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort


def session(model, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def timed(sess, feeds, repeat, warmup=2):
    for _ in range(warmup):
        sess.run(None, feeds)
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = sess.run(None, feeds)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), out


def single(model, input_name, input_path, threads, repeat, out_path=None):
    sess = session(model, int(threads))
    ms, out = timed(sess, {input_name: np.load(input_path)}, int(repeat), warmup=3)
    print(f"median_ms {ms}")
    if out_path:
        np.save(out_path, out[0])


def multi(model, threads, repeat, *named_inputs):
    """Inputs as NAME=PATH.npy; prints the median."""
    sess = session(model, int(threads))
    feeds = {}
    for item in named_inputs:
        name, path = item.split("=", 1)
        feeds[name] = np.load(path)
    ms, _ = timed(sess, feeds, int(repeat), warmup=1)
    print(f"median_ms {ms}")


def ids(n, offset):
    return np.array([[(i * 7 + offset) % 50000 + 1 for i in range(n)]], np.int64)


def decoder(model, threads, prefill, past, repeat):
    sess = session(model, int(threads))
    prefill, past, repeat = int(prefill), int(past), int(repeat)
    names = [i.name for i in sess.get_inputs()]
    past_inputs = [i for i in sess.get_inputs() if i.name.startswith("past_key_values.")]
    kv_heads, head_dim = past_inputs[0].shape[1], past_inputs[0].shape[3]
    outputs = [o.name for o in sess.get_outputs()]

    def feeds(tokens, pasts, past_len):
        n = tokens.shape[1]
        f = {"input_ids": tokens}
        if "attention_mask" in names:
            f["attention_mask"] = np.ones((1, past_len + n), np.int64)
        if "position_ids" in names:
            f["position_ids"] = np.arange(past_len, past_len + n, dtype=np.int64)[None]
        f.update(pasts)
        return f

    empty = {p.name: np.zeros((1, kv_heads, 0, head_dim), np.float32) for p in past_inputs}
    prefill_ms, out = timed(sess, feeds(ids(prefill, 0), empty, 0), repeat)
    logits = out[outputs.index("logits")]
    print(f"prefill_ms {prefill_ms}")
    print(f"greedy {int(np.argmax(logits[0, -1]))}")
    run = dict(zip(outputs, sess.run(None, feeds(ids(past, 0), empty, 0))))
    pasts = {p.name: run[p.name.replace("past_key_values.", "present.")] for p in past_inputs}
    decode_ms, _ = timed(sess, feeds(ids(1, 3), pasts, past), max(3 * repeat, 10))
    print(f"decode_ms {decode_ms}")
    # Resident memory while generating (the bench's memory column).
    with open("/proc/self/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    print(f"rss_kb {rss}")


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    {"single": single, "decoder": decoder, "multi": multi}[mode](*args)
