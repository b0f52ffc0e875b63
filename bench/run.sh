#!/usr/bin/env bash
# run.sh: the benchmark table (bench/run.py) on this machine, after
# building modelc in Release. Arguments go to run.py (--quick, --threads N,
# --rows NAME,..., --torch PYTHON).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cmake -S "$root" -B "$root/build-release" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build-release" -j "$(nproc)" >/dev/null
exec python3 "$root/bench/run.py" --modelc "$root/build-release/modelc" "$@"
