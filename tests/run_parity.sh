#!/usr/bin/env bash
# run_parity.sh: modelc against PyTorch, on the goldens of tests/reference.
#
# For every tests/reference/golden/NAME (made by tests/reference/make_goldens.py
# from tests/reference/cases/NAME.yaml; see tests/reference/README.md):
#   eval   `modelc run NAME.yaml --weights weights.safetensors --input
#          input.safetensors --output OUT` equals eval.safetensors
#          (outputs and loss, rtol 1e-4);
#   grads  the same with --grads equals train.safetensors (training-mode
#          outputs, loss and grad.NAME of every parameter, rtol 1e-4);
#   train  `modelc train NAME.yaml --data data.bin|data.safetensors --init
#          weights.safetensors --steps 3 --out DIR --quiet`, then
#          DIR/model.safetensors equals step3.safetensors (every parameter
#          and buffer after 3 optimizer steps, rtol 1e-5, plus the
#          per-element slack of step3_tol.safetensors where there is one).
# atol is 1e-6 throughout. A case passes when all three do.
#
#   bash tests/run_parity.sh [NAME...]        # all goldens, or some
#   TARGET=cuda bash tests/run_parity.sh      # passes --target cuda to run and train
#   RECOMPUTE=1 bash tests/run_parity.sh NAME # the case with `recompute: blocks`
#                                             # (which must then recompute something)
#   VIA=cc bash tests/run_parity.sh           # passes --via cc (the C path) or llvm (the JIT)
#
# Environment: MODELC (the binary), SRC (the source tree), ST_COMPARE (the
# built tests/tools/st_compare, default $SRC/build/tests/st_compare),
# TARGET and VIA (optional), MODELC_TEST_TIMEOUT (seconds per command, default 120).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="${SRC:-$(dirname "$here")}"
MODELC="${MODELC:-$SRC/build/modelc}"
ST_COMPARE="${ST_COMPARE:-$SRC/build/tests/st_compare}"
case "$MODELC" in /*) ;; */*) MODELC="$PWD/$MODELC" ;; esac
case "$ST_COMPARE" in /*) ;; */*) ST_COMPARE="$PWD/$ST_COMPARE" ;; esac
for tool in MODELC ST_COMPARE; do
  if ! command -v "${!tool}" >/dev/null 2>&1; then
    echo "run_parity: $tool='${!tool}' is not an executable (build first, or set $tool)" >&2
    exit 1
  fi
done
TIMEOUT="${MODELC_TEST_TIMEOUT:-120}"
TARGET="${TARGET:-}"
RTOL_RUN=1e-4
RTOL_STEP=1e-5
ATOL=1e-6
STEPS=3

golden="$SRC/tests/reference/golden"
cases_dir="$SRC/tests/reference/cases"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

VIA="${VIA:-}"
target_args=()
[ -n "$TARGET" ] && target_args=(--target "$TARGET")
[ -n "$VIA" ] && target_args+=(--via "$VIA")

passed=0
failed=0
errors=() # what went wrong in the current case

describe_rc() {
  if [ "$1" -eq 124 ]; then
    echo "timed out after ${TIMEOUT}s"
  elif [ "$1" -gt 128 ]; then
    echo "crashed (signal $(($1 - 128)))"
  else
    echo "exit code $1"
  fi
}

# Details of the current case's failures, printed after its FAIL line.
details="$tmp/details"

show() { # show LABEL FILE: a captured stream, indented, into the details
  [ -s "$2" ] || return 0
  echo "  --- $1:"
  sed -n '1,40s/^/  | /p' "$2"
}

# run_modelc LABEL ARGS...: runs modelc; on failure records LABEL's error
# and keeps the command and its output. Returns modelc's exit status.
run_modelc() {
  local label="$1"
  shift
  timeout "$TIMEOUT" "$MODELC" "$@" >"$tmp/stdout" 2>"$tmp/stderr" </dev/null
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    errors+=("$label: modelc $1 failed ($(describe_rc "$rc"))")
    {
      echo "  \$ modelc $*"
      show stdout "$tmp/stdout"
      show stderr "$tmp/stderr"
    } >>"$details"
  fi
  return "$rc"
}

