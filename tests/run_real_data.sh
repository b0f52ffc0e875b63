#!/usr/bin/env bash
# run_real_data.sh CASE: end-to-end training on real data from Debian's
# packages, bounded in time, with the figure it must reach.
#
#   charlm  specs/charlm.yaml on the fortunes text (fortunes package):
#           validation loss after STEPS steps below a pinned value
#   fmnist  specs/fmnist_cnn.yaml on Fashion-MNIST (dataset-fashion-mnist):
#           accuracy on the 10,000 test images at least 0.89
#   resume  4 steps of charlm straight, and 2 + --resume 2: the same loss
#           sequence and the same final parameters, bit for bit
#   sample  text from the charlm of a short run
#   interrupt  Ctrl-C (SIGINT) during training: exit 130, a checkpoint that
#           --resume continues from
set -u
# shellcheck source=tests/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export MODELC_CACHE="${MODELC_CACHE:-$tmp/cache}"

# The pinned figures (measured on 2 cores; see docs/performance.md).
CHARLM_STEPS=300
CHARLM_MAX_VAL_LOSS=2.85
FMNIST_STEPS=2000
FMNIST_MIN_ACCURACY=0.89

fortunes() {
  local files=()
  for f in /usr/share/games/fortunes/*; do
    case "$f" in *.dat | *.u8) ;; *) [ -f "$f" ] && files+=("$f") ;; esac
  done
  [ "${#files[@]}" -gt 0 ] || { echo "SKIP: the fortunes package is not installed"; exit 1; }
  "$MODELC" data text "${files[@]}" -o "$tmp/train.bin" --val "$tmp/val.bin" --val-fraction 0.05
}

last_metric() { # last_metric FILE KEY
  grep "\"$2\"" "$1" | tail -1 | sed -e "s/.*\"$2\": *\\([-0-9.eE+]*\\).*/\\1/"
}

check() { # check DESCRIPTION CONDITION(awk)
  if awk "BEGIN { exit !($2) }"; then echo "PASS $1"; else echo "FAIL $1"; exit 1; fi
}

case "${1:-}" in
charlm)
  fortunes
  start=$(date +%s)
  # The long runs take the C path (its runtime is built for this CPU:
  # the faster one for 300 and 2000 steps); resume, sample and interrupt
  # below go through the JIT, the default.
  "$MODELC" train "$SRC/specs/charlm.yaml" --data "$tmp/train.bin" --val "$tmp/val.bin" --via cc \
    --steps "$CHARLM_STEPS" --eval-every "$CHARLM_STEPS" --eval-batches 40 --out "$tmp/run" || exit 1
  loss=$(last_metric "$tmp/run/metrics.jsonl" val_loss)
  echo "charlm: validation loss $loss after $CHARLM_STEPS steps in $(($(date +%s) - start)) s"
  check "charlm validation loss $loss < $CHARLM_MAX_VAL_LOSS (uniform guess: 5.55)" "$loss < $CHARLM_MAX_VAL_LOSS"
  ;;
fmnist)
  dir=/usr/share/datasets/fashion-mnist
  [ -f "$dir/train-images-idx3-ubyte.gz" ] || { echo "FAIL: dataset-fashion-mnist is not installed"; exit 1; }
  "$MODELC" data fmnist "$dir/train-images-idx3-ubyte.gz" "$dir/train-labels-idx1-ubyte.gz" -o "$tmp/train.safetensors" || exit 1
  "$MODELC" data fmnist "$dir/t10k-images-idx3-ubyte.gz" "$dir/t10k-labels-idx1-ubyte.gz" -o "$tmp/test.safetensors" || exit 1
  start=$(date +%s)
  "$MODELC" train "$SRC/specs/fmnist_cnn.yaml" --data "$tmp/train.safetensors" --val "$tmp/test.safetensors" --via cc \
    --steps "$FMNIST_STEPS" --eval-every "$FMNIST_STEPS" --out "$tmp/run" || exit 1
  acc=$(last_metric "$tmp/run/metrics.jsonl" val_accuracy)
  echo "fmnist_cnn: test accuracy $acc after $FMNIST_STEPS steps in $(($(date +%s) - start)) s"
  check "fmnist_cnn test accuracy $acc >= $FMNIST_MIN_ACCURACY" "$acc >= $FMNIST_MIN_ACCURACY"
  ;;
