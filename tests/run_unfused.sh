#!/usr/bin/env bash
# run_unfused.sh: the fused build equals the unfused one.
#
# For each case of tests/reference (the golden weights and inputs), runs
# `modelc run --grads` twice, with every fusion (the default) and with
# --no-fuse=attention,gating,conv,norm,cross_entropy,norm_residual,elementwise, and compares the
# two outputs (training-mode outputs, loss and every gradient) with
# st_compare at rtol 1e-5 (atol 1e-6): fusion changes the order of
# floating-point operations, never the result beyond that.
#
#   bash tests/run_unfused.sh [NAME...]
#
# Environment: MODELC, SRC, ST_COMPARE (as run_parity.sh).
set -u
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ST_COMPARE="${ST_COMPARE:-$SRC/build/tests/st_compare}"
TIMEOUT="${MODELC_TEST_TIMEOUT:-120}"
golden="$SRC/tests/reference/golden"
cases=("$@")
if [ "${#cases[@]}" -eq 0 ]; then
  cases=(attn_plain attn_causal attn_window_global attn_gqa_rope attn_mqa_rope attn_gate
         swiglu geglu cross_entropy cross_entropy_2d layernorm rmsnorm
         model_charlm model_llama model_sparse model_unet model_fmnist_cnn
         conv_cat_up conv_cat3_sdg conv_up)
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
for name in "${cases[@]}"; do
  spec="$SRC/tests/reference/cases/$name.yaml"
  g="$golden/$name"
  ok=1
  # the two builds must differ: fused ops in one, none in the other
  "$MODELC" ir "$spec" >"$tmp/fused.ir" 2>&1
  "$MODELC" ir "$spec" --no-fuse=attention,gating,conv,norm,cross_entropy,norm_residual,elementwise >"$tmp/unfused.ir" 2>&1
  fused_ops=' = (flash_attention|glu|conv_concat|fused_norm|softmax_cross_entropy|fused_elementwise) '
  if ! grep -Eq "$fused_ops" "$tmp/fused.ir" || grep -Eq "$fused_ops" "$tmp/unfused.ir"; then
    echo "FAIL $name: expected fused ops with fusion on and none with it off"
    failed=$((failed + 1))
    continue
  fi
  for variant in fused unfused; do
    flags=()
    [ "$variant" = unfused ] && flags=(--no-fuse=attention,gating,conv,norm,cross_entropy,norm_residual,elementwise)
    if ! timeout "$TIMEOUT" "$MODELC" run "$spec" --weights "$g/weights.safetensors" \
      --input "$g/input.safetensors" --output "$tmp/$name.$variant.safetensors" --grads \
      "${flags[@]}" >"$tmp/log" 2>&1; then
      echo "FAIL $name: modelc run ($variant) failed"
      sed 's/^/  | /' "$tmp/log" | head -20
      ok=0
      break
    fi
  done
  if [ "$ok" = 1 ] && ! "$ST_COMPARE" "$tmp/$name.fused.safetensors" "$tmp/$name.unfused.safetensors" \
    --rtol 1e-5 --atol 1e-6 >"$tmp/compare" 2>&1; then
    echo "FAIL $name: fused and unfused differ"
    sed 's/^/  | /' "$tmp/compare" | head -20
    ok=0
  fi
  if [ "$ok" = 1 ]; then
    passed=$((passed + 1))
    echo "PASS $name"
  else
    failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
