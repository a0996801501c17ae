#!/usr/bin/env python3
"""Writes one small ONNX model (or a deliberately broken file) for the
importer's lit tests.

usage: make_test_model.py NAME OUTPUT.onnx
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def model(nodes, inputs, outputs, initializers=(), opset=17, value_info=()):
    graph = helper.make_graph(nodes, "test", inputs, outputs, list(initializers),
                              value_info=list(value_info))
    m = helper.make_model(graph, producer_name="hasten-lit",
                          opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


MODELS = {}


def register(fn):
    MODELS[fn.__name__] = fn
    return fn


@register
def broadcast_add():
    # [batch, 3, 4] + [4] (numpy broadcasting) then * scalar initializer.
    return model([helper.make_node("Add", ["x", "b"], ["s"], name="add"),
                  helper.make_node("Mul", ["s", "k"], ["y"], name="mul")],
                 [vi("x", F, ["batch", 3, 4]), vi("b", F, [4])],
                 [vi("y", F, ["batch", 3, 4])],
                 [const("k", np.float32(2.0))])


@register
def pow_exponents():
    # Pow with constant exponents 2, 3 and 0.5 (RMSNorm, GELU, a norm) and
    # with an exponent that is an input.
    nodes = [helper.make_node("Pow", ["x", "two"], ["sq"]),
             helper.make_node("Pow", ["x", "three"], ["cube"]),
             helper.make_node("Pow", ["x", "half"], ["root"]),
             helper.make_node("Pow", ["x", "e"], ["any"])]
    return model(nodes, [vi("x", F, [2, 3]), vi("e", F, [])],
                 [vi("sq", F, [2, 3]), vi("cube", F, [2, 3]), vi("root", F, [2, 3]),
                  vi("any", F, [2, 3])],
                 [const("two", np.float32(2)), const("three", np.float32(3)),
                  const("half", np.float32(0.5))])


@register
def matmul_weights():
    w = np.arange(8 * 16, dtype=np.float32).reshape(8, 16) / 100
    return model([helper.make_node("MatMul", ["x", "w"], ["y"], name="proj")],
                 [vi("x", F, ["batch", "seq", 8])], [vi("y", F, ["batch", "seq", 16])],
                 [const("w", w)])


@register
def matmul_nbits():
    """ONNX Runtime's MatMulNBits: N=4, K=40 in blocks of 32 (the second one
    partial), values 0..15 counting up along K, two zero points per column
    packed into one byte (3 and 12: 0xC3), scales 0.5."""
    n, k, block = 4, 40, 32
    q = (np.arange(n * 64).reshape(n, 64) % 16).astype(np.uint8)
    packed = (q[:, 0::2] | (q[:, 1::2] << 4)).reshape(n, 2, block // 2)
    node = helper.make_node("MatMulNBits", ["x", "wq", "ws", "wz"], ["y"], domain="com.microsoft",
                            name="proj4", K=k, N=n, bits=4, block_size=block)
    m = model([node], [vi("x", F, ["batch", k])], [vi("y", F, ["batch", n])],
              [const("wq", packed), const("ws", np.full(n * 2, 0.5, np.float32)),
               const("wz", np.full(n, 0xC3, np.uint8))])
    m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return m


@register
def matmul_batched():
    return model([helper.make_node("MatMul", ["a", "b"], ["y"], name="bmm")],
                 [vi("a", F, [2, 1, 3, 4]), vi("b", F, [5, 4, 6])],
                 [vi("y", F, [2, 5, 3, 6])])


@register
def matmul_ragged():
    """Products whose sizes are not multiples of the CUDA target's 64 x 64
    tiles or 16-deep K steps: a batched one and one with a constant weight."""
    w = (np.arange(45 * 70, dtype=np.float32).reshape(45, 70) % 13 - 6) / 10
    nodes = [helper.make_node("MatMul", ["a", "b"], ["y"], name="bmm"),
             helper.make_node("MatMul", ["x", "w"], ["z"], name="proj")]
    return model(nodes, [vi("a", F, [3, 37, 45]), vi("b", F, [3, 45, 70]), vi("x", F, [67, 45])],
                 [vi("y", F, [3, 37, 70]), vi("z", F, [67, 70])], [const("w", w)])


@register
def shape_arith_static():
    # Shape -> Gather -> Unsqueeze -> Concat -> Reshape, all static: folds.
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["d0"], axis=0),
             helper.make_node("Unsqueeze", ["d0", "ax0"], ["d0v"]),
             helper.make_node("Concat", ["d0v", "tail"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")]
    return model(nodes, [vi("x", F, [2, 3, 4])], [vi("y", F, [2, 12])],
                 [const("zero", np.int64(0)), const("ax0", np.array([0], np.int64)),
                  const("tail", np.array([-1], np.int64))])


@register
def shape_arith_dynamic():
    # [batch, seq, 8] -> [batch, seq, 2, 4] with batch/seq read at run time.
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
             helper.make_node("Gather", ["s", "one"], ["q"], axis=0),
             helper.make_node("Unsqueeze", ["b", "ax0"], ["bv"]),
             helper.make_node("Unsqueeze", ["q", "ax0"], ["qv"]),
             helper.make_node("Concat", ["bv", "qv", "heads"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["y"], name="split_heads")]
    return model(nodes, [vi("x", F, ["batch", "seq", 8])], [vi("y", F, ["batch", "seq", 2, 4])],
                 [const("zero", np.int64(0)), const("one", np.int64(1)),
                  const("ax0", np.array([0], np.int64)),
                  const("heads", np.array([2, 4], np.int64))])


@register
def unsqueeze_opset11():
    return model([helper.make_node("Unsqueeze", ["x"], ["y"], axes=[0, -1])],
                 [vi("x", F, [3, 4])], [vi("y", F, [1, 3, 4, 1])], opset=11)


@register
def unsqueeze_opset13():
    return model([helper.make_node("Unsqueeze", ["x", "axes"], ["y"])],
                 [vi("x", F, [3, 4])], [vi("y", F, [1, 3, 4, 1])],
                 [const("axes", np.array([0, -1], np.int64))], opset=13)


@register
def reduce_axes_versions():
    # ReduceSum takes axes as an input from opset 13; ReduceMean as an
    # attribute until 18. Negative axes count from the end.
    nodes = [helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=0),
             helper.make_node("ReduceMean", ["x"], ["m"], axes=[-1], keepdims=1)]
    return model(nodes, [vi("x", F, [2, 3, 4])], [vi("s", F, [2, 4]), vi("m", F, [2, 3, 1])],
                 [const("axes", np.array([-2], np.int64))])


@register
def softmax_negative_axis():
    return model([helper.make_node("Softmax", ["x"], ["y"], axis=-1)],
                 [vi("x", F, ["n", 5, 7])], [vi("y", F, ["n", 5, 7])])


@register
def tile_unit_dims():
    # Tile that repeats only size-1 dims (an MQA key per head) and one that
    # repeats a size-3 dim.
    return model([helper.make_node("Tile", ["x", "reps"], ["y"]),
                  helper.make_node("Tile", ["z", "zreps"], ["w"])],
                 [vi("x", F, ["n", 1, 3]), vi("z", F, [2, 3])],
                 [vi("y", F, ["n", 4, 3]), vi("w", F, [2, 6])],
                 [const("reps", np.array([1, 4, 1], np.int64)),
                  const("zreps", np.array([1, 2], np.int64))])


@register
def constants():
    value = helper.make_tensor("v", F, [2], [1.5, -2.0])
    nodes = [helper.make_node("Constant", [], ["c_tensor"], value=value),
             helper.make_node("Constant", [], ["c_float"], value_float=0.25),
             helper.make_node("Constant", [], ["c_ints"], value_ints=[3, 4, 5]),
             helper.make_node("Constant", [], ["c_int"], value_int=7)]
    return model(nodes, [], [vi("c_tensor", F, [2]), vi("c_float", F, []),
                             vi("c_ints", I64, [3]), vi("c_int", I64, [])])


@register
def sparse_constant():
    # A 2x3 constant with 5.0 at (0, 1) and 7.0 at (1, 2), as a sparse_value.
    sparse = helper.make_sparse_tensor(
        helper.make_tensor("v", F, [2], [5.0, 7.0]),
        helper.make_tensor("i", I64, [2, 2], [0, 1, 1, 2]), [2, 3])
    node = helper.make_node("Constant", [], ["c"])
    node.attribute.append(helper.make_attribute("sparse_value", sparse))
    return model([node], [], [vi("c", F, [2, 3])])


@register
def gemm_trans_b_bias():
    w = np.ones((6, 4), np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w", "c"], ["y"], transB=1, alpha=0.5, beta=2.0)]
    return model(nodes, [vi("x", F, [3, 4])], [vi("y", F, [3, 6])],
                 [const("w", w), const("c", np.zeros(6, np.float32))])


@register
def conv2d():
    w = np.ones((8, 3, 3, 3), np.float32)
    bias = np.zeros(8, np.float32)
    dw = np.ones((8, 1, 3, 3), np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "bias"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Conv", ["c", "dw"], ["y"], group=8, pads=[1, 1, 1, 1])]
    return model(nodes, [vi("x", F, [1, 3, 16, 16])], [vi("y", F, [1, 8, 8, 8])],
                 [const("w", w), const("bias", bias), const("dw", dw)])


@register
def decoder_ops():
    # The ops a decoder's attention block uses beyond matmuls.
    nodes = [
        helper.make_node("LayerNormalization", ["x", "g", "b"], ["ln"], axis=-1, epsilon=1e-5),
        helper.make_node("Split", ["ln", "split"], ["q", "k"], axis=2),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("Concat", ["past", "kt"], ["present"], axis=2),
        helper.make_node("Where", ["mask", "q", "zero"], ["masked"]),
        helper.make_node("Equal", ["ids", "pad"], ["is_pad"]),
        helper.make_node("Not", ["is_pad"], ["not_pad"]),
        helper.make_node("Cast", ["not_pad"], ["keep"], to=F),
        helper.make_node("CumSum", ["keep", "axis1"], ["positions"]),
        helper.make_node("Trilu", ["square"], ["lower"], upper=0),
        helper.make_node("Range", ["start", "limit", "delta"], ["range"]),
        helper.make_node("ArgMax", ["masked"], ["best"], axis=-1, keepdims=0),
        helper.make_node("TopK", ["masked", "kk"], ["top_v", "top_i"], axis=-1),
    ]
    return model(nodes,
                 [vi("x", F, [1, "seq", 8]), vi("past", F, [1, 4, "past"]),
                  vi("mask", B, [1, "seq", 4]), vi("ids", I64, [1, "seq"]),
                  vi("square", F, [4, 4]), vi("limit", I64, [])],
                 [vi("present", F, [1, 4, "total"]), vi("positions", F, [1, "seq"]),
                  vi("lower", F, [4, 4]), vi("range", I64, ["n"]), vi("best", I64, [1, "seq"]),
                  vi("top_v", F, [1, "seq", 2]), vi("top_i", I64, [1, "seq", 2])],
                 [const("g", np.ones(8, np.float32)), const("b", np.zeros(8, np.float32)),
                  const("split", np.array([4, 4], np.int64)), const("zero", np.float32(0)),
                  const("pad", np.int64(0)), const("axis1", np.int64(1)),
                  const("start", np.int64(0)), const("delta", np.int64(1)),
                  const("kk", np.array([2], np.int64))])


@register
def external_data():
    # Two initializers in a data file beside the model: one small enough to
    # become an inline dense constant, one that stays a resource blob.
    small = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    large = np.arange(100, dtype=np.float32)
    m = model([helper.make_node("Mul", ["x", "small"], ["s"]),
               helper.make_node("MatMul", ["large2d", "xcol"], ["y"])],
              [vi("x", F, [4]), vi("xcol", F, [10, 1])], [vi("s", F, [4]), vi("y", F, [10, 1])],
              [const("small", small), const("large2d", large.reshape(10, 10))])
    return m, "external"


@register
def newer_ir():
    """A newer exporter's model (IR version 10) of what IR 8 has."""
    m, _ = matmul_weights(), None
    m.ir_version = 10
    return m