resume)
  fortunes
  "$MODELC" train "$SRC/specs/charlm.yaml" --data "$tmp/train.bin" --steps 4 --out "$tmp/straight" --quiet || exit 1
  "$MODELC" train "$SRC/specs/charlm.yaml" --data "$tmp/train.bin" --steps 2 --out "$tmp/resumed" --quiet 2>"$tmp/log" || exit 1
  "$MODELC" train "$SRC/specs/charlm.yaml" --data "$tmp/train.bin" --steps 4 --resume "$tmp/resumed" --quiet 2>>"$tmp/log" || exit 1
  # The generated C was compiled by the first run: the cache serves the others.
  if grep -q "compiling" "$tmp/log"; then
    echo "FAIL the unchanged spec was compiled again"
    exit 1
  fi
  strip() { sed -e 's/"time_s": [^,}]*//; s/"tokens_per_s": [^,}]*//' "$1"; }
  if diff <(strip "$tmp/straight/metrics.jsonl") <(strip "$tmp/resumed/metrics.jsonl") &&
    cmp "$tmp/straight/model.safetensors" "$tmp/resumed/model.safetensors"; then
    echo "PASS resume: the loss sequence and the parameters equal an uninterrupted run's"
  else
    echo "FAIL resume differs from an uninterrupted run"
    exit 1
  fi
  ;;
sample)
  fortunes
  "$MODELC" train "$SRC/specs/charlm.yaml" --data "$tmp/train.bin" --steps 3 --out "$tmp/run" --quiet || exit 1
  "$MODELC" sample "$SRC/specs/charlm.yaml" --weights "$tmp/run/model.safetensors" --prompt "Q: " --tokens 40 --seed 5 >"$tmp/a" || exit 1
  "$MODELC" sample "$SRC/specs/charlm.yaml" --weights "$tmp/run/model.safetensors" --prompt "Q: " --tokens 40 --seed 5 >"$tmp/b" || exit 1
  n=$(wc -c <"$tmp/a")
  if cmp -s "$tmp/a" "$tmp/b" && [ "$n" -ge 44 ]; then
    echo "PASS sample: $n bytes, the same for the same seed"
  else
    echo "FAIL sample"
    exit 1
  fi
  ;;
interrupt)
  fortunes
  # Compile first, so that the interrupt lands in training.
  "$MODELC" train "$SRC/specs/charlm.yaml" --data "$tmp/train.bin" --steps 1 --out "$tmp/warm" --quiet || exit 1
  "$MODELC" train "$SRC/specs/charlm.yaml" --data "$tmp/train.bin" \
    --steps 100000 --out "$tmp/run" --quiet 2>"$tmp/log" &
  pid=$!
  for _ in $(seq 600); do
    [ "$(grep -c '"loss"' "$tmp/run/metrics.jsonl" 2>/dev/null || echo 0)" -ge 3 ] && break
    sleep 0.1
  done
  # Two signals 0.1 s apart, as `timeout -s INT` (to the process, then to
  # its group) delivers one request: one checkpoint, not a kill.
  kill -INT "$pid"
  sleep 0.1
  kill -INT "$pid" 2>/dev/null && echo "the second signal reached the process"
  wait "$pid"
  rc=$?
  step=$(grep -c '"loss"' "$tmp/run/metrics.jsonl" 2>/dev/null || echo 0)
  if [ "$rc" -ne 130 ] || ! grep -q "interrupted at step" "$tmp/log" || [ ! -f "$tmp/run/state.safetensors" ]; then
    echo "FAIL interrupt: exit $rc, $step steps"
    sed 's/^/  | /' "$tmp/log" | tail -5
    exit 1
  fi
  "$MODELC" train "$SRC/specs/charlm.yaml" --data "$tmp/train.bin" --steps $((step + 2)) --resume "$tmp/run" --quiet || exit 1
  after=$(grep -c '"loss"' "$tmp/run/metrics.jsonl")
  if [ "$after" -eq $((step + 2)) ]; then
    echo "PASS interrupt: exit 130 after $step steps, checkpoint resumed to step $after"
  else
    echo "FAIL interrupt: resume gave $after metric lines, expected $((step + 2))"
    exit 1
  fi
  ;;
*)
  echo "usage: run_real_data.sh charlm|fmnist|resume|sample|interrupt" >&2
  exit 2
  ;;
esac
