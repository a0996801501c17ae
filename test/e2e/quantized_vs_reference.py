#!/usr/bin/env python3
"""Quantized models on the int8 kernels, against independent references.

- Models quantized by ONNX Runtime's own quantizer (test/models/quantized:
  static QDQ MLPs with uint8 or int8 activations, int8 weights per channel
  or per tensor, asymmetric uint8 weights; a static QDQ CNN with int8
  filters per channel; and quantize_dynamic's DynamicQuantizeLinear +
  MatMulInteger) compute ONNX Runtime's outputs for the committed inputs,
  and numpy's evaluation of the same graph for other inputs (the MLPs at
  other batch and sequence sizes: one row, as in decode, up to 96 rows).
- Their matmuls and convolutions run on the runtime's int8 kernel: every
  module calls hasten_rt_matmul_i8.
- The bundled default decoder through quantize_dynamic (every transformer
  MatMul as MatMulInteger on run-time quantized activations) and through
  quantize_static (QDQ MatMuls) gives ONNX Runtime's logits, and generates
  the f32 model's greedy text; with its past quantized too (quantize_static's
  default), it is refused naming the input, with the way out.
- The kernel's paths, on QDQ graphs written here: a weight zero point that
  is not 0 (uint8 weights with zero point 37), K and N off every block
  size, one row and many, and both operands computed at run time (a
  product of two activations, whose weight is not packed); under
  HASTEN_MAX_CPU_ISA=avx2 as well, where oneDNN takes its AVX2 kernels.

usage: quantized_vs_reference.py BUILD_DIR
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
import e2e_common  # noqa: E402

MODELS = os.path.join(HERE, "..", "models", "quantized")


# ------------------------------------------------------ the numpy reference

def quantize(x, scale, zero_point, dtype):
    """ONNX QuantizeLinear: round half to even, saturate (float32 math)."""
    info = np.iinfo(dtype)
    q = np.rint(x.astype(np.float32) / np.float32(scale)) + np.float32(zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def evaluate(model, feeds):
    """The graph's outputs, node by node in numpy, for the ops these models
    use; per-axis parameters broadcast along the node's axis."""
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    values.update(feeds)

    def along(param, axis, rank):
        if param.ndim == 0 or param.size == 1:
            return param.reshape(())
        shape = [1] * rank
        shape[axis] = param.size
        return param.reshape(shape)

    for node in model.graph.node:
        x = [values[i] if i else None for i in node.input]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        op = node.op_type
        if op == "QuantizeLinear":
            rank = x[0].ndim
            axis = attrs.get("axis", 1) % max(rank, 1)
            out = [quantize(x[0], along(x[1], axis, rank), along(x[2], axis, rank),
                            x[2].dtype)]
        elif op == "DequantizeLinear":
            rank = x[0].ndim
            axis = attrs.get("axis", 1) % max(rank, 1)
            zp = along(x[2], axis, rank).astype(np.float32) if len(x) > 2 else np.float32(0)
            out = [((x[0].astype(np.float32) - zp) * along(x[1], axis, rank)).astype(np.float32)]
        elif op == "DynamicQuantizeLinear":
            lo, hi = min(0.0, float(x[0].min())), max(0.0, float(x[0].max()))
            scale = np.float32((hi - lo) / 255.0)
            zp = np.uint8(np.clip(np.rint(-np.float32(lo) / scale), 0, 255))
            out = [quantize(x[0], scale, zp, np.uint8), np.array(scale), np.array(zp)]
        elif op == "MatMulInteger":
            a = x[0].astype(np.int64) - x[2].astype(np.int64)
            b = x[1].astype(np.int64) - x[3].astype(np.int64)
            out = [np.matmul(a, b).astype(np.int32)]
        elif op == "Conv":
            out = [conv2d(x[0], x[1], x[2] if len(x) > 2 else None, attrs)]
        elif op == "MatMul":
            out = [np.matmul(x[0], x[1]).astype(np.float32)]
        elif op == "Add":
            out = [(x[0] + x[1]).astype(x[0].dtype)]
        elif op == "Mul":
            out = [(x[0] * x[1]).astype(x[0].dtype)]
        elif op == "Relu":
            out = [np.maximum(x[0], 0).astype(x[0].dtype)]
        elif op == "Cast":
            out = [x[0].astype(helper.tensor_dtype_to_np_dtype(attrs["to"])
                               if hasattr(helper, "tensor_dtype_to_np_dtype")
                               else onnx.mapping.TENSOR_TYPE_TO_NP_TYPE[attrs["to"]])]
        else:
            raise ValueError(f"reference has no {op}")
        for name, value in zip(node.output, out):
            values[name] = value
    return [values[o.name] for o in model.graph.output]


