#!/usr/bin/env python3
"""A tiny transformers Llama exported with torch.onnx.export(dynamo=True),
the default exporter of torch 2.9 and later (torch.export, then
onnxscript), for the attention-fusion tests.

  llama  LlamaForCausalLM (2 layers, hidden 32, 4 query heads, 2 key/value
         heads, RoPE, SiLU MLP), no cache: input_ids [1, sequence] ->
         logits [1, sequence, 64]. The exporter writes opset 20, repeats K
         and V as [batch, kv_heads, group, T, d] read by the products
         directly, transposes K in 3-D, and guards the probabilities with
         Where(IsNaN(p), 0, p).

Weights are random from a fixed seed; NAME.reference.npz holds input_ids
and torch's logits for them.

  python3 -m venv /tmp/hf && /tmp/hf/bin/pip install torch 'transformers<4.58' onnxscript
  /tmp/hf/bin/python test/models/dynamo/make_dynamo_exports.py [-o DIR]

The committed files mean the tests need none of it.
"""
import argparse
import os
import warnings

import numpy as np
import torch
import transformers


class Logits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model(input_ids=input_ids, use_cache=False).logits


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--out-dir", default=os.path.dirname(os.path.abspath(__file__)))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64,
                                      num_attention_heads=4, num_key_value_heads=2,
                                      vocab_size=64, max_position_embeddings=64)
    model = Logits(transformers.LlamaForCausalLM(config).eval())
    ids = torch.randint(0, 64, (1, 7))
    path = os.path.join(args.out_dir, "llama.onnx")
    torch.onnx.export(model, (ids,), path, dynamo=True, external_data=False,
                      input_names=["input_ids"],
                      output_names=["logits"],
                      dynamic_shapes={"input_ids": {1: torch.export.Dim("sequence", min=2,
                                                                        max=64)}})
    other = torch.randint(0, 64, (1, 11))
    with torch.no_grad():
        logits = model(other).numpy()
    np.savez(os.path.join(args.out_dir, "llama.reference.npz"), input_ids=other.numpy(),
             logits=logits)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
