#!/usr/bin/env bash
# run_gradcheck_c.sh: the generated C, compiled in double precision
# (MODELC_DOUBLE), checks every parameter's gradient against central
# differences of its own loss. For every tests/reference/cases/NAME.yaml:
#
#   modelc build NAME.yaml -t c -o DIR
#   cc -DMODELC_DOUBLE -DMODELC_NO_BLAS DIR/NAME.c DIR/NAME_main.c RUNTIME
#   DIR/NAME_main gradcheck --weights golden/NAME/weights.safetensors \
#       --input golden/NAME/input.safetensors --samples 8
#
# (runtime/rt_gradcheck.c: up to 8 elements of every parameter, rtol 1e-5,
# atol 1e-8, the training entry's loss with dropout's mask held fixed.)
# Compiling dominates the time, so RUNTIME is the double runtime built once
# (RT_DOUBLE, the modelc_rt_double library of tests/CMakeLists.txt, from
# runtime/ itself) and each case compiles only its own NAME.c at -O1; with
# GRADCHECK_C_FULL=1 each case compiles its own copy of the runtime
# instead (slower; the copy is the same source with renamed symbols).
#
#   bash tests/run_gradcheck_c.sh [NAME...]
#
# Environment: MODELC, SRC (tests/common.sh), RT_DOUBLE (default
# $SRC/build/tests/libmodelc_rt_double.a), CC (default cc),
# GRADCHECK_C_SAMPLES (default 8), GRADCHECK_C_FULL.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
RT_DOUBLE="${RT_DOUBLE:-$SRC/build/tests/libmodelc_rt_double.a}"
CC="${CC:-cc}"
SAMPLES="${GRADCHECK_C_SAMPLES:-8}"
FULL="${GRADCHECK_C_FULL:-0}"
CFLAGS=(-std=c11 -O1 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -DMODELC_DOUBLE -DMODELC_NO_BLAS)
if [ "$FULL" != 1 ] && [ ! -f "$RT_DOUBLE" ]; then
  echo "run_gradcheck_c: RT_DOUBLE='$RT_DOUBLE' is missing (build the modelc_rt_double target)" >&2
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
golden="$SRC/tests/reference/golden"

names=()
if [ "$#" -gt 0 ]; then
  for n in "$@"; do names+=("$(basename "$n" .yaml)"); done
else
  for spec in "$SRC"/tests/reference/cases/*.yaml; do names+=("$(basename "$spec" .yaml)"); done
fi

# check NAME: builds, compiles and runs one case; its report in $tmp/NAME.log.
check() {
  local name="$1" dir="$tmp/$1"
  local model
  "$MODELC" build "$SRC/tests/reference/cases/$name.yaml" -t c -o "$dir" || return 1
  model="$(basename "$dir"/*_main.c _main.c)"
  local sources=("$dir/$model.c" "$dir/${model}_main.c")
  if [ "$FULL" = 1 ]; then
    sources+=("$dir/modelc_rt.c")
  else
    # the runtime's own header, whose names the shared library has
    rm "$dir/modelc_rt.h" "$dir/modelc_rt.c"
    sources+=(-I"$SRC/runtime" "$RT_DOUBLE")
  fi
  "$CC" "${CFLAGS[@]}" -I"$dir" "${sources[@]}" -lm -o "$dir/main" || return 1
  "$dir/main" gradcheck --weights "$golden/$name/weights.safetensors" \
    --input "$golden/$name/input.safetensors" --samples "$SAMPLES"
}

passed=0 failed=0 elements=0
worst_rel=0 worst_case=""
failures=()
for name in "${names[@]}"; do
  if check "$name" >"$tmp/$name.log" 2>&1; then
    passed=$((passed + 1))
    summary="$(grep '^PASS ' "$tmp/$name.log")"
    echo "$summary"
    n="$(sed -n 's/.* \([0-9]*\) elements,.*/\1/p' <<<"$summary")"
    rel="$(sed -n 's/.*worst rel \([^,]*\),.*/\1/p' <<<"$summary")"
    elements=$((elements + n))
    if awk -v a="$rel" -v b="$worst_rel" 'BEGIN { exit !(a + 0 > b + 0) }'; then
      worst_rel="$rel" worst_case="$name"
    fi
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "FAIL $name"
    sed 's/^/    /' "$tmp/$name.log" | head -60
  fi
done

echo "$passed passed, $failed failed; $elements elements checked, worst rel $worst_rel ($worst_case)"
if ((failed > 0)); then
  echo "failed: ${failures[*]}"
  exit 1
fi
exit 0