def conv2d(x, w, bias, attrs):
    """ONNX Conv (2-D, one group) in float32, one kernel offset at a time."""
    pads = attrs.get("pads", [0, 0, 0, 0])
    sh, sw = attrs.get("strides", [1, 1])
    dh, dw = attrs.get("dilations", [1, 1])
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    kh, kw = w.shape[2:]
    oh = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((x.shape[0], w.shape[0], oh, ow), np.float32)
    for i in range(kh):
        for j in range(kw):
            window = xp[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                        j * dw:j * dw + sw * (ow - 1) + 1:sw]
            y += np.einsum("nchw,fc->nfhw", window, w[:, :, i, j]).astype(np.float32)
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y.astype(np.float32)


def output_step(model):
    """The last QuantizeLinear's scale (the output's grid step), or None."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    steps = [inits[n.input[1]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    return float(steps[-1].max()) if steps else None


# ------------------------------------------------------------------- checks

def compile_model(c, bin_dir, path, out, *flags):
    proc = subprocess.run([os.path.join(bin_dir, "hasten-compile"), path, "-o", out, *flags],
                          capture_output=True, text=True)
    c.check(proc.returncode == 0, f"{os.path.basename(path)} compiles {' '.join(flags)}"
            + (f": {proc.stderr.strip()[-300:]}" if proc.returncode else ""))
    return proc.returncode == 0


def calls_int8_kernel(module):
    symbols = subprocess.run(["nm", "-D", "--undefined-only", module], capture_output=True,
                             text=True).stdout
    return "hasten_rt_matmul_i8" in symbols


def int8_kernel_calls(bin_dir, path, work):
    """How many calls of the int8 kernel the bufferized module makes."""
    out = os.path.join(work, os.path.basename(path) + ".buffer.mlir")
    subprocess.run([os.path.join(bin_dir, "hasten-compile"), path, "--compile-to=buffer",
                    "-o", out], check=True, capture_output=True)
    return open(out).read().count("call @hasten_rt_matmul_i8(")


def run(bin_dir, module, feeds, work, tag, isa=None):
    return e2e_common.run_module(bin_dir, module, feeds, work, tag,
                                 {"HASTEN_MAX_CPU_ISA": isa} if isa else None)


def close(got, want, step):
    """Equal to within one step of the output's grid (a value on a rounding
    boundary may land on either side), or 1e-5 of the largest magnitude for
    an unquantized output."""
    tolerance = 1.01 * step if step else 1e-5 * max(1.0, float(np.abs(want).max()))
    return got.shape == want.shape and float(np.abs(got - want).max()) <= tolerance


def check_ort_quantized(c, bin_dir, work):
    """ONNX Runtime's quantizer's models: its outputs, and numpy's."""
    rng = np.random.default_rng(5)
    for name in ("mlp_u8_per_channel", "mlp_s8_per_tensor", "mlp_u8_weights", "mlp_dynamic",
                 "cnn_u8_per_channel"):
        path = os.path.join(MODELS, name + ".onnx")
        module = os.path.join(work, name + ".so")
        if not compile_model(c, bin_dir, path, module):
            continue
        model = onnx.load(path)
        step = output_step(model)
        products = sum(n.op_type in ("MatMul", "MatMulInteger", "Conv") for n in model.graph.node)
        calls = int8_kernel_calls(bin_dir, path, work)
        c.check(calls_int8_kernel(module) and calls == products,
                f"{name}: {calls} of {products} matmuls and convolutions on the int8 kernel")
        ref = np.load(os.path.join(MODELS, name + ".reference.npz"))
        got = np.load(os.path.join(run(bin_dir, module, {"x": ref["x"]}, work, name), "y.npy"))
        c.check(close(got, ref["y"], step),
                f"{name}: ONNX Runtime's output (max diff {np.abs(got - ref['y']).max():.3g})")
        # The MLPs at other batch and sequence sizes; the CNN (static
        # shapes) on other images.
        shapes = ([ref["x"].shape] * 2 if name.startswith("cnn") else
                  [(1, 1, ref["x"].shape[-1]), (3, 17, ref["x"].shape[-1]),
                   (2, 48, ref["x"].shape[-1])])
        for i, shape in enumerate(shapes):
            x = rng.standard_normal(shape).astype(np.float32)
            (want,) = evaluate(model, {"x": x})
            got = np.load(os.path.join(run(bin_dir, module, {"x": x}, work, f"{name}_{i}"),
                                       "y.npy"))
            c.check(close(got, want, step),
                    f"{name} {list(shape)}: numpy's output "
                    f"(max diff {np.abs(got - want).max():.3g})")


