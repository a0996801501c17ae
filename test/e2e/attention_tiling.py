#!/usr/bin/env python3
"""End to end: hasten.attention compiled both ways, the runtime's kernel
(--attention=kernel) and the tiled IR of --hasten-tile-attention
(--attention=generated), against a float64 numpy reference, on shapes
chosen to break tiling: lengths that are not tile multiples, causal with
q_len < kv_len, additive masks broadcast over batch, heads or queries,
boolean masks, MHA/GQA/MQA, one-token decode (split-KV when generated),
a long prefill, and hand-written tilings (tiny tiles, two levels of query
tiles, no tile skipping, no diagonal-only masking) that the pass must follow.

Each case is a .mlir module (hasten-compile takes tensor-level MLIR as
input); inputs are random, outputs compared with max |a - b| <= 2e-5 +
1e-4 * max |ref|.

usage: attention_tiling.py BUILD_BIN_DIR [--compile-flag=FLAG ...]
Prints one line per check and '<n> passed, <m> failed'; exits 1 on failure.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "models"))
import e2e_common as e2e  # noqa: E402

ATOL, RTOL = 2e-5, 1e-4
CUDA_MAX_MACS = 5_000_000


def tiling(block_q, tile_kv, skip=True, diagonal=True, splits=1, tile_q=None):
    return (f'tiling(#hasten.attention_tiling<target = "cpu", block_q = {block_q}, '
            f'tile_q = {tile_q or block_q}, tile_kv = {tile_kv}, kv_splits = {splits}, '
            f'skip_masked = {str(skip).lower()}, diagonal_mask = {str(diagonal).lower()}, '
            f'warps = 0, mma = "", smem_layout = "row", vector_lanes = 16>)')


# name, batch, heads, kv_heads, q_len, kv_len, head_dim, causal,
# mask (None, or (shape, "f32" or "i1")), tiling (None: planned).
CASES = [
    ("mha-plain", 2, 4, 4, 37, 37, 16, False, None, None),
    ("gqa-causal", 1, 8, 2, 100, 130, 32, True, None, None),
    ("mqa-causal-tiny-tiles", 1, 4, 1, 45, 45, 16, True, None, tiling(8, 16)),
    ("causal-no-skip", 1, 2, 2, 50, 70, 16, True, None, tiling(16, 16, skip=False, diagonal=False)),
    ("causal-skip-full-masking", 1, 2, 2, 50, 70, 16, True, None,
     tiling(16, 16, skip=True, diagonal=False)),
    ("additive-mask-rows", 2, 4, 4, 33, 47, 16, False, ((1, 1, 33, 47), "f32"), None),
    ("additive-mask-padding", 2, 4, 2, 20, 20, 16, True, ((2, 1, 1, 20), "f32"), tiling(8, 8)),
    ("bool-mask", 1, 4, 4, 19, 23, 16, False, ((1, 4, 19, 23), "i1"), None),
    ("decode", 1, 12, 12, 1, 300, 64, True, None, None),
    ("decode-gqa-split", 2, 8, 2, 1, 129, 32, False, None, tiling(1, 16, splits=5)),
    ("long-prefill", 1, 2, 2, 700, 700, 64, True, None, None),
    # The kernel's largest head dim, GQA, q_len < kv_len, a 6-row last block.
    ("long-prefill-head-dim-256", 1, 4, 2, 1030, 1100, 256, True, None, None),
    # Head dim 256, short enough to emulate: the tensor-core kernels' widest
    # fragments and smallest key tiles (registers and shared memory).
    ("head-dim-256", 1, 2, 1, 40, 50, 256, True, ((1, 1, 40, 50), "f32"), None),
    ("two-level-causal", 1, 4, 2, 75, 90, 16, True, None, tiling(32, 16, tile_q=8)),
    ("two-level-masked", 2, 2, 2, 41, 41, 16, False, ((2, 1, 1, 41), "f32"),
     tiling(16, 8, tile_q=4)),
    # Decode with a padding mask, and with a boolean mask that leaves one
    # key in 50 (whole key partitions see nothing but masked keys).
    ("decode-padding-mask", 2, 4, 2, 1, 77, 32, True, ((2, 1, 1, 77), "f32"), None),
    ("decode-sparse-bool-mask", 1, 4, 4, 1, 400, 16, False, ((1, 4, 1, 400), "i1-sparse"),
     tiling(1, 16, splits=7)),
    # Query rows that see no key at all (every third, in the first batch):
    # zeros, as the op defines, in prefill and in split-KV decode.
    ("bool-mask-empty-rows", 2, 4, 2, 19, 40, 16, False, ((2, 4, 19, 40), "i1-emptyrows"),
     tiling(8, 16)),
    ("decode-empty-row", 2, 4, 4, 1, 100, 16, False, ((2, 1, 1, 100), "i1-emptyrows"),
     tiling(1, 16, splits=3)),
]


def module_text(case, dtype="f32"):
    name, b, h, kvh, s, t, d, causal, mask, tile = case
    q = f"tensor<{b}x{h}x{s}x{d}x{dtype}>"
    kv = f"tensor<{b}x{kvh}x{t}x{d}x{dtype}>"
    args = [f"%q: {q}", f"%k: {kv}", f"%v: {kv}"]
    mask_part = ""
    if mask:
        shape, elem = mask
        elem = elem.split('-')[0]
        mtype = f"tensor<{'x'.join(map(str, shape))}x{dtype if elem == 'f32' else elem}>"
        args.append(f"%m: {mtype}")
        mask_part = f" mask(%m : {mtype})"
    attrs = (" causal" if causal else "") + (" " + tile if tile else "")
    return (f"func.func @main({', '.join(args)}) -> {q} {{\n"
            f"  %o = hasten.attention %q, %k, %v{mask_part} heads({h}, {kvh}){attrs}"
            f" : {q}, {kv}, {kv} -> {q}\n"
            f"  return %o : {q}\n}}\n")


def reference(case, q, k, v, m):
    _, b, h, kvh, s, t, d, causal, mask, _ = case
    group = h // kvh
    kd = np.repeat(k.astype(np.float64), group, axis=1)
    vd = np.repeat(v.astype(np.float64), group, axis=1)
    scores = q.astype(np.float64) @ kd.transpose(0, 1, 3, 2) / np.sqrt(d)
    if mask:
        scores = np.where(m, scores, -np.inf) if mask[1].startswith("i1") else scores + m
    if causal:
        i, j = np.arange(s)[:, None], np.arange(t)[None, :]
        scores = np.where(j > i + t - s, -np.inf, scores)
    # A row with no visible key attends to nothing: zeros.
    top = scores.max(-1, keepdims=True)
    p = np.exp(scores - np.where(np.isneginf(top), 0.0, top))
    total = p.sum(-1, keepdims=True)
    return np.divide(p, total, out=np.zeros_like(p), where=total > 0) @ vd


def to_half(x, kind):
    """x rounded to bf16 (to nearest, ties to even) or f16, back in f32."""
    if kind == "f16":
        return x.astype(np.float16).astype(np.float32)
    bits = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(np.float32)


# Tensor-core modes: the products' operands are rounded to bf16 or f16, so
# they are checked against the reference of the rounded Q, K and V; what
# remains is the rounding of the probabilities before P V (unit roundoff
# 2^-9 for bf16, 2^-11 for f16), at most that much of max |V| in the
# output, with half again for the f32 sums.
HALF_BOUND = {"bf16": 1.5 * 2.0 ** -9, "f16": 1.5 * 2.0 ** -11}

# Models in f16 (attention operands and output f16): the tensor-core
# kernels copy K and V tiles with cp.async instead of converting them.
# Checked against the reference of the same f16 values, within the
# probabilities' rounding and the output's (half an f16 ulp).
F16_MODEL_CASES = ("gqa-causal", "additive-mask-padding", "bool-mask", "two-level-causal")


def random_inputs(case, rng, dtype):
    """Q, K, V and the mask (or None) of a case, as hasten-run inputs too:
    boolean masks keep about 70% of the keys (2% for "i1-sparse"; none in
    every third row of the first batch for "i1-emptyrows"),
    additive ones mask 30% with a large negative bias (-1e9, or -1e4 in
    f16) plus noise in f32; every row sees its first key."""
    name, b, h, kvh, s, t, d, causal, mask, _ = case
    q = rng.standard_normal((b, h, s, d)).astype(dtype)
    k = rng.standard_normal((b, kvh, t, d)).astype(dtype)
    v = rng.standard_normal((b, kvh, t, d)).astype(dtype)
    inputs = {"arg0": q, "arg1": k, "arg2": v}
    m = None
    if mask:
        shape, elem = mask
        if elem.startswith("i1"):
            m = rng.random(shape) < (0.02 if elem == "i1-sparse" else 0.7)
            m[..., 0] = True  # every row sees a key
            if elem == "i1-emptyrows":
                m[0, ..., ::3, :] = False  # but these rows of the first batch
        else:
            big = -1e9 if dtype == np.float32 else -1e4
            m = np.where(rng.random(shape) < 0.3, big, 0.0).astype(dtype)
            m[..., 0] = 0.0
            if dtype == np.float32:
                m += rng.standard_normal(shape).astype(np.float32) * 0.1
        inputs["arg3"] = m
    return q, k, v, m, inputs


def run_f16_model(case, bin_dir, work, fake_cuda, rng):
    """The case as an f16 model on both tensor-core kernels: (name, ok,
    message) per mode."""
    name = case[0]
    q, k, v, m, inputs = random_inputs(case, rng, np.float16)
    expected = reference(case, q.astype(np.float32), k.astype(np.float32),
                         v.astype(np.float32), None if m is None else m.astype(
                             np.float32) if m.dtype != bool else m)
    source = os.path.join(work, name + ".f16.mlir")
    with open(source, "w") as f:
        f.write(module_text(case, "f16"))
    results = []
    for mode, gpu, arch in (("f16-model-sm80", "sm_80", "100"), ("f16-model-volta", "sm_70", "72")):
        module = os.path.join(work, f"{name}.{mode}.so")
        proc = subprocess.run([os.path.join(bin_dir, "hasten-compile"), source, "-o", module,
                               "--target=cuda", f"--gpu={gpu}", "--gpu-precision=f16"],
                              capture_output=True, text=True)
        try:
            if proc.returncode:
                raise RuntimeError(proc.stderr.strip()[-400:])
            env = {"HASTEN_NUM_THREADS": "2", "HASTEN_CUDA_DRIVER": fake_cuda,
                   "HASTEN_CUBLASLT": fake_cuda, "FAKE_CUDA_ARCH": arch}
            out_dir = e2e.run_module(bin_dir, module, inputs, work, f"{name}.{mode}", env=env)
        except RuntimeError as e:
            results.append((f"{name} ({mode})", False, str(e)))
            continue
        out = np.load(os.path.join(out_dir, "result0.npy"))
        err = float(np.max(np.abs(out.astype(np.float64) - expected)))
        bound = ATOL + HALF_BOUND["f16"] * float(np.max(np.abs(v.astype(np.float32)))) \
            + 2.0 ** -11 * float(np.max(np.abs(expected)))
        ok = err <= bound and out.shape == expected.shape and out.dtype == np.float16
        results.append((f"{name} ({mode})", ok,
                        f"max err {err:.2e} (bound {bound:.1e}), {out.dtype} output"))
    return results


EXP2_MODULE = """#map = affine_map<(d0) -> (d0)>
func.func @main(%x: tensor<4096xf32>) -> tensor<4096xf32> {
  %e = tensor.empty() : tensor<4096xf32>
  %r = linalg.generic {indexing_maps = [#map, #map], iterator_types = ["parallel"]}
      ins(%x : tensor<4096xf32>) outs(%e : tensor<4096xf32>) {
  ^bb0(%a: f32, %o: f32):
    %y = math.exp2 %a : f32
    linalg.yield %y : f32
  } -> tensor<4096xf32>
  return %r : tensor<4096xf32>
}
"""


def check_exp2(bin_dir, work, compile_flags):
    """The base-2 softmax of the generated code runs on the compiler's own
    exp2 (--hasten-approximate-math): relative error <= 3e-7 over
    [-126, 127], exactly 0 at or below -127, inf at or above 128, NaN kept.
    Yields (label, ok, message)."""
    source = os.path.join(work, "exp2.mlir")
    with open(source, "w") as f:
        f.write(EXP2_MODULE)
    module = os.path.join(work, "exp2.so")
    proc = subprocess.run([os.path.join(bin_dir, "hasten-compile"), source, "-o", module]
                          + compile_flags, capture_output=True, text=True)
    if proc.returncode:
        yield "exp2", False, proc.stderr.strip()[-400:]
        return
    edges = np.array([-np.inf, -1e30, -127.0, 128.0, 1e30, np.inf, np.nan, 0.0], np.float32)
    x = np.concatenate([np.linspace(-126, 127, 4096 - len(edges), dtype=np.float32), edges])
    try:
        out_dir = e2e.run_module(bin_dir, module, {"arg0": x}, work, "exp2")
    except RuntimeError as e:
        yield "exp2", False, str(e)
        return
    y = np.load(os.path.join(out_dir, "result0.npy"))
    inner = slice(0, 4096 - len(edges))
    rel = float(np.max(np.abs(y[inner] / np.exp2(x[inner].astype(np.float64)) - 1)))
    yield "exp2 over [-126, 127]", rel <= 3e-7, f"max relative error {rel:.2e} (bound 3e-7)"
    tail = y[4096 - len(edges):]
    want = np.array([0, 0, 0, np.inf, np.inf, np.inf, np.nan, 1], np.float32)
    ok = bool(np.all((tail[:6] == want[:6])) and np.isnan(tail[6]) and abs(tail[7] - 1) < 2e-7)
    yield "exp2 at the edges", ok, f"{tail.tolist()} for {edges.tolist()}"


def main():
    args = e2e.parse_args("bin_dir")
    bin_dir = args.bin_dir
    passed = failed = 0
    fake_cuda = os.path.join(os.path.dirname(os.path.abspath(bin_dir)), "lib",
                             "libhasten_fake_cuda.so")
    if not os.path.exists(fake_cuda):
        print(f"CUDA mode skipped: no stand-in driver at {fake_cuda}")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as work:
        for label, ok, message in check_exp2(bin_dir, work, args.compile_flag):
            print(f"{'PASS' if ok else 'FAIL'} {label}: {message}")
            passed += ok
            failed += not ok
        for case in CASES:
            name, b, h, kvh, s, t, d, causal, mask, _ = case
            q, k, v, m, inputs = random_inputs(case, rng, np.float32)
            expected = reference(case, q, k, v, m)
            source = os.path.join(work, name + ".mlir")
            with open(source, "w") as f:
                f.write(module_text(case))
            modes = ["kernel", "generated"]
            if os.path.exists(fake_cuda) and b * h * s * t * d <= CUDA_MAX_MACS:
                modes.append("cuda")
                # Prefill on tensor cores (the SIMT kernel keeps decode and
                # head dims that are not multiples of 16).
                if s > 1 and d % 16 == 0:
                    modes += ["cuda-bf16", "cuda-f16", "cuda-volta-f16"]
            for mode in modes:
                module = os.path.join(work, f"{name}.{mode}.so")
                half = mode.split("-")[-1] if mode.startswith("cuda-") else None
                if mode == "cuda":
                    flags = ["--target=cuda", "--gpu=sm_70"]
                elif half:
                    gpu = "sm_70" if "volta" in mode else "sm_80"
                    flags = ["--target=cuda", f"--gpu={gpu}", f"--gpu-precision={half}"]
                else:
                    flags = [f"--attention={mode}"] + args.compile_flag
                proc = subprocess.run([os.path.join(bin_dir, "hasten-compile"), source, "-o",
                                       module] + flags, capture_output=True, text=True)
                try:
                    if proc.returncode:
                        raise RuntimeError(proc.stderr.strip()[-400:])
                    # Two threads everywhere, so that the multi-threaded
                    # paths run on any host; CUDA in the emulator, as an
                    # sm_72 device (which loads the PTX).
                    env = {"HASTEN_NUM_THREADS": "2"}
                    # sm_80 tensor-core modes as an sm_100 device (no sm_80
                    # cubin fits it: the sm_80 PTX loads).
                    if mode.startswith("cuda"):
                        env.update(HASTEN_CUDA_DRIVER=fake_cuda, HASTEN_CUBLASLT=fake_cuda,
                                   FAKE_CUDA_ARCH="100" if half and "volta" not in mode
                                   else "72")
                    out_dir = e2e.run_module(bin_dir, module, inputs, work, f"{name}.{mode}",
                                             env=env)
                except RuntimeError as e:
                    print(f"FAIL {name} ({mode}): {e}")
                    failed += 1
                    continue
                out = np.load(os.path.join(out_dir, "result0.npy"))
                if half:
                    rounded = reference(case, to_half(q, half), to_half(k, half),
                                        to_half(v, half), m)
                    err = float(np.max(np.abs(out - rounded)))
                    bound = ATOL + HALF_BOUND[half] * float(np.max(np.abs(to_half(v, half))))
                else:
                    err = float(np.max(np.abs(out - expected)))
                    bound = ATOL + RTOL * float(np.max(np.abs(expected)))
                ok = err <= bound and out.shape == expected.shape
                print(f"{'PASS' if ok else 'FAIL'} {name} ({mode}): max err {err:.2e} "
                      f"(bound {bound:.1e})")
                passed += ok
                failed += not ok
        if os.path.exists(fake_cuda):
            for case in CASES:
                if case[0] not in F16_MODEL_CASES:
                    continue
                for label, ok, message in run_f16_model(case, bin_dir, work, fake_cuda, rng):
                    print(f"{'PASS' if ok else 'FAIL'} {label}: {message}")
                    passed += ok
                    failed += not ok
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
