#!/usr/bin/env python3
"""make_goldens.py: PyTorch reference outputs for modelc's parity tests.

For every tests/reference/cases/NAME.yaml this script builds the same model
by hand in PyTorch (BUILDERS below: one function per case, sharing the
layer helpers of class Model), checks that its parameter and buffer names
and shapes are exactly what `modelc check NAME.yaml --params` prints, and
writes tests/reference/golden/NAME/:

  weights.safetensors  every parameter and buffer (seeded random values)
  input.safetensors    one batch: a tensor per spec input
  eval.safetensors     outputs + `loss` in inference mode (`modelc run`)
  train.safetensors    outputs + `loss` in training mode and `grad.NAME`
                       for every trainable parameter (`modelc run --grads`)
  data.safetensors     3 optimizer steps of data (tensor inputs), or
  data.bin             an llm.c token file (specs whose inputs are tokens/targets)
  step3.safetensors    parameters and buffers after 3 optimizer steps
                       (`modelc train --init weights --steps 3`)
  step3_tol.safetensors  (some cases) per-element slack for step3's comparison:
                       how far f32 rounding noise in the gradients can move
                       each parameter through AdamW (see README.md)
  README               versions, per-step lr / grad norm / losses, and how far
                       the f32 goldens are from a float64 rerun

Only the graph lives in Python: dims, inputs, outputs and the train section
are read from the YAML (a small reader for those four sections, no YAML
library). Run by hand, never by CI:

  /usr/bin/python3 tests/reference/make_goldens.py --modelc build/modelc [CASE...]
"""
import argparse
import ast
import contextlib
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
CASES_DIR = os.path.join(HERE, "cases")
GOLDEN_DIR = os.path.join(HERE, "golden")

STEPS = 3                 # optimizer steps in step3.safetensors
RTOL_RUN, RTOL_STEP, ATOL = 1e-4, 1e-5, 1e-6   # what CI uses (tests/run_parity.sh)
TOKEN_MAGIC, TOKEN_VERSION = 20240520, 1


# --------------------------------------------------------------------------
# Reading the parts of a spec the script needs (dims, inputs, outputs, train)

def _strip_comment(line):
    # A YAML comment starts at ' #' (or '#' at the start); these sections hold no quotes.
    i = line.find(" #")
    if line.lstrip().startswith("#"):
        return ""
    return line if i < 0 else line[:i]


def _eval_int(expr, env):
    expr = expr.strip()
    if not re.fullmatch(r"[A-Za-z0-9_+\-*/() ]+", expr):
        raise ValueError(f"bad dim expression {expr!r}")
    # '/' is integer division that must divide exactly
    tree = ast.parse(expr, mode="eval")

    def ev(n):
        if isinstance(n, ast.Expression):
            return ev(n.body)
        if isinstance(n, ast.Constant) and isinstance(n.value, int):
            return n.value
        if isinstance(n, ast.Name):
            return env[n.id]
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub):
            return -ev(n.operand)
        if isinstance(n, ast.BinOp):
            a, b = ev(n.left), ev(n.right)
            if isinstance(n.op, ast.Add):
                return a + b
            if isinstance(n.op, ast.Sub):
                return a - b
            if isinstance(n.op, ast.Mult):
                return a * b
            if isinstance(n.op, ast.Div):
                assert a % b == 0, f"{expr}: {a}/{b} does not divide"
                return a // b
        raise ValueError(f"bad dim expression {expr!r}")
    return ev(tree)


def _split_args(s):
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def _value(s):
    s = s.strip()
    if s in ("true", "false"):
        return s == "true"
    return ast.literal_eval(s)


def _call(s, positional):
    m = re.fullmatch(r"\s*([a-z_]+)\s*\((.*)\)\s*", s)
    assert m, f"cannot read {s!r}"
    name, args = m.group(1), {}
    for i, a in enumerate(_split_args(m.group(2))):
        if "=" in a:
            k, v = a.split("=", 1)
            args[k.strip()] = _value(v)
        else:
            args[positional[name][i]] = _value(a)
    return name, args


OPT_DEFAULTS = {
    "adamw": dict(lr=1e-3, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.01),
    "sgd": dict(momentum=0.0, nesterov=False, weight_decay=0.0),
}
OPT_POSITIONAL = {"adamw": ["lr", "betas", "eps", "weight_decay"],
                  "sgd": ["lr", "momentum", "nesterov", "weight_decay"]}
SCHED_POSITIONAL = {"constant": ["warmup"], "cosine": ["warmup", "steps", "min_lr"],
                    "linear": ["warmup", "steps", "min_lr"]}


def read_spec(path):
    """dims (dict), inputs [(name, dtype, shape)], outputs [names], train (dict or None)."""
    spec = {"dims": {}, "inputs": [], "outputs": None, "train": None}
    section = None
    train = {}
    with open(path) as f:
        lines = f.read().split("\n")
    for raw in lines:
        line = _strip_comment(raw).rstrip()
        if not line.strip():
            continue
        if not line.startswith(" "):
            key, _, rest = line.partition(":")
            section = key.strip()
            rest = rest.strip()
            if section == "outputs":
                spec["outputs"] = [s.strip() for s in rest.strip("[]").split(",") if s.strip()]
            continue
        if section == "dims":
            k, v = line.strip().split(":", 1)
            spec["dims"][k.strip()] = _eval_int(v, spec["dims"])
        elif section == "inputs":
            k, v = line.strip().split(":", 1)
            m = re.fullmatch(r"\s*(f32|i32|i64|u8|bf16|f16)\[(.*)\]\s*", v)
            assert m, f"{path}: cannot read input {raw!r}"
            shape = [_eval_int(e, spec["dims"]) for e in m.group(2).split(",")]
            spec["inputs"].append((k.strip(), m.group(1), shape))
        elif section == "train":
            k, v = line.strip().split(":", 1)
            train[k.strip()] = v.strip()
    if "loss" in train:
        opt_name, opt = _call(train.get("optimizer", "adamw()"), OPT_POSITIONAL)
        opt = {**OPT_DEFAULTS[opt_name], **opt}
        sched_name, sched = _call(train.get("schedule", "constant()"), SCHED_POSITIONAL)
        sched = {"warmup": 0, "min_lr": 0.0, **sched}
        spec["train"] = {
            "loss": train["loss"], "optimizer": opt_name, "opt": opt, "schedule": sched_name,
            "sched": sched, "grad_clip": float(train.get("grad_clip", 0)),
            "accumulate": int(train.get("accumulate", 1)), "precision": train.get("precision", "f32"),
        }
        assert spec["train"]["precision"] == "f32", "only f32 training is covered"
    return spec


def lr_at(sched_name, sched, lr, s):
    """The contract's schedule at optimizer step s (0-based)."""
    w = sched["warmup"]
    if s < w:
        return lr * (s + 1) / w
    if sched_name == "constant":
        return lr
    S, lo = sched["steps"], sched["min_lr"]
    if s >= S:
        return lo
    frac = (s - w) / (S - w)
    if sched_name == "cosine":
        return lo + (lr - lo) * (1 + math.cos(math.pi * frac)) / 2
    if sched_name == "linear":
        return lr + (lo - lr) * frac
    raise ValueError(sched_name)


# --------------------------------------------------------------------------
# The model: parameters by name, and the layer ops of the spec language

