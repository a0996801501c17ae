#!/usr/bin/env python3
"""The CUDA target without a GPU, and with one when the machine has it.

Every test model the CUDA target supports compiles with
--target=cuda --gpu=sm_70,sm_75,sm_80,sm_90; its embedded device code is one
bundle (include/hasten/CudaBundle.h) holding cubins for sm_75, sm_80 and
sm_90 (CUDA ELF files) and the PTX for sm_70, and the toolkit's ptxas
accepts that PTX for sm_75, sm_80 and sm_90.

Each module also runs against the stand-in driver (test/tools/Inputs/
fake_cuda.c, as an sm_72 device, which no cubin fits, so that it loads the
PTX), which runs every kernel in the PTX emulator (ptx_emulator.cpp): every
pointer a launch passes is device memory, no kernel touches memory outside
the device allocations, every allocation is freed, and the outputs equal the
CPU target's (the same tolerance as on a GPU), as do the default decoder's
greedy tokens.

Prefill attention on tensor cores (--gpu-precision=bf16 and f16, for
sm_80,sm_90) compiles too: its PTX holds mma.sync m16n8k16 and ldmatrix, and
ptxas accepts it (attention_tiling.py checks what it computes, emulated);
the default decoder built that way generates the CPU's greedy tokens.

With a CUDA device (libcuda loads and finds one), each module also runs on
it, and its outputs are compared with the CPU target's on the same inputs
(max |gpu - cpu| <= 1e-5 max |cpu| for f32); without one that part says it
is skipped and why.

--prepare DIR writes, instead, what scripts/gpu-check.sh carries to a GPU
machine: the CUDA modules, their inputs and the CPU outputs (DIR/cases.json),
and attention-tiling's prefills that are too long for the emulator;
--compare DIR OUT checks the outputs a GPU machine wrote into OUT.

usage: cuda_pipeline.py BUILD_BIN [--prepare DIR | --compare DIR OUT]
"""
import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "tools", "Inputs"))
from cuda_bundle import bundles  # noqa: E402
from e2e_common import Checks  # noqa: E402

GPUS = "sm_70,sm_75,sm_80,sm_90"
CUBIN_ARCHS = (75, 80, 90)
PTX_ARCH = 70
PTXAS = os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "ptxas")
EM_CUDA = 190

MODELS = os.path.join(ROOT, "test", "models")
# (name, path or make_test_model.py case, dimension values for dynamic inputs)
SUPPORTED = [
    ("gemm", "case:gemm_trans_b_bias"),
    ("matmul_ragged", "case:matmul_ragged"),
    ("conv2d", "case:conv2d"),
    ("dit_tiny", os.path.join(MODELS, "denoisers", "dit_tiny.onnx")),
    ("gpt2_masked_fill", os.path.join(MODELS, "torch", "gpt2_masked_fill.onnx")),
    ("hf_gpt2_padded", os.path.join(MODELS, "torch", "hf_gpt2_padded.onnx")),
    ("llama_gqa", os.path.join(MODELS, "torch", "llama_gqa.onnx")),
    ("whisper_split_scale", os.path.join(MODELS, "torch", "whisper_split_scale.onnx")),
    ("neg_softmax_axis", os.path.join(MODELS, "torch", "neg_softmax_axis.onnx")),
    ("cnn_u8_per_channel", os.path.join(MODELS, "quantized", "cnn_u8_per_channel.onnx")),
    ("mlp_s8_per_tensor", os.path.join(MODELS, "quantized", "mlp_s8_per_tensor.onnx")),
    ("mlp_u8_weights", os.path.join(MODELS, "quantized", "mlp_u8_weights.onnx")),
    # Dynamic quantization: the host reads the scale a kernel computed
    # through a copy.
    ("mlp_dynamic", os.path.join(MODELS, "quantized", "mlp_dynamic.onnx")),
    # A decoder's graph (`main`, past and present as tensors); its prefill and
    # decode entries compile with it (their scalar cache length on the host).
    ("default_decoder", os.path.join(MODELS, "default", "model.onnx")),
]
# Models whose float matmuls are none (integer products, convolutions only),
# and models that are nothing but GEMMs (so no kernels, no device code).
NO_GEMMS = {"cnn_u8_per_channel", "mlp_s8_per_tensor", "mlp_u8_weights", "mlp_dynamic"}
# Models whose MLPs apply tanh-GELU after a GEMM's bias: cuBLASLt's GELU
# epilogue computes it (gpt2_masked_fill's GELU is erf's: a generated kernel).
GELU_EPILOGUES = {"default_decoder", "dit_tiny"}
ALL_GEMMS = {"matmul_ragged"}
# Greedy generation on the GPU must give the CPU target's tokens.
GENERATE = [("default_decoder", "3,14,15,92,65,35,89,79", 16)]

