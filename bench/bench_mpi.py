#!/usr/bin/python3
"""bench_mpi.py: data-parallel training on MPI against one process, and the
scaling model on paper.

Runs the reference config (default configs/tiny-shakespeare.yaml, 818,048
parameters, batch 32 x 128 tokens) for --iters steps in two layouts on the
same cores, alternately --repeats times:

  * 1 process x 2 threads:  build/qat train CONFIG
  * 2 processes x 1 thread: mpirun -np 2 build/qat train CONFIG (each rank
    takes 16 of the 32 sequences; gradients summed by MPI_Allreduce)

and prints the median tokens/s of each (the whole job's: qat's summary.json,
median over steps), their ratio, and the time per step spent in MPI's
collectives (summary.json comm_ms_per_step: the gradient sum, plus the
evaluation's two numbers).

Then the scaling model for this model and for a 124M-parameter GPT-2 on N
nodes with links of 10 and 100 Gbit/s: a ring allreduce moves
2 (N - 1) / N x bytes over each node's link (plus 2 (N - 1) latencies of
--latency-us each), the gradient is 4 bytes per parameter and is sent after
the backward pass (no overlap), and each node keeps one node's batch (weak
scaling: the step's compute time stays the one measured here). The 124M
model's step time is its 6 x params FLOPs per token at the FLOP rate this
machine achieved on the reference model, for a batch of 8 x 1024 tokens per
node, and again on a node of --fast-tflops (default 2 TFLOP/s, a many-core
server), where the allreduce starts to show. Efficiency = compute /
(compute + allreduce).

Run (from any directory; needs Open MPI's mpirun and a qat built with MPI):
  /usr/bin/python3 bench/bench_mpi.py [--iters 40] [--repeats 3] [--config C]
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


def die(msg):
    print("bench_mpi: " + msg, file=sys.stderr)
    sys.exit(1)


def run(args, ranks):
    out = tempfile.mkdtemp(prefix="bench_mpi_")
    try:
        threads = 2 // ranks
        cmd = [args.qat, "train", args.config, "--set", "train.iters=%d" % args.iters, "--set", "out_dir=" + out,
               "--set", "train.eval_every=100000", "--set", "train.threads=%d" % threads]
        if ranks > 1:
            mpi = ["mpirun", "--oversubscribe", "-np", str(ranks), "--bind-to", "none"]
            if os.geteuid() == 0:
                mpi.append("--allow-run-as-root")
            cmd = mpi + cmd
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        p = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if p.returncode != 0:
            tail = p.stdout.decode(errors="replace").strip().splitlines()
            die("%s failed (exit %d): %s" % (" ".join(cmd[:6]), p.returncode, tail[-1] if tail else ""))
        with open(os.path.join(out, "summary.json")) as f:
            return json.load(f)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--config", default=os.path.join(ROOT, "configs/tiny-shakespeare.yaml"))
    ap.add_argument("--qat", default=os.path.join(ROOT, "build/qat"))
    ap.add_argument("--latency-us", type=float, default=20.0, help="per-message latency of the model's links")
    ap.add_argument("--fast-tflops", type=float, default=2.0,
                    help="the 124M model also on nodes this fast (a many-core server), where the links start to matter")
    args = ap.parse_args()
    if not shutil.which("mpirun"):
        die("mpirun not found: install the Debian package openmpi-bin")

    one, two, comm = [], [], []
    for r in range(args.repeats):
        print("1 process x 2 threads (run %d/%d) ..." % (r + 1, args.repeats), file=sys.stderr)
        s1 = run(args, 1)
        print("2 processes x 1 thread (run %d/%d) ..." % (r + 1, args.repeats), file=sys.stderr)
        s2 = run(args, 2)
        if s2.get("ranks") != 2:
            die("the mpirun run did not train on 2 ranks (is qat built with MPI?)")
        one.append(s1["tokens_per_s"]), two.append(s2["tokens_per_s"]), comm.append(s2["comm_ms_per_step"])
    params = s1["params"]
    t1, t2, c = statistics.median(one), statistics.median(two), statistics.median(comm)
    print("%d params, %d steps, median of %d runs" % (params, args.iters, args.repeats))
    print("%-26s %10s" % ("layout", "tokens/s"))
    print("%-26s %10.0f" % ("1 process x 2 threads", t1))
    print("%-26s %10.0f" % ("2 processes x 1 thread", t2))
    print("ratio 2x1 / 1x2: %.2f; MPI collectives %.2f ms per step" % (t2 / t1, c))

    # ---- the scaling model ----
    with open(args.config) as f:
        import yaml
        cfg = yaml.safe_load(f)
    B, T = cfg["train"]["batch_size"], cfg["model"]["block_size"]
    step_ref = B * T / t1  # seconds per step on one node (this machine, 2 threads)
    flops = t1 * 6.0 * params  # achieved FLOP/s, counting 6 x params per token
    models = [("reference (%d params)" % params, params, step_ref),
              ("GPT-2 124M", 124e6, 8 * 1024 * 6.0 * 124e6 / flops),
              ("GPT-2 124M, %g TFLOP/s node" % args.fast_tflops, 124e6, 8 * 1024 * 6.0 * 124e6 / (args.fast_tflops * 1e12))]
    print("\nscaling model: ring allreduce of fp32 gradients after the backward pass, one node's batch per node")
    print("%-34s %10s %10s | %6s %12s %12s" % ("model", "MB/step", "step s", "nodes", "eff 10 Gb/s", "eff 100 Gb/s"))
    rows = []
    for name, n, step in models:
        mb = 4.0 * n / 1e6
        for nodes in (2, 8, 64):
            eff = []
            for gbit in (10, 100):
                comm_s = 2.0 * (nodes - 1) / nodes * mb * 1e6 / (gbit * 1e9 / 8) + 2 * (nodes - 1) * args.latency_us * 1e-6
                eff.append(step / (step + comm_s))
            print("%-34s %10.1f %10.3f | %6d %11.1f%% %11.1f%%" % (name, mb, step, nodes, 100 * eff[0], 100 * eff[1]))
            rows.append({"model": name, "mb_per_step": round(mb, 2), "step_s": round(step, 4), "nodes": nodes,
                         "eff_10g": round(eff[0], 4), "eff_100g": round(eff[1], 4)})
    print(json.dumps({"bench": "mpi", "iters": args.iters, "repeats": args.repeats, "tokens_per_s_1x2": t1,
                      "tokens_per_s_2x1": t2, "ratio": round(t2 / t1, 4), "comm_ms_per_step": c,
                      "achieved_gflops": round(flops / 1e9, 1), "model": rows}))


if __name__ == "__main__":
    main()
