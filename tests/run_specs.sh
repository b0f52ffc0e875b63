#!/usr/bin/env bash
# run_specs.sh: every example spec checks clean and its IR text round-trips.
#
# For every specs/*.yaml:
#   check       `modelc check SPEC` exits 0 with nothing on stderr;
#   round trip  for each stage (parsed, expanded, autodiff, final) and mode
#               (infer, and train when the spec has a `train:` section):
#               `modelc ir SPEC --stage=S --mode=M > a.ir`, then
#               `modelc ir a.ir > b.ir`, and a.ir must equal b.ir.
#
#   bash tests/run_specs.sh [NAME...]     # all specs, or some (gpt2 or specs/gpt2.yaml)
#
# Environment: MODELC, SRC; ctest sets them.
set -u

# shellcheck source=tests/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if ! command -v "$MODELC" >/dev/null 2>&1; then
  echo "run_specs: MODELC='$MODELC' is not an executable (build first, or set MODELC)" >&2
  exit 1
fi
TIMEOUT="${MODELC_TEST_TIMEOUT:-120}"
STAGES=(parsed expanded autodiff final)

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }

describe_rc() {
  if [ "$1" -eq 124 ]; then
    echo "timed out after ${TIMEOUT}s"
  elif [ "$1" -gt 128 ]; then
    echo "crashed (signal $(($1 - 128)))"
  else
    echo "exit code $1"
  fi
}

show() { # show LABEL FILE
  [ -s "$2" ] || return 0
  echo "  --- $1:"
  sed -n '1,100s/^/  | /p' "$2"
}

# modelc ARGS... > $tmp/stdout 2> $tmp/stderr, run from $SRC; sets rc.
modelc() {
  (cd "$SRC" && timeout "$TIMEOUT" "$MODELC" "$@") >"$tmp/stdout" 2>"$tmp/stderr" </dev/null
  rc=$?
}

specs=()
if [ "$#" -gt 0 ]; then
  for name in "$@"; do
    name="$(basename "$name")"
    specs+=("specs/${name%.yaml}.yaml")
  done
else
  for spec in "$SRC"/specs/*.yaml; do
    [ -e "$spec" ] && specs+=("specs/$(basename "$spec")")
  done
fi
if [ "${#specs[@]}" -eq 0 ]; then
  echo "run_specs: no specs in $SRC/specs"
  echo "0 passed, 1 failed"
  exit 1
fi

for spec in "${specs[@]}"; do
  if [ ! -f "$SRC/$spec" ]; then
    fail "$spec" "no such file"
    continue
  fi

  modelc check "$spec"
  if [ "$rc" -ne 0 ]; then
    fail "$spec check" "expected exit code 0, got $(describe_rc "$rc")"
    show stderr "$tmp/stderr"
  elif [ -s "$tmp/stderr" ]; then
    fail "$spec check" "stderr must be empty"
    show stderr "$tmp/stderr"
  else
    pass "$spec check"
  fi

  modes=(infer)
  grep -q '^train:' "$SRC/$spec" && modes+=(train)
  for mode in "${modes[@]}"; do
    for stage in "${STAGES[@]}"; do
      what="$spec ir --stage=$stage --mode=$mode"
      modelc ir "$spec" --stage="$stage" --mode="$mode"
      if [ "$rc" -ne 0 ] || [ ! -s "$tmp/stdout" ]; then
        fail "$what" "printing failed: $(describe_rc "$rc")$([ -s "$tmp/stdout" ] || echo ", no output")"
        show stderr "$tmp/stderr"
        continue
      fi
      mv "$tmp/stdout" "$tmp/a.ir"
      modelc ir "$tmp/a.ir"
      if [ "$rc" -ne 0 ]; then
        fail "$what" "parsing the printed IR back failed: $(describe_rc "$rc")"
        echo "  \$ modelc ir a.ir   (a.ir from: modelc ir $spec --stage=$stage --mode=$mode)"
        show stderr "$tmp/stderr"
        continue
      fi
      mv "$tmp/stdout" "$tmp/b.ir"
      if cmp -s "$tmp/a.ir" "$tmp/b.ir"; then
        pass "$what"
      else
        fail "$what" "print -> parse -> print changed the text"
        diff -u --label a.ir --label b.ir "$tmp/a.ir" "$tmp/b.ir" | sed -n '1,60s/^/  /p'
      fi
    done
  done
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