@register
def newer_ir_external():
    m, kind = external_data()
    m.ir_version = 10
    return m, kind


@register
def newer_ir_float8():
    """IR 10 with a float8 initializer (data type 17, new in IR 9)."""
    w = onnx.TensorProto()
    w.name, w.data_type, w.raw_data = "w8", 17, bytes([0x38, 0x40])
    w.dims.extend([2])
    m = model([helper.make_node("Identity", ["w8"], ["y"], name="id")], [], [vi("y", F, [2])],
              [w])
    m.ir_version = 10
    return m


@register
def detection():
    # NonMaxSuppression (run-time limit and thresholds, run-time row count)
    # and RoiAlign (an adaptive grid).
    nodes = [helper.make_node("NonMaxSuppression", ["boxes", "scores", "limit", "iou", "score"],
                              ["selected"], name="nms", center_point_box=1),
             helper.make_node("RoiAlign", ["x", "rois", "batch"], ["pooled"], name="roi",
                              output_height=2, output_width=3, sampling_ratio=0, mode="max")]
    return model(nodes,
                 [vi("boxes", F, [2, 10, 4]), vi("scores", F, [2, 4, 10]),
                  vi("limit", I64, [1]), vi("iou", F, [1]), vi("score", F, [1]),
                  vi("x", F, [2, 3, 8, 8]), vi("rois", F, ["rois", 4]), vi("batch", I64, ["rois"])],
                 [vi("selected", I64, [None, 3]), vi("pooled", F, ["rois", 3, 2, 3])], opset=16)


