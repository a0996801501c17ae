#!/usr/bin/env python3
"""Weights packed at compile time, mapped at load, and quantized, against
independent references.

- Packing: the bytes the compiler stores for a weight (read back from the
  bufferized .mlir) equal numpy's packing of the ONNX initializer in the
  documented layout (include/hasten/WeightLayout.h), byte for byte: f32 and
  bf16 strips, int8 per column, int4 per group of 32, 64 and 128 rows.
- Kernels: y = x W through every kernel path (1 row, a few rows, many rows)
  against numpy's x @ dequantize(W), with K and N off the block sizes;
  a few rows score exactly as each row alone (what verification needs);
  the AVX2 GEMVs give the VNNI kernels' bits.
- Quantized models: DequantizeLinear weights (int8 per column or tensor,
  asymmetric uint8/int8 with zero points) and ONNX Runtime's MatMulNBits
  (4-bit blocks of 32/64/128, with and without zero points) keep the
  model's own values, byte for byte, and compute numpy's product.
- Decoders: a sidecar module computes what the embedded one does, bit for
  bit; two processes that load the same module share its weights' pages; int8 logits are within 2e-2 (relative) of f32; on the trained default
  model, int4's perplexity on held-out text is within 5% of f32 (groups of
  32 and 64) and int8's within 1%.
- Reloading: a module loaded where a freed one was mapped (weights in the
  segment, embedded or sidecar, f32 or bf16, or a tiny one in the
  library's image) computes with its own weights, not the packs the
  runtime made from the freed module's.
- Bad files: a missing, foreign or truncated sidecar is refused naming it;
  a damaged weight byte is caught by hasten_module_verify_weights.

usage: weights_vs_reference.py BUILD_DIR
"""
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "models"))
import e2e_common  # noqa: E402
import hasten_ctypes as hc  # noqa: E402

STRIP = 64


# ---------------------------------------------------------------- references

def held_out_text():
    """The text test/models/train_pair.corpus() holds out (one file in 20 by
    its path's hash): the default model never trained on it."""
    files = sorted(glob.glob("/usr/share/common-licenses/*") +
                   glob.glob("/usr/share/doc/*/copyright"))
    held = []
    for path in files:
        if os.path.isfile(path) and int(hashlib.sha256(path.encode()).hexdigest(), 16) % 20 == 0:
            try:
                held.append(open(path, "rb").read())
            except OSError:
                pass
    return b"\n".join(held)


def round_up(v, m):
    return (v + m - 1) // m * m


