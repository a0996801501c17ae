#!/usr/bin/env bash
# A small mutation check: applies each planted bug of scripts/mutations.py to
# a scratch clone of the committed tree, rebuilds, and runs the test closest
# to it (with --full, the whole suite too), then prints which caught what.
#   scripts/mutate.sh [--full] [--keep] [SUBSTRING...]
# A clean build of the clone takes a few minutes; each bug then rebuilds
# only what it touched.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec /usr/bin/python3 "$ROOT/scripts/mutate.py" "$@"