@register
def selection():
    # NonZero (run-time column count) and Unique over slices along axis 1.
    nodes = [helper.make_node("NonZero", ["mask"], ["where"], name="nonzero"),
             helper.make_node("Unique", ["x"], ["y", "first", "inverse", "counts"], name="unique",
                              axis=1, sorted=1)]
    return model(nodes, [vi("mask", B, [3, 5]), vi("x", F, [2, 6, 3])],
                 [vi("where", I64, [2, None]), vi("y", F, [2, None, 3]), vi("first", I64, [None]),
                  vi("inverse", I64, [6]), vi("counts", I64, [None])], opset=11)


@register
def legacy_ir3():
    # As PyTorch 0.3 exported: IR 3, opset 6, an initializer that is not
    # listed among the graph inputs (IR 3 wanted it there; IR 4 dropped the
    # rule), and an opset-6 Add with broadcast=1 on a Constant's output (the
    # version converter's adapter needs the Constant's shape).
    nodes = [helper.make_node("Add", ["x", "bias"], ["a"], name="add_bias", broadcast=1),
             helper.make_node("Constant", [], ["c"], name="one",
                              value=helper.make_tensor("v", F, [], [1.0])),
             helper.make_node("Add", ["a", "c"], ["b"], name="add_one", broadcast=1),
             # Opset 2's Pad keeps its pads in an attribute; the converter
             # makes them an initializer it does not list among the inputs.
             helper.make_node("Pad", ["b"], ["y"], name="pad", pads=[0, 0, 1, 0, 0, 1], value=0.0)]
    m = model(nodes, [vi("x", F, [1, 2, 3])], [vi("y", F, [1, 2, 5])],
              [const("bias", np.array([0.5, -0.5, 2.0], np.float32))], opset=6)
    m.ir_version = 3
    return m


