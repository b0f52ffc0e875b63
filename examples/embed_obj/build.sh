#!/usr/bin/env bash
# build.sh OUT EXE: links examples/embed/main.c with the objects that
# `modelc build -t obj` wrote for xor and bigram (OUT/xor, OUT/bigram):
# the models need no compile step, only the link. The runtime library
# comes from either folder (the same file).
set -eu
out="$1"
exe="$2"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"${CC:-cc}" -std=c11 -O2 -I"$out/xor" -I"$out/bigram" "$here/../embed/main.c" \
  "$out/xor/xor.o" "$out/bigram/bigram.o" "$out/xor/libmodelc_rt.a" \
  -fopenmp -lopenblas -lm -o "$exe"
