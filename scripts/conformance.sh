#!/usr/bin/env bash
# The full numeric ONNX conformance sweep over libonnx-testdata's node cases:
# compiles, runs and compares every case whose ops hasten supports, then
# prints the per-op table and the pass counts.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
hasten_setup
exec /usr/bin/python3 "$HASTEN_ROOT/test/conformance/run_conformance.py" "$HASTEN_BUILD/bin" "$@"
