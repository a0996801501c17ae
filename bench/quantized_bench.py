#!/usr/bin/env python3
"""int8 models quantized by ONNX Runtime's own quantizer, run by hasten and
by ONNX Runtime.

The first model is four GPT-2-124M-shaped feed-forward blocks (x [1, S, 768] ->
MatMul 768x3072 + bias -> Relu -> MatMul 3072x768 + bias, plus the
residual), 37.8 MB of f32 weights, quantized as a user quantizes for ONNX
Runtime:

  qdq      quantize_static, QuantFormat.QDQ, uint8 activations, int8 weights
           per channel (calibrated on 8 random batches);
  dynamic  quantize_dynamic, int8 weights (DynamicQuantizeLinear +
           MatMulInteger).

The second is a ResNet-style stage (three 3x3 convolutions of 64 channels
at 56x56), quantized the first way.

hasten folds all of them into integer matmuls on its int8 kernel
(--hasten-fold-quantized-contractions); ONNX Runtime runs its QDQ fusions and
MatMulInteger kernels. Prints, per thread count and row count (S = 1, the
decode shape, and S = 128, a prompt), the median latency of each and the
speed-up, with the f32 model beside them, and the largest difference between
the two runtimes' outputs; then the same for the convolutions (one image).

usage: bench/quantized_bench.py [--build build] [--threads 1,2] [--rows 1,128]
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import machine  # noqa: E402
import ort_env  # noqa: E402
from run_bench import hasten_ms, ort_ms, run  # noqa: E402

MAKE = """
import sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_dynamic, quantize_static)
work = sys.argv[1]
d, f, layers = 768, 3072, 4
rng = np.random.default_rng(0)
nodes, inits, x = [], [], "x"
for i in range(layers):
    w1 = (rng.standard_normal((d, f)) / np.sqrt(d)).astype(np.float32)
    w2 = (rng.standard_normal((f, d)) / np.sqrt(f)).astype(np.float32)
    b1 = (rng.standard_normal(f) * 0.1).astype(np.float32)
    b2 = (rng.standard_normal(d) * 0.1).astype(np.float32)
    inits += [numpy_helper.from_array(v, f"{n}{i}") for n, v in
              (("w1_", w1), ("b1_", b1), ("w2_", w2), ("b2_", b2))]
    nodes += [helper.make_node("MatMul", [x, f"w1_{i}"], [f"h{i}"]),
              helper.make_node("Add", [f"h{i}", f"b1_{i}"], [f"hb{i}"]),
              helper.make_node("Relu", [f"hb{i}"], [f"r{i}"]),
              helper.make_node("MatMul", [f"r{i}", f"w2_{i}"], [f"o{i}"]),
              helper.make_node("Add", [f"o{i}", f"b2_{i}"], [f"ob{i}"]),
              helper.make_node("Add", [x, f"ob{i}"], [f"y{i}" if i < layers - 1 else "y"])]
    x = f"y{i}"
graph = helper.make_graph(nodes, "ffn",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "seq", d])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "seq", d])], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
onnx.save(model, f"{work}/ffn_f32.onnx")

# `count` random inputs x of `shape` for the quantizer's calibration.
class RandomInputs(CalibrationDataReader):
    def __init__(self, shape, count, seed):
        r = np.random.default_rng(seed)
        self.it = iter([{"x": r.standard_normal(shape).astype(np.float32)}
                        for _ in range(count)])
    def get_next(self):
        return next(self.it, None)

quantize_static(f"{work}/ffn_f32.onnx", f"{work}/ffn_qdq.onnx", RandomInputs((1, 64, d), 8, 1),
                quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, per_channel=True)
quantize_dynamic(f"{work}/ffn_f32.onnx", f"{work}/ffn_dynamic.onnx",
                 weight_type=QuantType.QInt8)

# A ResNet-style stage: three 3x3 convolutions of 64 channels at 56x56.
nodes, inits, x = [], [], "x"
for i in range(3):
    w = (rng.standard_normal((64, 64, 3, 3)) / np.sqrt(576)).astype(np.float32)
    b = (rng.standard_normal(64) * 0.1).astype(np.float32)
    inits += [numpy_helper.from_array(w, f"cw{i}"), numpy_helper.from_array(b, f"cb{i}")]
    nodes += [helper.make_node("Conv", [x, f"cw{i}", f"cb{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
              helper.make_node("Relu", [f"c{i}"], [f"cr{i}" if i < 2 else "y"])]
    x = f"cr{i}"
graph = helper.make_graph(nodes, "cnn",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 56, 56])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 56, 56])], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
onnx.save(model, f"{work}/cnn_f32.onnx")

