#!/usr/bin/env python3
"""RNN, GRU and LSTM beyond ONNX's own node cases (which are all forward,
default activations): reverse and bidirectional, clip, batch-first layout,
GRU's linear_before_reset, LSTM peepholes with initial states,
sequence_lens, and every activation function ONNX defines (with
activation_alpha/beta), against a numpy implementation of the ONNX
equations; and the refusal of unknown activations.

usage: recurrent_vs_numpy.py BIN_DIR
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import e2e_common as e2e  # noqa: E402

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


DEFAULT_ACTIVATIONS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"],
                       "LSTM": ["Sigmoid", "Tanh", "Tanh"]}
# name -> (alpha default, beta default, function of x, alpha, beta); None: has none.
ACTIVATIONS = {
    "Relu": (None, None, lambda x, a, b: np.maximum(x, 0)),
    "Tanh": (None, None, lambda x, a, b: np.tanh(x)),
    "Sigmoid": (None, None, lambda x, a, b: sigmoid(x)),
    "Affine": (0.0, 0.0, lambda x, a, b: a * x + b),
    "LeakyRelu": (0.01, None, lambda x, a, b: np.where(x >= 0, x, a * x)),
    "ThresholdedRelu": (1.0, None, lambda x, a, b: np.where(x > a, x, 0)),
    "ScaledTanh": (0.0, 0.0, lambda x, a, b: a * np.tanh(b * x)),
    "HardSigmoid": (0.2, 0.5, lambda x, a, b: np.clip(a * x + b, 0, 1)),
    "Elu": (1.0, None, lambda x, a, b: np.where(x >= 0, x, a * (np.exp(x) - 1))),
    "Softsign": (None, None, lambda x, a, b: x / (1 + np.abs(x))),
    "Softplus": (None, None, lambda x, a, b: np.log(1 + np.exp(x))),
}


def activation_functions(names, alphas, betas):
    """Functions of x for `names`, alphas and betas taken in order by the
    functions that have them, defaults after the lists run out."""
    alphas, betas, funcs = list(alphas), list(betas), []
    for name in names:
        da, db, fn = next(v for k, v in ACTIVATIONS.items() if k.lower() == name.lower())
        a = (alphas.pop(0) if alphas else da) if da is not None else 0.0
        bb = (betas.pop(0) if betas else db) if db is not None else 0.0
        funcs.append(lambda x, fn=fn, a=a, bb=bb: fn(x, a, bb))
    return funcs


def reference(op, x, w, r, b, h0, c0, p, lens, direction, clip, lbr, acts=None):
    """ONNX's equations, one direction at a time; x is [seq, batch, input].
    `acts`: the activation functions of every direction, in order."""
    seq, batch, _ = x.shape
    hidden = r.shape[-1]
    dirs = 2 if direction == "bidirectional" else 1
    clipf = (lambda v: np.clip(v, -clip, clip)) if clip else (lambda v: v)
    y = np.zeros((seq, dirs, batch, hidden), np.float64)
    yh = np.zeros((dirs, batch, hidden))
    yc = np.zeros((dirs, batch, hidden))
    per = len(DEFAULT_ACTIVATIONS[op])
    if acts is None:
        acts = activation_functions(DEFAULT_ACTIVATIONS[op] * dirs, [], [])
    for d in range(dirs):
        rev = direction == "reverse" or d == 1
        fa = acts[d * per]
        ga = acts[d * per + 1] if per > 1 else fa
        ha = acts[d * per + 2] if per > 2 else fa
        W, R = w[d].astype(np.float64), r[d].astype(np.float64)
        Wb, Rb = np.split(b[d].astype(np.float64), 2)
        H, C = h0[d].astype(np.float64), c0[d].astype(np.float64)
        steps = range(seq - 1, -1, -1) if rev else range(seq)
        for t in steps:
            xt = x[t].astype(np.float64)
            if op == "RNN":
                Hn = fa(clipf(xt @ W.T + H @ R.T + Wb + Rb))
                Cn = C
            elif op == "LSTM":
                g = xt @ W.T + H @ R.T + Wb + Rb
                gi, go, gf, gc = np.split(g, 4, axis=1)
                pi, po, pf = np.split(p[d].astype(np.float64), 3)
                i = fa(clipf(gi + pi * C))
                f = fa(clipf(gf + pf * C))
                Cn = f * C + i * ga(clipf(gc))
                o = fa(clipf(go + po * Cn))
                Hn = o * ha(Cn)
            else:
                Wz, Wr, Wh = np.split(W, 3)
                Rz, Rr, Rh = np.split(R, 3)
                bz, br, bh = np.split(Wb, 3)
                rbz, rbr, rbh = np.split(Rb, 3)
                z = fa(clipf(xt @ Wz.T + H @ Rz.T + bz + rbz))
                rr = fa(clipf(xt @ Wr.T + H @ Rr.T + br + rbr))
                if lbr:
                    hh = ga(clipf(xt @ Wh.T + rr * (H @ Rh.T + rbh) + bh))
                else:
                    hh = ga(clipf(xt @ Wh.T + (rr * H) @ Rh.T + bh + rbh))
                Hn = (1 - z) * hh + z * H
                Cn = C
            live = (t < lens)[:, None] if lens is not None else np.ones((batch, 1), bool)
            y[t, d] = np.where(live, Hn, 0)
            H = np.where(live, Hn, H)
            C = np.where(live, Cn, C)
        yh[d], yc[d] = H, C
    return y, yh, yc


def case(c, bin_dir, work, name, op, seq=4, batch=3, inp=5, hidden=6, direction="forward",
         clip=None, layout=0, lbr=0, peepholes=False, states=False, with_lens=False,
         activations=None, alphas=(), betas=()):
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    dirs = 2 if direction == "bidirectional" else 1
    g = GATES[op]
    x = rng.standard_normal((seq, batch, inp)).astype(np.float32)
    w = (rng.standard_normal((dirs, g * hidden, inp)) * 0.5).astype(np.float32)
    r = (rng.standard_normal((dirs, g * hidden, hidden)) * 0.5).astype(np.float32)
    b = (rng.standard_normal((dirs, 2 * g * hidden)) * 0.3).astype(np.float32)
    h0 = (rng.standard_normal((dirs, batch, hidden)) if states else np.zeros((dirs, batch, hidden))).astype(np.float32)
    c0 = (rng.standard_normal((dirs, batch, hidden)) if states else np.zeros((dirs, batch, hidden))).astype(np.float32)
    p = (rng.standard_normal((dirs, 3 * hidden)) * 0.3 if peepholes else np.zeros((dirs, 3 * hidden))).astype(np.float32)
    lens = np.array([seq, max(1, seq - 2), 1][:batch], np.int32) if with_lens else None
    inputs = {"X": x if layout == 0 else x.transpose(1, 0, 2).copy(), "W": w, "R": r, "B": b}
    names = ["X", "W", "R", "B", "", "", "", ""]
    if with_lens:
        inputs["L"] = lens
        names[4] = "L"
    if states:
        inputs["H0"] = h0 if layout == 0 else h0.transpose(1, 0, 2).copy()
        names[5] = "H0"
        if op == "LSTM":
            inputs["C0"] = c0 if layout == 0 else c0.transpose(1, 0, 2).copy()
            names[6] = "C0"
    if peepholes:
        inputs["P"] = p
        names[7] = "P"
    while names and names[-1] == "":
        names.pop()
    outputs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    attrs = dict(hidden_size=hidden, direction=direction, layout=layout)
    if clip:
        attrs["clip"] = clip
    if op == "GRU":
        attrs["linear_before_reset"] = lbr
    if activations:
        attrs["activations"] = activations
    if alphas:
        attrs["activation_alpha"] = list(alphas)
    if betas:
        attrs["activation_beta"] = list(betas)
    node = helper.make_node(op, names, outputs, **attrs)
    types = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int32): TensorProto.INT32}
    graph = helper.make_graph(
        [node], name,
        [helper.make_tensor_value_info(k, types[v.dtype], list(v.shape)) for k, v in inputs.items()],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, shape) for o, shape in zip(
            outputs,
            [[seq, dirs, batch, hidden] if layout == 0 else [batch, seq, dirs, hidden]] +
            [[dirs, batch, hidden] if layout == 0 else [batch, dirs, hidden]] * 2)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    path = os.path.join(work, name + ".onnx")
    onnx.save(model, path)
    so = os.path.join(work, name + ".so")
    proc = subprocess.run([os.path.join(bin_dir, "hasten-compile"), path, "-o", so],
                          capture_output=True, text=True)
    if proc.returncode:
        c.check(False, f"{name}: {proc.stderr.strip()[-300:]}")
        return
    out = e2e.run_module(bin_dir, so, inputs, work, name)
    acts = None
    if activations:
        listed = list(activations)
        if len(listed) == len(DEFAULT_ACTIVATIONS[op]) and dirs == 2:
            listed = listed * 2
        acts = activation_functions(listed, alphas, betas)
    want = reference(op, x, w, r, b, h0, c0, p, lens, direction, clip, lbr, acts)
    if layout == 1:
        want = (want[0].transpose(2, 0, 1, 3), want[1].transpose(1, 0, 2),
                want[2].transpose(1, 0, 2))
    worst = 0.0
    for k, o in enumerate(outputs):
        got = np.load(os.path.join(out, o + ".npy"))
        worst = max(worst, float(np.max(np.abs(got - want[k]))))
    c.check(worst < 1e-4, f"{name}: {op} {direction}"
            + (f" {'/'.join(activations)}" if activations else "")
            + f" max |hasten - numpy| = {worst:.1e}")


def main():
    bin_dir = sys.argv[1]
    c = e2e.Checks()
    with tempfile.TemporaryDirectory(prefix="hasten-rnn-") as work:
        for op in ("RNN", "GRU", "LSTM"):
            case(c, bin_dir, work, f"{op.lower()}_reverse", op, direction="reverse")
            case(c, bin_dir, work, f"{op.lower()}_bidirectional", op, direction="bidirectional",
                 states=True)
            case(c, bin_dir, work, f"{op.lower()}_clip_batchfirst", op, clip=0.7, layout=1,
                 direction="bidirectional")
            case(c, bin_dir, work, f"{op.lower()}_lens", op, with_lens=True, states=True)
        case(c, bin_dir, work, "gru_linear_before_reset", "GRU", lbr=1, direction="bidirectional")
        case(c, bin_dir, work, "lstm_peepholes", "LSTM", peepholes=True, states=True,
             direction="bidirectional")
        # Every activation ONNX defines, with alphas and betas taken in order
        # by the functions that have them, defaults after the list runs out.
        case(c, bin_dir, work, "rnn_relu_leaky", "RNN", direction="bidirectional",
             activations=["Relu", "LeakyRelu"], alphas=[0.3], states=True)
        case(c, bin_dir, work, "gru_hardsigmoid_softsign", "GRU",
             activations=["HardSigmoid", "Softsign"], alphas=[0.3], betas=[0.4], states=True)
        case(c, bin_dir, work, "gru_elu_softplus_bidirectional", "GRU",
             direction="bidirectional", activations=["sigmoid", "Elu", "HardSigmoid", "Softplus"],
             alphas=[0.7, 0.3], betas=[0.4], states=True, lbr=1)
        case(c, bin_dir, work, "rnn_affine", "RNN", activations=["Affine"], alphas=[0.5],
             betas=[0.1], states=True)
        case(c, bin_dir, work, "lstm_scaledtanh_thresholded", "LSTM",
             activations=["HardSigmoid", "ScaledTanh", "ThresholdedRelu"],
             alphas=[0.25, 1.5, 0.1], betas=[0.45, 0.8], peepholes=True, states=True)
        case(c, bin_dir, work, "lstm_one_list_for_both_directions", "LSTM",
             direction="bidirectional", activations=["Sigmoid", "Elu", "Softsign"],
             states=True)
        # An unknown activation, a missing Affine alpha, a wrong count: refused.
        for name, attrs, message in (
                ("gru_gelu", dict(activations=["Gelu", "Tanh"]),
                 "unknown activation function 'Gelu'"),
                ("gru_affine_no_alpha", dict(activations=["Affine", "Tanh"]),
                 "activation 'Affine' needs its alpha and beta"),
                ("gru_three", dict(activations=["Sigmoid", "Tanh", "Tanh"]),
                 "activations must name 2 functions")):
            node = helper.make_node("GRU", ["X", "W", "R"], ["Y"], hidden_size=2, **attrs)
            graph = helper.make_graph(
                [node], name,
                [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 1, 3]),
                 helper.make_tensor_value_info("W", TensorProto.FLOAT, [1, 6, 3]),
                 helper.make_tensor_value_info("R", TensorProto.FLOAT, [1, 6, 2])],
                [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 1, 1, 2])])
            path = os.path.join(work, name + ".onnx")
            onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), path)
            proc = subprocess.run([os.path.join(bin_dir, "hasten-compile"), path, "-o",
                                   os.path.join(work, "x.so")], capture_output=True, text=True)
            c.check(proc.returncode == 1 and message in proc.stderr,
                    f"{name} is refused: {proc.stderr.strip()[-160:]}")
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
