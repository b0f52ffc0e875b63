#!/usr/bin/env bash
# run_bad_files.sh: modelc run and train given bad weight, input and data
# files: each gets a message naming the file (and the tensor), exit 1, and
# no output file.
set -u
# shellcheck source=tests/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export MODELC_CACHE="${MODELC_CACHE:-$tmp/cache}"
spec="$SRC/tests/reference/cases/linear.yaml"
gold="$SRC/tests/reference/golden/linear"
passed=0
failed=0

# expect NAME PATTERN COMMAND...: exit 1, PATTERN on stderr, no $tmp/out.*
expect() {
  local name="$1" pattern="$2"
  shift 2
  rm -rf "$tmp"/out.*
  "$@" >"$tmp/stdout" 2>"$tmp/stderr"
  local rc=$?
  if [ "$rc" -eq 1 ] && grep -q -- "$pattern" "$tmp/stderr" && ! ls "$tmp"/out.* >/dev/null 2>&1; then
    passed=$((passed + 1))
    echo "PASS $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name (exit $rc)"
    sed 's/^/  | /' "$tmp/stderr" | head -10
  fi
}

head -c 100 "$gold/weights.safetensors" >"$tmp/truncated.safetensors"
printf 'not a safetensors file at all' >"$tmp/garbage.safetensors"
run() { "$MODELC" run "$spec" --output "$tmp/out.safetensors" "$@"; }

expect "weights: truncated" "truncated.safetensors" run --weights "$tmp/truncated.safetensors" --input "$gold/input.safetensors"
expect "weights: garbage" "garbage.safetensors" run --weights "$tmp/garbage.safetensors" --input "$gold/input.safetensors"
expect "weights: missing tensor" "input.safetensors: missing tensor 'p.weight'" run --weights "$gold/input.safetensors" --input "$gold/input.safetensors"
expect "weights: not there" "cannot read" run --weights "$tmp/none.safetensors" --input "$gold/input.safetensors"
expect "input: misshaped/missing" "input.safetensors\|weights.safetensors" run --weights "$gold/weights.safetensors" --input "$gold/weights.safetensors"
expect "input: truncated" "truncated.safetensors" run --weights "$gold/weights.safetensors" --input "$tmp/truncated.safetensors"
expect "run: unknown option" "unknown option" run --weights "$gold/weights.safetensors" --input "$gold/input.safetensors" --frobnicate
expect "train: data garbage" "garbage.safetensors" "$MODELC" train "$spec" --data "$tmp/garbage.safetensors" --steps 1 --out "$tmp/out.dir"
expect "train: bad --steps" "steps" "$MODELC" train "$spec" --data "$gold/data.safetensors" --steps x --out "$tmp/out.dir"
expect "train: --init misshaped" "missing tensor" "$MODELC" train "$spec" --data "$gold/data.safetensors" --init "$gold/input.safetensors" --steps 1 --out "$tmp/out.dir"
expect "build: unknown target" "target" "$MODELC" build "$spec" -t wasm -o "$tmp/out.build"

# ---- malformed safetensors files, made from the golden ones ----
# Each file is the golden weights (or input, or data) with one defect;
# every message names the file and, where there is one, the tensor.
python3 - "$gold" "$tmp" <<'PY'
import json, math, struct, sys
gold, out = sys.argv[1], sys.argv[2]

