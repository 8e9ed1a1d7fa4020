#!/usr/bin/env python3
"""bench_gguf.py: the reference models in llama.cpp. For the FP32 reference
model and the QAT configs given (default: q8_0, q4_0 and q4_1 trained in
llama.cpp's block formats, and qat's own int4 g32 LSQ model, which exports as
q4_0 with half-precision scales), trains what is missing (qat train, reusing a
complete run), exports each with `qat export --format gguf`, and scores each
file twice on the whole validation split: qat's evaluation of the checkpoint
(fake quantization) and llama.cpp's (node-llama-cpp 3.21.1, through
tests/llamacpp/eval.mjs, with an F32 KV cache). Prints a Markdown table.

    bench/bench_gguf.py [CONFIG.yaml ...]

Needs runs/tiny-shakespeare (qat train configs/tiny-shakespeare.yaml) and
tests/llamacpp/node_modules (./quickstart test installs it).
"""
import json
import os
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QAT = os.path.join(ROOT, "build", "qat")
EVAL = os.path.join(ROOT, "tests", "llamacpp", "eval.mjs")
OUT = os.path.join(ROOT, "runs", "gguf")
DEFAULT = ["configs/qat-q8_0.yaml", "configs/qat-q4_0.yaml", "configs/qat-q4_1.yaml", "configs/qat-int4-g32.yaml"]


def sh(args, **kw):
    p = subprocess.run(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if p.returncode != 0:
        sys.exit("bench_gguf: %s failed: %s" % (" ".join(args), p.stderr.decode(errors="replace").strip()))
    return p.stdout.decode()


def val_split(corpus, frac):
    """The validation split as qat cuts it: tokens from floor(n * (1 - frac)) on,
    frac a float32 as the config stores it."""
    data = open(os.path.join(ROOT, corpus), "rb").read()
    f32 = struct.unpack("f", struct.pack("f", frac))[0]
    return data[int(len(data) * (1.0 - f32)):]


def main():
    configs = sys.argv[1:] or DEFAULT
    os.makedirs(OUT, exist_ok=True)
    ref = os.path.join(ROOT, "runs", "tiny-shakespeare", "checkpoint.h5")
    if not os.path.isfile(ref):
        sys.exit("bench_gguf: %s missing: qat train configs/tiny-shakespeare.yaml" % ref)
    val = os.path.join(OUT, "val.txt")
    with open(val, "wb") as f:
        f.write(val_split("../shared/data/tinyshakespeare.txt", 0.1))
    rows = [("FP32 reference", "runs/tiny-shakespeare/checkpoint.h5", "f32")]
    for c in configs:
        out_dir = None
        for line in open(os.path.join(ROOT, c)):
            if line.startswith("out_dir:"):
                out_dir = line.split(":", 1)[1].split("#")[0].strip()
        ckpt = os.path.join(out_dir, "checkpoint.h5")
        summary = os.path.join(ROOT, out_dir, "summary.json")
        done = os.path.isfile(os.path.join(ROOT, ckpt)) and os.path.isfile(summary)
        if not done:
            print("bench_gguf: training %s" % c, file=sys.stderr)
            sh([QAT, "train", c, "--overwrite"])
        rows.append((os.path.basename(c)[:-5], ckpt, None))
    print("| model | GGUF tensors | file bytes | qat (fake quant) | llama.cpp | difference |")
    print("|---|---|---|---|---|---|")
    for name, ckpt, _ in rows:
        gguf = os.path.join(OUT, name.replace(" ", "-") + ".gguf")
        rep = sh([QAT, "export", ckpt, "--format", "gguf", "-o", gguf])
        types = sorted({t for t in ("q8_0", "q4_0", "q4_1") if (" %s " % t) in rep}) or ["f32"]
        if "fallback" in rep:
            types.append("f32 fallback")
        e = json.loads(sh([QAT, "eval", ckpt, "--json"]))
        q = e["val_loss"]
        l = json.loads(sh(["node", EVAL, "nll", gguf, val, str(e["block_size"])]))
        if l["tokens"] != e["tokens"]:
            sys.exit("bench_gguf: llama.cpp scored %d tokens, qat %d" % (l["tokens"], e["tokens"]))
        size = os.path.getsize(gguf)
        print("| %s | %s | %d | %.4f | %.4f | %+.1e |" % (name, ", ".join(types), size, q, l["nll"], l["nll"] - q))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
