#!/usr/bin/env python3
"""specgen.py: random model specs through modelc, never a crash.

Each spec is drawn from the grammar of docs/spec-language.md and the op
table: dims, inputs, a graph of ops whose operands are earlier names of a
fitting rank and dtype, outputs, and often a train: section. A share of
the specs is then mutated (a token replaced, dropped or duplicated, a
dim made zero or negative, an unknown op or keyword, a line cut) so that
the rejection paths are exercised as well.

Every spec goes through `modelc check`. It must either be accepted
(exit 0) or rejected with a diagnostic at file:line:col (exit 1). An
accepted spec must then build (`modelc build -t c`), its code must
compile with AddressSanitizer and UBSan, and the compiled driver must
`run` one batch (random weights and inputs, --grads when the spec
trains) and `train` two steps, all with exit 0 or 1 and no sanitizer
report. Anything else (exit code above 1, a signal, a sanitizer report,
a rejection without a location, a timeout) is a failure: the spec is
kept in the output folder with a note of what happened.

    python3 tests/tools/specgen.py --modelc build/modelc --count 200 --seed 1 --out /tmp/specgen
    python3 tests/tools/specgen.py ... --seconds 90     # as many as fit

Only the Python standard library is used.
"""
import argparse
import hashlib
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import time

UNARY = ["relu", "gelu", "gelu_tanh", "silu", "sigmoid", "tanh", "exp", "abs"]
POSITIVE_UNARY = ["log", "sqrt", "rsqrt"]  # applied to sigmoid(x) to stay finite
NORMS = ["layernorm", "rmsnorm"]
REDUCE = ["sum", "mean", "max"]
ACTS = ["gelu", "gelu_tanh", "relu", "silu", "sigmoid", "tanh"]
RESERVED = ["main", "malloc", "free", "exp", "model", "loss"]
LOCATED = re.compile(r"^[^:\n]+:\d+:\d+: error: ", re.M)
SANITIZER = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: UndefinedBehaviorSanitizer")
MODEL = "rs"  # one name for accepted specs: the runtime compiles once


class Graph:
    """A spec under construction: dims and values with symbolic shapes."""

    def __init__(self, rng):
        self.rng = rng
        self.dims = {}  # name -> value, in order
        self.inputs = []  # (name, dtype, [dim names])
        self.values = {}  # name -> (dtype, [dim names or ints])
        self.stmts = []  # (name, expression)
        self.blocks = []  # text
        self.counter = 0

    def dim(self, name, value):
        self.dims[name] = value
        return name

    def size(self, d):
        return d if isinstance(d, int) else self.dims[d]

    def fresh(self, base):
        self.counter += 1
        return "%s%d" % (base, self.counter)

    def pick(self, dtype="f32", rank=None, min_rank=1):
        names = [n for n, (t, s) in self.values.items()
                 if t == dtype and (rank is None or len(s) == rank) and len(s) >= min_rank]
        return self.rng.choice(names) if names else None

    def add(self, name, expr, dtype, shape):
        # a name reused keeps SSA semantics; reuse sometimes, as specs do
        self.stmts.append((name, expr))
        self.values[name] = (dtype, list(shape))
        return name


def shape_text(shape):
    return "[" + ", ".join(str(d) for d in shape) + "]"


