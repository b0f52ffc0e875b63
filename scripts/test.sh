#!/usr/bin/env bash
# test.sh: configures and builds everything into build/, then runs the
# whole test suite with ctest (unit, golden diagnostics, FileCheck, specs,
# parameter listings, CLI). Extra arguments go to ctest (e.g. -R diag).
# Then the reliability steps (docs/reliability.md): the suite again with
# ASan + UBSan in modelc and in the code it generates, each libFuzzer
# harness for FUZZ_SECONDS (default 60, two at a time), and random specs
# for SPECGEN_SECONDS (default 60). MODELC_SKIP_RELIABILITY=1 skips them.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build"
jobs="$(nproc 2>/dev/null || echo 2)"

cmake -S "$root" -B "$build"
cmake --build "$build" -j "$jobs"
cd "$build"
# A hung test fails after 10 minutes instead of stalling CI; a test that
# needs longer sets its own TIMEOUT property.
ctest --output-on-failure -j2 --timeout 600 "$@"

# The same sources must build clean (-Wall -Wextra -Werror) in Release,
# as the demo builds them (gcc warns about more at -O3), and with clang.
cmake -S "$root" -B "$root/build-release" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build-release" -j "$jobs"
if command -v clang >/dev/null 2>&1; then
  cmake -S "$root" -B "$root/build-clang" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$root/build-clang" -j "$jobs"
fi

[ "${MODELC_SKIP_RELIABILITY:-0}" = 1 ] && exit 0

# ASan + UBSan: modelc built with -DMODELC_SANITIZE=ON, and the generated
# code that `modelc run`/`train` compile built through tests/tools/cc-sanitize.
# Skipped there: valgrind (memcheck/specs, which does not mix with ASan),
# the C backend's compile matrix (codegen/build: no code runs), the long
# real-data runs (real_data/*: charlm and fmnist train 300 and 2000
# steps; resume and sample, 5 and 7 minutes under the sanitizers, are
# covered there by real_data/interrupt and cli/checkpoint, which resume
# charlm and a small model), and the PyTorch parity of every case,
# replaced by the subset below; likewise the repeated whole-suite
# comparisons (parity/unfused, parity/recompute, the JIT's llvm/parity,
# the double build's gradcheck/generated, the CUDA emulation, and the
# aarch64 cross object, whose host reference links the runtime without
# the sanitizers), whose code
# paths the subset and the other tests already run under the sanitizers.
asan="$root/build-asan"
cmake -S "$root" -B "$asan" -DMODELC_SANITIZE=ON >/dev/null
cmake --build "$asan" -j "$jobs"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
(cd "$asan" && CC="$root/tests/tools/cc-sanitize" MODELC_CACHE="$asan/cache" \
  ctest --output-on-failure -j2 --timeout 1500 \
  -E 'memcheck/specs|codegen/build|real_data/(charlm|fmnist|resume|sample)|parity/(pytorch|bf16|unfused|recompute)|llvm/(parity|aarch64)|gradcheck/generated|cuda/')
CC="$root/tests/tools/cc-sanitize" MODELC_CACHE="$asan/cache" MODELC="$asan/modelc" VIA=cc \
  ST_COMPARE="$asan/tests/st_compare" SRC="$root" \
  bash "$root/tests/run_parity.sh" embedding attn_gqa_rope conv2d_sdg cross_entropy_2d

# libFuzzer (clang): each harness for a bounded time, two at a time.
if command -v clang >/dev/null 2>&1; then
  bash "$root/tests/fuzz/run.sh" -t "${FUZZ_SECONDS:-60}" -j 2
fi

# Random specs: accepted and compiled (ASan + UBSan) and run, or rejected
# with a located diagnostic; never a crash. Fixed seed: the same specs
# each run, as many as fit in the time.
python3 "$root/tests/tools/specgen.py" --modelc "$build/modelc" --seed 1 --count 100000 \
  --seconds "${SPECGEN_SECONDS:-60}" --out "$build/specgen"
