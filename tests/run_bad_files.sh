#!/usr/bin/env bash
# run_bad_files.sh: modelc run and train given bad weight, input and data
# files: each gets a message naming the file (and the tensor), exit 1, and
# no output file.
set -u
# shellcheck source=tests/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export MODELC_CACHE="${MODELC_CACHE:-$tmp/cache}"
spec="$SRC/tests/reference/cases/linear.yaml"
gold="$SRC/tests/reference/golden/linear"
passed=0
failed=0

# expect NAME PATTERN COMMAND...: exit 1, PATTERN on stderr, no $tmp/out.*
expect() {
  local name="$1" pattern="$2"
  shift 2
  rm -f "$tmp"/out.*
  "$@" >"$tmp/stdout" 2>"$tmp/stderr"
  local rc=$?
  if [ "$rc" -eq 1 ] && grep -q -- "$pattern" "$tmp/stderr" && ! ls "$tmp"/out.* >/dev/null 2>&1; then
    passed=$((passed + 1))
    echo "PASS $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name (exit $rc)"
    sed 's/^/  | /' "$tmp/stderr" | head -10
  fi
}

head -c 100 "$gold/weights.safetensors" >"$tmp/truncated.safetensors"
printf 'not a safetensors file at all' >"$tmp/garbage.safetensors"
run() { "$MODELC" run "$spec" --output "$tmp/out.safetensors" "$@"; }

expect "weights: truncated" "truncated.safetensors" run --weights "$tmp/truncated.safetensors" --input "$gold/input.safetensors"
expect "weights: garbage" "garbage.safetensors" run --weights "$tmp/garbage.safetensors" --input "$gold/input.safetensors"
expect "weights: missing tensor" "input.safetensors: missing tensor 'p.weight'" run --weights "$gold/input.safetensors" --input "$gold/input.safetensors"
expect "weights: not there" "cannot read" run --weights "$tmp/none.safetensors" --input "$gold/input.safetensors"
expect "input: misshaped/missing" "input.safetensors\|weights.safetensors" run --weights "$gold/weights.safetensors" --input "$gold/weights.safetensors"
expect "input: truncated" "truncated.safetensors" run --weights "$gold/weights.safetensors" --input "$tmp/truncated.safetensors"
expect "run: unknown option" "unknown option" run --weights "$gold/weights.safetensors" --input "$gold/input.safetensors" --frobnicate
expect "train: data garbage" "garbage.safetensors" "$MODELC" train "$spec" --data "$tmp/garbage.safetensors" --steps 1 --out "$tmp/out.dir"
expect "train: bad --steps" "steps" "$MODELC" train "$spec" --data "$gold/data.safetensors" --steps x --out "$tmp/out.dir"
expect "train: --init misshaped" "missing tensor" "$MODELC" train "$spec" --data "$gold/data.safetensors" --init "$gold/input.safetensors" --steps 1 --out "$tmp/out.dir"
expect "build: unknown target" "target" "$MODELC" build "$spec" -t wasm -o "$tmp/out.build"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