def gen_op(g):
    """One statement: an op on earlier values whose ranks and dtypes fit."""
    rng = g.rng
    choice = rng.randrange(22)
    x = g.pick()
    if x is None:
        return
    t, s = g.values[x]
    name = g.fresh(rng.choice(["h", "y", "z", "a"])) if rng.random() < 0.8 else x
    last = s[-1]
    if choice < 3:
        op = rng.choice(UNARY)
        g.add(name, "%s(%s)" % (op, x), t, s)
    elif choice == 3:
        g.add(name, "%s(sigmoid(%s) + 0.5)" % (rng.choice(POSITIVE_UNARY), x), t, s)
    elif choice == 4:
        g.add(name, "%s(%s)" % (rng.choice(NORMS), x), t, s)
    elif choice == 5:
        axis = rng.choice([-1, len(s) - 1])
        g.add(name, "%s(%s, axis=%d)" % (rng.choice(["softmax", "log_softmax"]), x, axis), t, s)
    elif choice in (6, 7):
        out = rng.choice(list(g.dims)) if rng.random() < 0.7 else rng.randint(1, 9)
        extra = rng.choice(["", ", bias=false", ", rank=2"])
        g.add(name, "linear(%s, %s%s)" % (x, out, extra), t, s[:-1] + [out])
    elif choice == 8:
        hidden = rng.randint(1, 12)
        op = rng.choice(["mlp(%s, %d, act=%s)" % (x, hidden, rng.choice(ACTS)),
                         "swiglu(%s, %d)" % (x, hidden), "geglu(%s, %d)" % (x, hidden)])
        g.add(name, op, t, s)
    elif choice in (9, 10):
        y = g.pick(rank=len(s))
        if y is None or [g.size(d) for d in g.values[y][1]] != [g.size(d) for d in s]:
            y = x
        op = rng.choice(["+", "-", "*"])
        g.add(name, "%s %s %s" % (x, op, y), t, s)
    elif choice == 11:
        g.add(name, "%s * %s + %s" % (x, rng.choice(["2", "0.5", "-1", "1e-3"]), rng.choice(["1", "0.25"])), t, s)
    elif choice == 12 and len(s) >= 2:
        axis = rng.randrange(len(s))
        keep = rng.random() < 0.5
        shape = list(s)
        if keep:
            shape[axis] = 1
        else:
            del shape[axis]
        if not shape:
            return
        g.add(name, "%s(%s, %d%s)" % (rng.choice(REDUCE), x, axis, ", keepdim=true" if keep else ""), t, shape)
    elif choice == 13 and len(s) >= 2:
        a, b = rng.sample(range(len(s)), 2)
        shape = list(s)
        shape[a], shape[b] = shape[b], shape[a]
        g.add(name, "transpose(%s, %d, %d)" % (x, a, b), t, shape)
    elif choice == 14 and len(s) >= 2:
        total = 1
        for d in s[1:]:
            total *= g.size(d)
        g.add(name, "reshape(%s, [%s, -1])" % (x, s[0]), t, [s[0], total])
    elif choice == 15 and len(s) == 3:
        heads = [h for h in range(1, 5) if g.size(last) % h == 0]
        h = rng.choice(heads)
        opts = rng.choice(["", ", causal=true", ", rope=true" if (g.size(last) // h) % 2 == 0 else "",
                           ", window=2, causal=true", ", gate=sigmoid", ", bias=false"])
        g.add(name, "attention(%s, heads=%d%s)" % (x, h, opts), t, s)
    elif choice == 16 and len(s) >= 2:
        axis = len(s) - 1
        shape = list(s)
        shape[axis] = 2 * g.size(last)
        g.add(name, "concat(%s, %s, axis=%d)" % (x, x, axis), t, shape)
    elif choice == 17 and len(s) >= 2 and g.size(last) >= 2:
        shape = list(s)
        shape[-1] = g.size(last) - 1
        g.add(name, "slice(%s, %d, 1, %d)" % (x, len(s) - 1, g.size(last)), t, shape)
    elif choice == 18 and len(s) == 4:
        out = rng.randint(1, 6)
        k = rng.choice([1, 3])
        g.add(name, "conv2d(%s, %d, %d, padding=%d)" % (x, out, k, k // 2), t, [s[0], out, s[2], s[3]])
    elif choice == 19 and len(s) == 4:
        op = rng.choice(["batchnorm(%s)", "groupnorm(%s, 1)", "upsample(%s)", "maxpool2d(%s, 1)",
                         "avgpool2d(%s, 1)", "global_avgpool(%s)"]) % x
        shape = list(s)
        if op.startswith("upsample"):
            shape = [s[0], s[1], 2 * g.size(s[2]), 2 * g.size(s[3])]
        if op.startswith("global"):
            shape = [s[0], s[1]]
        g.add(name, op, t, shape)
    elif choice == 20:
        g.add(name, "dropout(%s, %s)" % (x, rng.choice(["0.1", "0.5", "0"])), t, s)
    else:
        ids = g.pick("i32")
        if ids is not None:
            g.add(name, "embedding(%s, V, %d)" % (ids, rng.randint(1, 8)), "f32",
                  g.values[ids][1] + [0])  # the last dim fixed below
            g.values[name][1][-1] = int(g.stmts[-1][1].split(",")[-1].strip(" )"))


def gen_spec(rng):
    """A well-formed spec (most of the time accepted), as text."""
    g = Graph(rng)
    b = g.dim("B", rng.randint(1, 3))
    t = g.dim("T", rng.randint(1, 5))
    d = g.dim("D", rng.choice([2, 4, 6, 8]))
    g.dim("V", rng.randint(2, 9))
    if rng.random() < 0.3:
        g.dim("F", "2*D")
        g.dims["F"] = 2 * g.dims["D"]
    kind = rng.randrange(4)
    if kind == 0:
        g.inputs.append(("x", "f32", [b, t, d]))
    elif kind == 1:
        g.inputs.append(("x", "f32", [b, d]))
    elif kind == 2:
        g.inputs.append(("img", "f32", [b, rng.randint(1, 3), rng.randint(1, 4), rng.randint(1, 4)]))
    else:
        g.inputs.append(("tokens", "i32", [b, t]))
        g.inputs.append(("targets", "i32", [b, t]))
    for name, dtype, shape in g.inputs:
        g.values[name] = (dtype, list(shape))
    if kind == 3:
        g.add("emb", "embedding(tokens, V, D)", "f32", [b, t, d])
    if rng.random() < 0.2 and kind != 2:
        src = g.pick()
        g.blocks.append("  block:\n    args: [u]\n    body:\n      - v: layernorm(u)\n"
                        "      - u: u + v\n    returns: u\n")
        g.add(g.fresh("r"), "repeat(block, %d, %s)" % (rng.randint(1, 2), src), "f32", g.values[src][1])
    for _ in range(rng.randint(1, 6)):
        gen_op(g)
    if not g.stmts:
        src = g.pick()
        g.add("y", "relu(%s)" % src, "f32", g.values[src][1])
    out = g.stmts[-1][0]
    dtype, shape = g.values[out]
    trains = rng.random() < 0.6
    lines = ["model: %s" % MODEL, "dims:"]
    lines += ["  %s: %s" % (k, "2*D" if k == "F" else v) for k, v in g.dims.items()]
    lines.append("inputs:")
    lines += ["  %s: %s%s" % (n, t_, shape_text(s)) for n, t_, s in g.inputs]
    if g.blocks:
        lines.append("blocks:")
        lines += [blk.rstrip("\n") for blk in g.blocks]
    lines.append("graph:")
    lines += ["  - %s: %s" % (n, e) for n, e in g.stmts]
    if trains:
        if kind == 3 and g.size(shape[-1]) == g.dims["V"] and len(shape) == 3 and rng.random() < 0.8:
            lines.append("  - loss: cross_entropy(%s, targets)" % out)
        else:
            lines.append("  - loss: mean(%s, [%s])" % (out, ", ".join(str(i) for i in range(len(shape)))))
    lines.append("outputs: [%s]" % out)
    if trains:
        lines.append("train:")
        lines.append("  loss: loss")
        lines.append("  optimizer: " + rng.choice(["adamw(lr=1e-3)", "sgd(lr=0.1, momentum=0.9)",
                                                  "adamw(lr=1e-2, betas=[0.9, 0.95], weight_decay=0.1)"]))
        if rng.random() < 0.5:
            lines.append("  schedule: " + rng.choice(["cosine(warmup=1, steps=4, min_lr=1e-5)",
                                                     "linear(warmup=0, steps=3)", "constant(warmup=2)"]))
        if rng.random() < 0.3:
            lines.append("  grad_clip: 1.0")
        if rng.random() < 0.3:
            lines.append("  accumulate: 2")
        if rng.random() < 0.2:
            lines.append("  precision: bf16")
        if rng.random() < 0.2 and g.blocks:
            lines.append("  recompute: blocks")
    return "\n".join(lines) + "\n"


MUTATIONS = ["token", "drop_line", "dup_line", "dim", "op", "keyword", "cut", "indent", "name", "bytes"]


def mutate(rng, text):
    """One defect, so that the spec is (usually) rejected."""
    lines = text.split("\n")
    kind = rng.choice(MUTATIONS)
    i = rng.randrange(len(lines))
    if kind == "token":
        words = re.split(r"(\W)", lines[i])
        spots = [k for k, w in enumerate(words) if w.strip()]
        if spots:
            words[rng.choice(spots)] = rng.choice(["B", "-1", "0", "x", "(", ")", "[", ",", "=", "@",
                                                   "1e999", "99999999999999999999", "'s'", "true"])
        lines[i] = "".join(words)
    elif kind == "drop_line":
        del lines[i]
    elif kind == "dup_line":
        lines.insert(i, lines[i])
    elif kind == "dim":
        lines = [re.sub(r"^(  [A-Z]+): .*", r"\1: %s" % rng.choice(["0", "-3", "D/0", "B*", "1e3", "q"]), ln)
                 if ln.startswith("  " + rng.choice("BTDV") + ":") else ln for ln in lines]
    elif kind == "op":
        lines[i] = re.sub(r"[a-z_]+\(", rng.choice(["atention(", "linear(", "relu(", "repeat(", "(("]), lines[i], 1)
    elif kind == "keyword":
        lines[i] = re.sub(r"\)", rng.choice([", frobnicate=1)", ", axis=9)", ", heads=0)", ", bias=2)", ", eps=-1)"]),
                          lines[i], 1)
    elif kind == "cut":
        lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]
    elif kind == "indent":
        lines[i] = " " + lines[i]
    elif kind == "name":
        return re.sub(r"^model: .*", "model: " + rng.choice(RESERVED + ["9x", "a-b", "_", "x" * 80]), text, 1)
    else:
        pos = rng.randrange(len(text) + 1)
        return text[:pos] + rng.choice(["\t", "\x00", "\xff", "{", "&a", "*a", "!!int", "%", "\\"]) + text[pos:]
    return "\n".join(lines)


# ---- files for the compiled driver ----

def save_safetensors(path, tensors):
    """tensors: name -> (dtype 'F32'|'I32'|'I64', shape, values)."""
    header, data = {}, b""
    for name, (dtype, shape, values) in tensors.items():
        fmt = "<%d%s" % (len(values), {"F32": "f", "I32": "i", "I64": "q"}[dtype])
        blob = struct.pack(fmt, *values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def spec_facts(text):
    """Dims, inputs (name, dtype, shape) of an accepted spec, from its text."""
    dims, inputs, section = {}, [], None
    for line in text.split("\n"):
        if re.match(r"^\w", line):
            section = line.split(":")[0].strip()
            continue
        m = re.match(r"^ +(\w+): *(.*)$", line)  # any indent: YAML takes a consistent one
        if not m:
            continue
        if section == "dims":
            dims[m.group(1)] = eval_dim(m.group(2), dims)
        elif section == "inputs":
            t = re.match(r"(\w+)\[(.*)\]", m.group(2))
            shape = [eval_dim(p.strip(), dims) for p in t.group(2).split(",")] if t.group(2).strip() else []
            inputs.append((m.group(1), t.group(1), shape))
    return dims, inputs


def eval_dim(text, dims):
    return int(eval(re.sub(r"[A-Za-z_]\w*", lambda m: str(dims[m.group(0)]), text).replace("/", "//")))


def count(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def random_values(rng, dtype, n, vocab):
    if dtype == "i32":
        return [rng.randrange(vocab) for _ in range(n)]
    return [rng.uniform(-1, 1) for _ in range(n)]


def params_of(out):
    """`modelc check --params` lines: name, shape, dtype[, buffer]."""
    params = []
    for line in out.split("\n"):
        parts = line.split()
        if len(parts) >= 3 and parts[1].startswith("["):
            shape = [int(x) for x in parts[1].strip("[]").split(",") if x]
            params.append((parts[0], shape, parts[2], len(parts) > 3))
    return params


# ---- running ----

class Runner:
    def __init__(self, args):
        self.args = args
        self.modelc = os.path.abspath(args.modelc)
        self.cc = args.cc
        self.out = os.path.abspath(args.out)
        self.work = os.path.join(self.out, "work")
        os.makedirs(self.work, exist_ok=True)
        self.failures = []
        self.stats = {"specs": 0, "accepted": 0, "rejected": 0, "compiled": 0, "ran": 0, "trained": 0,
                      "generator_errors": 0}
        self.runtime_objects = {}

    def sh(self, argv, timeout=60, cwd=None, env=None):
        try:
            p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                               cwd=cwd, env=env)
            return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            return "timeout", "", "timed out after %d s" % timeout

    def fail(self, index, text, what, detail):
        path = os.path.join(self.out, "fail-%05d.yaml" % index)
        with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
        with open(path + ".txt", "w") as f:
            f.write("%s\n%s\n" % (what, detail))
        self.failures.append((path, what))
        print("FAIL spec %d: %s (%s)" % (index, what, path))
        for line in detail.strip().split("\n")[:8]:
            print("  | " + line)

    def bad_exit(self, rc, err):
        return rc == "timeout" or rc < 0 or rc > 1 or SANITIZER.search(err)

    def runtime_object(self, build):
        """modelc_rt.c compiled once per content (the model name is fixed)."""
        key = hashlib.sha1(open(os.path.join(build, "modelc_rt.c"), "rb").read() +
                           open(os.path.join(build, "modelc_rt.h"), "rb").read()).hexdigest()
        if key not in self.runtime_objects:
            obj = os.path.join(self.out, "modelc_rt-%s.o" % key[:12])
            if not os.path.exists(obj):
                rc, _, err = self.sh(self.compile_argv(build) + ["-c", "modelc_rt.c", "-o", obj], timeout=300, cwd=build)
                if rc != 0:
                    raise SystemExit("specgen: the runtime does not compile:\n" + err)
            self.runtime_objects[key] = obj
        return self.runtime_objects[key]

    def compile_argv(self, build):
        return [self.cc, "-std=c11", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                "-fno-omit-frame-pointer", "-DMODELC_NO_BLAS", "-D_POSIX_C_SOURCE=200809L", "-w", "-I", build]

    def one(self, index, text, rng):
        self.stats["specs"] += 1
        spec = os.path.join(self.work, "spec.yaml")
        with open(spec, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
        rc, out, err = self.sh([self.modelc, "check", spec], timeout=30)
        if self.bad_exit(rc, err):
            return self.fail(index, text, "modelc check exited %s" % rc, err)
        if rc == 1:
            self.stats["rejected"] += 1
            if not LOCATED.search(err):
                return self.fail(index, text, "rejected without a file:line:col diagnostic", err)
            return
        self.stats["accepted"] += 1
        build = os.path.join(self.work, "build")
        shutil.rmtree(build, ignore_errors=True)
        rc, out, err = self.sh([self.modelc, "build", spec, "-t", "c", "-o", build], timeout=60)
        if rc != 0:
            return self.fail(index, text, "modelc build exited %s after check accepted it" % rc, err)
        named = re.search(r"^model:\s*(\w+)", text, re.M)
        model = named.group(1) if named else None
        if model != MODEL:
            return  # only specs named MODEL share the compiled runtime
        exe = os.path.join(build, model + "_main")
        argv = self.compile_argv(build) + [model + ".c", model + "_main.c", self.runtime_object(build),
                                           "-o", exe, "-lm"]
        rc, out, err = self.sh(argv, timeout=300, cwd=build)
        if rc != 0:
            return self.fail(index, text, "the generated code does not compile", err)
        self.stats["compiled"] += 1
        self.exercise(index, text, rng, spec, build, exe)

    def exercise(self, index, text, rng, spec, build, exe):
        try:
            dims, inputs = spec_facts(text)
        except (KeyError, AttributeError, ValueError, SyntaxError, NameError, TypeError, ZeroDivisionError):
            return  # a spelling of the spec this reader does not follow; modelc took it
        if not inputs:
            return
        vocab = dims.get("V", 2)
        rc, out, err = self.sh([self.modelc, "check", "--params", spec], timeout=30)
        weights = {}
        for name, shape, dtype, buffer in params_of(out):
            values = [rng.uniform(-0.5, 0.5) for _ in range(count(shape))]
            if buffer and name.endswith("running_var"):
                values = [1.0] * count(shape)
            if dtype == "i64":
                weights[name] = ("I64", shape, [0] * count(shape))
            else:
                weights[name] = ("F32", shape, values)
        w = os.path.join(build, "weights.safetensors")
        save_safetensors(w, weights)
        batch = os.path.join(build, "input.safetensors")
        save_safetensors(batch, {n: ("F32" if t == "f32" else "I32", s, random_values(rng, t, count(s), vocab))
                                 for n, t, s in inputs})
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", OMP_NUM_THREADS="1")
        trains = re.search(r"^train:", text, re.M) is not None
        run = [exe, "run", "--weights", w, "--input", batch, "--output", os.path.join(build, "out.safetensors")]
        for extra in ([[]] + ([["--grads"]] if trains else [])):
            rc, out, err = self.sh(run + extra, timeout=120, env=env)
            if rc != 0:
                return self.fail(index, text, "run %s exited %s" % (" ".join(extra), rc), err)
        self.stats["ran"] += 1
        if not trains:
            return
        data = os.path.join(build, "data.safetensors")
        samples = 2 * inputs[0][2][0]
        save_safetensors(data, {n: ("F32" if t == "f32" else "I32", [samples] + s[1:],
                                    random_values(rng, t, samples * count(s[1:]), vocab))
                                for n, t, s in inputs})
        rc, out, err = self.sh([exe, "train", "--data", data, "--steps", "2", "--out", os.path.join(build, "run"),
                                "--quiet"], timeout=120, env=env)
        # a loss that is not finite stops training with exit 1: allowed
        if rc != 0 and not (rc == 1 and "the loss is" in err):
            return self.fail(index, text, "train exited %s" % rc, err)
        self.stats["trained"] += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modelc", default="build/modelc")
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"))
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=0, help="stop after this long (0: no limit)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mutate", type=float, default=0.4, help="share of specs given a defect")
    ap.add_argument("--out", default="specgen-out")
    args = ap.parse_args()
    runner = Runner(args)
    rng = random.Random(args.seed)
    start = time.time()
    for i in range(args.count):
        if args.seconds and time.time() - start > args.seconds:
            break
        text = gen_spec(rng)
        if rng.random() < args.mutate:
            text = mutate(rng, text)
        try:
            runner.one(i, text, rng)
        except Exception as e:  # a bug of this script, not of modelc: say so and go on
            runner.stats["generator_errors"] += 1
            print("specgen: spec %d: the generator failed (%s: %s); skipped" % (i, type(e).__name__, e), flush=True)
        if (i + 1) % 100 == 0:
            print("specgen: %d specs, %d accepted, %d failures, %.0f s" % (
                i + 1, runner.stats["accepted"], len(runner.failures), time.time() - start), flush=True)
    s = runner.stats
    print("specgen: %d specs in %.0f s (seed %d): %d accepted (%d compiled with ASan+UBSan, %d ran, %d trained), "
          "%d rejected with a located diagnostic, %d failures, %d generator errors"
          % (s["specs"], time.time() - start, args.seed, s["accepted"], s["compiled"], s["ran"], s["trained"],
             s["rejected"] - sum(1 for _, w in runner.failures if w.startswith("rejected")), len(runner.failures),
             s["generator_errors"]))
    sys.exit(1 if runner.failures else 0)


if __name__ == "__main__":
    main()
