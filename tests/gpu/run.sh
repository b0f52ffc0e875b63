#!/usr/bin/env bash
# tests/gpu/run.sh: the CUDA backend against the C backend, on a GPU. One
# command:
#
#   bash tests/gpu/run.sh [SPEC.yaml...]      # default: every spec in specs/
#
# For each spec, as written (f32) and as a bf16 variant (`precision: bf16`
# put in its train: section):
#   run    `modelc run --grads` on a random batch (make_batch.py) with the
#          weights of one CPU training step: outputs, loss and every
#          grad.NAME of --target cuda equal --target cpu's (relative 1e-4
#          for f32, 2e-2 for bf16);
#   train  3 optimizer steps from those weights on each target: the
#          parameters agree (same rtol; atol 1e-3 because an Adam step
#          moves a parameter by about lr whatever the gradient's size, so
#          a gradient near zero that rounds to the other sign differs by
#          2 lr; the f32 C backend meets the same bound against PyTorch).
#
# Without a GPU it prints why and exits 77 (skipped), as ctest expects.
# Environment: MODELC, SRC (tests/common.sh), ST_COMPARE (default
# $SRC/build/tests/st_compare), MODELC_CACHE (default: a temporary one).
set -u

# shellcheck source=tests/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
ST_COMPARE="${ST_COMPARE:-$SRC/build/tests/st_compare}"
case "$ST_COMPARE" in /*) ;; */*) ST_COMPARE="$PWD/$ST_COMPARE" ;; esac

skip() {
  echo "SKIP: $* (tests/gpu needs an NVIDIA GPU; the NVRTC compile test, ctest -R cuda/nvrtc, runs without one)"
  exit 77
}
if ! ldconfig -p 2>/dev/null | grep -q "libcuda.so.1"; then
  skip "no NVIDIA driver: libcuda.so.1 is not installed"
fi
if command -v nvidia-smi >/dev/null 2>&1 && ! nvidia-smi -L 2>/dev/null | grep -q "^GPU"; then
  skip "the driver is installed but nvidia-smi lists no GPU"
fi
for tool in MODELC ST_COMPARE; do
  command -v "${!tool}" >/dev/null 2>&1 || { echo "tests/gpu: $tool='${!tool}' is not an executable (build first)"; exit 1; }
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export MODELC_CACHE="${MODELC_CACHE:-$tmp/cache}"
passed=0
failed=0
fail() { failed=$((failed + 1)); echo "FAIL $1"; sed 's/^/  | /' "$tmp/log" | head -30; }
pass() { passed=$((passed + 1)); echo "PASS $1"; }

specs=("$@")
[ "${#specs[@]}" -gt 0 ] || specs=("$SRC"/specs/*.yaml)

# A copy of the spec that trains in bf16.
bf16_variant() { # SPEC OUT
  if grep -q "^  precision:" "$1"; then
    sed 's/^  precision:.*/  precision: bf16/' "$1" >"$2"
  else
    sed 's/^train:$/train:\n  precision: bf16/' "$1" >"$2"
  fi
}

check_spec() { # SPEC LABEL RTOL
  local spec="$1" label="$2" rtol="$3" dir="$tmp/$2"
  mkdir -p "$dir"
  if ! "$MODELC" check "$spec" >"$dir/check" 2>"$tmp/log" ||
    ! python3 "$SRC/tests/gpu/make_batch.py" "$dir/batch.safetensors" <"$dir/check" 2>>"$tmp/log"; then
    fail "$label: batch"
    return
  fi
  local data="$dir/batch.safetensors"
  if grep -q "inputs .*tokens .*targets" "$dir/check"; then
    "$MODELC" data text "$SRC/README.md" "$SRC/docs/spec-language.md" -o "$dir/tokens.bin" >/dev/null 2>&1
    data="$dir/tokens.bin"
  fi
  if ! "$MODELC" train "$spec" --data "$data" --steps 1 --out "$dir/w" --quiet --target cpu >"$tmp/log" 2>&1; then
    fail "$label: weights (one CPU step)"
    return
  fi
  local t
  for t in cpu cuda; do
    if ! "$MODELC" run "$spec" --weights "$dir/w/model.safetensors" --input "$dir/batch.safetensors" \
      --output "$dir/run-$t.safetensors" --grads --target "$t" >"$tmp/log" 2>&1; then
      fail "$label: run --target $t"
      return
    fi
  done
  if "$ST_COMPARE" "$dir/run-cuda.safetensors" "$dir/run-cpu.safetensors" --rtol "$rtol" --atol 1e-6 >"$tmp/log" 2>&1; then
    pass "$label: run --grads, cuda = cpu (rtol $rtol)"
  else
    fail "$label: run --grads, cuda against cpu (rtol $rtol)"
  fi
  for t in cpu cuda; do
    if ! "$MODELC" train "$spec" --data "$data" --init "$dir/w/model.safetensors" --steps 3 \
      --out "$dir/train-$t" --quiet --target "$t" >"$tmp/log" 2>&1; then
      fail "$label: train --target $t"
      return
    fi
  done
  if "$ST_COMPARE" "$dir/train-cuda/model.safetensors" "$dir/train-cpu/model.safetensors" --rtol "$rtol" \
    --atol 1e-3 >"$tmp/log" 2>&1; then
    pass "$label: 3 training steps, cuda = cpu (rtol $rtol, atol 1e-3)"
  else
    fail "$label: 3 training steps, cuda against cpu"
  fi
}

for spec in "${specs[@]}"; do
  name="$(basename "$spec" .yaml)"
  check_spec "$spec" "$name f32" 1e-4
  if grep -q "^train:" "$spec"; then
    bf16_variant "$spec" "$tmp/$name-bf16.yaml"
    check_spec "$tmp/$name-bf16.yaml" "$name bf16" 2e-2
  fi
done

echo "tests/gpu: $passed passed, $failed failed"
[ "$failed" = 0 ]
