#!/usr/bin/env python3
"""NonZero and Unique, whose outputs have as many elements as the data
gives, beyond ONNX's own node cases and against numpy: one module returning
different sizes for different data (none, one, all), NaN and negative zero,
integer, unsigned and boolean inputs (uint8 values above 127 must sort as
unsigned), Unique over elements and over slices along any axis, sorted and
in order of first occurrence, with all four of its outputs.

Run with a Python that has onnxruntime (bench/ort_env.py's venv) and every
case is also compared with ONNX Runtime.

usage: selection_vs_numpy.py BIN_DIR
"""
import os
import sys
import tempfile

import numpy as np
from onnx import TensorProto, helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import e2e_common as e2e  # noqa: E402

ONNX_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64,
              np.dtype(np.int32): TensorProto.INT32, np.dtype(np.bool_): TensorProto.BOOL,
              np.dtype(np.uint8): TensorProto.UINT8}


def same(got, want):
    return got.shape == want.shape and np.array_equal(got, want)


def nonzero_cases(c, bin_dir, work):
    rng = np.random.default_rng(7)
    floats = rng.standard_normal((3, 4, 5)).astype(np.float32)
    floats[rng.random(floats.shape) < 0.6] = 0
    floats[0, 0, 1] = np.nan  # NaN is nonzero
    floats[2, 3, 4] = -0.0    # negative zero is zero
    cases = [("nonzero_f32_rank3", floats),
             ("nonzero_i32", rng.integers(-2, 3, (17,)).astype(np.int32)),
             ("nonzero_bool", rng.random((6, 7)) < 0.3)]
    for name, x in cases:
        compiled = e2e.compile_node(c, bin_dir, work, name,
                                    helper.make_node("NonZero", ["x"], ["y"]), {"x": x},
                                    [("y", TensorProto.INT64, [x.ndim, None])], 13)
        if not compiled:
            continue
        (got,), ort = e2e.run_with_ort(bin_dir, work, compiled, {"x": x}, ["y"], name)
        want = np.array(np.nonzero(x), np.int64).reshape(x.ndim, -1)
        c.check(same(got, want) and (ort is None or same(ort[0], want)),
                f"{name}: {got.shape[1]} of {x.size} nonzero, = numpy"
                + ("" if ort is None else " = ONNX Runtime"))
    # One module, run-time sizes: no columns, one, every element.
    x = np.zeros((3, 4, 5), np.float32)
    compiled = e2e.compile_node(c, bin_dir, work, "nonzero_sizes",
                                helper.make_node("NonZero", ["x"], ["y"]), {"x": x},
                                [("y", TensorProto.INT64, [3, None])], 13)
    if compiled:
        one = x.copy()
        one[2, 1, 3] = 5
        for tag, data in (("zeros", x), ("one", one), ("ones", np.ones_like(x))):
            (got,), _ = e2e.run_with_ort(bin_dir, work, compiled, {"x": data}, ["y"],
                                         "nonzero_" + tag)
            want = np.array(np.nonzero(data), np.int64).reshape(3, -1)
            c.check(same(got, want), f"nonzero of {tag}: shape {got.shape} = numpy {want.shape}")


