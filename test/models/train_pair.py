#!/usr/bin/env python3
"""Trains a target and a draft byte-level decoder for the speculative
decoding bench, on text found on this machine, and exports both with the
decoder conventions of make_decoder.py (Optimum's decoder-with-past).

The text is /usr/share/common-licenses and the copyright files under
/usr/share/doc; files are split into training and held-out sets by a hash of
their path, so that held-out prompts are text neither model saw. Both models
are GPT-2-style (learned positions, LayerNorm, tanh GELU, tied embeddings),
mirroring make_decoder.reference, so that the trained weights export through
make_decoder.build_model:

  target: 8 layers, d = 512, 8 heads  (about 26M parameters, 103 MB in f32,
          more than the last-level cache, so its decode is memory-bound)
  draft:  2 layers, d = 256, 4 heads  (about 1.7M parameters)

Outputs in OUT (default ~/.cache/hasten/spec-pair): target.onnx, draft.onnx,
heldout.txt, train-log.txt (and target-long.onnx). Training is bounded by wall time (--minutes per
model), so the interpreter matters: PyPI's torch in a venv (python3 -m venv
build/train-venv && build/train-venv/bin/pip install torch numpy onnx) ran
its steps 3.4x faster than Debian's python3-torch 1.13 here, whose matrix
products go through the system BLAS (Debian's reference BLAS unless
libopenblas0-pthread is installed: 2.8 GFLOP/s a core, ten times slower
still). Either works; CI never runs this.

  train_pair.py [--out DIR] [--minutes-target 40] [--minutes-draft 12] [--threads 1]
  train_pair.py --more-target-minutes 25 # the saved target, trained further
  train_pair.py --distill-minutes 20     # then: the draft learns the target's
                                         # distributions (KL), starting from
                                         # the saved draft
  train_pair.py --long-target-minutes 30 # target-long.onnx: the saved target
                                         # with 8448 positions, for RAPID's
                                         # 8192-byte prompts

Distillation (as DistillSpec does) is what makes a draft agree with its
target: a draft trained on the text alone predicts the text, not what the
target would say.
"""

import argparse
import glob
import hashlib
import math
import os
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_decoder as md  # noqa: E402

TARGET = md.Config(arch="gpt2", layers=8, hidden=512, heads=8, vocab=256, max_positions=1024)
# The target for RAPID's long prompts: the trained target, its position
# table extended to 8448 rows and trained further on windows placed
# anywhere in it (an 8192-byte prompt and 256 new tokens).
LONG_POSITIONS = 8448
LONG_TARGET = md.Config(arch="gpt2", layers=8, hidden=512, heads=8, vocab=256,
                        max_positions=LONG_POSITIONS)
DRAFT = md.Config(arch="gpt2", layers=2, hidden=256, heads=4, vocab=256, max_positions=1024)


def corpus():
    """(training bytes, held-out bytes)."""
    files = sorted(glob.glob("/usr/share/common-licenses/*") +
                   glob.glob("/usr/share/doc/*/copyright"))
    train, held = [], []
    for path in files:
        if not os.path.isfile(path):
            continue
        try:
            data = open(path, "rb").read()
        except OSError:
            continue
        # One file in 20 is held out, chosen by its path's hash.
        bucket = int(hashlib.sha256(path.encode()).hexdigest(), 16) % 20
        (held if bucket == 0 else train).append(data)
    return b"\n".join(train), b"\n".join(held)


