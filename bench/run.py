"""run.py: modelc's generated C against PyTorch and the sgemm ceiling.

One command, one machine, one thread count, one run:

  python3 bench/run.py [--threads N] [--quick] [--torch PYTHON] [--rows NAME,...]

For each row it times modelc's generated code (`modelc bench`, which
compiles the spec through the cache and runs the generated driver's
bench command) and the same model in PyTorch (torch_bench.py, run by
PYTHON: /usr/bin/python3 with Debian's python3-torch by default), each in
a process of its own, and prints a Markdown table: median time per step,
the ratio modelc / PyTorch, the row's FLOPs and its floor (FLOPs over the
sgemm ceiling measured at the start of the run, sgemm_peak.c), and peak
RSS for the attention rows. Specs are copies of specs/*.yaml and
bench/specs/*.yaml with their dims rewritten.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def sh(cmd, env=None, timeout=3600):
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s%s" % (" ".join(cmd), r.returncode, r.stdout[-2000:],
                                                       r.stderr[-2000:]))
    return r.stdout


def with_dims(src, dst_dir, name, dims):
    """Copy of the spec at src with `dims:` entries replaced (and the model
    renamed, so that cache entries differ)."""
    text = open(src).read()
    for key, value in dims.items():
        text, n = re.subn(r"(?m)^(  %s:\s*)[^#\n]*?(\s+#.*)?$" % re.escape(key),
                          r"\g<1>%s\g<2>" % value, text)
        if n != 1:
            raise ValueError("%s: no dim %s" % (src, key))
    text = re.sub(r"(?m)^model:\s*\S+", "model: %s" % name, text)
    path = os.path.join(dst_dir, name + ".yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


UNITS = {"FLOP": 1, "KFLOP": 1e3, "MFLOP": 1e6, "GFLOP": 1e9, "TFLOP": 1e12, "PFLOP": 1e15}


def forward_flops(modelc, spec):
    out = sh([modelc, "check", spec])
    m = re.search(r"flops\s+([0-9.]+) (\w+) forward", out)
    return float(m.group(1)) * UNITS[m.group(2)]


def attention_flops(B, H, T, D, W, G):
    """2 matmuls of 2*D flops per allowed (query, key) pair."""
    pairs = 0
    for i in range(T):
        if W == 0:
            pairs += i + 1
        else:
            near = min(W, i + 1)
            far = max(0, min(G, i - W + 1))
            pairs += near + far
    return 4.0 * B * H * D * pairs


def modelc_bench(modelc, spec, threads, steps, forward_only=False, via="cc"):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [modelc, "bench", spec, "--json", "--steps", str(steps), "--warmup", "2", "--via", via]
    if forward_only:
        cmd.append("--forward-only")
    out = sh(cmd, env=env)
    return {d["entry"]: d for d in map(json.loads, filter(None, out.splitlines()))}


def torch_bench(python, args, threads, steps):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [python, os.path.join(HERE, "torch_bench.py")] + [str(a) for a in args] + [
        "--steps", str(steps), "--threads", str(threads)]
    out = sh(cmd, env=env)
    return {d["entry"]: d for d in map(json.loads, filter(None, out.splitlines()))}


def fmt_ms(v):
    return "%.1f" % v if v >= 10 else "%.2f" % v


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--quick", action="store_true", help="fewer steps and attention lengths")
    p.add_argument("--torch", default="/usr/bin/python3", help="python with torch")
    p.add_argument("--modelc", default=os.path.join(ROOT, "build", "modelc"))
    p.add_argument("--rows", default="", help="comma-separated row names to run")
    p.add_argument("--via", default="cc", choices=["cc", "llvm"],
                   help="modelc's generated C compiled by cc (default), or the LLVM JIT")
    a = p.parse_args()
    steps = 3 if a.quick else 10
    tmp = tempfile.mkdtemp(prefix="modelc-bench-")
    try:
        peak_bin = os.path.join(tmp, "sgemm_peak")
        sh(["cc", "-O2", "-fopenmp", "-I/usr/include/x86_64-linux-gnu/openblas-pthread",
            os.path.join(HERE, "sgemm_peak.c"), "-o", peak_bin, "-lopenblas"])
        ceiling = float(sh([peak_bin, str(a.threads)]).split()[1]) * 1e9
        tv = sh([a.torch, "-c", "import torch; print(torch.__version__)"]).strip()
        print("modelc bench: %d threads, sgemm ceiling %.1f GFLOP/s, PyTorch %s (%s), modelc via %s\n"
              % (a.threads, ceiling / 1e9, tv, a.torch, a.via), flush=True)
        rows = []
        gpt2 = os.path.join(ROOT, "specs", "gpt2.yaml")
        unet = os.path.join(ROOT, "specs", "unet.yaml")
        want = set(filter(None, a.rows.split(",")))

        def run(name, spec_src, dims, torch_args, entries, flops_fwd=None, mem=False):
            if want and name not in want:
                return
            spec = with_dims(spec_src, tmp, re.sub(r"\W", "_", name), dims)
            fwd = flops_fwd if flops_fwd is not None else forward_flops(a.modelc, spec)
            fwd_only = entries == ["forward"]
            mc = modelc_bench(a.modelc, spec, a.threads, steps, forward_only=fwd_only, via=a.via)
            pt = torch_bench(a.torch, torch_args + (["--forward-only"] if fwd_only else []),
                             a.threads, steps)
            for e in entries:
                flops = fwd * (3 if e == "train" else 1)
                floor = flops / ceiling * 1e3
                m, t = mc[e]["median_ms"], pt[e]["median_ms"]
                row = {"row": "%s %s" % (name, e), "flops": flops, "floor_ms": floor,
                       "modelc_ms": m, "torch_ms": t, "ratio": m / t, "of_floor": m / floor,
                       "modelc_mb": mc[e].get("maxrss_mb"), "torch_mb": pt[e].get("maxrss_mb")}
                rows.append(row)
                print("  %-34s modelc %9s ms  torch %9s ms  x%.2f  (%.2fx floor)" % (
                    row["row"], fmt_ms(m), fmt_ms(t), row["ratio"], row["of_floor"]), flush=True)

        run("gpt2 B=4 T=64", gpt2, {"B": 4, "T": 64}, ["gpt", 4, 64, 50257, 768, 12, 12],
            ["train"])
        run("small GPT B=8 T=128", gpt2, {"B": 8, "T": 128, "V": 8192, "D": 256, "H": 4, "L": 4},
            ["gpt", 8, 128, 8192, 256, 4, 4], ["train"])
        for B in (1, 4):
            run("gpt2 infer B=%d T=64" % B, gpt2, {"B": B, "T": 64},
                ["gpt", B, 64, 50257, 768, 12, 12], ["forward"])
        lengths = [512, 1024, 2048] if a.quick else [512, 1024, 2048, 4096, 8192]
        for T in lengths:
            for kind, W, G in (("causal", 0, 0), ("window256+4", 256, 4)):
                src = os.path.join(HERE, "specs", "attn_causal.yaml" if W == 0 else "attn_window.yaml")
                dims = {"T": T} if W == 0 else {"T": T, "W": W, "G": G}
                run("attn %s T=%d" % (kind, T), src, dims, ["attn", 1, 12, T, 64, W, G], ["forward"],
                    flops_fwd=attention_flops(1, 12, T, 64, W, G), mem=True)
        run("unet B=16", unet, {"B": 16}, ["unet", 16], ["train"])

        print("\n| row | FLOPs | floor ms | modelc ms | PyTorch ms | modelc / PyTorch | modelc / floor | peak RSS MiB modelc / PyTorch |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            mem = ("%.0f / %.0f" % (r["modelc_mb"], r["torch_mb"])
                   if r["modelc_mb"] and r["torch_mb"] else "")
            print("| %s | %.3g | %s | %s | %s | %.2f | %.2f | %s |" % (
                r["row"], r["flops"], fmt_ms(r["floor_ms"]), fmt_ms(r["modelc_ms"]),
                fmt_ms(r["torch_ms"]), r["ratio"], r["of_floor"], mem))
        with open(os.path.join(tmp, "..", "modelc-bench-last.json"), "w") as f:
            json.dump({"threads": a.threads, "ceiling_gflops": ceiling / 1e9, "torch": tv,
                       "rows": rows}, f, indent=1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
