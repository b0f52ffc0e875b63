#!/usr/bin/env bash
# run_diag.sh: golden diagnostics.
#
# For every tests/diag/NAME.yaml, runs `modelc check NAME.yaml` inside
# tests/diag (so file names in messages are relative) and requires exit
# code 1, nothing on stdout, and stderr equal to NAME.expected byte for
# byte. An optional NAME.args holds extra arguments (one line, split on
# spaces) placed after `check`.
#
#   MODELC=build/modelc bash tests/run_diag.sh [NAME...]   # all, or some cases
#   UPDATE=1 bash tests/run_diag.sh [NAME...]              # (re)write NAME.expected
#
# Environment: MODELC (the binary), SRC (the source tree); ctest sets both.
set -u

# shellcheck source=tests/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if ! command -v "$MODELC" >/dev/null 2>&1; then
  echo "run_diag: MODELC='$MODELC' is not an executable (build first, or set MODELC)" >&2
  exit 1
fi
TIMEOUT="${MODELC_TEST_TIMEOUT:-60}"
UPDATE="${UPDATE:-0}"

dir="$SRC/tests/diag"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $1${2:+ ($2)}"; }
fail() {
  failed=$((failed + 1))
  echo "FAIL $1: $2"
}

# exit status -> words, for messages
describe_rc() {
  if [ "$1" -eq 124 ]; then
    echo "timed out after ${TIMEOUT}s"
  elif [ "$1" -gt 128 ]; then
    echo "crashed (signal $(($1 - 128)))"
  else
    echo "exit code $1"
  fi
}

show() { # show LABEL FILE: a captured stream, indented
  [ -s "$2" ] || return 0
  echo "  --- $1:"
  sed -n '1,200s/^/  | /p' "$2"
}

cases=()
if [ "$#" -gt 0 ]; then
  for name in "$@"; do cases+=("${name%.yaml}"); done
else
  for yaml in "$dir"/*.yaml; do
    [ -e "$yaml" ] || continue
    name="$(basename "$yaml")"
    cases+=("${name%.yaml}")
  done
fi
if [ "${#cases[@]}" -eq 0 ]; then
  echo "run_diag: no cases in $dir"
  echo "0 passed, 0 failed"
  exit 0
fi

for name in "${cases[@]}"; do
  if [ ! -f "$dir/$name.yaml" ]; then
    fail "$name" "no $dir/$name.yaml"
    continue
  fi
  args=()
  if [ -f "$dir/$name.args" ]; then
    read -r -a args <"$dir/$name.args" || true
  fi
  (cd "$dir" && timeout "$TIMEOUT" "$MODELC" check "${args[@]}" "$name.yaml") \
    >"$tmp/stdout" 2>"$tmp/stderr" </dev/null
  rc=$?
  command_line="cd tests/diag && modelc check ${args[*]:+${args[*]} }$name.yaml"

  if [ "$rc" -ne 1 ]; then
    fail "$name" "expected exit code 1, got $(describe_rc "$rc")"
    echo "  \$ $command_line"
    show stdout "$tmp/stdout"
    show stderr "$tmp/stderr"
    continue
  fi
  if [ -s "$tmp/stdout" ]; then
    fail "$name" "stdout must be empty"
    echo "  \$ $command_line"
    show stdout "$tmp/stdout"
    continue
  fi
  expected="$dir/$name.expected"
  if [ "$UPDATE" = 1 ]; then
    if [ -f "$expected" ] && cmp -s "$expected" "$tmp/stderr"; then
      pass "$name"
    else
      cp "$tmp/stderr" "$expected"
      pass "$name" "wrote $name.expected"
    fi
    continue
  fi
  if [ ! -f "$expected" ]; then
    fail "$name" "no $name.expected (UPDATE=1 bash tests/run_diag.sh $name writes it)"
    show stderr "$tmp/stderr"
    continue
  fi
  if cmp -s "$expected" "$tmp/stderr"; then
    pass "$name"
  else
    fail "$name" "stderr differs from $name.expected"
    echo "  \$ $command_line"
    diff -u --label "$name.expected" --label "stderr" "$expected" "$tmp/stderr" | sed 's/^/  /'
  fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
