#!/usr/bin/env bash
# The main job on the bundled default example: installs what is missing,
# builds, and runs the hasten pipeline on examples/attention.mlir.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
hasten_setup
"$HASTEN_BUILD/bin/hasten-opt" "$HASTEN_ROOT/examples/attention.mlir" \
  --hasten-materialize-attention-scale --mlir-pass-statistics \
  --mlir-timing --mlir-timing-display=list
