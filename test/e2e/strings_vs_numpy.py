#!/usr/bin/env python3
"""String tensors beyond ONNX's node cases, against numpy: Cast of float32,
float64, int32, uint64 and bool to strings over values from 1e-300 to 1e300
(the positional/scientific switch at 1e-4 and 1e16, -0.0, the extremes, NaN
and infinities) equal to numpy's str(); Cast of strings to float32,
float64 and int64 (signs, exponents, spaces, "+INF"/"-inf"/"NaN" in any
case, text that is no number reading as NaN) equal to numpy's reading;
StringNormalizer case-sensitive and not, with several stop words, on [C]
and [1, C], keeping non-ASCII bytes as they are. Then what must be refused:
a string longer than its row, handed to hasten_run directly, and a string
tensor fed to an arithmetic op.

Run with a Python that has onnxruntime (bench/ort_env.py's venv) and the
parsing and StringNormalizer runs are also compared with ONNX Runtime.

usage: strings_vs_numpy.py BIN_DIR
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

S = TensorProto.STRING


def compile_model(c, bin_dir, work, name, nodes, inputs, outputs):
    path, so, proc = e2e.compile_graph(bin_dir, work, name,
                                       helper.make_graph(nodes, name, inputs, outputs))
    if proc.returncode:
        c.check(False, f"{name}: {proc.stderr.strip()[-400:]}")
        return None
    return path, so


def run(bin_dir, work, compiled, tag, inputs, outputs):
    """hasten-run on .pb inputs; the outputs as numpy arrays (strings as
    str objects)."""
    args = []
    for name, value in inputs.items():
        path = os.path.join(work, f"{tag}.{name}.pb")
        with open(path, "wb") as f:
            f.write(numpy_helper.from_array(value, name).SerializeToString())
        args += ["--input", f"{name}={path}"]
    out = os.path.join(work, tag)
    proc = subprocess.run([os.path.join(bin_dir, "hasten-run"), compiled[1], "--output-dir", out,
                           "--output-format=pb"] + args, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr.strip()[-400:])
    result = []
    for name in outputs:
        array = numpy_helper.to_array(onnx.load_tensor(os.path.join(out, name + ".pb")))
        if array.dtype == object:
            array = np.array([v.decode() if isinstance(v, bytes) else v for v in array.ravel()],
                             dtype=object).reshape(array.shape)
        result.append(array)
    return result


def ort_run(compiled, inputs, outputs):
    try:
        import onnxruntime
    except ImportError:
        return None
    try:
        session = onnxruntime.InferenceSession(compiled[0], providers=["CPUExecutionProvider"])
        return session.run(outputs, inputs)
    except Exception as e:  # StringNormalizer needs the en_US.UTF-8 locale installed
        print(f"     (ONNX Runtime did not run it: {str(e).splitlines()[0][-160:]})")
        return None


def numpy_str(v):
    """numpy 1.x's str() of a scalar (numpy 2 writes float32 in scientific
    notation from 1e8 on): the shortest digits, positional from 1e-4 up to
    1e16, scientific outside."""
    if isinstance(v, np.floating) and np.isfinite(v) and v != 0:
        if 1e-4 <= abs(float(v)) < 1e16:  # compared as doubles, as numpy 1.x does
            return np.format_float_positional(v, unique=True, trim="0")
        return np.format_float_scientific(v, unique=True, trim="-", exp_digits=2)
    return str(v)


def text_of(array):
    return np.array([numpy_str(v) for v in array.ravel()], dtype=object).reshape(array.shape)


def same(got, want):
    if got.shape != want.shape:
        return False
    if want.dtype == object:
        return got.tolist() == want.tolist()
    return got.dtype == want.dtype and np.array_equal(got, want, equal_nan=True)


def format_cases(c, bin_dir, work):
    rng = np.random.default_rng(11)
    magnitudes = 10.0 ** rng.uniform(-300, 300, 48)
    special = [0.0, -0.0, 1e-4, 9.999e-5, 1e16, 9.99e15, 1.0, 12.0, 123456789.0, 0.1, -2.5,
               np.nan, np.inf, -np.inf, 5e-324, 1.7976931348623157e308, 2.0 ** -149,
               3.4028234663852886e38]
    values64 = np.array(special + list(magnitudes * rng.choice([-1, 1], 48)), np.float64)
    with np.errstate(over="ignore"):  # float64's extremes are float32's infinities
        values32 = np.concatenate([np.array(special, np.float64).astype(np.float32),
                                   (10.0 ** rng.uniform(-44, 38, 64)).astype(np.float32)])
    ints = np.array([0, 1, -1, 2 ** 31 - 1, -2 ** 31, 42], np.int32)
    uints = np.array([0, 1, 2 ** 64 - 1, 2 ** 63], np.uint64)
    bools = np.array([True, False, True])
    for name, x, elem in (("f32", values32, TensorProto.FLOAT),
                          ("f64", values64, TensorProto.DOUBLE),
                          ("i32", ints, TensorProto.INT32), ("u64", uints, TensorProto.UINT64),
                          ("bool", bools, TensorProto.BOOL)):
        compiled = compile_model(
            c, bin_dir, work, f"format_{name}",
            [helper.make_node("Cast", ["x"], ["y"], to=S)],
            [helper.make_tensor_value_info("x", elem, [len(x)])],
            [helper.make_tensor_value_info("y", S, [len(x)])])
        if not compiled:
            continue
        (got,) = run(bin_dir, work, compiled, f"format_{name}", {"x": x}, ["y"])
        want = text_of(x)
        bad = [(g, w) for g, w in zip(got.tolist(), want.tolist()) if g != w]
        c.check(not bad, f"Cast {name} -> string: {len(x)} values = numpy 1.x's str()"
                + (f"; first differences {bad[:3]}" if bad else ""))


def parse_cases(c, bin_dir, work):
    texts = np.array(["0.47892547", "-1e-5", "1E8", "  12.5 ", "+3.25", "INF", "+inf", "-Inf",
                      "NaN", "nan", "1e39", "-1e400", "1e-400", "100.5", "-0", "7",
                      "not a number", ""], dtype=object)
    for name, elem, dtype in (("f32", TensorProto.FLOAT, np.float32),
                              ("f64", TensorProto.DOUBLE, np.float64),
                              ("i64", TensorProto.INT64, np.int64)):
        compiled = compile_model(
            c, bin_dir, work, f"parse_{name}",
            [helper.make_node("Cast", ["s"], ["y"], to=elem)],
            [helper.make_tensor_value_info("s", S, [len(texts)])],
            [helper.make_tensor_value_info("y", elem, [len(texts)])])
        if not compiled:
            continue
        (got,) = run(bin_dir, work, compiled, f"parse_{name}", {"s": texts}, ["y"])

        def number(t):
            try:
                return float(t)
            except ValueError:
                return np.nan
        floats = np.array([number(t) for t in texts], np.float64)
        if dtype == np.int64:
            # Truncated toward zero; the inputs that are no integer (NaN,
            # infinities, 1e39) are left out of the comparison.
            ok = np.isfinite(floats) & (np.abs(floats) < 2 ** 63)
            want = np.trunc(floats[ok]).astype(np.int64)
            good = np.array_equal(got[ok], want)
            detail = f"got {got[ok].tolist()}, want {want.tolist()}"
        else:
            with np.errstate(over="ignore"):  # 1e39 is float32's infinity
                want = floats.astype(dtype)
            good = same(got, want)
            detail = f"got {got.tolist()}, want {want.tolist()}"
        c.check(good, f"Cast string -> {name}: {len(texts)} strings = numpy"
                + ("" if good else f"; {detail}"))


def normalizer_cases(c, bin_dir, work):
    words = np.array(["Monday", "monday", "TUESDAY", "Weds", "ünïcode", "", "the", "The"],
                     dtype=object)
    for sensitive in (0, 1):
        for action in ("NONE", "LOWER", "UPPER"):
            for two_dims in (False, True):
                shape = [1, len(words)] if two_dims else [len(words)]
                name = f"normalize_{action}_{'cs' if sensitive else 'ci'}_{len(shape)}d"
                compiled = compile_model(
                    c, bin_dir, work, name,
                    [helper.make_node("StringNormalizer", ["x"], ["y"], case_change_action=action,
                                      is_case_sensitive=sensitive,
                                      stopwords=["monday", "the", "weds"])],
                    [helper.make_tensor_value_info("x", S, shape)],
                    [helper.make_tensor_value_info("y", S, [1, None] if two_dims else [None])])
                if not compiled:
                    continue
                x = words.reshape(shape)
                (got,) = run(bin_dir, work, compiled, name, {"x": x}, ["y"])
                stop = {"monday", "the", "weds"}
                kept = [w for w in words
                        if not ((w in stop) if sensitive else (w.lower() in stop))]

                def ascii_case(w):
                    mapped = {"LOWER": str.lower, "UPPER": str.upper}.get(action)
                    return "".join(mapped(ch) if mapped and ch.isascii() else ch for ch in w)
                want = np.array([ascii_case(w) for w in kept] or [""], dtype=object)
                want = want.reshape([1, -1] if two_dims else [-1])
                ort = ort_run(compiled, {"x": x}, ["y"])
                ok = same(got, want)
                # ONNX Runtime maps case through the locale: only the ASCII
                # strings are compared with it.
                ort_ok = ort is None or all(
                    g == o for g, o in zip(got.ravel().tolist(), ort[0].ravel().tolist())
                    if g.isascii())
                c.check(ok and ort_ok, f"{name}: = numpy" + ("" if ort is None else
                                                             " = ONNX Runtime (ASCII)")
                        + ("" if ok else f"; got {got.tolist()}, want {want.tolist()}")
                        + ("" if ort_ok else f"; ONNX Runtime {ort[0].tolist()}"))


def refusals(c, bin_dir, work):
    compiled = compile_model(
        c, bin_dir, work, "abi",
        [helper.make_node("StringNormalizer", ["x"], ["y"], case_change_action="UPPER")],
        [helper.make_tensor_value_info("x", S, [2])], [helper.make_tensor_value_info("y", S, [2])])
    if compiled:
        rt = hc.Runtime(os.path.join(bin_dir, "..", "lib"))
        module = rt.load(compiled[1])
        rows = np.frombuffer(b"ab\0cd\0", np.uint8).reshape(2, 3).copy()
        try:
            out = module.run("main", [rows, np.array([2, 2], np.int64)])
            text = [bytes(out[0][i, :out[1][i]]).decode() for i in range(2)]
            c.check(text == ["AB", "CD"], f"abi: consistent rows and lengths run ({text})")
        except hc.HastenError as e:
            c.check(False, f"abi: consistent rows and lengths run: {e}")
        for what, lengths, expect in (("longer than its row", [2, 4], "string 1 has length 4"),
                                      ("of negative length", [-1, 0], "string 0 has length -1")):
            try:
                module.run("main", [rows, np.array(lengths, np.int64)])
                c.check(False, f"abi: a string {what} is refused (it ran)")
            except hc.HastenError as e:
                c.check(expect in str(e) and "strings 'x'" in str(e),
                        f"abi: a string {what} is refused: {e}")
        module.free()
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["s"], to=S),
         helper.make_node("Cast", ["s"], ["n"], to=TensorProto.FLOAT),
         helper.make_node("Identity", ["s"], ["t"]),
         helper.make_node("StringNormalizer", ["t"], ["u"], name="norm", locale="tr_TR")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("u", S, [2]),
         helper.make_tensor_value_info("n", TensorProto.FLOAT, [2])])
    _, _, proc = e2e.compile_graph(bin_dir, work, "locale", graph)
    c.check(proc.returncode != 0 and "norm" in proc.stderr and "tr_TR" in proc.stderr,
            f"a locale other than ASCII's is refused: {proc.stderr.strip()[-200:]}")


def main():
    args = e2e.parse_args("bin_dir")
    c = e2e.Checks()
    with tempfile.TemporaryDirectory() as work:
        format_cases(c, args.bin_dir, work)
        parse_cases(c, args.bin_dir, work)
        normalizer_cases(c, args.bin_dir, work)
        refusals(c, args.bin_dir, work)
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
