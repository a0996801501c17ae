#!/usr/bin/env python3
"""Tiny Hugging Face decoders exported by Optimum, exactly as users export
theirs (`optimum-cli export onnx --task text-generation-with-past`), for the
attention-fusion and generation tests.

  gpt2   transformers' GPT2LMHeadModel: learned positions, LayerNorm, fused
         QKV split, tanh GELU.
  llama  LlamaForCausalLM: RMSNorm, RoPE from position_ids, GQA (4 query
         heads, 2 key/value heads), SiLU MLP.
  qwen2  Qwen2ForCausalLM: Llama's layout with biased Q, K and V.

transformers 4.57 with torch 2.x exports attention through
scaled_dot_product_attention: Q and K each scaled by d**-0.25, a boolean
causal-and-padding mask turned into 0/-inf, and the probabilities guarded
with Where(IsNaN(p), 0, p). The files are opset 18 (Optimum's default).

Weights are random from a fixed seed. Next to each NAME.onnx, NAME.reference.npz
holds the model's inputs for one call (batch 2, a past of 3 tokens whose
first two are padding in the second row, 5 new tokens) and torch's logits
for them, plus `prompt` and `greedy`: transformers' own greedy generation
(8 new tokens) from that prompt.

Needs a venv with torch, transformers<4.58 and optimum-onnx (PyPI):

  python3 -m venv /tmp/hf && /tmp/hf/bin/pip install torch 'transformers<4.58' optimum-onnx
  /tmp/hf/bin/python test/models/optimum/make_optimum_exports.py [-o DIR] [NAME...]

The committed files mean the tests need none of it.
"""
import argparse
import os
import shutil
import tempfile

import numpy as np
import torch
import transformers
from optimum.exporters.onnx import main_export

VOCAB, HIDDEN, HEADS, KV_HEADS, LAYERS, MAX_POS = 64, 32, 4, 2, 2, 64
PAST, NEW, GENERATED = 3, 5, 8


def build(name):
    if name == "gpt2":
        config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_head=HEADS,
                                         n_layer=LAYERS, n_positions=MAX_POS)
        return transformers.GPT2LMHeadModel(config)
    common = dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=2 * HIDDEN,
                  num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                  num_hidden_layers=LAYERS, max_position_embeddings=MAX_POS)
    if name == "llama":
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(**common))
    if name == "qwen2":
        return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common))
    raise ValueError(name)


def reference(model, kv_heads):
    """One call's inputs (ONNX names) and torch's logits, and a greedy run."""
    rng = np.random.default_rng(0)
    head_dim = HIDDEN // HEADS
    ids = rng.integers(0, VOCAB, (2, NEW)).astype(np.int64)
    mask = np.ones((2, PAST + NEW), np.int64)
    mask[1, :2] = 0  # the second row's first two past tokens are padding
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)[:, PAST:]
    past = [(rng.standard_normal((2, kv_heads, PAST, head_dim)).astype(np.float32),
             rng.standard_normal((2, kv_heads, PAST, head_dim)).astype(np.float32))
            for _ in range(LAYERS)]
    cache = transformers.DynamicCache()
    for layer, (k, v) in enumerate(past):
        cache.update(torch.from_numpy(k), torch.from_numpy(v), layer)
    with torch.no_grad():
        logits = model(input_ids=torch.from_numpy(ids),
                       attention_mask=torch.from_numpy(mask),
                       position_ids=torch.from_numpy(positions),
                       past_key_values=cache, use_cache=True).logits.numpy()
    inputs = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
    for layer, (k, v) in enumerate(past):
        inputs[f"past_key_values.{layer}.key"] = k
        inputs[f"past_key_values.{layer}.value"] = v
    prompt = rng.integers(0, VOCAB, (1, 6)).astype(np.int64)
    with torch.no_grad():
        greedy = model.generate(torch.from_numpy(prompt), max_new_tokens=GENERATED,
                                do_sample=False, pad_token_id=0,
                                attention_mask=torch.ones_like(torch.from_numpy(prompt)))
    return inputs, logits, prompt[0], greedy[0, prompt.shape[1]:].numpy()


def export(name, out_dir):
    torch.manual_seed(0)
    model = build(name).eval()
    kv_heads = HEADS if name == "gpt2" else KV_HEADS
    with tempfile.TemporaryDirectory() as work:
        model.save_pretrained(os.path.join(work, "hf"))
        main_export(os.path.join(work, "hf"), output=os.path.join(work, "onnx"),
                    task="text-generation-with-past")
        shutil.copy(os.path.join(work, "onnx", "model.onnx"),
                    os.path.join(out_dir, name + ".onnx"))
    inputs, logits, prompt, greedy = reference(model, kv_heads)
    np.savez(os.path.join(out_dir, name + ".reference.npz"), logits=logits, prompt=prompt,
             greedy=greedy, **inputs)
    print(f"{name}: {os.path.join(out_dir, name + '.onnx')}, greedy {greedy.tolist()}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--out-dir", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("names", nargs="*", default=["gpt2", "llama", "qwen2"])
    args = parser.parse_args()
    for name in args.names:
        export(name, args.out_dir)


if __name__ == "__main__":
    main()
