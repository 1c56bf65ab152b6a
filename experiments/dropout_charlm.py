"""Overfitting and variational dropout: a 2x512 LSTM char-LM on tinyshakespeare (issue 13's results).

The runs (same recipe, same steps, same seed; each on one core)::

    head -c 300000 ../shared/data/tinyshakespeare.txt > runs/r13/shakespeare300k.txt
    R="--text runs/r13/shakespeare300k.txt --layers 2 --hidden 512 --steps 800 --eval-every 25 \\
       --log-every 25 --seed 0 --blas-threads 1 --no-progress"
    rnnkit train charlm $R --out runs/r13/none
    rnnkit train charlm $R --input-dropout 0.25 --recurrent-dropout 0.25 --out runs/r13/variational
    rnnkit train charlm $R --dropout 0.25 --out runs/r13/between
    python benchmarks/torch_charlm.py --text runs/r13/shakespeare300k.txt --hidden 512 --layers 2 \\
       --steps 800 --eval-every 25 --seed 0 --dropout 0.25 --threads 1 --metrics runs/r13/torch-between.jsonl

then this script draws every run's validation loss (solid) and mean training loss over each
25-step interval (dashed, dropout on) in one PNG and prints a markdown table: best val loss
and its step, final val loss, final train loss, the gap val - train at the end::

    python experiments/dropout_charlm.py --out runs/r13/dropout_charlm.png \\
        "no dropout=runs/r13/none/metrics.jsonl" \\
        "variational 0.25 (input + recurrent)=runs/r13/variational/metrics.jsonl" \\
        "between layers 0.25=runs/r13/between/metrics.jsonl" \\
        "PyTorch, between layers 0.25=runs/r13/torch-between.jsonl"

Each RUN is ``LABEL=FILE``: an ``rnnkit train`` metrics.jsonl (records with ``loss`` and
``val_loss``) or a ``benchmarks/torch_charlm.py --metrics`` file (``train_loss`` and ``val_loss``).
"""
from __future__ import annotations

import argparse
import json
import math

from rnnkit.train.plots import plot_runs


def read_run(path: str) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(train, val): lists of (step, loss in nats/char) from one metrics file."""
    train, val = [], []
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
            except json.JSONDecodeError:  # a partial last line of a running job
                continue
            if "event" in r:
                continue
            if "val_loss" in r:
                val.append((r["step"], r["val_loss"]))
            loss = r.get("train_loss", r.get("loss"))
            if isinstance(loss, float):
                train.append((r["step"], loss))
    return train, val


def summary(label: str, train, val) -> str:
    """One markdown row: best val (step), final val, final train, final gap; nats/char."""
    best_step, best = min(val, key=lambda sv: sv[1])
    last_step, last = val[-1]
    tr = train[-1][1] if train else math.nan
    return (f"| {label} | {best:.4f} ({best / math.log(2):.3f} bits) at {best_step} | {last:.4f} at {last_step} "
            f"| {tr:.4f} | {last - tr:+.4f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", metavar="LABEL=FILE")
    ap.add_argument("--out", required=True, help="PNG path")
    ap.add_argument("--max-step", type=int, default=0,
                    help="only records up to this step (runs stopped by a time limit: the same steps for all)")
    ap.add_argument("--title", default="2x512 LSTM char-LM, tinyshakespeare (first 300,000 chars), seed 0")
    args = ap.parse_args()
    print("| run | best val loss (nats/char) at step | final val loss | final train loss | val - train |")
    print("|---|---|---|---|---|")
    runs = {}
    for spec in args.runs:
        label, path = spec.split("=", 1)
        train, val = read_run(path)
        if args.max_step:
            train, val = ([sv for sv in xs if sv[0] <= args.max_step] for xs in (train, val))
        runs[label] = train, val
        print(summary(label, *runs[label]))
    png = plot_runs(runs, args.out, args.title, xlabel="optimizer step (batch 32 x bptt 100)", ymax=2.6)
    print("plot:", png or "not drawn (no matplotlib)")

if __name__ == "__main__":
    main()