@register
def legacy_prelu():
    # Opset 6's PRelu with a 1-D slope over the channels of [N, C, L], as
    # PyTorch 0.4 exported nn.PReLU(C).
    nodes = [helper.make_node("PRelu", ["x", "slope"], ["y"], name="prelu")]
    m = model(nodes, [vi("x", F, [2, 3, 4]), vi("slope", F, [3])], [vi("y", F, [2, 3, 4])],
              [const("slope", np.array([0.25, 0.5, 2.0], np.float32))], opset=6)
    m.ir_version = 3
    return m


@register
def control_flow():
    # If whose branches read an outer value and return different lengths;
    # Loop with a trip count and a condition computed in the body, carrying
    # a value and stacking a scan output; Scan summing rows in reverse.
    then_branch = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["twice"])], "then", [], [vi("twice", F, [3])])
    else_branch = helper.make_graph(
        [helper.make_node("Concat", ["x", "x"], ["both"], axis=0)], "else", [],
        [vi("both", F, [6])])
    body = helper.make_graph(
        [helper.make_node("Mul", ["acc_in", "x"], ["acc_out"]),
         helper.make_node("ReduceSum", ["acc_out"], ["total"], keepdims=0),
         helper.make_node("Less", ["total", "limit"], ["go_on"]),
         helper.make_node("Identity", ["acc_out"], ["step"])],
        "body", [vi("i", I64, []), vi("cond_in", B, []), vi("acc_in", F, [3])],
        [vi("go_on", B, []), vi("acc_out", F, [3]), vi("step", F, [3])])
    scan_body = helper.make_graph(
        [helper.make_node("Add", ["sum_in", "row"], ["sum_out"]),
         helper.make_node("Identity", ["sum_out"], ["partial"])],
        "scan_body", [vi("sum_in", F, [2]), vi("row", F, [2])],
        [vi("sum_out", F, [2]), vi("partial", F, [2])])
    nodes = [helper.make_node("If", ["flag"], ["chosen"], name="branch",
                              then_branch=then_branch, else_branch=else_branch),
             helper.make_node("Loop", ["trips", "", "start"], ["final", "steps"], name="grow",
                              body=body),
             helper.make_node("Scan", ["zero", "rows"], ["sum", "partials"], name="scan",
                              body=scan_body, num_scan_inputs=1, scan_input_directions=[1])]
    return model(nodes,
                 [vi("flag", B, []), vi("x", F, [3]), vi("limit", F, []), vi("trips", I64, []),
                  vi("start", F, [3]), vi("zero", F, [2]), vi("rows", F, [4, 2])],
                 [vi("chosen", F, [None]), vi("final", F, [3]), vi("steps", F, [None, 3]),
                  vi("sum", F, [2]), vi("partials", F, [4, 2])], opset=13)


