#!/usr/bin/python3
"""bench_qat.py: quantization-aware training on the reference benchmark.

Two measurements, each in one run of this program:

  overhead  Step time of QAT (configs/qat-int4-g32.yaml: weight-only int4 g32,
            LSQ) against FP32 training (configs/tiny-shakespeare.yaml), both
            for --iters steps on --threads threads, alternating --repeats times;
            prints median tokens/s of each and the fake-quant overhead
            (target: under 15%).
  seeds     Trains the FP32 reference (configs/tiny-shakespeare.yaml) with
            each seed of --seeds (1337 reuses runs/tiny-shakespeare when it is
            complete) and prints the full-split validation loss of each, their
            mean and standard deviation: the seed spread that differences
            between quantized models must beat.
  ft-seeds  Fine-tunes the reference FP32 checkpoint with each config of
            --configs and, as float+ft, in float with the first config's
            schedule, once per fine-tuning seed of --seeds (train.seed: the
            order of the batches), and prints each run's validation loss, its
            gap to that seed's float+ft, the mean and standard deviation of
            the gaps, and the per-seed difference of every config from the
            first: the seed spread that a small difference must beat. All
            configs must share the schedule.
  quality   Fine-tunes the reference FP32 checkpoint (runs/tiny-shakespeare/,
            from `qat train configs/tiny-shakespeare.yaml`) with every
            configs/qat-*.yaml, and prints per scheme the validation loss of
            round-to-nearest before fine-tuning (iter 0) and after the QAT
            iterations, and against float+ft: the same fine-tuning (steps and
            learning-rate schedule, one float+ft run per distinct schedule)
            in float, so the effect of the extra steps is not credited to
            QAT. The -kd rows distil from the float model (quant.distill).

Run from any directory:
  bench/bench_qat.py overhead [--iters 40] [--repeats 3] [--threads 2]
  bench/bench_qat.py seeds [--seeds 1337,1,2]
  bench/bench_qat.py ft-seeds [--configs configs/qat-int3-g32-kd.yaml,configs/qat-mixed.yaml] [--seeds 1337,1,2]
  bench/bench_qat.py quality [--only int4-g32,int2-g32] [--ckpt runs/tiny-shakespeare/checkpoint.h5]
The last line printed is one JSON object.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CKPT = "runs/tiny-shakespeare/checkpoint.h5"
QAT = os.path.join(ROOT, "build", "qat")



def die(msg):
    print("bench_qat: " + msg, file=sys.stderr)
    sys.exit(1)


def run(args, out):
    # bench_qat decides what to rerun, so an earlier run in out is replaced
    cmd = [QAT, "train"] + args + ["--set", "out_dir=" + out, "--overwrite"]
    p = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        tail = p.stdout.decode(errors="replace").strip().splitlines()
        die("qat failed: %s: %s" % (" ".join(args), tail[-1] if tail else ""))
    with open(os.path.join(ROOT, out, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(ROOT, out, "metrics.jsonl")) as f:
        metrics = [json.loads(l) for l in f if l.strip()]
    return summary, metrics


def overhead(a):
    common = ["--set", "train.iters=%d" % a.iters, "--set", "train.eval_every=1000000", "--set",
              "train.eval=random", "--set", "train.eval_batches=1", "--set", "train.threads=%d" % a.threads]
    fp32, qat = [], []
    tmp = tempfile.mkdtemp(prefix="bench_qat_")
    try:
        for r in range(a.repeats):
            print("run %d/%d: fp32, then int4 g32 QAT ..." % (r + 1, a.repeats), file=sys.stderr, flush=True)
            s, _ = run(["configs/tiny-shakespeare.yaml"] + common, os.path.join(tmp, "fp32"))
            fp32.append(s["tokens_per_s"])
            # from scratch: the overhead does not depend on the weights
            s, _ = run(["configs/qat-int4-g32.yaml", "--set", "quant.init_from="] + common, os.path.join(tmp, "qat"))
            qat.append(s["tokens_per_s"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    f, q = statistics.median(fp32), statistics.median(qat)
    ov = f / q - 1.0  # extra step time of QAT relative to FP32
    print("%-28s %12s %14s" % ("training", "tokens/s", "step ms"))
    print("%-28s %12.0f %14.2f" % ("fp32", f, 4096e3 / f))
    print("%-28s %12.0f %14.2f" % ("QAT int4 g32 (weight-only)", q, 4096e3 / q))
    print("fake-quant overhead: %.1f%% of the FP32 step time (target < 15%%)" % (100 * ov))
    print(json.dumps({"bench": "qat_overhead", "iters": a.iters, "repeats": a.repeats, "threads": a.threads,
                      "fp32_tokens_per_s": round(f, 1), "qat_int4_g32_tokens_per_s": round(q, 1),
                      "overhead": round(ov, 4)}))


SCHEDULE_KEYS = ("iters", "lr", "min_lr", "warmup_iters")


def schedule(cfg):
    """The fine-tuning schedule of a QAT config: its train section's iters, lr, min_lr and warmup_iters."""
    vals, in_train = {}, False
    with open(os.path.join(ROOT, cfg)) as f:
        for line in f:
            if not line.startswith(" "):
                in_train = line.startswith("train:")
                continue
            k, _, v = line.split("#")[0].strip().partition(":")
            if in_train and k in SCHEDULE_KEYS:
                vals[k] = v.strip()
    missing = [k for k in SCHEDULE_KEYS if k not in vals]
    if missing:
        die("%s: train.%s not set (bench_qat reads the schedule from the file's block-style train section)"
            % (cfg, missing[0]))
    return tuple((k, vals[k]) for k in SCHEDULE_KEYS)


