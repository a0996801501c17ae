#!/usr/bin/env python3
"""If, Loop and Scan beyond ONNX's own node cases (one of each), against
numpy: branches that read enclosing values and return different lengths
(one module, both branches taken), Loop with a trip count, with only a
condition computed in the body, with both, and with zero iterations (an
empty scan output), an If nested in a Loop body, Scan in both directions and
along other axes; and refusals: an unsupported op inside a subgraph, a
loop-carried value whose rank changes.

Run with a Python that has onnxruntime (bench/ort_env.py's venv) and every
case is also compared with ONNX Runtime.

usage: control_flow_vs_numpy.py BIN_DIR
"""
import os
import sys
import tempfile

import numpy as np
from onnx import TensorProto, helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import e2e_common as e2e  # noqa: E402

F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def same(got, want):
    return got.shape == want.shape and np.allclose(got, want, rtol=1e-6, atol=1e-6)


def check_runs(c, bin_dir, work, name, compiled, runs, outputs, reference):
    """Each run's inputs through the module, against reference(inputs)."""
    for tag, inputs in runs:
        got, ort = e2e.run_with_ort(bin_dir, work, compiled, inputs, outputs, f"{name}_{tag}")
        want = reference(**inputs)
        ok = all(same(g, w) for g, w in zip(got, want))
        ort_ok = ort is None or all(same(o, w) for o, w in zip(ort, want))
        c.check(ok and ort_ok, f"{name} ({tag}): shapes {[g.shape for g in got]} = numpy"
                + ("" if ort is None else " = ONNX Runtime")
                + ("" if ok else f"; got {[g.tolist() for g in got]}, want "
                   f"{[w.tolist() for w in want]}"))


def if_case(c, bin_dir, work):
    then_branch = helper.make_graph(
        [helper.make_node("Mul", ["x", "scale"], ["scaled"])], "then", [],
        [vi("scaled", F, [3])])
    else_branch = helper.make_graph(
        [helper.make_node("Concat", ["x", "x"], ["both"], axis=0)], "else", [],
        [vi("both", F, [6])])
    node = helper.make_node("If", ["flag"], ["y"], then_branch=then_branch,
                            else_branch=else_branch)
    x = np.array([1.0, -2.0, 3.5], np.float32)
    scale = np.array([2.0, 0.5, -1.0], np.float32)
    inputs = {"flag": np.array(True), "x": x, "scale": scale}
    compiled = e2e.compile_node(c, bin_dir, work, "if_shapes", node, inputs,
                                [("y", F, [None])], 13)
    if compiled:
        check_runs(c, bin_dir, work, "if_shapes", compiled,
                   [("then", inputs), ("else", dict(inputs, flag=np.array(False)))], ["y"],
                   lambda flag, x, scale: [x * scale if flag else np.concatenate([x, x])])


