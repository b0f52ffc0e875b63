#!/usr/bin/env bash
# run_numerics.sh: `modelc run` and `train` with --check-numerics: the
# first NaN or infinity a kernel computes stops the command (exit 1) with
# the op, the spec's file:line:col, forward or backward, and for train the
# step. Without the flag nothing is checked (NaN outputs are written).
set -u
# shellcheck source=tests/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export MODELC_CACHE="${MODELC_CACHE:-$tmp/cache}"
passed=0
failed=0

# check NAME EXPECTED_EXIT PATTERN COMMAND...
check() {
  local name="$1" want="$2" pattern="$3"
  shift 3
  "$@" >"$tmp/stdout" 2>"$tmp/stderr"
  local rc=$?
  if [ "$rc" -eq "$want" ] && { [ -z "$pattern" ] || grep -q -- "$pattern" "$tmp/stderr"; }; then
    passed=$((passed + 1))
    echo "PASS $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name (exit $rc, expected $want)"
    sed 's/^/  | /' "$tmp/stderr" | head -10
  fi
}

spec="$tmp/numerics.yaml"
cat >"$spec" <<'YAML'
# log(x) is NaN for x < 0 (forward); sqrt at 0 has an infinite slope (backward).
model: numerics
dims:
  B: 2
  D: 4
inputs:
  x:      f32[B, D]
  target: f32[B, D]
graph:
  - h:    linear(x, D)
  - r:    sqrt(relu(h))
  - l:    log(x)
  - y:    r + l
  - loss: mse(y, target)
outputs: [y]
train:
  loss: loss
  optimizer: sgd(lr=0.1)
YAML
python3 - "$tmp" <<'PY'
import json, struct, sys
def save(path, tensors):
    header, data = {}, b""
    for name, (shape, values) in tensors.items():
        b = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)
out = sys.argv[1]
eye = [1.0 if i == j else 0.0 for i in range(4) for j in range(4)]
save(f"{out}/weights.safetensors", {"h.weight": ([4, 4], eye), "h.bias": ([4], [-10, 0, 0, 0])})
save(f"{out}/negative.safetensors", {"x": ([2, 4], [1, 2, 3, -4, 1, 1, 1, 1]), "target": ([2, 4], [0] * 8)})
save(f"{out}/positive.safetensors", {"x": ([2, 4], [1, 2, 3, 4, 1, 1, 1, 1]), "target": ([2, 4], [0] * 8)})
save(f"{out}/data.safetensors", {"x": ([4, 4], [1, 2, 3, 4] * 4), "target": ([4, 4], [0] * 16)})
PY

run() { "$MODELC" run "$spec" --weights "$tmp/weights.safetensors" --output "$tmp/out.safetensors" "$@"; }
check "run: NaN in forward" 1 "numerics run: error: --check-numerics: nan at element 3 of l, computed by log at $spec:12:11 (forward)" \
  run --input "$tmp/negative.safetensors" --check-numerics
check "run --grads: infinity in backward" 1 "--check-numerics: [-a-z]* at element 0 of d\\.r\\.[a-z]*, computed by [a-z_]* at $spec:11:11 (backward)" \
  run --input "$tmp/positive.safetensors" --grads --check-numerics
check "run: finite values pass the check" 0 "" run --input "$tmp/positive.safetensors" --check-numerics
check "run: no check without the flag" 0 "" run --input "$tmp/negative.safetensors"
check "train: the step, the op and the place" 1 "numerics train: error: step 1: --check-numerics: [-a-z]* at element [0-9]* of d\\.r\\.[a-z]*, computed by [a-z_]* at $spec:11:11 (backward)" \
  "$MODELC" train "$spec" --data "$tmp/data.safetensors" --init "$tmp/weights.safetensors" --steps 2 --out "$tmp/run" --check-numerics --quiet
check "train: --check-numerics is a flag (the spec after it is still the spec)" 1 "step 1: --check-numerics" \
  "$MODELC" train --check-numerics "$spec" --data "$tmp/data.safetensors" --init "$tmp/weights.safetensors" --steps 2 --out "$tmp/run2" --quiet
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
