#!/usr/bin/env bash
# test.sh: configures and builds everything into build/, then runs the
# whole test suite with ctest (unit, golden diagnostics, FileCheck, specs,
# parameter listings, CLI). Extra arguments go to ctest (e.g. -R diag).
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
