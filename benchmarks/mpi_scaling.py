"""Data-parallel scaling of a char-LM-sized LSTM over MPI: tokens/s with 1, 2, ... ranks.

    .venv/bin/python benchmarks/mpi_scaling.py [--ranks 1,2] [--steps 20] [--batch 32] [--bptt 100]
                                          [--hidden 128] [--layers 2] [--emb 64] [--vocab 65]

Each rank count runs in its own ``mpiexec -n N`` job (the venv's mpiexec), one BLAS thread per
rank (threadpoolctl).  The global batch (``--batch`` parallel streams x ``--bptt`` steps) is
split across the ranks exactly as rnnkit.io.distributed does for training (each rank: its share of
the streams, one Allreduce of the flat gradient buffer per step, then clip + Adam).  Columns:

    tokens/s      global tokens per second (rank 0's wall time; the Allreduce synchronises)
    speedup       tokens/s over the 1-rank run
    step ms       wall time of one step (forward + backward + Allreduce + update)
    allreduce ms  time inside the Allreduce per step (includes waiting for the slowest rank)
    share         allreduce ms / step ms
    synced ms     one Allreduce of the same buffer right after a Barrier: the communication
                  cost alone, without load imbalance
    MB            bytes reduced per step

Float32, random token ids (throughput only).  On a shared machine the numbers are noisy:
compare the rows of one run.

``--cli``: the same measurement through the real command, ``mpiexec -n N rnnkit train charlm``
(the Trainer, the default corpus of ``--max-chars`` characters, ``--steps`` + 3 warm-up steps,
no evaluation until the end): tokens/s from metrics.jsonl (the training steps after the
warm-up) and the Allreduce share from its stop event (all steps; no "synced" column).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FIELDS = ("batch", "bptt", "hidden", "layers", "emb", "vocab", "steps")


def worker(a) -> None:
    from threadpoolctl import threadpool_limits

    from rnnkit import LSTM, Embedding, Linear, Module, softmax_cross_entropy
    from rnnkit.io.distributed import Communicator
    from rnnkit.nn.optim import Adam, clip_grad_norm

    class CharLM(Module):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.emb = Embedding(a.vocab, a.emb, seed=rng)
            self.rnn = LSTM(a.emb, a.hidden, num_layers=a.layers, seed=rng)
            self.head = Linear(a.hidden, a.vocab, seed=rng)

    comm = Communicator.from_environment()
    with comm.guard(), threadpool_limits(limits=1, user_api="blas"):
        net = CharLM()
        comm.broadcast_params(net.params)
        opt = Adam(net.params, net.grads, lr=1e-3)
        ids = np.random.default_rng(1).integers(0, a.vocab, (a.bptt + 1, a.batch))
        part = comm.shard(a.batch)
        x, y = ids[:-1, part], ids[1:, part]

        def step():
            net.zero_grad()
            h, _ = net.rnn(net.emb(x))
            loss, d_logits = softmax_cross_entropy(net.head(h), y)
            net.emb.backward(net.rnn.backward(net.head.backward(d_logits))[0])
            comm.allreduce_grads(net.grads, loss, count=x.size)
            clip_grad_norm(net.grads, 5.0)
            opt.step()

        for _ in range(3):  # warm-up (numba compilation, buffers)
            step()
        comm.agree(False)  # start together
        comm.stats.allreduce_seconds, calls0 = 0.0, comm.stats.allreduce_calls
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
        wall = time.perf_counter() - t0
        synced = []
        for _ in range(10):
            if comm.size > 1:
                comm._comm.Barrier()
            t1 = time.perf_counter()
            comm.allreduce_grads(net.grads, 0.0, count=1)
            synced.append(time.perf_counter() - t1)
        if comm.is_root:
            n = comm.stats.allreduce_calls - calls0 - 10
            print(json.dumps({"ranks": comm.size, "wall": wall, "steps": a.steps, "tokens": a.batch * a.bptt,
                              "allreduce": comm.stats.allreduce_seconds - sum(synced), "calls": n,
                              "synced": float(np.median(synced)) if comm.size > 1 else 0.0,
                              "bytes": comm.stats.allreduce_bytes // max(comm.stats.allreduce_calls, 1)}))


def cli_run(a, n: int, out: str) -> dict:
    """``mpiexec -n n rnnkit train charlm`` with the sizes of ``a``; its numbers from metrics.jsonl."""
    mpiexec = Path(sys.executable).parent / "mpiexec"
    steps = a.steps + 3
    cmd = [str(mpiexec), "-n", str(n), sys.executable, "-m", "rnnkit", "train", "charlm", "--max-chars",
           str(a.max_chars), "--hidden", str(a.hidden), "--layers", str(a.layers), "--emb", str(a.emb), "--batch",
           str(a.batch), "--bptt", str(a.bptt), "--steps", str(steps), "--eval-every", "0", "--log-every", "1",
           "--no-progress", "--out", out]
    run = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    if run.returncode != 0:
        sys.exit(f"mpi_scaling: {' '.join(cmd)} failed:\n{run.stderr[-2000:]}")
    recs = [json.loads(line) for line in Path(out, "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in recs if "tokens_per_s" in r and r["step"] > 3]
    tokens = a.batch * a.bptt
    wall = sum(tokens / r["tokens_per_s"] for r in timed)
    stop = recs[-1]
    per_step = stop.get("allreduce_s", 0.0) / max(stop.get("allreduce_calls", 1), 1)
    return {"wall": wall, "steps": len(timed), "tokens": tokens, "allreduce": per_step * len(timed),
            "synced": 0.0, "bytes": 0}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", default="1,2")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--bptt", type=int, default=100)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--emb", type=int, default=64)
    p.add_argument("--vocab", type=int, default=65)
    p.add_argument("--cli", action="store_true", help="measure 'mpiexec -n N rnnkit train charlm' instead")
    p.add_argument("--max-chars", dest="max_chars", type=int, default=200_000, help="--cli: corpus size")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        worker(a)
        return
    mpiexec = Path(sys.executable).parent / "mpiexec"
    if not mpiexec.exists():
        sys.exit(f"mpi_scaling: no mpiexec next to {sys.executable}; install the extra rnnkit[mpi]")
    args = [f"--{k}={getattr(a, k)}" for k in FIELDS]
    vocab = "of the corpus" if a.cli else a.vocab
    print(("rnnkit train charlm (the Trainer): " if a.cli else "")
          + f"char-LM LSTM: vocab {vocab}, emb {a.emb}, {a.layers}x{a.hidden}, global batch {a.batch} streams "
          f"x bptt {a.bptt} = {a.batch * a.bptt} tokens/step, float32, {a.steps} timed steps, 1 BLAS thread/rank")
    print(f"{'ranks':>5} {'tokens/s':>10} {'speedup':>8} {'step ms':>8} {'allreduce ms':>13} {'share':>6} "
          f"{'synced ms':>10} {'MB':>6}")
    base = None
    for n in [int(r) for r in a.ranks.split(",")]:
        if a.cli:
            with tempfile.TemporaryDirectory() as d:
                r = cli_run(a, n, os.path.join(d, "run"))
        else:
            run = subprocess.run([str(mpiexec), "-n", str(n), sys.executable, __file__, "--worker", *args],
                                 capture_output=True, text=True, env=dict(os.environ))
            if run.returncode != 0:
                sys.exit(f"mpi_scaling: {n} ranks failed:\n{run.stderr[-2000:]}")
            r = json.loads(run.stdout.strip().splitlines()[-1])
        rate = r["tokens"] * r["steps"] / r["wall"]
        base = base or rate
        step_ms = 1e3 * r["wall"] / r["steps"]
        ar_ms = 1e3 * r["allreduce"] / r["steps"] if n > 1 else 0.0
        print(f"{n:>5} {rate:>10.0f} {rate / base:>8.2f} {step_ms:>8.1f} {ar_ms:>13.2f} {ar_ms / step_ms:>6.1%} "
              f"{1e3 * r['synced']:>10.3f} {r['bytes'] / 1e6:>6.2f}")


if __name__ == "__main__":
    main()
