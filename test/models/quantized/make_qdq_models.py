#!/usr/bin/env python3
"""Small models quantized by ONNX Runtime's own quantizer, the way users
quantize them (onnxruntime.quantization.quantize_static, QDQ format), for
the quantized-inference tests (passes/FoldQuantizedContractions.cpp).

  mlp_u8_per_channel  x [batch, seq, 64] -> MatMul 64x96 + bias -> Relu
                      -> MatMul 96x48 + bias; uint8 activations, int8
                      weights per output channel (ONNX Runtime's usual CPU
                      configuration).
  mlp_s8_per_tensor   the same network with int8 activations and one int8
                      weight scale per tensor.
  mlp_u8_weights      uint8 activations and asymmetric uint8 weights (zero
                      point per tensor): the weights' zero point is not 0.
  cnn_u8_per_channel  x [1, 3, 16, 16] -> Conv 3x3 (pads 1) + bias -> Relu
                      -> Conv 3x3 (stride 2, pads 1) + bias -> Relu -> Conv 1x1;
                      uint8 activations, int8 filters per output channel.
  default_dynamic     the bundled default decoder (test/models/default)
                      through quantize_dynamic: every MatMul of the
                      transformer as DynamicQuantizeLinear + MatMulInteger;
                      its reference is the logits of a 12-token prompt
                      (empty past) and the inputs that produced them.
  default_qdq         the default decoder through quantize_static (QDQ,
                      uint8 activations, int8 weights per channel) with
                      op_types_to_quantize=['MatMul'], calibrated on 8
                      random 16-token prompts; reference as above. (By
                      default quantize_static also quantizes the KV
                      Concats' inputs, the past included, which a decoder's
                      planned cache cannot take.)
  mlp_dynamic         quantize_dynamic (what ONNX Runtime suggests for
                      transformers): DynamicQuantizeLinear of the
                      activations at run time, MatMulInteger with int8
                      weights, the scales multiplied after.

The MLPs' batch and sequence are dynamic. Weights are deterministic;
calibration uses 32 random batches. Next to each NAME.onnx, NAME.reference.npz holds inputs
(batch 2, 5 tokens) and ONNX Runtime's outputs for them.

  build/bench-venv/bin/python test/models/quantized/make_qdq_models.py [-o DIR]

Needs onnxruntime and onnx from PyPI (the bench venv has both); the
committed files mean the tests never do.
"""
import argparse
import os
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_dynamic, quantize_static)

K, HIDDEN, N = 64, 96, 48


