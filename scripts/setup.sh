#!/usr/bin/env bash
# setup.sh: installs every Debian 12 (bookworm) package modelc needs.
#
# Idempotent: packages already installed are left alone, and `apt-get
# update` runs only when something is missing. Runs as root directly, or
# through sudo when it exists; never asks questions.
set -euo pipefail

# Build and test tools.
PACKAGES=(
  build-essential # gcc, make, libc headers
  cmake
  pkg-config
  gcc
  clang           # the second compiler the code must build with
  libyaml-dev     # the spec front end
  libopenblas-dev # GEMM for generated CPU code
  check           # C unit tests (tests/unit)
  llvm-14-dev     # the LLVM backend
  llvm-14-tools   # FileCheck, for tests/ir
  valgrind
  python3
  # Data for the examples.
  fortunes              # text corpus: /usr/share/games/fortunes
  dataset-fashion-mnist # images: /usr/share/datasets/fashion-mnist
)

# With MODELC_SETUP_CROSS=1, also what the aarch64 run of the LLVM
# backend's cross object needs (tests/run_llvm.sh aarch64 skips that run
# without them): a cross gcc and qemu's user mode (about 200 MB).
if [ "${MODELC_SETUP_CROSS:-0}" = 1 ]; then
  PACKAGES+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
fi

log() { printf 'setup: %s\n' "$*"; }

installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  log "error: this script needs a Debian system with apt-get (Debian 12 bookworm)" >&2
  exit 1
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  fi
fi

missing=()
for package in "${PACKAGES[@]}"; do
  installed "$package" || missing+=("$package")
done

if [ "${#missing[@]}" -eq 0 ]; then
  log "all ${#PACKAGES[@]} packages already installed"
else
  if [ "$(id -u)" -ne 0 ] && [ "${#as_root[@]}" -eq 0 ]; then
    log "error: not root and no sudo; install these as root: ${missing[*]}" >&2
    exit 1
  fi
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# What the build and the tests rely on, checked where it is used.
status=0
require() { # require PATH WHAT
  if [ -e "$1" ]; then
    log "found $2: $1"
  else
    log "error: $2 not found at $1" >&2
    status=1
  fi
}
require /usr/lib/llvm-14/bin/FileCheck "FileCheck"
require /usr/share/games/fortunes/fortunes "fortunes text"
require /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz "Fashion-MNIST"
for tool in cc clang cmake pkg-config python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    log "error: $tool is not on PATH" >&2
    status=1
  fi
done
if ! pkg-config --exists yaml-0.1 check; then
  log "error: pkg-config does not find yaml-0.1 and check" >&2
  status=1
fi
# Optional: NVRTC (the CUDA toolkit) for the CUDA backend's compile test.
# Nothing here installs CUDA; without it `ctest -R cuda/nvrtc` skips.
if ldconfig -p 2>/dev/null | grep -q "libnvrtc.so"; then
  log "optional: NVRTC found (ctest -R cuda/nvrtc compiles every spec's CUDA kernels)"
else
  log "optional: NVRTC not found: the CUDA backend builds, its NVRTC test will skip"
fi
[ "$status" -eq 0 ] && log "done"
exit "$status"
