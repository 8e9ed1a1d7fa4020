#!/usr/bin/python3
"""bench_train.py: training throughput of qat against the same GPT in PyTorch.

Trains the model of a qat config (default configs/tiny-shakespeare.yaml: char
vocab, 4 layers, 4 heads, width 128, context 128, batch 32, 818,048 parameters)
for --iters steps twice, on the same number of threads:

  * qat:     build/qat train CONFIG --set train.iters=N ... ; tokens/s is the
             median per-step rate qat writes to out_dir/summary.json, peak RSS
             comes from there too, the first-step loss from metrics.jsonl;
  * PyTorch: the same model (pre-LN GPT-2 blocks, tanh GELU, tied LM head, same
             init scheme), AdamW with decay on 2-D weights only, linear warmup +
             cosine schedule, global-norm clipping, random 129-token windows of
             the first 90% of the corpus. It runs in a subprocess of this script
             (so OMP_NUM_THREADS is set before torch is imported and its peak RSS
             is its own). A step is timed from batch sampling to the end of the
             optimizer step; the first 3 steps are skipped; the median tokens/s
             (B*T / step time) is reported.

Prints a table (tokens/s, peak RSS, ratio qat/pytorch) and, last, one JSON line.
Both first-step losses should be close to ln(vocab) (4.17 for 65 characters).

Run (from any directory; needs Debian's python3 with torch 1.13 and numpy):
  /usr/bin/python3 bench/bench_train.py [--iters 50] [--threads 2] [--repeats 1]
                   [--config configs/tiny-shakespeare.yaml] [--qat build/qat]
                   [--torch-blas-core SkylakeX] [-v]
--torch-blas-core SkylakeX gives the PyTorch side OpenBLAS's AVX-512 kernels
where its CPU detection falls back to AVX2 (the peer at its best on this
machine). With --repeats R > 1 the two sides run R times alternately and the
median of the per-run medians is reported. -v also shows torch's BLAS build settings, the
BLAS libraries it loaded, and CPU time / wall time of each side.
"""

import argparse
import inspect
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARMUP_STEPS = 3  # PyTorch steps left out of the median

# qat's defaults (train/config.c) for keys a config may leave out
DEFAULTS = {
    "model": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128, "vocab": "char", "arch": "gpt",
              "n_kv_head": 0, "hidden": 0},
    "data": {"path": "/usr/share/games/fortunes/songs-poems", "val_fraction": 0.1},
    "train": {"batch_size": 32, "lr": 1e-3, "min_lr": 1e-4, "warmup_iters": 100, "weight_decay": 0.1,
              "beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "grad_clip": 1.0, "seed": 1337},
}


def die(msg):
    print("bench_train: " + msg, file=sys.stderr)
    sys.exit(1)


def load_config(path):
    """The config as qat reads it, with qat's defaults filled in."""
    try:
        import yaml
        with open(path) as f:
            raw = yaml.safe_load(f) or {}
    except (OSError, ImportError, ValueError) as e:
        die("cannot read config %s: %s" % (path, e))
    cfg = {}
    for section, keys in DEFAULTS.items():
        given = raw.get(section) or {}
        cfg[section] = {k: type(v)(given.get(k, v)) if not isinstance(v, str) else str(given.get(k, v))
                        for k, v in keys.items()}
    return cfg


def corpus_path(cfg):
    p = cfg["data"]["path"]
    return p if os.path.isabs(p) else os.path.join(ROOT, p)  # qat runs with ROOT as working directory


# ---------------------------------------------------------------- PyTorch side (subprocess)