# compare LABEL ACTUAL EXPECTED ST_COMPARE_ARGS...
compare() {
  local label="$1" actual="$2" expected="$3"
  shift 3
  if [ ! -f "$actual" ]; then
    errors+=("$label: modelc wrote no $(basename "$actual")")
    return
  fi
  "$ST_COMPARE" "$actual" "$expected" "$@" >"$tmp/compare" 2>&1
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    errors+=("$label: differs from $(basename "$expected") ($(describe_rc "$rc") from st_compare)")
    {
      echo "  \$ st_compare $actual $expected $*"
      sed -n '1,40s/^/  | /p' "$tmp/compare"
    } >>"$details"
  fi
}

cases=()
if [ "$#" -gt 0 ]; then
  for name in "$@"; do
    name="$(basename "$name")"
    cases+=("${name%.yaml}")
  done
else
  for dir in "$golden"/*/; do
    [ -d "$dir" ] || continue
    cases+=("$(basename "$dir")")
  done
fi
if [ "${#cases[@]}" -eq 0 ]; then
  echo "run_parity: no goldens in $golden"
  echo "0 passed, 0 failed"
  exit 0
fi

for name in "${cases[@]}"; do
  errors=()
  : >"$details"
  g="$golden/$name"
  spec="$cases_dir/$name.yaml"
  missing=()
  for f in weights input eval train step3; do
    [ -f "$g/$f.safetensors" ] || missing+=("$f.safetensors")
  done
  if [ -f "$g/data.bin" ]; then
    data="$g/data.bin"
  elif [ -f "$g/data.safetensors" ]; then
    data="$g/data.safetensors"
  else
    missing+=("data.bin or data.safetensors")
  fi
  [ -f "$spec" ] || missing+=("$spec")
  if [ "${#missing[@]}" -gt 0 ]; then
    failed=$((failed + 1))
    echo "FAIL $name: missing ${missing[*]}"
    continue
  fi
  out="$tmp/$name"
  mkdir -p "$out"
  if [ -n "${RECOMPUTE:-}" ]; then
    # the same model, recomputing each repeat iteration in the backward:
    # the same numbers are expected
    if grep -q '^  recompute:' "$spec"; then
      sed 's/^  recompute: .*/  recompute: blocks/' "$spec" >"$out/$name.yaml"
    else
      sed 's/^train:$/train:\n  recompute: blocks/' "$spec" >"$out/$name.yaml"
    fi
    spec="$out/$name.yaml"
    if ! "$MODELC" ir "$spec" | grep -q ' = .*@.*scope=' ||
      ! "$MODELC" ir "$spec" | grep -q '^  %[^ ]*\.re[:.]'; then
      failed=$((failed + 1))
      echo "FAIL $name: recompute: blocks recomputes nothing"
      continue
    fi
  fi

  # eval: inference-mode outputs and loss
  if run_modelc eval run "$spec" --weights "$g/weights.safetensors" --input "$g/input.safetensors" \
    --output "$out/eval.safetensors" "${target_args[@]}"; then
    compare eval "$out/eval.safetensors" "$g/eval.safetensors" --rtol "$RTOL_RUN" --atol "$ATOL"
  fi

  # grads: training-mode outputs, loss and gradients
  if run_modelc grads run "$spec" --weights "$g/weights.safetensors" --input "$g/input.safetensors" \
    --output "$out/train.safetensors" --grads "${target_args[@]}"; then
    compare grads "$out/train.safetensors" "$g/train.safetensors" --rtol "$RTOL_RUN" --atol "$ATOL"
  fi

  # train: 3 optimizer steps from the same weights on the same data
  tol_args=()
  [ -f "$g/step3_tol.safetensors" ] && tol_args=(--tol-file "$g/step3_tol.safetensors")
  if run_modelc train train "$spec" --data "$data" --init "$g/weights.safetensors" \
    --steps "$STEPS" --out "$out/train" --quiet "${target_args[@]}"; then
    compare train "$out/train/model.safetensors" "$g/step3.safetensors" \
      --rtol "$RTOL_STEP" --atol "$ATOL" "${tol_args[@]}"
  fi

  rm -rf "$out"
  if [ "${#errors[@]}" -eq 0 ]; then
    passed=$((passed + 1))
    echo "PASS $name"
  else
    failed=$((failed + 1))
    msg="${errors[0]}"
    for e in "${errors[@]:1}"; do msg="$msg; $e"; done
    echo "FAIL $name: $msg"
    cat "$details"
  fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