quantize_static(f"{work}/cnn_f32.onnx", f"{work}/cnn_qdq.onnx", RandomInputs((1, 64, 56, 56), 4, 3),
                quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, per_channel=True)
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rows", default="1,128")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    python = ort_env.ort_python(args.build)
    run([python, "-m", "pip", "install", "-q", "onnx"])  # the quantizer and MAKE import it
    bin_dir = os.path.join(args.build, "bin")
    work = os.path.join(args.build, "bench", "quantized")
    os.makedirs(work, exist_ok=True)
    run([python, "-c", MAKE, work])
    variants = ("f32", "qdq", "dynamic")
    for name in [f"ffn_{v}" for v in variants] + ["cnn_f32", "cnn_qdq"]:
        run([os.path.join(bin_dir, "hasten-compile"), os.path.join(work, f"{name}.onnx"),
             "-o", os.path.join(work, f"{name}.so")])
    print(f"CPU: {machine.cpu_description(bin_dir)}; ONNX Runtime "
          f"{ort_env.ort_version(python)} (Python, CPU)")
    print("model: 4 feed-forward blocks 768 -> 3072 -> 768 (37.8 MB of f32 weights); "
          f"median of {args.repeat} runs\n")
    print("| threads | rows | " + " | ".join(
        f"{v}: ORT ms | hasten ms | speed-up" for v in variants) + " | max diff qdq / dynamic |")
    print("|---|---|" + "---|---|---|" * len(variants) + "---|")
    rng = np.random.default_rng(2)
    for threads in [int(t) for t in args.threads.split(",")]:
        for rows in [int(r) for r in args.rows.split(",")]:
            x = os.path.join(work, f"x_{rows}.npy")
            np.save(x, rng.standard_normal((1, rows, 768)).astype(np.float32))
            cells, diffs = [], []
            for v in variants:
                model = os.path.join(work, f"ffn_{v}.onnx")
                ort_out = os.path.join(work, f"ort_{v}_{rows}.npy")
                ours = os.path.join(work, f"hasten_{v}_{rows}")
                ort = ort_ms(python, model, x, threads, args.repeat, ort_out)
                mine = hasten_ms(bin_dir, os.path.join(work, f"ffn_{v}.so"), x, threads,
                                 args.repeat, ours)
                cells.append(f"{ort:.3f} | {mine:.3f} | {ort / mine:.2f}x")
                if v != "f32":
                    diffs.append(float(np.abs(np.load(ort_out) -
                                              np.load(os.path.join(ours, "y.npy"))).max()))
            print(f"| {threads} | {rows} | " + " | ".join(cells) + " | " +
                  " / ".join(f"{d:.2g}" for d in diffs) + " |", flush=True)
    print("\nmodel: 3 convolutions 3x3, 64 channels, 56x56 (ResNet-style stage), "
          "batch 1\n")
    print("| threads | f32: ORT ms | hasten ms | speed-up | qdq: ORT ms | hasten ms | speed-up "
          "| max diff qdq |")
    print("|---|---|---|---|---|---|---|---|")
    x = os.path.join(work, "image.npy")
    np.save(x, rng.standard_normal((1, 64, 56, 56)).astype(np.float32))
    for threads in [int(t) for t in args.threads.split(",")]:
        cells = []
        for v in ("f32", "qdq"):
            model = os.path.join(work, f"cnn_{v}.onnx")
            ort_out, ours = os.path.join(work, f"ort_cnn_{v}.npy"), os.path.join(work, f"cnn_{v}")
            ort = ort_ms(python, model, x, threads, args.repeat, ort_out)
            mine = hasten_ms(bin_dir, os.path.join(work, f"cnn_{v}.so"), x, threads, args.repeat,
                             ours)
            cells.append(f"{ort:.3f} | {mine:.3f} | {ort / mine:.2f}x")
        diff = float(np.abs(np.load(ort_out) - np.load(os.path.join(ours, "y.npy"))).max())
        print(f"| {threads} | " + " | ".join(cells) + f" | {diff:.2g} |", flush=True)


if __name__ == "__main__":
    main()
