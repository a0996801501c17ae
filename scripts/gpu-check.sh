#!/usr/bin/env bash
# The GPU check, in three steps, for the lent GPU machine (CUDA 13 and a
# driver, but none of this project's build dependencies):
#
#   scripts/gpu-check.sh prepare [DIR]   here: compile the CUDA modules of
#       test/e2e/cuda_pipeline.py, their inputs and the CPU target's outputs,
#       and a self-contained hasten-run (its libraries and the C library's
#       loader beside it) into DIR (default build/gpu-check, about 32 MB,
#       compressed: the device tool carries 64 MiB at most);
#   DIR/run-on-gpu.sh OUT               there: run every module on the GPU,
#       outputs and timings into OUT (as the device tool's $OUT);
#   scripts/gpu-check.sh compare DIR OUT here: every GPU output against the
#       CPU one (max |gpu - cpu| <= 1e-5 max |cpu| for f32; tensor-core
#       attention within its operands' rounding), then a table of the
#       attention kernels' median times (f32 SIMT, bf16/f16 mma.sync m16n8k16,
#       f16 m8n8k4 from Volta's PTX), and the decoders' decode speed with
#       and without CUDA graphs.
#
# With the device tool: run `build/gpu-check/run-on-gpu.sh $OUT` carrying
# build/gpu-check, then compare against the folder its files come back in.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${HASTEN_BUILD_DIR:-$root/build}"

prepare() {
  local dir="${1:-$build/gpu-check}"
  rm -rf "$dir"
  mkdir -p "$dir/bin" "$dir/lib"
  /usr/bin/python3 "$root/test/e2e/cuda_pipeline.py" "$build/bin" --prepare "$dir/cases"
  cp "$build/bin/hasten-run" "$dir/bin/"
  # hasten-run's libraries (the runtime included) and the loader that goes
  # with this C library: the GPU machine's own may be older.
  local loader=""
  while read -r name arrow path rest; do
    if [[ "$name" == /* ]]; then loader="$name"; continue; fi
    [[ "${path:-}" == /* ]] && cp -L "$path" "$dir/lib/$name"
  done < <(ldd "$build/bin/hasten-run")
  cp -L "$loader" "$dir/lib/ld-linux.so"
  # What travels: the CUDA modules, their inputs and the CPU outputs, and
  # stripped libraries (the device tool carries 64 MiB at most).
  rm -f "$dir"/cases/*.cpu.so "$dir"/cases/*.ptx "$dir"/cases/*.cubin "$dir"/cases/*.onnx "$dir"/cases/*.mlir
  rm -rf "$dir"/cases/refused.so "$dir"/cases/probe
  for f in "$dir"/bin/hasten-run "$dir"/lib/*.so*; do
    [[ "$f" == */ld-linux.so ]] || strip --strip-unneeded "$f"
  done
  # oneDNN alone is 40 MB, and the modules with their inputs over 50 MB;
  # compressed, everything fits (about 32 MB).
  tar -C "$dir" -cJf "$dir/lib.tar.xz" lib && rm -rf "$dir/lib"
  {
    echo '#!/bin/sh'
    echo '# Runs every prepared CUDA module on this machine'"'"'s GPU: OUT/NAME/*.npy, OUT/log.txt.'
    echo 'set -u'
    echo 'here="$(cd "$(dirname "$0")" && pwd)"; out="${1:?usage: run-on-gpu.sh OUT}"'
    echo 'mkdir -p "$out"; log="$out/log.txt"'
    echo 'libs="$(mktemp -d)"; tar -C "$libs" -xJf "$here/lib.tar.xz"'
    echo 'tar -C "$libs" -xJf "$here/cases.tar.xz"'
    echo 'run() { "$libs/lib/ld-linux.so" --library-path "$libs/lib" "$here/bin/hasten-run" "$@"; }'
    echo '{ command -v nvidia-smi >/dev/null && nvidia-smi -L; } > "$log" 2>&1'
    # The modules' GEMMs run on the machine's own cuBLASLt: the toolkit's,
    # else the one a CUDA build of torch brings.
    echo 'for c in /usr/local/cuda/lib64/libcublasLt.so.13 /usr/local/cuda/lib64/libcublasLt.so.12 \'
    echo '    /usr/local/cuda*/lib64/libcublasLt.so.* \'
    echo '    "$(python3 -c "import nvidia.cublas.lib as l, os; print(os.path.dirname(l.__file__))" 2>/dev/null)"/libcublasLt.so.*; do'
    echo '  if [ -e "$c" ]; then export HASTEN_CUBLASLT="$c"; break; fi'
    echo 'done'
    echo 'echo "cuBLASLt: ${HASTEN_CUBLASLT:-not found}" >> "$log"'
    /usr/bin/python3 - "$dir/cases/cases.json" <<'EOF'
import json, shlex, sys
for case in json.load(open(sys.argv[1])):
    if "ids" in case:
        module = f"\"$libs/cases/{case['module']}\""
        name = shlex.quote(case["name"])
        print(f"echo '== {case['name']}' >> \"$log\"")
        print(f"run {module} --generate --prompt-ids {case['prompt']} --max-new-tokens "
              f"{case['count']} --print-ids > \"$out\"/{name}.txt 2>> \"$log\" "
              f"|| echo 'FAILED {case['name']}' >> \"$log\"")
        print(f"cat \"$out\"/{name}.txt >> \"$log\"")
        # Decode speed with CUDA graphs (the default) and without; the
        # direct run's tokens are compared too.
        for mode, flag in (("graphs", ""), ("direct", " --cuda-graphs=false")):
            print(f"echo '== {case['name']}.decode-{mode}' >> \"$log\"")
            print(f"run {module}{flag} --generate --prompt-ids {case['prompt']} "
                  f"--max-new-tokens 200 --ignore-eos --print-ids --quiet "
                  f"> \"$out\"/{name}.{mode}.txt 2>> \"$log\" "
                  f"|| echo 'FAILED {case['name']}.decode-{mode}' >> \"$log\"")
        continue
    inputs = " ".join(f"--input {shlex.quote(k)}=\"$libs/cases/{v}\""
                      for k, v in case["inputs"].items())
    module = f"\"$libs/cases/{case['module']}\""
    name = shlex.quote(case["name"])
    print(f"echo '== {case['name']}' >> \"$log\"")
    print(f"run {module} {inputs} --output-dir \"$out\"/{name} >> \"$log\" 2>&1 "
          f"|| echo 'FAILED {case['name']}' >> \"$log\"")
    print(f"run {module} {inputs} --repeat 50 >> \"$log\" 2>&1 || true")
EOF
    echo 'cat "$log"'
  } > "$dir/run-on-gpu.sh"
  chmod +x "$dir/run-on-gpu.sh"
  tar -C "$dir" -cJf "$dir/cases.tar.xz" cases && rm -rf "$dir/cases"
  echo "prepared $dir ($(du -sh "$dir" | cut -f1)): run $dir/run-on-gpu.sh OUT on the GPU machine"
}

case "${1:-}" in
  prepare) shift; prepare "$@" ;;
  compare)
    shift
    dir="${1:?usage: gpu-check.sh compare DIR OUT}"; out="${2:?usage: gpu-check.sh compare DIR OUT}"
    cases="$(mktemp -d)"; trap 'rm -rf "$cases"' EXIT
    tar -C "$cases" -xJf "$dir/cases.tar.xz"
    /usr/bin/python3 "$root/test/e2e/cuda_pipeline.py" "$build/bin" --compare "$cases/cases" "$out"
    ;;
  *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
