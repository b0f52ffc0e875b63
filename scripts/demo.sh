#!/usr/bin/env bash
# demo.sh: builds modelc (Release, into build/), checks the example specs,
# then trains the character-level GPT of specs/charlm.yaml on the fortunes
# text for about a minute and prints text sampled from it.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build"
jobs="$(nproc 2>/dev/null || echo 2)"
work="$root/out/demo"

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" --target modelc -j "$jobs"
modelc="$build/modelc"

cd "$root"
for spec in specs/*.yaml; do
  "$modelc" check "$spec" | head -1
done
printf '\n== the spec charlm.yaml in numbers\n'
"$modelc" check specs/charlm.yaml

printf '\n== data: the fortunes text as byte tokens\n'
files=()
for f in /usr/share/games/fortunes/*; do
  case "$f" in *.dat | *.u8) ;; *) [ -f "$f" ] && files+=("$f") ;; esac
done
mkdir -p "$work"
"$modelc" data text "${files[@]}" -o "$work/train.bin" --val "$work/val.bin" --val-fraction 0.05

printf '\n== training charlm (300 steps; the generated C is compiled first)\n'
rm -rf "$work/charlm"
"$modelc" train specs/charlm.yaml --data "$work/train.bin" --val "$work/val.bin" \
  --eval-every 100 --out "$work/charlm"

printf '\n== a sample from the trained model\n'
"$modelc" sample specs/charlm.yaml --weights "$work/charlm/model.safetensors" \
  --prompt "Q: What is the meaning of life?
A: " --tokens 300 --temperature 0.8 --seed 1

printf '\ndemo: the model is in %s (metrics.jsonl, model.safetensors)\n' "$work/charlm"
