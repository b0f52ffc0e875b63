#!/usr/bin/env bash
# tests/cuda_emu/run.sh: the CUDA backend run on the CPU, against PyTorch.
#
#   bash tests/cuda_emu/run.sh [CASE...]        # names in tests/reference/cases
#   bash tests/cuda_emu/run.sh --bf16 CASE...   # precision: bf16, against -t c
#   CUDA_EMU_ALL=1 ctest -R cuda/emulated        # every case, not ctest's subset
#
# For each case, `modelc build -t cuda` writes the kernels; they are
# compiled with g++ together with a fake driver (driver.inc, with emu.h:
# device memory is host memory, each block's threads are fibers) into a
# library that stands for libcuda.so.1 ($MODELC_CUDA_DRIVER). Then
# tests/run_parity.sh runs the case with TARGET=cuda: the generated host
# code, launch tables, device arena, kernels and the optimizer step on
# the "device" must match PyTorch's goldens as the C backend does (eval
# and --grads rtol 1e-4, 3 training steps 1e-5). NVRTC still compiles the
# kernels (its cubin is unused), so the NVRTC path is exercised too.
#
# With --bf16, a copy of each case trains with precision: bf16 and `run
# --grads` on its golden weights and input must give the C backend's bf16
# numbers (rtol 2e-2, atol 1e-4: both round the same operands, they sum
# in another order); the GEMMs take their tensor-core path, with
# mma.m16n8k16 emulated from the PTX ISA's tables (emu.h, MC_EMU_MMA).
#
# What this cannot check: the real tensor cores (only an emulation of
# mma.m16n8k16 written from the PTX ISA), timing, and anything that
# depends on threads really running at once.
set -u

# shellcheck source=tests/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
emu="$SRC/tests/cuda_emu"
cases_dir="$SRC/tests/reference/cases"
CXX="${CXX:-g++}"
ST_COMPARE="${ST_COMPARE:-$SRC/build/tests/st_compare}"
case "$ST_COMPARE" in /*) ;; */*) ST_COMPARE="$PWD/$ST_COMPARE" ;; esac
if ! command -v "$CXX" >/dev/null 2>&1; then
  echo "SKIP: no C++ compiler ($CXX) for the CPU emulation"
  exit 77
fi
if [ -n "${MODELC_NVRTC_DIR:-}" ]; then
  export LD_LIBRARY_PATH="$MODELC_NVRTC_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# The generated program compiles its kernels with NVRTC at first use.
if "$MODELC" build "$cases_dir/linear.yaml" -t cuda --aot -o "$tmp/probe" 2>&1 | grep -q "NVRTC (libnvrtc.so) is not installed"; then
  echo "SKIP: NVRTC is not installed; the generated CUDA program needs it to start"
  exit 77
fi
export MODELC_CACHE="${MODELC_CACHE:-$tmp/cache}"
passed=0
failed=0

bf16=0
mma=""
no_fuse=()
if [ "${1:-}" = "--bf16" ]; then
  bf16=1
  mma="-DMC_EMU_MMA" # the GEMM's tensor-core path, mma emulated (emu.h)
  # Attention unfused on both sides: its GEMMs then take the bf16 path
  # this checks. Fused, flash attention stays f32 on both, but the two
  # sum in different orders (online softmax against tile GEMMs), and the
  # last-bit differences flip bf16 roundings of the next GEMM's operands:
  # model_charlm's o.weight gradient then differs by up to 1.6 times the
  # tolerance where terms cancel. The f32 run checks the fused kernels.
  no_fuse=(--no-fuse=attention)
  shift
fi
names=("$@")
# ctest passes a representative subset; CUDA_EMU_ALL=1 runs every case.
if [ "${CUDA_EMU_ALL:-0}" = 1 ] && [ "$bf16" = 0 ]; then names=(); fi
if [ "${#names[@]}" -eq 0 ]; then
  for f in "$cases_dir"/*.yaml; do names+=("$(basename "$f" .yaml)"); done
fi
for name in "${names[@]}"; do
  out="$tmp/case/$name" # not $tmp/$name: a case may be called "log"
  lib="$tmp/case/$name.so"
  mkdir -p "$tmp/case"
  spec="$cases_dir/$name.yaml"
  if [ "$bf16" = 1 ]; then
    spec="$tmp/case/$name-bf16.yaml"
    sed 's/^train:$/train:\n  precision: bf16/' "$cases_dir/$name.yaml" >"$spec"
  fi
  if ! "$MODELC" build "$spec" -t cuda "${no_fuse[@]}" -o "$out" >"$tmp/log" 2>&1 ||
    ! cat "$out"/*_kernels.cu "$emu/driver.inc" >"$tmp/case/$name.cc" ||
    ! "$CXX" -std=c++20 -O1 -U_FORTIFY_SOURCE -fPIC -shared $mma -I "$emu" -include "$emu/emu.h" "$tmp/case/$name.cc" \
      -o "$lib" -ldl >>"$tmp/log" 2>&1; then
    failed=$((failed + 1))
    echo "FAIL $name: the emulated device"
    sed 's/^/  | /' "$tmp/log" | head -20
    continue
  fi
  if [ "$bf16" = 1 ]; then
    golden="$SRC/tests/reference/golden/$name"
    ok=1
    for t in cpu cuda; do
      MODELC_CUDA_DRIVER="$lib" "$MODELC" run "$spec" --weights "$golden/weights.safetensors" \
        --input "$golden/input.safetensors" --output "$tmp/case/$name-$t.safetensors" --grads \
        --target "$t" "${no_fuse[@]}" >"$tmp/log" 2>&1 || ok=0
    done
    if [ "$ok" = 1 ] && "$ST_COMPARE" "$tmp/case/$name-cuda.safetensors" "$tmp/case/$name-cpu.safetensors" \
      --rtol 2e-2 --atol 1e-4 >"$tmp/log" 2>&1; then
      passed=$((passed + 1))
      echo "PASS $name bf16: --target cuda (emulated) matches -t c"
    else
      failed=$((failed + 1))
      echo "FAIL $name bf16: --target cuda (emulated) against -t c"
      sed 's/^/  | /' "$tmp/log" | head -30
    fi
    continue
  fi
  if MODELC_CUDA_DRIVER="$lib" TARGET=cuda bash "$SRC/tests/run_parity.sh" "$name" >"$tmp/log" 2>&1; then
    passed=$((passed + 1))
    echo "PASS $name: --target cuda (emulated) matches PyTorch"
  else
    failed=$((failed + 1))
    echo "FAIL $name: --target cuda (emulated) against PyTorch"
    sed 's/^/  | /' "$tmp/log" | head -30
  fi
done
echo "cuda_emu: $passed passed, $failed failed"
[ "$failed" = 0 ]
