#!/usr/bin/env python3
"""Import-only sweep over the ONNX backend node conformance cases.

Every case whose ops are all in the importer's required list (the ops a
GPT-2/Llama decoder, a diffusion UNet/DiT block or a vocoder export uses) must
import and verify. Cases that use other ops the importer also supports are
imported and counted too. Prints a summary and the failures; exits 1 if a
required case fails.

usage: import_sweep.py HASTEN_IMPORT [NODE_DIR] [--filter SUBSTRING] [--verbose]
"""

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import onnx

# The op list of the importer issue: these must always import.
REQUIRED_OPS = set("""
MatMul Gemm Add Sub Mul Div Pow Sqrt Reciprocal Exp Log Erf Tanh Sigmoid Relu
LeakyRelu Neg Abs Max Min Softmax LogSoftmax LayerNormalization
InstanceNormalization ReduceMean ReduceSum ReduceMax ArgMax TopK Gather Reshape
Flatten Transpose Concat Slice Split Squeeze Unsqueeze Where Equal Less Greater
Not And Cast Shape Expand ConstantOfShape Range Trilu CumSum Identity Sin Cos
Einsum Conv ConvTranspose Resize Pad Dropout Constant
""".split())


# Operand slots that hold compile-time parameters (shapes, axes, scales).
# A graph input that only feeds such slots is bound to its conformance value
# with --bind-input, the way a deployer fixes them when compiling.
PARAMETER_SLOTS = {
    "Reshape": {1}, "Unsqueeze": {1}, "Squeeze": {1}, "Slice": {1, 2, 3, 4},
    "Split": {1}, "ReduceSum": {1}, "CumSum": {1}, "Resize": {1, 2, 3},
    "Expand": {1}, "Tile": {1}, "Pad": {1, 2, 3}, "TopK": {1},
    "ConstantOfShape": {0}, "Dropout": {1, 2}, "Trilu": {1}, "OneHot": {1},
    "HannWindow": {0}, "HammingWindow": {0}, "BlackmanWindow": {0}, "Compress": {1},
    "Upsample": {1}, "MaxUnpool": {2}, "DFT": {1, 2}, "STFT": {1, 3}, "MelWeightMatrix": {0, 1, 2, 3, 4},
    # Axes that opset 18 moved from an attribute to an input.
    **{op: {1} for op in ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
                          "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSumSquare")},
}

# Variants of supported ops that hasten does not support, with the reason.
# These cases must fail with a clear error, never import wrongly.
KNOWN_UNSUPPORTED = {
    "training mode with a random mask": ["test_training_dropout$", "test_training_dropout_mask",
                                         "test_training_dropout_default"],
}


def known_unsupported(case):
    """The reason a case is known to be unsupported: a pattern is a part of
    its name, or its whole name when the pattern ends with '$'."""
    for reason, patterns in KNOWN_UNSUPPORTED.items():
        if any(case == p[:-1] if p.endswith("$") else p in case for p in patterns):
            return reason
    return None


def parameter_bindings(model_path):
    """--bind-input arguments for graph inputs used only as parameters."""
    model = onnx.load(model_path, load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    uses = {}
    for node in model.graph.node:
        for slot, name in enumerate(node.input):
            uses.setdefault(name, []).append(
                slot in PARAMETER_SLOTS.get(node.op_type, ()))
    data_dir = os.path.join(os.path.dirname(model_path), "test_data_set_0")
    args = []
    for index, name in enumerate(inputs):
        flags = uses.get(name, [])
        pb = os.path.join(data_dir, f"input_{index}.pb")
        if flags and all(flags) and os.path.exists(pb):
            args += ["--bind-input", f"{name}={pb}"]
    return args


def case_ops(model_path):
    """Every op of the model, those of If/Loop/Scan subgraphs included."""
    model = onnx.load(model_path, load_external_data=False)
    ops = set()

    def walk(graph):
        for node in graph.node:
            domain = node.domain if node.domain not in ("", "ai.onnx") else ""
            ops.add((domain + "::" if domain else "") + node.op_type)
            for attr in node.attribute:
                if attr.HasField("g"):
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)
    walk(model.graph)
    return ops


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("hasten_import")
    parser.add_argument("node_dir", nargs="?",
                        default="/usr/share/libonnx-testdata/data/node")
    parser.add_argument("--filter", default="")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()

    supported = set(subprocess.run([args.hasten_import, "--list-ops"],
                                   capture_output=True, text=True,
                                   check=True).stdout.split())
    missing_required = REQUIRED_OPS - supported
    if missing_required:
        print("importer lacks required ops:", " ".join(sorted(missing_required)))
        return 1

    cases = sorted(c for c in os.listdir(args.node_dir) if args.filter in c)
    required, optional, skipped = [], [], 0
    for case in cases:
        path = os.path.join(args.node_dir, case, "model.onnx")
        if not os.path.exists(path):
            continue
        ops = case_ops(path)
        if ops <= REQUIRED_OPS:
            required.append((case, path))
        elif ops <= supported:
            optional.append((case, path))
        else:
            skipped += 1

    def run(item):
        case, path = item
        command = [args.hasten_import, path, "-o", os.devnull]
        command += parameter_bindings(path)
        proc = subprocess.run(command, capture_output=True, text=True)
        return case, proc.returncode, proc.stderr.strip()

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        required_results = list(pool.map(run, required))
        optional_results = list(pool.map(run, optional))

    def report(title, results):
        failed, expected = [], []
        for case, rc, err in results:
            reason = known_unsupported(case)
            # A crash is never an acceptable way to refuse a case.
            clean_error = rc == 1 and "error:" in err and "Stack dump" not in err
            if reason and rc != 0 and clean_error:
                expected.append((case, reason))
            elif rc != 0:
                failed.append((case, err))
            elif reason:
                failed.append((case, "imported although listed as unsupported ("
                               + reason + "): update KNOWN_UNSUPPORTED"))
        passed = len(results) - len(failed) - len(expected)
        print(f"{title}: {passed} of {len(results) - len(expected)} imported, "
              f"{len(expected)} known-unsupported variants refused cleanly")
        for case, err in failed:
            first = err.splitlines()[0] if err else "(no message)"
            print(f"  FAIL {case}: {first[:300]}")
        if args.verbose:
            for case, reason in expected:
                print(f"  refused {case}: {reason}")
        return failed, expected

    print(f"node cases: {len(cases)}; required-op cases: {len(required)}; "
          f"other supported-op cases: {len(optional)}; "
          f"cases with unsupported ops: {skipped}")
    failed_required, refused_required = report("required-op cases", required_results)
    failed_optional, refused_optional = report("other supported-op cases",
                                               optional_results)
    total = len(required_results) + len(optional_results)
    refused = len(refused_required) + len(refused_optional)
    ok = total - refused - len(failed_required) - len(failed_optional)
    print(f"import sweep: {ok} of {total - refused} supported cases import, "
          f"{refused} known-unsupported variants refused "
          f"({len(cases)} node cases in all)")
    return 1 if failed_required or failed_optional else 0


if __name__ == "__main__":
    sys.exit(main())
