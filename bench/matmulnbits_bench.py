#!/usr/bin/env python3
"""A model quantized by ONNX Runtime's own 4-bit quantizer, run by hasten and
by ONNX Runtime: the 124M GPT-2-shaped decoder (test/models/make_decoder.py
--preset gpt2-124m) through onnxruntime.quantization's MatMulNBitsQuantizer
(blocks of 32 along K, asymmetric: zero points), as a user quantizes a model
for ONNX Runtime. hasten imports its MatMulNBits nodes and runs them on its
int4 kernels with the model's own values, scales (stored as f16) and zero
points (format int4-g32-zp); ONNX Runtime runs its MatMulNBits kernel
(accuracy_level 0: f32 activations).

Prints the compile time, the stored weights by format, and per thread count
decode per token at past 128 (median, fresh processes, page cache warm) for
both, and whether both pick the same next token after a 512-token prompt.

usage: bench/matmulnbits_bench.py [--build build] [--threads 1,2]
"""
import argparse
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "e2e"))
import hasten_ctypes as hc  # noqa: E402
sys.path.insert(0, HERE)
import machine  # noqa: E402
import ort_env  # noqa: E402
from run_bench import run  # noqa: E402
from weights_bench import child  # noqa: E402

QUANTIZE = """
import sys, onnx
from onnxruntime.quantization.matmul_nbits_quantizer import (MatMulNBitsQuantizer,
                                                             DefaultWeightOnlyQuantConfig)
src, dst = sys.argv[1], sys.argv[2]
quantizer = MatMulNBitsQuantizer(onnx.load(src), algo_config=DefaultWeightOnlyQuantConfig(
    block_size=32, is_symmetric=False))
quantizer.process()
onnx.save(quantizer.model.model, dst, save_as_external_data=True,
          location=dst.rsplit("/", 1)[-1] + ".data")
print(sum(n.op_type == "MatMulNBits" for n in quantizer.model.model.graph.node))
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--past", type=int, default=128)
    args = parser.parse_args()
    python = ort_env.ort_python(args.build)
    run([python, "-m", "pip", "install", "-q", "onnx_ir"])  # the quantizer needs it
    work = os.path.join(args.build, "bench")
    os.makedirs(work, exist_ok=True)
    source = os.path.join(work, "gpt2-124m.onnx")
    if not os.path.exists(source):
        run(["/usr/bin/python3", os.path.join(ROOT, "test", "models", "make_decoder.py"),
             "--preset", "gpt2-124m", source])
    model = os.path.join(work, "gpt2-124m-q4.onnx")
    nodes = run([python, "-c", QUANTIZE, source, model]).split()[-1]
    # As the model comes, and with --weights=int4, which also quantizes what
    # the quantizer left in f32 (the LM head tied to the embedding table);
    # the MatMulNBits weights keep their own values either way.
    variants = {"as given": [], "--weights=int4": ["--weights=int4"]}
    modules = {}
    rt = hc.Runtime(os.path.join(args.build, "lib"))
    print(f"CPU: {machine.cpu_description()}; ONNX Runtime {ort_env.ort_version(python)} "
          "(Python, CPU)")
    print(f"model: gpt2-124m quantized by ONNX Runtime's MatMulNBitsQuantizer (block 32, "
          f"zero points): {nodes} MatMulNBits nodes\n")
    print("| hasten-compile | compile s | stored weights |")
    print("|---|---|---|")
    for name, flags in variants.items():
        module = os.path.join(work, f"gpt2-124m-q4{''.join(flags).replace('-', '_')}.so")
        start = time.perf_counter()
        run([os.path.join(args.build, "bin", "hasten-compile"), model, "-o", module, *flags])
        seconds = time.perf_counter() - start
        m = rt.load(module)
        formats = {}
        for _n, f, b in m.weights():
            formats[f] = formats.get(f, 0) + b
        m.free()
        modules[name] = module
        print(f"| {name} | {seconds:.1f} | " +
              ", ".join(f"{f} {b / 1e6:.1f} MB" for f, b in sorted(formats.items())) + " |")
    print()
    print("| threads | ONNX Runtime ms/token | " +
          " | ".join(f"hasten {name} ms/token | speed-up" for name in variants) +
          " | next token after the 512-token prompt (ORT / hasten) |")
    print("|---|---|" + "---|---|" * len(variants) + "---|")
    for threads in [int(t) for t in args.threads.split(",")]:
        out = run([python, os.path.join(HERE, "ort_runner.py"), "decoder", model, str(threads),
                   "512", str(args.past), str(args.repeat)])
        ort_decode = float(re.search(r"decode_ms ([0-9.]+)", out).group(1))
        cells, tokens = [], [re.search(r"greedy ([0-9]+)", out).group(1)]
        for name, module in modules.items():
            child(args.build, module, threads, args.past, 1)  # warm the page cache
            _first, decode, _rss, _capacity, _loaded, greedy = child(
                args.build, module, threads, args.past, args.repeat)
            cells.append(f"{decode:.2f} | {ort_decode / decode:.2f}x")
            tokens.append(str(greedy[0]))
        print(f"| {threads} | {ort_decode:.2f} | " + " | ".join(cells) + f" | {' / '.join(tokens)} |")


if __name__ == "__main__":
    main()
