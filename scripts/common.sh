# Shared setup for the hasten scripts: install what is missing, then configure
# and build. Sourced by build.sh, test.sh and run-default.sh; safe to rerun.

set -euo pipefail

HASTEN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HASTEN_BUILD="${HASTEN_BUILD:-$HASTEN_ROOT/build}"

# The Debian packages hasten builds and tests with, plus the
# build tools themselves.
HASTEN_PACKAGES=(
  llvm-22-dev llvm-22-tools libmlir-22-dev mlir-22-tools clang-22 lld-22
  libclang-rt-22-dev
  libonnx-dev libonnx-testdata python3-onnx python3-numpy libprotobuf-dev
  libflatbuffers-dev flatbuffers-compiler
  libdnnl-dev nlohmann-json3-dev libsentencepiece-dev
  cmake ninja-build pkgconf libgtest-dev valgrind python3-venv python3-dev pybind11-dev
)

hasten_install_packages() {
  local missing=()
  for pkg in "${HASTEN_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "[hasten] all ${#HASTEN_PACKAGES[@]} packages present"
    return
  fi
  echo "[hasten] installing missing packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
}

# Configures build folder $1 (once) with clang-22, lld and Ninja, plus any
# further cmake arguments.
hasten_configure() {
  local dir="$1"
  shift
  if [ ! -f "$dir/build.ninja" ]; then
    cmake -G Ninja -S "$HASTEN_ROOT" -B "$dir" \
      -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_C_COMPILER=/usr/lib/llvm-22/bin/clang \
      -DCMAKE_CXX_COMPILER=/usr/lib/llvm-22/bin/clang++ \
      -DLLVM_USE_LINKER=lld "$@"
  fi
}

hasten_build() {
  hasten_configure "$HASTEN_BUILD"
  cmake --build "$HASTEN_BUILD"
}

# The sanitizer build (HASTEN_SANITIZE_BUILD, default build-sanitize/): the
# same sources with AddressSanitizer and UndefinedBehaviorSanitizer, and
# coverage instrumentation, so that the fuzz targets link libFuzzer.
HASTEN_SANITIZE_BUILD="${HASTEN_SANITIZE_BUILD:-$HASTEN_ROOT/build-sanitize}"
hasten_build_sanitize() {
  hasten_configure "$HASTEN_SANITIZE_BUILD" \
    -DLLVM_USE_SANITIZER="Address;Undefined" \
    -DLLVM_UBSAN_FLAGS="-fsanitize=undefined -fno-sanitize=vptr,function -fno-sanitize-recover=all" \
    -DLLVM_USE_SANITIZE_COVERAGE=ON
  cmake --build "$HASTEN_SANITIZE_BUILD" "$@"
}

hasten_setup() {
  hasten_install_packages
  hasten_build
}
