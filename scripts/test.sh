#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (lit + unit + checks)
# through CTest.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
hasten_setup
cd "$HASTEN_BUILD"
ctest --output-on-failure -j "$(nproc)" "$@"
