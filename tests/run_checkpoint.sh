#!/usr/bin/env bash
# run_checkpoint.sh: checkpoints survive a process killed while saving
# and a full disk (docs/reliability.md).
#
#   crash P   SIGKILL at each point P of the commit of the step-2
#             checkpoint (MODELC_TEST_CRASH_CHECKPOINT=P@2, rt_driver.c):
#             model.safetensors loads with `run --weights` at once, and
#             --resume to step 3 gives the parameters of an uninterrupted
#             3-step run, bit for bit.
#   kill -9   training with a checkpoint every step, killed at random
#             moments, again and again: each time the checkpoint loads
#             and resumes, and the last resume finishes the run.
#   full disk a file-size limit (ulimit -f) below the checkpoint's size:
#             exit 1 with an error naming the file, and the previous
#             checkpoint is intact, resumable, and no pending file is left.
set -u
# shellcheck source=tests/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export MODELC_CACHE="${MODELC_CACHE:-$tmp/cache}"
passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() {
  failed=$((failed + 1))
  echo "FAIL $1"
  [ -f "$tmp/log" ] && sed 's/^/  | /' "$tmp/log" | head -10
}

# 64x64 parameters (16 KiB as f32): larger than the file-size limit below.
spec="$tmp/ckpt.yaml"
cat >"$spec" <<'YAML'
model: ckpt
dims:
  B: 4
  D: 64
inputs:
  x:      f32[B, D]
  target: f32[B, D]
graph:
  - y:    linear(x, D)
  - loss: mse(y, target)
outputs: [y]
train:
  loss: loss
  optimizer: adamw(lr=1e-2)
  seed: 7
YAML
python3 - "$tmp" <<'PY'
import json, random, struct, sys
random.seed(1)
out = sys.argv[1]
def save(path, tensors):
    header, data = {}, b""
    for name, (shape, values) in tensors.items():
        b = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)
n = 16 * 64
save(f"{out}/data.safetensors", {"x": ([16, 64], [random.gauss(0, 1) for _ in range(n)]),
                                 "target": ([16, 64], [random.gauss(0, 1) for _ in range(n)])})
save(f"{out}/input.safetensors", {"x": ([4, 64], [0.5] * 256)})
PY
# The C path (--via cc): the full-disk case runs its compiled driver
# under a file-size limit. The JIT path saves through the same runtime.
train() { "$MODELC" train "$spec" --data "$tmp/data.safetensors" --quiet --via cc "$@"; }
loads() { "$MODELC" run "$spec" --weights "$1/model.safetensors" --input "$tmp/input.safetensors" --output "$tmp/run.safetensors" >"$tmp/log" 2>&1; }

if ! train --steps 3 --out "$tmp/straight" 2>"$tmp/log"; then
  fail "an uninterrupted run"
  echo "$passed passed, $failed failed"
  exit 1
fi

# ---- SIGKILL at each point of the commit ----
for point in 1 2 3 4; do
  dir="$tmp/crash$point"
  MODELC_TEST_CRASH_CHECKPOINT="$point@2" train --steps 3 --checkpoint-every 1 --out "$dir" 2>"$tmp/log"
  rc=$?
  if [ "$rc" -ne 137 ]; then
    fail "crash at point $point: the hook did not kill the run (exit $rc)"
    continue
  fi
  if ! loads "$dir"; then
    fail "crash at point $point: model.safetensors does not load before recovery"
    continue
  fi
  if train --steps 3 --resume "$dir" 2>"$tmp/log" && cmp -s "$dir/model.safetensors" "$tmp/straight/model.safetensors" &&
    ! ls "$dir"/.ckpt-* "$dir"/*.tmp.* >/dev/null 2>&1; then
    pass "crash at point $point of the commit: loadable, resumes to the uninterrupted result"
  else
    fail "crash at point $point: the resumed run differs from the uninterrupted one"
  fi
done

# ---- kill -9 at random moments ----
dir="$tmp/killed"
kills=0
bad=0
for round in $(seq 1 12); do
  where=(--out "$dir")
  [ -f "$dir/state.safetensors" ] && where=(--resume "$dir")
  # modelc itself in the background (it execs the driver: the same pid);
  # a million steps do not finish before the kill
  "$MODELC" train "$spec" --data "$tmp/data.safetensors" --quiet --steps 1000000 --checkpoint-every 1 \
    "${where[@]}" 2>"$tmp/log" &
  pid=$!
  # the first round runs long enough to checkpoint on a slow machine too
  [ "$round" -eq 1 ] && sleep 2
  sleep "0.$((RANDOM % 7 + 2))$((RANDOM % 10))"
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  [ $? -eq 137 ] && kills=$((kills + 1))
  [ -f "$dir/model.safetensors" ] || continue
  if ! loads "$dir"; then
    bad=$((bad + 1))
    echo "  round $round: model.safetensors does not load"
  fi
done
# metrics.jsonl may run past the last checkpoint (a kill after logging a
# step); --resume trims it back, and 3 more steps finish the run.
last="$(sed -n 's/^{"step": \([0-9]*\),.*/\1/p' "$dir/metrics.jsonl" | tail -1)"
if [ "$bad" -eq 0 ] && [ "$kills" -ge 10 ] && [ -n "$last" ] &&
  train --steps "$((last + 3))" --resume "$dir" 2>"$tmp/log" && loads "$dir" &&
  [ "$(sed -n 's/^{"step": \([0-9]*\),.*/\1/p' "$dir/metrics.jsonl" | tail -1)" = "$((last + 3))" ]; then
  pass "kill -9 at random moments ($kills kills, up to step $last): every checkpoint loads, and resuming finishes the run"
else
  fail "kill -9 at random moments ($kills kills, $bad unloadable)"
fi

# ---- a full disk: a file-size limit below the checkpoint's size ----
dir="$tmp/full"
driver="$(ls "$MODELC_CACHE"/ckpt-*/ckpt_main | head -1)"
if ! train --steps 2 --out "$dir" 2>"$tmp/log"; then
  fail "full disk: the first checkpoint"
else
  cp "$dir/model.safetensors" "$tmp/full-model" && cp "$dir/state.safetensors" "$tmp/full-state"
  # The compiled driver itself (modelc would write generated sources to
  # its cache first); 8 KiB is below the 16 KiB the parameters take.
  (ulimit -f 8 && exec "$driver" train --data "$tmp/data.safetensors" --steps 4 --resume "$dir" --quiet) 2>"$tmp/log"
  rc=$?
  if [ "$rc" -eq 1 ] && grep -q "checkpoint at step 4: cannot write '$dir/.ckpt-model.safetensors': File too large" "$tmp/log" &&
    cmp -s "$dir/model.safetensors" "$tmp/full-model" && cmp -s "$dir/state.safetensors" "$tmp/full-state" &&
    ! ls "$dir"/.ckpt-* "$dir"/*.tmp.* >/dev/null 2>&1 && loads "$dir" &&
    train --steps 3 --resume "$dir" 2>"$tmp/log"; then
    pass "full disk: exit 1 naming the file; the previous checkpoint is intact and resumes"
  else
    fail "full disk (exit $rc)"
  fi
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
