#!/usr/bin/env python3
"""The bench's "optimum" export: transformers' own GPT2LMHeadModel in GPT-2
small's shape (124M: 12 layers, 768 wide, 12 heads, 50257 tokens, 1024
positions), random weights (seed 0), exported by Optimum exactly as users
export Hugging Face decoders (`optimum-cli export onnx --task
text-generation-with-past`): opset 18, scaled_dot_product_attention with its
boolean causal-and-padding mask, the token table tied to the LM head.

  BUILD/hf-venv/bin/python bench/make_optimum_decoder.py -o gpt2-124m-optimum.onnx

Needs torch 2.x, transformers<4.58 and optimum-onnx (bench/ort_env.py's
exporter_python makes that venv).
"""
import argparse
import os
import shutil
import tempfile

import torch
import transformers
from optimum.exporters.onnx import main_export


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--layers", type=int, default=12)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=args.layers)).eval()
    with tempfile.TemporaryDirectory() as work:
        model.save_pretrained(os.path.join(work, "hf"))
        main_export(os.path.join(work, "hf"), output=os.path.join(work, "onnx"),
                    task="text-generation-with-past")
        files = os.listdir(os.path.join(work, "onnx"))
        if any(f.endswith(".onnx_data") or f.endswith(".data") for f in files):
            raise SystemExit(f"the export wrote external data ({files}); expected one file")
        shutil.move(os.path.join(work, "onnx", "model.onnx"), args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
