#!/usr/bin/env python3
"""End to end: builds the tiny GPT-2-style and Llama-style decoders, compiles
them with hasten-compile, runs a prefill (empty past) and then a one-token
decode step on the returned presents with hasten-run, and compares logits
and presents with the numpy reference in test/models/make_decoder.py.

usage: decoder_vs_numpy.py BUILD_BIN_DIR [--compile-flag FLAG]...
Prints one line per check and '<n> passed, <m> failed'; exits 1 on failure.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "models"))
import e2e_common as e2e  # noqa: E402
import make_decoder as md  # noqa: E402

REL_TOL = 1e-4


def run_step(bin_dir, module, cfg, work, ids, past, positions, tag):
    inputs = {"input_ids": ids,
              "attention_mask": np.ones((1, positions[-1] + 1), np.int64),
              "position_ids": np.asarray(positions, np.int64)[None]}
    for i in range(cfg.layers):
        inputs[f"past_key_values.{i}.key"] = past[i][0].astype(np.float32)
        inputs[f"past_key_values.{i}.value"] = past[i][1].astype(np.float32)
    out_dir = e2e.run_module(bin_dir, module, inputs, work, tag)
    logits = np.load(os.path.join(out_dir, "logits.npy"))
    presents = [(np.load(os.path.join(out_dir, f"present.{i}.key.npy")),
                 np.load(os.path.join(out_dir, f"present.{i}.value.npy")))
                for i in range(cfg.layers)]
    return logits, presents


def rel_err(actual, expected):
    return float(np.max(np.abs(actual - expected)) / (np.max(np.abs(expected)) + 1e-30))


def main():
    args = e2e.parse_args("bin_dir")
    bin_dir = args.bin_dir
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="hasten-e2e-") as work:
        for preset, cfg, weights, onnx_path in e2e.decoders(work):
            module = os.path.join(work, preset + ".so")
            subprocess.run([os.path.join(bin_dir, "hasten-compile"), onnx_path, "-o", module]
                           + args.compile_flag, check=True)
            prompt = np.array([[1, 17, 42, 99, 5, 200, 3]], np.int64)
            empty = [(np.zeros((1, cfg.kv_heads, 0, cfg.head_dim)),) * 2] * cfg.layers
            checks = []
            logits, presents = run_step(bin_dir, module, cfg, work, prompt, empty,
                                        list(range(prompt.shape[1])), preset + "-prefill")
            ref_logits, ref_presents = md.reference(cfg, weights, prompt)
            checks.append(("prefill logits", rel_err(logits, ref_logits)))
            checks.append(("prefill present keys", max(rel_err(p[0], r[0]) for p, r in
                                                       zip(presents, ref_presents))))
            checks.append(("prefill present values", max(rel_err(p[1], r[1]) for p, r in
                                                         zip(presents, ref_presents))))
            # One decode step on hasten's own presents, with the greedy token.
            token = np.array([[int(np.argmax(logits[0, -1]))]], np.int64)
            checks.append(("prefill greedy token", 0.0 if token[0, 0] == np.argmax(ref_logits[0, -1]) else 1.0))
            P = prompt.shape[1]
            logits2, presents2 = run_step(bin_dir, module, cfg, work, token, presents, [P],
                                          preset + "-decode")
            ref_logits2, ref_presents2 = md.reference(cfg, weights, token, past=ref_presents)
            checks.append(("decode logits at past 7", rel_err(logits2, ref_logits2)))
            # The decode presents: the past passed through, then the new token.
            for kind, index in (("keys", 0), ("values", 1)):
                shapes_ok = all(p[index].shape == r[index].shape
                                for p, r in zip(presents2, ref_presents2))
                checks.append((f"decode present {kind} (past 7 + 1 token)",
                               max(rel_err(p[index], r[index]) for p, r in
                                   zip(presents2, ref_presents2)) if shapes_ok else 1.0))
            for name, err in checks:
                ok = err <= REL_TOL
                passed += ok
                failed += not ok
                print(f"{'ok  ' if ok else 'FAIL'} {preset}: {name}: relative error {err:.2e}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
