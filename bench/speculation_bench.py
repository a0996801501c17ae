#!/usr/bin/env python3
"""Speculative decoding on a trained pair: tokens/s of speculative greedy
generation against the same compiled target generating alone, in the same
run, on held-out prompts, with acceptance rate, mean accepted length and
whether the output is identical to the target's (each prompt runs the
target alone right before each mode, and ratios are medians of the
per-prompt ratios: the machines are noisy).

The pair comes from test/models/train_pair.py (a byte-level 8-layer d=512
target and a 2-layer d=256 draft, trained on this machine's license texts;
cached in ~/.cache/hasten/spec-pair). Rows: the target alone; a draft model
with K = 1..8 and auto; prompt lookup (n-gram); then, on one long held-out
prompt, the target alone, the draft reading the whole context, and RAPID
(the draft reading a BM25-selected quarter of it). The trained pair has
1024 learned positions, so that long prompt is 864 bytes (plus 128 new
tokens). With target-long.onnx in the pair's folder (train_pair.py
--long-target-minutes: the target with 8448 positions), the long prompts
are 8192 bytes instead, read whole by the target; the 1024-position draft
reads either their last bytes or RAPID's BM25-chosen chunks, as many as
leave room for the new tokens.

  /usr/bin/python3 bench/speculation_bench.py [--pair DIR] [--threads 2]
      [--prompts 8] [--new-tokens 128] [--rapid-prompts 3] [--no-rapid]
"""
import argparse
import ctypes
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "e2e"))
sys.path.insert(0, HERE)
import hasten_ctypes as hc  # noqa: E402
import machine  # noqa: E402


