#!/usr/bin/env bash
# run_attention.sh: builds and runs attention_test.cc (the flash-attention
# kernels on the CPU emulation against naive attention in double).
set -u
# shellcheck source=tests/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
CXX="${CXX:-g++}"
command -v "$CXX" >/dev/null 2>&1 || { echo "SKIP: no C++ compiler ($CXX)"; exit 77; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
emu="$SRC/tests/cuda_emu"
"$CXX" -std=c++20 -O1 -U_FORTIFY_SOURCE -I "$emu" -include "$emu/emu.h" "$emu/attention_test.cc" \
  -o "$tmp/attention_test" || exit 1
"$tmp/attention_test"
