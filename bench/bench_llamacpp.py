#!/usr/bin/env python3
"""bench_llamacpp.py: qat against llama.cpp on the same GGUF files, in one
run: a GPT of about 20M parameters with random weights (vocab 256, 6 layers,
width 512, context 1024) written by build/bench_llamacpp as F32, Q8_0,
Q4_0 and IQ4_NL; prompt processing (pp, 512 tokens in one forward) and generation (tg,
128 tokens one at a time) in tokens/s, medians of the repeats, qat
(build/bench_llamacpp run, its inference engine: the engine's own float GEMM,
the integer kernels) beside llama.cpp (node-llama-cpp 3.21.1's prebuilt CPU
libraries, bench/llamacpp_speed.mjs). qat runs on --threads threads;
llama.cpp runs on 1 .. --threads threads and its best figure per cell is the
peer's (on this 2-core machine its generation at 2 threads is 4x slower than
at 1: its threads meet at a barrier per op, and node's own threads take the
second core). The runtimes alternate per file so that a change in the
machine's load hits both.

    bench/bench_llamacpp.py [--threads 2] [--repeats 5] [--prompt 512] [--tokens 128]
                            [--layers 6 --heads 8 --embd 512 --block 1024] [--formats f32,q8_0,q4_0,iq4_nl]

A wide, shallow shape (e.g. --layers 2 --heads 16 --embd 2048 --block 512
--prompt 256) makes the prompt's time almost all matrix products: its pp
ratio is then the ratio of the two runtimes' GEMMs at M = PROMPT.

Needs tests/llamacpp/node_modules (./quickstart test installs it). Last line: JSON.
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "bench_llamacpp")
MJS = os.path.join(ROOT, "bench", "llamacpp_speed.mjs")
OUT = os.path.join(ROOT, "runs", "speed")


def run(args, threads):
    # qat as its CLI runs: libgomp's default wait policy, whose threads spin a
    # while at a barrier before they sleep, as ggml's threadpool polls
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env.pop("OMP_WAIT_POLICY", None)
    p = subprocess.run(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        sys.exit("bench_llamacpp: %s failed: %s" % (" ".join(args), p.stderr.decode(errors="replace").strip()))
    return json.loads(p.stdout.decode().strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--embd", type=int, default=512)
    ap.add_argument("--block", type=int, default=1024)
    ap.add_argument("--formats", default="f32,q8_0,q4_0,iq4_nl")
    a = ap.parse_args()
    shape = ["--layers", str(a.layers), "--heads", str(a.heads), "--embd", str(a.embd), "--block", str(a.block)]
    out = OUT if shape == ["--layers", "6", "--heads", "8", "--embd", "512", "--block", "1024"] else \
        os.path.join(OUT, "L%d-H%d-C%d-T%d" % (a.layers, a.heads, a.embd, a.block))
    os.makedirs(out, exist_ok=True)
    subprocess.run([BIN, "write", out] + shape, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    print("a GPT of %d layers, width %d, %d heads, context %d, random weights" % (a.layers, a.embd, a.heads, a.block))
    print("same GGUF file in both; qat on %d threads, llama.cpp on its best of 1..%d; pp %d tokens, tg %d tokens, "
          "medians of %d" % (a.threads, a.threads, a.prompt, a.tokens, a.repeats))
    print("| weights | file MiB | qat pp tok/s | llama.cpp pp | ratio | qat tg tok/s | llama.cpp tg | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    # block formats twice: as qat runs the file by default, llama.cpp's own
    # arithmetic (q8_0 activation blocks), and with float activations (--act-format none)
    res = {}
    fmts = a.formats.split(",")
    for fmt, act in [(f, x) for f in fmts for x in (("q8_0",) if f == "f32" else ("q8_0", "none"))]:
        f = os.path.join(out, fmt + ".gguf")
        q = run([BIN, "run", f, "--prompt", str(a.prompt), "--tokens", str(a.tokens), "--repeats", str(a.repeats)] +
                (["--act-format", "none"] if act == "none" else []), a.threads)
        ls = [run(["node", MJS, f, str(a.prompt), str(a.tokens), str(a.repeats), str(t)], t)
              for t in range(1, a.threads + 1)]
        lp, lt = max(ls, key=lambda r: r["pp"]), max(ls, key=lambda r: r["tg"])
        name = fmt + (", qat with float activations" if fmt != "f32" and act == "none" else "")
        res[name] = {"qat": q, "llama.cpp": ls}
        print("| %s | %.1f | %.0f | %.0f (%d thr.) | %.2fx | %.1f | %.1f (%d thr.) | %.2fx |" % (
            name, os.path.getsize(f) / 1048576.0, q["pp"], lp["pp"], lp["threads"], q["pp"] / lp["pp"], q["tg"], lt["tg"],
            lt["threads"], q["tg"] / lt["tg"]))
        sys.stdout.flush()
    print(json.dumps({"bench": "qat_vs_llamacpp", "threads": a.threads, "kernels": next(iter(res.values()))["qat"]["kernels"],
                      "results": res}))


if __name__ == "__main__":
    main()