def unique_reference(x, axis, sorted_):
    """ONNX's Unique from numpy's: sorted, or reordered by first occurrence."""
    y, index, inverse, counts = np.unique(x, return_index=True, return_inverse=True,
                                          return_counts=True, axis=axis)
    inverse = inverse.reshape(-1)
    if not sorted_:
        order = np.argsort(index, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        y = np.take(y, order, axis=0 if axis is None else axis)
        index, counts, inverse = index[order], counts[order], rank[inverse]
    return [y, index.astype(np.int64), inverse.astype(np.int64), counts.astype(np.int64)]


def unique_cases(c, bin_dir, work):
    rng = np.random.default_rng(3)
    rows = rng.integers(0, 3, (9, 4)).astype(np.float32)
    rows[5] = rows[1]
    rows[8] = rows[1]
    cube = rng.integers(0, 2, (2, 3, 6)).astype(np.int32)
    cube[:, :, 4] = cube[:, :, 0]
    signed = np.array([0.0, -0.0, 3.5, -1.0, 3.5, np.float32(1e-30), -1.0, 2.0], np.float32)
    cases = [
        ("unique_i64", rng.integers(-5, 5, (23,)).astype(np.int64), None, 1),
        ("unique_i64_unsorted", rng.integers(-5, 5, (23,)).astype(np.int64), None, 0),
        ("unique_f32_2d_flattened", rows, None, 1),
        ("unique_f32_zeros", signed, None, 1),
        ("unique_rows", rows, 0, 1),
        ("unique_rows_unsorted", rows, 0, 0),
        ("unique_columns", rows.T.copy(), 1, 1),
        ("unique_last_axis_3d", cube, -1, 1),
        ("unique_middle_axis_3d_unsorted", cube.transpose(0, 2, 1).copy(), 1, 0),
        ("unique_u8_above_127", np.array([200, 3, 255, 3, 128, 127, 200], np.uint8), None, 1),
        ("unique_bool", rng.random(11) < 0.5, None, 1),
        ("unique_all_equal", np.full((7,), 4, np.int32), None, 1),
        ("unique_all_distinct", np.arange(9, 0, -1).astype(np.int64), None, 0),
    ]
    for name, x, axis, sorted_ in cases:
        attrs = {"sorted": sorted_}
        if axis is not None:
            attrs["axis"] = axis
        node = helper.make_node("Unique", ["x"], ["y", "indices", "inverse", "counts"], **attrs)
        y_shape = [None] if axis is None else [None if d == axis % x.ndim else s
                                               for d, s in enumerate(x.shape)]
        compiled = e2e.compile_node(
            c, bin_dir, work, name, node, {"x": x},
            [("y", ONNX_TYPES[x.dtype], y_shape), ("indices", TensorProto.INT64, [None]),
             ("inverse", TensorProto.INT64, [None]), ("counts", TensorProto.INT64, [None])], 11)
        if not compiled:
            continue
        names = ["y", "indices", "inverse", "counts"]
        got, ort = e2e.run_with_ort(bin_dir, work, compiled, {"x": x}, names, name)
        want = unique_reference(x, None if axis is None else axis % x.ndim, sorted_)
        ok = all(same(g, w) for g, w in zip(got, want))
        ort_ok = ort is None or all(same(o, w) for o, w in zip(ort, want))
        c.check(ok and ort_ok,
                f"{name}: {len(want[1])} distinct of {len(want[2])}, all four outputs = numpy"
                + ("" if ort is None else " = ONNX Runtime")
                + ("" if ok else f"; got {[g.tolist() for g in got]}, want "
                   f"{[w.tolist() for w in want]}"))
    # One module, data of every distinct count.
    x = np.zeros((6,), np.int64)
    compiled = e2e.compile_node(c, bin_dir, work, "unique_sizes",
                                helper.make_node("Unique", ["x"], ["y"]), {"x": x},
                                [("y", TensorProto.INT64, [None])], 11)
    if compiled:
        sizes = []
        for distinct in range(1, 7):
            data = (np.arange(6) % distinct).astype(np.int64)
            (got,), _ = e2e.run_with_ort(bin_dir, work, compiled, {"x": data}, ["y"],
                                         f"unique_sizes_{distinct}")
            sizes.append(len(got) if same(got, np.unique(data)) else -1)
        c.check(sizes == [1, 2, 3, 4, 5, 6],
                f"one Unique module returns 1..6 distinct values for data holding 1..6: {sizes}")


def main():
    bin_dir = sys.argv[1]
    c = e2e.Checks()
    with tempfile.TemporaryDirectory(prefix="hasten-selection-") as work:
        nonzero_cases(c, bin_dir, work)
        unique_cases(c, bin_dir, work)
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