def load(name):
    b = open(f"{gold}/{name}.safetensors", "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]

def save(name, header, data, length=None, raw=None):
    text = raw if raw is not None else json.dumps(header, separators=(",", ":")).encode()
    n = len(text) if length is None else length
    open(f"{out}/{name}.safetensors", "wb").write(struct.pack("<Q", n) + text + data)

def edit(base, name, fn, data_fn=None):
    h, d = load(base)
    h.pop("__metadata__", None)
    fn(h)
    save(name, h, data_fn(d) if data_fn else d)

w, wd = load("weights")
save("short", None, b"", raw=b"")  # fewer than 8 bytes in all
open(f"{out}/short.safetensors", "wb").write(b"\x10\x00\x00")
save("header_past_end", w, wd, length=1 << 20)
save("header_huge", w, wd, length=1 << 40)
save("bad_json", None, wd, raw=b'{"p.weight":{"dtype":"F32","shape":[2,4,8],')
save("not_object", None, wd, raw=b"[1,2,3]")
edit("weights", "offsets_past_end", lambda h: h["y.weight"].update(data_offsets=[280, 4720]))
edit("weights", "offsets_overflow", lambda h: h["y.weight"].update(data_offsets=[280, 2**64]))
edit("weights", "offsets_wrap", lambda h: h["y.weight"].update(data_offsets=[2**64 - 8, 2**64 - 1]))
edit("weights", "offsets_reversed", lambda h: h["y.bias"].update(data_offsets=[280, 256]))
edit("weights", "offsets_overlap", lambda h: h["y.bias"].update(data_offsets=[248, 272]))
edit("weights", "offsets_size", lambda h: h["y.bias"].update(data_offsets=[256, 276]))
edit("weights", "unknown_dtype", lambda h: h["y.bias"].update(dtype="F8"))
edit("weights", "int_weight", lambda h: h["y.bias"].update(dtype="I32"))
edit("weights", "wrong_shape", lambda h: h["y.weight"].update(shape=[8, 6]))
edit("weights", "negative_dim", lambda h: h["y.bias"].update(shape=[-6]))
edit("weights", "missing_offsets", lambda h: h["y.bias"].pop("data_offsets"))
edit("weights", "unknown_key", lambda h: h["y.bias"].update(strides=[1]))
edit("weights", "extra_tensor", lambda h: h.update({"z.weight": {"dtype": "F32", "shape": [0], "data_offsets": [472, 472]}}))
dup = json.dumps({k: v for k, v in w.items() if k != "__metadata__"}, separators=(",", ":"))
dup = dup[:-1] + ',"y.bias":' + json.dumps(w["y.bias"], separators=(",", ":")) + "}"
save("duplicate", None, wd, raw=dup.encode())
def poke(value):  # element 3 of y.bias (bytes 256..280) set to value
    return lambda d: d[:256 + 12] + struct.pack("<f", value) + d[256 + 16:]
edit("weights", "nan_weight", lambda h: None, poke(math.nan))
edit("weights", "inf_weight", lambda h: None, poke(math.inf))
edit("input", "input_int", lambda h: h["x"].update(dtype="I32"))
edit("input", "input_extra", lambda h: h.update(y={"dtype": "F32", "shape": [0], "data_offsets": [448, 448]}))
edit("input", "input_no_x", lambda h: h.pop("x"))
edit("data", "data_samples", lambda h: h["target"].update(shape=[5, 4, 6], data_offsets=[96, 576]))
edit("data", "data_shape", lambda h: h["x"].update(shape=[6, 8, 4]))
h, d = load("data")
save("data_past_end", h, d[:-100])
PY

W="$gold/weights.safetensors" I="$gold/input.safetensors"
expect "weights: under 8 bytes" "short.safetensors: file is 3 bytes" run --weights "$tmp/short.safetensors" --input "$I"
expect "weights: header length past the end" "header_past_end.safetensors: header length 1048576 runs past the end" run --weights "$tmp/header_past_end.safetensors" --input "$I"
expect "weights: header length over the limit" "header_huge.safetensors: header length .* over the limit" run --weights "$tmp/header_huge.safetensors" --input "$I"
expect "weights: invalid JSON" "bad_json.safetensors: invalid JSON in header" run --weights "$tmp/bad_json.safetensors" --input "$I"
expect "weights: header not an object" "not_object.safetensors: header is not a JSON object" run --weights "$tmp/not_object.safetensors" --input "$I"
expect "weights: offsets past the end" "offsets_past_end.safetensors: tensor 'y.weight': data_offsets \[280, 4720\] run past the end" run --weights "$tmp/offsets_past_end.safetensors" --input "$I"
expect "weights: offset over 2^64" "offsets_overflow.safetensors: tensor 'y.weight': data_offsets value 18446744073709551616 is too large" run --weights "$tmp/offsets_overflow.safetensors" --input "$I"
expect "weights: offsets near 2^64" "offsets_wrap.safetensors: tensor 'y.weight': data_offsets .* run past the end" run --weights "$tmp/offsets_wrap.safetensors" --input "$I"
expect "weights: offsets reversed" "offsets_reversed.safetensors: tensor 'y.bias': data_offsets \[280, 256\] end before they begin" run --weights "$tmp/offsets_reversed.safetensors" --input "$I"
expect "weights: overlapping tensors" "offsets_overlap.safetensors: tensors 'p.weight' and 'y.bias' overlap" run --weights "$tmp/offsets_overlap.safetensors" --input "$I"
expect "weights: offsets against dtype x shape" "offsets_size.safetensors: tensor 'y.bias': data_offsets \[256, 276\] hold 20 bytes but F32 \[6\] needs 24" run --weights "$tmp/offsets_size.safetensors" --input "$I"
expect "weights: unknown dtype" "unknown_dtype.safetensors: tensor 'y.bias': unknown dtype 'F8'" run --weights "$tmp/unknown_dtype.safetensors" --input "$I"
expect "weights: integer dtype" "int_weight.safetensors: tensor 'y.bias' is I32, not a floating-point dtype" run --weights "$tmp/int_weight.safetensors" --input "$I"
expect "weights: wrong shape" "wrong_shape.safetensors: tensor 'y.weight' is F32 \[8,6\] but the model has F32 \[6,8\]" run --weights "$tmp/wrong_shape.safetensors" --input "$I"
expect "weights: negative dimension" "negative_dim.safetensors: tensor 'y.bias': shape must be an array of non-negative integers" run --weights "$tmp/negative_dim.safetensors" --input "$I"
expect "weights: missing data_offsets" "missing_offsets.safetensors: tensor 'y.bias': missing key 'data_offsets'" run --weights "$tmp/missing_offsets.safetensors" --input "$I"
expect "weights: unknown key" "unknown_key.safetensors: tensor 'y.bias': unexpected key 'strides'" run --weights "$tmp/unknown_key.safetensors" --input "$I"
expect "weights: unknown tensor" "extra_tensor.safetensors: unexpected tensor 'z.weight'" run --weights "$tmp/extra_tensor.safetensors" --input "$I"
expect "weights: duplicate tensor" "duplicate.safetensors: duplicate tensor 'y.bias'" run --weights "$tmp/duplicate.safetensors" --input "$I"
expect "weights: NaN" "nan_weight.safetensors: tensor 'y.bias': element 3 is nan" run --weights "$tmp/nan_weight.safetensors" --input "$I"
expect "weights: infinity" "inf_weight.safetensors: tensor 'y.bias': element 3 is inf" run --weights "$tmp/inf_weight.safetensors" --input "$I"
expect "weights: a folder" "cannot read '$tmp'" run --weights "$tmp" --input "$I"
expect "input: integer dtype for f32" "input_int.safetensors: tensor 'x' is I32, not a floating-point dtype" run --weights "$W" --input "$tmp/input_int.safetensors"
expect "input: unknown tensor" "input_extra.safetensors: tensor 'y' is not an input of the model" run --weights "$W" --input "$tmp/input_extra.safetensors"
expect "input: missing tensor" "input_no_x.safetensors: missing tensor 'x'" run --weights "$W" --input "$tmp/input_no_x.safetensors"
expect "input: NaN weights via --init" "nan_weight.safetensors: tensor 'y.bias': element 3 is nan" "$MODELC" train "$spec" --data "$gold/data.safetensors" --init "$tmp/nan_weight.safetensors" --steps 1 --out "$tmp/out.dir"
expect "data: sample counts differ" "data_samples.safetensors: tensor 'x' has 6 samples but 'target' has 5\|data_samples.safetensors: tensor 'target' has 5 samples" "$MODELC" train "$spec" --data "$tmp/data_samples.safetensors" --steps 1 --out "$tmp/out.dir"
expect "data: wrong sample shape" "data_shape.safetensors: tensor 'x' is f32 \[6,8,4\]" "$MODELC" train "$spec" --data "$tmp/data_shape.safetensors" --steps 1 --out "$tmp/out.dir"
expect "data: truncated data" "data_past_end.safetensors: tensor '[a-z]*': data_offsets .* run past the end" "$MODELC" train "$spec" --data "$tmp/data_past_end.safetensors" --steps 1 --out "$tmp/out.dir"
expect "val: header past the end" "header_past_end.safetensors" "$MODELC" train "$spec" --data "$gold/data.safetensors" --val "$tmp/header_past_end.safetensors" --steps 1 --out "$tmp/out.dir"

# ---- token files, for a model of tokens and targets ----
cat >"$tmp/tokens.yaml" <<'YAML'
model: tokens
dims:
  B: 2
  T: 4
  V: 16
  D: 8
inputs:
  tokens:  i32[B, T]
  targets: i32[B, T]
graph:
  - emb:    embedding(tokens, V, D)
  - logits: linear(emb, V)
  - loss:   cross_entropy(logits, targets)
outputs: [logits]
train:
  loss: loss
  optimizer: sgd(lr=0.1)
YAML
python3 - "$tmp" <<'PY'
import struct, sys
out = sys.argv[1]
def put(name, data): open(f"{out}/{name}", "wb").write(data)
header = lambda magic, version, count: struct.pack("<256i", magic, version, count, *([0] * 253))
put("odd.bin", struct.pack("<20H", *([1] * 20)) + b"x")
put("count.bin", header(20240520, 1, 50) + struct.pack("<20H", *([1] * 20)))
put("version.bin", header(20240520, 2, 20) + struct.pack("<20I", *([1] * 20)))
put("few.bin", struct.pack("<5H", 1, 2, 3, 4, 5))
put("empty.bin", b"")
put("llmc_short.bin", header(20240520, 1, 20)[:100])
put("vocab.bin", struct.pack("<20H", *([300] * 20)))
PY
train_tokens() { "$MODELC" train "$tmp/tokens.yaml" --data "$1" --steps 1 --out "$tmp/out.dir"; }
expect "tokens: odd size" "odd.bin: not an llm.c token file, and its size (41 bytes) is odd" train_tokens "$tmp/odd.bin"
expect "tokens: count against size" "count.bin: header says 50 tokens but the file holds 40 bytes" train_tokens "$tmp/count.bin"
expect "tokens: version" "version.bin: llm.c token file version 2" train_tokens "$tmp/version.bin"
expect "tokens: fewer than a batch" "few.bin: 5 tokens, but a batch of \[2,4\] needs 9" train_tokens "$tmp/few.bin"
expect "tokens: empty" "empty.bin: 0 tokens" train_tokens "$tmp/empty.bin"
expect "tokens: header cut short" "llmc_short.bin: llm.c token file is 100 bytes, shorter than its 1024-byte header" train_tokens "$tmp/llmc_short.bin"
# Ids are checked as each batch is used, so this one stops in training
# (after --out DIR was made, which is why it writes elsewhere): exit 1 all the same.
expect "tokens: id past the vocabulary" "step 1: .*vocab.bin: an index of 'tokens' is outside the embedding table" "$MODELC" train "$tmp/tokens.yaml" --data "$tmp/vocab.bin" --steps 1 --out "$tmp/vocab.dir"

# ---- checkpoints: --resume from a damaged or mismatched one ----
if "$MODELC" train "$spec" --data "$gold/data.safetensors" --steps 2 --out "$tmp/ckpt" --quiet 2>"$tmp/stderr" &&
  "$MODELC" train "$spec" --data "$gold/data.safetensors" --steps 3 --out "$tmp/ckpt3" --quiet 2>"$tmp/stderr"; then
  cp -r "$tmp/ckpt" "$tmp/garbled"
  printf 'garbage' >"$tmp/garbled/state.safetensors"
  expect "resume: state garbled" "garbled/state.safetensors: file is 7 bytes" "$MODELC" train "$spec" --data "$gold/data.safetensors" --resume "$tmp/garbled" --steps 4 --out "$tmp/out.dir"
  cp -r "$tmp/ckpt" "$tmp/mixed"
  cp "$tmp/ckpt3/model.safetensors" "$tmp/mixed/model.safetensors"
  expect "resume: model from another checkpoint" "mixed/model.safetensors does not belong to .*mixed/state.safetensors" "$MODELC" train "$spec" --data "$gold/data.safetensors" --resume "$tmp/mixed" --steps 4 --out "$tmp/out.dir"
else
  failed=$((failed + 1))
  echo "FAIL checkpoints for the resume cases"
  sed 's/^/  | /' "$tmp/stderr" | head -10
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
