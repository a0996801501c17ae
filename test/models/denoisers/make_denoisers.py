#!/usr/bin/env python3
"""Small denoisers exported with torch.onnx the way diffusion and
flow-matching exporters save them: the network alone, with the timestep as an
input tensor, and the sampler left outside (tests/e2e/samplers.py has the
numpy sampler loops; hasten-compile --sampler compiles them in).

  dit_tiny       a DiT in PixArt's adaLN-single style: a 2x2 patchify Conv,
                 learned position embeddings, a sinusoidal timestep embedding
                 (int64 timestep, 0..999) through a SiLU MLP to the adaLN
                 modulation of every block (shift, scale and gate, from the
                 timestep alone), self-attention, cross-attention to
                 `encoder_hidden_states`, a tanh-GELU MLP, and an unpatchify
                 head. sample [batch, 4, 8, 8] -> noise prediction, same shape.
  flow_vocoder   a 1-D convolutional vector-field network in the style of
                 PeriodWave's: waveform x [batch, 1, 256] at flow time t
                 (float, 0..1, scaled by 1000 inside), mel [batch, 8, 16]
                 upsampled 16x by a transposed Conv; dilated residual Conv
                 blocks with a per-channel time bias. -> velocity [batch, 1, 256].

The batch axis is dynamic. Weights are deterministic (torch.manual_seed).
Next to each NAME.onnx, NAME.reference.npz holds torch's outputs for batch-3
inputs (inputs saved under their names, output as `output`), so that the
import can be checked without torch.

  /usr/bin/python3 test/models/denoisers/make_denoisers.py [-o DIR]

Needs Debian's python3-torch (1.13); the committed files mean the tests never
do.
"""
import argparse
import math
import os

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def timestep_embedding(t, dim, scale=1.0):
    """The sinusoidal embedding of diffusers' Timesteps (cos first)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = (t.to(torch.float32) * scale)[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class Attention(nn.Module):
    def __init__(self, dim, heads, context_dim=None):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim or dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x, context=None):
        b, n, c = x.shape
        context = x if context is None else context
        m = context.shape[1]
        d = c // self.heads
        q = self.q(x).view(b, n, self.heads, d).transpose(1, 2)
        k, v = self.kv(context).split(c, dim=-1)
        k = k.view(b, m, self.heads, d).transpose(1, 2)
        v = v.view(b, m, self.heads, d).transpose(1, 2)
        att = F.softmax((q @ k.transpose(-2, -1)) / math.sqrt(d), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, n, c)
        return self.out(y)


class DiTBlock(nn.Module):
    def __init__(self, dim, heads, context_dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.cross = Attention(dim, heads, context_dim)
        self.norm3 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(2 * dim, dim))
        # PixArt's per-block table added to the shared timestep modulation.
        self.table = nn.Parameter(torch.randn(6, dim) / dim ** 0.5)

    def forward(self, x, t6, context):
        mod = t6.view(-1, 6, x.shape[-1]) + self.table[None]
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=1)
        h = self.norm1(x) * (1 + scale1) + shift1
        x = x + gate1 * self.attn(h)
        x = x + self.cross(self.norm2(x), context)
        h = self.norm3(x) * (1 + scale2) + shift2
        return x + gate2 * self.mlp(h)


class DiTTiny(nn.Module):
    CHANNELS, PATCH, HEADS, CONTEXT = 4, 2, 4, 16

    def __init__(self, size=8, dim=32, depth=2, context_len=4):
        super().__init__()
        self.SIZE, self.DIM, self.DEPTH, self.CONTEXT_LEN = size, dim, depth, context_len
        c, p, d = self.CHANNELS, self.PATCH, self.DIM
        self.patchify = nn.Conv2d(c, d, p, stride=p)
        tokens = (self.SIZE // p) ** 2
        self.pos = nn.Parameter(torch.randn(1, tokens, d) * 0.1)
        self.t_mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.SiLU(), nn.Linear(2 * d, d))
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.blocks = nn.ModuleList(
            DiTBlock(d, self.HEADS, self.CONTEXT) for _ in range(self.DEPTH))
        self.final_norm = nn.LayerNorm(d, eps=1e-6)
        self.final_table = nn.Parameter(torch.randn(2, d) / d ** 0.5)
        self.head = nn.Linear(d, p * p * c)

    def forward(self, sample, timestep, encoder_hidden_states):
        b = sample.shape[0]
        c, p, s, d = self.CHANNELS, self.PATCH, self.SIZE, self.DIM
        x = self.patchify(sample).flatten(2).transpose(1, 2) + self.pos
        temb = self.t_mlp(timestep_embedding(timestep, d))
        t6 = self.t_block(temb)
        for block in self.blocks:
            x = block(x, t6, encoder_hidden_states)
        shift, scale = (temb[:, None] + self.final_table[None]).chunk(2, dim=1)
        x = self.head(self.final_norm(x) * (1 + scale) + shift)
        g = s // p
        x = x.view(b, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, c, s, s)


class ResBlock1d(nn.Module):
    def __init__(self, channels, dilation, time_dim):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1)
        self.time = nn.Linear(time_dim, channels)

    def forward(self, x, temb):
        h = F.leaky_relu(self.conv1(x), 0.1) + self.time(temb)[:, :, None]
        return x + self.conv2(F.leaky_relu(h, 0.1))


class FlowVocoder(nn.Module):
    SAMPLES, MELS, HOP, CHANNELS, TIME_DIM = 256, 8, 16, 16, 32

    def __init__(self):
        super().__init__()
        ch = self.CHANNELS
        self.t_mlp = nn.Sequential(nn.Linear(self.TIME_DIM, 2 * self.TIME_DIM), nn.SiLU(),
                                   nn.Linear(2 * self.TIME_DIM, self.TIME_DIM))
        self.pre = nn.Conv1d(1, ch, 7, padding=3)
        self.mel_up = nn.ConvTranspose1d(self.MELS, ch, self.HOP, stride=self.HOP)
        self.blocks = nn.ModuleList(ResBlock1d(ch, dil, self.TIME_DIM) for dil in (1, 2, 4))
        self.post = nn.Conv1d(ch, 1, 7, padding=3)

    def forward(self, x, t, mel):
        temb = self.t_mlp(timestep_embedding(t, self.TIME_DIM, scale=1000.0))
        h = self.pre(x) + self.mel_up(mel)
        for block in self.blocks:
            h = block(h, temb)
        return self.post(F.leaky_relu(h, 0.1))


def export(model, name, inputs, out_dir):
    names = list(inputs)
    path = os.path.join(out_dir, name + ".onnx")
    axes = {n: {0: "batch"} for n in names}
    axes["output"] = {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(model, tuple(inputs.values()), path, input_names=names,
                          output_names=["output"], dynamic_axes=axes, opset_version=17,
                          do_constant_folding=True)
        output = model(*inputs.values()).numpy()
    np.savez(os.path.join(out_dir, name + ".reference.npz"), output=output,
             **{n: v.numpy() for n, v in inputs.items()})
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--out-dir", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--bench", action="store_true",
                        help="write the bench's DiTs instead (bench/sampler_bench.py): "
                             "dit_small (a 16x16 latent as 64 tokens, width 128, depth 4, 16 "
                             "context tokens) and dit_wide (4 tokens, width 512, depth 8: 95 MB)")
    args = parser.parse_args()
    if args.bench:
        torch.manual_seed(0)
        dit = DiTTiny(size=16, dim=128, depth=4, context_len=16).eval()
        g = torch.Generator().manual_seed(1)
        export(dit, "dit_small", {
            "sample": torch.randn(2, 4, 16, 16, generator=g),
            "timestep": torch.tensor([999, 3], dtype=torch.int64),
            "encoder_hidden_states": torch.randn(2, 16, 16, generator=g),
        }, args.out_dir)
        torch.manual_seed(0)
        wide = DiTTiny(size=4, dim=512, depth=8, context_len=4).eval()
        export(wide, "dit_wide", {
            "sample": torch.randn(2, 4, 4, 4, generator=g),
            "timestep": torch.tensor([999, 3], dtype=torch.int64),
            "encoder_hidden_states": torch.randn(2, 4, 16, generator=g),
        }, args.out_dir)
        return
    torch.manual_seed(0)
    dit = DiTTiny().eval()
    g = torch.Generator().manual_seed(1)
    export(dit, "dit_tiny", {
        "sample": torch.randn(3, 4, 8, 8, generator=g),
        "timestep": torch.tensor([999, 500, 3], dtype=torch.int64),
        "encoder_hidden_states": torch.randn(3, 4, 16, generator=g),
    }, args.out_dir)
    torch.manual_seed(2)
    vocoder = FlowVocoder().eval()
    export(vocoder, "flow_vocoder", {
        "x": torch.randn(3, 1, 256, generator=g),
        "t": torch.tensor([0.0, 0.25, 0.875]),
        "mel": torch.randn(3, 8, 16, generator=g),
    }, args.out_dir)


if __name__ == "__main__":
    main()
