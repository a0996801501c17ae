#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (lit + unit + checks)
# through CTest.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
hasten_setup
cd "$HASTEN_BUILD"
ctest --output-on-failure -j "$(nproc)" "$@"

# The same sources with ASan and UBSan: the lit suite, the unit tests and
# the fuzz regression inputs (the tests labelled `sanitize`). Debian's
# libMLIR is not instrumented but shares LLVM's bump allocators with our
# instrumented code, whose inline copy of them poisons the unused rest of a
# slab the library then allocates from without unpoisoning
# (allow_user_poisoning=0: ASan's own checks stay, that annotation goes).
echo "[hasten] sanitizer build: $HASTEN_SANITIZE_BUILD"
hasten_build_sanitize
cd "$HASTEN_SANITIZE_BUILD"
ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1:allow_user_poisoning=0}" \
UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
  ctest --output-on-failure -j "$(nproc)" -L sanitize "$@"
