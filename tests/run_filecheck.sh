#!/usr/bin/env bash
# run_filecheck.sh: lit-style FileCheck tests of the IR.
#
# Every tests/ir/*.ir and tests/ir/*.yaml holds one or more RUN lines in a
# comment (`# RUN: ...` or `// RUN: ...`) and CHECK lines for FileCheck:
#
#   # RUN: %modelc ir %s --stage=expanded | %FileCheck %s
#   # CHECK: = matmul %ln1, %attn.q.weight transpose_b=true
#
# Substitutions: %modelc -> $MODELC, %FileCheck -> $FILECHECK, %s -> the
# test file's path. A RUN line ending in `\` continues on the next RUN
# line. Each command runs with `bash -o pipefail -c` in an empty temporary
# folder; `not CMD` succeeds when CMD fails without crashing, as in lit.
# A case fails when any of its RUN commands fails, or when it has none.
# `# REQUIRES: llvm` skips a case (UNSUPPORTED) when modelc was built
# without LLVM (-DMODELC_WITH_LLVM=OFF: no -t obj).
#
#   bash tests/run_filecheck.sh [FILE...]      # all cases, or some
#
# Environment: MODELC, FILECHECK, SRC; ctest sets them.
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="${SRC:-$(dirname "$here")}"
MODELC="${MODELC:-$SRC/build/modelc}"
FILECHECK="${FILECHECK:-$(command -v FileCheck-14 || command -v FileCheck ||
  echo /usr/lib/llvm-14/bin/FileCheck)}"
case "$MODELC" in /*) ;; */*) MODELC="$PWD/$MODELC" ;; esac
case "$FILECHECK" in /*) ;; */*) FILECHECK="$PWD/$FILECHECK" ;; esac
for tool in "$MODELC" "$FILECHECK"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "run_filecheck: '$tool' is not an executable (set MODELC and FILECHECK)" >&2
    exit 1
  fi
done
TIMEOUT="${MODELC_TEST_TIMEOUT:-60}"

dir="$SRC/tests/ir"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Defined for every RUN command: lit's `not`.
# shellcheck disable=SC2016 # expanded by the RUN command's shell
prelude='not() { "$@"; local rc=$?; [ "$rc" -ne 0 ] && [ "$rc" -lt 126 ]; }
'

passed=0
failed=0
unsupported=0

# Features of this modelc for REQUIRES lines.
features=()
"$MODELC" build "$tmp/none.yaml" -t obj -o "$tmp/probe" 2>&1 | grep -q "built without LLVM" ||
  features+=(llvm)
has_feature() {
  local f
  for f in "${features[@]}"; do [ "$f" = "$1" ] && return 0; done
  return 1
}

# RUN commands of a file, one per line, continuations joined.
run_lines() {
  sed -n 's,^.*\(#\|//\)[[:space:]]*RUN:[[:space:]]*\(.*\)$,\2,p' "$1" |
    awk '{ sub(/[ \t\r]+$/, ""); if (sub(/\\$/, "")) { acc = acc $0 " "; next }
           print acc $0; acc = "" }
         END { if (acc != "") print acc }'
}

# Replaces %modelc, %FileCheck and %s in $1 for test file $2.
substitute() {
  local cmd="$1" pattern
  pattern='%modelc'
  cmd="${cmd//"$pattern"/"$(printf '%q' "$MODELC")"}"
  pattern='%FileCheck'
  cmd="${cmd//"$pattern"/"$(printf '%q' "$FILECHECK")"}"
  pattern='%s'
  cmd="${cmd//"$pattern"/"$(printf '%q' "$2")"}"
  printf '%s' "$cmd"
}

files=()
if [ "$#" -gt 0 ]; then
  for f in "$@"; do
    if [ "${f#/}" != "$f" ]; then
      files+=("$f")
    elif [ -e "$f" ]; then
      files+=("$PWD/$f")
    else
      files+=("$dir/$f")
    fi
  done
else
  for f in "$dir"/*.ir "$dir"/*.yaml; do
    [ -e "$f" ] && files+=("$f")
  done
fi
if [ "${#files[@]}" -eq 0 ]; then
  echo "run_filecheck: no cases in $dir"
  echo "0 passed, 0 failed"
  exit 0
fi

for file in "${files[@]}"; do
  name="${file#"$SRC"/}"
  if [ ! -f "$file" ]; then
    failed=$((failed + 1))
    echo "FAIL $name: no such file"
    continue
  fi
  missing=""
  for need in $(sed -n 's,^.*\(#\|//\)[[:space:]]*REQUIRES:[[:space:]]*\(.*\)$,\2,p' "$file" | tr ',' ' '); do
    has_feature "$need" || missing="$missing $need"
  done
  if [ -n "$missing" ]; then
    unsupported=$((unsupported + 1))
    echo "UNSUPPORTED $name: this modelc lacks$missing"
    continue
  fi
  mapfile -t runs < <(run_lines "$file")
  if [ "${#runs[@]}" -eq 0 ]; then
    failed=$((failed + 1))
    echo "FAIL $name: no RUN line"
    continue
  fi
  ok=1
  for run in "${runs[@]}"; do
    cmd="$(substitute "$run" "$file")"
    work="$tmp/work"
    rm -rf "$work" && mkdir -p "$work"
    (cd "$work" && timeout "$TIMEOUT" bash -o pipefail -c "$prelude$cmd") \
      >"$tmp/output" 2>&1 </dev/null
    rc=$?
    if [ "$rc" -ne 0 ]; then
      ok=0
      failed=$((failed + 1))
      if [ "$rc" -eq 124 ]; then
        echo "FAIL $name: RUN command timed out after ${TIMEOUT}s"
      else
        echo "FAIL $name: RUN command exited with $rc"
      fi
      echo "  RUN: $run"
      echo "  \$ $cmd"
      sed -n '1,400s/^/  | /p' "$tmp/output"
      break
    fi
  done
  if [ "$ok" -eq 1 ]; then
    passed=$((passed + 1))
    echo "PASS $name (${#runs[@]} RUN)"
  fi
done

echo "$passed passed, $failed failed$([ "$unsupported" -eq 0 ] || echo ", $unsupported unsupported")"
[ "$failed" -eq 0 ]