def prepare_long_attention(c, bin_dir, work, cases):
    """For the GPU check only: attention_tiling.py's prefills too long for the
    emulator, compiled for CUDA, with the CPU target's outputs (which
    attention-tiling checks against float64 numpy) as the reference."""
    import attention_tiling
    rng = np.random.default_rng(11)
    for case in attention_tiling.CASES:
        name, b, h, kvh, s, t, d, _, mask, _ = case
        if mask or b * h * s * t * d <= attention_tiling.CUDA_MAX_MACS:
            continue
        tag = "attention_" + name.replace("-", "_")
        source = os.path.join(work, tag + ".mlir")
        with open(source, "w") as f:
            f.write(attention_tiling.module_text(case))
        module, cpu_module = (os.path.join(work, tag + ext) for ext in (".cuda.so", ".cpu.so"))
        for out, flags in ((module, ["--target=cuda", f"--gpu={GPUS}"]), (cpu_module, [])):
            p = subprocess.run([os.path.join(bin_dir, "hasten-compile"), source, "-o", out]
                               + flags, capture_output=True, text=True)
            c.check(p.returncode == 0, f"{tag}: compiles ({' '.join(flags) or 'cpu'})"
                    + ("" if p.returncode == 0 else f": {p.stderr.strip()[:300]}"))
        inputs = {}
        for arg, shape in (("arg0", (b, h, s, d)), ("arg1", (b, kvh, t, d)),
                           ("arg2", (b, kvh, t, d))):
            path = os.path.join(work, f"{tag}.{arg}.npy")
            np.save(path, rng.standard_normal(shape).astype(np.float32))
            inputs[arg] = path
        cpu_dir = os.path.join(work, tag + ".cpu")
        p = run(bin_dir, cpu_module, inputs, cpu_dir)
        c.check(p.returncode == 0, f"{tag}: runs on the CPU")
        cases.append({"name": tag, "module": os.path.basename(module),
                      "inputs": {k: os.path.basename(v) for k, v in inputs.items()},
                      "cpu_outputs": os.path.basename(cpu_dir)})


TENSOR_CORE_GPUS = "sm_80,sm_90"
TENSOR_CORE_PTX = (b"mma.sync.aligned.m16n8k16.row.col.f32.{t}.{t}.f32",
                   b"ldmatrix.sync.aligned.m8n8.x4.shared.b16",
                   b"ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16")


def tensor_core_attention(c, bin_dir, work, cases, prepare):
    """Prefill attention on tensor cores (--gpu-precision=bf16 and f16 for
    sm_80,sm_90): the sm_80 PTX holds mma.sync m16n8k16 of that type and
    ldmatrix (transposed for V), and ptxas accepts it for sm_80 and sm_90
    (attention_tiling.py checks the emulated numerics against numpy). For
    the GPU check, every prefill case whose head dim is a multiple of 16
    (the long 256-wide one aside, for the carried size), with inputs rounded to
    bf16 and the CPU target's outputs on them as the reference, within what
    the rounding of the probabilities allows (unit roundoff of max |V|, half
    again for the sums)."""
    import attention_tiling
    rng = np.random.default_rng(13)
    compile_tool = os.path.join(bin_dir, "hasten-compile")
    for case in attention_tiling.CASES:
        name, b, h, kvh, s, t, d, _, mask, _ = case
        if s == 1 or d % 16 or (d > 128 and b * h * s * t * d > attention_tiling.CUDA_MAX_MACS):
            continue
        if not prepare and name not in ("gqa-causal", "additive-mask-padding"):
            continue
        tag = "tensor_cores_" + name.replace("-", "_")
        source = os.path.join(work, tag + ".mlir")
        with open(source, "w") as f:
            f.write(attention_tiling.module_text(case))
        inputs = {}
        shapes = [("arg0", (b, h, s, d)), ("arg1", (b, kvh, t, d)), ("arg2", (b, kvh, t, d))]
        for arg, shape in shapes:
            value = attention_tiling.to_half(rng.standard_normal(shape).astype(np.float32), "bf16")
            path = os.path.join(work, f"{tag}.{arg}.npy")
            np.save(path, value)
            inputs[arg] = path
        if mask:
            shape, elem = mask
            value = (rng.random(shape) < 0.7) if elem.startswith("i1") else \
                np.where(rng.random(shape) < 0.3, -1e9, 0.0).astype(np.float32)
            value[..., 0] = True if elem.startswith("i1") else 0.0
            path = os.path.join(work, f"{tag}.arg3.npy")
            np.save(path, value)
            inputs["arg3"] = path
        cpu_module = os.path.join(work, tag + ".cpu.so")
        cpu_dir = os.path.join(work, tag + ".cpu")
        if prepare:
            subprocess.run([compile_tool, source, "-o", cpu_module], check=True,
                           capture_output=True)
            p = run(bin_dir, cpu_module, inputs, cpu_dir)
            c.check(p.returncode == 0, f"{tag}: runs on the CPU")
        max_v = float(np.max(np.abs(np.load(inputs["arg2"]))))
        # Volta's m8n8k4 kernel too: on a newer GPU the driver compiles its
        # sm_70 PTX (its PTX is checked in test/tools/cuda-tensor-cores.test).
        # The f32 SIMT kernel on the same inputs, for the GPU's timing table.
        variants = [("bf16", "bf16", 2.0 ** -9), ("f16", "f16", 2.0 ** -11),
                    ("volta_f16", "f16", 2.0 ** -11)]
        if prepare:
            variants.append(("simt_f32", "f32", 0.0))
        for variant, half, roundoff in variants:
            plain = variant.startswith("volta") or variant.startswith("simt")
            module = os.path.join(work, f"{tag}.{variant}.cuda.so")
            gpus = "sm_70" if variant.startswith("volta") else GPUS if half == "f32" \
                else TENSOR_CORE_GPUS
            p = subprocess.run([compile_tool, source, "--target=cuda", f"--gpu={gpus}",
                                f"--gpu-precision={half}", "-o", module],
                               capture_output=True, text=True)
            c.check(p.returncode == 0, f"{tag}: compiles with --gpu={gpus} --gpu-precision={half}"
                    + ("" if p.returncode == 0 else f": {p.stderr.strip()[:300]}"))
            if p.returncode:
                continue
            if plain:
                if prepare:
                    cases.append({"name": f"{tag}_{variant}", "module": os.path.basename(module),
                                  "inputs": {k: os.path.basename(v) for k, v in inputs.items()},
                                  "cpu_outputs": os.path.basename(cpu_dir),
                                  "atol": 2e-5 + 1.5 * roundoff * max_v if roundoff else None})
                continue
            images = (bundles(module) or [[]])[0]
            ptx = [blob for kind, arch, blob in images if kind == 1 and arch == 80]
            cubins = sorted(arch for kind, arch, _ in images if kind == 0)
            c.check(len(ptx) == 1 and cubins == [80, 90],
                    f"{tag} ({half}): PTX for sm_80, cubins for sm_80 and sm_90 ({cubins})")
            if not ptx:
                continue
            text = ptx[0]
            for pattern in TENSOR_CORE_PTX:
                pattern = pattern.replace(b"{t}", half.encode())
                c.check(pattern in text, f"{tag} ({half}): its PTX has {pattern.decode()}")
            if not prepare:
                ptx_path = os.path.join(work, f"{tag}.{half}.ptx")
                with open(ptx_path, "wb") as f:
                    f.write(text.rstrip(b"\0"))
                for arch in (80, 90):
                    q = subprocess.run([PTXAS, f"-arch=sm_{arch}", ptx_path, "-o",
                                        os.path.join(work, f"{tag}.{half}.sm_{arch}.cubin")],
                                       capture_output=True, text=True)
                    c.check(q.returncode == 0, f"{tag} ({half}): ptxas accepts its PTX for "
                            f"sm_{arch}" + ("" if q.returncode == 0 else f": {q.stderr[:300]}"))
                continue
            cases.append({"name": f"{tag}_{variant}", "module": os.path.basename(module),
                          "inputs": {k: os.path.basename(v) for k, v in inputs.items()},
                          "cpu_outputs": os.path.basename(cpu_dir),
                          "atol": 2e-5 + 1.5 * roundoff * max_v})