@register
def sequences():
    # A sequence input, a tensor appended to it, element 0 read back and the
    # length; an optional input unwrapped; a sequence split from a tensor
    # returned.
    seq_f = helper.make_sequence_type_proto(helper.make_tensor_type_proto(F, [None]))
    opt_f = helper.make_optional_type_proto(helper.make_tensor_type_proto(F, [4]))
    nodes = [helper.make_node("SequenceInsert", ["s", "x"], ["grown"], name="append"),
             helper.make_node("SequenceAt", ["grown", "zero"], ["first"], name="read"),
             helper.make_node("SequenceLength", ["grown"], ["n"], name="count"),
             helper.make_node("OptionalGetElement", ["o"], ["o_value"], name="unwrap"),
             helper.make_node("SplitToSequence", ["x"], ["pieces"], name="split", axis=0,
                              keepdims=0)]
    return model(nodes,
                 [helper.make_value_info("s", seq_f), vi("x", F, [4]),
                  helper.make_value_info("o", opt_f)],
                 [helper.make_value_info("grown", seq_f), vi("first", F, [None]),
                  vi("n", I64, []), vi("o_value", F, [4]),
                  helper.make_value_info("pieces", helper.make_sequence_type_proto(
                      helper.make_tensor_type_proto(F, [])))],
                 [const("zero", np.array(0, np.int64))])


@register
def strings():
    # Numbers to strings and back, and a StringNormalizer on a [1, C] input.
    S = TensorProto.STRING
    nodes = [helper.make_node("Cast", ["x"], ["text"], name="to_text", to=S),
             helper.make_node("Cast", ["text"], ["back"], name="to_number", to=F),
             helper.make_node("StringNormalizer", ["words"], ["kept"], name="normalize",
                              case_change_action="LOWER", stopwords=["a"])]
    return model(nodes, [vi("x", F, [3]), vi("words", S, [1, "n"])],
                 [vi("text", S, [3]), vi("back", F, [3]), vi("kept", S, [1, None])])


@register
def tfidf():
    # TfIdfVectorizer, TFIDF over a pool of 2 unigrams and 1 bigram, output
    # positions permuted, weights per pool n-gram.
    node = helper.make_node("TfIdfVectorizer", ["ids"], ["features"], name="tfidf", mode="TFIDF",
                            min_gram_length=1, max_gram_length=2, max_skip_count=1,
                            ngram_counts=[0, 2], ngram_indexes=[2, 0, 1],
                            pool_int64s=[4, 7, 4, 7], weights=[0.5, 2.0, 3.0])
    return model([node], [vi("ids", I64, [2, 6])], [vi("features", F, [2, 3])], opset=11)


# ---- broken inputs ---------------------------------------------------------

@register
def unsupported_ops():
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="ok"),
             helper.make_node("Bernoulli", ["a"], ["b"], name="coin_1"),
             helper.make_node("Bernoulli", ["b"], ["c"], name="coin_2"),
             helper.make_node("CustomThing", ["c"], ["y"], name="custom", domain="com.example")]
    m = model(nodes, [vi("x", F, [1, 1, 4])], [vi("y", F, [1, 1, 4])])
    m.opset_import.append(helper.make_opsetid("com.example", 3))
    return m


