"""What the end-to-end checks share: the tiny decoders they run, the
--compile-flag option that reruns a check on other modules (--cpu=...), and
one-node models compiled and run (with ONNX Runtime beside them when the
Python running the check has it), ONNX value files read, and bfloat16 bits
converted both ways."""
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


def run_module(bin_dir, module, inputs, work, tag, env=None):
    """Runs `module` with hasten-run on `inputs` ({name: array}, saved under
    `work` as TAG.NAME.npy), with extra environment variables `env`; returns
    the output folder. Raises RuntimeError with hasten-run's message when it
    fails."""
    import numpy as np
    args = []
    for name, value in inputs.items():
        path = os.path.join(work, f"{tag}.{name}.npy")
        np.save(path, value)
        args += ["--input", f"{name}={path}"]
    out_dir = os.path.join(work, tag)
    proc = subprocess.run([os.path.join(bin_dir, "hasten-run"), module, "--output-dir", out_dir]
                          + args, capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))
    if proc.returncode:
        raise RuntimeError(f"hasten-run {os.path.basename(module)}: {proc.stderr.strip()[-400:]}")
    return out_dir


def compile_node(c, bin_dir, work, name, node, inputs, outputs, opset):
    """A one-node model with graph inputs `inputs` ({name: array}) and
    `outputs` ([(name, TensorProto type, shape)]), compiled by hasten-compile;
    (.onnx path, .so path), or None after a failed check."""
    path, proc = compile_one_node(bin_dir, work, name, node, inputs, outputs, opset)
    if proc.returncode:
        c.check(False, f"{name}: {proc.stderr.strip()[-300:]}")
        return None
    return path, os.path.join(work, name + ".so")


def compile_refused(bin_dir, work, name, node, inputs, outputs, opset):
    """hasten-compile's exit status and message for a one-node model that
    should be refused."""
    _, proc = compile_one_node(bin_dir, work, name, node, inputs, outputs, opset)
    return proc.returncode, proc.stderr.strip()


def compile_one_node(bin_dir, work, name, node, inputs, outputs, opset):
    """Writes and compiles a one-node model; (.onnx path, the finished
    hasten-compile process)."""
    import onnx
    from onnx import helper
    graph = helper.make_graph(
        [node], name,
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype)
                                       if hasattr(helper, "np_dtype_to_tensor_dtype")
                                       else onnx.mapping.NP_TYPE_TO_TENSOR_TYPE[v.dtype],
                                       list(v.shape))
         for k, v in inputs.items()],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs])
    # `opset`: the default domain's version, or [(domain, version), ...].
    imports = ([helper.make_opsetid("", opset)] if isinstance(opset, int)
               else [helper.make_opsetid(domain, version) for domain, version in opset])
    path = os.path.join(work, name + ".onnx")
    onnx.save(helper.make_model(graph, opset_imports=imports), path)
    proc = subprocess.run([os.path.join(bin_dir, "hasten-compile"), path, "-o",
                           os.path.join(work, name + ".so")], capture_output=True, text=True)
    return path, proc


def run_with_ort(bin_dir, work, compiled, inputs, outputs, tag):
    """Runs a compile_node module on `inputs`; returns hasten's `outputs` and
    ONNX Runtime's (None when this Python has no onnxruntime, or ONNX Runtime
    no kernel for the node)."""
    import numpy as np
    out = run_module(bin_dir, compiled[1], inputs, work, tag)
    got = [np.load(os.path.join(out, o + ".npy")) for o in outputs]
    try:
        import onnxruntime
    except ImportError:
        return got, None
    try:
        session = onnxruntime.InferenceSession(compiled[0], providers=["CPUExecutionProvider"])
    except onnxruntime.capi.onnxruntime_pybind11_state.NotImplemented:
        return got, None  # ONNX Runtime has no kernel for these types (Unique of int32)
    return got, session.run(outputs, inputs)


def compile_graph(bin_dir, work, name, graph, opset=17):
    """Saves `graph` as NAME.onnx under `work` and compiles it; (.onnx path,
    .so path, the finished hasten-compile process)."""
    import onnx
    from onnx import helper
    path = os.path.join(work, name + ".onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)
    so = os.path.join(work, name + ".so")
    proc = subprocess.run([os.path.join(bin_dir, "hasten-compile"), path, "-o", so],
                          capture_output=True, text=True)
    return path, so, proc


def load_value(path, type_proto):
    """A .pb file as ONNX stores a value of `type_proto`: an array, a list
    of arrays (a sequence), or None or a value (an optional)."""
    import onnx
    from onnx import numpy_helper
    if type_proto.HasField("optional_type"):
        proto = onnx.OptionalProto()
        with open(path, "rb") as f:
            proto.ParseFromString(f.read())
        if proto.HasField("tensor_value"):
            return numpy_helper.to_array(proto.tensor_value)
        if proto.HasField("sequence_value"):
            return [numpy_helper.to_array(t) for t in proto.sequence_value.tensor_values]
        return None
    if type_proto.HasField("sequence_type"):
        proto = onnx.SequenceProto()
        with open(path, "rb") as f:
            proto.ParseFromString(f.read())
        return [numpy_helper.to_array(t) for t in proto.tensor_values]
    return numpy_helper.to_array(onnx.load_tensor(path))


def bf16_bits(x):
    """float32 values rounded to bfloat16 (nearest even; NaN-free inputs),
    as the uint16 bits ONNX stores (numpy has no bfloat16)."""
    import numpy as np
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_values(bits):
    """The float32 values of bfloat16 bits."""
    import numpy as np
    return (np.asarray(bits).astype(np.uint32) << 16).view(np.float32)