def pack(w, fmt):
    """numpy's packing of W [K, N] in `fmt`; returns (bytes, dequantized W)."""
    k, n = w.shape
    strips = (n + STRIP - 1) // STRIP
    wp = np.zeros((k, strips * STRIP), np.float32)
    wp[:, :n] = w
    by_strip = wp.reshape(k, strips, STRIP).transpose(1, 0, 2)  # [strips, K, 64]
    if fmt == "f32-strips":
        data = np.zeros((strips, round_up(k, 16), STRIP), np.float32)
        data[:, :k] = by_strip
        blob = data.tobytes()
        return blob, w.copy()
    if fmt == "bf16-strips":
        kp = round_up(k, 32)
        data = np.zeros((strips, kp, STRIP), np.uint16)
        data[:, :k] = e2e_common.bf16_bits(by_strip)
        # rows 2p and 2p+1 of a column side by side
        data = data.reshape(strips, kp // 2, 2, STRIP).transpose(0, 1, 3, 2)
        return data.tobytes(), e2e_common.bf16_values(e2e_common.bf16_bits(w))
    if fmt == "int8":
        amax = np.abs(wp).max(axis=0)
        scale = (amax / np.float32(127)).astype(np.float32)
        safe = np.where(scale == 0, np.float32(1), scale)
        q = np.where(scale == 0, 0, np.clip(np.rint(wp / safe), -127, 127)).astype(np.int8)
        return pack_int8(q, scale, k, n)
    group = int(fmt.split("-g")[1])
    kp = round_up(k, group)
    groups = kp // group
    wg = np.zeros((kp, strips * STRIP), np.float32)
    wg[:k] = wp
    wg = wg.reshape(groups, group, strips * STRIP)
    # candidate scales extreme / -m (the value of largest magnitude, first in
    # row order, on the side of -8)
    extreme = np.take_along_axis(wg, np.abs(wg).argmax(axis=1)[:, None, :], axis=1)[:, 0, :]

    def quantize(scale16):
        scale = scale16.astype(np.float32)
        safe = np.where(scale == 0, np.float32(1), scale)
        q = np.clip(np.rint(wg * (np.float32(1) / safe)[:, None, :]), -8, 7)
        return np.where(scale[:, None, :] == 0, 0, q), scale

    # Per candidate: its levels q, the f16 least-squares scale for them
    # (sum w q / sum q q; the sums in f32, four lanes, row i into lane i % 4,
    # then (0 + 1) + (2 + 3): the packer's order, exactly), its error
    # s^2 sum q q - 2 s sum w q in double; the least wins, the first on a tie.
    def lanes_sum(x):
        lanes = np.zeros((groups, 4, wg.shape[2]), np.float32)
        for quad in range(group // 4):
            lanes += x[:, 4 * quad:4 * quad + 4, :]
        return (lanes[:, 0] + lanes[:, 1]) + (lanes[:, 2] + lanes[:, 3])

    best_err, scale16, levels_from = None, None, None
    for divisor in (8.0, 7.5, 7.0, 6.5, 6.0):
        cand = np.where(extreme == 0, np.float32(0),
                        extreme / np.float32(-divisor)).astype(np.float16)
        q, _scale = quantize(cand)
        q = q.astype(np.float32)
        wq, qq = lanes_sum(wg * q), lanes_sum(q * q)
        with np.errstate(divide="ignore", invalid="ignore"):
            fitted = np.where(qq > 0, wq / np.where(qq > 0, qq, np.float32(1)),
                              np.float32(0)).astype(np.float16)
        fitted = np.where(np.isfinite(fitted), fitted, cand)
        s = fitted.astype(np.float64)
        err = s * s * qq.astype(np.float64) - 2.0 * s * wq.astype(np.float64)
        if best_err is None:
            best_err, scale16, levels_from = err, fitted, cand
        else:
            better = err < best_err
            best_err = np.where(better, err, best_err)
            scale16 = np.where(better, fitted, scale16)
            levels_from = np.where(better, cand, levels_from)
    q, _scale = quantize(levels_from)
    q = q.astype(np.int64) + 8   # nibbles
    return pack_int4(q.reshape(kp, -1)[:k, :n], scale16[:, :n], None, group)


def pad_to(a, rows, columns, value):
    out = np.full((rows, columns), value, a.dtype)
    out[:a.shape[0], :a.shape[1]] = a
    return out


def pad_blob(data):
    return data + bytes(round_up(len(data), 64) - len(data))


def pack_int4(nibbles, scale16, zero_points, group):
    """The int4 format of nibbles [K, N] (0..15), f16 scales [groups, N] and
    u8 zero points [groups, N] (None: the fixed 8); returns (bytes,
    dequantized W [K, N])."""
    k, n = nibbles.shape
    strips = (n + STRIP - 1) // STRIP
    kp = round_up(k, group)
    groups = kp // group
    zp = np.full((groups, n), 8, np.int64) if zero_points is None else zero_points.astype(np.int64)
    zpp = pad_to(zp, groups, strips * STRIP, 8)
    # Padding holds each column's zero point (past N: 8): it dequantizes to 0.
    q = pad_to(nibbles.astype(np.int64), k, strips * STRIP, 8)
    q = np.concatenate([q, np.repeat(zpp, group, axis=0)[k:kp]], axis=0)
    q = q.reshape(kp, strips, STRIP).transpose(1, 0, 2)        # [strips, Kp, 64]
    # [strips, quads, 4 rows, halves, 2 nibbles, 16 columns] -> bytes ordered
    # [strips, quads, halves, 16 columns, 4 rows]
    q6 = q.reshape(strips, kp // 4, 4, 2, 2, 16)
    data = (q6[:, :, :, :, 0, :] | (q6[:, :, :, :, 1, :] << 4)).transpose(0, 1, 3, 4, 2)
    blob = pad_blob(data.astype(np.uint8).tobytes())
    s16 = pad_to(scale16.astype(np.float16), groups, strips * STRIP, 0)
    blob += s16.reshape(groups, strips, STRIP).transpose(1, 0, 2).tobytes()  # [strips, groups, 64]
    if zero_points is not None:
        blob = pad_blob(blob) + zpp.astype(np.uint8).reshape(groups, strips, STRIP).transpose(
            1, 0, 2).tobytes()
    deq = ((nibbles.astype(np.float64) - np.repeat(zp, group, axis=0)[:k])
           * np.repeat(scale16.astype(np.float32), group, axis=0)[:k])
    return blob, deq.astype(np.float32)


def pack_int8(q, scale, k, n, zero_point=None):
    """The int8 format of values q [K, columns] and per-column scales (padded
    to whole strips with zeros), signed (stored + 128) or, with per-column
    zero points, unsigned as given (int8-zp); returns (bytes, dequantized
    W [K, n])."""
    strips = (n + STRIP - 1) // STRIP
    kp = round_up(k, 32)
    if zero_point is None:
        stored = q[:, :n].astype(np.int64) + 128
        zp = np.full(n, 128, np.int64)
    else:
        stored, zp = q[:, :n].astype(np.int64), zero_point.astype(np.int64)
    zpp = np.full(strips * STRIP, 128, np.int64)
    zpp[:n] = zp
    u = np.zeros((kp, strips * STRIP), np.int64)
    u[:] = zpp                      # padding: the zero point
    u[:k, :n] = stored
    sp = np.zeros(strips * STRIP, np.float32)
    sp[:n] = scale[:n]
    # [quads, 4 rows, strips, 4 sixteens, 16 columns] -> [strips, quads, sixteens, columns, rows]
    data = u.astype(np.uint8).reshape(kp // 4, 4, strips, 4, 16).transpose(2, 0, 3, 4, 1).tobytes()
    blob = pad_blob(data) + sp.tobytes()
    if zero_point is not None:
        blob = pad_blob(blob) + zpp.astype(np.uint8).tobytes()
    return blob, ((stored - zp).astype(np.float32) * sp[:n])


def quantize_x(x, group, levels=127):
    """x quantized per row and group of rows to symmetric levels (scale
    max |x| / levels, to nearest even), given back as float."""
    out = np.zeros_like(x)
    for start in range(0, x.shape[1], group):
        part = x[:, start:start + group]
        scale = (np.abs(part).max(axis=1, keepdims=True) / np.float32(levels)).astype(np.float32)
        safe = np.where(scale == 0, np.float32(1), scale)
        out[:, start:start + group] = np.clip(np.rint(part / safe), -levels, levels) * scale
    return out


def gemv_x(x, fmt):
    """x as the GEMVs of a quantized format take it (a few rows): int8 (and
    int8-zp) in 14 bits per group of 128 rows; int4 in int8 per group of the
    weight's G."""
    if fmt.startswith("int8"):
        return quantize_x(x, 128, 8191)
    return quantize_x(x, int(fmt.split("-g")[1].split("-")[0]), 127)


# --------------------------------------------------------------- the modules

def matmul_model(path, w, m):
    """y = x W, W an initializer; x [m, K]."""
    k, n = w.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")], "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def compile_module(bin_dir, onnx_path, out, *flags):
    proc = subprocess.run([os.path.join(bin_dir, "hasten-compile"), onnx_path, "-o", out, *flags],
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"hasten-compile {' '.join(flags)}: {proc.stderr.strip()[-600:]}")
    return out


def stored_blob(mlir_path, key):
    """The bytes of resource `key` in an .mlir file (after the 4-byte
    alignment header MLIR writes)."""
    text = open(mlir_path).read()
    match = re.search(r'\n\s*"?' + re.escape(key) + r'"?: "0x([0-9A-F]+)"', text)
    return bytes.fromhex(match.group(1))[4:] if match else None


FORMATS = {"f32-strips": [], "bf16-strips": ["--weights=bf16"], "int8": ["--weights=int8"],
           "int4-g32": ["--weights=int4"], "int4-g64": ["--weights=int4", "--int4-group=64"],
           "int4-g128": ["--weights=int4", "--int4-group=128"]}


def check_kernels(checks, bin_dir, work, rng):
    k, n = 200, 300    # K off 16/32/64/128 (two x groups of int8, the last short), N off 64
    w = (rng.standard_normal((k, n)) * 0.1).astype(np.float32)
    w[:, 7] = 0.0      # a zero column: scale 0
    w[5, 9] = 3.0      # an outlier in one column and group
    for fmt, flags in FORMATS.items():
        onnx_path = os.path.join(work, "mm1.onnx")
        matmul_model(onnx_path, w, 1)
        mlir = compile_module(bin_dir, onnx_path, os.path.join(work, f"mm.{fmt}.mlir"),
                              "--compile-to=buffer", *flags)
        blob = stored_blob(mlir, "w." + fmt)
        expected, dequantized = pack(w, fmt)
        if fmt.endswith("strips") and blob is None and "strips" not in open(mlir).read():
            # Without AVX-512 the compiler keeps f32/bf16 weights plain.
            print(f"skip {fmt}: this host's default target keeps f32/bf16 weights plain")
            continue
        checks.check(blob == expected,
                     f"{fmt}: stored bytes equal numpy's packing ({len(expected)} bytes)")
        for m in (1, 5, 40):
            onnx_path = os.path.join(work, f"mm{m}.onnx")
            matmul_model(onnx_path, w, m)
            so = compile_module(bin_dir, onnx_path, os.path.join(work, f"mm{m}.{fmt}.so"), *flags)
            x = rng.standard_normal((m, k)).astype(np.float32)
            y = np.load(os.path.join(e2e_common.run_module(bin_dir, so, {"x": x}, work,
                                                           f"mm{m}.{fmt}"), "y.npy"))
            refs = [x.astype(np.float64) @ dequantized.astype(np.float64)]
            if fmt == "bf16-strips":   # the bf16 kernels also round x
                rounded = e2e_common.bf16_values(e2e_common.bf16_bits(x))
                refs.append(rounded.astype(np.float64) @ dequantized)
            if fmt.startswith("int"):  # the VNNI kernels quantize x per group
                refs.append(gemv_x(x, fmt).astype(np.float64) @ dequantized)
            err = min(np.abs(y - r).max() / np.abs(r).max() for r in refs)
            # int8's 14-bit x leaves only float rounding (x in int8 would be 1e-3 off).
            checks.check(err < (2e-6 if fmt == "f32-strips" else 1e-6 if fmt == "int8" else 1e-5),
                         f"{fmt}: {m} x {k} x {n} against numpy's x @ dequantized W "
                         f"(max error {err:.1e} of max |y|)")
            if m == 5:
                rows = []
                one = compile_module(bin_dir, os.path.join(work, "mm1.onnx"),
                                     os.path.join(work, f"mm1.{fmt}.so"), *flags)
                for i in range(m):
                    rows.append(np.load(os.path.join(e2e_common.run_module(
                        bin_dir, one, {"x": x[i:i + 1]}, work, f"mm1.{fmt}.{i}"), "y.npy")))
                checks.check(np.array_equal(np.concatenate(rows), y),
                             f"{fmt}: 5 rows score bit for bit as each row alone")


def host_flags():
    return set(re.search(r"^flags\s*:(.*)$", open("/proc/cpuinfo").read(), re.M).group(1).split())


def check_portable_kernels(checks, bin_dir, work, rng):
    """The kernels of smaller CPUs, selected on this one with
    HASTEN_MAX_CPU_ISA and a module for that CPU: AVX-512 without VNNI or
    BF16 (x86-64-v4: bf16 widened; int8 and int4 on the AVX2 GEMVs), AVX2
    (x86-64-v3: the AVX2 GEMVs, which give the VNNI kernels' bits) and
    baseline x86-64 (int8 and int4 dequantized a strip at a time, x neither
    rounded nor quantized)."""
    k, n = 200, 300
    w = (rng.standard_normal((k, n)) * 0.1).astype(np.float32)
    flags = host_flags()
    vnni = "avx512_vnni" in flags
    limits = [("avx512", "x86-64-v4", ("bf16-strips", "int8", "int4-g32"))] if "avx512f" in flags else []
    if "avx2" in flags:
        limits.append(("avx2", "x86-64-v3", ("int8", "int4-g32")))
    limits.append(("baseline", "x86-64", ("int8", "int4-g32")))
    native = {}
    for limit, cpu, formats in limits:
        for fmt in formats:
            _blob, dequantized = pack(w, fmt)
            for m in (1, 5, 40):
                onnx_path = os.path.join(work, f"{cpu}mm{m}.onnx")
                matmul_model(onnx_path, w, m)
                x = np.random.default_rng(m).standard_normal((m, k)).astype(np.float32)
                if (fmt, m) not in native and fmt.startswith("int") and vnni:
                    so = compile_module(bin_dir, onnx_path, os.path.join(work, f"native{m}.{fmt}.so"),
                                        *FORMATS[fmt])
                    native[fmt, m] = np.load(os.path.join(e2e_common.run_module(
                        bin_dir, so, {"x": x}, work, f"native{m}.{fmt}"), "y.npy"))
                so = compile_module(bin_dir, onnx_path, os.path.join(work, f"{cpu}mm{m}.{fmt}.so"),
                                    f"--cpu={cpu}", *FORMATS[fmt])
                os.environ["HASTEN_MAX_CPU_ISA"] = limit
                try:
                    y = np.load(os.path.join(e2e_common.run_module(
                        bin_dir, so, {"x": x}, work, f"{cpu}mm{m}.{fmt}"), "y.npy"))
                finally:
                    del os.environ["HASTEN_MAX_CPU_ISA"]
                # The AVX2 GEMVs quantize x per group of rows, for a few rows.
                gemv = fmt.startswith("int") and limit != "baseline" and m <= 16
                ref = (gemv_x(x, fmt) if gemv else x).astype(np.float64) @ dequantized.astype(np.float64)
                err = np.abs(y - ref).max() / np.abs(ref).max()
                checks.check(err < 1e-5, f"{fmt}, HASTEN_MAX_CPU_ISA={limit} ({cpu} module): "
                                         f"{m} x {k} x {n} against numpy (max error {err:.1e})")
                if gemv and vnni:
                    checks.check(np.array_equal(y, native[fmt, m]),
                                 f"{fmt}, HASTEN_MAX_CPU_ISA={limit}: {m} rows, the AVX2 GEMV "
                                 "gives the VNNI kernel's bits")


def qdq_model(path, q, scale, m, zero_point=None, axis=1):
    """y = x DequantizeLinear(q, scale[, zero_point]), as a quantizer writes
    a weight-only quantized MatMul."""
    k, n = q.shape
    inits = [numpy_helper.from_array(q, "wq"), numpy_helper.from_array(scale, "ws")]
    inputs = ["wq", "ws"]
    if zero_point is not None:
        inits.append(numpy_helper.from_array(zero_point, "wz"))
        inputs.append("wz")
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", inputs, ["w"], axis=axis, name="dq"),
         helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")], "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def check_quantized_models(checks, bin_dir, rt, work, rng):
    """Weights that arrive quantized (DequantizeLinear feeding MatMul) run on
    the int8 kernels with the model's own values and scales."""
    k, n = 72, 100
    q = rng.integers(-128, 128, (k, n)).astype(np.int8)
    column_scale = (rng.random(n) * 0.01 + 0.001).astype(np.float32)
    cases = [("per-column", column_scale, None, column_scale),
             ("per-tensor", np.array(0.004, np.float32), None, np.full(n, 0.004, np.float32)),
             ("zero point 0", column_scale, np.zeros(n, np.int8), column_scale)]
    for name, scale, zp, expanded in cases:
        blob, dequantized = pack_int8(q, expanded, k, n)
        for m in (1, 5, 40):
            onnx_path = os.path.join(work, f"qdq{m}.onnx")
            qdq_model(onnx_path, q, scale, m, zp)
            if m == 1:
                mlir = compile_module(bin_dir, onnx_path, os.path.join(work, "qdq.mlir"),
                                      "--compile-to=buffer")
                checks.check(stored_blob(mlir, "wq.int8") == blob,
                             f"quantized model, {name}: the int8 weight holds the model's own "
                             "values and scales, byte for byte")
            so = compile_module(bin_dir, onnx_path, os.path.join(work, f"qdq{m}.so"))
            x = rng.standard_normal((m, k)).astype(np.float32)
            y = np.load(os.path.join(e2e_common.run_module(bin_dir, so, {"x": x}, work,
                                                           f"qdq{m}"), "y.npy"))
            refs = [x.astype(np.float64) @ dequantized.astype(np.float64),
                    gemv_x(x, "int8").astype(np.float64) @ dequantized.astype(np.float64)]
            err = min(np.abs(y - r).max() / np.abs(r).max() for r in refs)
            checks.check(err < 1e-5, f"quantized model, {name}: {m} x {k} x {n} against numpy "
                                     f"(max error {err:.1e})")
        mod = rt.load(so)
        formats = {f for _n, f, _b in mod.weights()}
        mod.free()
        checks.check(formats == {"int8"}, f"quantized model, {name}: stores only int8 ({formats})")
    # Asymmetric weights (uint8 with zero points; int8 with a nonzero one)
    # keep their values as given, with per-column zero points (int8-zp).
    qu = rng.integers(0, 256, (k, n)).astype(np.uint8)
    zu = rng.integers(100, 156, n).astype(np.uint8)
    zs = rng.integers(-20, 20, n).astype(np.int8)
    asymmetric = [("uint8, zero point 3", qu, np.full(n, 3, np.uint8), qu, np.full(n, 3)),
                  ("uint8, per-column zero points", qu, zu, qu, zu),
                  ("int8, nonzero zero points", q, zs, q.astype(np.int64) + 128,
                   zs.astype(np.int64) + 128)]
    for name, values, zp, stored, stored_zp in asymmetric:
        blob, dequantized = pack_int8(stored, column_scale, k, n, stored_zp)
        onnx_path = os.path.join(work, "qdq-asym.onnx")
        qdq_model(onnx_path, values, column_scale, 5, zp)
        mlir = compile_module(bin_dir, onnx_path, os.path.join(work, "qdq-asym.mlir"),
                              "--compile-to=buffer")
        checks.check(stored_blob(mlir, "wq.int8-zp") == blob,
                     f"quantized model, {name}: int8-zp holds the model's values, scales and "
                     "zero points, byte for byte")
        so = compile_module(bin_dir, onnx_path, os.path.join(work, "qdq-asym.so"))
        x = rng.standard_normal((5, k)).astype(np.float32)
        y = np.load(os.path.join(e2e_common.run_module(bin_dir, so, {"x": x}, work, "qdq-asym"),
                                 "y.npy"))
        exact = (values.astype(np.float64) - zp.astype(np.float64)) * column_scale
        refs = [x.astype(np.float64) @ exact, gemv_x(x, "int8").astype(np.float64) @ exact]
        err = min(np.abs(y - r).max() / np.abs(r).max() for r in refs)
        mod = rt.load(so)
        formats = {f for _n, f, _b in mod.weights()}
        mod.free()
        checks.check(err < 1e-5 and formats == {"int8-zp"},
                     f"quantized model, {name}: runs as int8-zp against numpy (error {err:.1e}, "
                     f"{sorted(formats)})")


def nbits_model(path, q, scales, zero_points, m, block, bias=None, **attributes):
    """y = x MatMulNBits(...) as ONNX Runtime's 4-bit quantizer writes it:
    q [N, K] values 0..15 packed two to a byte (low nibble first) in blocks
    of `block` along K, scales [N * blocks] f32, zero points (None: the
    default 8) packed the same way per column."""
    n, k = q.shape
    blocks = (k + block - 1) // block
    qp = np.zeros((n, blocks * block), np.uint8)
    qp[:, :k] = q
    packed = (qp[:, 0::2] | (qp[:, 1::2] << 4)).astype(np.uint8).reshape(n, blocks, block // 2)
    inits = [numpy_helper.from_array(packed, "wq"),
             numpy_helper.from_array(scales.reshape(-1).astype(np.float32), "ws")]
    inputs = ["x", "wq", "ws"]
    if zero_points is not None:
        zp = np.zeros((n, blocks + blocks % 2), np.uint8)
        zp[:, :blocks] = zero_points
        inits.append(numpy_helper.from_array(
            (zp[:, 0::2] | (zp[:, 1::2] << 4)).astype(np.uint8).reshape(-1), "wz"))
        inputs.append("wz")
    if bias is not None:
        inputs += [""] * (5 - len(inputs)) + ["bias"]
        inits.append(numpy_helper.from_array(bias, "bias"))
    attrs = dict(K=k, N=n, bits=4, block_size=block)
    attrs.update(attributes)
    node = helper.make_node("MatMulNBits", inputs, ["y"], domain="com.microsoft", name="mm4",
                            **attrs)
    graph = helper.make_graph(
        [node], "nbits", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    onnx.save(model, path)


def check_matmul_nbits(checks, bin_dir, rt, work, rng):
    """ONNX Runtime's MatMulNBits (4-bit blocks, f32 scales, zero points or
    the default 8) runs on the int4 kernels with the model's own values and
    zero points; the scales are stored as f16, which the reference rounds
    too. K off the block size (a partial last block) and a bias included."""
    n = 100
    cases = [(32, 200, True), (64, 128, False), (128, 256, True)]
    for block, k, with_zp in cases:
        blocks = (k + block - 1) // block
        q = rng.integers(0, 16, (n, k)).astype(np.uint8)
        scales = (rng.random((n, blocks)) * 0.01 + 0.001).astype(np.float32)
        zp = rng.integers(0, 16, (n, blocks)).astype(np.uint8) if with_zp else None
        bias = rng.standard_normal(n).astype(np.float32)
        fmt = f"int4-g{block}" + ("-zp" if with_zp else "")
        blob, dequantized = pack_int4(q.T, scales.T.astype(np.float16), None if zp is None else zp.T,
                                      block)
        for m in (1, 5, 40):
            onnx_path = os.path.join(work, f"nbits{m}.onnx")
            nbits_model(onnx_path, q, scales, zp, m, block, bias)
            if m == 1:
                mlir = compile_module(bin_dir, onnx_path, os.path.join(work, "nbits.mlir"),
                                      "--compile-to=buffer")
                checks.check(stored_blob(mlir, f"wq_q4.{fmt}") == blob,
                             f"MatMulNBits, {fmt}, K={k}: the weight holds the model's values, "
                             "scales (f16) and zero points, byte for byte")
            so = compile_module(bin_dir, onnx_path, os.path.join(work, f"nbits{m}.so"))
            x = rng.standard_normal((m, k)).astype(np.float32)
            y = np.load(os.path.join(e2e_common.run_module(bin_dir, so, {"x": x}, work,
                                                           f"nbits{m}"), "y.npy"))
            refs = [x.astype(np.float64) @ dequantized.astype(np.float64) + bias,
                    quantize_x(x, block).astype(np.float64) @ dequantized.astype(np.float64) + bias]
            err = min(np.abs(y - r).max() / np.abs(r).max() for r in refs)
            checks.check(err < 1e-5, f"MatMulNBits, {fmt}: {m} x {k} x {n} against numpy "
                                     f"(max error {err:.1e})")
        mod = rt.load(so)
        stored = {(f, b) for _n, f, b in mod.weights()}
        mod.free()
        checks.check(stored == {(fmt, len(blob)), ("plain", 4 * n)},
                     f"MatMulNBits, {fmt}: stores the weight as {fmt} and the bias ({sorted(stored)})")
    # What the importer refuses, naming the node.
    q = rng.integers(0, 16, (8, 64)).astype(np.uint8)
    scales = np.ones((8, 2), np.float32)
    bad = [("bits=8", dict(bits=8), "only bits=4 is supported"),
           ("block_size=48", dict(block_size=48), "block_size must be a power of 2"),
           ("K=60", dict(K=60), "A's last dimension must be K=60")]
    for name, attributes, message in bad:
        onnx_path = os.path.join(work, "nbits-bad.onnx")
        nbits_model(onnx_path, q, scales, None, 1, 32, **attributes)
        proc = subprocess.run([os.path.join(bin_dir, "hasten-compile"), onnx_path, "-o",
                               os.path.join(work, "bad.so")], capture_output=True, text=True)
        checks.check(proc.returncode != 0 and message in proc.stderr and "mm4" in proc.stderr,
                     f"MatMulNBits with {name} is refused naming the node: "
                     f"{proc.stderr.strip()[-160:]}")


def perplexity(module, ids, chunk=128):
    nll, count = 0.0, 0
    for start in range(0, len(ids) - chunk, chunk):
        piece = ids[start:start + chunk + 1]
        seq = module.sequence()
        seq.append(piece[:1])
        logits = seq.verify(piece[1:-1]).astype(np.float64)
        targets = np.array(piece[2:])
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        nll -= logp[np.arange(len(targets)), targets].sum()
        count += len(targets)
        seq.free()
    return float(np.exp(nll / count))


def check_decoders(checks, bin_dir, rt, work):
    for preset, _cfg, _weights, onnx_path in e2e_common.decoders(work):
        mods = {}
        for tag, flags in (("f32", []), ("sidecar", ["--weights-file=sidecar"]),
                           ("int8", ["--weights=int8"]), ("int4", ["--weights=int4"])):
            out = os.path.join(work, f"{preset}.{tag}.so")
            compile_module(bin_dir, onnx_path, out, *flags)
            mods[tag] = rt.load(out)
        prompt = [1, 5, 9, 3, 7, 2, 8, 4]
        logits = {}
        for tag, mod in mods.items():
            seq = mod.sequence()
            logits[tag] = [seq.append(prompt)] + [seq.append([t]) for t in (6, 11, 13)]
            seq.free()
        checks.check(all(np.array_equal(a, b) for a, b in zip(logits["f32"], logits["sidecar"])),
                     f"{preset}: the sidecar module's logits equal the embedded one's, bit for bit")
        side = os.path.join(work, f"{preset}.sidecar.weights")
        so_size, weights_size = os.path.getsize(os.path.join(work, f"{preset}.sidecar.so")), \
            os.path.getsize(side)
        checks.check(mods["sidecar"].weights_path() == side and
                     mods["f32"].weights_path().endswith(f"{preset}.f32.so"),
                     f"{preset}: weights mapped from {os.path.basename(side)} and from the .so")
        checks.check(abs(weights_size - 4096 - os.path.getsize(os.path.join(work, f"{preset}.f32.so"))
                         + so_size) < 64 * 1024,
                     f"{preset}: the sidecar holds what the embedded module adds "
                     f"({so_size} + {weights_size} bytes)")
        rel = max(np.linalg.norm(q - f) / np.linalg.norm(f)
                  for q, f in zip(logits["int8"], logits["f32"]))
        checks.check(rel < 2e-2, f"{preset}: int8 logits within 2e-2 of f32 (relative {rel:.1e})")
        formats = {f for _n, f, _b in mods["int8"].weights()}
        checks.check("int8" in formats, f"{preset}: the int8 module lists int8 weights {sorted(formats)}")
        for mod in mods.values():
            mod.free()


SMAPS_CHILD = r"""
import sys
sys.path.insert(0, sys.argv[1])
import hasten_ctypes as hc
rt = hc.Runtime(sys.argv[2])
mod = rt.load(sys.argv[3])
seq = mod.sequence()
seq.append([1, 5, 9, 3, 7, 2, 8, 4])
for t in (6, 11, 13):
    seq.append([t])
# The weights' mapping: the largest read-only one of the file (a sidecar is
# mapped once; an embedded module's file also holds its code and data).
best, entry = None, None
for line in open("/proc/self/smaps"):
    head = line.split()
    if not head[0].endswith(":"):   # a mapping: range perms offset dev inode [path]
        entry = None
        if head[-1] == sys.argv[4] and head[1].startswith("r-") and "x" not in head[1]:
            start, end = (int(a, 16) for a in head[0].split("-"))
            entry = {}
            if best is None or end - start > best[0]:
                best = (end - start, entry)
    elif entry is not None and len(head) == 3 and head[2] == "kB":
        entry[head[0][:-1]] = int(head[1])
e = best[1] if best else {"Rss": 0, "Shared_Clean": 0, "Shared_Dirty": 0, "Anonymous": 0}
# Rss, shared pages (dirty on tmpfs, where file pages never are clean), and
# anonymous ones (copies made on write in a private mapping)
print(e["Rss"], e["Shared_Clean"] + e["Shared_Dirty"], e["Anonymous"], flush=True)
if len(sys.argv) > 5:
    sys.stdin.readline()   # hold the mapping until the parent is done
"""


def check_shared_mapping(checks, build, work):
    """Two processes that load the same module share its weights' pages
    (page cache, mapped read-only), for a sidecar and an embedded module: a
    process alone holds them privately; with another one holding the same
    module, the same pages count as shared, and none is a copy."""
    preset = e2e_common.PRESETS[0]   # compiled by check_decoders
    for tag, file in (("sidecar", f"{preset}.sidecar.weights"), ("embedded", f"{preset}.f32.so")):
        so = os.path.join(work, f"{preset}.{'sidecar' if tag == 'sidecar' else 'f32'}.so")
        mapped = os.path.join(work, file)
        args = [sys.executable, "-c", SMAPS_CHILD, HERE, os.path.join(build, "lib"), so, mapped]
        alone = [int(v) for v in subprocess.run(args, capture_output=True, text=True,
                                                check=True).stdout.split()]
        holder = subprocess.Popen(args + ["hold"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        try:
            holder.stdout.readline()
            both = [int(v) for v in subprocess.run(args, capture_output=True, text=True,
                                                   check=True).stdout.split()]
        finally:
            holder.stdin.write("\n")
            holder.stdin.flush()
            holder.wait(timeout=60)
        size_kb = os.path.getsize(mapped) // 1024
        weights_kb = os.path.getsize(os.path.join(work, f"{preset}.sidecar.weights")) // 1024
        checks.check(alone[0] >= weights_kb // 2 and alone[1] == 0 and alone[2] == 0,
                     f"{tag}: a process alone maps {alone[0]} kB of the weights, private "
                     f"(shared {alone[1]} kB, copies {alone[2]} kB)")
        checks.check(both[0] >= weights_kb // 2 and both[1] >= both[0] * 0.95 and both[2] == 0
                     and both[0] <= size_kb + 4,
                     f"{tag}: with another process holding the module, {both[1]} of {both[0]} kB "
                     f"of the weights are shared pages (copies {both[2]} kB)")


def check_default_model(checks, bin_dir, rt, work):
    model_dir = os.path.join(HERE, "..", "models", "default")
    tok = rt.tokenizer(os.path.join(model_dir, "tokenizer.json"))
    held = held_out_text()
    ids = tok.encode(held[:40000].decode("ascii", "ignore"))[:1300]
    if len(ids) < 600:
        print(f"skip perplexity: only {len(ids)} held-out tokens on this machine")
        return
    ppl = {}
    for tag, flags in (("f32", []), ("int8", ["--weights=int8"]), ("int4-g32", ["--weights=int4"]),
                       ("int4-g64", ["--weights=int4", "--int4-group=64"])):
        out = compile_module(bin_dir, os.path.join(model_dir, "model.onnx"),
                             os.path.join(work, f"default.{tag}.so"), *flags)
        mod = rt.load(out)
        ppl[tag] = perplexity(mod, ids)
        mod.free()
    print(f"held-out perplexity over {len(ids)} tokens: " +
          ", ".join(f"{k} {v:.3f}" for k, v in ppl.items()))
    checks.check(ppl["int8"] <= ppl["f32"] * 1.01, "default model: int8 perplexity within 1% of f32")
    # Measured +2.2% (groups of 32) and +4.7% (64) with the least-squares
    # scales (+3.7% and +5.3% with the best candidate scale alone).
    for tag, bound in (("int4-g32", 1.05), ("int4-g64", 1.05)):
        checks.check(ppl[tag] <= ppl["f32"] * bound,
                     f"default model: {tag} perplexity within {bound - 1:.0%} of f32 "
                     f"({ppl[tag] / ppl['f32'] - 1:+.1%})")


def check_bad_files(checks, bin_dir, rt, work):
    src = os.path.join(work, "gpt2-tiny.onnx")
    other = os.path.join(work, "llama-tiny.onnx")
    d = os.path.join(work, "bad")
    os.makedirs(d, exist_ok=True)
    so = compile_module(bin_dir, src, os.path.join(d, "m.so"), "--weights-file=sidecar")
    side = os.path.join(d, "m.weights")
    good = open(side, "rb").read()

    def refused(what, fragment, status):
        try:
            rt.load(so).free()
            checks.check(False, f"{what}: refused (it loaded)")
        except hc.HastenError as e:
            checks.check(fragment in str(e) and e.status == status,
                         f"{what}: refused with status {e.status}: {str(e)[:150]}")

    os.remove(side)
    refused("missing sidecar", "m.weights cannot be opened", 2)
    compile_module(bin_dir, other, os.path.join(d, "other.so"), "--weights-file=sidecar")
    shutil.copy(os.path.join(d, "other.weights"), side)
    refused("another model's sidecar", "belong to another compile", 4)
    # The same model with one weight changed: a sidecar of the same size,
    # told apart by its digest.
    model = onnx.load(src)
    init = next(i for i in model.graph.initializer if numpy_helper.to_array(i).size > 1000)
    changed = numpy_helper.to_array(init).copy()
    changed.flat[0] += 1.0
    init.CopyFrom(numpy_helper.from_array(changed, init.name))
    onnx.save(model, os.path.join(d, "retrained.onnx"))
    compile_module(bin_dir, os.path.join(d, "retrained.onnx"), os.path.join(d, "retrained.so"),
                   "--weights-file=sidecar")
    retrained = open(os.path.join(d, "retrained.weights"), "rb").read()
    checks.check(len(retrained) == len(good) and retrained != good,
                 "a retrained model's sidecar has the same size, other bytes")
    open(side, "wb").write(retrained)
    refused("a retrained model's sidecar (same size)", "belong to another compile", 4)
    open(side, "wb").write(good[:len(good) // 2])
    refused("truncated sidecar", "truncated", 3)
    open(side, "wb").write(b"not weights" + good[11:])
    refused("foreign file as sidecar", "not a hasten weights file", 3)
    damaged = bytearray(good)
    damaged[len(good) // 2] ^= 0x10
    open(side, "wb").write(bytes(damaged))
    mod = rt.load(so)   # the header matches: loads without reading the weights
    try:
        mod.verify_weights()
        checks.check(False, "damaged weight byte: hasten_module_verify_weights passed")
    except hc.HastenError as e:
        checks.check("m.weights: the weights are damaged" in str(e) and e.status == 3,
                     f"damaged weight byte: caught by verify_weights: {str(e)[:120]}")
    mod.free()
    open(side, "wb").write(good)
    mod = rt.load(so)
    mod.verify_weights()
    checks.check(True, "the intact sidecar verifies")
    mod.free()
    # An embedded module: a damaged weight byte passes the load (the segment
    # is outside the module hash) and fails verification; a damaged code
    # byte still fails the load.
    emb = compile_module(bin_dir, src, os.path.join(d, "e.so"))
    data = bytearray(open(emb, "rb").read())
    section = subprocess.run(["readelf", "-SW", emb], capture_output=True, text=True).stdout
    offset = int(re.search(r"\.hasten\.weights\s+PROGBITS\s+\S+\s+(\S+)", section).group(1), 16)
    data[offset + 100] ^= 0x01
    open(emb, "wb").write(bytes(data))
    mod = rt.load(emb)
    try:
        mod.verify_weights()
        checks.check(False, "embedded: damaged weight byte passed verify_weights")
    except hc.HastenError as e:
        checks.check(e.status == 3, "embedded: a damaged weight byte fails verify_weights")
    mod.free()
    data[offset + 100] ^= 0x01
    # A byte of the module's code (its .text, which the module hash covers;
    # a fixed offset could land in the manifest, another refusal).
    text = int(re.search(r"\.text\s+PROGBITS\s+\S+\s+(\S+)", section).group(1), 16)
    data[text + 40] ^= 0x01
    open(emb, "wb").write(bytes(data))
    try:
        rt.load(emb).free()
        checks.check(False, "embedded: a damaged code byte loaded")
    except hc.HastenError as e:
        checks.check("corrupt module" in str(e) or "not a loadable" in str(e),
                     f"embedded: a damaged code byte is refused: {str(e)[:100]}")


def mapped_at(path):
    """The start addresses of this process's mappings of `path`."""
    with open("/proc/self/maps") as maps:
        return sorted(line.split("-")[0] for line in maps if line.rstrip().endswith(path))


def check_reloaded_modules(checks, bin_dir, rt, work, rng):
    """A module loaded where a freed one was mapped computes with its own
    weights: the runtime finds what it packed from a weight by the weight's
    address, and the second module's weights of the same shape sit at the
    first one's addresses: in the weight segment (embedded or sidecar, f32
    or bf16), or in the library's image (a weight under ExternalizeWeights'
    64 bytes stays a constant of the code)."""
    cases = [(storage, precision, tolerance, 256)
             for storage in ("embed", "sidecar")
             for precision, tolerance in (("f32", 1e-5), ("bf16", 2e-2))]
    cases.append(("embed", "f32", 1e-5, 2))
    for storage, precision, tolerance, k in cases:
        n = 256 if k == 256 else 3
        tag = (f"{storage}, {precision} weights" if k == 256 else
               f"a {2 * k * n * 4}-byte weight in the library's image")
        x = rng.standard_normal((2, 32, k)).astype(np.float32)
        weights, modules = [], []
        for name in ("first", "second"):
            # Batched constant weights: packed by the runtime at first use.
            w = rng.standard_normal((2, k, n)).astype(np.float32)
            onnx_path = os.path.join(work, f"reload-{name}.onnx")
            graph = helper.make_graph(
                [helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")], "mm",
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 32, n])],
                [numpy_helper.from_array(w, "w")])
            onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]),
                      onnx_path)
            weights.append(w)
            modules.append(compile_module(
                bin_dir, onnx_path, os.path.join(work, f"reload-{name}-{storage}-{k}.so"),
                f"--weights={precision}", f"--weights-file={storage}"))
        places = []
        for w, so in zip(weights, modules):
            module = rt.load(so)
            places.append(mapped_at(so) + mapped_at(so[:-3] + ".weights"))
            y = module.run("main", [x])[0]
            module.free()
            ref = x.astype(np.float64) @ w
            err = np.abs(y - ref).max() / np.abs(ref).max()
            checks.check(err < tolerance,
                         f"reloaded modules ({tag}): {os.path.basename(so)} computes with its "
                         f"own weights (max error {err:.1e} of max |y|)")
        # Otherwise the check above proves nothing on this host.
        checks.check(places[0] == places[1],
                     f"reloaded modules ({tag}): the second module was mapped where the first "
                     f"was ({places[1]})")


def main():
    build = sys.argv[1]
    bin_dir = os.path.join(build, "bin")
    rt = hc.Runtime(os.path.join(build, "lib"))
    checks = e2e_common.Checks()
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory(prefix="hasten-weights-") as work:
        check_kernels(checks, bin_dir, work, rng)
        check_portable_kernels(checks, bin_dir, work, rng)
        check_quantized_models(checks, bin_dir, rt, work, rng)
        check_matmul_nbits(checks, bin_dir, rt, work, rng)
        check_decoders(checks, bin_dir, rt, work)
        check_shared_mapping(checks, build, work)
        check_reloaded_modules(checks, bin_dir, rt, work, rng)
        check_default_model(checks, bin_dir, rt, work)
        check_bad_files(checks, bin_dir, rt, work)
    print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
