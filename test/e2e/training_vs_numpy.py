#!/usr/bin/env python3
"""The training-mode ops hasten compiles, beyond ONNX's own cases (which
start every optimizer at T = 0 or leave the regularizers at 0), against
numpy implementations of the operator specifications: Adagrad, Momentum
(standard and Nesterov) and Adam at T = 0 and T > 0 with decay and norm
coefficients over several tensors; BatchNormalization in training mode
(batch statistics, running means with a given momentum) on a 3-D input;
Dropout in training mode with ratio 0 (everything kept) and the refusal of
another ratio.

usage: training_vs_numpy.py BIN_DIR
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import e2e_common as e2e  # noqa: E402

F = TensorProto.FLOAT
TRAINING = "ai.onnx.preview.training"


def adagrad(r, t, x, g, h, decay, eps, norm):
    rate = r / (1 + t * decay)
    g = norm * x + g
    h = h + g * g
    return x - rate * g / (np.sqrt(h) + eps), h


def momentum(r, t, x, g, v, alpha, beta, norm, mode):
    g = norm * x + g
    v = alpha * v + (beta if t > 0 else 1.0) * g
    return (x - r * v if mode == "standard" else x - r * (g + alpha * v)), v


def adam(r, t, x, g, v, h, alpha, beta, eps, norm, post):
    g = norm * x + g
    v = alpha * v + (1 - alpha) * g
    h = beta * h + (1 - beta) * g * g
    rate = r * np.sqrt(1 - beta ** t) / (1 - alpha ** t) if t > 0 else r
    return (1 - post) * (x - rate * (v / (np.sqrt(h) + eps))), v, h


def optimizer_cases(c, bin_dir, work):
    rng = np.random.default_rng(6)
    shapes = [(3,), (2, 4)]
    xs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    gs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    vs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    hs = [np.abs(rng.standard_normal(s)).astype(np.float32) for s in shapes]
    cases = [
        ("adagrad", "Adagrad", dict(decay_factor=0.3, epsilon=1e-3, norm_coefficient=0.01),
         [xs, gs, hs],
         lambda r, t, a, i: adagrad(r, t, *[grp[i] for grp in a], 0.3, 1e-3, 0.01)),
        ("momentum", "Momentum", dict(alpha=0.8, beta=0.6, mode="standard",
                                      norm_coefficient=0.02), [xs, gs, vs],
         lambda r, t, a, i: momentum(r, t, *[grp[i] for grp in a], 0.8, 0.6, 0.02, "standard")),
        ("nesterov", "Momentum", dict(alpha=0.7, beta=0.5, mode="nesterov",
                                      norm_coefficient=0.0), [xs, gs, vs],
         lambda r, t, a, i: momentum(r, t, *[grp[i] for grp in a], 0.7, 0.5, 0.0, "nesterov")),
        ("adam", "Adam", dict(alpha=0.85, beta=0.95, epsilon=1e-4, norm_coefficient=0.01,
                              norm_coefficient_post=0.05), [xs, gs, vs, hs],
         lambda r, t, a, i: adam(r, t, *[grp[i] for grp in a], 0.85, 0.95, 1e-4, 0.01, 0.05)),
    ]
    for name, op, attrs, groups, reference in cases:
        n = len(shapes)
        letters = (["X", "G", "V", "H"] if op == "Adam"
                   else ["X", "G", "H" if op == "Adagrad" else "V"])
        ins = ["R", "T"] + [f"{letter}{i}" for letter in letters for i in range(n)]
        outs = [f"{letter}{i}_new" for letter in [letters[0]] + letters[2:] for i in range(n)]
        node = helper.make_node(op, ins, outs, domain=TRAINING, **attrs)
        inputs = {"R": np.array(0.1, np.float32), "T": np.array(0, np.int64)}
        for letter, group in zip(letters, groups):
            for i, value in enumerate(group):
                inputs[f"{letter}{i}"] = value
        compiled = e2e.compile_node(c, bin_dir, work, name, node, inputs,
                                    [(o, F, list(shapes[k % n])) for k, o in enumerate(outs)],
                                    [(TRAINING, 1)])
        if not compiled:
            continue
        so = compiled[1]
        for t in (0, 3):
            run_inputs = dict(inputs, T=np.array(t, np.int64))
            out = e2e.run_module(bin_dir, so, run_inputs, work, f"{name}_{t}")
            worst = 0.0
            for i in range(n):
                want = reference(0.1, t, [[v.astype(np.float64) for v in grp] for grp in groups],
                                 i)
                for k, w in enumerate(want):
                    got = np.load(os.path.join(out, outs[k * n + i] + ".npy"))
                    worst = max(worst, float(np.max(np.abs(got - w) / (np.abs(w) + 1e-3))))
            c.check(worst < 2e-5, f"{name} at T = {t}, {n} tensors: max rel err {worst:.1e}")


def batchnorm_case(c, bin_dir, work):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    scale = rng.standard_normal(3).astype(np.float32)
    bias = rng.standard_normal(3).astype(np.float32)
    mean = rng.standard_normal(3).astype(np.float32)
    var = np.abs(rng.standard_normal(3)).astype(np.float32)
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv"],
                            training_mode=1, momentum=0.7, epsilon=1e-3)
    inputs = {"x": x, "s": scale, "b": bias, "m": mean, "v": var}
    compiled = e2e.compile_node(c, bin_dir, work, "bn_training", node, inputs,
                                [("y", F, [4, 3, 5]), ("rm", F, [3]), ("rv", F, [3])], 15)
    if not compiled:
        return
    got, ort = e2e.run_with_ort(bin_dir, work, compiled, inputs, ["y", "rm", "rv"], "bn")
    x64 = x.astype(np.float64)
    batch_mean, batch_var = x64.mean(axis=(0, 2)), x64.var(axis=(0, 2))
    y = ((x64 - batch_mean[None, :, None]) / np.sqrt(batch_var[None, :, None] + 1e-3)
         * scale[None, :, None] + bias[None, :, None])
    want = [y, mean * 0.7 + batch_mean * 0.3, var * 0.7 + batch_var * 0.3]
    worst = max(float(np.max(np.abs(g - w))) for g, w in zip(got, want))
    ort_worst = None if ort is None else max(float(np.max(np.abs(o - w)))
                                             for o, w in zip(ort, want))
    c.check(worst < 1e-5 and (ort_worst is None or ort_worst < 1e-5),
            f"BatchNormalization training mode, momentum 0.7: max |hasten - numpy| = {worst:.1e}"
            + ("" if ort_worst is None else f", |ONNX Runtime - numpy| = {ort_worst:.1e}"))


def dropout_cases(c, bin_dir, work):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    node = helper.make_node("Dropout", ["x", "ratio", "training"], ["y", "mask"])
    inputs = {"x": x}
    graph_inputs = dict(inputs)
    for name, ratio, expect_ok in (("dropout_ratio0", 0.0, True), ("dropout_ratio_half", 0.5,
                                                                    False)):
        graph = helper.make_graph(
            [node], name, [helper.make_tensor_value_info("x", F, [3, 4])],
            [helper.make_tensor_value_info("y", F, [3, 4]),
             helper.make_tensor_value_info("mask", TensorProto.BOOL, [3, 4])],
            [numpy_helper.from_array(np.array(ratio, np.float32), "ratio"),
             numpy_helper.from_array(np.array(True), "training")])
        path = os.path.join(work, name + ".onnx")
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
        so = os.path.join(work, name + ".so")
        proc = subprocess.run([os.path.join(bin_dir, "hasten-compile"), path, "-o", so],
                              capture_output=True, text=True)
        if not expect_ok:
            c.check(proc.returncode == 1 and "draws a random mask" in proc.stderr,
                    f"{name} is refused: {proc.stderr.strip()[-160:]}")
            continue
        if proc.returncode:
            c.check(False, f"{name}: {proc.stderr.strip()[-300:]}")
            continue
        out = e2e.run_module(bin_dir, so, graph_inputs, work, name)
        y, mask = np.load(os.path.join(out, "y.npy")), np.load(os.path.join(out, "mask.npy"))
        c.check(np.array_equal(y, x) and mask.dtype == np.bool_ and mask.all(),
                f"{name}: output = input, mask all true")


def main():
    bin_dir = sys.argv[1]
    c = e2e.Checks()
    with tempfile.TemporaryDirectory(prefix="hasten-training-") as work:
        optimizer_cases(c, bin_dir, work)
        batchnorm_case(c, bin_dir, work)
        dropout_cases(c, bin_dir, work)
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
