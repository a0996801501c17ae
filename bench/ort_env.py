"""The benchmarks' peer, ONNX Runtime, and the exporters users export with
(torch 2.x, transformers, Optimum), from PyPI: venvs inside the build folder
(Debian's Python refuses system-wide pip installs), made on first use."""
import os
import subprocess
import sys


def ort_python(build):
    """The venv's python, with onnxruntime installed."""
    venv = os.path.join(build, "bench-venv")
    python = os.path.join(venv, "bin", "python")
    probe = [python, "-c", "import onnxruntime, numpy"]
    if os.path.exists(python) and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"setting up {venv} with onnxruntime from PyPI ...", file=sys.stderr)
    subprocess.run(["/usr/bin/python3", "-m", "venv", venv], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", "onnxruntime", "numpy"], check=True)
    return python


def ort_version(python):
    return subprocess.run([python, "-c", "import onnxruntime; print(onnxruntime.__version__)"],
                          capture_output=True, text=True, check=True).stdout.strip()


def exporter_python(build):
    """A venv with torch 2.x, transformers and Optimum's ONNX exporter, as
    users export Hugging Face models (about 3 GB: PyPI's torch brings CUDA's
    libraries)."""
    venv = os.path.join(build, "hf-venv")
    python = os.path.join(venv, "bin", "python")
    probe = [python, "-c", "import torch, transformers, optimum.exporters.onnx"]
    if os.path.exists(python) and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"setting up {venv} with torch, transformers and optimum-onnx from PyPI ...",
          file=sys.stderr)
    subprocess.run(["/usr/bin/python3", "-m", "venv", venv], check=True)
    # transformers 4.57 is the newest optimum-onnx 0.1 takes.
    subprocess.run([python, "-m", "pip", "install", "-q", "torch", "transformers==4.57.*",
                    "optimum-onnx", "onnx"], check=True)
    return python
