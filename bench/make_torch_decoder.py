#!/usr/bin/env python3
"""A GPT-2-small-shaped decoder (124M: 12 layers, 768 wide, 12 heads, 50257
tokens) written the way Hugging Face's GPT2LMHeadModel computes attention,
exported with torch.onnx with Optimum's decoder-with-past signature.

It is the bench's "torch export" row: the same shape as
test/models/make_decoder.py --preset gpt2-124m, but spelled as users'
exports are: the causal mask sliced from a registered boolean buffer and
applied with torch.where(causal, scores, finfo.min), the padding mask
(1 - attention_mask) * finfo.min added, the scale a Div by a tensor, a
tanh-approximated GELU written out, position ids from the caller.

  /usr/bin/python3 bench/make_torch_decoder.py -o gpt2-124m-torch.onnx [--layers N]

Needs Debian's python3-torch (1.13). Weights are random (normal, std 0.02,
seed 0): the bench measures speed, and compares greedy tokens with ONNX
Runtime on the same file.
"""
import argparse
import math

import torch
from torch import nn
from torch.nn import functional as F


class Attention(nn.Module):
    def __init__(self, hidden, heads, max_positions):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.c_attn = nn.Linear(hidden, 3 * hidden)
        self.c_proj = nn.Linear(hidden, hidden)
        self.register_buffer("bias", torch.tril(torch.ones((max_positions, max_positions),
                                                           dtype=torch.bool))
                             .view(1, 1, max_positions, max_positions), persistent=False)

    def split_heads(self, t):
        b, s, _ = t.size()
        return t.view(b, s, self.heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, x, past_key, past_value, mask4):
        b, s, hidden = x.size()
        q, k, v = self.c_attn(x).split(hidden, dim=2)
        q, k, v = self.split_heads(q), self.split_heads(k), self.split_heads(v)
        k = torch.cat((past_key, k), dim=-2)
        v = torch.cat((past_value, v), dim=-2)
        w = torch.matmul(q, k.transpose(-1, -2))
        w = w / torch.full([], v.size(-1) ** 0.5, dtype=w.dtype)
        query_length, key_length = q.size(-2), k.size(-2)
        causal = self.bias[:, :, key_length - query_length:key_length, :key_length]
        w = torch.where(causal, w, torch.full([], torch.finfo(w.dtype).min, dtype=w.dtype))
        w = F.softmax(w + mask4, dim=-1)
        out = torch.matmul(w, v).permute(0, 2, 1, 3).contiguous().view(b, s, hidden)
        return self.c_proj(out), k, v


class Block(nn.Module):
    def __init__(self, hidden, heads, max_positions):
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden, eps=1e-5)
        self.attn = Attention(hidden, heads, max_positions)
        self.ln_2 = nn.LayerNorm(hidden, eps=1e-5)
        self.c_fc = nn.Linear(hidden, 4 * hidden)
        self.c_proj = nn.Linear(4 * hidden, hidden)

    def forward(self, x, past_key, past_value, mask4):
        a, k, v = self.attn(self.ln_1(x), past_key, past_value, mask4)
        x = x + a
        h = self.c_fc(self.ln_2(x))
        h = 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * h.pow(3))))
        return x + self.c_proj(h), k, v


class Gpt2(nn.Module):
    def __init__(self, layers, hidden, heads, vocab, max_positions):
        super().__init__()
        self.wte = nn.Embedding(vocab, hidden)
        self.wpe = nn.Embedding(max_positions, hidden)
        self.blocks = nn.ModuleList(Block(hidden, heads, max_positions) for _ in range(layers))
        self.ln_f = nn.LayerNorm(hidden, eps=1e-5)

    def forward(self, input_ids, attention_mask, position_ids, *past):
        x = self.wte(input_ids) + self.wpe(position_ids)
        mask4 = attention_mask[:, None, None, :].to(x.dtype)
        mask4 = (1.0 - mask4) * torch.finfo(x.dtype).min
        presents = []
        for i, block in enumerate(self.blocks):
            x, k, v = block(x, past[2 * i], past[2 * i + 1], mask4)
            presents += [k, v]
        logits = self.ln_f(x) @ self.wte.weight.t()
        return (logits, *presents)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--max-positions", type=int, default=1024)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = Gpt2(args.layers, args.hidden, args.heads, args.vocab, args.max_positions).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02)
        for block in model.blocks:
            block.ln_1.weight.fill_(1.0)
            block.ln_2.weight.fill_(1.0)
        model.ln_f.weight.fill_(1.0)

    head_dim = args.hidden // args.heads
    past_len, seq = 2, 3
    ids = torch.randint(0, args.vocab, (1, seq))
    mask = torch.ones(1, past_len + seq, dtype=torch.long)
    positions = torch.arange(past_len, past_len + seq)[None]
    past = [torch.randn(1, args.heads, past_len, head_dim) for _ in range(2 * args.layers)]
    inputs = ["input_ids", "attention_mask", "position_ids"]
    outputs = ["logits"]
    axes = {"input_ids": {0: "batch_size", 1: "sequence_length"},
            "attention_mask": {0: "batch_size", 1: "past_sequence_length + sequence_length"},
            "position_ids": {0: "batch_size", 1: "sequence_length"},
            "logits": {0: "batch_size", 1: "sequence_length"}}
    for i in range(args.layers):
        for kind in ("key", "value"):
            inputs.append(f"past_key_values.{i}.{kind}")
            outputs.append(f"present.{i}.{kind}")
            axes[inputs[-1]] = {0: "batch_size", 2: "past_sequence_length"}
            axes[outputs[-1]] = {0: "batch_size", 2: "past_sequence_length + sequence_length"}
    with torch.no_grad():
        torch.onnx.export(model, (ids, mask, positions, *past), args.output,
                          input_names=inputs, output_names=outputs, dynamic_axes=axes,
                          opset_version=17, do_constant_folding=True)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
