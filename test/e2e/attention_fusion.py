#!/usr/bin/env python3
"""End to end: attention fusion (--hasten-fuse-attention) changes speed, not
results. For every committed torch export (test/models/torch and, from
torch.onnx's dynamo exporter, test/models/dynamo), every Optimum export of a
Hugging Face decoder (test/models/optimum, opset 18) and
the tiny decoders of test/models/make_decoder.py, compiles the model with
fusion on and off (--no-fuse-attention), runs both with hasten-run, and
checks:

  - fused and unfused logits agree (max |a - b| <= 1e-4 * max |b|);
  - the fused logits match torch's own (the export's .reference.npz), for
    the exports, and float64 numpy for a Range/Less causal attention (also
    in bf16, which fuses too and computes in f32: compared at bf16's
    precision, 1e-2 of the largest value);
  - attention fused where it should: the fused module calls the runtime's
    attention kernel once per layer for the positive exports and the
    decoders, and never for the neg_* exports (whose softmax is not
    attention's);
  - for the Optimum exports, greedy generation through the fused prefill
    and decode entries (`hasten-run --generate`) gives transformers' own
    greedy tokens.

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
# Attention kernel calls in each positive model: one per layer, two for the
# Optimum exports (causal with a padding mask, and the whole mask, behind
# the run-time test that the cache positions start at kv_len - q_len).
EXPECTED_ATTENTIONS = {"gpt2_masked_fill": 1, "hf_gpt2_padded": 1, "llama_gqa": 1,
                       "whisper_split_scale": 1, "gpt2": 4, "llama": 4, "qwen2": 4,
                       "dynamo_llama": 2}


def compile_module(bin_dir, model, out, *flags):
    proc = subprocess.run([os.path.join(bin_dir, "hasten-compile"), model, "-o", out,
                           *flags], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"hasten-compile {os.path.basename(model)} {' '.join(flags)}: "
                           f"{proc.stderr.strip()}")
    return proc.stderr


def relative_error(actual, expected):
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-30))


def load_logits(out_dir):
    array = np.load(os.path.join(out_dir, "logits.npy"))
    if array.dtype.kind == "V":  # bfloat16, written as 2-byte records
        return e2e.bf16_values(array.view(np.uint16))
    return array


def range_less_model(path, bf16=False):
    """Attention with the causal mask built as exporters of torch.arange
    comparisons write it: Where(Less(Unsqueeze(Range), Unsqueeze(Range)), -inf,
    Q K^T * scale). Inputs q, k, v [1, 2, S, 8] (bfloat16 with `bf16`)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    f = TensorProto.BFLOAT16 if bf16 else TensorProto.FLOAT

    def scalar(value, name):
        if not bf16:
            return numpy_helper.from_array(np.array(value, np.float32), name)
        return helper.make_tensor(name, f, [], [value])  # rounded to bfloat16 by onnx
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
    inits = [scalar(8 ** -0.5, "scale"),
             numpy_helper.from_array(np.array(2, np.int64), "two"),
             numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array(1, np.int64), "one"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1"),
             numpy_helper.from_array(np.array([0], np.int64), "axis0"),
             scalar(-np.inf, "ninf")]
    shape = [1, 2, "S", 8]
    graph = helper.make_graph(nodes, "range_less_bf16" if bf16 else "range_less",
                              [helper.make_tensor_value_info(n, f, shape)
                                                    for n in ("q", "k", "v")],
                              [helper.make_tensor_value_info("logits", f, shape)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def causal_reference(q, k, v):
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    n = q.shape[2]
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[3])
    s = np.where(np.arange(n)[None, :] > np.arange(n)[:, None], -np.inf, s)
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ v


def cases(work):
    """(name, onnx path, inputs, torch logits or None, compile flags,
    tolerance against the reference and between fused and unfused)."""
    exports = [(path, os.path.basename(path)[:-len(".onnx")])
               for path in sorted(glob.glob(os.path.join(MODELS, "torch", "*.onnx")))]
    exports += [(path, "dynamo_" + os.path.basename(path)[:-len(".onnx")])
                for path in sorted(glob.glob(os.path.join(MODELS, "dynamo", "*.onnx")))]
    for path, name in exports:
        ref = np.load(path[:-len(".onnx")] + ".reference.npz")
        inputs = {k: ref[k] for k in ref.files if k != "logits"}
        yield name, path, inputs, ref["logits"], [], REL_TOL
    # Optimum's decoders, through their main entry (past and mask as inputs).
    for path in sorted(glob.glob(os.path.join(MODELS, "optimum", "*.onnx"))):
        name = os.path.basename(path)[:-len(".onnx")]
        ref = np.load(path[:-len(".onnx")] + ".reference.npz")
        inputs = {k: ref[k] for k in ref.files if k not in ("logits", "prompt", "greedy")}
        yield name, path, inputs, ref["logits"], ["--no-decoder-entries"], REL_TOL
    rng = np.random.default_rng(0)
    path = os.path.join(work, "range_less.onnx")
    range_less_model(path)
    qkv = {n: rng.standard_normal((1, 2, 11, 8)).astype(np.float32) for n in ("q", "k", "v")}
    EXPECTED_ATTENTIONS["range_less"] = 1
    yield "range_less", path, qkv, causal_reference(**qkv), [], REL_TOL
    # The same in bf16: fused (computing in f32), the reference computed on
    # the bf16 inputs; the unfused module computes in bf16 throughout.
    path = os.path.join(work, "range_less_bf16.onnx")
    range_less_model(path, bf16=True)
    bits = {n: e2e.bf16_bits(x) for n, x in qkv.items()}
    EXPECTED_ATTENTIONS["range_less_bf16"] = 1
    yield ("range_less_bf16", path, bits,
           causal_reference(**{n: e2e.bf16_values(b) for n, b in bits.items()}), [], 1e-2)
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
        yield preset, path, inputs, None, ["--no-decoder-entries"], REL_TOL


def check_generation(bin_dir, path, work):
    """Greedy tokens of the compiled decoder (prefill and decode entries,
    attention fused) against transformers' generate()."""
    ref = np.load(path[:-len(".onnx")] + ".reference.npz")
    module = os.path.join(work, os.path.basename(path)[:-len(".onnx")] + ".generate.so")
    compile_module(bin_dir, path, module)
    proc = subprocess.run([os.path.join(bin_dir, "hasten-run"), module, "--generate",
                           "--prompt-ids", ",".join(map(str, ref["prompt"])),
                           "--max-new-tokens", str(len(ref["greedy"])), "--ignore-eos",
                           "--print-ids", "--quiet"], capture_output=True, text=True)
    if proc.returncode or "ids:" not in proc.stdout:
        raise RuntimeError(f"hasten-run --generate: {proc.stderr.strip()[-300:]}")
    ids = [int(t) for t in proc.stdout.split("ids:")[-1].split(",")]
    got = ids[len(ref["prompt"]):]
    want = ref["greedy"].tolist()
    return got == want, f"greedy generation {got}, transformers {want}"


def main():
    bin_dir = sys.argv[1]
    passed = failed = 0

    def report(ok, what):
        nonlocal passed, failed
        print(("PASS " if ok else "FAIL ") + what)
        passed += ok
        failed += not ok

    with tempfile.TemporaryDirectory() as work:
        for name, path, inputs, reference, flags, tolerance in cases(work):
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
                a = load_logits(e2e.run_module(bin_dir, fused, inputs, work, name + ".fused"))
                b = load_logits(e2e.run_module(bin_dir, unfused, inputs, work, name + ".unfused"))
                err = relative_error(a, b)
                report(err <= tolerance, f"{name}: fused vs unfused logits, rel err {err:.2e}")
                if reference is not None:
                    err = relative_error(a, reference)
                    report(err <= tolerance,
                           f"{name}: fused vs reference logits, rel err {err:.2e}")
            except RuntimeError as e:
                report(False, f"{name}: {e}")
        for path in sorted(glob.glob(os.path.join(MODELS, "optimum", "*.onnx"))):
            name = os.path.basename(path)[:-len(".onnx")]
            try:
                ok, what = check_generation(bin_dir, path, work)
                report(ok, f"{name}: {what}")
            except RuntimeError as e:
                report(False, f"{name}: {e}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