@register
def prelu_mismatch():
    # A slope that does not broadcast against X (what ONNX's version
    # converter leaves of an opset-6 channel-wise PRelu).
    return model([helper.make_node("PRelu", ["x", "slope"], ["y"], name="act")],
                 [vi("x", F, [2, 3, 4])], [vi("y", F, [2, 3, 4])],
                 [const("slope", np.array([0.1, 0.2, 0.3], np.float32))], opset=11)


@register
def loop_rank_changes():
    # A loop-carried value the body returns with another rank.
    body = helper.make_graph(
        [helper.make_node("Unsqueeze", ["v_in", "axes"], ["v_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body", [vi("i", I64, []), vi("cond_in", B, []), vi("v_in", F, [3])],
        [vi("cond_out", B, []), vi("v_out", F, [1, 3])],
        initializer=[const("axes", np.array([0], np.int64))])
    return model([helper.make_node("Loop", ["trips", "", "v"], ["r"], name="grow", body=body)],
                 [vi("trips", I64, []), vi("v", F, [3])], [vi("r", F, [3])], opset=13)


@register
def unknown_attribute():
    # ONNX's checker knows no schema for contrib ops: an attribute that the
    # converter does not read (here one from a newer ONNX Runtime) would be
    # silently ignored and the result could differ.
    m = matmul_nbits()
    m.graph.node[0].attribute.append(helper.make_attribute("weight_layout", 1))
    return m


@register
def conv_kernel_shape_mismatch():
    w = const("w", np.ones((4, 2, 3, 3), np.float32))
    return model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv",
                                   kernel_shape=[2, 2])],
                 [vi("x", F, [1, 2, 5, 5])], [vi("y", F, ["n", "f", "h", "w"])],
                 initializers=[w])


@register
def cycle():
    nodes = [helper.make_node("Add", ["x", "b_out"], ["a_out"], name="node_a"),
             helper.make_node("Relu", ["a_out"], ["b_out"], name="node_b")]
    return model(nodes, [vi("x", F, [2])], [vi("b_out", F, [2])])


@register
def missing_initializer():
    return model([helper.make_node("MatMul", ["x", "weight"], ["y"], name="proj")],
                 [vi("x", F, [2, 2])], [vi("y", F, [2, 2])])


@register
def type_mismatch():
    return model([helper.make_node("Add", ["x", "i"], ["y"], name="mixed_add")],
                 [vi("x", F, [2]), vi("i", I64, [2])], [vi("y", F, [2])])


@register
def output_type_mismatch():
    # The graph declares an integer output for a float computation.
    return model([helper.make_node("Relu", ["x"], ["y"], name="relu")],
                 [vi("x", F, [2])], [vi("y", I64, [2])])


@register
def opset_too_new():
    return model([helper.make_node("Relu", ["x"], ["y"])],
                 [vi("x", F, [2])], [vi("y", F, [2])], opset=23)


@register
def opset18_spellings():
    # Opset 18's forms of opset-17 ops: ReduceMean's axes as an input,
    # ReduceMax reducing nothing (noop_with_empty_axes), Split into
    # num_outputs uneven chunks (5 = 2 + 2 + 1), Pad with axes; and Mish,
    # new in 18, expanded.
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=0),
             helper.make_node("ReduceMax", ["x"], ["same"], noop_with_empty_axes=1),
             helper.make_node("Split", ["v"], ["s0", "s1", "s2"], axis=0, num_outputs=3),
             helper.make_node("Pad", ["x", "pads", "", "padaxes"], ["p"]),
             helper.make_node("Mish", ["x"], ["mish"])]
    return model(nodes, [vi("x", F, [2, 3, 4]), vi("v", F, [5])],
                 [vi("m", F, [2, 4]), vi("same", F, [2, 3, 4]), vi("s0", F, [2]),
                  vi("s1", F, [2]), vi("s2", F, [1]), vi("p", F, [2, 3, 7]),
                  vi("mish", F, [2, 3, 4])],
                 [const("axes", np.array([1], np.int64)),
                  const("pads", np.array([1, 2], np.int64)),
                  const("padaxes", np.array([-1], np.int64))], opset=18)


@register
def opset20_spellings():
    # Gelu (new in 20, tanh approximation) expanded; GridSample's 'linear'
    # is opset 16's 'bilinear'.
    nodes = [helper.make_node("Gelu", ["x"], ["g"], approximate="tanh"),
             helper.make_node("GridSample", ["img", "grid"], ["y"], mode="linear")]
    return model(nodes, [vi("x", F, [3]), vi("img", F, [1, 1, 4, 4]),
                         vi("grid", F, [1, 2, 2, 2])],
                 [vi("g", F, [3]), vi("y", F, [1, 1, 2, 2])], opset=20)