def check_default_decoders(c, bin_dir, work):
    """The bundled default decoder quantized by ONNX Runtime, dynamically
    (MatMulInteger on run-time quantized activations) and statically (QDQ
    MatMuls): its transformer products on the int8 kernel in every decoder
    entry, ONNX Runtime's logits for a prompt, and the f32 model's greedy
    text for 32 tokens. A QDQ decoder whose past is quantized too is refused
    with a hint."""
    f32 = os.path.join(work, "default_f32.so")
    default_dir = os.path.join(HERE, "..", "models", "default")
    if not compile_model(c, bin_dir, os.path.join(default_dir, "model.onnx"), f32,
                         "--kv-capacity=128"):
        return

    def greedy(module):
        proc = subprocess.run([os.path.join(bin_dir, "hasten-run"), module, "--generate",
                               "--tokenizer", default_dir, "--prompt",
                               "Permission is hereby granted", "--max-new-tokens", "32"],
                              capture_output=True, text=True)
        return proc.stdout if proc.returncode == 0 else None

    f32_text = greedy(f32)
    for name, op in (("default_dynamic", "MatMulInteger"), ("default_qdq", "MatMul")):
        path = os.path.join(MODELS, name + ".onnx")
        module = os.path.join(work, name + ".so")
        if not compile_model(c, bin_dir, path, module, "--kv-capacity=128"):
            continue
        model = onnx.load(path)
        products = sum(n.op_type == op for n in model.graph.node)
        calls = int8_kernel_calls(bin_dir, path, work)
        # Each entry (main, prefill, decode, verify) has its own copy of the
        # graph; the QDQ model's attention products stay f32 (batched).
        c.check(calls > 0 and calls % 4 == 0,
                f"{name}: {calls // 4} int8 kernel calls per entry ({products} {op} nodes)")
        ref = np.load(os.path.join(MODELS, name + ".reference.npz"))
        feeds = {k: ref[k] for k in ref.files if k != "logits"}
        got = np.load(os.path.join(run(bin_dir, module, feeds, work, name), "logits.npy"))
        want = ref["logits"]
        c.check(got.shape == want.shape and
                float(np.abs(got - want).max()) <= 1e-3 * float(np.abs(want).max()),
                f"{name}: ONNX Runtime's logits (max diff {np.abs(got - want).max():.3g})")
        text = greedy(module)
        c.check(text is not None and text == f32_text,
                f"{name}: the f32 model's greedy text for 32 tokens ({text!r:.80})")

    # The past quantized as well, as quantize_static writes by default.
    model = onnx.load(os.path.join(MODELS, "default_qdq.onnx"))
    past = "past_key_values.0.key"
    for node in model.graph.node:
        node.input[:] = [past + "_dq" if i == past else i for i in node.input]
    model.graph.initializer.extend([numpy_helper.from_array(np.array(0.05, np.float32), "ps"),
                                    numpy_helper.from_array(np.array(128, np.uint8), "pz")])
    model.graph.node.insert(0, helper.make_node("DequantizeLinear", [past + "_q", "ps", "pz"],
                                                [past + "_dq"]))
    model.graph.node.insert(0, helper.make_node("QuantizeLinear", [past, "ps", "pz"],
                                                [past + "_q"]))
    path = os.path.join(work, "default_qdq_past.onnx")
    onnx.save(model, path)
    proc = subprocess.run([os.path.join(bin_dir, "hasten-compile"), path, "-o",
                           os.path.join(work, "refused.so")], capture_output=True, text=True)
    c.check(proc.returncode != 0 and f"'{past}' must be used only by one Concat" in proc.stderr
            and "op_types_to_quantize=['MatMul']" in proc.stderr,
            f"a decoder with a quantized past is refused with a hint: {proc.stderr.strip()[-160:]}")