# The GEMMs' other precisions and the generated GEMM kernels, on models with
# projections and biases (a transposed-B Gemm, GPT-2, the DiT denoiser):
# (variant, flags, reference, bound relative to the reference's max |value|,
# least error that shows the precision was applied). TF32 and f16 round the
# operands' mantissas to 10 bits (unit roundoff 2^-11); bf16 GEMMs are
# compared with the CPU target's --weights=bf16 products, which round
# weights and activations the same way, as the CUDA issue asks (1e-3).
GEMM_MODELS = ["gemm", "hf_gpt2_padded", "dit_tiny"]
GEMM_VARIANTS = [
    ("generated", ["--gpu-gemm=generated"], "f32", 1e-5, 0.0),
    ("tf32", ["--gpu-precision=tf32"], "f32", 2e-3, 1e-5),
    ("f16", ["--gpu-precision=f16"], "f32", 2e-3, 1e-5),
    ("bf16", ["--gpu-precision=bf16"], "bf16", 1e-3, 0.0),
]


def gemm_variants(c, bin_dir, work, cases, prepare):
    """Each GEMM_MODELS model with each GEMM_VARIANTS variant, against the
    stand-in driver and cuBLASLt (the sm_80 PTX, as an sm_100 device), and
    for the GPU check."""
    compile_tool = os.path.join(bin_dir, "hasten-compile")
    for name in GEMM_MODELS:
        onnx_path = model_path(dict(SUPPORTED)[name], work)
        inputs = {k: os.path.join(work, f"{name}.{k}.npy") for k in inputs_for(onnx_path)}
        refs = {"f32": os.path.join(work, name + ".cpu")}
        bf16_module = os.path.join(work, name + ".cpu_bf16.so")
        subprocess.run([compile_tool, onnx_path, "--weights=bf16", "-o", bf16_module],
                       check=True, capture_output=True)
        refs["bf16"] = os.path.join(work, name + ".cpu_bf16")
        p = run(bin_dir, bf16_module, inputs, refs["bf16"])
        c.check(p.returncode == 0, f"{name}: runs on the CPU with --weights=bf16")
        for variant, flags, ref, rel, least in GEMM_VARIANTS:
            module = os.path.join(work, f"{name}.{variant}.cuda.so")
            p = subprocess.run([compile_tool, onnx_path, "--target=cuda",
                                f"--gpu={TENSOR_CORE_GPUS}", "-o", module] + flags,
                               capture_output=True, text=True)
            c.check(p.returncode == 0, f"{name}: compiles with {' '.join(flags)}"
                    + ("" if p.returncode == 0 else f": {p.stderr.strip()[:300]}"))
            if p.returncode:
                continue
            cases.append({"name": f"{name}_{variant}", "module": os.path.basename(module),
                          "inputs": {k: os.path.basename(v) for k, v in inputs.items()},
                          "cpu_outputs": os.path.basename(refs[ref]), "rel": rel})
            out_dir = os.path.join(work, f"{name}.{variant}.fake")
            env = dict(fake_env(bin_dir), FAKE_CUDA_ARCH="100")
            p = run(bin_dir, module, inputs, out_dir, env)
            c.check(p.returncode == 0, f"{name} ({variant}): runs emulated"
                    + ("" if p.returncode == 0 else f": {p.stderr.strip()[:300]}"))
            if p.returncode:
                continue
            worst = compare(c, name, out_dir, refs[ref],
                            f"emulated with {' '.join(flags)} (vs the CPU's {ref})", rel=rel)
            if least:
                c.check(worst >= least, f"{name} ({variant}): the operands were rounded "
                        f"(error {worst:.1e} of max |value|, at least {least:.0e})")


