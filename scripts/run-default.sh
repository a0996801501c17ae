#!/usr/bin/env bash
# The main job on the bundled default model: installs what is missing,
# builds, writes the default decoder (a tiny GPT-2-style model with
# deterministic random weights, byte-level vocabulary, Optimum past/present
# I/O), compiles it to a shared library (per-phase timing and the memory
# plan), shows its decode entry, and generates text from a prompt, printing
# tokens as they arrive and the prefill/decode speeds. The weights are
# random, so the text is not meant to read well; test/e2e checks the same
# tokens against numpy.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
hasten_setup
work="$HASTEN_BUILD/default-model"
mkdir -p "$work"
/usr/bin/python3 "$HASTEN_ROOT/test/models/make_decoder.py" --preset gpt2-tiny -o "$work/gpt2-tiny.onnx"
"$HASTEN_BUILD/bin/hasten-compile" "$work/gpt2-tiny.onnx" -o "$work/gpt2-tiny.so" --timing \
  --kv-capacity=128 --memory-report
"$HASTEN_BUILD/bin/hasten-run" "$work/gpt2-tiny.so" --signature --entry decode
"$HASTEN_BUILD/bin/hasten-run" "$work/gpt2-tiny.so" --generate --prompt "hasten compiles " \
  --max-new-tokens 48 --print-ids