def check_qlinear_conv(c, bin_dir, work):
    """QLinearConv with a constant filter (ONNX Runtime's QOperator format,
    the int8 CNNs of ONNX's model zoo): uint8 input with zero point 7, int8
    filter with scales per output channel, int32 bias, padding, stride 2; on
    the int8 kernel, against numpy's requantized integer convolution."""
    rng = np.random.default_rng(21)
    f, ch = 6, 4
    w = rng.integers(-127, 128, (f, ch, 3, 3)).astype(np.int8)
    w_scale = (rng.random(f) * 0.01 + 0.002).astype(np.float32)
    bias = rng.integers(-500, 500, f).astype(np.int32)
    x_scale, x_zero, y_scale, y_zero = 0.05, 7, 0.2, 120
    inits = [numpy_helper.from_array(np.array(x_scale, np.float32), "xs"),
             numpy_helper.from_array(np.array(x_zero, np.uint8), "xz"),
             numpy_helper.from_array(w, "w"), numpy_helper.from_array(w_scale, "ws"),
             numpy_helper.from_array(np.zeros(f, np.int8), "wz"),
             numpy_helper.from_array(np.array(y_scale, np.float32), "ys"),
             numpy_helper.from_array(np.array(y_zero, np.uint8), "yz"),
             numpy_helper.from_array(bias, "b")]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"],
                            ["y"], pads=[1, 1, 1, 1], strides=[2, 2], name="qconv")
    graph = helper.make_graph([node], "qlinearconv",
                              [helper.make_tensor_value_info("x", TensorProto.UINT8,
                                                             [1, ch, 10, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8,
                                                             [1, f, 5, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    path = os.path.join(work, "qlinearconv.onnx")
    onnx.save(model, path)
    module = os.path.join(work, "qlinearconv.so")
    if not compile_model(c, bin_dir, path, module):
        return
    calls = int8_kernel_calls(bin_dir, path, work)
    c.check(calls == 1, f"QLinearConv with a constant filter: {calls} int8 kernel call")
    x = rng.integers(0, 256, (1, ch, 10, 10)).astype(np.uint8)
    acc = conv2d((x.astype(np.int64) - x_zero).astype(np.float64), w.astype(np.float64), None,
                 {"pads": [1, 1, 1, 1], "strides": [2, 2]})
    acc = np.rint(acc).astype(np.int64) + bias.reshape(1, -1, 1, 1)
    scaled = acc * (np.float32(x_scale) * w_scale / np.float32(y_scale)).reshape(1, -1, 1, 1)
    want = np.clip(np.rint(scaled) + y_zero, 0, 255).astype(np.uint8)
    got = np.load(os.path.join(run(bin_dir, module, {"x": x}, work, "qlinearconv"), "y.npy"))
    # Requantization rounds in f32: a value on a rounding boundary may land
    # one step away.
    diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
    c.check(got.shape == want.shape and diff.max() <= 1 and (diff == 0).mean() > 0.95,
            f"QLinearConv: numpy's requantized integer convolution (max diff {diff.max()} "
            f"steps, {(diff == 0).mean():.1%} exact)")


def qdq_matmul(path, k, n, weight=None, seed=0):
    """y = DQ(Q(a)) DQ(W) with uint8 a (scale 0.05, zero point 120) and,
    when `weight` is given, a constant uint8 W (scale 0.02, zero point 37);
    otherwise W is DQ(Q(b)) of a second input b [k, n]."""
    nodes = [helper.make_node("QuantizeLinear", ["a", "sa", "za"], ["aq"]),
             helper.make_node("DequantizeLinear", ["aq", "sa", "za"], ["ad"])]
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "sa"),
             numpy_helper.from_array(np.array(120, np.uint8), "za")]
    inputs = [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["m", k])]
    if weight is not None:
        inits += [numpy_helper.from_array(weight, "wq"),
                  numpy_helper.from_array(np.array(0.02, np.float32), "sw"),
                  numpy_helper.from_array(np.array(37, np.uint8), "zw")]
        nodes.append(helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["wd"]))
    else:
        inputs.append(helper.make_tensor_value_info("b", TensorProto.FLOAT, [k, n]))
        inits += [numpy_helper.from_array(np.array(0.04, np.float32), "sb"),
                  numpy_helper.from_array(np.array(-3, np.int8), "zb")]
        nodes += [helper.make_node("QuantizeLinear", ["b", "sb", "zb"], ["bq"]),
                  helper.make_node("DequantizeLinear", ["bq", "sb", "zb"], ["wd"])]
    nodes.append(helper.make_node("MatMul", ["ad", "wd"], ["y"]))
    graph = helper.make_graph(nodes, "qdq_matmul", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, path)
    return model


def check_kernel_paths(c, bin_dir, work):
    rng = np.random.default_rng(9)
    k, n = 67, 33
    weight = rng.integers(0, 256, (k, n)).astype(np.uint8)
    for label, w in (("constant uint8 weight, zero point 37", weight),
                     ("two activations", None)):
        tag = "weight" if w is not None else "activations"
        path = os.path.join(work, f"kernel_{tag}.onnx")
        model = qdq_matmul(path, k, n, w)
        # The AVX2 run takes a module compiled for x86-64-v3.
        modules = {None: os.path.join(work, f"kernel_{tag}.so"),
                   "avx2": os.path.join(work, f"kernel_{tag}_v3.so")}
        if not (compile_model(c, bin_dir, path, modules[None]) and
                compile_model(c, bin_dir, path, modules["avx2"], "--cpu=x86-64-v3")):
            continue
        c.check(calls_int8_kernel(modules[None]), f"{label}: on the int8 kernel")
        for m in (1, 5, 96):
            feeds = {"a": (rng.standard_normal((m, k)) * 3).astype(np.float32)}
            if w is None:
                feeds["b"] = (rng.standard_normal((k, n)) * 2).astype(np.float32)
            (want,) = evaluate(model, feeds)
            for isa in (None, "avx2"):
                got = np.load(os.path.join(run(bin_dir, modules[isa], feeds, work,
                                               f"{tag}_{m}_{isa}", isa), "y.npy"))
                # Exact integer sums scaled once: within f32 rounding of numpy's
                # f32 product of the dequantized values.
                ok = got.shape == want.shape and np.allclose(got, want, rtol=1e-5,
                                                             atol=1e-4 * np.abs(want).max())
                c.check(ok, f"{label}, {m} rows{' (avx2)' if isa else ''}: numpy's product "
                        f"(max diff {np.abs(got - want).max():.3g})")


def main():
    args = e2e_common.parse_args("build_dir")
    build = os.path.abspath(args.build_dir)
    bin_dir = os.path.join(build, "bin") if os.path.isdir(os.path.join(build, "bin")) else build
    c = e2e_common.Checks()
    with tempfile.TemporaryDirectory() as work:
        check_ort_quantized(c, bin_dir, work)
        check_default_decoders(c, bin_dir, work)
        check_qlinear_conv(c, bin_dir, work)
        check_kernel_paths(c, bin_dir, work)
    print(f"quantized-vs-reference: {c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
