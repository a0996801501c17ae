"""What the end-to-end checks share: the tiny decoders they run, and the
--compile-flag option that reruns a check on other modules (--cpu=...)."""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "models"))
import make_decoder as md  # noqa: E402

PRESETS = ("gpt2-tiny", "llama-tiny")


def decoders(work):
    """Writes each tiny decoder into `work`; yields (preset, config, weights,
    path of the .onnx)."""
    for preset in PRESETS:
        cfg = md.Config(**md.PRESETS[preset])
        onnx_path = os.path.join(work, preset + ".onnx")
        subprocess.run([sys.executable, os.path.join(HERE, "..", "models", "make_decoder.py"),
                        "--preset", preset, "-o", onnx_path], check=True, capture_output=True)
        yield preset, cfg, md.make_weights(cfg), onnx_path


class Checks:
    """Counts and prints named pass/fail checks."""

    def __init__(self):
        self.passed = self.failed = 0

    def check(self, ok, what):
        self.passed += bool(ok)
        self.failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {what}", flush=True)


def parse_args(directory_arg):
    """The command line of a check: a build or bin folder, then any number of
    extra hasten-compile flags."""
    parser = argparse.ArgumentParser()
    parser.add_argument(directory_arg)
    parser.add_argument("--compile-flag", action="append", default=[],
                        help="extra hasten-compile flag, e.g. --cpu=x86-64-v3 (repeatable)")
    return parser.parse_args()


def run_module(bin_dir, module, inputs, work, tag):
    """Runs `module` with hasten-run on `inputs` ({name: array}, saved under
    `work` as TAG.NAME.npy); returns the output folder. Raises RuntimeError
    with hasten-run's message when it fails."""
    import numpy as np
    args = []
    for name, value in inputs.items():
        path = os.path.join(work, f"{tag}.{name}.npy")
        np.save(path, value)
        args += ["--input", f"{name}={path}"]
    out_dir = os.path.join(work, tag)
    proc = subprocess.run([os.path.join(bin_dir, "hasten-run"), module, "--output-dir", out_dir]
                          + args, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"hasten-run {os.path.basename(module)}: {proc.stderr.strip()[-400:]}")
    return out_dir
