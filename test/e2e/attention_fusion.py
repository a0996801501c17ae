#!/usr/bin/env python3
"""End to end: attention fusion (--hasten-fuse-attention) changes speed, not
results. For every committed torch export (test/models/torch) and the tiny
decoders of test/models/make_decoder.py, compiles the model with fusion on
and off (--no-fuse-attention), runs both with hasten-run, and checks:

  - fused and unfused logits agree (max |a - b| <= 1e-4 * max |b|);
  - the fused logits match torch's own (the export's .reference.npz), for
    the exports, and float64 numpy for a Range/Less causal attention;
  - attention fused where it should: the fused module calls the runtime's
    attention kernel once per layer for the positive exports and the
    decoders, and never for the neg_* exports (whose softmax is not
    attention's).

usage: attention_fusion.py BUILD_BIN_DIR
Prints one line per check and '<n> passed, <m> failed'; exits 1 on failure.
"""
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "models")
sys.path.insert(0, MODELS)
sys.path.insert(0, HERE)
import e2e_common as e2e  # noqa: E402
import make_decoder as md  # noqa: E402

REL_TOL = 1e-4
# Attention layers in each positive model.
EXPECTED_ATTENTIONS = {"gpt2_masked_fill": 1, "hf_gpt2_padded": 1, "llama_gqa": 1,
                       "whisper_split_scale": 1}


def compile_module(bin_dir, model, out, *flags):
    proc = subprocess.run([os.path.join(bin_dir, "hasten-compile"), model, "-o", out,
                           *flags], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"hasten-compile {os.path.basename(model)} {' '.join(flags)}: "
                           f"{proc.stderr.strip()}")
    return proc.stderr


def relative_error(actual, expected):
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-30))


def range_less_model(path):
    """Attention with the causal mask built as exporters of torch.arange
    comparisons write it: Where(Less(Unsqueeze(Range), Unsqueeze(Range)), -inf,
    Q K^T * scale). Inputs q, k, v [1, 2, S, 8]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    f = TensorProto.FLOAT
    nodes = [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
             helper.make_node("MatMul", ["q", "kt"], ["qk"]),
             helper.make_node("Mul", ["qk", "scale"], ["scores"]),
             helper.make_node("Shape", ["q"], ["shape"]),
             helper.make_node("Gather", ["shape", "two"], ["s"], axis=0),
             helper.make_node("Range", ["zero", "s", "one"], ["r"]),
             helper.make_node("Unsqueeze", ["r", "axis1"], ["rows"]),
             helper.make_node("Unsqueeze", ["r", "axis0"], ["cols"]),
             helper.make_node("Less", ["rows", "cols"], ["hidden"]),
             helper.make_node("Where", ["hidden", "ninf", "scores"], ["masked"]),
             helper.make_node("Softmax", ["masked"], ["p"], axis=-1),
             helper.make_node("MatMul", ["p", "v"], ["logits"])]
    inits = [numpy_helper.from_array(np.array(8 ** -0.5, np.float32), "scale"),
             numpy_helper.from_array(np.array(2, np.int64), "two"),
             numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array(1, np.int64), "one"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1"),
             numpy_helper.from_array(np.array([0], np.int64), "axis0"),
             numpy_helper.from_array(np.array(-np.inf, np.float32), "ninf")]
    shape = [1, 2, "S", 8]
    graph = helper.make_graph(nodes, "range_less", [helper.make_tensor_value_info(n, f, shape)
                                                    for n in ("q", "k", "v")],
                              [helper.make_tensor_value_info("logits", f, shape)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def cases(work):
    """(name, onnx path, inputs, torch logits or None, compile flags)."""
    for path in sorted(glob.glob(os.path.join(MODELS, "torch", "*.onnx"))):
        name = os.path.basename(path)[:-len(".onnx")]
        ref = np.load(path[:-len(".onnx")] + ".reference.npz")
        inputs = {k: ref[k] for k in ref.files if k != "logits"}
        yield name, path, inputs, ref["logits"], []
    rng = np.random.default_rng(0)
    path = os.path.join(work, "range_less.onnx")
    range_less_model(path)
    qkv = {n: rng.standard_normal((1, 2, 11, 8)).astype(np.float32) for n in ("q", "k", "v")}
    s = qkv["q"].astype(np.float64) @ qkv["k"].astype(np.float64).transpose(0, 1, 3, 2) / np.sqrt(8)
    s = np.where(np.arange(11)[None, :] > np.arange(11)[:, None], -np.inf, s)
    p = np.exp(s - s.max(-1, keepdims=True))
    EXPECTED_ATTENTIONS["range_less"] = 1
    yield "range_less", path, qkv, (p / p.sum(-1, keepdims=True)) @ qkv["v"], []
    for preset in ("gpt2-tiny", "llama-tiny"):
        cfg = md.Config(**md.PRESETS[preset])
        path = os.path.join(work, preset + ".onnx")
        subprocess.run([sys.executable, os.path.join(MODELS, "make_decoder.py"), "--preset",
                        preset, "-o", path], check=True, capture_output=True)
        past, seq = 3, 5
        inputs = {"input_ids": rng.integers(0, cfg.vocab, (1, seq)).astype(np.int64),
                  "attention_mask": np.ones((1, past + seq), np.int64),
                  "position_ids": np.arange(past, past + seq, dtype=np.int64)[None]}
        for i in range(cfg.layers):
            for kind in ("key", "value"):
                inputs[f"past_key_values.{i}.{kind}"] = rng.standard_normal(
                    (1, cfg.kv_heads, past, cfg.head_dim)).astype(np.float32)
        EXPECTED_ATTENTIONS[preset] = cfg.layers
        yield preset, path, inputs, None, ["--no-decoder-entries"]


def main():
    bin_dir = sys.argv[1]
    passed = failed = 0

    def report(ok, what):
        nonlocal passed, failed
        print(("PASS " if ok else "FAIL ") + what)
        passed += ok
        failed += not ok

    with tempfile.TemporaryDirectory() as work:
        for name, path, inputs, reference, flags in cases(work):
            try:
                mlir = os.path.join(work, name + ".mlir")
                compile_module(bin_dir, path, mlir, "--emit=mlir", *flags)
                with open(mlir) as f:
                    calls = f.read().count("call @hasten_rt_attention_f32(")
                expected = EXPECTED_ATTENTIONS.get(name, 0)
                report(calls == expected,
                       f"{name}: {calls} attention kernel calls, expected {expected}")
                fused = os.path.join(work, name + ".so")
                unfused = os.path.join(work, name + ".unfused.so")
                compile_module(bin_dir, path, fused, *flags)
                compile_module(bin_dir, path, unfused, "--no-fuse-attention", *flags)
                a = np.load(os.path.join(e2e.run_module(bin_dir, fused, inputs, work,
                                                        name + ".fused"), "logits.npy"))
                b = np.load(os.path.join(e2e.run_module(bin_dir, unfused, inputs, work,
                                                        name + ".unfused"), "logits.npy"))
                err = relative_error(a, b)
                report(err <= REL_TOL, f"{name}: fused vs unfused logits, rel err {err:.2e}")
                if reference is not None:
                    err = relative_error(a, reference)
                    report(err <= REL_TOL, f"{name}: fused vs reference logits, rel err {err:.2e}")
            except RuntimeError as e:
                report(False, f"{name}: {e}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
