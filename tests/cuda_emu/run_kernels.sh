#!/usr/bin/env bash
# run_kernels.sh: the device library's GEMMs and flash-attention kernels
# on the CPU emulation against double-precision references
# (gemm_test.cc, attention_test.cc). The GEMM test runs twice: with the
# tensor-core path (mma.m16n8k16 emulated from the PTX ISA's tables,
# -DMC_EMU_MMA) and with the bf16 FMA fallback.
set -u
# shellcheck source=tests/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
CXX="${CXX:-g++}"
command -v "$CXX" >/dev/null 2>&1 || { echo "SKIP: no C++ compiler ($CXX)"; exit 77; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
emu="$SRC/tests/cuda_emu"
flags=(-std=c++20 -O1 -U_FORTIFY_SOURCE -I "$emu" -include "$emu/emu.h")
status=0
"$CXX" "${flags[@]}" -DMC_EMU_MMA "$emu/gemm_test.cc" -o "$tmp/gemm_mma" && "$tmp/gemm_mma" || status=1
"$CXX" "${flags[@]}" "$emu/gemm_test.cc" -o "$tmp/gemm_fma" && "$tmp/gemm_fma" || status=1
"$CXX" "${flags[@]}" "$emu/attention_test.cc" -o "$tmp/attention" && "$tmp/attention" || status=1
exit "$status"
