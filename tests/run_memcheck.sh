#!/usr/bin/env bash
# run_memcheck.sh: modelc under valgrind on every spec, good and bad.
#
# Each malformed spec in tests/diag and each spec in specs/ goes through
# `modelc check` (and `ir` and `build -t c` for the good ones) under
# valgrind's memcheck; any invalid access, use of uninitialised memory or
# leak fails the case.
# The front end must never crash, whatever the input.
#
#   MODELC=build/modelc bash tests/run_memcheck.sh
set -u

# shellcheck source=tests/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if ! command -v valgrind >/dev/null 2>&1; then
  echo "run_memcheck: valgrind is not installed (scripts/setup.sh installs it)" >&2
  exit 1
fi

passed=0
failed=0
log="$(mktemp)"
out="$(mktemp -d)"
trap 'rm -rf "$log" "$out"' EXIT

# memcheck NAME ARGS...: modelc ARGS under valgrind; its own exit code may
# be 0 or 1 (input errors) but never valgrind's 99 or a signal.
memcheck() {
  local name="$1"
  shift
  valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
    --log-file="$log" "$MODELC" "$@" >/dev/null 2>&1
  local rc=$?
  if [ "$rc" -le 1 ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL $name: modelc $* (exit $rc)"
    sed 's/^/  | /' "$log" | head -40
  fi
}

cd "$SRC/tests/diag" || exit 1
for yaml in *.yaml; do
  args=()
  [ -f "${yaml%.yaml}.args" ] && read -r -a args <"${yaml%.yaml}.args"
  memcheck "diag/$yaml" check "${args[@]}" "$yaml"
done
for spec in "$SRC"/specs/*.yaml; do
  name="specs/$(basename "$spec")"
  memcheck "$name" check "$spec"
  memcheck "$name --params" check --params "$spec"
  memcheck "$name ir" ir "$spec" --mode=infer
  grep -q '^train:' "$spec" && memcheck "$name ir train" ir "$spec" --mode=train
  memcheck "$name build" build "$spec" -t c -o "$out/$(basename "$spec" .yaml)"
done
for ir in "$SRC"/tests/ir/*.ir; do
  memcheck "ir/$(basename "$ir")" ir "$ir" --passes=expand,dce
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