def loop_cases(c, bin_dir, work):
    # Carried: acc *= x; scan output: acc; the body's condition: sum(acc) < limit.
    body = helper.make_graph(
        [helper.make_node("Mul", ["acc_in", "x"], ["acc_out"]),
         helper.make_node("ReduceSum", ["acc_out"], ["total"], keepdims=0),
         helper.make_node("Less", ["total", "limit"], ["go_on"]),
         helper.make_node("Cast", ["i"], ["i_f"], to=F),
         helper.make_node("Add", ["acc_out", "i_f"], ["step"])],
        "body", [vi("i", I64, []), vi("cond_in", B, []), vi("acc_in", F, [3])],
        [vi("go_on", B, []), vi("acc_out", F, [3]), vi("step", F, [3])])
    x = np.array([1.5, 2.0, 1.1], np.float32)
    start = np.array([1.0, 1.0, 1.0], np.float32)

    def reference(trips=None, cond=None, start=None, x=None, limit=None):
        acc, steps, i = start.astype(np.float64), [], 0
        go = True if cond is None else bool(cond)
        while go and (trips is None or i < int(trips)):
            acc = acc * x
            go = acc.sum() < float(limit)
            steps.append(acc + i)
            i += 1
        stacked = np.array(steps, np.float32).reshape(-1, 3)
        return [acc.astype(np.float32), stacked]

    for name, names, runs in (
            ("loop_trips_and_cond", ["trips", "cond", "start"],
             [("3_trips", {"trips": np.array(3), "cond": np.array(True)}),
              ("limited_by_cond", {"trips": np.array(10), "cond": np.array(True)}),
              ("zero_trips", {"trips": np.array(0), "cond": np.array(True)}),
              ("cond_false", {"trips": np.array(5), "cond": np.array(False)})]),
            ("loop_cond_only", ["", "cond", "start"],
             [("while", {"cond": np.array(True)})]),
            ("loop_trips_only", ["trips", "", "start"],
             [("4_trips", {"trips": np.array(4)})])):
        node = helper.make_node("Loop", names, ["final", "steps"], body=body)
        inputs = {k: v for k, v in runs[0][1].items()}
        inputs.update(start=start, x=x, limit=np.array(30.0, np.float32))
        compiled = e2e.compile_node(c, bin_dir, work, name, node, inputs,
                                    [("final", F, [3]), ("steps", F, [None, 3])], 13)
        if not compiled:
            continue
        full_runs = [(tag, dict(r, start=start, x=x, limit=np.array(30.0, np.float32)))
                     for tag, r in runs]
        check_runs(c, bin_dir, work, name, compiled, full_runs, ["final", "steps"], reference)


def nested_case(c, bin_dir, work):
    # A Loop whose body holds an If on the iteration's parity.
    then_branch = helper.make_graph(
        [helper.make_node("Add", ["v_in", "one"], ["v_then"])], "even", [],
        [vi("v_then", F, [2])])
    else_branch = helper.make_graph(
        [helper.make_node("Mul", ["v_in", "two"], ["v_else"])], "odd", [],
        [vi("v_else", F, [2])])
    body = helper.make_graph(
        [helper.make_node("Mod", ["i", "two_i"], ["parity"]),
         helper.make_node("Equal", ["parity", "zero_i"], ["even"]),
         helper.make_node("If", ["even"], ["v_out"], then_branch=then_branch,
                          else_branch=else_branch),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body", [vi("i", I64, []), vi("cond_in", B, []), vi("v_in", F, [2])],
        [vi("cond_out", B, []), vi("v_out", F, [2])],
        initializer=[helper.make_tensor("two_i", I64, [], [2]),
                     helper.make_tensor("zero_i", I64, [], [0])])
    node = helper.make_node("Loop", ["trips", "", "v"], ["result"], body=body)
    inputs = {"trips": np.array(5), "v": np.array([1.0, -1.0], np.float32),
              "one": np.array([1.0, 1.0], np.float32), "two": np.array([2.0, 2.0], np.float32)}
    compiled = e2e.compile_node(c, bin_dir, work, "loop_if_nested", node, inputs,
                                [("result", F, [2])], 13)

    def reference(trips, v, one, two):
        for i in range(int(trips)):
            v = v + one if i % 2 == 0 else v * two
        return [v]

    if compiled:
        check_runs(c, bin_dir, work, "loop_if_nested", compiled,
                   [("5", inputs), ("2", dict(inputs, trips=np.array(2)))], ["result"],
                   reference)


def scan_cases(c, bin_dir, work):
    body = helper.make_graph(
        [helper.make_node("Add", ["sum_in", "col"], ["sum_out"]),
         helper.make_node("Mul", ["sum_out", "col"], ["prod"])],
        "body", [vi("sum_in", F, [3]), vi("col", F, [3])],
        [vi("sum_out", F, [3]), vi("prod", F, [3])])
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5)).astype(np.float32)  # scanned along axis 1
    init = np.array([0.5, -1.0, 2.0], np.float32)
    for name, in_dir, out_dir, out_axis in (("scan_axis1", 0, 0, 0),
                                            ("scan_reverse_in", 1, 0, 1),
                                            ("scan_reverse_out", 0, 1, 1)):
        node = helper.make_node("Scan", ["init", "x"], ["total", "prods"], body=body,
                                num_scan_inputs=1, scan_input_axes=[1],
                                scan_input_directions=[in_dir], scan_output_axes=[out_axis],
                                scan_output_directions=[out_dir])
        inputs = {"init": init, "x": x}
        shape = [5, 3] if out_axis == 0 else [3, 5]
        compiled = e2e.compile_node(c, bin_dir, work, name, node, inputs,
                                    [("total", F, [3]), ("prods", F, shape)], 11)

        def reference(init, x, in_dir=in_dir, out_dir=out_dir, out_axis=out_axis):
            s, prods = init.astype(np.float64), []
            cols = range(x.shape[1] - 1, -1, -1) if in_dir else range(x.shape[1])
            for t in cols:
                s = s + x[:, t]
                prods.append(s * x[:, t])
            if out_dir:
                prods = prods[::-1]
            stacked = np.stack(prods, axis=out_axis)
            return [s.astype(np.float32), stacked.astype(np.float32)]

        if compiled:
            check_runs(c, bin_dir, work, name, compiled, [("run", inputs)], ["total", "prods"],
                       reference)


