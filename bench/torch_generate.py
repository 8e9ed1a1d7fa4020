"""torch_generate.py: PyTorch generation speed (tokens/s) on qat's model shape.

The PyTorch side of qat's generation benchmark: the C program measures qat's
own tokens/s, this script measures PyTorch on the same GPT shape (the model of
torch_gpt.py, random seeded weights) so both can be printed side by side.

Per mode (fp32 = float model, int8 = torch.quantization.quantize_dynamic on
nn.Linear, qint8): one untimed warm-up generation, then --repeats timed ones.
Each generation prefills --prompt tokens in one forward (timed separately, its
argmax is the first new token), then runs --tokens single-token forwards with a
KV cache, greedy argmax; tok/s = --tokens / wall time of those forwards only.
Dynamic int8 quantizes nn.Linear modules only: the tied LM head (F.linear with
wte.weight), embeddings and LayerNorms stay float.

Run:  /usr/bin/python3 bench/torch_generate.py [--layers 6 --heads 8 --embd 512
      --block 256 --vocab 256 --prompt 16 --tokens 128 --repeats 5 --threads 2
      --modes fp32,int8] [--json]
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("GLOG_minloglevel", "2")  # qnnpack logs a reduce_range warning on every call

import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_gpt import GPT


def forward(model, idx, pos0, cache):
    """Logits of the last position of idx (1, n) at positions pos0.., filling cache."""
    n = idx.shape[1]
    x = model.wte(idx) + model.wpe.weight[pos0:pos0 + n]
    for blk, (kc, vc) in zip(model.blocks, cache):
        C = x.shape[-1]
        H = blk.H
        hs = C // H
        q, k, v = blk.qkv(blk.ln1(x)).view(1, n, 3, H, hs).permute(2, 0, 3, 1, 4)
        kc[:, :, pos0:pos0 + n] = k
        vc[:, :, pos0:pos0 + n] = v
        k, v = kc[:, :, :pos0 + n], vc[:, :, :pos0 + n]
        att = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        if n > 1:  # prefill (pos0 == 0): causal mask; a single new token sees the whole cache
            att = att.masked_fill(model.mask[:n, :n], float("-inf"))
        y = torch.matmul(F.softmax(att, dim=-1), v).transpose(1, 2).reshape(1, n, C)
        x = x + blk.proj(y)
        x = x + blk.fc_out(F.gelu(blk.fc(blk.ln2(x)), approximate="tanh"))
    # LM head tied to wte: a plain F.linear, so it stays float under dynamic int8.
    return F.linear(model.ln_f(x[:, -1]), model.wte.weight)


def generate(model, prompt, tokens, shape):
    """Returns (prefill seconds, generation seconds, new tokens)."""
    L, H, C, T = shape["layers"], shape["heads"], shape["embd"], shape["block"]
    cache = [(torch.zeros(1, H, T, C // H), torch.zeros(1, H, T, C // H)) for _ in range(L)]
    t0 = time.perf_counter()
    nxt = forward(model, prompt, 0, cache).argmax(-1, keepdim=True)
    t1 = time.perf_counter()
    out = []
    for i in range(tokens):
        nxt = forward(model, nxt, prompt.shape[1] + i, cache).argmax(-1, keepdim=True)
        out.append(nxt)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, torch.cat(out, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name, default in (("layers", 6), ("heads", 8), ("embd", 512), ("block", 256), ("vocab", 256),
                          ("prompt", 16), ("tokens", 128), ("repeats", 5), ("threads", 2)):
        ap.add_argument("--" + name, type=int, default=default)
    ap.add_argument("--modes", default="fp32,int8")
    ap.add_argument("--engine", default="auto", help="quantized engine; auto = fbgemm, x86, onednn, qnnpack")
    ap.add_argument("--json", action="store_true", help="print only one JSON line")
    a = ap.parse_args()
    if a.prompt < 1 or a.prompt + a.tokens > a.block:
        ap.error("need 1 <= prompt and prompt + tokens <= block")
    modes = [m for m in a.modes.split(",") if m]
    if any(m not in ("fp32", "int8") for m in modes):
        ap.error("modes are fp32 and int8")

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    engines = torch.backends.quantized.supported_engines
    if a.engine != "auto" and a.engine not in engines:
        ap.error(f"engine {a.engine} not in {engines}")
    for eng in ("fbgemm", "x86", "onednn", "qnnpack") if a.engine == "auto" else (a.engine,):
        if eng in engines:  # fbgemm is x86's usual engine; Debian's torch 1.13 has onednn/qnnpack only
            torch.backends.quantized.engine = eng
            break
    engine = torch.backends.quantized.engine

    shape = {k: getattr(a, k) for k in ("layers", "heads", "embd", "block", "vocab", "prompt", "tokens")}
    torch.manual_seed(0)
    model = GPT(a.vocab, a.block, a.embd, a.layers, a.heads).eval()
    params = sum(p.numel() for p in model.parameters())
    prompt = torch.randint(0, a.vocab, (1, a.prompt), generator=torch.Generator().manual_seed(0))

    results = {}
    with torch.inference_mode():
        for mode in modes:
            m = model if mode == "fp32" else torch.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
            generate(m, prompt, a.tokens, shape)  # untimed warm-up
            runs, pre = [], []
            for _ in range(a.repeats):
                tp, tg, _ = generate(m, prompt, a.tokens, shape)
                runs.append(a.tokens / tg)
                pre.append(tp * 1e3)
            results[mode] = {"tok_s": statistics.median(runs), "runs": runs,
                             "engine": engine if mode == "int8" else None,
                             "prefill_ms": statistics.median(pre), "prefill_runs_ms": pre}

    if not a.json:
        print(f"torch {torch.__version__}  threads {a.threads}  quantized engine {engine}  "
              f"shape L={a.layers} H={a.heads} C={a.embd} T={a.block} V={a.vocab}  "
              f"prompt {a.prompt}  new tokens {a.tokens}  repeats {a.repeats}")
        print("int8 = dynamic qint8 on nn.Linear only; tied LM head, embeddings, LayerNorm stay fp32")
        print(f"{'mode':<6} {'params':>10} {'tok/s med':>10} {'min':>9} {'max':>9} {'prefill ms':>11}")
        for mode, r in results.items():
            print(f"{mode:<6} {params:>10} {r['tok_s']:>10.1f} {min(r['runs']):>9.1f} "
                  f"{max(r['runs']):>9.1f} {r['prefill_ms']:>11.2f}")
    print(json.dumps({"bench": "torch_generate", "threads": a.threads, "engine": engine,
                      "torch": torch.__version__, "params": params, "shape": shape, "results": results}))


if __name__ == "__main__":
    main()