def compile_pair(build, pair_dir, out, extra=(), target="target.onnx"):
    # The default KV capacity: the 1024 positions the pair's tables hold.
    cmd = [os.path.join(build, "bin", "hasten-compile"), os.path.join(pair_dir, target),
           "--draft", os.path.join(pair_dir, "draft.onnx"), "-o", out] + list(extra)
    print("compiling:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def run(module, prompt, new_tokens, mode, **kw):
    """(generated tokens, decode tokens/s, speculation stats or None)."""
    target = module.sequence()
    draft = module.sequence(model="draft") if mode == "draft" else None
    got, st, ss, status, error = target.generate(prompt, new_tokens, draft=draft,
                                                 speculative=mode != "alone", **kw)
    if status:
        raise RuntimeError(error)
    target.free()
    if draft is not None:
        draft.free()
    rate = (st.generated_tokens - 1) / st.decode_seconds if st.decode_seconds > 0 else 0.0
    return got, rate, ss


def interleaved(module, mode_module, prompts, new_tokens, mode, kw, alone_rates):
    """Each prompt runs the target alone, then the mode, back to back, so
    that both see the same moment of a noisy machine. Returns the mode's
    median tokens/s, the median over prompts of its speed over the target
    alone's, whether every output was the target's, and the speculation
    totals (drafted, accepted, steps, the last draft context)."""
    rates, ratios, same, drafted, accepted, steps, context = [], [], True, 0, 0, 0, 0
    for p in prompts:
        want, alone_rate, _ = run(module, p, new_tokens, "alone")
        got, rate, ss = run(mode_module, p, new_tokens, mode, **kw)
        alone_rates.append(alone_rate)
        rates.append(rate)
        ratios.append(rate / alone_rate)
        same = same and got == want
        drafted += ss.drafted
        accepted += ss.accepted
        steps += ss.steps
        context = ss.draft_context_tokens
    return (statistics.median(rates), statistics.median(ratios), same,
            (drafted, accepted, steps, context))


# RAPID's long prompts with target-long.onnx: 8192 bytes, and the 8448
# positions it knows leave room for 256 new tokens.
LONG_PROMPT_BYTES = 8192
DRAFT_POSITIONS = 1024


def rapid(args, rt, work, module, long_prompts, long_target):
    """The RAPID table: each long prompt runs the target alone right before
    each mode; ratios are medians of the per-prompt ratios."""
    if long_target:
        path = os.path.join(work, "long-pair.so")
        # The target's cache holds its 8448 positions; the draft's follows it
        # down to the 1024 the draft knows.
        compile_pair(args.build, args.pair, path, ["--kv-capacity=8448"], target="target-long.onnx")
        module = rt.load(path)
        rt.check(rt.lib.hasten_module_prepare(module.handle))
        # What the draft may read: its positions less the new tokens and a
        # step's proposals.
        budget = DRAFT_POSITIONS - args.new_tokens - 32
        modes = [(f"draft, the last {budget} bytes", {"rapid_context": budget,
                                                       "rapid_chunk": budget}),
                 (f"RAPID, {budget} bytes: BM25-chosen 64-byte chunks and the last 64",
                  {"rapid_context": budget, "rapid_chunk": 64})]
    else:
        budget = args.rapid_bytes // 4
        modes = [("draft, whole context", {}),
                 ("RAPID, a quarter of it", {"rapid_context": budget, "rapid_chunk": 32})]
    print(f"\nRAPID: {len(long_prompts)} held-out prompts of {args.rapid_bytes} bytes, "
          f"{args.new_tokens} new tokens, greedy, K=auto"
          f"{' (the 8448-position target, target-long.onnx)' if long_target else ''}; medians\n")
    alone_rates, rows = [], []
    for label, kw in modes:
        rate, ratio, same, (drafted, accepted, _, context) = interleaved(
            module, module, long_prompts, args.new_tokens, "draft", kw, alone_rates)
        rows.append((label, context, rate, ratio, accepted / max(1, drafted), same))
    print("| mode | draft reads | tokens/s | vs target alone | acceptance | output = target's |")
    print("|---|---|---|---|---|---|")
    print(f"| target alone | | {statistics.median(alone_rates):.1f} | 1.00x | | yes |")
    for label, context, rate, ratio, acceptance, same in rows:
        print(f"| {label} | {context} | {rate:.1f} | {ratio:.2f}x | {acceptance:.1%} | "
              f"{'yes' if same else 'NO'} |")
    if long_target:
        module.free()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--pair", default=os.path.expanduser("~/.cache/hasten/spec-pair"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--prompt-bytes", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rapid-bytes", type=int, default=0,
                        help="long prompt bytes (default: 8192 with target-long.onnx, else 864)")
    parser.add_argument("--rapid-prompts", type=int, default=3)
    parser.add_argument("--no-rapid", action="store_true")
    parser.add_argument("--only-rapid", action="store_true")
    args = parser.parse_args()
    if not os.path.exists(os.path.join(args.pair, "target.onnx")):
        sys.exit(f"no trained pair in {args.pair}: run test/models/train_pair.py first")
    long_target = os.path.exists(os.path.join(args.pair, "target-long.onnx"))
    if not args.rapid_bytes:
        args.rapid_bytes = LONG_PROMPT_BYTES if long_target else 864
    held = open(os.path.join(args.pair, "heldout.txt"), "rb").read()
    # The short prompts from the first part of the held-out text, the long
    # ones from the rest.
    long_span = args.rapid_bytes * args.rapid_prompts
    step = (len(held) - long_span - args.prompt_bytes) // args.prompts
    prompts = [list(held[i * step:i * step + args.prompt_bytes]) for i in range(args.prompts)]
    long_prompts = [list(held[len(held) - (i + 1) * args.rapid_bytes:
                              len(held) - i * args.rapid_bytes]) for i in range(args.rapid_prompts)]

    rt = hc.Runtime(os.path.join(args.build, "lib"))
    rt.lib.hasten_set_num_threads(args.threads)
    rt.lib.hasten_module_prepare.argtypes = [ctypes.c_void_p]
    with tempfile.TemporaryDirectory(prefix="hasten-spec-bench-") as work:
        path = os.path.join(work, "pair.so")
        compile_pair(args.build, args.pair, path)
        module = rt.load(path)
        rt.check(rt.lib.hasten_module_prepare(module.handle))
        print(f"\nCPU: {machine.cpu_description(os.path.join(args.build, 'bin'))}; "
              f"{args.threads} threads")
        if not args.only_rapid:
            print(f"\n{args.prompts} held-out prompts of {args.prompt_bytes} bytes, "
                  f"{args.new_tokens} new tokens, greedy; medians\n")
            fused_path = os.path.join(work, "fused-pair.so")
            compile_pair(args.build, args.pair, fused_path, ["--spec-k=4"])
            fused = rt.load(fused_path)
            rt.check(rt.lib.hasten_module_prepare(fused.handle))

            modes = [(f"draft model, K={k}", "draft", {"k": k}) for k in range(1, 9)]
            modes += [("draft model, K=auto", "draft", {}), ("prompt lookup (n-gram), K=auto", "ngram", {})]
            modes.insert(4, ("draft model, K=4, fused spec_step entry", "draft", {"k": 4, "_fused": 1}))
            rows, alone_rates = [], []
            for label, mode, kw in modes:
                mod = fused if kw.pop("_fused", 0) else module
                rate, ratio, same, (drafted, accepted, steps, _) = interleaved(
                    module, mod, prompts, args.new_tokens, mode, kw, alone_rates)
                rows.append((label, rate, ratio, accepted / drafted if drafted else 0.0,
                             drafted / max(1, steps), accepted / max(1, steps), same))
            print("| mode | tokens/s | vs target alone | acceptance | proposed per pass | "
                  "accepted per pass | output = target's |")
            print("|---|---|---|---|---|---|---|")
            print(f"| target alone | {statistics.median(alone_rates):.1f} | 1.00x | | | | yes |")
            for label, rate, ratio, acceptance, proposed, mean_len, same in rows:
                print(f"| {label} | {rate:.1f} | {ratio:.2f}x | {acceptance:.1%} | {proposed:.2f} | "
                      f"{mean_len:.2f} | {'yes' if same else 'NO'} |")
            fused.free()

        if not args.no_rapid:
            rapid(args, rt, work, module, long_prompts, long_target)
        module.free()


if __name__ == "__main__":
    main()
