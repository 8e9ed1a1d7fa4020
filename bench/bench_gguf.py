#!/usr/bin/env python3
"""bench_gguf.py: the reference models in llama.cpp. Rows:
  - the FP32 reference model, and it fine-tuned in float for the QAT runs'
    steps (float+ft, the fair baseline);
  - QAT: the configs given (default: q8_0, q4_0, q4_1 and iq4_nl trained in
    llama.cpp's block formats, and qat's own int4 g32 LSQ model, which
    exports as q4_0 with half-precision scales), trained when missing or
    older than their config file; the formats of the other rows are those
    of the configs given;
  - PTQ of the FP32 model in the same formats: qat ptq --method rtn, gptq
    and awq --format F; and rtn and gptq of float+ft at 4 bits, so that QAT
    is also measured against PTQ of an equally trained float model;
  - llama.cpp's own quantizer (llama-quantize's llama_model_quantize, through
    bench/llama_quantize.py) of the FP32 model's F32 GGUF: what a user
    without qat does.
Each is exported with `qat export --format gguf` and scored on the whole
validation split three ways: qat's evaluation of the checkpoint (as trained),
qat's evaluation of the GGUF file (as qat eval runs one by default: as
llama.cpp does, integer dots against q8_0 activation blocks), and llama.cpp's own (node-llama-cpp 3.21.1,
tests/llamacpp/eval.mjs, F32 KV cache), with the share of positions where
qat and llama.cpp predict the same next token. Prints a Markdown table.

    bench/bench_gguf.py [CONFIG.yaml ...]

Needs runs/tiny-shakespeare (qat train configs/tiny-shakespeare.yaml) and
tests/llamacpp/node_modules (./quickstart test installs it); the float+ft row
appears when bench/bench_qat.py has made runs/qat-float-ft.
"""
import json
import os
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_quantize  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QAT = os.path.join(ROOT, "build", "qat")
EVAL = os.path.join(ROOT, "tests", "llamacpp", "eval.mjs")
OUT = os.path.join(ROOT, "runs", "gguf")
DEFAULT = ["configs/qat-q8_0.yaml", "configs/qat-q4_0.yaml", "configs/qat-q4_1.yaml", "configs/qat-iq4_nl.yaml",
           "configs/qat-int4-g32.yaml"]
FORMATS = ("q4_0", "q8_0", "q4_1", "iq4_nl")


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


def out_dir_of(config):
    for line in open(os.path.join(ROOT, config)):
        if line.startswith("out_dir:"):
            return line.split(":", 1)[1].split("#")[0].strip()
    sys.exit("bench_gguf: %s has no out_dir" % config)


def trained(config):
    """The checkpoint of a config's run, trained when it is missing or older than the config file."""
    out_dir = out_dir_of(config)
    ckpt = os.path.join(out_dir, "checkpoint.h5")
    summary = os.path.join(ROOT, out_dir, "summary.json")
    if not (os.path.isfile(os.path.join(ROOT, ckpt)) and os.path.isfile(summary)) or \
            os.path.getmtime(summary) < os.path.getmtime(os.path.join(ROOT, config)):
        print("bench_gguf: training %s" % config, file=sys.stderr)
        sh([QAT, "train", config, "--overwrite"])
    return ckpt


def blocks_of(report):
    types = sorted({t for t in FORMATS if (" %s " % t) in report}) or ["f32"]
    return types + (["f32 fallback"] if "fallback" in report else [])


def gguf_types(gguf):
    """The tensor types of a GGUF file (llama-quantize picks some tensors' types itself), from qat inspect."""
    types = {}
    for t in json.loads(sh([QAT, "inspect", gguf, "--json"]))["tensors"]:
        types.setdefault(t["type"], []).append(t["name"])
    blocks = [k for k in types if k != "f32"] or ["f32"]
    main = max(blocks, key=lambda k: len(types[k]))
    return [main] + ["%s %s" % (" ".join(t.split(".")[0] for t in n), k) for k, n in sorted(types.items())
                     if k not in (main, "f32")]