def torch_worker(args):
    """Trains the PyTorch model; prints one JSON line with the results on stdout."""
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    m, d, t = cfg["model"], cfg["data"], cfg["train"]
    B, T, C, L, H = t["batch_size"], m["block_size"], m["n_embd"], m["n_layer"], m["n_head"]
    hs = C // H

    if args.verbose:
        for line in torch.__config__.show().splitlines():
            if "BLAS" in line.upper():
                for part in line.split(", "):
                    if "BLAS" in part.upper() or "LAPACK" in part.upper():
                        print("  torch: " + part.strip(), file=sys.stderr)
        libs = set()
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.split()[-1]
                if any(s in os.path.basename(p).lower() for s in ("blas", "lapack", "mkl", "gomp", "omp")):
                    libs.add(os.path.realpath(p))
        for p in sorted(libs):
            print("  torch loaded: " + p, file=sys.stderr)
        print("  torch: %s, %d intra-op threads, %d inter-op threads" %
              (torch.__version__, torch.get_num_threads(), torch.get_num_interop_threads()), file=sys.stderr)

    blas_core = openblas_core()
    raw = np.fromfile(corpus_path(cfg), dtype=np.uint8)
    if m["vocab"] == "byte":
        V, tokens = 256, raw.astype(np.int64)
    else:
        chars = np.unique(raw)
        lut = np.zeros(256, dtype=np.int64)
        lut[chars] = np.arange(len(chars))
        V, tokens = len(chars), lut[raw]
    n_train = int(len(tokens) * (1.0 - d["val_fraction"]))
    train = torch.from_numpy(tokens[:n_train].copy())
    windows = train.unfold(0, T + 1, 1)  # [n_train - T, T + 1], a view

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_gpt import GPT, Llama
    torch.manual_seed(t["seed"])
    if m["arch"] == "llama":  # qat's defaults: kv heads = heads, hidden = 8/3 C rounded up to 32
        HKV = m["n_kv_head"] or H
        hidden = m["hidden"] or (8 * C // 3 + 31) // 32 * 32
        model = Llama(V, T, C, L, H, HKV, hidden)
        expect = V * C + L * (2 * C + C * (C + 2 * HKV * hs) + C * C + 3 * C * hidden) + C
    else:
        model = GPT(V, T, C, L, H)
        expect = V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C
    n_params = sum(p.numel() for p in model.parameters())
    if n_params != expect or (V == 65 and m["arch"] == "gpt" and n_params != 818048):
        die("PyTorch model has %d parameters, expected %d" % (n_params, expect))

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt_kw = {}
    sig = inspect.signature(torch.optim.AdamW).parameters
    if "foreach" in sig:
        opt_kw["foreach"] = True  # 'fused' exists for CUDA only in this torch
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": t["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=t["lr"], betas=(t["beta1"], t["beta2"]), eps=t["eps"], **opt_kw)

    def lr_at(it):
        if it < t["warmup_iters"]:
            return t["lr"] * (it + 1) / t["warmup_iters"]
        if it >= args.iters or args.iters <= t["warmup_iters"]:
            return t["min_lr"]
        ratio = (it - t["warmup_iters"]) / (args.iters - t["warmup_iters"])
        return t["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (t["lr"] - t["min_lr"])

    gen = torch.Generator().manual_seed(t["seed"])
    rates, losses = [], []
    ru0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for it in range(args.iters):
        ts = time.perf_counter()
        w = windows[torch.randint(windows.shape[0], (B,), generator=gen)]
        x, y = w[:, :T], w[:, 1:]
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if t["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t["grad_clip"])
        for g in opt.param_groups:
            g["lr"] = lr_at(it)
        opt.step()
        l = loss.item()
        dt = time.perf_counter() - ts
        losses.append(l)
        rates.append(B * T / dt)
        if not math.isfinite(l):
            die("PyTorch training diverged at step %d (loss %g)" % (it + 1, l))
        if args.verbose and (it == 0 or (it + 1) % 10 == 0 or it + 1 == args.iters):
            print("  torch iter %d/%d loss %.4f %.0f tok/s" % (it + 1, args.iters, l, B * T / dt), file=sys.stderr)
    wall = time.perf_counter() - w0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    val_loss = None
    if args.eval == "full":
        # qat's default protocol: the whole validation split, consecutive windows, every token scored once
        from torch_gpt import full_split_loss
        val_loss, _ = full_split_loss(model, torch.from_numpy(tokens[n_train:].copy()), T, B)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    timed = rates[WARMUP_STEPS:] if len(rates) > WARMUP_STEPS else rates
    print(json.dumps({
        "params": n_params, "vocab": V, "tokens_per_s": statistics.median(timed),
        "peak_rss_mib": ru1.ru_maxrss / 1024.0, "loss_first": losses[0], "loss_last": losses[-1],
        "threads": torch.get_num_threads(), "cpu_per_wall": cpu / wall, "wall_s": wall, "val_loss": val_loss,
        "blas_core": blas_core,
    }))


def openblas_core():
    """The kernel family the OpenBLAS loaded in this process picked (e.g. Haswell, SkylakeX), or None."""
    import ctypes
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "libopenblas" in line}
        for lib in libs:
            fn = ctypes.CDLL(lib).openblas_get_corename
            fn.restype = ctypes.c_char_p
            return fn().decode()
    except (OSError, AttributeError):
        pass
    return None


def run_torch(args, verbose):
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    if args.torch_blas_core:
        env["OPENBLAS_CORETYPE"] = args.torch_blas_core
    cmd = [sys.executable, os.path.abspath(__file__), "--torch-worker", "--iters", str(args.iters),
           "--threads", str(args.threads), "--config", args.config,
           "--eval", args.eval] + (["-v"] if verbose else [])
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, cwd=ROOT)
    if p.returncode != 0:
        die("the PyTorch worker failed (exit %d)" % p.returncode)
    return json.loads(p.stdout.decode().strip().splitlines()[-1])


