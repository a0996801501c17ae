#!/usr/bin/env python3
"""ONNX sequence and optional values beyond ONNX's own node cases, against
numpy: SplitToSequence (a split list, a scalar split with a shorter last
piece, no split with and without keepdims), ConcatFromSequence (along an
axis and stacked along a new one), SequenceInsert/Erase/At at positive,
negative and default positions on a sequence given at run time (elements of
different shapes, int64), SequenceLength of an empty sequence, sequences
and optionals as module inputs and outputs, an absent and a present
optional tensor. Every module runs through hasten-run, which reads and
writes the values as ONNX SequenceProto/OptionalProto files.

Then what must be refused: a shape table that points outside its data, or
holds a negative dimension, handed to hasten_run directly (the C API checks
them before generated code reads anything); a sequence fed to a tensor op
and an element rank that is unknown when compiling (clear errors naming the
node).

Run with a Python that has onnxruntime (bench/ort_env.py's venv) and every
run is also compared with ONNX Runtime.

usage: sequences_vs_numpy.py BIN_DIR
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
import hasten_ctypes as hc  # noqa: E402

F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def tensor_type(elem, shape):
    return helper.make_tensor_type_proto(elem, shape)


def seq_type(elem, shape=None):
    return helper.make_sequence_type_proto(helper.make_tensor_type_proto(elem, shape))


def opt_type(inner):
    return helper.make_optional_type_proto(inner)


def save_value(path, value, type_proto):
    """A numpy array, a list of arrays (a sequence) or None/value (an
    optional) as the .pb file hasten-run reads."""
    if type_proto.HasField("optional_type"):
        proto = onnx.OptionalProto()
        inner = type_proto.optional_type.elem_type
        if inner.HasField("sequence_type"):
            proto.elem_type = onnx.OptionalProto.SEQUENCE
            if value is not None:
                proto.sequence_value.CopyFrom(numpy_helper.from_list(value))
        else:
            proto.elem_type = onnx.OptionalProto.TENSOR
            if value is not None:
                proto.tensor_value.CopyFrom(numpy_helper.from_array(value))
    elif type_proto.HasField("sequence_type"):
        proto = numpy_helper.from_list(value)
        proto.elem_type = onnx.SequenceProto.TENSOR
    else:
        proto = numpy_helper.from_array(value)
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())


def same(got, want):
    if want is None or got is None:
        return got is None and want is None
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(
            same(g, w) for g, w in zip(got, want))
    return (not isinstance(got, list) and got.shape == want.shape and got.dtype == want.dtype
            and np.array_equal(got, want))


def show(value):
    if isinstance(value, list):
        return [v.tolist() for v in value]
    return None if value is None else value.tolist()


class Model:
    """A graph compiled once and run on several inputs."""

    def __init__(self, c, bin_dir, work, name, nodes, inputs, outputs, opset=17):
        self.c, self.bin_dir, self.work, self.name = c, bin_dir, work, name
        self.inputs, self.outputs = inputs, outputs
        graph = helper.make_graph(nodes, name,
                                  [helper.make_value_info(n, t) for n, t in inputs],
                                  [helper.make_value_info(n, t) for n, t in outputs])
        self.path, self.so, proc = e2e.compile_graph(bin_dir, work, name, graph, opset)
        self.ok = proc.returncode == 0
        if not self.ok:
            c.check(False, f"{name}: {proc.stderr.strip()[-400:]}")

    def run(self, tag, values, reference):
        if not self.ok:
            return
        args = []
        for name, type_proto in self.inputs:
            path = os.path.join(self.work, f"{self.name}.{tag}.{name}.pb")
            save_value(path, values[name], type_proto)
            args += ["--input", f"{name}={path}"]
        out_dir = os.path.join(self.work, f"{self.name}.{tag}")
        proc = subprocess.run([os.path.join(self.bin_dir, "hasten-run"), self.so, "--output-dir",
                               out_dir, "--output-format=pb"] + args,
                              capture_output=True, text=True)
        label = f"{self.name} ({tag})"
        if proc.returncode:
            self.c.check(False, f"{label}: {proc.stderr.strip()[-400:]}")
            return
        got = [e2e.load_value(os.path.join(out_dir, n + ".pb"), t) for n, t in self.outputs]
        want = reference(**values)
        ort = self.run_ort(values)
        ok = all(same(g, w) for g, w in zip(got, want))
        ort_ok = ort is None or all(same(o, w) for o, w in zip(ort, want))
        self.c.check(ok and ort_ok, f"{label}: = numpy" + ("" if ort is None else " = ONNX Runtime")
                     + ("" if ok else f"; got {[show(g) for g in got]}, want "
                        f"{[show(w) for w in want]}")
                     + ("" if ort_ok else f"; ONNX Runtime {[show(o) for o in ort]}"))

    def run_ort(self, values):
        try:
            import onnxruntime
        except ImportError:
            return None
        session = onnxruntime.InferenceSession(self.path, providers=["CPUExecutionProvider"])
        try:
            result = session.run([n for n, _ in self.outputs], values)
        except Exception as e:  # ONNX Runtime cannot type an empty list
            print(f"     (ONNX Runtime did not run it: {str(e)[:120]})")
            return None
        return [list(r) if isinstance(r, list) else r for r in result]


def split_cases(c, bin_dir, work):
    x = np.arange(35, dtype=np.float32).reshape(7, 5) - 10
    split = np.array([1, 3, 1], np.int64)
    nodes = [helper.make_node("SplitToSequence", ["x", "split"], ["pieces"], axis=1),
             helper.make_node("SequenceLength", ["pieces"], ["count"]),
             helper.make_node("SequenceAt", ["pieces", "minus_one"], ["last"]),
             helper.make_node("ConcatFromSequence", ["pieces"], ["joined"], axis=1),
             helper.make_node("Constant", [], ["minus_one"],
                              value=helper.make_tensor("m", I64, [], [-1]))]
    m = Model(c, bin_dir, work, "split_list", nodes,
              [("x", tensor_type(F, [7, 5])), ("split", tensor_type(I64, [3]))],
              [("pieces", seq_type(F)), ("count", tensor_type(I64, [])),
               ("last", tensor_type(F, [7, None])), ("joined", tensor_type(F, [7, 5]))])
    for tag, s in (("1-3-1", split), ("2-0-3", np.array([2, 0, 3], np.int64))):
        def reference(x, split):
            bounds = np.cumsum(split)[:-1]
            pieces = np.split(x, bounds, axis=1)
            return [pieces, np.array(len(pieces), np.int64), pieces[-1],
                    np.concatenate(pieces, axis=1)]
        m.run(tag, {"x": x, "split": s}, reference)

    # A scalar split: pieces of 3 rows, the last one shorter.
    nodes = [helper.make_node("SplitToSequence", ["x", "three"], ["pieces"], axis=0),
             helper.make_node("Constant", [], ["three"],
                              value=helper.make_tensor("t", I64, [], [3]))]
    m = Model(c, bin_dir, work, "split_scalar", nodes, [("x", tensor_type(F, [None, 5]))],
              [("pieces", seq_type(F))])
    for rows in (7, 6, 0):
        m.run(f"{rows} rows", {"x": x[:rows]},
              lambda x: [[x[i:i + 3] for i in range(0, x.shape[0], 3)]])

    # No split: pieces of one, squeezed without keepdims; joined back along
    # the last axis (stacked along a new one where they were squeezed).
    for keep in (0, 1):
        nodes = [helper.make_node("SplitToSequence", ["x"], ["pieces"], axis=-1, keepdims=keep),
                 helper.make_node("ConcatFromSequence", ["pieces"], ["stacked"], axis=1,
                                  new_axis=1 - keep)]
        m = Model(c, bin_dir, work, f"split_keepdims{keep}", nodes,
                  [("x", tensor_type(F, [3, 4]))],
                  [("pieces", seq_type(F)), ("stacked", tensor_type(F, ["a", "b"]))])

        def reference(x, keep=keep):
            pieces = [x[:, i:i + 1] if keep else x[:, i] for i in range(x.shape[1])]
            stacked = np.concatenate(pieces, 1) if keep else np.stack(pieces, 1)
            return [pieces, stacked]
        m.run("3x4", {"x": x[:3, :4]}, reference)


def edit_cases(c, bin_dir, work):
    """Insert, erase and read back on a sequence given at run time."""
    nodes = [helper.make_node("SequenceInsert", ["s", "t", "at"], ["inserted"]),
             helper.make_node("SequenceErase", ["inserted", "gone"], ["erased"]),
             helper.make_node("SequenceAt", ["erased", "read"], ["element"]),
             helper.make_node("SequenceInsert", ["erased", "t"], ["appended"]),
             helper.make_node("SequenceErase", ["appended"], ["popped"]),
             helper.make_node("SequenceLength", ["popped"], ["length"])]
    m = Model(c, bin_dir, work, "edit", nodes,
              [("s", seq_type(I64, [None, None])), ("t", tensor_type(I64, [2, 3])),
               ("at", tensor_type(I64, [])), ("gone", tensor_type(I64, [])),
               ("read", tensor_type(I64, []))],
              [("inserted", seq_type(I64)), ("erased", seq_type(I64)),
               ("element", tensor_type(I64, [None, None])), ("popped", seq_type(I64)),
               ("length", tensor_type(I64, []))])
    rng = np.random.default_rng(7)
    s = [rng.integers(-50, 50, size=shape).astype(np.int64)
         for shape in ((1, 4), (3, 2), (0, 5), (2, 2))]
    t = np.arange(6, dtype=np.int64).reshape(2, 3) * 100

    def reference(s, t, at, gone, read):
        inserted = list(s)
        inserted.insert(int(at) if at >= 0 else len(s) + int(at), t)
        erased = list(inserted)
        del erased[int(gone)]
        popped = list(erased)
        return [inserted, erased, erased[int(read)], popped, np.array(len(popped), np.int64)]
    for at, gone, read in ((0, 2, 0), (4, -1, -2), (-2, 1, 3), (2, 0, -4)):
        m.run(f"at {at} erase {gone} read {read}",
              {"s": s, "t": t, "at": np.array(at, np.int64), "gone": np.array(gone, np.int64),
               "read": np.array(read, np.int64)}, reference)

    # A run-time empty sequence: length 0, one element after an insertion.
    nodes = [helper.make_node("SequenceLength", ["s"], ["n"]),
             helper.make_node("SequenceInsert", ["s", "t"], ["grown"])]
    m = Model(c, bin_dir, work, "empty", nodes,
              [("s", seq_type(I64, [None, None])), ("t", tensor_type(I64, [2, 3]))],
              [("n", tensor_type(I64, [])), ("grown", seq_type(I64))])
    for tag, value in (("empty", []), ("one element", [s[1]])):
        m.run(tag, {"s": value, "t": t},
              lambda s, t: [np.array(len(s), np.int64), list(s) + [t]])


def optional_cases(c, bin_dir, work):
    nodes = [helper.make_node("OptionalHasElement", ["o"], ["has"]),
             helper.make_node("If", ["has"], ["value"],
                              then_branch=helper.make_graph(
                                  [helper.make_node("OptionalGetElement", ["o"], ["inner"])],
                                  "then", [], [helper.make_tensor_value_info("inner", F, [3])]),
                              else_branch=helper.make_graph(
                                  [helper.make_node("Constant", [], ["fallback"],
                                                    value=helper.make_tensor(
                                                        "f", F, [3], [-1, -1, -1]))],
                                  "else", [], [helper.make_tensor_value_info("fallback", F, [3])])),
             helper.make_node("Optional", ["value"], ["wrapped"])]
    m = Model(c, bin_dir, work, "optional", nodes, [("o", opt_type(tensor_type(F, [3])))],
              [("has", tensor_type(B, [])), ("value", tensor_type(F, [3])),
               ("wrapped", opt_type(tensor_type(F, [3])))])
    x = np.array([0.5, -2.0, 8.0], np.float32)
    fallback = np.full(3, -1, np.float32)
    m.run("present", {"o": x}, lambda o: [np.array(True), o, o])
    m.run("absent", {"o": None}, lambda o: [np.array(False), fallback, fallback])


def refusals(c, bin_dir, work):
    # A shape table that does not describe the data never reaches the code.
    nodes = [helper.make_node("SequenceLength", ["s"], ["n"])]
    m = Model(c, bin_dir, work, "abi", nodes, [("s", seq_type(F, [None]))],
              [("n", tensor_type(I64, []))])
    if m.ok:
        rt = hc.Runtime(os.path.join(bin_dir, "..", "lib"))
        module = rt.load(m.so)
        data = np.arange(5, dtype=np.float32)
        good = np.array([[1, 2], [1, 3]], np.int64)
        try:
            (n,) = module.run("main", [data, good])
            c.check(int(n) == 2, f"abi: a consistent table runs (length {int(n)})")
        except hc.HastenError as e:
            c.check(False, f"abi: a consistent table runs: {e}")
        for what, table, expect in (
                ("points past the data", np.array([[1, 2], [1, 4]], np.int64),
                 "describes 6 elements but its data has 5"),
                ("has a negative dimension", np.array([[1, -2], [1, 7]], np.int64),
                 "invalid dimension -2"),
                ("has a rank wider than the table", np.array([[2, 5]], np.int64),
                 "rank 2")):
            try:
                module.run("main", [data, table])
                c.check(False, f"abi: a table that {what} is refused (it ran)")
            except hc.HastenError as e:
                c.check(expect in str(e) and "sequence 's'" in str(e),
                        f"abi: a table that {what} is refused: {e}")
        module.free()

    # A sequence into a tensor op, and an element rank nobody knows.
    graph = helper.make_graph(
        [helper.make_node("SplitToSequence", ["x"], ["s"]),
         helper.make_node("Add", ["s", "x"], ["y"], name="add_seq")], "g",
        [helper.make_tensor_value_info("x", F, [2])], [helper.make_tensor_value_info("y", F, [2])])
    for name, g, expect in (
            ("sequence_into_add", graph, "add_seq"),
            ("unknown_rank", helper.make_graph(
                [helper.make_node("SequenceAt", ["s", "i"], ["e"], name="read_it"),
                 helper.make_node("Identity", ["e"], ["y"])], "g",
                [helper.make_value_info("s", seq_type(F)),
                 helper.make_tensor_value_info("i", I64, [])],
                [helper.make_tensor_value_info("y", F, ["a", "b"])]),
             "read_it")):
        _, _, proc = e2e.compile_graph(bin_dir, work, name, g)
        message = proc.stderr.strip()
        c.check(proc.returncode != 0 and expect in message and "Traceback" not in message
                and "Assertion" not in message, f"{name} refused: {message[-300:]}")


def main():
    args = e2e.parse_args("bin_dir")
    c = e2e.Checks()
    with tempfile.TemporaryDirectory() as work:
        split_cases(c, args.bin_dir, work)
        edit_cases(c, args.bin_dir, work)
        optional_cases(c, args.bin_dir, work)
        refusals(c, args.bin_dir, work)
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
