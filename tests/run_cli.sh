#!/usr/bin/env bash
# run_cli.sh: the command line's behaviour (docs/cli.md): help, version,
# bad arguments and exit codes, --print-after. Every command runs in an
# empty temporary folder, which must stay empty: no command leaves files
# in the working directory.
#
#   bash tests/run_cli.sh
#
# Environment: MODELC, SRC; ctest sets them.
set -u

# shellcheck source=tests/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if ! command -v "$MODELC" >/dev/null 2>&1; then
  echo "run_cli: MODELC='$MODELC' is not an executable (build first, or set MODELC)" >&2
  exit 1
fi
TIMEOUT="${MODELC_TEST_TIMEOUT:-60}"
SPEC="$SRC/specs/charlm.yaml"
VERSION="$(sed -n 's/^project(modelc VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cwd="$tmp/cwd"
mkdir "$cwd"

passed=0
failed=0
errors=() # problems found by the current case

# modelc ARGS...: runs in $cwd; sets rc, out, err (captured streams).
modelc() {
  last_command="modelc $*"
  (cd "$cwd" && timeout "$TIMEOUT" "$MODELC" "$@") >"$tmp/stdout" 2>"$tmp/stderr" </dev/null
  rc=$?
  out="$(cat "$tmp/stdout")"
  err="$(cat "$tmp/stderr")"
  if [ -n "$(ls -A "$cwd")" ]; then
    errors+=("left files in the working directory: $(cd "$cwd" && find . -mindepth 1 -maxdepth 1 | tr '\n' ' ')")
    rm -rf "$cwd" && mkdir "$cwd"
  fi
  if [ "$rc" -eq 124 ]; then
    errors+=("timed out after ${TIMEOUT}s")
  elif [ "$rc" -gt 128 ]; then
    errors+=("crashed (signal $((rc - 128)))")
  fi
}

expect_rc() { [ "$rc" -eq "$1" ] || errors+=("expected exit code $1, got $rc"); }
# expect_in STREAM TEXT: the captured stream (out, err or both) contains TEXT.
expect_in() {
  local text
  case "$1" in out) text="$out" ;; err) text="$err" ;; *) text="$out$err" ;; esac
  case "$text" in
  *"$2"*) ;;
  *) errors+=("expected $1 to contain '$2'") ;;
  esac
}
expect_empty() {
  local text
  case "$1" in out) text="$out" ;; *) text="$err" ;; esac
  [ -z "$text" ] || errors+=("expected ${1} to be empty")
}
expect_nonempty() {
  local text
  case "$1" in out) text="$out" ;; *) text="$err" ;; esac
  [ -n "$text" ] || errors+=("expected something on ${1}")
}

# finish NAME: records the current case.
finish() {
  if [ "${#errors[@]}" -eq 0 ]; then
    passed=$((passed + 1))
    echo "PASS $1"
  else
    failed=$((failed + 1))
    echo "FAIL $1"
    echo "  \$ $last_command   (exit code $rc)"
    for e in "${errors[@]}"; do echo "  - $e"; done
    [ -z "$out" ] || printf '%s\n' "$out" | sed -n '1,40s/^/  stdout | /p'
    [ -z "$err" ] || printf '%s\n' "$err" | sed -n '1,40s/^/  stderr | /p'
  fi
  errors=()
}

modelc --help
expect_rc 0
for command in check ir build run train bench; do
  grep -qw -- "$command" "$tmp/stdout" || errors+=("--help does not mention '$command'")
done
finish "--help lists every command"

modelc --version
expect_rc 0
expect_in out "modelc ${VERSION}"
[ "${out#modelc }" != "$out" ] || errors+=("expected stdout to start with 'modelc '")
finish "--version prints 'modelc ${VERSION:-VERSION}'"

modelc
expect_rc 1
grep -qi usage "$tmp/stderr" || errors+=("expected a usage message on stderr")
expect_empty out
finish "no arguments: usage on stderr, exit 1"

modelc frobnicate
expect_rc 1
expect_in err "unknown command 'frobnicate'"
finish "unknown command"

modelc check
expect_rc 1
expect_nonempty err
finish "check without SPEC"

modelc check /nonexistent.yaml
expect_rc 1
expect_in err "cannot read"
finish "check of a missing file"

modelc check --bogus "$SPEC"
expect_rc 1
expect_in err "unknown option"
finish "check with an unknown option"

modelc ir "$SPEC" --stage=nope
expect_rc 1
expect_nonempty err
finish "ir with an unknown stage"

modelc check --help
expect_rc 0
expect_nonempty out
finish "check --help"

modelc ir --help
expect_rc 0
expect_nonempty out
finish "ir --help"

modelc check "$SPEC"
expect_rc 0
expect_empty err
expect_nonempty out
finish "check of a good spec"

modelc ir "$SPEC" --print-after=expand
expect_rc 0
expect_in both "IR after expand"
finish "ir --print-after=expand"

modelc ir "$SPEC" --print-after-all
expect_rc 0
expect_in both "IR after expand"
passes="$(cat "$tmp/stdout" "$tmp/stderr" | grep -o 'IR after [A-Za-z0-9_.-]*' |
  sed 's/^IR after //' | sort -u)"
finish "ir --print-after-all"

# Every pass that --print-after-all shows can be asked for alone.
for pass in $passes; do
  modelc ir "$SPEC" --print-after="$pass"
  expect_rc 0
  expect_in both "IR after $pass"
  count="$(cat "$tmp/stdout" "$tmp/stderr" | grep -c 'IR after ')"
  [ "$count" -eq 1 ] || errors+=("expected one 'IR after' header, got $count")
  finish "ir --print-after=$pass"
done

# bench through the default path (the JIT where modelc has LLVM) and the
# C path; --no-fuse is checked before either compiles.
XOR="$SRC/examples/embed/xor.yaml"
for via in default cc; do
  if [ "$via" = default ]; then modelc bench "$XOR" --steps 1 --warmup 0 --json
  else modelc bench "$XOR" --steps 1 --warmup 0 --json --via cc; fi
  expect_rc 0
  expect_in out '"entry": "forward"'
  expect_in out '"entry": "train"'
  finish "bench --json ($via)"
done

modelc bench "$XOR" --no-fuse=bogus
expect_rc 1
expect_in err "unknown fusion 'bogus'"
finish "bench --no-fuse with an unknown fusion"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