class Decoder(torch.nn.Module):
    """make_decoder's GPT-2 architecture, parameterized as its weights dict."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        w = md.make_weights(cfg)
        self.params = torch.nn.ParameterDict(
            {name.replace(".", "__"): torch.nn.Parameter(torch.from_numpy(v.copy()))
             for name, v in w.items()})

    def w(self, name):
        return self.params[name.replace(".", "__")]

    def forward(self, ids, first_position=0):
        cfg = self.cfg
        B, S = ids.shape
        H, D = cfg.heads, cfg.head_dim
        x = self.w("embed")[ids] + self.w("pos_embed")[first_position:first_position + S]
        causal = torch.ones(S, S, dtype=torch.bool).tril()

        def norm(t, prefix):
            return F.layer_norm(t, (cfg.hidden,), self.w(prefix + ".weight"),
                                self.w(prefix + ".bias"), cfg.eps)

        for i in range(cfg.layers):
            p = f"layers.{i}."
            qkv = norm(x, p + "norm1") @ self.w(p + "attn.qkv.weight") + self.w(p + "attn.qkv.bias")
            q, k, v = (t.reshape(B, S, H, D).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(D)
            scores = scores.masked_fill(~causal, float("-inf"))
            merged = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, S, cfg.hidden)
            x = x + merged @ self.w(p + "attn.out.weight") + self.w(p + "attn.out.bias")
            up = norm(x, p + "norm2") @ self.w(p + "mlp.fc.weight") + self.w(p + "mlp.fc.bias")
            x = x + F.gelu(up, approximate="tanh") @ self.w(p + "mlp.proj.weight") + \
                self.w(p + "mlp.proj.bias")
        return norm(x, "final_norm") @ self.w("embed").T

    def weights(self):
        return {name.replace("__", "."): p.detach().numpy().astype(np.float32)
                for name, p in self.params.items()}


def load_weights(path):
    """A saved model's weights, by make_decoder's names (its initializers)."""
    from onnx import numpy_helper
    model = onnx.load(path)
    return {init.name: numpy_helper.to_array(init).copy() for init in model.graph.initializer}


def extend_positions(table, positions):
    """A learned position table grown to `positions` rows: the new rows
    repeat the second half of the trained ones (rows that follow a
    context, not a text's first bytes), which the long training then
    tunes."""
    trained = table.shape[0]
    half = trained // 2
    rows = [table] + [table[half + (i - trained) % (trained - half)][None]
                      for i in range(trained, positions)]
    return np.concatenate(rows).astype(np.float32)


def long_context_loss(model, held, log):
    """Held-out loss by position over one window as long as the position
    table: whether the far positions (and attention over a long context)
    predict as well as the first ones."""
    n = model.cfg.max_positions
    ids = torch.from_numpy(as_tokens(held[:n + 1]))
    with torch.no_grad():
        logits = model(ids[None, :n])[0]
        losses = F.cross_entropy(logits, ids[1:], reduction="none").numpy()
    quarters = np.array_split(losses, 4)
    line = "long held-out window, loss by quarter of positions: " + ", ".join(
        f"{q.mean():.3f}" for q in quarters)
    print(line, flush=True)
    log.write(line + "\n")


def as_tokens(data):
    """Bytes (a byte-level model's tokens) or an array of token ids."""
    if isinstance(data, np.ndarray):
        return data.astype(np.int64)
    return np.frombuffer(data, dtype=np.uint8).astype(np.int64)


# Training windows as long as the position table (1024 bytes, in batches of
# two: 2048 bytes per step as before): learned positions that no window
# reaches stay at their random initialization. With 256-byte windows, every
# token the bench generated after its 256-byte prompts read an untrained
# position, and so did most of RAPID's long prompt.
CONTEXT = TARGET.max_positions


def train(name, cfg, data, held, minutes, log, seq=CONTEXT, batch=2, lr=1e-3, teacher=None,
          start=None):
    """Trains for `minutes`; on the text (cross-entropy), or with a
    `teacher`, on its distributions (KL divergence). `start`: initial
    weights. A position table longer than the window is trained by windows
    placed at random positions in it."""
    torch.manual_seed(cfg.layers * 1000 + cfg.hidden)
    model = Decoder(cfg)
    if start is not None:
        with torch.no_grad():
            for name_, p in model.params.items():
                p.copy_(torch.from_numpy(start[name_.replace("__", ".")]))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    tokens, held_tokens = (torch.from_numpy(as_tokens(d)) for d in (data, held))
    rng = np.random.default_rng(0)
    begun, step, deadline = time.time(), 0, time.time() + minutes * 60
    # Cosine decay over the expected number of steps, re-estimated as it goes.
    while time.time() < deadline:
        elapsed = time.time() - begun
        expected = max(step + 1, int(step / max(elapsed, 1e-9) * minutes * 60)) if step else 10**6
        for group in opt.param_groups:
            warm = min(1.0, (step + 1) / 50)
            group["lr"] = lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / expected))))
        offsets = rng.integers(0, len(tokens) - seq - 1, batch)
        x = torch.stack([tokens[o:o + seq] for o in offsets])
        y = torch.stack([tokens[o + 1:o + seq + 1] for o in offsets])
        first = int(rng.integers(0, cfg.max_positions - seq + 1))
        if teacher is None:
            loss = F.cross_entropy(model(x, first).reshape(-1, cfg.vocab), y.reshape(-1))
        else:
            with torch.no_grad():
                target = F.log_softmax(teacher(x).reshape(-1, cfg.vocab), -1)
            loss = F.kl_div(F.log_softmax(model(x).reshape(-1, cfg.vocab), -1), target,
                            log_target=True, reduction="batchmean")
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 25 == 0:
            line = f"{name}: step {step}, {time.time() - begun:.0f} s, loss {loss.item():.3f}"
            print(line, flush=True)
            log.write(line + "\n")
            log.flush()
    with torch.no_grad():
        losses = []
        for o in range(0, min(len(held_tokens) - seq - 1, 64 * seq), seq):
            x = held_tokens[o:o + seq][None]
            y = held_tokens[o + 1:o + seq + 1][None]
            losses.append(F.cross_entropy(model(x).reshape(-1, cfg.vocab), y.reshape(-1)).item())
    line = f"{name}: {step} steps in {time.time() - begun:.0f} s; held-out loss {np.mean(losses):.3f} nats/token"
    print(line, flush=True)
    log.write(line + "\n")
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.expanduser("~/.cache/hasten/spec-pair"))
    parser.add_argument("--minutes-target", type=float, default=40)
    parser.add_argument("--minutes-draft", type=float, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--distill-minutes", type=float, default=0,
                        help="only distill the saved draft from the saved target")
    parser.add_argument("--more-target-minutes", type=float, default=0,
                        help="only train the saved target further (then distill again)")
    parser.add_argument("--long-target-minutes", type=float, default=0,
                        help=f"only train target-long.onnx: the saved target with "
                             f"{LONG_POSITIONS} positions (for RAPID's long prompts)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    data, held = corpus()
    print(f"corpus: {len(data)} bytes of training text, {len(held)} held out", flush=True)
    with open(os.path.join(args.out, "heldout.txt"), "wb") as f:
        f.write(held)
    if args.more_target_minutes > 0:
        with open(os.path.join(args.out, "train-log.txt"), "a") as log:
            model = train("target (continued)", TARGET, data, held, args.more_target_minutes, log,
                          start=load_weights(os.path.join(args.out, "target.onnx")))
            export(model, TARGET, held, os.path.join(args.out, "target.onnx"), "target")
        return
    if args.long_target_minutes > 0:
        start = load_weights(os.path.join(args.out, "target.onnx"))
        start["pos_embed"] = extend_positions(start["pos_embed"], LONG_TARGET.max_positions)
        with open(os.path.join(args.out, "train-log.txt"), "a") as log:
            model = train("target (long)", LONG_TARGET, data, held, args.long_target_minutes, log,
                          seq=2 * CONTEXT, batch=1, lr=3e-4, start=start)
            long_context_loss(model, held, log)
            export(model, LONG_TARGET, held, os.path.join(args.out, "target-long.onnx"), "target")
        return
    if args.distill_minutes > 0:
        teacher = Decoder(TARGET)
        with torch.no_grad():
            weights = load_weights(os.path.join(args.out, "target.onnx"))
            for name, p in teacher.params.items():
                p.copy_(torch.from_numpy(weights[name.replace("__", ".")]))
        teacher.eval()
        with open(os.path.join(args.out, "train-log.txt"), "a") as log:
            model = train("draft (distilled)", DRAFT, data, held, args.distill_minutes, log,
                          teacher=teacher,
                          start=load_weights(os.path.join(args.out, "draft.onnx")))
            export(model, DRAFT, held, os.path.join(args.out, "draft.onnx"), "draft")
        return
    with open(os.path.join(args.out, "train-log.txt"), "w") as log:
        for name, cfg, minutes in (("draft", DRAFT, args.minutes_draft),
                                   ("target", TARGET, args.minutes_target)):
            model = train(name, cfg, data, held, minutes, log)
            export(model, cfg, held, os.path.join(args.out, name + ".onnx"), name)


def export(model, cfg, held, path, name):
    weights = model.weights()
    # The export must compute what was trained: compare on a prompt.
    ids = np.frombuffer(held[:48], dtype=np.uint8).astype(np.int64)[None]
    want = model(torch.from_numpy(ids)).detach().numpy()
    got, _ = md.reference(cfg, weights, ids)
    err = float(np.max(np.abs(got - want)))
    if err > 1e-3:
        sys.exit(f"{name}: the exported weights disagree with torch by {err}")
    onnx.save(md.build_model(cfg, weights), path)
    print(f"wrote {path} (max |reference - torch| {err:.1e})", flush=True)


if __name__ == "__main__":
    main()