def float_mlp(path):
    rng = np.random.default_rng(7)
    weights = {
        "w1": rng.standard_normal((K, HIDDEN)) / np.sqrt(K),
        "b1": rng.standard_normal(HIDDEN) * 0.1,
        "w2": rng.standard_normal((HIDDEN, N)) / np.sqrt(HIDDEN),
        "b2": rng.standard_normal(N) * 0.1,
    }
    weights = {k: v.astype(np.float32) for k, v in weights.items()}
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"], name="fc1"),
        helper.make_node("Add", ["h0", "b1"], ["h1"], name="fc1_bias"),
        helper.make_node("Relu", ["h1"], ["h2"], name="relu"),
        helper.make_node("MatMul", ["h2", "w2"], ["y0"], name="fc2"),
        helper.make_node("Add", ["y0", "b2"], ["y"], name="fc2_bias"),
    ]
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", N])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def float_cnn(path):
    rng = np.random.default_rng(13)
    shapes = {"c1": (8, 3, 3, 3), "c2": (8, 8, 3, 3), "c3": (4, 8, 1, 1)}
    weights = {}
    for name, shape in shapes.items():
        fan_in = np.prod(shape[1:])
        weights[name + "_w"] = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
    weights["c1_b"] = (rng.standard_normal(8) * 0.1).astype(np.float32)
    weights["c2_b"] = (rng.standard_normal(8) * 0.1).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "c1_w", "c1_b"], ["a1"], pads=[1, 1, 1, 1], name="c1"),
        helper.make_node("Relu", ["a1"], ["r1"]),
        helper.make_node("Conv", ["r1", "c2_w", "c2_b"], ["a2"], pads=[1, 1, 1, 1],
                         strides=[2, 2], name="c2"),
        helper.make_node("Relu", ["a2"], ["r2"]),
        helper.make_node("Conv", ["r2", "c3_w"], ["y"], name="c3"),
    ]
    graph = helper.make_graph(
        nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


class RandomBatches(CalibrationDataReader):
    def __init__(self, shape=(2, 8, K)):
        rng = np.random.default_rng(11)
        self.batches = iter([{"x": rng.standard_normal(shape).astype(np.float32)}
                             for _ in range(32)])

    def get_next(self):
        return next(self.batches, None)


VARIANTS = {
    "mlp_u8_per_channel": dict(activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                               per_channel=True),
    "mlp_s8_per_tensor": dict(activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                              per_channel=False),
    "mlp_u8_weights": dict(activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8,
                           per_channel=False),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", default=os.path.dirname(os.path.abspath(__file__)))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        source = os.path.join(work, "mlp.onnx")
        float_mlp(source)
        cnn = os.path.join(work, "cnn.onnx")
        float_cnn(cnn)
        for name, options in (list(VARIANTS.items()) + [("mlp_dynamic", None)] +
                              [("cnn_u8_per_channel", VARIANTS["mlp_u8_per_channel"])]):
            out = os.path.join(args.output, name + ".onnx")
            shape = (1, 3, 16, 16) if name.startswith("cnn") else (2, 5, K)
            if options is None:
                quantize_dynamic(source, out, weight_type=QuantType.QInt8)
            else:
                is_cnn = name.startswith("cnn")
                quantize_static(cnn if is_cnn else source, out,
                                RandomBatches(shape if is_cnn else (2, 8, K)),
                                quant_format=QuantFormat.QDQ, **options)
            x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
            session = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
            (y,) = session.run(None, {"x": x})
            np.savez(os.path.join(args.output, name + ".reference.npz"), x=x, y=y)
            ops = sorted({n.op_type for n in onnx.load(out).graph.node})
            print(f"{name}: {os.path.getsize(out)} bytes, ops {', '.join(ops)}")
        default_dynamic(args.output)


def prompt_feeds(session, rng, tokens):
    """A decoder's inputs for a prompt of `tokens` random ids, empty past."""
    feeds = {"input_ids": rng.integers(0, 700, (1, tokens)),
             "attention_mask": np.ones((1, tokens), np.int64),
             "position_ids": np.arange(tokens, dtype=np.int64)[None]}
    for i in session.get_inputs():
        if i.name.startswith("past_key_values"):
            feeds[i.name] = np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32)
    return feeds


class Prompts(CalibrationDataReader):
    def __init__(self, session):
        rng = np.random.default_rng(0)
        self.prompts = iter([prompt_feeds(session, rng, 16) for _ in range(8)])

    def get_next(self):
        return next(self.prompts, None)


def default_dynamic(output):
    here = os.path.dirname(os.path.abspath(__file__))
    source = os.path.join(here, "..", "default", "model.onnx")
    f32 = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    for name in ("default_dynamic", "default_qdq"):
        out = os.path.join(output, name + ".onnx")
        if name == "default_dynamic":
            quantize_dynamic(source, out, weight_type=QuantType.QInt8)
        else:
            quantize_static(source, out, Prompts(f32), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            per_channel=True, op_types_to_quantize=["MatMul"])
        session = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
        feeds = prompt_feeds(session, np.random.default_rng(5), 12)
        logits = session.run(["logits"], feeds)[0]
        np.savez(os.path.join(output, name + ".reference.npz"), logits=logits, **feeds)
        ops = sorted({n.op_type for n in onnx.load(out).graph.node})
        print(f"{name}: {os.path.getsize(out)} bytes, ops {', '.join(ops)}")


if __name__ == "__main__":
    main()
