"""bench_generate.py: generation tokens/s of a ~20M-parameter GPT (random
weights), qat fp32 / int8 / int4 (build/bench_generate) beside PyTorch fp32
and PyTorch dynamic int8 (bench/torch_generate.py) on the same shape, prompt
and token counts, in one run, on the same threads.

Run:  /usr/bin/python3 bench/bench_generate.py [--repeats 5] [--tokens 128]
      [--threads 2] [--engine auto|qnnpack|onednn]
PyTorch's int8 engine matters a lot on this machine (Debian's torch has no
fbgemm; onednn is the default pick, qnnpack is faster at M = 1): the engine is
printed with the figures. Last line: JSON."""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    a = ap.parse_args()
    shape = ["--layers", "6", "--heads", "8", "--embd", "512", "--block", "256", "--vocab", "256"]
    common = shape + ["--prompt", str(a.prompt), "--tokens", str(a.tokens), "--repeats", str(a.repeats)]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    q = subprocess.run([os.path.join(a.build, "bench_generate")] + common, env=env, check=True,
                       capture_output=True, text=True).stdout
    print(q.rstrip())
    qat = json.loads(q.strip().splitlines()[-1])
    t = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "torch_generate.py")] + common +
                       ["--threads", str(a.threads), "--engine", a.engine, "--json"], env=env, check=True,
                       capture_output=True, text=True).stdout
    torch = json.loads(t.strip().splitlines()[-1])
    base = qat["results"]["fp32"]["tok_s"]
    print("\n%-28s %10s %10s" % ("model (%d params)" % qat["params"], "tok/s", "vs qat fp32"))
    rows = [("qat fp32 (OpenBLAS sgemv)", base), ("qat int8 per-channel", qat["results"]["int8"]["tok_s"]),
            ("qat int4 g32", qat["results"]["int4"]["tok_s"]), ("PyTorch fp32", torch["results"]["fp32"]["tok_s"]),
            ("PyTorch dynamic int8 (%s)" % torch.get("engine", "?"), torch["results"]["int8"]["tok_s"])]
    for name, v in rows:
        print("%-28s %10.1f %9.2fx" % (name, v, v / base))
    print(json.dumps({"bench": "generate", "threads": a.threads, "qat": qat, "torch": torch}))


if __name__ == "__main__":
    sys.exit(main())
