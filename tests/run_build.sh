#!/usr/bin/env bash
# run_build.sh: `modelc build -t c` for every spec, and the output compiled
# the way users compile it: gcc and clang, -std=c11 -Wall -Wextra -Werror,
# with OpenBLAS (-O2) and with -DMODELC_NO_BLAS (-O0, quicker). Objects
# only; one small spec is linked and run at -O2.
set -u

# shellcheck source=tests/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
fail() { failed=$((failed + 1)); echo "FAIL $1"; sed 's/^/  | /' "$tmp/log" | head -30; }
pass() { passed=$((passed + 1)); echo "PASS $1"; }

flags=(-std=c11 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -fopenmp)
for spec in "$SRC"/specs/*.yaml; do
  name="$(basename "$spec" .yaml)"
  out="$tmp/$name"
  if ! "$MODELC" build "$spec" -t c -o "$out" >"$tmp/log" 2>&1; then
    fail "$name: modelc build"
    continue
  fi
  for f in "$name.h" "$name.c" "${name}_main.c" modelc_rt.h modelc_rt.c CMakeLists.txt; do
    [ -s "$out/$f" ] || { echo "missing $f" >"$tmp/log"; fail "$name: output files"; continue 2; }
  done
  ok=1
  for cc in gcc clang; do
    # -O2 with BLAS, as users build it (the vectoriser has warnings of
    # its own: clang warns about an omp simd loop it cannot vectorise);
    # -O0 without, which is quicker
    for blas in "" "-DMODELC_NO_BLAS"; do
      opt=-O0
      [ -z "$blas" ] && opt=-O2
      if ! (cd "$out" && $cc "${flags[@]}" $opt $blas -I. -c "$name.c" modelc_rt.c "${name}_main.c") >"$tmp/log" 2>&1; then
        fail "$name: $cc $opt $blas"
        ok=0
      fi
    done
  done
  [ "$ok" = 1 ] && pass "$name: builds with gcc and clang, with and without BLAS"
done

# Linked and run at -O2, without BLAS: the driver answers --help.
out="$tmp/charlm"
if (cd "$out" && gcc "${flags[@]}" -O2 -DMODELC_NO_BLAS -I. charlm.c modelc_rt.c charlm_main.c -o charlm_main -lm) >"$tmp/log" 2>&1 &&
  "$out/charlm_main" --help >"$tmp/log" 2>&1 && grep -q "train" "$tmp/log"; then
  pass "charlm: links and runs without BLAS at -O2"
else
  fail "charlm: links and runs without BLAS at -O2"
fi

# A failing build leaves no files: a folder that cannot be made.
if "$MODELC" build "$SRC/specs/charlm.yaml" -t c -o /proc/modelc-cannot >"$tmp/log" 2>&1; then
  fail "build into an impossible folder succeeded"
elif [ $? -ne 1 ]; then
  fail "build into an impossible folder: exit code not 1"
else
  pass "build into an impossible folder: exit 1"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
