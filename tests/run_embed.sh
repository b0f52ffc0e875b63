#!/usr/bin/env bash
# run_embed.sh: examples/embed, a separate CMake project, pulls two
# generated models in with add_subdirectory, links them into one program
# and trains one through the API.
set -u
# shellcheck source=tests/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
set -e
"$MODELC" build "$SRC/examples/embed/xor.yaml" -t c -o "$tmp/out/xor"
"$MODELC" build "$SRC/examples/embed/bigram.yaml" -t c -o "$tmp/out/bigram"
cmake -S "$SRC/examples/embed" -B "$tmp/build" -DMODELC_OUT="$tmp/out" >/dev/null
cmake --build "$tmp/build" -j2 >/dev/null
"$tmp/build/embed_demo" "$tmp/xor.safetensors" | tee "$tmp/log"
grep -q '^ok$' "$tmp/log"
echo "1 passed, 0 failed"