def sched_text(sc):
    d = dict(sc)
    return "%s steps, lr %s to %s, warmup %s" % (d["iters"], d["lr"], d["min_lr"], d["warmup_iters"])


def quality(a):
    ckpt = os.path.join(ROOT, a.ckpt)
    if not os.path.isfile(ckpt):
        die("no FP32 checkpoint at %s: run `build/qat train configs/tiny-shakespeare.yaml` first" % ckpt)
    p = subprocess.run([QAT, "eval", ckpt, "--json"], cwd=ROOT, stdout=subprocess.PIPE)
    if p.returncode != 0:
        die("qat eval %s failed" % ckpt)
    fp32 = json.loads(p.stdout)["val_loss"]
    # (row name, config, extra --set): the LSQ configs, plain STE at 3 and 2 bits, and distillation from the
    # float model at 4, 3 and 2 bits
    schemes = [(s, s, []) for s in ["int8", "int4-channel-lsq", "int4-g32", "w8a8", "int3-g32", "int2-g32"]]
    schemes += [(s + "-ste", s, ["--set", "quant.estimator=ste", "--set", "quant.scale_init=minmax"]) for s in ["int3-g32", "int2-g32"]]
    schemes += [(s + "-kd", s + "-kd", []) for s in ["int4-g32", "int3-g32", "int2-g32"]]
    if a.only:
        schemes = [x for x in schemes if x[0] in a.only.split(",")]
    # the float+ft baseline of each distinct schedule among them: the same steps in float
    scheds = []
    for _, cfg, _ in schemes:
        sc = schedule("configs/qat-%s.yaml" % cfg)
        if sc not in scheds:
            scheds.append(sc)
    # the configs' own init_from unless another checkpoint is asked for, so that qat compare, which
    # runs the same configs into the same out_dirs, reuses these runs
    init = [] if a.ckpt == DEFAULT_CKPT else ["--set", "quant.init_from=" + ckpt]
    ft_of = {}
    for i, sc in enumerate(scheds):
        print("fine-tuning float+ft (%s) ..." % sched_text(sc), file=sys.stderr, flush=True)
        out = "runs/qat-float-ft" + ("" if len(scheds) == 1 else "-%d" % (i + 1))
        sets = ["--set", "quant.weight.bits=0"] + sum((["--set", "train.%s=%s" % kv] for kv in sc), [])
        summary, _ = run(["configs/qat-int8.yaml"] + init + sets, out)
        ft_of[sc] = summary["val_loss"]
    rows = [{"scheme": "float+ft" + ("" if len(scheds) == 1 else " (%s)" % sched_text(sc)), "rtn_val_loss": None,
             "qat_val_loss": ft_of[sc], "schedule": sched_text(sc), "vs_float_ft": 0.0} for sc in scheds]
    for s, cfg, extra in schemes:
        print("fine-tuning %s ..." % s, file=sys.stderr, flush=True)
        out = os.path.join(ROOT, "runs", "qat-" + s.replace("+", "-"))
        if not extra:  # the config's own out_dir, as the config names it (relative to the project root)
            out = "runs/qat-" + cfg
        summary, metrics = run(["configs/qat-%s.yaml" % cfg] + init + extra, out)
        rtn = next((m["val_loss"] for m in metrics if m.get("iter") == 0), None)
        sc = schedule("configs/qat-%s.yaml" % cfg)
        rows.append({"scheme": s, "rtn_val_loss": rtn, "qat_val_loss": summary["val_loss"],
                     "tokens_per_s": summary["tokens_per_s"], "schedule": sched_text(sc),
                     "vs_float_ft": round(summary["val_loss"] - ft_of[sc], 6)})
    ft = ft_of[scheds[0]] if len(scheds) == 1 else None
    print("FP32 reference model: val_loss %.4f on the whole validation split; float+ft (the same fine-tuning in "
          "float, per schedule): %s" % (fp32, ", ".join("%.4f (%s)" % (ft_of[sc], sched_text(sc)) for sc in scheds)))
    print("%-20s %10s %10s %12s" % ("scheme", "RTN", "QAT", "vs float+ft"))
    fmt = lambda v, f="%.4f": f % v if v is not None else "-"
    for r in rows:
        print("%-20s %10s %10s %12s" % (r["scheme"], fmt(r["rtn_val_loss"]), fmt(r["qat_val_loss"]),
                                        fmt(r["vs_float_ft"], "%+.4f")))
    print(json.dumps({"bench": "qat_quality", "fp32_val_loss": fp32, "float_ft_val_loss": ft, "rows": rows}))


