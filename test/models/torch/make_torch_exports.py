#!/usr/bin/env python3
"""Small decoders exported with torch.onnx, the way users export them, for
the attention-fusion tests (passes/FuseAttention.cpp).

Each model is hand-written in the style of a well-known code base, so that
its ONNX spelling of attention is the one real exports have:

  gpt2_masked_fill  nanoGPT: Mul by 1/sqrt(d), masked_fill(tril == 0, -inf)
                    on a sliced registered buffer, Softmax(dim=-1).
  llama_gqa         Llama: RMSNorm, RoPE, GQA through repeat_kv
                    (expand + reshape), Div by sqrt(d), masked_fill of a
                    tril computed in forward, softmax in float32.
  hf_gpt2_padded    Hugging Face GPT-2: torch.where(causal, scores,
                    finfo.min) plus the 4-D mask (1 - attention_mask) *
                    finfo.min, for left-padded batches.
  whisper_split_scale  Whisper: q and k each scaled by d**-0.25,
                    a single key/value head repeated (Tile) for MQA, a decomposed softmax
                    (max, sub, exp, sum, div) and no mask.
  neg_softmax_axis  softmax over the query axis: not attention.
  neg_mask_after_softmax  the bias is added to the probabilities.
  neg_probs_used    the probabilities are a second output.

Every model maps input_ids [batch, sequence] (and attention_mask for
hf_gpt2_padded) to logits [batch, sequence, vocab]; the sequence axis is
dynamic. Weights are deterministic (torch.manual_seed). Next to each
NAME.onnx, NAME.reference.npz holds torch's logits for other inputs (batch
2, 7 tokens; left padding for hf_gpt2_padded).

  /usr/bin/python3 test/models/torch/make_torch_exports.py [-o DIR] [NAME...]

Needs Debian's python3-torch (1.13); the committed .onnx files mean the
tests never do.
"""
import argparse
import math
import os
import sys

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

VOCAB, HIDDEN, HEADS, MAX_POS = 64, 32, 4, 64
HEAD_DIM = HIDDEN // HEADS


class Gpt2Attention(nn.Module):
    """nanoGPT's CausalSelfAttention, with switches for the negative cases."""

    def __init__(self, softmax_dim=-1, mask_after_softmax=False, return_probs=False):
        super().__init__()
        self.c_attn = nn.Linear(HIDDEN, 3 * HIDDEN)
        self.c_proj = nn.Linear(HIDDEN, HIDDEN)
        self.register_buffer("bias", torch.tril(torch.ones(MAX_POS, MAX_POS))
                             .view(1, 1, MAX_POS, MAX_POS))
        self.softmax_dim = softmax_dim
        self.mask_after_softmax = mask_after_softmax
        self.return_probs = return_probs

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(HIDDEN, dim=2)
        k = k.view(B, T, HEADS, HEAD_DIM).transpose(1, 2)
        q = q.view(B, T, HEADS, HEAD_DIM).transpose(1, 2)
        v = v.view(B, T, HEADS, HEAD_DIM).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        if self.mask_after_softmax:
            att = F.softmax(att, dim=self.softmax_dim)
            att = att + (1.0 - self.bias[:, :, :T, :T]) * -1e-3
        else:
            att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
            att = F.softmax(att, dim=self.softmax_dim)
        y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y), att


class Gpt2(nn.Module):
    def __init__(self, **attention):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, HIDDEN)
        self.wpe = nn.Embedding(MAX_POS, HIDDEN)
        self.ln_1 = nn.LayerNorm(HIDDEN)
        self.attn = Gpt2Attention(**attention)
        self.ln_2 = nn.LayerNorm(HIDDEN)
        self.fc = nn.Linear(HIDDEN, 4 * HIDDEN)
        self.proj = nn.Linear(4 * HIDDEN, HIDDEN)
        self.ln_f = nn.LayerNorm(HIDDEN)

    def forward(self, input_ids):
        T = input_ids.size(1)
        pos = torch.arange(0, T, dtype=torch.long).unsqueeze(0)
        x = self.wte(input_ids) + self.wpe(pos)
        a, probs = self.attn(self.ln_1(x))
        x = x + a
        x = x + self.proj(F.gelu(self.fc(self.ln_2(x))))
        logits = self.ln_f(x) @ self.wte.weight.t()
        if self.attn.return_probs:
            return logits, probs
        return logits


class RMSNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(1.0 + 0.1 * torch.randn(HIDDEN))

    def forward(self, x):
        variance = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(variance + 1e-5))


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


class Llama(nn.Module):
    """Llama's attention with GQA (4 query heads, 2 key/value heads)."""
    KV_HEADS = 2

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, HIDDEN)
        self.norm1 = RMSNorm()
        self.q_proj = nn.Linear(HIDDEN, HIDDEN, bias=False)
        self.k_proj = nn.Linear(HIDDEN, self.KV_HEADS * HEAD_DIM, bias=False)
        self.v_proj = nn.Linear(HIDDEN, self.KV_HEADS * HEAD_DIM, bias=False)
        self.o_proj = nn.Linear(HIDDEN, HIDDEN, bias=False)
        self.norm2 = RMSNorm()
        self.gate = nn.Linear(HIDDEN, 96, bias=False)
        self.up = nn.Linear(HIDDEN, 96, bias=False)
        self.down = nn.Linear(96, HIDDEN, bias=False)
        self.norm_f = RMSNorm()
        self.lm_head = nn.Linear(HIDDEN, VOCAB, bias=False)
        inv_freq = 1.0 / (10000 ** (torch.arange(0, HEAD_DIM, 2).float() / HEAD_DIM))
        self.register_buffer("inv_freq", inv_freq)

    @staticmethod
    def repeat_kv(x, n_rep):
        b, kvh, s, d = x.shape
        x = x[:, :, None, :, :].expand(b, kvh, n_rep, s, d)
        return x.reshape(b, kvh * n_rep, s, d)

    def forward(self, input_ids):
        B, T = input_ids.shape
        x = self.embed(input_ids)
        h = self.norm1(x)
        q = self.q_proj(h).view(B, T, HEADS, HEAD_DIM).transpose(1, 2)
        k = self.k_proj(h).view(B, T, self.KV_HEADS, HEAD_DIM).transpose(1, 2)
        v = self.v_proj(h).view(B, T, self.KV_HEADS, HEAD_DIM).transpose(1, 2)
        t = torch.arange(T, dtype=torch.float32)
        freqs = torch.outer(t, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = self.repeat_kv(k, HEADS // self.KV_HEADS)
        v = self.repeat_kv(v, HEADS // self.KV_HEADS)
        scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(HEAD_DIM)
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
        scores = scores.masked_fill(~causal, float("-inf"))
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).type_as(q)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(B, T, HIDDEN)
        x = x + self.o_proj(out)
        h = self.norm2(x)
        x = x + self.down(F.silu(self.gate(h)) * self.up(h))
        return self.lm_head(self.norm_f(x))


class HfGpt2(nn.Module):
    """Hugging Face's GPT2Attention._attn with the model's 4-D padding mask."""

    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, HIDDEN)
        self.wpe = nn.Embedding(MAX_POS, HIDDEN)
        self.ln_1 = nn.LayerNorm(HIDDEN)
        self.c_attn = nn.Linear(HIDDEN, 3 * HIDDEN)
        self.c_proj = nn.Linear(HIDDEN, HIDDEN)
        self.ln_f = nn.LayerNorm(HIDDEN)
        self.register_buffer("bias", torch.tril(torch.ones((MAX_POS, MAX_POS), dtype=torch.bool))
                             .view(1, 1, MAX_POS, MAX_POS))

    @staticmethod
    def split_heads(t):
        B, T, _ = t.size()
        return t.view(B, T, HEADS, HEAD_DIM).permute(0, 2, 1, 3)

    def forward(self, input_ids, attention_mask):
        B, T = input_ids.shape
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        x = self.wte(input_ids) + self.wpe(position_ids)
        q, k, v = self.c_attn(self.ln_1(x)).split(HIDDEN, dim=2)
        q, k, v = self.split_heads(q), self.split_heads(k), self.split_heads(v)
        mask4 = attention_mask[:, None, None, :].to(dtype=x.dtype)
        mask4 = (1.0 - mask4) * torch.finfo(x.dtype).min
        w = torch.matmul(q, k.transpose(-1, -2))
        w = w / torch.full([], v.size(-1) ** 0.5, dtype=w.dtype)
        query_length, key_length = q.size(-2), k.size(-2)
        causal = self.bias[:, :, key_length - query_length: key_length, :key_length]
        mask_value = torch.full([], torch.finfo(w.dtype).min, dtype=w.dtype)
        w = torch.where(causal, w.to(w.dtype), mask_value)
        w = w + mask4
        w = F.softmax(w, dim=-1)
        out = torch.matmul(w, v).permute(0, 2, 1, 3).contiguous().view(B, T, HIDDEN)
        x = x + self.c_proj(out)
        return self.ln_f(x) @ self.wte.weight.t()


class Whisper(nn.Module):
    """Whisper's qkv_attention: d**-0.25 on q and k; MQA through repeat
    (Tile); softmax written out by hand; no mask."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, HIDDEN)
        self.ln = nn.LayerNorm(HIDDEN)
        self.query = nn.Linear(HIDDEN, HIDDEN)
        self.key = nn.Linear(HIDDEN, HEAD_DIM, bias=False)
        self.value = nn.Linear(HIDDEN, HEAD_DIM)
        self.out = nn.Linear(HIDDEN, HIDDEN)
        self.ln_f = nn.LayerNorm(HIDDEN)

    def forward(self, input_ids):
        B, T = input_ids.shape
        x = self.embed(input_ids)
        h = self.ln(x)
        scale = HEAD_DIM ** -0.25
        q = self.query(h).view(B, T, HEADS, HEAD_DIM).permute(0, 2, 1, 3) * scale
        k = self.key(h).view(B, T, 1, HEAD_DIM).permute(0, 2, 3, 1) * scale
        v = self.value(h).view(B, T, 1, HEAD_DIM).permute(0, 2, 1, 3)
        # repeat (ONNX Tile): torch 1.13 exports repeat_interleave with the
        # traced sizes baked in, which ONNX Runtime rejects at other lengths.
        k = k.repeat(1, HEADS, 1, 1)
        v = v.repeat(1, HEADS, 1, 1)
        qk = q @ k
        e = torch.exp(qk - qk.max(dim=-1, keepdim=True).values)
        w = e / e.sum(dim=-1, keepdim=True)
        o = (w @ v).permute(0, 2, 1, 3).flatten(start_dim=2)
        x = x + self.out(o)
        return self.ln_f(x) @ self.embed.weight.t()


MODELS = {
    "gpt2_masked_fill": lambda: Gpt2(),
    "llama_gqa": lambda: Llama(),
    "hf_gpt2_padded": lambda: HfGpt2(),
    "whisper_split_scale": lambda: Whisper(),
    "neg_softmax_axis": lambda: Gpt2(softmax_dim=-2),
    "neg_mask_after_softmax": lambda: Gpt2(mask_after_softmax=True),
    "neg_probs_used": lambda: Gpt2(return_probs=True),
}


def export(name, path):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    ids = torch.randint(0, VOCAB, (2, 5))
    args, input_names = (ids,), ["input_ids"]
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"}}
    if name == "hf_gpt2_padded":
        mask = torch.ones(2, 5, dtype=torch.long)
        mask[1, :2] = 0
        args, input_names = (ids, mask), ["input_ids", "attention_mask"]
        axes["attention_mask"] = {0: "batch", 1: "sequence"}
    # torch's own logits on other inputs (batch 2, 7 tokens, the second row
    # left-padded by 3), the reference the end-to-end test compares with.
    check_ids = torch.randint(0, VOCAB, (2, 7))
    check = {"input_ids": check_ids}
    if name == "hf_gpt2_padded":
        check_mask = torch.ones(2, 7, dtype=torch.long)
        check_mask[1, :3] = 0
        check["attention_mask"] = check_mask
    with torch.no_grad():
        logits = model(*check.values())
    logits = logits[0] if isinstance(logits, tuple) else logits
    np.savez(path[:-len(".onnx")] + ".reference.npz", logits=logits.numpy(),
             **{k: v.numpy() for k, v in check.items()})
    output_names = ["logits"]
    if getattr(getattr(model, "attn", None), "return_probs", False):
        output_names.append("probs")
        axes["probs"] = {0: "batch", 2: "sequence", 3: "sequence"}
    with torch.no_grad():
        torch.onnx.export(model, args, path, input_names=input_names,
                          output_names=output_names, dynamic_axes=axes, opset_version=17,
                          do_constant_folding=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output-dir", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("names", nargs="*", default=sorted(MODELS))
    args = parser.parse_args()
    for name in args.names:
        if name not in MODELS:
            sys.exit(f"unknown model '{name}'; known: {', '.join(sorted(MODELS))}")
        path = os.path.join(args.output_dir, name + ".onnx")
        export(name, path)
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
