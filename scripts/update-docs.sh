#!/usr/bin/env bash
# Regenerates docs/passes.md and docs/dialect.md from the TableGen sources.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
hasten_build
cmake --build "$HASTEN_BUILD" --target hasten-docs
cp "$HASTEN_BUILD/docs/passes.md" "$HASTEN_BUILD/docs/dialect.md" "$HASTEN_ROOT/docs/"
echo "[hasten] docs/passes.md and docs/dialect.md updated"
