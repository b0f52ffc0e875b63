#!/usr/bin/env bash
# run_params.sh: parameter listings against golden files.
#
# For every tests/params/NAME.params, `modelc check specs/NAME.yaml
# --params` (run from the source root) must exit 0 and print exactly the
# file's contents on stdout.
#
#   bash tests/run_params.sh [NAME...]            # all goldens, or some
#   UPDATE=1 bash tests/run_params.sh [NAME...]   # (re)write them; naming a
#                                                 # spec creates its golden
#
# Environment: MODELC, SRC; ctest sets them.
set -u

# shellcheck source=tests/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if ! command -v "$MODELC" >/dev/null 2>&1; then
  echo "run_params: MODELC='$MODELC' is not an executable (build first, or set MODELC)" >&2
  exit 1
fi
TIMEOUT="${MODELC_TEST_TIMEOUT:-60}"
UPDATE="${UPDATE:-0}"

dir="$SRC/tests/params"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $1${2:+ ($2)}"; }
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

names=()
if [ "$#" -gt 0 ]; then
  for name in "$@"; do
    name="$(basename "$name")"
    name="${name%.yaml}"
    names+=("${name%.params}")
  done
else
  for golden in "$dir"/*.params; do
    [ -e "$golden" ] || continue
    name="$(basename "$golden")"
    names+=("${name%.params}")
  done
fi
if [ "${#names[@]}" -eq 0 ]; then
  echo "run_params: no cases in $dir"
  echo "0 passed, 0 failed"
  exit 0
fi

for name in "${names[@]}"; do
  spec="specs/$name.yaml"
  golden="$dir/$name.params"
  if [ ! -f "$SRC/$spec" ]; then
    fail "$name" "no spec $spec for $name.params"
    continue
  fi
  (cd "$SRC" && timeout "$TIMEOUT" "$MODELC" check "$spec" --params) \
    >"$tmp/stdout" 2>"$tmp/stderr" </dev/null
  rc=$?
  if [ "$rc" -ne 0 ]; then
    fail "$name" "modelc check $spec --params: expected exit code 0, got $(describe_rc "$rc")"
    sed -n '1,100s/^/  | /p' "$tmp/stderr"
    continue
  fi
  if [ "$UPDATE" = 1 ]; then
    if [ -f "$golden" ] && cmp -s "$golden" "$tmp/stdout"; then
      pass "$name"
    else
      mkdir -p "$dir"
      cp "$tmp/stdout" "$golden"
      pass "$name" "wrote tests/params/$name.params"
    fi
    continue
  fi
  if [ ! -f "$golden" ]; then
    fail "$name" "no tests/params/$name.params (UPDATE=1 bash tests/run_params.sh $name writes it)"
    continue
  fi
  if cmp -s "$golden" "$tmp/stdout"; then
    pass "$name"
  else
    fail "$name" "modelc check $spec --params differs from tests/params/$name.params"
    diff -u --label "$name.params" --label "stdout" "$golden" "$tmp/stdout" | sed 's/^/  /'
  fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
