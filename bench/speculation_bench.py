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
1024 learned positions, so the long prompt is 864 bytes by default (plus 128 new tokens); longer
ones (--rapid-bytes) need a pair trained with longer contexts.

  /usr/bin/python3 bench/speculation_bench.py [--pair DIR] [--threads 2]
      [--prompts 8] [--new-tokens 128] [--no-rapid]
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


def compile_pair(build, pair_dir, out, extra=()):
    # The default KV capacity: the 1024 positions the pair's tables hold.
    cmd = [os.path.join(build, "bin", "hasten-compile"), os.path.join(pair_dir, "target.onnx"),
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--pair", default=os.path.expanduser("~/.cache/hasten/spec-pair"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--prompt-bytes", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rapid-bytes", type=int, default=864)
    parser.add_argument("--no-rapid", action="store_true")
    args = parser.parse_args()
    if not os.path.exists(os.path.join(args.pair, "target.onnx")):
        sys.exit(f"no trained pair in {args.pair}: run test/models/train_pair.py first")
    held = open(os.path.join(args.pair, "heldout.txt"), "rb").read()
    step = (len(held) - args.rapid_bytes - args.prompt_bytes) // args.prompts
    prompts = [list(held[i * step:i * step + args.prompt_bytes]) for i in range(args.prompts)]

    rt = hc.Runtime(os.path.join(args.build, "lib"))
    rt.lib.hasten_set_num_threads(args.threads)
    rt.lib.hasten_module_prepare.argtypes = [ctypes.c_void_p]
    with tempfile.TemporaryDirectory(prefix="hasten-spec-bench-") as work:
        path = os.path.join(work, "pair.so")
        compile_pair(args.build, args.pair, path)
        module = rt.load(path)
        rt.check(rt.lib.hasten_module_prepare(module.handle))
        fused_path = os.path.join(work, "fused-pair.so")
        compile_pair(args.build, args.pair, fused_path, ["--spec-k=4"])
        fused = rt.load(fused_path)
        rt.check(rt.lib.hasten_module_prepare(fused.handle))

        print(f"\nCPU: {machine.cpu_description(os.path.join(args.build, 'bin'))}; "
              f"{args.threads} threads; {args.prompts} held-out prompts of "
              f"{args.prompt_bytes} bytes, {args.new_tokens} new tokens, greedy; medians\n")
        # Each prompt runs the target alone, then the mode, back to back, so
        # that both see the same moment of a noisy machine; a mode's ratio is
        # the median over prompts of its speed over the target alone's.
        modes = [(f"draft model, K={k}", "draft", {"k": k}) for k in range(1, 9)]
        modes += [("draft model, K=auto", "draft", {}), ("prompt lookup (n-gram), K=auto", "ngram", {})]
        modes.insert(4, ("draft model, K=4, fused spec_step entry", "draft", {"k": 4, "_fused": 1}))
        rows, alone_rates = [], []
        for label, mode, kw in modes:
            mod = fused if kw.pop("_fused", 0) else module
            rates, ratios, same, drafted, accepted, steps = [], [], True, 0, 0, 0
            for p in prompts:
                want, alone_rate, _ = run(module, p, args.new_tokens, "alone")
                got, rate, ss = run(mod, p, args.new_tokens, mode, **kw)
                alone_rates.append(alone_rate)
                rates.append(rate)
                ratios.append(rate / alone_rate)
                same = same and got == want
                drafted += ss.drafted
                accepted += ss.accepted
                steps += ss.steps
            rows.append((label, statistics.median(rates), statistics.median(ratios),
                         accepted / drafted if drafted else 0.0, drafted / max(1, steps),
                         accepted / max(1, steps), same))
        print("| mode | tokens/s | vs target alone | acceptance | proposed per pass | "
              "accepted per pass | output = target's |")
        print("|---|---|---|---|---|---|---|")
        print(f"| target alone | {statistics.median(alone_rates):.1f} | 1.00x | | | | yes |")
        for label, rate, ratio, acceptance, proposed, mean_len, same in rows:
            print(f"| {label} | {rate:.1f} | {ratio:.2f}x | {acceptance:.1%} | {proposed:.2f} | "
                  f"{mean_len:.2f} | {'yes' if same else 'NO'} |")

        if not args.no_rapid:
            long_prompt = list(held[len(held) - args.rapid_bytes:])
            print(f"\nRAPID: one held-out prompt of {len(long_prompt)} bytes, "
                  f"{args.new_tokens} new tokens, K=auto\n")
            got0, r0, _ = run(module, long_prompt, args.new_tokens, "alone")
            got1, r1, s1 = run(module, long_prompt, args.new_tokens, "draft")
            got2, r2, s2 = run(module, long_prompt, args.new_tokens, "draft",
                               rapid_context=len(long_prompt) // 4, rapid_chunk=32)
            print("| mode | draft reads | tokens/s | vs target alone | acceptance | output = target's |")
            print("|---|---|---|---|---|---|")
            print(f"| target alone | | {r0:.1f} | 1.00x | | yes |")
            for label, got, rate, ss in (("draft, whole context", got1, r1, s1),
                                         ("RAPID, a quarter of it", got2, r2, s2)):
                print(f"| {label} | {ss.draft_context_tokens} | {rate:.1f} | {rate / r0:.2f}x | "
                      f"{ss.accepted / max(1, ss.drafted):.1%} | {'yes' if got == got0 else 'NO'} |")
        fused.free()
        module.free()


if __name__ == "__main__":
    main()
