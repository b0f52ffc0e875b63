#!/usr/bin/env bash
# run_cuda_nvrtc.sh: the CUDA backend without a GPU. For every spec (and
# bf16 variants of gpt2 and unet) and for sm_80 and sm_90, `modelc build -t cuda --aot --arch ARCH` compiles
# every kernel through NVRTC (one translation unit per spec and arch) and
# must report no warnings; the host code of the output compiles with gcc
# and clang under -std=c11 -Wall -Wextra -Werror; one model is linked and,
# on a machine without the NVIDIA driver, `train` must say "no GPU" and
# exit 1 (not crash).
#
# Skips (exit 77, ctest's SKIP_RETURN_CODE) with the reason when NVRTC is
# not installed. MODELC_NVRTC_DIR (set by CMake when it found NVRTC) is put
# on LD_LIBRARY_PATH so that the dlopen in the runtime finds it.
set -u

# shellcheck source=tests/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if [ -n "${MODELC_NVRTC_DIR:-}" ]; then
  export LD_LIBRARY_PATH="$MODELC_NVRTC_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export MODELC_CACHE="$tmp/cache"
passed=0
failed=0
fail() { failed=$((failed + 1)); echo "FAIL $1"; sed 's/^/  | /' "$tmp/log" | head -30; }
pass() { passed=$((passed + 1)); echo "PASS $1"; }

archs=(${MODELC_CUDA_ARCHS:-sm_80 sm_90})
flags=(-std=c11 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -DMODELC_NO_BLAS -O0)
# Every spec, and bf16 variants (precision: bf16: the tensor-core GEMM and
# the bf16 convolutions) of two that have both GEMMs and convolutions
# between them; the rest of a bf16 module is the f32 one's.
specs=()
for spec in "$SRC"/specs/*.yaml; do
  specs+=("$spec")
  name="$(basename "$spec" .yaml)"
  case " ${MODELC_CUDA_BF16_SPECS:-gpt2 unet} " in *" $name "*) ;; *) continue ;; esac
  grep -q "^train:" "$spec" || continue
  if grep -q "^  precision:" "$spec"; then
    sed 's/^  precision:.*/  precision: bf16/' "$spec" >"$tmp/${name}_bf16.yaml"
  else
    sed 's/^train:$/train:\n  precision: bf16/' "$spec" >"$tmp/${name}_bf16.yaml"
  fi
  specs+=("$tmp/${name}_bf16.yaml")
done

# The NVRTC builds, two at a time (NVRTC is single-threaded).
for spec in "${specs[@]}"; do
  name="$(basename "$spec" .yaml)"
  for arch in "${archs[@]}"; do
    "$MODELC" build "$spec" -t cuda --aot --arch "$arch" -o "$tmp/$name-$arch" >"$tmp/$name-$arch.log" 2>&1 &
    [ "$(jobs -rp | wc -l)" -ge 2 ] && wait -n
  done
done
wait
first=1
for spec in "${specs[@]}"; do
  name="$(basename "$spec" .yaml)"
  for arch in "${archs[@]}"; do
    out="$tmp/$name-$arch"
    cp "$out.log" "$tmp/log"
    if grep -q "NVRTC (libnvrtc.so) is not installed" "$tmp/log"; then
      echo "SKIP: NVRTC is not installed (no libnvrtc.so on the loader's path); the CUDA" \
        "backend's kernels cannot be compiled here"
      exit 77
    fi
    summary="$(grep "kernels compiled by NVRTC" "$tmp/log")"
    if ! ls "$out"/*_kernels.c >/dev/null 2>&1 || ! grep -q ": no warnings$" "$tmp/log"; then
      fail "$name $arch: NVRTC"
      continue
    fi
    pass "$name $arch: ${summary#modelc build: }"
  done
  # Host code: the first arch's output (its kernels file embeds the
  # cubin); the runtime, the same text for every model, once.
  out="$tmp/$name-${archs[0]}"
  case "$name" in *_bf16) continue ;; esac # the same host code as its f32 spec
  ls "$out"/*_kernels.c >/dev/null 2>&1 || continue
  model="$(basename "$(ls "$out"/*_kernels.c)" _kernels.c)" # the spec's model: name
  files=("$model.c" "${model}_kernels.c" "${model}_main.c")
  [ "$first" = 1 ] && files+=(modelc_rt.c modelc_rt_cuda.c)
  first=0
  ok=1
  for cc in gcc clang; do
    command -v "$cc" >/dev/null 2>&1 || continue
    if ! (cd "$out" && $cc "${flags[@]}" -I. -c "${files[@]}") >"$tmp/log" 2>&1; then
      fail "$name: host code with $cc"
      ok=0
    fi
  done
  [ "$ok" = 1 ] && pass "$name: host code builds with gcc and clang, -Wall -Wextra -Werror"
done

# Linked, and run where there is no driver: a clear message, exit 1.
out="$tmp/charlm-${archs[0]}"
if [ -d "$out" ]; then
  if (cd "$out" && gcc "${flags[@]}" -I. ./*.c -o charlm_main -ldl -lm) >"$tmp/log" 2>&1; then
    if ldconfig -p 2>/dev/null | grep -q "libcuda.so.1"; then
      pass "charlm: links (a driver is installed: the no-GPU message is not checked)"
    else
      "$out/charlm_main" train --data /dev/null --steps 1 >"$tmp/log" 2>&1
      rc=$?
      if [ "$rc" = 1 ] && grep -q "error: no GPU: " "$tmp/log"; then
        pass "charlm: without a driver, train says 'no GPU' and exits 1"
      else
        echo "exit $rc" >>"$tmp/log"
        fail "charlm: the no-GPU message"
      fi
    fi
  else
    fail "charlm: link"
  fi
fi

echo "run_cuda_nvrtc: $passed passed, $failed failed"
[ "$failed" = 0 ]