def timing_table(log_path):
    """The attention kernels' median latencies on the GPU, from the log
    run-on-gpu.sh wrote (each case's `--repeat 50` line), one row per shape:
    f32 SIMT, bf16 and f16 on sm_80+ tensor cores, f16 on Volta's m8n8k4
    (the driver compiling the sm_70 PTX)."""
    if not os.path.exists(log_path):
        return
    p50, name = {}, None
    for line in open(log_path):
        if line.startswith("== "):
            name = line[3:].strip()
        m = re.search(r"latency over \d+ runs: p50 ([0-9.]+) ms", line)
        if m and name:
            p50[name] = float(m.group(1))
    variants = ["simt_f32", "bf16", "f16", "volta_f16"]
    table = {}
    for n, ms in p50.items():
        if not n.startswith("tensor_cores_"):
            continue
        # The longest variant name that ends it ("volta_f16" before "f16").
        for v in sorted(variants, key=len, reverse=True):
            if n.endswith("_" + v):
                table.setdefault(n[len("tensor_cores_"):-len(v) - 1], {})[v] = ms
                break
    gemm_table(p50)
    decode_table(log_path)
    if not table:
        return
    print("attention prefill on the GPU, p50 ms (ratio: f32 SIMT / tensor cores)")
    print(f"{'case':<28} {'f32 SIMT':>9} {'bf16 mma':>15} {'f16 mma':>15} {'f16 m8n8k4':>15}")
    for shape in sorted(table):
        cells = [table[shape].get(v) for v in variants]
        row = f"{shape:<28} " + (f"{cells[0]:>9.3f}" if cells[0] else f"{'-':>9}")
        for cell in cells[1:]:
            ratio = f" ({cells[0] / cell:.2f}x)" if cell and cells[0] else ""
            row += f" {(f'{cell:.3f}' + ratio) if cell else '-':>15}"
        print(row)


def decode_table(log_path):
    """The decoders' decode speed on the GPU from run-on-gpu.sh's 200-token
    runs, with CUDA graphs (one launch per step) and without (every kernel
    and GEMM launched from the host)."""
    speed, name = {}, None
    for line in open(log_path):
        if line.startswith("== "):
            name = line[3:].strip()
        m = re.search(r"^decode: \d+ tokens in [0-9.]+ ms, ([0-9.]+) tokens/s \(([0-9.]+) ms", line)
        if m and name and name.endswith((".decode-graphs", ".decode-direct")):
            base, mode = name.rsplit(".decode-", 1)
            speed.setdefault(base, {})[mode] = (float(m.group(1)), float(m.group(2)))
    if not speed:
        return
    print("decode on the GPU, batch 1, 200 tokens (ratio: with graphs / without)")
    print(f"{'decoder':<36} {'graphs tok/s':>13} {'ms/token':>9} {'direct tok/s':>13} "
          f"{'ms/token':>9} {'ratio':>6}")
    for base, row in sorted(speed.items()):
        g, d = row.get("graphs"), row.get("direct")
        ratio = f"{g[0] / d[0]:.2f}x" if g and d and d[0] else "-"
        cells = "".join(f" {t:>13.1f} {ms:>9.3f}" if t else f" {'-':>13} {'-':>9}"
                        for t, ms in (g or (0, 0), d or (0, 0)))
        print(f"{base:<36}{cells} {ratio:>6}")


