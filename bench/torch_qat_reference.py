#!/usr/bin/python3
"""torch_qat_reference.py: a PyTorch reference for qat's QAT and RTN figures,
like for like: it imports qat's FP32 checkpoint (h5py), evaluates on exactly
qat's validation windows (the whole split as consecutive windows, or for a
train.eval random config a reproduction of qat's seeded sampler), then for each
scheme applies plain round-to-nearest fake quantization with a straight-through
estimator (PyTorch code, independent of qat's quantizer but the same rule:
symmetric, scale = max|w| / (2^(b-1)-1), round half to even), reports the RTN
validation loss, fine-tunes on qat's training windows with the schedule of
qat's QAT configs (--schedule, default configs/qat-int4-g32.yaml: its
iters, lr, min_lr and warmup_iters, through qat's cosine rule), and reports
the loss again.

Run: bench/torch_qat_reference.py [--ckpt runs/tiny-shakespeare/checkpoint.h5]
     [--only int4-g32,...] [--schedule configs/qat-int4-g32.yaml] [--iters N]
     [--threads 2] [--compare compare.json]
With --compare (qat compare's compare.json), each scheme's PyTorch RTN loss is
printed beside qat's RTN row for the same bits and group (qat ptq --method rtn,
run on the integer kernels), with the largest difference; --iters 0 skips the
fine-tuning.
The FP32 line doubles as a check of qat's forward pass (same weights, same
windows). The last line printed is one JSON object.
"""

import argparse
import json
import math
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "2")
import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import yaml  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_gpt import GPT, QatRng, full_split_loss, load_qat_checkpoint, qat_eval_seed, qat_train_seed  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# name: (weight bits, group size or 0 for per-channel, int8 per-token activations)
SCHEMES = {"int8": (8, 0, False), "int4-channel": (4, 0, False), "int4-g32": (4, 32, False),
           "w8a8": (8, 0, True), "int3-g32": (3, 32, False), "int2-g32": (2, 32, False)}


