#!/usr/bin/env bash
# The main job on the bundled default model: installs what is missing,
# builds, compiles test/models/default/model.onnx (a small GPT-2-style
# decoder trained on licence texts, with a 700-token byte-level BPE
# tokenizer.json; test/models/train_default.py made it) to a shared library
# with prefill/decode entries and a planned KV cache (per-phase timing and
# the memory plan), lists its entries, and generates text from a prompt
# encoded with the model's tokenizer, streaming the text as it arrives and
# printing the prefill/decode speeds. test/e2e checks the same tokens
# against numpy.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
hasten_setup
model="$HASTEN_ROOT/test/models/default"
work="$HASTEN_BUILD/default-model"
mkdir -p "$work"
"$HASTEN_BUILD/bin/hasten-compile" "$model/model.onnx" -o "$work/default.so" --timing \
  --kv-capacity=256 --memory-report
"$HASTEN_BUILD/bin/hasten-run" "$work/default.so" --signature --entry decode
"$HASTEN_BUILD/bin/hasten-run" "$work/default.so" --generate --tokenizer "$model" \
  --prompt "Permission is hereby granted" --max-new-tokens 64