def gemm_table(p50):
    """Each GEMM_MODELS model's p50 latency on the GPU per GEMM variant:
    cuBLASLt in f32 (the default module), the generated f32 kernels, and
    cuBLASLt in TF32, f16 and bf16 (ratio: generated / that variant)."""
    rows = {name: {"cublaslt": p50.get(name)} for name in GEMM_MODELS}
    for name in GEMM_MODELS:
        for variant, *_ in GEMM_VARIANTS:
            rows[name][variant] = p50.get(f"{name}_{variant}")
    if not any(v for row in rows.values() for v in row.values()):
        return
    columns = ["cublaslt"] + [v for v, *_ in GEMM_VARIANTS]
    print("whole-model p50 ms on the GPU by GEMM variant (ratio: generated / variant)")
    print(f"{'model':<16}" + "".join(f"{c:>18}" for c in columns))
    for name, row in rows.items():
        base = row.get("generated")
        cells = []
        for column in columns:
            ms = row.get(column)
            ratio = f" ({base / ms:.2f}x)" if ms and base and column != "generated" else ""
            cells.append(f"{(f'{ms:.3f}' + ratio) if ms else '-':>18}")
        print(f"{name:<16}" + "".join(cells))


def model_path(source, work):
    if not source.startswith("case:"):
        return source
    case = source[len("case:"):]
    path = os.path.join(work, case + ".onnx")
    subprocess.run([sys.executable, os.path.join(ROOT, "test", "import", "Inputs",
                                                 "make_test_model.py"), case, path],
                   check=True, capture_output=True)
    return path


def inputs_for(onnx_path):
    """Random inputs for a model's graph inputs, consistent with its named
    dimensions: a batch is 1, any other name 5, and a sum of names
    ('past_sequence_length + sequence_length') their sum. Integer inputs are
    small non-negative values; attention masks are left-padded ones."""
    import onnx
    model = onnx.load(onnx_path, load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    rng = np.random.default_rng(7)

    def extent(d, i):
        if d.dim_value > 0:
            return d.dim_value
        if not d.dim_param:
            return 1 if i == 0 else 5
        return sum(1 if "batch" in name.strip() else 5 for name in d.dim_param.split("+"))

    values = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        t = value.type.tensor_type
        dims = [extent(d, i) for i, d in enumerate(t.shape.dim)]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type) \
            if hasattr(onnx.helper, "tensor_dtype_to_np_dtype") \
            else onnx.mapping.TENSOR_TYPE_TO_NP_TYPE[t.elem_type]
        if "mask" in value.name or dtype == np.bool_:
            # Left padding, as batched prompts have it: the first position
            # masked off (when there is more than one).
            mask = np.ones(dims, dtype)
            if dims and dims[-1] > 1:
                mask[..., 0] = 0
            values[value.name] = mask
        elif np.issubdtype(dtype, np.integer):
            values[value.name] = rng.integers(0, 8, dims).astype(dtype)
        else:
            values[value.name] = rng.standard_normal(dims).astype(dtype)
    return values


def run(bin_dir, module, inputs, out_dir, env=None):
    os.makedirs(out_dir, exist_ok=True)
    args = [os.path.join(bin_dir, "hasten-run"), module, "--output-dir", out_dir]
    for name, path in inputs.items():
        args += ["--input", f"{name}={path}"]
    return subprocess.run(args, capture_output=True, text=True, env=env)


def cuda_device(bin_dir, module, inputs, work):
    """None when this machine runs CUDA modules, else why not (hasten-run's
    error on loading one)."""
    p = run(bin_dir, module, inputs, os.path.join(work, "probe"))
    if p.returncode == 0:
        return None
    return p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "hasten-run failed"


def fake_checks(c, name, bin_dir, module, inputs, cpu_dir, work, kernels=True, flags=(),
                atol=None):
    """The module against the stand-in driver (see the docstring); a module
    whose work is all GEMMs has no kernels to load. Returns the number of
    GEMMs that ran on the stand-in cuBLASLt, and of those with a GELU
    epilogue."""
    log = os.path.join(work, name + ".fake.log")
    if os.path.exists(log):
        os.remove(log)
    env = fake_env(bin_dir, log)
    out_dir = os.path.join(work, name + ".fake")
    p = run(bin_dir, module, inputs, out_dir, env)
    c.check(p.returncode == 0, f"{name}: runs against the stand-in driver" + (
        "" if p.returncode == 0 else f": {p.stderr.strip()[:300]}"))
    text = open(log).read() if os.path.exists(log) else ""
    if kernels:
        c.check("load PTX for sm_70" in text, f"{name}: an sm_72 device gets the PTX")
    summary = [line for line in text.splitlines() if "live allocations at exit" in line]
    launches = re.search(r", launches (\d+),", summary[-1]) if summary else None
    emulated = re.search(r"launches emulated (\d+)$", summary[-1]) if summary else None
    gemms = re.search(r"cuBLASLt GEMMs (\d+)", summary[-1]) if summary else None
    gelus = re.search(r"GELU epilogue (\d+)", summary[-1]) if summary else None
    c.check(bool(launches and emulated and gemms)
            and (launches.group(1) != "0") == kernels
            and launches.group(1) == emulated.group(1)
            and "host pointers passed to kernels 0," in summary[-1]
            and "modules loaded at exit 0, live allocations at exit 0," in summary[-1],
            f"{name}: every kernel emulated, every kernel pointer device memory, everything "
            f"freed ({summary[-1] if summary else 'no summary'})")
    if p.returncode == 0:
        compare(c, name, out_dir, cpu_dir, "emulated" + (f" ({' '.join(flags)})" if flags
                                                        else ""), atol)
    return (int(gemms.group(1)) if gemms else 0), (int(gelus.group(1)) if gelus else 0)


