#!/usr/bin/env bash
# run.sh: builds the libFuzzer harnesses (clang, ASan + UBSan) into
# build-fuzz/ and runs each for a bounded time.
#
#   bash tests/fuzz/run.sh [-t SECONDS] [-j JOBS] [NAME...]
#
# SECONDS per harness (default 60), JOBS harnesses at a time (default 2),
# NAMEs among spec expr ir safetensors data args (default all). The
# corpus grows in build-fuzz/corpus/NAME across runs, seeded from the
# source tree (seeds.sh). A crash, leak, sanitizer report or timeout
# leaves its input in build-fuzz/artifacts/NAME/ and fails the run; turn
# it into a regression with
#   cp build-fuzz/artifacts/NAME/crash-* tests/fuzz/regressions/NAME/
# after fixing the bug. The log of each harness is build-fuzz/logs/NAME.log,
# and a line per harness (runs, seconds, corpus size) is printed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${MODELC_FUZZ_BUILD:-$root/build-fuzz}"
seconds=60
jobs=2
while getopts "t:j:" opt; do
  case "$opt" in
  t) seconds="$OPTARG" ;;
  j) jobs="$OPTARG" ;;
  *) exit 1 ;;
  esac
done
shift $((OPTIND - 1))
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(spec expr ir safetensors data args)

if ! command -v clang >/dev/null 2>&1; then
  echo "fuzz: clang is needed for libFuzzer (scripts/setup.sh installs it)" >&2
  exit 1
fi
cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DMODELC_FUZZ=ON -DBUILD_TESTING=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$jobs" >/dev/null
bash "$root/tests/fuzz/seeds.sh" "$build/seeds" "$build/modelc" >/dev/null

# Leak checking stays on; the args harness closes stderr (it is noisy)
# but libFuzzer keeps its own reports.
fuzz_one() {
  local name="$1" extra=()
  mkdir -p "$build/corpus/$name" "$build/artifacts/$name" "$build/logs"
  case "$name" in
  spec | expr) extra=(-dict="$root/tests/fuzz/spec.dict") ;;
  ir) extra=(-dict="$root/tests/fuzz/ir.dict") ;;
  args) extra=(-close_fd_mask=2) ;;
  esac
  cd "$root"
  nice "$build/tests/fuzz/fuzz_$name" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
    -max_len=16384 -print_final_stats=1 -artifact_prefix="$build/artifacts/$name/" "${extra[@]}" \
    "$build/corpus/$name" "$build/seeds/$name" >"$build/logs/$name.log" 2>&1
  local rc=$?
  local runs corpus
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$build/logs/$name.log" | tail -1)"
  corpus="$(ls "$build/corpus/$name" | wc -l)"
  printf 'fuzz %-12s exit %d, %s runs in %s s, corpus %s\n' "$name" "$rc" "${runs:-?}" "$seconds" "$corpus"
  if [ "$rc" -ne 0 ]; then
    grep -m 20 -E 'ERROR|SUMMARY|runtime error|internal error|artifact' "$build/logs/$name.log" | sed 's/^/  | /'
  fi
  return "$rc"
}
export -f fuzz_one
export root build seconds
printf '%s\n' "${names[@]}" | xargs -P "$jobs" -I{} bash -c 'fuzz_one {}'