def refusals(c, bin_dir, work):
    bad_branch = helper.make_graph(
        [helper.make_node("Bernoulli", ["x"], ["coin"])], "then", [], [vi("coin", F, [3])])
    fine_branch = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["same"])], "else", [], [vi("same", F, [3])])
    grows = helper.make_graph(
        [helper.make_node("Unsqueeze", ["v_in", "axes"], ["v_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body", [vi("i", I64, []), vi("cond_in", B, []), vi("v_in", F, [3])],
        [vi("cond_out", B, []), vi("v_out", F, [1, 3])],
        initializer=[helper.make_tensor("axes", I64, [1], [0])])
    wide_branch = helper.make_graph(
        [helper.make_node("Unsqueeze", ["x", "axes"], ["wide"])], "then", [],
        [vi("wide", F, [1, 3])], initializer=[helper.make_tensor("axes", I64, [1], [0])])
    cases = [
        ("if_rank_differs",
         helper.make_node("If", ["flag"], ["y"], name="ranks", then_branch=wide_branch,
                          else_branch=fine_branch),
         {"flag": np.array(True), "x": np.zeros(3, np.float32)}, [("y", F, [3])],
         "node 'ranks' (If): output 0 is 'tensor<1x3xf32>' in then_branch but "
         "'tensor<3xf32>' in else_branch"),
        ("if_unsupported_inside",
         helper.make_node("If", ["flag"], ["y"], name="pick", then_branch=bad_branch,
                          else_branch=fine_branch),
         {"flag": np.array(True), "x": np.zeros(3, np.float32)}, [("y", F, [3])],
         "unsupported ONNX op 'Bernoulli' in a subgraph of node 'pick'"),
        ("loop_rank_changes",
         helper.make_node("Loop", ["trips", "", "v"], ["r"], name="grow", body=grows),
         {"trips": np.array(2), "v": np.zeros(3, np.float32)}, [("r", F, [3])],
         "node 'grow' (Loop): loop-carried value 0 enters as"),
    ]
    for name, node, inputs, outputs, message in cases:
        status, stderr = e2e.compile_refused(bin_dir, work, name, node, inputs, outputs, 13)
        c.check(status == 1 and message in stderr,
                f"{name} is refused naming the node: {stderr[-200:]}")


def main():
    bin_dir = sys.argv[1]
    c = e2e.Checks()
    with tempfile.TemporaryDirectory(prefix="hasten-control-flow-") as work:
        if_case(c, bin_dir, work)
        loop_cases(c, bin_dir, work)
        nested_case(c, bin_dir, work)
        scan_cases(c, bin_dir, work)
        refusals(c, bin_dir, work)
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