def generated_ids(text):
    """The ids hasten-run --print-ids printed."""
    for line in text.splitlines():
        if line.startswith("ids: "):
            return line[len("ids: "):].strip()
    return None


def generate(bin_dir, module, prompt, count, env=None):
    return subprocess.run([os.path.join(bin_dir, "hasten-run"), module, "--generate",
                           "--prompt-ids", prompt, "--max-new-tokens", str(count),
                           "--print-ids"], capture_output=True, text=True, env=env)


def fake_env(bin_dir, log=None):
    fake = os.path.join(os.path.dirname(bin_dir.rstrip("/")), "lib", "libhasten_fake_cuda.so")
    env = dict(os.environ, HASTEN_CUDA_DRIVER=fake, HASTEN_CUBLASLT=fake, FAKE_CUDA_ARCH="72")
    if log:
        env["FAKE_CUDA_LOG"] = log
    return env


def compare(c, name, gpu_dir, cpu_dir, where="on the GPU", atol=None, rel=1e-5):
    """Outputs within rel (1e-5) of the CPU's max |value|, or within atol;
    returns the largest error relative to that max."""
    worst = 0.0
    outputs = sorted(f for f in os.listdir(cpu_dir) if f.endswith(".npy"))
    c.check(bool(outputs), f"{name}: the CPU module wrote outputs")
    for f in outputs:
        gpu_path = os.path.join(gpu_dir, f)
        if not os.path.exists(gpu_path):
            c.check(False, f"{name}: {f} written {where}")
            continue
        cpu, gpu = np.load(os.path.join(cpu_dir, f)), np.load(gpu_path)
        if cpu.dtype.kind == "f":
            # NaN where the CPU has NaN (a fully masked row), close elsewhere.
            same_nan = gpu.shape == cpu.shape and np.array_equal(np.isnan(cpu), np.isnan(gpu))
            finite = ~np.isnan(cpu) if same_nan else np.zeros(cpu.shape, bool)
            scale = float(np.max(np.abs(cpu[finite]))) if finite.any() else 0.0
            err = float(np.max(np.abs(gpu[finite].astype(np.float64) - cpu[finite]))) \
                if finite.any() else 0.0
            bound = atol if atol is not None else rel * max(scale, 1e-30)
            worst = max(worst, err / max(scale, 1e-30))
            c.check(same_nan and err <= bound,
                    f"{name}: {f} {where} = CPU (max err {err:.2e}, bound {bound:.1e}, "
                    f"NaN in the same places: {same_nan})")
        else:
            c.check(gpu.shape == cpu.shape and np.array_equal(gpu, cpu),
                    f"{name}: {f} {where} = CPU (exact)")
    return worst


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bin_dir")
    parser.add_argument("--prepare", metavar="DIR")
    parser.add_argument("--compare", nargs=2, metavar=("DIR", "OUT"))
    args = parser.parse_args()
    c = Checks()
    if args.compare:
        prepared, out = args.compare
        cases = json.load(open(os.path.join(prepared, "cases.json")))
        for case in cases:
            if "ids" in case:
                path = os.path.join(out, case["name"] + ".txt")
                got = generated_ids(open(path).read()) if os.path.exists(path) else None
                c.check(got == case["ids"],
                        f"{case['name']}: greedy tokens on the GPU = CPU ({got} vs {case['ids']})")
                # The 200-token timing runs: with CUDA graphs and without,
                # the same tokens (their first ones the CPU's).
                runs = [os.path.join(out, f"{case['name']}.{m}.txt") for m in ("graphs", "direct")]
                if all(os.path.exists(r) for r in runs):
                    graphs, direct = (generated_ids(open(r).read()) for r in runs)
                    c.check(graphs is not None and graphs == direct
                            and graphs[:len(case["ids"])] == case["ids"],
                            f"{case['name']}: 200 tokens with CUDA graphs = without, "
                            "and begin as on the CPU")
                continue
            compare(c, case["name"], os.path.join(out, case["name"]),
                    os.path.join(prepared, case["cpu_outputs"]), atol=case.get("atol"),
                    rel=case.get("rel", 1e-5))
        timing_table(os.path.join(out, "log.txt"))
        print(f"{c.passed} passed, {c.failed} failed")
        return 1 if c.failed else 0

    compile_tool = os.path.join(args.bin_dir, "hasten-compile")
    work = args.prepare or tempfile.mkdtemp(prefix="hasten-cuda-")
    os.makedirs(work, exist_ok=True)
    cases, device_problem = [], "not probed"
    try:
        for name, source in SUPPORTED:
            onnx_path = model_path(source, work)
            module = os.path.join(work, name + ".cuda.so")
            p = subprocess.run([compile_tool, onnx_path, "--target=cuda", f"--gpu={GPUS}",
                                "-o", module], capture_output=True, text=True)
            c.check(p.returncode == 0, f"{name}: compiles for {GPUS}"
                    + ("" if p.returncode == 0 else f": {p.stderr.strip()[:300]}"))
            if p.returncode != 0:
                continue
            # A model that is all GEMMs (on cuBLASLt) has no kernels.
            found = bundles(module)
            c.check(len(found) == 1 or (len(found) == 0 and name in ALL_GEMMS),
                    f"{name}: one device code bundle ({len(found)})")
            images = found[0] if found else []
            cubins = {arch: blob for kind, arch, blob in images if kind == 0}
            ptx = [blob for kind, arch, blob in images if kind == 1 and arch == PTX_ARCH]
            c.check(not found or (sorted(cubins) == list(CUBIN_ARCHS) and len(ptx) == 1),
                    f"{name}: cubins for sm_75/80/90 and PTX for sm_70 "
                    f"({sorted(cubins)}, {len(ptx)} PTX)")
            for arch, blob in sorted(cubins.items()):
                # ELF64: e_machine at 18; e_flags at 48, the SM in bits 8-15.
                machine = struct.unpack_from("<H", blob, 18)[0] if len(blob) > 52 else 0
                sm = (struct.unpack_from("<I", blob, 48)[0] >> 8) & 0xff if len(blob) > 52 else 0
                c.check(blob[:4] == b"\x7fELF" and machine == EM_CUDA and sm == arch,
                        f"{name}: the sm_{arch} cubin is a CUDA ELF file for sm_{sm}")
            if ptx:
                ptx_path = os.path.join(work, name + ".ptx")
                with open(ptx_path, "wb") as f:
                    f.write(ptx[0].rstrip(b"\0"))
                for arch in CUBIN_ARCHS:
                    q = subprocess.run([PTXAS, f"-arch=sm_{arch}", ptx_path, "-o",
                                        os.path.join(work, f"{name}.sm_{arch}.cubin")],
                                       capture_output=True, text=True)
                    c.check(q.returncode == 0, f"{name}: ptxas accepts its PTX for sm_{arch}"
                            + ("" if q.returncode == 0 else f": {q.stderr.strip()[:300]}"))

            # The CPU target's outputs on the same inputs: the reference.
            inputs = {}
            for input_name, value in inputs_for(onnx_path).items():
                path = os.path.join(work, f"{name}.{input_name}.npy")
                np.save(path, value)
                inputs[input_name] = path
            cpu_module = os.path.join(work, name + ".cpu.so")
            subprocess.run([compile_tool, onnx_path, "-o", cpu_module], check=True,
                           capture_output=True)
            cpu_dir = os.path.join(work, name + ".cpu")
            p = run(args.bin_dir, cpu_module, inputs, cpu_dir)
            c.check(p.returncode == 0, f"{name}: runs on the CPU" + (
                "" if p.returncode == 0 else f": {p.stderr.strip()[:300]}"))
            gemms, gelus = fake_checks(c, name, args.bin_dir, module, inputs, cpu_dir, work,
                                       kernels=bool(found))
            c.check((gemms > 0) == (name not in NO_GEMMS),
                    f"{name}: {gemms} GEMMs on the stand-in cuBLASLt"
                    + (" (it has none)" if name in NO_GEMMS else ""))
            c.check((gelus > 0) == (name in GELU_EPILOGUES),
                    f"{name}: {gelus} GEMMs with cuBLASLt's GELU epilogue, outputs = CPU")
            cases.append({"name": name, "module": os.path.basename(module),
                          "inputs": {k: os.path.basename(v) for k, v in inputs.items()},
                          "cpu_outputs": os.path.basename(cpu_dir)})
            if args.prepare:
                continue
            if device_problem == "not probed":
                device_problem = cuda_device(args.bin_dir, module, inputs, work)
                if device_problem:
                    print(f"GPU runs skipped: {device_problem}")
            if device_problem is None:
                gpu_dir = os.path.join(work, name + ".gpu")
                p = run(args.bin_dir, module, inputs, gpu_dir)
                c.check(p.returncode == 0, f"{name}: runs on the GPU" + (
                    "" if p.returncode == 0 else f": {p.stderr.strip()[:300]}"))
                if p.returncode == 0:
                    compare(c, name, gpu_dir, cpu_dir)

        for name, prompt, count in GENERATE:
            cpu = generate(args.bin_dir, os.path.join(work, name + ".cpu.so"), prompt, count)
            ids = generated_ids(cpu.stdout)
            c.check(cpu.returncode == 0 and ids is not None,
                    f"{name}: generates {count} tokens on the CPU")
            cases.append({"name": name + ".generate", "module": name + ".cuda.so",
                          "prompt": prompt, "count": count, "ids": ids})
            emulated = generate(args.bin_dir, os.path.join(work, name + ".cuda.so"), prompt,
                                count, fake_env(args.bin_dir))
            c.check(emulated.returncode == 0 and generated_ids(emulated.stdout) == ids,
                    f"{name}: greedy tokens emulated = CPU ({generated_ids(emulated.stdout)} "
                    f"vs {ids})" + ("" if emulated.returncode == 0
                                   else f": {emulated.stderr.strip()[:300]}"))
            # The same decoder with its prefill attention on bf16 tensor
            # cores: the trained model's greedy tokens do not change.
            module = os.path.join(work, name + ".bf16.cuda.so")
            p = subprocess.run([compile_tool, model_path(dict(SUPPORTED)[name], work),
                                "--target=cuda", f"--gpu={TENSOR_CORE_GPUS}",
                                "--gpu-precision=bf16", "-o", module],
                               capture_output=True, text=True)
            c.check(p.returncode == 0, f"{name}: compiles with --gpu-precision=bf16"
                    + ("" if p.returncode == 0 else f": {p.stderr.strip()[:300]}"))
            if p.returncode == 0:
                tensor_cores = generate(args.bin_dir, module, prompt, count,
                                        dict(fake_env(args.bin_dir), FAKE_CUDA_ARCH="100"))
                got = generated_ids(tensor_cores.stdout)
                c.check(tensor_cores.returncode == 0 and got == ids,
                        f"{name}: greedy tokens with bf16 tensor-core prefill, emulated = CPU "
                        f"({got} vs {ids})")
                cases.append({"name": name + ".bf16.generate",
                              "module": os.path.basename(module), "prompt": prompt,
                              "count": count, "ids": ids})
            # A paged cache (16-token blocks, the pool on the device, the
            # table uploaded per call): the CPU paged module's tokens.
            paged = os.path.join(work, name + ".paged.cuda.so")
            paged_cpu = os.path.join(work, name + ".paged.cpu.so")
            source = model_path(dict(SUPPORTED)[name], work)
            p = subprocess.run([compile_tool, source, "--target=cuda", f"--gpu={GPUS}",
                                "--kv-block-size=16", "-o", paged], capture_output=True, text=True)
            q = subprocess.run([compile_tool, source, "--kv-block-size=16", "-o", paged_cpu],
                               capture_output=True, text=True)
            c.check(p.returncode == 0 and q.returncode == 0,
                    f"{name}: compiles with --kv-block-size=16 for CUDA and the CPU"
                    + ("" if p.returncode == 0 else f": {p.stderr.strip()[:300]}"))
            if p.returncode == 0 and q.returncode == 0:
                paged_ids = generated_ids(generate(args.bin_dir, paged_cpu, prompt, count).stdout)
                got = generated_ids(generate(args.bin_dir, paged, prompt, count,
                                             fake_env(args.bin_dir)).stdout)
                c.check(paged_ids is not None and got == paged_ids,
                        f"{name}: greedy tokens with a paged cache, emulated = CPU paged "
                        f"({got} vs {paged_ids})")
                cases.append({"name": name + ".paged.generate", "module": os.path.basename(paged),
                              "prompt": prompt, "count": count, "ids": paged_ids})
                # The whole pool in pinned host memory (--kv-device-tokens=0):
                # the kernels read every block over the bus, through the
                # same table; the tokens do not change.
                spilled = os.path.join(work, name + ".spilled.cuda.so")
                p = subprocess.run([compile_tool, source, "--target=cuda", f"--gpu={GPUS}",
                                    "--kv-block-size=16", "--kv-device-tokens=0", "-o", spilled],
                                   capture_output=True, text=True)
                c.check(p.returncode == 0, f"{name}: compiles with --kv-device-tokens=0"
                        + ("" if p.returncode == 0 else f": {p.stderr.strip()[:300]}"))
                if p.returncode == 0:
                    run_spilled = generate(args.bin_dir, spilled, prompt, count,
                                           fake_env(args.bin_dir))
                    got = generated_ids(run_spilled.stdout)
                    c.check(paged_ids is not None and got == paged_ids
                            and "0 blocks in device memory" in run_spilled.stderr,
                            f"{name}: greedy tokens with the KV pool in host memory, emulated = "
                            f"CPU paged ({got} vs {paged_ids})")
                    cases.append({"name": name + ".spilled.generate",
                                  "module": os.path.basename(spilled), "prompt": prompt,
                                  "count": count, "ids": paged_ids})
            if args.prepare or device_problem is not None:
                continue
            gpu = generate(args.bin_dir, os.path.join(work, name + ".cuda.so"), prompt, count)
            c.check(gpu.returncode == 0 and generated_ids(gpu.stdout) == ids,
                    f"{name}: greedy tokens on the GPU = CPU ({generated_ids(gpu.stdout)} vs "
                    f"{ids})")
        gemm_variants(c, args.bin_dir, work, cases, bool(args.prepare))
        tensor_core_attention(c, args.bin_dir, work, cases, bool(args.prepare))
        if args.prepare:
            prepare_long_attention(c, args.bin_dir, work, cases)
            json.dump(cases, open(os.path.join(work, "cases.json"), "w"), indent=1)
    finally:
        if not args.prepare:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
