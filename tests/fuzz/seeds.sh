#!/usr/bin/env bash
# seeds.sh OUT MODELC: seed corpora for the harnesses, one folder each
# under OUT, from the specs, diagnostics, IR tests and reference goldens
# of the source tree; MODELC prints IR for more IR seeds.
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$1"
modelc="$2"
rm -rf "$out"
mkdir -p "$out"/{spec,expr,ir,safetensors,data,args}

cp "$src"/specs/*.yaml "$src"/tests/diag/*.yaml "$src"/tests/ir/*.yaml "$out/spec/"
for f in "$src"/tests/reference/cases/*.yaml; do cp "$f" "$out/spec/case_$(basename "$f")"; done

# Expressions: the right-hand sides of graph statements and dims.
n=0
for f in "$src"/specs/*.yaml "$src"/tests/reference/cases/*.yaml; do
  sed -n -e 's/^ *- [A-Za-z_0-9]*: *//p' -e 's/^  [A-Z][A-Za-z_0-9]*: *//p' "$f" |
    sed 's/ *#.*//' | sort -u | while IFS= read -r line; do
      [ -n "$line" ] && printf '%s' "$line" >"$out/expr/$(basename "$f" .yaml)_$((n++))"
    done
done

cp "$src"/tests/ir/*.ir "$out/ir/"
for f in "$src"/specs/*.yaml "$src"/tests/reference/cases/{linear,attn_gqa_rope,conv2d,batchnorm2d,embedding,concat}.yaml; do
  b="$(basename "$f" .yaml)"
  "$modelc" ir "$f" --stage=parsed >"$out/ir/$b.parsed.ir" 2>/dev/null || true
  "$modelc" ir "$f" >"$out/ir/$b.ir" 2>/dev/null || true
done

for f in "$src"/tests/reference/golden/*/*.safetensors; do
  [ "$(stat -c %s "$f")" -le 65536 ] && cp "$f" "$out/safetensors/$(basename "$(dirname "$f")")_$(basename "$f")"
done

python3 - "$out" <<'PY'
import os, struct, sys
out = sys.argv[1]
def put(folder, name, data):
    with open(os.path.join(out, folder, name), "wb") as f:
        f.write(data)
# data: first byte 0 tokens (then B, T bytes), 1 IDX pair (then split), 2 text
llmc = struct.pack("<256i", 20240520, 1, 40, *([0] * 253)) + struct.pack("<40H", *range(40))
put("data", "tokens_llmc", b"\x00\x01\x07" + llmc)
put("data", "tokens_raw", b"\x00\x02\x03" + struct.pack("<30H", *range(30)))
images = struct.pack(">4I", 0x803, 3, 2, 2) + bytes(range(12))
labels = struct.pack(">2I", 0x801, 3) + bytes([1, 2, 3])
put("data", "idx", b"\x01" + struct.pack(">H", len(images)) + images + labels)
put("data", "text", b"\x02hello, world\n")
# args: first byte 0 options, 1 check, 2 ir, 3 the generated driver
def args(which, *words):
    return bytes([which]) + b"\0".join(w.encode() for w in words)
put("args", "options", args(0, "spec.yaml", "--params", "--mode=train", "-t", "c"))
put("args", "check", args(1, "spec.yaml", "--params"))
put("args", "check_mode", args(1, "--mode", "infer", "spec.yaml"))
put("args", "ir", args(2, "spec.yaml", "--stage=expanded", "--print-after-all"))
put("args", "ir_passes", args(2, "spec.yaml", "--print-after", "autodiff", "--mode=train"))
put("args", "rt_run", args(3, "run", "--weights", "w", "--input=i", "--output", "o", "--grads"))
put("args", "rt_train", args(3, "train", "--data", "d", "--steps", "10", "--checkpoint-every=2", "--quiet"))
put("args", "rt_sample", args(3, "sample", "--weights", "w", "--tokens", "5", "--top-k", "3"))
put("args", "rt_help", args(3, "train", "--help"))
PY
for d in "$out"/*; do echo "seeds: $(basename "$d"): $(ls "$d" | wc -l) files"; done
