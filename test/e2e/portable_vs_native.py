#!/usr/bin/env python3
"""Portability end to end: a module compiled for a portable CPU level runs on
a runtime limited to that level and gives the native module's outputs.

For the tiny GPT-2-style and Llama-style decoders (contiguous and paged
caches), compiled natively and with --cpu=x86-64-v3:
- the native module's logits walk runs here (every kernel this CPU has);
- the x86-64-v3 module's walk runs in a child process with
  HASTEN_MAX_CPU_ISA=avx2 (generated code and runtime kernels both without
  AVX-512, as on an AVX2-only host) and matches within 1e-5 relative;
- that child refuses the native module, naming the missing AVX-512 features;
- --weights=bf16 on the AVX2 runtime converts to f32 (saying so once) and
  stays within the bf16 tolerance of the numpy reference; an x86-64-v4 bf16
  module on an AVX-512 runtime without AVX512-BF16 does too.

usage: portable_vs_native.py BUILD_DIR
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "models"))
sys.path.insert(0, HERE)
import e2e_common as e2e  # noqa: E402
import hasten_ctypes as hc  # noqa: E402
import make_decoder as md  # noqa: E402
from e2e_common import Checks  # noqa: E402
from generation_vs_numpy import CAPACITY, logits_walk, rel_err  # noqa: E402

SAME_TOL = 1e-5
BF16_TOL = 1e-2


def child_walk(build, module_path, preset, out_path):
    """Runs in the limited child: the walk, or the load error, to JSON/npz."""
    rt = hc.Runtime(os.path.join(build, "lib"))
    cfg = md.Config(**md.PRESETS[preset])
    try:
        module = rt.load(module_path)
    except hc.HastenError as e:
        with open(out_path + ".json", "w") as f:
            json.dump({"error": str(e)}, f)
        return 0
    outputs, worst, _ = logits_walk(module, cfg, md.make_weights(cfg))
    np.savez(out_path, *outputs)
    with open(out_path + ".json", "w") as f:
        json.dump({"worst_vs_reference": worst}, f)
    return 0


def run_limited(build, module_path, preset, out_path, isa):
    env = dict(os.environ, HASTEN_MAX_CPU_ISA=isa)
    proc = subprocess.run([sys.executable, __file__, "--child", build, module_path, preset,
                           out_path], env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr)
    with open(out_path + ".json") as f:
        result = json.load(f)
    if "error" not in result:
        with np.load(out_path + ".npz") as z:
            result["outputs"] = [z[f"arr_{i}"] for i in range(len(z.files))]
    result["stderr"] = proc.stderr
    return result


def compile_module(build, onnx_path, out, flags):
    subprocess.run([os.path.join(build, "bin", "hasten-compile"), onnx_path, "-o", out,
                    f"--kv-capacity={CAPACITY}"] + flags, check=True)


def main():
    build = sys.argv[1]
    rt = hc.Runtime(os.path.join(build, "lib"))
    c = Checks()
    note = "bf16 weights are converted to f32"
    with tempfile.TemporaryDirectory(prefix="hasten-portable-") as work:
        for preset, cfg, weights, onnx_path in e2e.decoders(work):
            for layout, flags in (("contiguous", []), ("paged", ["--kv-block-size=16"])):
                tag = f"{preset} {layout}"
                native = os.path.join(work, f"{preset}-{layout}-native.so")
                portable = os.path.join(work, f"{preset}-{layout}-v3.so")
                compile_module(build, onnx_path, native, flags)
                compile_module(build, onnx_path, portable, flags + ["--cpu=x86-64-v3"])
                expected, _, _ = logits_walk(rt.load(native), cfg, weights)
                got = run_limited(build, portable, preset, os.path.join(work, "v3-walk"), "avx2")
                if "error" in got:
                    c.check(False, f"{tag}: the x86-64-v3 module loads on an AVX2 runtime: "
                                   f"{got['error']}")
                    continue
                err = max(rel_err(a, b) for a, b in zip(got["outputs"], expected))
                c.check(len(got["outputs"]) == len(expected) and err <= SAME_TOL,
                        f"{tag}: x86-64-v3 module on an AVX2 runtime matches the native module "
                        f"(relative error {err:.2e}, tolerance {SAME_TOL})")
                if layout == "paged":
                    continue
                refused = run_limited(build, native, preset, os.path.join(work, "native-walk"),
                                      "avx2")
                message = refused.get("error", "")
                c.check("lacks" in message and "avx512f" in message and
                        "HASTEN_MAX_CPU_ISA=avx2" in message and "x86-64-v3" in message,
                        f"{tag}: an AVX2 runtime refuses the native module: {message}")
            for cpu, isa in (("x86-64-v3", "avx2"), ("x86-64-v4", "avx512")):
                bf16 = os.path.join(work, f"{preset}-bf16-{cpu}.so")
                compile_module(build, onnx_path, bf16, ["--weights=bf16", f"--cpu={cpu}"])
                got = run_limited(build, bf16, preset, os.path.join(work, "bf16-walk"), isa)
                worst = got.get("worst_vs_reference", float("inf"))
                c.check(worst <= BF16_TOL,
                        f"{preset}: --weights=bf16 --cpu={cpu} on an {isa} runtime: logits "
                        f"within {worst:.2e} of the reference (tolerance {BF16_TOL}) "
                        f"{got.get('error', '')}")
                notes = got.get("stderr", "").count(note)
                c.check(notes == (1 if isa == "avx2" else 0),
                        f"{preset}: the {isa} runtime says '{note}' "
                        f"{'once' if isa == 'avx2' else 'never'} (said {notes} times)")
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(child_walk(*sys.argv[2:6]))
    sys.exit(main())