class Model:
    """Holds parameters and buffers by their modelc names.

    Declaring (state=None): every parameter is created on first use with a
    seeded random value, in evaluation order; a name used again (a shared
    repeat) returns the same tensor. Otherwise parameters come from `state`.
    """

    def __init__(self, state=None, training=False, seed=0):
        self.declaring = state is None
        self.state = {} if state is None else state
        self.kinds = {}        # name -> "param" | "buffer", in declaration order
        self.training = training
        self.gen = torch.Generator().manual_seed(seed)
        self.prefix = []

    @contextlib.contextmanager
    def scope(self, name):
        self.prefix.append(name)
        try:
            yield
        finally:
            self.prefix.pop()

    def full(self, name):
        return ".".join(self.prefix + [name])

    def _rand(self, shape, init):
        kind = init[0]
        g = self.gen
        if kind == "uniform":
            lo, hi = init[1], init[2]
            return torch.rand(shape, generator=g, dtype=torch.float64) * (hi - lo) + lo
        if kind == "normal":
            return torch.randn(shape, generator=g, dtype=torch.float64) * init[2] + init[1]
        raise ValueError(init)

    def get(self, name, shape, init, buffer=False, dtype=torch.float32):
        """The tensor NAME (relative to the current scope)."""
        full = self.full(name)
        shape = list(shape)
        if full not in self.state:
            assert self.declaring, f"{full}: not in the state"
            if dtype == torch.int64:
                t = torch.full(shape, init, dtype=torch.int64)
            else:
                t = self._rand(shape, init).to(dtype)
            self.state[full] = t
        t = self.state[full]
        assert list(t.shape) == shape, f"{full}: shape {list(t.shape)}, expected {shape}"
        self.kinds.setdefault(full, "buffer" if buffer else "param")
        return t

    # ---- layer ops (names relative to the scope, as modelc names them) ----

    def param(self, name, shape, init=("normal", 0.0, 0.3)):
        return self.get(name + ".weight", shape, init)

    def _linear_params(self, name, n_in, n_out, bias=True, rank=0, tied=None):
        bound = 1.0 / math.sqrt(n_in)
        u = ("uniform", -bound, bound)
        if tied is not None:
            w = self.get(tied + ".weight", [n_out, n_in], None)
            ws = [w]
        elif rank > 0:
            down = self.get(name + ".down.weight", [rank, n_in], u)
            up = self.get(name + ".up.weight", [n_out, rank], ("uniform", -1 / math.sqrt(rank), 1 / math.sqrt(rank)))
            ws = [down, up]
        else:
            ws = [self.get(name + ".weight", [n_out, n_in], u)]
        b = self.get(name + ".bias", [n_out], u) if bias else None
        return ws, b

    @staticmethod
    def _apply_linear(x, ws, b):
        if len(ws) == 2:                        # rank: x @ down.T @ up.T + b
            return F.linear(F.linear(x, ws[0]), ws[1], b)
        return F.linear(x, ws[0], b)

    def linear(self, name, x, out, bias=True, rank=0, tied=None):
        ws, b = self._linear_params(name, x.shape[-1], out, bias, rank, tied)
        return self._apply_linear(x, ws, b)

    def embedding(self, name, ids, num, dim):
        w = self.get(name + ".weight", [num, dim], ("normal", 0.0, 0.3))
        return F.embedding(ids.long(), w)

    def position(self, name, T, D):
        return self.get(name + ".weight", [T, D], ("normal", 0.0, 0.3))

    def _norm_weight(self, name, n):
        return self.get(name, [n], ("normal", 1.0, 0.1))

    def _norm_bias(self, name, n):
        return self.get(name, [n], ("normal", 0.0, 0.1))

    def layernorm(self, name, x, eps=1e-5, bias=True):
        d = x.shape[-1]
        w = self._norm_weight(name + ".weight", d)
        b = self._norm_bias(name + ".bias", d) if bias else None
        return F.layer_norm(x, (d,), w, b, eps)

    def rmsnorm(self, name, x, eps=1e-6):
        w = self._norm_weight(name + ".weight", x.shape[-1])
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    def mlp(self, name, x, hidden, act="gelu"):
        up = self.linear(name + ".up", x, hidden)
        return self.linear(name + ".down", ACTS[act](up), x.shape[-1])

    def _glu(self, name, x, hidden, act):
        d = x.shape[-1]
        gw, _ = self._linear_params(name + ".gate", d, hidden, bias=False)
        uw, _ = self._linear_params(name + ".up", d, hidden, bias=False)
        dw, _ = self._linear_params(name + ".down", hidden, d, bias=False)
        return F.linear(act(F.linear(x, gw[0])) * F.linear(x, uw[0]), dw[0])

    def swiglu(self, name, x, hidden):
        return self._glu(name, x, hidden, F.silu)

    def geglu(self, name, x, hidden):
        return self._glu(name, x, hidden, F.gelu)

    def attention(self, name, x, heads, kv_heads=None, head_dim=None, causal=False, window=0,
                  glob=0, gate=None, rope=False, rope_base=10000.0, bias=True):
        B, T, D = x.shape
        kv = kv_heads or heads
        hd = head_dim or D // heads
        # declaration order as modelc lists them: q, k, v, o, gate
        qp = self._linear_params(name + ".q", D, heads * hd, bias)
        kp = self._linear_params(name + ".k", D, kv * hd, bias)
        vp = self._linear_params(name + ".v", D, kv * hd, bias)
        op = self._linear_params(name + ".o", heads * hd, D, bias)
        gp = self._linear_params(name + ".gate", D, heads * hd, bias) if gate == "sigmoid" else None
        q = self._apply_linear(x, *qp).view(B, T, heads, hd).transpose(1, 2)
        k = self._apply_linear(x, *kp).view(B, T, kv, hd).transpose(1, 2)
        v = self._apply_linear(x, *vp).view(B, T, kv, hd).transpose(1, 2)
        out = attention_core(q, k, v, causal, window, glob, rope, rope_base)
        out = out.transpose(1, 2).reshape(B, T, heads * hd)
        if gp is not None:
            out = out * torch.sigmoid(self._apply_linear(x, *gp))
        return self._apply_linear(out, *op)

    def _conv_params(self, name, c_in, out, kshape, groups, bias):
        fan_in = (c_in // groups) * int(np.prod(kshape))
        bound = 1.0 / math.sqrt(fan_in)
        w = self.get(name + ".weight", [out, c_in // groups] + list(kshape), ("uniform", -bound, bound))
        b = self.get(name + ".bias", [out], ("uniform", -bound, bound)) if bias else None
        return w, b

    def conv1d(self, name, x, out, kernel, stride=1, padding=0, dilation=1, groups=1, bias=True):
        w, b = self._conv_params(name, x.shape[1], out, [kernel], groups, bias)
        return F.conv1d(x, w, b, stride, padding, dilation, groups)

    def conv2d(self, name, x, out, kernel, stride=1, padding=0, dilation=1, groups=1, bias=True):
        k2 = _pair(kernel)
        w, b = self._conv_params(name, x.shape[1], out, k2, groups, bias)
        return F.conv2d(x, w, b, _pair(stride), _pair(padding), _pair(dilation), groups)

    def batchnorm(self, name, x, eps=1e-5, momentum=0.1):
        c = x.shape[1]
        w = self._norm_weight(name + ".weight", c)
        b = self._norm_bias(name + ".bias", c)
        rm = self.get(name + ".running_mean", [c], ("normal", 0.0, 0.1), buffer=True)
        rv = self.get(name + ".running_var", [c], ("uniform", 0.5, 1.5), buffer=True)
        nbt = self.get(name + ".num_batches_tracked", [], 5, buffer=True, dtype=torch.int64)
        training = self.training and not self.declaring
        if training:
            # what nn.BatchNorm does in train mode: the running stats update in place
            nbt.add_(1)
        return F.batch_norm(x, rm, rv, w, b, training, momentum, eps)

    def groupnorm(self, name, x, groups, eps=1e-5):
        c = x.shape[1]
        w = self._norm_weight(name + ".weight", c)
        b = self._norm_bias(name + ".bias", c)
        return F.group_norm(x, groups, w, b, eps)


def _pair(v):
    return list(v) if isinstance(v, (list, tuple)) else [v, v]


ACTS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
}


def attention_mask(T, causal, window, glob):
    """[T, T] bool: i may attend to j (the contract's rule)."""
    i = torch.arange(T).view(T, 1)
    j = torch.arange(T).view(1, T)
    allowed = torch.ones(T, T, dtype=torch.bool)
    if causal:
        allowed &= j <= i
    if window:
        allowed &= ((i - j).abs() < window) | (i < glob) | (j < glob)
    return allowed


def rope_rotate(x, base):
    """Rotate-half RoPE on [..., T, hd]: pairs (i, i + hd/2), angle t * base^(-2i/hd)."""
    T, hd = x.shape[-2], x.shape[-1]
    half = hd // 2
    inv = torch.tensor([base ** (-2.0 * i / hd) for i in range(half)], dtype=torch.float64)
    ang = torch.arange(T, dtype=torch.float64).view(T, 1) * inv.view(1, half)
    cos, sin = torch.cos(ang).to(x.dtype), torch.sin(ang).to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def attention_core(q, k, v, causal, window, glob, rope, rope_base):
    """q [B,H,T,hd], k/v [B,KV,T,hd] -> [B,H,T,hd]."""
    heads, kv, hd, T = q.shape[1], k.shape[1], q.shape[-1], q.shape[2]
    if rope:
        q, k = rope_rotate(q, rope_base), rope_rotate(k, rope_base)
    if kv != heads:  # kv head j serves query heads j*G .. j*G+G-1
        k = k.repeat_interleave(heads // kv, dim=1)
        v = v.repeat_interleave(heads // kv, dim=1)
    s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(hd))
    s = s.masked_fill(~attention_mask(T, causal, window, glob), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def slice_(x, axis, start, end):
    n = x.shape[axis]
    start = start + n if start < 0 else start
    end = end + n if end < 0 else end
    return x.narrow(axis, start, end - start)


def ce(logits, targets, ignore_index=-100):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long(),
                           ignore_index=ignore_index)


mse = F.mse_loss


# --------------------------------------------------------------------------
# Input generators: a rule per input (default: f32 standard normal)

def normal(std=1.0):
    return lambda g, shape, d, prev: torch.randn(shape, generator=g, dtype=torch.float64) * std


def uniform(lo, hi):
    return lambda g, shape, d, prev: torch.rand(shape, generator=g, dtype=torch.float64) * (hi - lo) + lo


def ints(hi, ignore=None, every=None):
    """Integers in [0, d[hi]); with `ignore`, positions k*every+1 hold it (never all)."""
    def gen(g, shape, d, prev):
        t = torch.randint(0, d[hi], shape, generator=g, dtype=torch.int64)
        if ignore is not None:
            flat = t.view(-1)
            flat[1::every] = ignore
        return t
    return gen


def noisy_of(clean_name, std):
    """The input `clean_name` plus Gaussian noise (generated after it)."""
    def gen(g, shape, d, prev):
        return prev[clean_name] + torch.randn(shape, generator=g, dtype=torch.float64) * std
    gen.needs = clean_name
    return gen


# --------------------------------------------------------------------------
# The cases: builder(m, d, x) -> {output names..., "loss"}

BUILDERS = {}
INPUT_RULES = {}


def case(name, **rules):
    def deco(fn):
        assert name not in BUILDERS
        BUILDERS[name] = fn
        INPUT_RULES[name] = rules
        return fn
    return deco


def px(m, d, x, name="x"):
    """h = x + p with p a parameter of x's shape: grad.p.weight is dL/dh."""
    return x[name] + m.param("p", list(x[name].shape))


# ---- linear ----
@case("linear")
def _(m, d, x):
    y = m.linear("y", px(m, d, x), d["E"])
    return {"y": y, "loss": mse(y, x["target"])}


@case("linear_nobias")
def _(m, d, x):
    y = m.linear("y", px(m, d, x), d["E"], bias=False)
    return {"y": y, "loss": mse(y, x["target"])}


@case("linear_rank")
def _(m, d, x):
    y = m.linear("y", px(m, d, x), d["E"], rank=d["R"])
    return {"y": y, "loss": mse(y, x["target"])}


@case("linear_tied", ids=ints("V"), labels=ints("V"))
def _(m, d, x):
    emb = m.embedding("emb", x["ids"], d["V"], d["D"])
    h = torch.tanh(emb)
    logits = m.linear("logits", h, d["V"], tied="emb")
    a = m.linear("a", h, d["D"])
    b = m.linear("b", a, d["D"], bias=False, tied="a")
    return {"logits": logits, "b": b, "loss": ce(logits, x["labels"]) + mse(b, x["target"])}


def _ffn_block(m, x, act):
    ln = m.layernorm("ln", x)
    return x + m.mlp("ffn", ln, 2 * x.shape[-1], act=act)


@case("naming")
def _(m, d, x):
    h = px(m, d, x)
    y = m.linear("y", F.gelu(m.linear("y.linear", h, d["F"])), d["D"])
    z = m.linear("z", m.linear("z.linear_1", m.linear("z.linear", y, d["F"]), d["E"]), d["D"])
    u = m.linear("proj", z, d["D"])
    with m.scope("blk"):
        blk = _ffn_block(m, u, "silu")
    out = m.linear("out", blk, d["E"])
    return {"out": out, "loss": mse(out, x["target"])}


@case("repeat_args")
def _(m, d, x):
    h = px(m, d, x)
    enc = m.linear("enc", x["mem"], d["D"])
    for i in range(d["L"]):
        with m.scope(f"cross.{i}"):
            q = m.linear("q", h, d["D"])
            mix = q @ enc.transpose(1, 2)
            h = h + torch.softmax(mix, -1) @ enc
    for _ in range(3):
        with m.scope("shr"):
            h = _ffn_block(m, h, "tanh")
    with m.scope("outer"):
        for i in range(2):
            with m.scope(f"layers.{i}"):
                h = _ffn_block(m, h, "tanh")
        outer = h * 0.5
    return {"outer": outer, "loss": mse(outer, x["target"])}


# ---- embedding, position ----
@case("embedding", ids=ints("V"))
def _(m, d, x):
    y = m.embedding("y", x["ids"], d["V"], d["D"])
    return {"y": y, "loss": mse(y, x["target"])}


@case("position")
def _(m, d, x):
    y = x["x"] * m.position("pos", d["T"], d["D"])
    return {"y": y, "loss": mse(y, x["target"])}


# ---- norms ----
@case("layernorm")
def _(m, d, x):
    y = m.layernorm("y", px(m, d, x))
    return {"y": y, "loss": mse(y, x["target"])}


@case("layernorm_nobias")
def _(m, d, x):
    y = m.layernorm("y", px(m, d, x), eps=1e-3, bias=False)
    return {"y": y, "loss": mse(y, x["target"])}


@case("rmsnorm")
def _(m, d, x):
    y = m.rmsnorm("y", px(m, d, x))
    return {"y": y, "loss": mse(y, x["target"])}


@case("rmsnorm_eps")
def _(m, d, x):
    y = m.rmsnorm("y", px(m, d, x), eps=0.1)
    return {"y": y, "loss": mse(y, x["target"])}


# ---- mlp, swiglu, geglu ----
def _mlp_case(act):
    def fn(m, d, x):
        y = m.mlp("y", px(m, d, x), d["F"], act=act)
        return {"y": y, "loss": mse(y, x["target"])}
    return fn


for _act in ACTS:
    case(f"mlp_{_act}")(_mlp_case(_act))


@case("swiglu")
def _(m, d, x):
    y = m.swiglu("y", px(m, d, x), d["F"])
    return {"y": y, "loss": mse(y, x["target"])}


@case("geglu")
def _(m, d, x):
    y = m.geglu("y", px(m, d, x), d["F"])
    return {"y": y, "loss": mse(y, x["target"])}


# ---- attention ----
def _attn_case(**kw):
    def fn(m, d, x):
        kw2 = {k: (d[v] if isinstance(v, str) and v in d else v) for k, v in kw.items()}
        y = m.attention("y", px(m, d, x), **kw2)
        return {"y": y, "loss": mse(y, x["target"])}
    return fn


case("attn_plain")(_attn_case(heads="H"))
case("attn_causal")(_attn_case(heads="H", causal=True))
case("attn_window_global")(_attn_case(heads="H", window=2, glob=1))
case("attn_causal_window_global")(_attn_case(heads="H", causal=True, window=3, glob=2))
case("attn_gate")(_attn_case(heads="H", causal=True, gate="sigmoid"))
case("attn_gqa_rope")(_attn_case(heads="H", kv_heads="KV", head_dim=6, causal=True, rope=True,
                                 rope_base=100.0))
case("attn_mqa_rope")(_attn_case(heads="H", kv_heads=1, rope=True))
case("attn_nobias")(_attn_case(heads="H", causal=True, gate="sigmoid", bias=False))


# ---- conv ----
@case("conv1d")
def _(m, d, x):
    y = m.conv1d("y", px(m, d, x), d["O"], 3)
    return {"y": y, "loss": mse(y, x["target"])}


@case("conv1d_sdg")
def _(m, d, x):
    y = m.conv1d("y", px(m, d, x), d["O"], 3, stride=2, padding=2, dilation=2, groups=2)
    return {"y": y, "loss": mse(y, x["target"])}


@case("conv2d")
def _(m, d, x):
    y = m.conv2d("y", px(m, d, x), d["O"], 3, padding=1)
    return {"y": y, "loss": mse(y, x["target"])}


@case("conv2d_sdg")
def _(m, d, x):
    y = m.conv2d("y", px(m, d, x), d["O"], [3, 2], stride=[2, 1], padding=[1, 0], dilation=[1, 2], groups=2)
    return {"y": y, "loss": mse(y, x["target"])}


@case("conv2d_nobias")
def _(m, d, x):
    y = m.conv2d("y", px(m, d, x), d["O"], 2, stride=2, bias=False)
    return {"y": y, "loss": mse(y, x["target"])}


# ---- batchnorm, groupnorm ----
@case("batchnorm2d")
def _(m, d, x):
    y = m.batchnorm("y", px(m, d, x))
    return {"y": y, "loss": mse(y, x["target"])}


@case("batchnorm1d")
def _(m, d, x):
    y = m.batchnorm("y", px(m, d, x), eps=1e-3, momentum=0.2)
    return {"y": y, "loss": mse(y, x["target"])}


@case("batchnorm1d_ncl")
def _(m, d, x):
    y = m.batchnorm("y", px(m, d, x))
    return {"y": y, "loss": mse(y, x["target"])}


@case("groupnorm")
def _(m, d, x):
    y = m.groupnorm("y", px(m, d, x), 3)
    return {"y": y, "loss": mse(y, x["target"])}


@case("groupnorm_ncl")
def _(m, d, x):
    y = m.groupnorm("y", px(m, d, x), 2, eps=1e-3)
    return {"y": y, "loss": mse(y, x["target"])}


# ---- param ----
@case("param")
def _(m, d, x):
    s = m.param("s", [1, 1, d["D"]], ("normal", 1.0, 0.1))
    w = m.param("w", [d["D"], d["E"]], ("uniform", -0.5, 0.5))
    b = m.param("b", [d["E"]], ("normal", 0.0, 0.1))
    y = (x["x"] * s) @ w + b
    return {"y": y, "loss": mse(y, x["target"])}


# ---- elementwise ----
UNARY = {
    "relu": F.relu, "gelu": F.gelu, "gelu_tanh": ACTS["gelu_tanh"], "silu": F.silu,
    "sigmoid": torch.sigmoid, "tanh": torch.tanh, "exp": torch.exp, "abs": torch.abs,
    "log": torch.log, "sqrt": torch.sqrt, "rsqrt": torch.rsqrt,
}


def _unary_case(fn, positive):
    def build(m, d, x):
        if positive:
            h = x["xpos"] + m.param("p", list(x["xpos"].shape), ("normal", 0.0, 0.05))
        else:
            h = px(m, d, x)
        y = fn(h)
        return {"y": y, "loss": mse(y, x["target"])}
    return build


for _op, _fn in UNARY.items():
    _pos = _op in ("log", "sqrt", "rsqrt")
    case(_op, **({"xpos": uniform(0.5, 2.0)} if _pos else {}))(_unary_case(_fn, _pos))


# ---- softmax family ----
def _softmax_case(fn, axis):
    def build(m, d, x):
        y = fn(px(m, d, x), dim=axis)
        return {"y": y, "loss": mse(y, x["target"])}
    return build


for _op, _fn in (("softmax", torch.softmax), ("log_softmax", torch.log_softmax)):
    case(_op)(_softmax_case(_fn, -1))
    case(_op + "_axis")(_softmax_case(_fn, 1))

# ---- reductions ----
REDUCE = {"sum": torch.sum, "mean": torch.mean, "max": torch.amax}


def _reduce_case(fn, keepdim):
    def build(m, d, x):
        h = px(m, d, x)
        if not keepdim:
            y, z = fn(h, 1), fn(h, (1, -1))
            return {"y": y, "z": z, "loss": mse(y, x["t1"]) + mse(z, x["t2"])}
        y, z = fn(h, -1, keepdim=True), fn(h, (0, 2), keepdim=True)
        return {"y": y, "z": z, "loss": mse(y, x["t1"]) + mse(z * x["r"], x["t2"])}
    return build


for _op, _fn in REDUCE.items():
    case(_op)(_reduce_case(_fn, False))
    case(_op + "_keepdim")(_reduce_case(_fn, True))


# ---- shapes ----
@case("reshape")
def _(m, d, x):
    r = px(m, d, x).reshape(d["B"], 2, -1, d["D"])
    y = m.linear("y", r, d["D"])
    return {"y": y, "loss": mse(y, x["target"])}


@case("transpose")
def _(m, d, x):
    h = px(m, d, x)
    y, z = h.transpose(1, 2), h.transpose(-1, 1)
    return {"y": y, "z": z, "loss": mse(m.linear("loss", y, d["W"]), x["t1"]) + mse(z, x["t2"])}


@case("permute")
def _(m, d, x):
    y = px(m, d, x).permute(0, 3, 1, 2)
    z = m.linear("z", y, d["H"])
    return {"y": y, "z": z, "loss": mse(z, x["target"])}


@case("flatten")
def _(m, d, x):
    h = px(m, d, x)
    y, z = torch.flatten(h, 1), torch.flatten(h, 2)
    fc = m.linear("fc", y, 5)
    return {"fc": fc, "z": z, "loss": mse(fc, x["t1"]) + mse(z, x["t2"])}


@case("concat")
def _(m, d, x):
    ha = x["a"] + m.param("pa", list(x["a"].shape))
    hb = x["b"] + m.param("pb", list(x["b"].shape))
    hc = x["c"] * m.param("pc", list(x["c"].shape))
    y = torch.cat([ha, hb, hc], dim=1)
    z = torch.cat([ha, slice_(hb, 1, 1, 3) * 2], dim=-1)
    return {"y": y, "z": z, "loss": mse(y, x["t1"]) + mse(z, x["t2"])}


@case("slice")
def _(m, d, x):
    h = px(m, d, x)
    y, z = slice_(h, 1, 1, 4), slice_(h, -1, -3, -1)
    return {"y": y, "z": z, "loss": mse(y, x["t1"]) + mse(z, x["t2"])}


# ---- spatial ----
def _upsample(x, scale, mode):
    if mode == "bilinear":
        return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    return F.interpolate(x, scale_factor=scale, mode="nearest")


def _upsample_case(scale, mode):
    def build(m, d, x):
        y = _upsample(px(m, d, x), scale, mode)
        return {"y": y, "loss": mse(y, x["target"])}
    return build


for _mode in ("nearest", "bilinear"):
    case(f"upsample_{_mode}")(_upsample_case(2, _mode))
    case(f"upsample_{_mode}3")(_upsample_case(3, _mode))


# ---- convolution over upsample / concat (fuse_conv's conv_concat) ----
@case("conv_cat_up")
def _(m, d, x):
    ha = x["a"] + m.param("pa", list(x["a"].shape))
    hb = x["b"] * m.param("pb", list(x["b"].shape))
    cat = torch.cat([_upsample(ha, 2, "nearest"), hb], dim=1)
    y = m.conv2d("y", cat, d["O"], 3, padding=1)
    return {"y": y, "loss": mse(y, x["target"])}


@case("conv_cat3_sdg")
def _(m, d, x):
    ha = x["a"] + m.param("pa", list(x["a"].shape))
    hc = torch.tanh(x["c"] * m.param("pc", list(x["c"].shape)))
    cat = torch.cat([_upsample(ha, 3, "nearest"), x["b"], _upsample(hc, 3, "nearest")], dim=-3)
    y = m.conv2d("y", cat, d["O"], [3, 2], stride=[2, 1], padding=[1, 0], dilation=[1, 2], bias=False)
    return {"y": y, "loss": mse(y, x["target"])}


@case("conv_up")
def _(m, d, x):
    h = px(m, d, x)
    y = m.conv2d("y", _upsample(h, 2, "nearest"), d["O"], 2, stride=2)
    z = m.conv2d("z", _upsample(y, 3, "nearest"), 2, 1)
    return {"y": y, "z": z, "loss": mse(z, x["target"])}


def _pool_case(fn, *args, **kw):
    def build(m, d, x):
        y = fn(px(m, d, x), *args, **kw)
        return {"y": y, "loss": mse(y, x["target"])}
    return build


case("maxpool2d")(_pool_case(F.max_pool2d, 2))
case("maxpool2d_pad")(_pool_case(F.max_pool2d, 3, stride=2, padding=1))
case("avgpool2d")(_pool_case(F.avg_pool2d, 3, stride=2, padding=1))
case("avgpool2d_rect")(_pool_case(F.avg_pool2d, [2, 3], stride=[1, 2]))


def global_avgpool(x):
    return x.mean(dim=tuple(range(2, x.dim())))


@case("global_avgpool")
def _(m, d, x):
    h = px(m, d, x)
    g = x["s"] + m.param("q", list(x["s"].shape))
    y, z = global_avgpool(h), global_avgpool(g)
    return {"y": y, "z": z, "loss": mse(y, x["t1"]) + mse(z, x["t2"])}


# ---- masks ----
@case("causal_mask_where")
def _(m, d, x):
    h = px(m, d, x)
    k = m.linear("k", h, d["D"])
    s = h @ k.transpose(1, 2)
    mask = torch.tril(torch.ones(d["T"], d["T"], dtype=torch.bool))
    fill = m.param("fill", [d["T"], d["T"]])
    y = torch.softmax(torch.where(mask, s, fill), dim=-1)
    return {"y": y, "loss": mse(y, x["target"])}


# ---- losses ----
@case("cross_entropy", labels=ints("V", ignore=-1, every=3))
def _(m, d, x):
    logits = m.linear("logits", px(m, d, x), d["V"])
    return {"logits": logits, "loss": ce(logits, x["labels"], ignore_index=-1)}


@case("cross_entropy_2d", labels=ints("K", ignore=-100, every=4))
def _(m, d, x):
    logits = m.linear("logits", px(m, d, x), d["K"])
    return {"logits": logits, "loss": ce(logits, x["labels"])}


@case("mse")
def _(m, d, x):
    h = px(m, d, x)
    return {"h": h, "loss": mse(h, x["target"])}


@case("bce_logits", target=uniform(0.0, 1.0))
def _(m, d, x):
    y = px(m, d, x) * 3
    return {"y": y, "loss": F.binary_cross_entropy_with_logits(y, x["target"])}


# ---- matmul, broadcasting ----
@case("matmul")
def _(m, d, x):
    w = m.param("w", [d["K"], d["N"]])
    v = m.param("v", [d["H"], d["K"], d["N"]])
    ha = x["a"] + m.param("pa", list(x["a"].shape))
    y, z = ha @ w, x["c"] @ v
    e2 = slice_(ha, 1, 0, 1).reshape(d["B"], d["T"], d["K"])
    u = e2 @ e2.transpose(1, 2)
    return {"y": y, "z": z, "u": u,
            "loss": mse(y, x["t1"]) + mse(z, x["t2"]) + mse(u, x["t3"])}


@case("broadcast")
def _(m, d, x):
    pa = m.param("pa", [d["T"], d["D"]])
    pb = m.param("pb", [d["D"]])
    pc = m.param("pc", [d["B"], d["T"], 1])
    a, b, c = x["a"], x["b"], x["c"]
    y = (a + pa) * (b - pb) / (torch.exp(c + pc) + 1) - 0.5 * a
    z = -y + 1 - b / 2 + pc * pb
    return {"y": y, "z": z, "loss": mse(y, x["t1"]) + mse(z, x["t2"])}


# ---- the example specs, with tiny dims ----
def _gpt_block(m, x, d, attn_kw, act):
    ln1 = m.layernorm("ln1", x)
    x = x + m.attention("attn", ln1, heads=d["H"], causal=True, **attn_kw)
    ln2 = m.layernorm("ln2", x)
    return x + m.mlp("ffn", ln2, d["F"], act=act)


def _gpt(attn_kw, act):
    def build(m, d, x):
        h = m.embedding("tok", x["tokens"], d["V"], d["D"]) + m.position("pos", d["T"], d["D"])
        for i in range(d["L"]):
            with m.scope(f"layers.{i}"):
                h = _gpt_block(m, h, d, {k: d.get(v, v) if isinstance(v, str) else v
                                          for k, v in attn_kw.items()}, act)
        lnf = m.layernorm("lnf", h)
        logits = m.linear("logits", lnf, d["V"], bias=False, tied="tok")
        return {"logits": logits, "loss": ce(logits, x["targets"])}
    return build


case("model_charlm")(_gpt({}, "gelu_tanh"))
case("model_gpt2")(_gpt({}, "gelu_tanh"))
case("model_gated")(_gpt({"gate": "sigmoid"}, "gelu"))
case("model_sparse")(_gpt({"window": "W", "glob": "G"}, "gelu"))


@case("model_llama")
def _(m, d, x):
    h = m.embedding("tok", x["tokens"], d["V"], d["D"])
    for i in range(d["L"]):
        with m.scope(f"layers.{i}"):
            a = m.rmsnorm("attn_norm", h)
            h = h + m.attention("attn", a, heads=d["H"], kv_heads=d["KV"], causal=True, rope=True, bias=False)
            f = m.rmsnorm("ffn_norm", h)
            h = h + m.swiglu("ffn", f, d["F"])
    norm = m.rmsnorm("norm", h)
    logits = m.linear("logits", norm, d["V"], bias=False)
    return {"logits": logits, "loss": ce(logits, x["targets"])}


@case("model_lowrank")
def _(m, d, x):
    tok = m.embedding("tok", x["tokens"], d["V"], d["E"])
    h = m.linear("proj", tok, d["D"], bias=False) + m.position("pos", d["T"], d["D"])
    for _ in range(d["L"]):
        with m.scope("layers"):  # shared=true: one set of parameters
            ln1 = m.layernorm("ln1", h)
            h = h + m.attention("attn", ln1, heads=d["H"], causal=True)
            ln2 = m.layernorm("ln2", h)
            fc1 = m.linear("fc1", ln2, d["F"], rank=d["R"])
            h = h + m.linear("fc2", F.gelu(fc1), d["D"], rank=d["R"])
    lnf = m.layernorm("lnf", h)
    head = m.linear("head", lnf, d["E"], bias=False)
    logits = m.linear("logits", head, d["V"], bias=False, tied="tok")
    return {"logits": logits, "loss": ce(logits, x["targets"])}


@case("model_fmnist_cnn", images=uniform(0.0, 1.0), labels=ints("K"))
def _(m, d, x):
    a = F.max_pool2d(F.relu(m.batchnorm("bn1", m.conv2d("conv1", x["images"], d["C1"], 3, padding=1))), 2)
    a = F.max_pool2d(F.relu(m.batchnorm("bn2", m.conv2d("conv2", a, d["C2"], 3, padding=1))), 2)
    a = F.relu(m.linear("fc1", torch.flatten(a, 1), d["HID"]))
    a = F.dropout(a, 0.0, m.training)
    logits = m.linear("logits", a, d["K"])
    return {"logits": logits, "loss": ce(logits, x["labels"])}


def _unet_level(m, x, c, g):
    x = F.silu(m.groupnorm("norm1", m.conv2d("conv1", x, c, 3, padding=1), g))
    return F.silu(m.groupnorm("norm2", m.conv2d("conv2", x, c, 3, padding=1), g))


@case("model_unet", clean=uniform(0.0, 1.0), noisy=noisy_of("clean", 0.2))
def _(m, d, x):
    G = d["G"]
    with m.scope("enc1"):
        enc1 = _unet_level(m, x["noisy"], d["C1"], G)
    with m.scope("enc2"):
        enc2 = _unet_level(m, F.max_pool2d(enc1, 2), d["C2"], G)
    with m.scope("mid"):
        mid = _unet_level(m, F.max_pool2d(enc2, 2), d["C3"], G)
    skip2 = torch.cat([_upsample(mid, 2, "nearest"), enc2], dim=1)
    with m.scope("dec2"):
        dec2 = _unet_level(m, skip2, d["C2"], G)
    skip1 = torch.cat([_upsample(dec2, 2, "nearest"), enc1], dim=1)
    with m.scope("dec1"):
        dec1 = _unet_level(m, skip1, d["C1"], G)
    denoised = x["noisy"] - m.conv2d("noise", dec1, 1, 1)
    return {"denoised": denoised, "loss": mse(denoised, x["clean"])}


# --------------------------------------------------------------------------
# safetensors and token files

def write_safetensors(path, tensors, metadata):
    """tensors: {name: torch tensor}. The safetensors package when there is
    one, else the format by hand as the package writes it: u64 LE header
    length, the JSON header (__metadata__, then the tensors in data order:
    by dtype I64, F64, F32, I32, U8, which keeps each aligned, then by name),
    padded with spaces to a multiple of 8 bytes, then the data."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    try:
        from safetensors.torch import save_file  # noqa: F401
    except ImportError:
        save_file = None
    if save_file is not None:
        save_file(tensors, path, metadata=metadata)
        return
    names = {torch.float32: "F32", torch.float64: "F64", torch.int32: "I32", torch.int64: "I64",
             torch.uint8: "U8"}
    rank = {"I64": 0, "F64": 1, "F32": 2, "I32": 3, "U8": 4}
    header, blobs, off = {"__metadata__": dict(sorted(metadata.items()))}, [], 0
    for k in sorted(tensors, key=lambda n: (rank[names[tensors[n].dtype]], n.encode())):
        t = tensors[k]
        raw = t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes()
        header[k] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """For the script's own checks: {name: numpy array}."""
    dt = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64, "U8": np.uint8}
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        out[k] = np.frombuffer(data[8 + n + b:8 + n + e], dtype=dt[v["dtype"]]).reshape(v["shape"])
    return out


def write_tokens(path, tokens):
    header = np.zeros(256, dtype="<i4")
    header[0], header[1], header[2] = TOKEN_MAGIC, TOKEN_VERSION, len(tokens)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(np.asarray(tokens, dtype="<u2").tobytes())


# --------------------------------------------------------------------------
# Running a case

def is_token_spec(spec):
    return sorted(n for n, _, _ in spec["inputs"]) == ["targets", "tokens"]


TORCH_INT = {"i32": torch.int32, "i64": torch.int64, "u8": torch.uint8}


def make_inputs(name, spec, g, samples):
    """A dict of inputs with `samples` in the first dim (f64 / i64 tensors)."""
    d = spec["dims"]
    rules = INPUT_RULES[name]
    out = {}
    # inputs whose rule reads another input come after the others
    order = sorted(spec["inputs"], key=lambda i: hasattr(rules.get(i[0]), "needs"))
    for iname, dtype, shape in order:
        assert shape[0] == d["B"], f"{name}: input {iname} must have the batch first"
        shape = [samples] + shape[1:]
        rule = rules.get(iname)
        if rule is None:
            assert dtype == "f32", f"{name}: integer input {iname} needs a rule"
            rule = normal()
        out[iname] = rule(g, shape, d, out)
    return {i[0]: out[i[0]] for i in spec["inputs"]}


def token_batches(spec, stream, count):
    """llm.c's reading: B*T+1 tokens from the cursor, targets shifted by one, cursor += B*T."""
    B, T = spec["dims"]["B"], spec["dims"]["T"]
    out = []
    for i in range(count):
        seq = torch.as_tensor(stream[i * B * T: i * B * T + B * T + 1], dtype=torch.int64)
        out.append({"tokens": seq[:-1].view(B, T), "targets": seq[1:].view(B, T)})
    return out


def cast_inputs(spec, x, dtype):
    return {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in x.items()}


def storage_dtypes(spec, x):
    """Inputs as written to safetensors: f32, i32, u8 as the spec says."""
    types = {n: t for n, t, _ in spec["inputs"]}
    return {k: (v.to(torch.float32) if types[k] == "f32" else v.to(TORCH_INT[types[k]])) for k, v in x.items()}


def clone_state(state, dtype):
    return {k: (v.detach().clone().to(dtype) if v.is_floating_point() else v.detach().clone())
            for k, v in state.items()}


def forward(name, spec, state, kinds, x, training, grads):
    """Outputs (detached) and, with grads, the gradient of every parameter."""
    if grads:
        for k, v in state.items():
            if kinds[k] == "param":
                v.requires_grad_(True)
                v.grad = None
    m = Model(state, training=training)
    with torch.set_grad_enabled(grads):
        res = BUILDERS[name](m, spec["dims"], x)
        if grads:
            res["loss"].backward()
    out = {k: res[k].detach().clone() for k in spec["outputs"]}
    out["loss"] = res["loss"].detach().clone()
    if grads:
        for k, v in state.items():
            if kinds[k] == "param":
                g = v.grad if v.grad is not None else torch.zeros_like(v)
                out["grad." + k] = g.detach().clone()
                v.grad = None
                v.requires_grad_(False)
    return out


def train(name, spec, state, kinds, batches):
    """STEPS optimizer steps per the spec's train section; returns the final
    state, a log of (lr, grad norm, micro-batch losses) per step, and the
    gradients each step used (after clipping)."""
    tr = spec["train"]
    k = tr["accumulate"]
    params = [(n, v) for n, v in state.items() if kinds[n] == "param"]
    for _, v in params:
        v.requires_grad_(True)
    decay = [v for _, v in params if v.dim() >= 2]
    other = [v for _, v in params if v.dim() < 2]
    o = tr["opt"]
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": o["weight_decay"]})
    if other:
        groups.append({"params": other, "weight_decay": 0.0})
    if tr["optimizer"] == "adamw":
        opt = torch.optim.AdamW(groups, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"])
    else:
        opt = torch.optim.SGD(groups, lr=o["lr"], momentum=o["momentum"], nesterov=o["nesterov"])
    log, trace = [], []
    for s in range(STEPS):
        lr = lr_at(tr["schedule"], tr["sched"], o["lr"], s)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        losses = []
        for mb in range(k):
            m = Model(state, training=True)
            loss = BUILDERS[name](m, spec["dims"], batches[s * k + mb])["loss"]
            (loss / k).backward()
            losses.append(loss.item())
        for _, v in params:
            if v.grad is None:  # modelc's gradients are dense: an unused parameter has zeros
                v.grad = torch.zeros_like(v)
        norm = math.sqrt(sum(float((v.grad.double() ** 2).sum()) for _, v in params))
        if tr["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_([v for _, v in params], tr["grad_clip"])
        trace.append({n: v.grad.detach().clone() for n, v in params})
        opt.step()
        log.append((lr, norm, losses))
    for _, v in params:
        v.requires_grad_(False)
        v.grad = None
    return state, log, trace


def adam_step_bound(t, b1, b2):
    """max |m_hat / sqrt(v_hat)| at step t (1-based) over any gradients:
    |m_t| / sqrt(v_t) <= (1-b1)/sqrt(1-b2) * sqrt(sum_j<t (b1^2/b2)^j) (Cauchy-Schwarz),
    times the bias corrections sqrt(1-b2^t) / (1-b1^t)."""
    r = (1 - b1) / math.sqrt(1 - b2) * math.sqrt(sum((b1 * b1 / b2) ** j for j in range(t)))
    return r * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)


# The gradient noise assumed for an f32 implementation, per step and
# parameter: this many times the largest difference between PyTorch's f32
# and float64 gradients of that parameter at that step (the README says more).
GRAD_NOISE = 4.0


def zero_gradient(spec, grads64):
    """Parameters whose gradient is zero in exact arithmetic (their float64
    gradient is below 1e-12 of the largest): attn.k.bias without rope, a
    conv bias right before batchnorm."""
    g = {k[5:]: float(v.abs().max()) for k, v in grads64.items() if k.startswith("grad.")}
    gmax = max(g.values())
    return [k for k, v in g.items() if v <= 1e-12 * gmax]


def replay_optimizer(spec, p0, grads, lrs):
    """The optimizer's arithmetic on one tensor over the steps, as
    torch.optim does it, differentiable in the gradients."""
    o = spec["train"]["opt"]
    wd = o["weight_decay"] if p0.dim() >= 2 else 0.0
    p = p0
    if spec["train"]["optimizer"] == "adamw":
        b1, b2 = o["betas"]
        m = v = torch.zeros_like(p0)
        for t, (g, lr) in enumerate(zip(grads, lrs), 1):
            p = p * (1 - lr * wd)
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            # + 1e-300: no infinite derivative of sqrt at an exact zero
            p = p - lr / (1 - b1 ** t) * m / ((v + 1e-300).sqrt() / math.sqrt(1 - b2 ** t) + o["eps"])
    else:
        buf = None
        for g, lr in zip(grads, lrs):
            d = g + wd * p
            if o["momentum"]:
                buf = d if buf is None else o["momentum"] * buf + d
                d = d + o["momentum"] * buf if o["nesterov"] else buf
            p = p - lr * d
    return p


def step3_slack(spec, state0, kinds, trace, trace32, log, grads64, st32, st64):
    """{tensor: per-element slack}: how far f32 rounding noise in the
    gradients can move each parameter over the steps. First order: the
    derivative of the optimizer's arithmetic with respect to each step's
    gradient (float64, along the float64 trajectory) times GRAD_NOISE x the
    largest |f32 - float64| of that parameter's gradient at that step. It
    matters where AdamW divides a gradient by its own size: elements whose
    gradient is small next to its rounding noise. Parameters whose gradient is zero in exact
    arithmetic get the bound of what AdamW can do in 3 steps instead (and
    so do running means that follow such a bias)."""
    lrs = [lr for lr, _, _ in log]
    slack = {}
    for n, p0 in state0.items():
        if kinds[n] != "param":
            continue
        gs = [t[n].double().clone().requires_grad_(True) for t in trace]
        replay_optimizer(spec, p0.double(), gs, lrs).sum().backward()
        sl = torch.zeros_like(p0, dtype=torch.float64)
        for g, t32 in zip(gs, trace32):
            sigma = GRAD_NOISE * float((t32[n].double() - g.detach()).abs().max())
            sl += g.grad.abs() * sigma * (g.detach() != 0)
        slack[n] = sl
    zero = zero_gradient(spec, grads64)
    if zero and spec["train"]["optimizer"] == "adamw":
        b1, b2 = spec["train"]["opt"]["betas"]
        bound = 2 * sum(lr * adam_step_bound(t + 1, b1, b2) for t, lr in enumerate(lrs))
        for n in zero:
            slack[n] = torch.full_like(slack[n], bound)
        # a batchnorm's running mean follows a noise-driven bias right before it
        for n in st32:
            if n.endswith(".running_mean") and worst_ratio({n: st32[n]}, {n: st64[n]}, RTOL_STEP)[0] > 0.5:
                slack[n] = torch.full(st32[n].shape, bound, dtype=torch.float64)
    # keep the tensors where the slack matters
    return {n: v for n, v in slack.items()
            if bool((v > 0.25 * (ATOL + RTOL_STEP * st64[n].double().abs())).any())}, zero


def worst_ratio(actual, expected, rtol, atol=ATOL, slack=None):
    """max |a - e| / (atol + rtol |e| + slack) over all tensors (> 1: out of tolerance)."""
    worst, where = 0.0, ""
    for k, e in expected.items():
        a = actual[k].double()
        e = e.double()
        extra = slack[k].double() if slack and k in slack else 0.0
        r = float(((a - e).abs() / (atol + rtol * e.abs() + extra)).max()) if e.numel() else 0.0
        if r > worst:
            worst, where = r, k
    return worst, where


def modelc_params(modelc, path):
    """[(name, shape, dtype, buffer)] from `modelc check PATH --params`."""
    r = subprocess.run([modelc, "check", path, "--params"], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"modelc check {path} --params failed ({r.returncode}):\n{r.stderr}")
    out = []
    for line in r.stdout.splitlines():
        f = line.split()
        shape = [int(v) for v in f[1].strip("[]").split(",") if v]
        out.append((f[0], shape, f[2], len(f) > 3 and f[3] == "buffer"))
    return out


def check_summary(modelc, path, spec):
    """Cross-checks this script's reading of inputs and train against the
    summary of `modelc check PATH` (whose layout may change: lines that are
    not found are skipped with a note; values that differ are an error)."""
    r = subprocess.run([modelc, "check", path], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"modelc check {path} failed ({r.returncode}):\n{r.stderr}")
    lines = {ln.split()[0]: ln.split(None, 1)[1] for ln in r.stdout.splitlines()[1:] if ln.startswith("  ") and len(ln.split()) > 1}
    problems = []
    if "inputs" in lines:
        want = ", ".join(f"{n} {t}[{','.join(map(str, sh))}]" for n, t, sh in spec["inputs"])
        if lines["inputs"].strip() != want:
            problems.append(f"inputs: modelc says {lines['inputs'].strip()!r}, read {want!r}")
    else:
        print(f"  note: no 'inputs' line in `modelc check {path}`")
    if "train" in lines:
        text = lines["train"]
        calls = re.findall(r"([a-z_]+)\(([^()]*)\)", text)
        got = {}
        for fname, body in calls[:2]:
            for a in _split_args(body):
                k, _, v = a.partition("=")
                got[(fname, k.strip())] = True if not _ else _value(v)
        for k, v in re.findall(r"(grad_clip|accumulate)=([0-9.e+-]+)", text):
            got[("", k)] = float(v)
        t = spec["train"]
        mine = {(t["optimizer"], k): v for k, v in t["opt"].items()}
        mine.update({(t["schedule"], k): v for k, v in t["sched"].items()})
        mine[("", "grad_clip")] = t["grad_clip"]
        mine[("", "accumulate")] = float(t["accumulate"])
        for key, v in mine.items():
            if key not in got:
                if v not in (False, 0, 0.0):  # modelc may leave out flags that are off
                    problems.append(f"train: {key[0]}.{key[1]} = {v!r} here, not in modelc's summary")
                continue
            a, b = np.asarray(v, dtype=float), np.asarray(got[key], dtype=float)
            if a.shape != b.shape or not np.allclose(a, b, rtol=1e-6, atol=0):
                problems.append(f"train: {key[0]}.{key[1]} = {v!r} here, {got[key]!r} in modelc's summary")
    else:
        print(f"  note: no 'train' line in `modelc check {path}`")
    if problems:
        raise RuntimeError(f"{path}: this script reads the spec differently from modelc:\n  " + "\n  ".join(problems))


def torch_params(state, kinds):
    return [(n, list(state[n].shape), "i64" if state[n].dtype == torch.int64 else "f32", kinds[n] == "buffer")
            for n in kinds]


# Seeds: a hash of the case name, so that adding a case changes no other
# golden. RESEED moves a case to another seed where its f32 goldens came out
# too close to CI's tolerance (see the README): the noise of two f32
# implementations adds up, so a golden needs room to spare.
RESEED = {}


def case_seed(name):
    h = 0
    for ch in name.encode():
        h = (h * 131 + ch) % 1000003
    return h + 7919 * RESEED.get(name, 0)


def make_case(name, args):
    path = os.path.join(CASES_DIR, name + ".yaml")
    spec = read_spec(path)
    assert spec["train"], f"{name}: the case has no train section"
    d = spec["dims"]
    B = d["B"]
    k = spec["train"]["accumulate"]
    micro = STEPS * k
    seed = case_seed(name)

    # inputs: one batch, and the training data
    g = torch.Generator().manual_seed(seed)
    if is_token_spec(spec):
        V, T = d["V"], d["T"]
        inp = token_batches(spec, torch.randint(0, V, (B * T + 1,), generator=g).tolist(), 1)[0]
        stream = torch.randint(0, V, (micro * B * T + 1,), generator=g).tolist()
        batches = token_batches(spec, stream, micro)
        data = None
    else:
        inp = make_inputs(name, spec, g, B)
        data = make_inputs(name, spec, g, micro * B)
        batches = [{kk: v[i * B:(i + 1) * B] for kk, v in data.items()} for i in range(micro)]
    inp32 = storage_dtypes(spec, inp)

    # declare the parameters, check the names against modelc
    m = Model(None, training=False, seed=seed)
    with torch.no_grad():
        BUILDERS[name](m, d, cast_inputs(spec, inp, torch.float32))
    state0, kinds = m.state, m.kinds
    mine = torch_params(state0, kinds)
    if args.modelc:
        check_summary(args.modelc, path, spec)
        theirs = modelc_params(args.modelc, path)
        if sorted(mine) != sorted(theirs):
            a, b = set(map(repr, mine)), set(map(repr, theirs))
            raise RuntimeError(f"{name}: parameters differ from modelc's\n  only here:  {sorted(a - b)}\n"
                               f"  only modelc: {sorted(b - a)}")
        if [p[0] for p in mine] != [p[0] for p in theirs]:
            print(f"  note: {name}: same parameters as modelc, in another order")

    results = {}
    for dtype in (torch.float32, torch.float64):
        # both runs read the stored (f32 / i32 / u8) inputs and weights
        xs = cast_inputs(spec, inp32, dtype)
        ev = forward(name, spec, clone_state(state0, dtype), kinds, xs, training=False, grads=False)
        tr = forward(name, spec, clone_state(state0, dtype), kinds, xs, training=True, grads=True)
        bs = [cast_inputs(spec, storage_dtypes(spec, b), dtype) for b in batches]
        st, log, trace = train(name, spec, clone_state(state0, dtype), kinds, bs)
        results[dtype] = (ev, tr, st, log, trace)

    ev, tr, st, log, trace32 = results[torch.float32]
    ev64, tr64, st64, log64, trace64 = results[torch.float64]
    f32 = lambda t: {kk: (v.to(torch.float32) if v.is_floating_point() else v) for kk, v in t.items()}
    if any(kinds[kk] == "buffer" for kk in kinds):
        # batchnorm: batch statistics in training, running statistics in inference
        diff = max(float((ev[o] - tr[o]).abs().max()) for o in spec["outputs"])
        assert diff > 1e-3, f"{name}: eval and train-mode outputs agree ({diff:g}): batchnorm not in effect?"
    slack, zero = step3_slack(spec, clone_state(state0, torch.float64), kinds, trace64, trace32, log64, tr64,
                              f32(st), st64)
    ratios = {
        "eval": worst_ratio(ev, ev64, RTOL_RUN),
        "train": worst_ratio(tr, tr64, RTOL_RUN),
        "step3": worst_ratio(f32(st), st64, RTOL_STEP, slack=slack),
    }

    # write the golden directory
    out = os.path.join(args.out, name)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    meta = {"torch": torch.__version__, "numpy": np.__version__, "case": os.path.relpath(path, SRC),
            "generator": "tests/reference/make_goldens.py"}
    write_safetensors(os.path.join(out, "weights.safetensors"), state0, meta)
    write_safetensors(os.path.join(out, "input.safetensors"), inp32, meta)
    write_safetensors(os.path.join(out, "eval.safetensors"), f32(ev), meta)
    write_safetensors(os.path.join(out, "train.safetensors"), f32(tr), meta)
    write_safetensors(os.path.join(out, "step3.safetensors"), f32(st), meta)
    if data is None:
        write_tokens(os.path.join(out, "data.bin"), stream)
        data_file = "data.bin"
    else:
        write_safetensors(os.path.join(out, "data.safetensors"), storage_dtypes(spec, data), meta)
        data_file = "data.safetensors"

    if slack:
        write_safetensors(os.path.join(out, "step3_tol.safetensors"), f32(slack), meta)
    t = spec["train"]
    lines = [
        f"{name}: golden files for {os.path.relpath(path, SRC)}, made by",
        f"tests/reference/make_goldens.py with torch {torch.__version__}, numpy {np.__version__}, float32, 1 thread.",
        f"files: weights.safetensors input.safetensors eval.safetensors train.safetensors {data_file} step3.safetensors"
        + (" step3_tol.safetensors" if slack else ""),
        f"data: {micro} micro-batches of B={B} ({STEPS} steps x accumulate {k})"
        + (f", {len(stream)} tokens" if data is None else ""),
        f"eval loss {ev['loss'].item():.9g}; train-mode loss {tr['loss'].item():.9g}",
    ]
    for s, (lr, norm, losses) in enumerate(log):
        clip = t["grad_clip"]
        clipped = f", clipped to {clip:g}" if clip > 0 and norm > clip else ""
        lines.append(f"step {s}: lr {lr:.9g}, grad norm {norm:.9g}{clipped}, micro-batch losses "
                     + " ".join(f"{v:.9g}" for v in losses))
    lines.append("f32 goldens vs a float64 rerun, worst |a-e|/(atol+rtol|e|) at CI's tolerances "
                 f"(rtol {RTOL_RUN:g} / {RTOL_STEP:g} for step3, atol {ATOL:g}):")
    lines.append("  " + ", ".join(f"{kk} {r:.3g} ({w})" for kk, (r, w) in ratios.items()))
    if slack:
        base = {kk: ATOL + RTOL_STEP * st64[kk].double().abs() for kk in slack}
        lines.append("step3_tol.safetensors: per-element slack added to step3's tolerance, where f32 rounding")
        lines.append(f"noise in the gradients ({GRAD_NOISE:g}x PyTorch's f32 - f64 difference) can move a parameter")
        lines.append("further than atol + rtol |e| (elements with slack > that tolerance / all elements, largest slack):")
        for kk, v in slack.items():
            note = " (zero gradient in exact arithmetic)" if kk in zero else ""
            lines.append(f"  {kk}: {int((v > base[kk]).sum())}/{v.numel()}, {float(v.max()):.3g}{note}")
    with open(os.path.join(out, "README"), "w") as f:
        f.write("\n".join(lines) + "\n")
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    return ratios, size, log


# --------------------------------------------------------------------------
# Self-tests of the reference itself (double precision)

def self_test():
    torch.manual_seed(0)
    dt = torch.float64
    # 1. attention against a naive loop over i, j
    for causal, window, glob, heads, kv, rope in [(False, 0, 0, 2, 2, False), (True, 0, 0, 2, 2, False),
                                                  (False, 2, 1, 2, 2, False), (True, 3, 2, 4, 2, True),
                                                  (False, 0, 0, 4, 1, True), (True, 4, 2, 2, 1, False)]:
        B, T, hd = 2, 10, 6
        q = torch.randn(B, heads, T, hd, dtype=dt)
        k = torch.randn(B, kv, T, hd, dtype=dt)
        v = torch.randn(B, kv, T, hd, dtype=dt)
        got = attention_core(q, k, v, causal, window, glob, rope, 100.0)
        want = torch.zeros_like(got)
        G = heads // kv
        for b in range(B):
            for h in range(heads):
                for i in range(T):
                    qi = q[b, h, i].clone()
                    if rope:
                        qi = _rope_naive(qi, i, 100.0)
                    scores, vals = [], []
                    for j in range(T):
                        ok = (not causal or j <= i) and (window == 0 or abs(i - j) < window or i < glob or j < glob)
                        if not ok:
                            continue
                        kj = k[b, h // G, j].clone()
                        if rope:
                            kj = _rope_naive(kj, j, 100.0)
                        scores.append(float(qi @ kj) / math.sqrt(hd))
                        vals.append(v[b, h // G, j])
                    mx = max(scores)
                    w = [math.exp(s_ - mx) for s_ in scores]
                    tot = sum(w)
                    want[b, h, i] = sum(wi / tot * vi for wi, vi in zip(w, vals))
        assert torch.allclose(got, want, atol=1e-12), ("attention", causal, window, glob)
    # 2. the schedule against the contract's formula at known points
    sc = {"warmup": 4, "steps": 12, "min_lr": 0.1}
    assert lr_at("cosine", sc, 1.0, 0) == 0.25 and lr_at("cosine", sc, 1.0, 3) == 1.0
    assert abs(lr_at("cosine", sc, 1.0, 4) - 1.0) < 1e-15 and abs(lr_at("cosine", sc, 1.0, 8) - 0.55) < 1e-15
    assert abs(lr_at("cosine", sc, 1.0, 12) - 0.1) < 1e-15 and lr_at("cosine", sc, 1.0, 20) == 0.1
    assert abs(lr_at("linear", sc, 1.0, 8) - 0.55) < 1e-15 and lr_at("linear", sc, 1.0, 13) == 0.1
    assert lr_at("constant", {"warmup": 2, "min_lr": 0}, 0.5, 0) == 0.25
    assert lr_at("constant", {"warmup": 0, "min_lr": 0}, 0.5, 7) == 0.5
    # 3. torch's AdamW and SGD equal the runtime header's formulas (decoupled decay, bias correction)
    p0 = torch.randn(5, 3, dtype=dt)
    grads = [torch.randn(5, 3, dtype=dt) for _ in range(3)]
    p = p0.clone().requires_grad_(True)
    opt = torch.optim.AdamW([p], lr=0.1, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    mm, vv, q = torch.zeros_like(p0), torch.zeros_like(p0), p0.clone()
    for t, gr in enumerate(grads, 1):
        p.grad = gr.clone()
        opt.step()
        q *= 1 - 0.1 * 0.1
        mm = 0.9 * mm + 0.1 * gr
        vv = 0.95 * vv + 0.05 * gr * gr
        q -= 0.1 / (1 - 0.9 ** t) * mm / (vv.sqrt() / math.sqrt(1 - 0.95 ** t) + 1e-8)
    assert torch.allclose(p.detach(), q, atol=1e-12), "adamw"
    p = p0.clone().requires_grad_(True)
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
    buf, q = None, p0.clone()
    for gr in grads:
        p.grad = gr.clone()
        opt.step()
        dd = gr + 0.01 * q
        buf = dd.clone() if buf is None else 0.9 * buf + dd
        q -= 0.1 * (dd + 0.9 * buf)
    assert torch.allclose(p.detach(), q, atol=1e-12), "sgd"
    # 4. clip_grad_norm_ is min(1, c / (norm + 1e-6))
    gs = [torch.randn(4, dtype=dt), torch.randn(3, 2, dtype=dt)]
    ps = [torch.zeros_like(gg, requires_grad=True) for gg in gs]
    for pp, gg in zip(ps, gs):
        pp.grad = gg.clone()
    n = math.sqrt(sum(float((gg ** 2).sum()) for gg in gs))
    torch.nn.utils.clip_grad_norm_(ps, 0.5)
    for pp, gg in zip(ps, gs):
        assert torch.allclose(pp.grad, gg * min(1.0, 0.5 / (n + 1e-6)), atol=1e-15), "clip"
    # 5. rmsnorm / layernorm(bias=false) / batchnorm against the formulas
    x = torch.randn(3, 4, 6, dtype=dt)
    m = Model(None, seed=1)
    m.rmsnorm("r", x.float())
    m.layernorm("l", x.float(), bias=False)
    st = clone_state(m.state, dt)
    m = Model(st)
    y = m.rmsnorm("r", x, eps=1e-6)
    assert torch.allclose(y, x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6) * st["r.weight"], atol=1e-12)
    y = m.layernorm("l", x, eps=1e-5, bias=False)
    mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    assert torch.allclose(y, (x - mu) / torch.sqrt(var + 1e-5) * st["l.weight"], atol=1e-12)
    xb = torch.randn(5, 3, 4, 2, dtype=dt)
    m = Model(None, seed=2)
    m.batchnorm("bn", xb.float())
    s0 = clone_state(m.state, dt)
    st_eval, st_tr = clone_state(s0, dt), clone_state(s0, dt)
    ye = Model(st_eval, training=False).batchnorm("bn", xb)
    yt = Model(st_tr, training=True).batchnorm("bn", xb)
    assert not torch.allclose(ye, yt, atol=1e-3), "batchnorm: eval == train"
    assert torch.equal(st_eval["bn.running_mean"], s0["bn.running_mean"]), "batchnorm eval changed buffers"
    mean = xb.mean((0, 2, 3))
    var_u = xb.var((0, 2, 3), unbiased=True)
    assert torch.allclose(st_tr["bn.running_mean"], 0.9 * s0["bn.running_mean"] + 0.1 * mean, atol=1e-12)
    assert torch.allclose(st_tr["bn.running_var"], 0.9 * s0["bn.running_var"] + 0.1 * var_u, atol=1e-12)
    assert int(st_tr["bn.num_batches_tracked"]) == int(s0["bn.num_batches_tracked"]) + 1
    var_b = xb.var((0, 2, 3), unbiased=False)
    v4 = lambda t: t.view(1, -1, 1, 1)
    want = (xb - v4(mean)) / torch.sqrt(v4(var_b) + 1e-5) * v4(s0["bn.weight"]) + v4(s0["bn.bias"])
    assert torch.allclose(yt, want, atol=1e-12), "batchnorm train formula"
    want = (xb - v4(s0["bn.running_mean"])) / torch.sqrt(v4(s0["bn.running_var"]) + 1e-5) * v4(s0["bn.weight"]) + v4(s0["bn.bias"])
    assert torch.allclose(ye, want, atol=1e-12), "batchnorm eval formula"
    # 6. cross_entropy with ignore_index: the mean over kept positions
    lg = torch.randn(2, 3, 5, dtype=dt)
    tg = torch.tensor([[1, -1, 4], [0, 2, -1]])
    lp = torch.log_softmax(lg, -1)
    kept = [(0, 0), (0, 2), (1, 0), (1, 1)]
    want = -sum(float(lp[i, j, tg[i, j]]) for i, j in kept) / len(kept)
    assert abs(float(ce(lg, tg, ignore_index=-1)) - want) < 1e-12, "cross_entropy"
    # 7. upsample bilinear (align_corners=False) by hand at one point
    xi = torch.randn(1, 1, 3, 4, dtype=dt)
    yi = _upsample(xi, 2, "bilinear")
    # output (i=3, j=5): source (3+0.5)/2-0.5 = 1.25, (5+0.5)/2-0.5 = 2.25
    src = lambda r, c: xi[0, 0, r, c]
    want = (0.75 * (0.75 * src(1, 2) + 0.25 * src(1, 3)) + 0.25 * (0.75 * src(2, 2) + 0.25 * src(2, 3)))
    assert abs(float(yi[0, 0, 3, 5]) - float(want)) < 1e-12, "bilinear"
    print("self-test: ok (attention vs loops, rope, schedules, adamw/sgd formulas, clipping, norms, "
          "batchnorm train/eval and running stats, cross_entropy ignore_index, bilinear)")


def _rope_naive(vec, t, base):
    hd = vec.shape[0]
    out = vec.clone()
    for i in range(hd // 2):
        a = t * base ** (-2.0 * i / hd)
        x1, x2 = float(vec[i]), float(vec[i + hd // 2])
        out[i] = x1 * math.cos(a) - x2 * math.sin(a)
        out[i + hd // 2] = x2 * math.cos(a) + x1 * math.sin(a)
    return out


def main():
    global CASES_DIR
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="*", help="case names (default: every cases/*.yaml)")
    ap.add_argument("--modelc", help="the modelc binary, to check parameter names (required unless --no-modelc)")
    ap.add_argument("--no-modelc", action="store_true", help="skip the parameter-name check")
    ap.add_argument("--out", default=GOLDEN_DIR, help="where the golden directories go")
    ap.add_argument("--cases-dir", default=CASES_DIR,
                    help="where the NAME.yaml are (for experiments: a copy of a case with other dims "
                         "or options the builder reads from the YAML)")
    ap.add_argument("--skip-self-test", action="store_true")
    args = ap.parse_args()
    if not args.modelc and not args.no_modelc:
        ap.error("--modelc PATH is required (or --no-modelc)")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    CASES_DIR = args.cases_dir
    files = sorted(f[:-5] for f in os.listdir(CASES_DIR) if f.endswith(".yaml"))
    missing = [f for f in files if f not in BUILDERS]
    extra = [b for b in BUILDERS if b not in files]
    if missing or (extra and args.cases_dir == os.path.join(HERE, "cases")):
        sys.exit(f"cases without a builder: {missing}; builders without a case: {extra}")
    names = args.cases or files
    for n in names:
        if n not in BUILDERS:
            sys.exit(f"unknown case {n}")
    if not args.skip_self_test:
        self_test()
    total, tight = 0, []
    for n in names:
        ratios, size, log = make_case(n, args)
        total += size
        flag = "" if max(r for r, _ in ratios.values()) <= 0.5 else "   <-- f32 noise near the tolerance"
        if flag:
            tight.append(n)
        print(f"{n:28s} {size / 1024:6.1f} KiB  f32 vs f64: " +
              " ".join(f"{k} {r:.2g}" for k, (r, _) in ratios.items()) + flag)
    print(f"{len(names)} cases, {total / 1024:.1f} KiB in all")
    if tight:
        print("cases where the f32 goldens are within 2x of the tolerance of the float64 truth: " + " ".join(tight))


if __name__ == "__main__":
    main()