# ---------------------------------------------------------------- qat side

def run_qat(args, verbose):
    out = tempfile.mkdtemp(prefix="bench_train_qat_")
    try:
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
        cmd = [args.qat, "train", args.config, "--set", "train.iters=%d" % args.iters, "--set", "out_dir=" + out,
               "--set", "train.eval_every=100000", "--set", "train.threads=%d" % args.threads,
               "--set", "train.eval=full"]
        ru0, w0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        p = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - w0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if p.returncode != 0:
            tail = p.stdout.decode(errors="replace").strip().splitlines()
            die("qat failed (exit %d): %s" % (p.returncode, tail[-1] if tail else ""))
        if verbose:
            for line in p.stdout.decode(errors="replace").splitlines():
                print("  " + line, file=sys.stderr)
        with open(os.path.join(out, "summary.json")) as f:
            res = json.load(f)
        with open(os.path.join(out, "metrics.jsonl")) as f:
            first = json.loads(f.readline())
        res["loss_first"] = first["loss"]
        # includes the final evaluation and checkpoint write, so only a rough check of thread use
        res["cpu_per_wall"] = ((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)) / wall
        return res
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description="Training throughput of qat vs the same GPT in PyTorch.")
    ap.add_argument("--iters", type=int, default=50, help="training steps per run (default 50)")
    ap.add_argument("--threads", type=int, default=2, help="threads for both sides (default 2)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each side, alternating (default 1)")
    ap.add_argument("--config", default="configs/tiny-shakespeare.yaml",
                    help="qat config, relative to the project root (default configs/tiny-shakespeare.yaml)")
    ap.add_argument("--qat", default="build/qat", help="qat binary, relative to the project root (default build/qat)")
    ap.add_argument("--eval", choices=["none", "full"], default="none",
                    help="full: score both models on the whole validation split after training, as qat's "
                         "train.eval full does (default none: speed only); --iters 2000 --eval full gives the "
                         "reference benchmark's quality figure on both sides")
    ap.add_argument("--torch-blas-core", default=None, metavar="NAME",
                    help="OPENBLAS_CORETYPE for the PyTorch side only (e.g. SkylakeX): Debian's OpenBLAS 0.3.21 "
                         "falls back to its AVX2 (Haswell) kernels on CPUs it does not know, such as AMD Zen 5; "
                         "this gives PyTorch its AVX-512 kernels instead (qat's products do not use OpenBLAS "
                         "on AVX-512 machines)")
    ap.add_argument("-v", "--verbose", action="store_true", help="show BLAS info, progress and CPU use")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.iters < 1 or args.threads < 1 or args.repeats < 1:
        die("--iters, --threads and --repeats must be >= 1")
    args.config = os.path.join(ROOT, args.config)  # unchanged if absolute
    args.qat = os.path.join(ROOT, args.qat)

    if args.torch_worker:
        return torch_worker(args)

    if not os.path.isfile(args.config):
        die("config not found: %s" % args.config)
    cfg = load_config(args.config)
    if not os.path.isfile(corpus_path(cfg)):
        die("corpus not found: %s (data.path of %s)" % (corpus_path(cfg), args.config))
    if not (os.path.isfile(args.qat) and os.access(args.qat, os.X_OK)):
        die("qat binary not found: %s (build: cmake -S %s -B %s/build -DCMAKE_BUILD_TYPE=Release && "
            "cmake --build %s/build -j2)" % (args.qat, ROOT, ROOT, ROOT))

    qat_runs, torch_runs = [], []
    for r in range(args.repeats):
        tag = " (run %d/%d)" % (r + 1, args.repeats) if args.repeats > 1 else ""
        print("qat: %d steps on %d threads%s ..." % (args.iters, args.threads, tag), file=sys.stderr, flush=True)
        qat_runs.append(run_qat(args, args.verbose))
        print("pytorch: %d steps on %d threads%s ..." % (args.iters, args.threads, tag), file=sys.stderr, flush=True)
        torch_runs.append(run_torch(args, args.verbose and r == 0))

    q, t = qat_runs[0], torch_runs[0]
    if q["params"] != t["params"]:
        die("parameter counts differ: qat %d, pytorch %d" % (q["params"], t["params"]))
    if t["threads"] != args.threads:
        print("warning: torch runs %d threads, not %d" % (t["threads"], args.threads), file=sys.stderr)
    q_tps = statistics.median(x["tokens_per_s"] for x in qat_runs)
    t_tps = statistics.median(x["tokens_per_s"] for x in torch_runs)
    q_rss = max(x["peak_rss_mib"] for x in qat_runs)
    t_rss = max(x["peak_rss_mib"] for x in torch_runs)
    ratio = q_tps / t_tps

    print("%d params, %d steps, %d threads%s" % (q["params"], args.iters, args.threads,
          ", median of %d runs" % args.repeats if args.repeats > 1 else ""))
    print("%-16s %12s %14s %12s" % ("implementation", "tokens/s", "peak RSS MiB", "first loss"))
    print("%-16s %12.0f %14.1f %12.4f" % ("qat", q_tps, q_rss, q["loss_first"]))
    print("%-16s %12.0f %14.1f %12.4f" % ("pytorch", t_tps, t_rss, t["loss_first"]))
    print("ratio qat/pytorch: %.2fx   (ln(vocab) = %.4f)" % (ratio, math.log(t["vocab"])))
    print("PyTorch's OpenBLAS kernels: %s%s" % (t.get("blas_core"),
          " (OPENBLAS_CORETYPE=%s)" % args.torch_blas_core if args.torch_blas_core else ""))
    if args.eval == "full":
        print("validation loss after %d steps, whole validation split: qat %.4f, pytorch %.4f" %
              (args.iters, q["val_loss"], t["val_loss"]))
    if args.verbose:
        print("CPU time / wall time: qat %s, pytorch %s" %
              (", ".join("%.2f" % x["cpu_per_wall"] for x in qat_runs),
               ", ".join("%.2f" % x["cpu_per_wall"] for x in torch_runs)))
    print(json.dumps({
        "bench": "train_speed", "iters": args.iters, "threads": args.threads, "repeats": args.repeats,
        "qat_tokens_per_s": round(q_tps, 1), "torch_tokens_per_s": round(t_tps, 1), "ratio": round(ratio, 4),
        "qat_peak_rss_mib": round(q_rss, 1), "torch_peak_rss_mib": round(t_rss, 1),
        "qat_loss_first": round(q["loss_first"], 6), "torch_loss_first": round(t["loss_first"], 6),
        "qat_val_loss": q.get("val_loss") if args.eval == "full" else None,
        "torch_val_loss": t.get("val_loss") if args.eval == "full" else None,
        "torch_blas_core": t.get("blas_core"),
    }))


if __name__ == "__main__":
    main()
