#!/usr/bin/env bash
# Runs each libFuzzer target of test/fuzz in the sanitizer build (ASan +
# UBSan, build-sanitize/) for a given time, starting from the seeds and the
# regression inputs, and prints executions and coverage per target.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET (default 60)] [TARGET...]
#   TARGET: tensor-files, module-file, onnx-import, tokenizer, chat-template
#   (default: all)
#
# A crash leaves its input in build-sanitize/fuzz/<target>/artifacts/; once
# the bug is fixed, copy the input to test/fuzz/regressions/<target>/ so that
# CTest replays it from then on.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(tensor-files module-file onnx-import tokenizer chat-template)
hasten_install_packages
hasten_build_sanitize --target "${targets[@]/#/fuzz-}"

# allow_user_poisoning=0: see scripts/test.sh (libMLIR is not instrumented).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1:allow_user_poisoning=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
status=0
for target in "${targets[@]}"; do
  work="$HASTEN_SANITIZE_BUILD/fuzz/$target"
  mkdir -p "$work/corpus" "$work/artifacts"
  echo "[fuzz] $target for ${seconds}s"
  # -rss_limit_mb: a model may ask for large tensors; 4 GB of resident
  # memory is a finding, not a normal run.
  if ! "$HASTEN_SANITIZE_BUILD/bin/fuzz-$target" "$work/corpus" \
      "$HASTEN_ROOT/test/fuzz/seeds/$target" "$HASTEN_ROOT/test/fuzz/regressions/$target" \
      -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
      -artifact_prefix="$work/artifacts/" > "$work/log.txt" 2>&1; then
    status=1
    echo "[fuzz] $target: FOUND A PROBLEM; see $work/log.txt and $work/artifacts/"
  fi
  grep -E "^stat::number_of_executed_units|DONE +cov:" "$work/log.txt" | tail -2 \
    | sed "s/^/[fuzz] $target: /"
done
exit $status
