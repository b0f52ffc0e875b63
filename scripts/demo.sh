#!/usr/bin/env bash
# demo.sh: builds modelc (Release, into build/) and checks every example
# spec, printing each one's summary: parameters, FLOPs, memory.
#
# This is the demo until code generation lands; then it trains specs/charlm.yaml.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build"
jobs="$(nproc 2>/dev/null || echo 2)"

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" --target modelc -j "$jobs"

failed=()
for spec in "$root"/specs/*.yaml; do
  name="specs/$(basename "$spec")"
  printf '\n== modelc check %s\n' "$name"
  if ! (cd "$root" && "$build/modelc" check "$name"); then
    failed+=("$name")
  fi
done

echo
if [ "${#failed[@]}" -ne 0 ]; then
  echo "demo: modelc check failed for: ${failed[*]}" >&2
  exit 1
fi
echo "demo: every spec in specs/ checks clean"