def score(name, ckpt, gguf, types, val):
    """One table row: qat's losses of the checkpoint and of the file, llama.cpp's, top-1 agreement."""
    e = json.loads(sh([QAT, "eval", ckpt, "--json"])) if ckpt else None
    top1 = os.path.join(OUT, "top1.txt")
    # qat eval of a GGUF file runs it as llama.cpp does: q8_0 activation blocks on the integer kernels
    g = json.loads(sh([QAT, "eval", gguf, "--data", val, "--json", "--top1", top1]))
    l = json.loads(sh(["node", EVAL, "nll", gguf, val, str(g["block_size"])]))
    if l["tokens"] != g["tokens"]:
        sys.exit("bench_gguf: llama.cpp scored %d tokens, qat %d" % (l["tokens"], g["tokens"]))
    ours = [int(x) for x in open(top1).read().split()]
    agree = sum(a == b for a, b in zip(ours, l["top1"])) / len(ours)
    print("| %s | %s | %d | %s | %.4f | %.4f | %+.1e | %.2f%% |" % (
        name, ", ".join(types), os.path.getsize(gguf), "%.4f" % e["val_loss"] if e else "-", g["val_loss"], l["nll"],
        l["nll"] - g["val_loss"], 100 * agree))
    sys.stdout.flush()


def main():
    configs = sys.argv[1:] or DEFAULT
    os.makedirs(OUT, exist_ok=True)
    ref = os.path.join("runs", "tiny-shakespeare", "checkpoint.h5")
    if not os.path.isfile(os.path.join(ROOT, ref)):
        sys.exit("bench_gguf: %s missing: qat train configs/tiny-shakespeare.yaml" % ref)
    val = os.path.join(OUT, "val.txt")
    with open(val, "wb") as f:
        f.write(val_split("../shared/data/tinyshakespeare.txt", 0.1))
    print("| model | GGUF tensors | file bytes | qat checkpoint | qat of the GGUF | llama.cpp | llama.cpp - qat of the GGUF "
          "| same top-1 |")
    print("|---|---|---|---|---|---|---|---|")
    f32 = os.path.join(OUT, "FP32-reference.gguf")
    score("FP32 reference", ref, f32, blocks_of(sh([QAT, "export", ref, "--format", "gguf", "-o", f32])), val)
    ft = os.path.join("runs", "qat-float-ft", "checkpoint.h5")  # bench/bench_qat.py makes it
    if os.path.isfile(os.path.join(ROOT, ft)):
        gguf = os.path.join(OUT, "float-ft.gguf")
        score("float+ft", ft, gguf, blocks_of(sh([QAT, "export", ft, "--format", "gguf", "-o", gguf])), val)
    # per format: QAT, then PTQ of the FP32 model, then llama.cpp's own quantizer of its F32 file
    def in_format(c, fmt):
        return ("format: " + fmt) in open(os.path.join(ROOT, c)).read() or (fmt == "q4_0" and "int4-g32" in c)
    for fmt in [f for f in FORMATS if any(in_format(c, f) for c in configs)]:
        rows = [(os.path.basename(c)[:-5], trained(c)) for c in configs if in_format(c, fmt)]
        for method in ("rtn", "gptq", "awq") if fmt != "q8_0" else ("rtn",):
            out = os.path.join("runs", "gguf", "ptq-%s-%s.h5" % (method, fmt))
            sh([QAT, "ptq", ref, "--method", method, "--format", fmt, "-o", out])
            rows.append(("PTQ %s %s" % (method, fmt), out))
        # PTQ of the float model trained as long as the QAT rows: what QAT's extra steps are worth without QAT
        for method in ("rtn", "gptq") if os.path.isfile(os.path.join(ROOT, ft)) and fmt != "q8_0" else ():
            out = os.path.join("runs", "gguf", "ptq-%s-%s-of-float-ft.h5" % (method, fmt))
            sh([QAT, "ptq", ft, "--method", method, "--format", fmt, "-o", out])
            rows.append(("PTQ %s %s of float+ft" % (method, fmt), out))
        for name, ckpt in rows:
            gguf = os.path.join(OUT, name.replace(" ", "-") + ".gguf")
            score(name, ckpt, gguf, blocks_of(sh([QAT, "export", ckpt, "--format", "gguf", "-o", gguf])), val)
        gguf = os.path.join(OUT, "llama-quantize-%s.gguf" % fmt)
        llama_quantize.quantize(os.path.join(ROOT, f32), os.path.join(ROOT, gguf), fmt)
        score("llama-quantize %s of the FP32 GGUF" % fmt, None, gguf, gguf_types(gguf), val)


if __name__ == "__main__":
    main()
