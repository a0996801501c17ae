#!/usr/bin/env bash
# The main job on the bundled default model: installs what is missing,
# builds, writes the default decoder (a tiny GPT-2-style model with
# deterministic weights, Optimum past/present I/O), compiles it to a shared
# library with a per-phase timing report, shows its signature, and runs a
# prefill and a decode step, checking the logits against numpy.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
hasten_setup
work="$HASTEN_BUILD/default-model"
mkdir -p "$work"
/usr/bin/python3 "$HASTEN_ROOT/test/models/make_decoder.py" --preset gpt2-tiny -o "$work/gpt2-tiny.onnx"
"$HASTEN_BUILD/bin/hasten-compile" "$work/gpt2-tiny.onnx" -o "$work/gpt2-tiny.so" --timing
"$HASTEN_BUILD/bin/hasten-run" "$work/gpt2-tiny.so" --signature
/usr/bin/python3 "$HASTEN_ROOT/test/e2e/decoder_vs_numpy.py" "$HASTEN_BUILD/bin"
