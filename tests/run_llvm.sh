#!/usr/bin/env bash
# run_llvm.sh: the LLVM backend (docs/llvm-backend.md).
#
#   bash tests/run_llvm.sh obj       # build -t obj for two models, link the
#                                    # objects into examples/embed_obj, run it
#   bash tests/run_llvm.sh aarch64   # a cross object: ELF machine EM_AARCH64;
#                                    # with aarch64-linux-gnu-gcc and qemu-aarch64,
#                                    # linked, run, and compared with the host
#   bash tests/run_llvm.sh vs_cc     # the JIT against the C path at rtol 1e-5 on
#                                    # the model_* reference cases (one per spec in
#                                    # specs/): run, run --grads, train --steps 3.
#                                    # Not in ctest: the C path compiles each model
#                                    # (a few minutes in all).
#
# The parity of the JIT with PyTorch's goldens is tests/run_parity.sh with
# VIA=llvm (ctest llvm/parity).
set -u
# shellcheck source=tests/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
set -e

# The objects of examples/embed's two models, linked with its main.c
# through examples/embed_obj/build.sh: no compile step for the models.
obj() {
  for m in xor bigram; do
    "$MODELC" build "$SRC/examples/embed/$m.yaml" -t obj -o "$tmp/out/$m"
  done
  bash "$SRC/examples/embed_obj/build.sh" "$tmp/out" "$tmp/embed_obj_demo"
  "$tmp/embed_obj_demo" "$tmp/xor.safetensors" | tee "$tmp/log"
  grep -q '^ok$' "$tmp/log"
  echo "1 passed, 0 failed"
}

# e_machine, the 16-bit little-endian field at byte 18 of an ELF header.
elf_machine() { od -An -tu2 -j18 -N2 "$1" | tr -d ' '; }

aarch64() {
  local spec="$SRC/examples/embed/xor.yaml"
  "$MODELC" build "$spec" -t obj --triple aarch64-linux-gnu -o "$tmp/a64"
  local machine
  machine="$(elf_machine "$tmp/a64/xor.o")"
  if [ "$machine" != 183 ]; then
    echo "FAIL aarch64: xor.o has ELF machine $machine, not 183 (EM_AARCH64)"
    exit 1
  fi
  echo "PASS aarch64 object: EM_AARCH64"
  if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
    echo "SKIP aarch64 run: needs gcc-aarch64-linux-gnu and qemu-user (apt-get install gcc-aarch64-linux-gnu qemu-user)"
    echo "1 passed, 0 failed"
    return
  fi
  # The runtime for aarch64, from its sources, without BLAS or OpenMP.
  local cc=aarch64-linux-gnu-gcc
  "$cc" -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -DMODELC_NO_BLAS -I"$SRC/runtime" -I"$tmp/a64" \
    "$SRC/examples/embed_obj/xor_check.c" "$SRC"/runtime/rt_*.c "$tmp/a64/xor.o" -lm -static -o "$tmp/a64/check"
  "$MODELC" build "$spec" -t obj -o "$tmp/host"
  cc -std=c11 -O2 -I"$tmp/host" "$SRC/examples/embed_obj/xor_check.c" "$tmp/host/xor.o" \
    "$tmp/host/libmodelc_rt.a" -fopenmp -lopenblas -lm -o "$tmp/host/check"
  qemu-aarch64 "$tmp/a64/check" >"$tmp/a64.txt"
  "$tmp/host/check" >"$tmp/host.txt"
  if ! python3 - "$tmp/host.txt" "$tmp/a64.txt" <<'PY'
import sys
a = [float(x) for x in open(sys.argv[1]).read().split()]
b = [float(x) for x in open(sys.argv[2]).read().split()]
bad = len(a) != len(b) or any(abs(x - y) > 1e-4 * max(1.0, abs(x)) for x, y in zip(a, b))
sys.exit(1 if bad else 0)
PY
  then
    echo "FAIL aarch64 run: differs from the host"
    paste "$tmp/host.txt" "$tmp/a64.txt" | head
    exit 1
  fi
  echo "PASS aarch64 run under qemu equals the host"
  echo "2 passed, 0 failed"
}

vs_cc() {
  local st_compare="${ST_COMPARE:-$SRC/build/tests/st_compare}" passed=0 failed=0
  export MODELC_CACHE="${MODELC_CACHE:-$tmp/cache}"
  set +e
  # same NAME LABEL A B [ARGS]: the JIT's file A against the C path's B
  same() {
    if "$st_compare" "$3" "$4" --rtol 1e-5 --atol 1e-6 "${@:5}" >"$tmp/compare" 2>&1; then
      passed=$((passed + 1))
      echo "PASS $1 $2"
    else
      failed=$((failed + 1))
      echo "FAIL $1 $2"
      sed -n '1,20s/^/  | /p' "$tmp/compare"
    fi
  }
  for spec in "$SRC"/tests/reference/cases/model_*.yaml; do
    local name g data via
    name="$(basename "$spec" .yaml)"
    g="$SRC/tests/reference/golden/$name"
    data="$g/data.bin"
    [ -f "$data" ] || data="$g/data.safetensors"
    for via in llvm cc; do
      "$MODELC" run "$spec" --weights "$g/weights.safetensors" --input "$g/input.safetensors" \
        --output "$tmp/$via.eval.safetensors" --via "$via" 2>/dev/null
      "$MODELC" run "$spec" --weights "$g/weights.safetensors" --input "$g/input.safetensors" \
        --output "$tmp/$via.grads.safetensors" --grads --via "$via" 2>/dev/null
      rm -rf "$tmp/$via.train"
      "$MODELC" train "$spec" --data "$data" --init "$g/weights.safetensors" --steps 3 \
        --out "$tmp/$via.train" --quiet --via "$via" 2>/dev/null
    done
    same "$name" eval "$tmp/llvm.eval.safetensors" "$tmp/cc.eval.safetensors"
    same "$name" grads "$tmp/llvm.grads.safetensors" "$tmp/cc.grads.safetensors"
    # after 3 AdamW steps, parameters whose gradient is rounding noise (the
    # key bias: softmax ignores a constant added to every key) move by
    # lr-sized steps whatever the noise: the parity goldens' per-element
    # slack for them applies here too (tests/reference/README.md)
    local tol=()
    [ -f "$g/step3_tol.safetensors" ] && tol=(--tol-file "$g/step3_tol.safetensors")
    same "$name" train "$tmp/llvm.train/model.safetensors" "$tmp/cc.train/model.safetensors" "${tol[@]}"
  done
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

case "${1:-}" in
obj) obj ;;
aarch64) aarch64 ;;
vs_cc) vs_cc ;;
*)
  echo "usage: run_llvm.sh obj|aarch64|vs_cc" >&2
  exit 2
  ;;
esac
