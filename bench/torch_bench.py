"""torch_bench.py: the PyTorch side of bench/run.py.

Builds the same model as a modelc spec in PyTorch and times it the way
`modelc bench` times the generated code: the inference forward pass (no
autograd) and the training step (forward, backward, clip_grad_norm_,
AdamW step), median and fastest of N timed steps after a warm-up, in a
process of its own so that its peak RSS is its own. Prints one JSON object
per entry.

  python3 torch_bench.py gpt    B T V D H L  [--steps N]
  python3 torch_bench.py unet   B            [--steps N]
  python3 torch_bench.py attn   B H T D W G  [--steps N]   (W = 0: causal, no window)
"""
import argparse
import json
import math
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


def window_mask(T, W, G):
    i = torch.arange(T).view(T, 1)
    j = torch.arange(T).view(1, T)
    allowed = (j <= i) & (((i - j) < W) | (i < G) | (j < G))
    return allowed


def attention_core(q, k, v, mask=None, causal=False):
    """softmax(q k^T / sqrt(hd) + mask) v: SDPA where this torch has it."""
    if HAS_SDPA:
        if mask is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        T = q.shape[-2]
        mask = torch.ones(T, T, dtype=torch.bool).tril()
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


class Block(nn.Module):
    def __init__(self, D, H):
        super().__init__()
        self.H = H
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))
        self.up, self.down = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)

    def forward(self, x):
        B, T, D = x.shape
        h = self.ln1(x)
        split = lambda t: t.view(B, T, self.H, D // self.H).transpose(1, 2)
        a = attention_core(split(self.q(h)), split(self.k(h)), split(self.v(h)), causal=True)
        x = x + self.o(a.transpose(1, 2).reshape(B, T, D))
        return x + self.down(F.gelu(self.up(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    """specs/gpt2.yaml: learned positions, pre-LN blocks, tied head."""

    def __init__(self, T, V, D, H, L):
        super().__init__()
        self.tok, self.pos = nn.Embedding(V, D), nn.Embedding(T, D)
        self.layers = nn.ModuleList(Block(D, H) for _ in range(L))
        self.lnf = nn.LayerNorm(D)

    def forward(self, tokens, targets=None):
        x = self.tok(tokens) + self.pos.weight[: tokens.shape[1]]
        for layer in self.layers:
            x = layer(x)
        logits = self.lnf(x) @ self.tok.weight.t()
        if targets is None:
            return logits
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def level(c_in, c, groups=4):
    return nn.Sequential(
        nn.Conv2d(c_in, c, 3, padding=1), nn.GroupNorm(groups, c), nn.SiLU(),
        nn.Conv2d(c, c, 3, padding=1), nn.GroupNorm(groups, c), nn.SiLU())


class UNet(nn.Module):
    """specs/unet.yaml."""

    def __init__(self, c1=16, c2=32, c3=64):
        super().__init__()
        self.enc1, self.enc2, self.mid = level(1, c1), level(c1, c2), level(c2, c3)
        self.dec2, self.dec1 = level(c3 + c2, c2), level(c2 + c1, c1)
        self.noise = nn.Conv2d(c1, 1, 1)

    def forward(self, noisy, clean=None):
        e1 = self.enc1(noisy)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        m = self.mid(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([F.interpolate(m, scale_factor=2), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2), e1], 1))
        out = noisy - self.noise(d1)
        return out if clean is None else F.mse_loss(out, clean)


def timed(fn, steps, warmup):
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        t.append(time.perf_counter() - start)
    return statistics.median(t), min(t)


def report(entry, median, best, items):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"entry": entry, "median_ms": median * 1e3, "min_ms": best * 1e3,
                      "items_per_s": items / median, "maxrss_mb": rss,
                      "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "sdpa": HAS_SDPA}), flush=True)


def train_step(model, opt, inputs):
    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(*inputs)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return step


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["gpt", "unet", "attn"])
    p.add_argument("dims", type=int, nargs="*")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--forward-only", action="store_true")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.what == "attn":
        B, H, T, D, W, G = a.dims
        q, k, v = (torch.randn(B, H, T, D) for _ in range(3))
        mask = None if W == 0 else window_mask(T, W, G)
        with torch.no_grad():
            med, best = timed(lambda: attention_core(q, k, v, mask, causal=mask is None), a.steps, a.warmup)
        report("forward", med, best, B * T)
        return
    if a.what == "gpt":
        B, T, V, D, H, L = a.dims
        model = GPT(T, V, D, H, L)
        inputs = (torch.randint(0, 2, (B, T)), torch.randint(0, 2, (B, T)))
        items = B * T
        opt = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), eps=1e-8,
                                weight_decay=0.1)
    else:
        (B,) = a.dims
        model = UNet()
        inputs = (torch.rand(B, 1, 28, 28), torch.rand(B, 1, 28, 28))
        items = B
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    model.eval()
    with torch.no_grad():
        med, best = timed(lambda: model(inputs[0]), a.steps, a.warmup)
    report("forward", med, best, items)
    if a.forward_only:
        return
    model.train()
    med, best = timed(train_step(model, opt, inputs), a.steps, a.warmup)
    report("train", med, best, items)


if __name__ == "__main__":
    sys.exit(main())
