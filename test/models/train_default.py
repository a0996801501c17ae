#!/usr/bin/env python3
"""Trains the bundled default model: a small GPT-2-style decoder whose
vocabulary is test/tokenizer/gpt2-bpe.json's 700 byte-level BPE tokens, so
that `scripts/run-default.sh` and the tokenizer tests generate from a text
prompt with a real tokenizer and get text that varies with the prompt.

The architecture is make_decoder's (2 layers, d = 128, 4 heads, learned
positions up to 256), trained with train_pair.train on the licence texts
train_pair.corpus() reads, tokenized with the reference `tokenizers`
library. The export is checked against torch and written with
make_decoder.build_model, so make_decoder.reference is its numpy oracle.
CI never runs this; it reads the committed test/models/default/.

  build/bench-venv/bin/python test/models/train_default.py [--minutes 6]
"""
import argparse
import os
import shutil
import sys

import numpy as np
import onnx
import torch
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_decoder as md  # noqa: E402
import train_pair as tp  # noqa: E402

CONFIG = md.Config(arch="gpt2", layers=2, hidden=128, heads=4, vocab=700, max_positions=256)
TOKENIZER = os.path.join(HERE, "..", "tokenizer", "gpt2-bpe.json")
OUT = os.path.join(HERE, "default")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tok = Tokenizer.from_file(TOKENIZER)
    data, held = tp.corpus()
    encode = lambda b: np.array(tok.encode(b.decode("utf-8", "replace")).ids, dtype=np.int64)
    train_ids, held_ids = encode(data), encode(held)
    print(f"corpus: {len(train_ids)} training tokens, {len(held_ids)} held out", flush=True)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "train-log.txt"), "w") as log:
        model = tp.train("default", CONFIG, train_ids, held_ids, args.minutes, log, seq=128,
                         batch=16, lr=2e-3)
    weights = model.weights()
    ids = held_ids[:48][None]
    want = model(torch.from_numpy(ids)).detach().numpy()
    got, _ = md.reference(CONFIG, weights, ids)
    err = float(np.max(np.abs(got - want)))
    if err > 1e-3:
        sys.exit(f"the exported weights disagree with torch by {err}")
    onnx.save(md.build_model(CONFIG, weights), os.path.join(OUT, "model.onnx"))
    shutil.copy(TOKENIZER, os.path.join(OUT, "tokenizer.json"))
    print(f"wrote {OUT}/model.onnx (max |reference - torch| {err:.1e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
