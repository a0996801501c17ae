#!/usr/bin/env python3
"""Writes the benchmark models into a directory:

  matmul1024.onnx   Y = X[1024, 1024] @ W[1024, 1024], W an initializer
  gpt2_block.onnx   one GPT-2-small transformer block (hidden 768, 12 heads,
                    MLP 3072, causal self-attention) on x[1, seq, 768], with
                    a dynamic sequence length

usage: make_bench_models.py OUTPUT_DIR
"""
import math
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HIDDEN, HEADS, MLP = 768, 12, 3072
HEAD_DIM = HIDDEN // HEADS


def matmul_model(rng):
    w = rng.standard_normal((1024, 1024), dtype=np.float32) * 0.03
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")], "matmul1024",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1024, 1024])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1024, 1024])],
        [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def block_model(rng):
    nodes, inits = [], []

    def weight(name, *shape, scale=0.02):
        inits.append(numpy_helper.from_array(
            (rng.standard_normal(shape, dtype=np.float32) * scale).astype(np.float32), name))
        return name

    def const(name, value, dtype=np.int64):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    count = [0]

    def op(op_type, inputs, outputs=1, **attrs):
        count[0] += 1
        outs = [f"{op_type.lower()}_{count[0]}_{i}" for i in range(outputs)]
        nodes.append(helper.make_node(op_type, inputs, outs, name=f"{op_type}_{count[0]}", **attrs))
        return outs[0] if outputs == 1 else outs

    ones = lambda name, n: const(name, np.ones(n, np.float32), np.float32)
    zeros = lambda name, n: const(name, np.zeros(n, np.float32), np.float32)
    seq = op("Gather", [op("Shape", ["x"]), const("one", 1)], axis=0)
    seq1 = op("Unsqueeze", [seq, const("axis0", [0])])
    heads_shape = op("Concat", [const("batch1", [1]), seq1, const("heads", [HEADS, HEAD_DIM])], axis=0)
    merged_shape = op("Concat", [const("batch1b", [1]), seq1, const("hidden", [HIDDEN])], axis=0)
    positions = op("Range", [const("zero", 0), seq, const("step", 1)])
    causal = op("LessOrEqual", [op("Unsqueeze", [positions, const("axis0b", [0])]),
                                op("Unsqueeze", [positions, const("axis1", [1])])])
    mask = op("Where", [causal, const("f0", np.float32(0), np.float32),
                        const("fneg", np.float32(-1e9), np.float32)])

    h = op("LayerNormalization", ["x", ones("ln1.w", HIDDEN), zeros("ln1.b", HIDDEN)], axis=-1)
    qkv = op("Add", [op("MatMul", [h, weight("attn.qkv.w", HIDDEN, 3 * HIDDEN)]),
                     zeros("attn.qkv.b", 3 * HIDDEN)])
    q, k, v = op("Split", [qkv, const("split", [HIDDEN] * 3)], outputs=3, axis=2)
    heads = lambda t: op("Transpose", [op("Reshape", [t, heads_shape])], perm=[0, 2, 1, 3])
    q, k, v = heads(q), heads(k), heads(v)
    scores = op("Mul", [op("MatMul", [q, op("Transpose", [k], perm=[0, 1, 3, 2])]),
                        const("scale", np.float32(1 / math.sqrt(HEAD_DIM)), np.float32)])
    probs = op("Softmax", [op("Add", [scores, mask])], axis=-1)
    ctx = op("Reshape", [op("Transpose", [op("MatMul", [probs, v])], perm=[0, 2, 1, 3]), merged_shape])
    attn = op("Add", [op("MatMul", [ctx, weight("attn.proj.w", HIDDEN, HIDDEN)]), zeros("attn.proj.b", HIDDEN)])
    x1 = op("Add", ["x", attn])
    h2 = op("LayerNormalization", [x1, ones("ln2.w", HIDDEN), zeros("ln2.b", HIDDEN)], axis=-1)
    up = op("Add", [op("MatMul", [h2, weight("mlp.fc.w", HIDDEN, MLP)]), zeros("mlp.fc.b", MLP)])
    f = lambda name, value: const(name, np.float32(value), np.float32)
    inner = op("Mul", [op("Add", [up, op("Mul", [op("Pow", [up, f("three", 3)]), f("c", 0.044715)])]),
                       f("s2pi", math.sqrt(2 / math.pi))])
    act = op("Mul", [op("Mul", [up, f("half", 0.5)]), op("Add", [op("Tanh", [inner]), f("onef", 1)])])
    down = op("Add", [op("MatMul", [act, weight("mlp.proj.w", MLP, HIDDEN)]), zeros("mlp.proj.b", HIDDEN)])
    nodes.append(helper.make_node("Add", [x1, down], ["y"], name="residual2"))
    graph = helper.make_graph(
        nodes, "gpt2_block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "seq", HIDDEN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "seq", HIDDEN])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, model in (("matmul1024", matmul_model(rng)), ("gpt2_block", block_model(rng))):
        model.ir_version = 8
        onnx.checker.check_model(model)
        onnx.save(model, os.path.join(out, name + ".onnx"))
    np.save(os.path.join(out, "matmul1024.x.npy"),
            rng.standard_normal((1024, 1024), dtype=np.float32))
    for s in (1, 512):
        np.save(os.path.join(out, f"gpt2_block.s{s}.x.npy"),
                rng.standard_normal((1, s, HIDDEN), dtype=np.float32))


if __name__ == "__main__":
    main()