def seeds(a):
    losses = []
    for sd in [int(x) for x in a.seeds.split(",")]:
        out = os.path.join(ROOT, "runs", "tiny-shakespeare" if sd == 1337 else "tiny-shakespeare-seed%d" % sd)
        done = os.path.isfile(os.path.join(out, "summary.json")) and os.path.isfile(os.path.join(out, "checkpoint.h5"))
        if not done:
            print("training the FP32 model with seed %d into %s ..." % (sd, out), file=sys.stderr, flush=True)
            run(["configs/tiny-shakespeare.yaml", "--set", "train.seed=%d" % sd], out)
        p = subprocess.run([QAT, "eval", os.path.join(out, "checkpoint.h5"), "--json"], cwd=ROOT, stdout=subprocess.PIPE)
        if p.returncode != 0:
            die("qat eval of %s failed" % out)
        r = json.loads(p.stdout)
        losses.append(r["val_loss"])
        print("seed %-6d val_loss %.4f (%d tokens, %s)" % (sd, r["val_loss"], r["tokens"], r["eval"]), flush=True)
    mean = statistics.mean(losses)
    sd = statistics.stdev(losses) if len(losses) > 1 else 0.0
    print("FP32 over %d seeds: mean %.4f, standard deviation %.4f, range %.4f" %
          (len(losses), mean, sd, max(losses) - min(losses)))
    print(json.dumps({"bench": "fp32_seeds", "seeds": a.seeds, "val_losses": losses, "mean": round(mean, 6),
                      "std": round(sd, 6)}))


def ft_seeds(a):
    cfgs = a.configs.split(",")
    sc = schedule(cfgs[0])
    for c in cfgs[1:]:
        if schedule(c) != sc:
            die("%s: its schedule (%s) is not %s's (%s)" % (c, sched_text(schedule(c)), cfgs[0], sched_text(sc)))
    sds = [int(x) for x in a.seeds.split(",")]
    sets = lambda sd: ["--set", "train.seed=%d" % sd]
    ft, loss = {}, {c: {} for c in cfgs}
    for sd in sds:
        print("seed %d: float+ft (%s) ..." % (sd, sched_text(sc)), file=sys.stderr, flush=True)
        summary, _ = run([cfgs[0], "--set", "quant.weight.bits=0", "--set", "quant.distill.weight=0",
                          "--set", "quant.budget.bpw=0"] + sets(sd), "runs/ft-seeds/float-ft-s%d" % sd)
        ft[sd] = summary["val_loss"]
        for c in cfgs:
            name = os.path.splitext(os.path.basename(c))[0]
            print("seed %d: %s ..." % (sd, name), file=sys.stderr, flush=True)
            summary, _ = run([c] + sets(sd), "runs/ft-seeds/%s-s%d" % (name, sd))
            loss[c][sd] = summary["val_loss"]
    sdev = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
    print("%-28s %s %10s %8s" % ("config", " ".join("%16s" % ("seed %d" % sd) for sd in sds), "mean gap", "std"))
    print("%-28s %s" % ("float+ft", " ".join("%16s" % ("%.4f" % ft[sd]) for sd in sds)))
    rows = []
    for c in cfgs:
        gaps = [loss[c][sd] - ft[sd] for sd in sds]
        diff = [loss[c][sd] - loss[cfgs[0]][sd] for sd in sds]
        print("%-28s %s %+10.4f %8.4f" % (os.path.basename(c), " ".join("%16s" % ("%.4f (%+.4f)" % (loss[c][sd], g))
                                                                         for sd, g in zip(sds, gaps)),
                                          statistics.mean(gaps), sdev(gaps)))
        if c != cfgs[0]:
            print("  minus %s per seed: %s (mean %+.4f, standard deviation %.4f)" %
                  (os.path.basename(cfgs[0]), ", ".join("%+.4f" % d for d in diff), statistics.mean(diff), sdev(diff)))
        rows.append({"config": c, "val_losses": [loss[c][sd] for sd in sds], "gaps": [round(g, 6) for g in gaps],
                     "mean_gap": round(statistics.mean(gaps), 6), "std_gap": round(sdev(gaps), 6),
                     "minus_first": [round(d, 6) for d in diff]})
    print(json.dumps({"bench": "qat_ft_seeds", "seeds": sds, "schedule": sched_text(sc),
                      "float_ft": [ft[sd] for sd in sds], "rows": rows}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["overhead", "quality", "seeds", "ft-seeds"])
    ap.add_argument("--seeds", default="1337,1,2")
    ap.add_argument("--configs", default="configs/qat-int3-g32-kd.yaml,configs/qat-mixed.yaml")
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="")
    ap.add_argument("--ckpt", default=DEFAULT_CKPT)
    a = ap.parse_args()
    if not os.access(QAT, os.X_OK):
        die("no qat binary at %s (cmake -S . -B build && cmake --build build)" % QAT)
    {"overhead": overhead, "quality": quality, "seeds": seeds, "ft-seeds": ft_seeds}[a.mode](a)


if __name__ == "__main__":
    main()