@register
def opset19_refused():
    # What opset 17 cannot say is refused node by node, all at once:
    # antialiased Resize, axes computed at run time, an operator new in 18.
    nodes = [helper.make_node("Resize", ["img", "", "scales"], ["r"], mode="linear",
                              antialias=1, name="resize"),
             helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("ReduceMean", ["x", "shape"], ["m"], name="mean"),
             helper.make_node("BitwiseAnd", ["a", "b"], ["c"], name="bits")]
    return model(nodes, [vi("img", F, [1, 1, 4, 4]), vi("x", F, [2]),
                         vi("a", I64, [2]), vi("b", I64, [2])],
                 [vi("r", F, [1, 1, 2, 2]), vi("m", F, [1]), vi("c", I64, [2])],
                 [const("scales", np.array([1, 1, 0.5, 0.5], np.float32))], opset=19)


@register
def unsorted_nodes():
    # Valid but listed consumer-first: the importer orders it.
    nodes = [helper.make_node("Relu", ["a"], ["y"], name="second"),
             helper.make_node("Neg", ["x"], ["a"], name="first")]
    return model(nodes, [vi("x", F, [2])], [vi("y", F, [2])])


def _attention_nodes(probs_name="probs"):
    # q, k, v: [1, 2, S, 4]; mask: [S, S] additive; Div by sqrt(4).
    return [helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 1, 3, 2]),
            helper.make_node("MatMul", ["q", "kt"], ["qk"], name="qk"),
            helper.make_node("Div", ["qk", "two"], ["scores"], name="scale"),
            helper.make_node("Add", ["mask", "scores"], ["masked"], name="mask_add"),
            helper.make_node("Softmax", ["masked"], [probs_name], name="softmax", axis=-1),
            helper.make_node("MatMul", [probs_name, "v"], ["y"], name="pv")]


def _attention_io():
    qkv = [vi(n, F, [1, 2, "S", 4]) for n in ("q", "k", "v")]
    return qkv + [vi("mask", F, ["S", "S"])]


@register
def attention():
    # Mask first in the Add, a Div for the scale, a rank-2 mask.
    return model(_attention_nodes(), _attention_io(), [vi("y", F, [1, 2, "S", 4])],
                 [const("two", np.float32(2.0))])


@register
def attention_probs_output():
    # The probabilities are a graph output too: nothing may be fused away.
    return model(_attention_nodes(), _attention_io(),
                 [vi("y", F, [1, 2, "S", 4]), vi("probs", F, [1, 2, "S", "S"])],
                 [const("two", np.float32(2.0))])


# Hostile models: each crashed the importer (or libonnx inside it), or was
# accepted with a silently wrong meaning, before it was refused by name.
@register
def hostile_conv_stride0():
    return model([helper.make_node("Conv", ["x", "w"], ["y"], strides=[0, 0])],
                 [vi("x", F, [1, 1, 5, 5])], [vi("y", F, ["a", "b", "c", "d"])],
                 [const("w", np.ones((1, 1, 3, 3), np.float32))])


@register
def hostile_maxpool_stride0():
    return model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[0, 0])],
                 [vi("x", F, [1, 1, 5, 5])], [vi("y", F, ["a", "b", "c", "d"])])


@register
def hostile_maxpool_kernel0():
    return model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[0, 0])],
                 [vi("x", F, [1, 1, 5, 5])], [vi("y", F, ["a", "b", "c", "d"])])


