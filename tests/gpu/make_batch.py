#!/usr/bin/env python3
"""make_batch.py: a random batch for a spec, as safetensors, from the
`inputs` line of `modelc check SPEC` (read on stdin):

    inputs       tokens i32[4,64], targets i32[4,64]

f32 inputs are normal(0, 1); i32 inputs are in [0, 10), valid as token
ids and as class labels of every spec in specs/. Pure Python (struct,
random), so it runs wherever python3 does.

    modelc check SPEC | python3 make_batch.py OUT.safetensors [SEED]
"""
import json
import random
import re
import struct
import sys


def main():
    out = sys.argv[1]
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    line = next((l for l in sys.stdin if l.strip().startswith("inputs")), None)
    if line is None:
        sys.exit("make_batch: no 'inputs' line in the check output")
    header, blobs, offset = {}, [], 0
    for name, dtype, dims in re.findall(r"(\w+) (f32|i32)\[([0-9,]*)\]", line):
        shape = [int(d) for d in dims.split(",") if d]
        count = 1
        for d in shape:
            count *= d
        if dtype == "f32":
            data = struct.pack("<%df" % count, *(rng.gauss(0.0, 1.0) for _ in range(count)))
        else:
            data = struct.pack("<%di" % count, *(rng.randrange(10) for _ in range(count)))
        header[name] = {"dtype": dtype.upper(), "shape": shape,
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


if __name__ == "__main__":
    main()