def fake_quant(w, bits, group):
    """Symmetric RTN fake quantization of the rows of w with a straight-through gradient."""
    qmax = 2 ** (bits - 1) - 1
    rows, cols = w.shape
    g = cols if group == 0 else group
    wg = w.reshape(rows, cols // g, g)
    scale = wg.detach().abs().amax(-1, keepdim=True) / qmax
    inv = torch.where(scale > 0, 1.0 / scale, torch.zeros_like(scale))
    q = torch.clamp(torch.round(wg.detach() * inv), -qmax, qmax)
    return w + ((q * scale).reshape(rows, cols) - w).detach()


def lr_at(sched, it):
    """qat's schedule (optim/schedule.c): linear warmup, then cosine from lr to min_lr over the rest."""
    lr, min_lr, warmup, iters = sched
    if it < warmup:
        return lr * (it + 1) / warmup
    if it >= iters or iters - warmup <= 0:
        return min_lr
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * (it - warmup) / (iters - warmup))) * (lr - min_lr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default="runs/tiny-shakespeare/checkpoint.h5")
    ap.add_argument("--only", default="")
    ap.add_argument("--schedule", default="configs/qat-int4-g32.yaml",
                    help="a qat QAT config whose train section gives the fine-tuning schedule")
    ap.add_argument("--iters", type=int, default=None, help="steps (default: the schedule's train.iters)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compare", default="", help="qat compare's compare.json: check its RTN rows against PyTorch")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with open(os.path.join(ROOT, a.schedule)) as sf:
        st = yaml.safe_load(sf)["train"]
    if a.iters is None:
        a.iters = int(st["iters"])
    sched = (float(st["lr"]), float(st["min_lr"]), int(st.get("warmup_iters", 0)), int(st["iters"]))
    path = os.path.join(ROOT, a.ckpt)
    if not os.path.isfile(path):
        sys.exit("torch_qat_reference: no checkpoint %s (run qat train configs/tiny-shakespeare.yaml)" % path)
    f = h5py.File(path, "r")
    cfg = yaml.safe_load(f.attrs["config"])
    m, d, t = cfg["model"], cfg["data"], cfg["train"]
    B, T = t["batch_size"], m["block_size"]
    chars = f["vocab"][()]
    lut = np.full(256, -1, dtype=np.int64)
    lut[chars] = np.arange(len(chars))
    raw = np.fromfile(os.path.join(ROOT, d["path"]), dtype=np.uint8)
    tokens = torch.from_numpy(lut[raw])
    n_train = int(len(tokens) * (1.0 - float(np.float32(d["val_fraction"]))))
    train, val = tokens[:n_train], tokens[n_train:]

    def evaluate(model):
        if t.get("eval", "full") == "random":
            rng = QatRng(qat_eval_seed(t["seed"]))
            with torch.no_grad():
                return sum(model(*rng.batch(val, B, T)).item() for _ in range(t["eval_batches"])) / t["eval_batches"]
        return full_split_loss(model, val, T, B)[0]

    def fresh():
        model = GPT(len(chars), T, m["n_embd"], m["n_layer"], m["n_head"])
        load_qat_checkpoint(model, f)
        return model

    qat_rows = json.load(open(a.compare)) if a.compare else []

    def qat_rtn(bits, group, a8):
        want_group = group if group else -1
        for r in qat_rows:
            if r["method"] == ("rtn-a8-token" if a8 else "rtn") and r["w_bits"] == bits and r["group"] == want_group:
                return r["val_loss"]
        return None

    fp32 = evaluate(fresh())
    print("FP32 (qat's checkpoint in PyTorch, qat's windows): %.4f" % fp32, flush=True)
    names = [s for s in SCHEMES if not a.only or s in a.only.split(",")]
    rows = []
    for name in names:
        bits, group, a8 = SCHEMES[name]
        model = fresh()

        def qlinear(x, lin, bits=bits, group=group, a8=a8):
            if a8:  # dynamic per-token int8 activations
                shp = x.shape
                x = fake_quant(x.reshape(-1, shp[-1]), 8, 0).reshape(shp)
            return F.linear(x, fake_quant(lin.weight, bits, group), lin.bias)

        for blk in model.blocks:
            blk.linear = qlinear
        rtn = evaluate(model)
        decay = [p for p in model.parameters() if p.dim() >= 2]
        rest = [p for p in model.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                                lr=1e-4, betas=(0.9, 0.99), eps=1e-8)
        rng = QatRng(qat_train_seed(t["seed"]))
        model.train()
        for it in range(a.iters):
            for grp in opt.param_groups:
                grp["lr"] = lr_at(sched, it)
            loss = model(*rng.batch(train, B, T))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        ste = evaluate(model) if a.iters else rtn
        row = {"scheme": name, "rtn_val_loss": round(rtn, 6), "ste_val_loss": round(ste, 6)}
        q = qat_rtn(bits, group, a8)
        if q is not None:
            row["qat_rtn_val_loss"], row["rtn_diff"] = q, round(q - rtn, 6)
        rows.append(row)
        print("%-14s RTN %.4f  STE after %d iters %.4f%s" % (name, rtn, a.iters, ste,
              "" if q is None else "  qat ptq rtn %.4f (diff %+.6f)" % (q, q - rtn)), flush=True)
    out = {"bench": "torch_qat_reference", "fp32_val_loss": round(fp32, 6), "iters": a.iters, "schedule": a.schedule, "rows": rows}
    diffs = [abs(r["rtn_diff"]) for r in rows if "rtn_diff" in r]
    if diffs:
        out["rtn_max_abs_diff"] = max(diffs)
        print("qat ptq rtn vs PyTorch RTN: %d rows, largest |difference| %.6f" % (len(diffs), max(diffs)))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