@register
def hostile_conv_bias_rank4():
    return model([helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv")],
                 [vi("x", F, [1, 1, 5, 5])], [vi("y", F, ["a", "b", "c", "d"])],
                 [const("w", np.ones((1, 1, 3, 3), np.float32)),
                  const("b", np.ones((1, 1, 1, 1), np.float32))])


@register
def hostile_gather_index():
    return model([helper.make_node("Gather", ["x", "i"], ["y"], name="gather")],
                 [vi("x", F, [2, 3])], [vi("y", F, ["a", "b"])],
                 [const("i", np.array([100], np.int64))])


@register
def hostile_range_delta0():
    return model([helper.make_node("Range", ["a", "b", "d"], ["y"], name="range")],
                 [], [vi("y", F, ["n"])],
                 [const("a", np.float32(0)), const("b", np.float32(5)), const("d", np.float32(0))])


@register
def hostile_huge_input():
    return model([helper.make_node("Relu", ["x"], ["y"])],
                 [vi("x", F, [4, 2**62 + 3])], [vi("y", F, ["a", "b"])])


@register
def hostile_huge_constant_of_shape():
    return model([helper.make_node("ConstantOfShape", ["s"], ["y"], name="fill")],
                 [], [vi("y", F, ["a", "b"])], [const("s", np.array([2**40, 2**40], np.int64))])


@register
def hostile_short_raw_shape():
    # A Reshape shape of 3 int64 with 12 bytes of raw data: ONNX's ParseData
    # trusts the byte count.
    shape = TensorProto(name="s", data_type=I64, dims=[3], raw_data=b"\x02" + b"\x00" * 11)
    return model([helper.make_node("Reshape", ["x", "s"], ["y"], name="reshape")],
                 [vi("x", F, [2, 3])], [vi("y", F, ["a"])], [shape])


@register
def hostile_short_constant():
    value = TensorProto(name="v", data_type=I64, dims=[4], int64_data=[1, 2])
    return model([helper.make_node("Constant", [], ["s"], value=value, name="const"),
                  helper.make_node("Reshape", ["x", "s"], ["y"])],
                 [vi("x", F, [2, 3])], [vi("y", F, ["a"])])


def write(name, path):
    result = MODELS[name]()
    location = None
    if isinstance(result, tuple):
        result, location = result
    if location == "external":
        onnx.save_model(result, path, save_as_external_data=True,
                        all_tensors_to_one_file=True,
                        location=os.path.basename(path) + ".data", size_threshold=0)
    else:
        # Broken models are written without the checker's opinion.
        with open(path, "wb") as f:
            f.write(result.SerializeToString())


def write_hostile_external(kind, path):
    """The external-data model with its first initializer's data reference
    rewritten the way a hostile model would: a location outside the model's
    folder (relative, absolute, through a symlink), a FIFO, an offset that is
    not decimal or points past any file, dimensions whose byte count
    overflows."""
    write("external_data", path)
    folder = os.path.dirname(os.path.abspath(path))
    outside = os.path.join(os.path.dirname(folder), "outside.data")
    with open(path + ".data", "rb") as f, open(outside, "wb") as g:
        g.write(f.read())
    m = onnx.load(path, load_external_data=False)
    tensor = m.graph.initializer[0]
    entries = {e.key: e for e in tensor.external_data}
    if kind == "parent":
        entries["location"].value = "../outside.data"
    elif kind == "absolute":
        entries["location"].value = outside
    elif kind == "symlink":
        os.symlink(outside, os.path.join(folder, "link.data"))
        entries["location"].value = "link.data"
    elif kind == "fifo":
        os.mkfifo(os.path.join(folder, "fifo.data"))
        entries["location"].value = "fifo.data"
    elif kind == "hex_offset":
        entries["offset"].value = "0x10"
    elif kind == "huge_offset":
        entries["offset"].value = str(2**63 - 8)
    elif kind == "huge_dims":
        del tensor.dims[:]
        tensor.dims.extend([4, 2**62 + 3])
        for e in list(tensor.external_data):
            if e.key == "length":
                tensor.external_data.remove(e)
    else:
        raise SystemExit(f"unknown hostile case {kind}")
    with open(path, "wb") as f:
        f.write(m.SerializeToString())


def main():
    name, path = sys.argv[1], sys.argv[2]
    if name == "truncated":
        data = model([helper.make_node("MatMul", ["x", "w"], ["y"])],
                     [vi("x", F, [4, 64])], [vi("y", F, [4, 64])],
                     [const("w", np.ones((64, 64), np.float32))]).SerializeToString()
        open(path, "wb").write(data[: len(data) // 2])
    elif name == "garbage":
        open(path, "wb").write(b"\xff\xfe this is not a protobuf \x00\x01" * 8)
    elif name == "empty":
        open(path, "wb").close()
    elif name == "external_missing":
        write("external_data", path)
        os.remove(path + ".data")
    elif name.startswith("external_hostile_"):
        write_hostile_external(name[len("external_hostile_"):], path)
    elif name == "external_short":
        write("external_data", path)
        with open(path + ".data", "r+b") as f:
            f.truncate(64)
    else:
        write(name, path)


if __name__ == "__main__":
    main()
