"""Repetition and ROUGE of summarize checkpoints with and without n-gram blocking (issue 22's table).

For each checkpoint (a ``rnnkit train summarize`` run: with or without coverage) and each
``--no-repeat-ngram`` value, decode a split with the checkpoint's beam search settings otherwise
and print ROUGE-1/2/L F1 (mean over references), the lead, and the share of summaries with a
repeated trigram (rnnkit.tasks.rouge.repetition_rate)::

    .venv/bin/python experiments/summarize_repetition.py runs/pgcov/best.safetensors \\
        runs/attn/best.safetensors --split test --blocking 3,0 [--beam 4]

Writes nothing; one line per (checkpoint, blocking).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))


def main(argv=None):
    from threadpoolctl import threadpool_limits

    from rnnkit.tasks.summarize import SummarizeTask
    from rnnkit.train import load_task

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--split", default="test", choices=["val", "test"])
    p.add_argument("--blocking", default="3,0", help="comma-separated --no-repeat-ngram values (default 3,0)")
    p.add_argument("--beam", type=int, default=None, help="beam size (default: each checkpoint's)")
    a = p.parse_args(argv)
    with threadpool_limits(1, user_api="blas"):
        for ck in a.checkpoints:
            task = load_task(ck, SummarizeTask)
            c = task.config
            for n in (int(x) for x in a.blocking.split(",")):
                t0 = time.perf_counter()
                m = task.evaluate(a.split, beam=a.beam or c.beam, no_repeat_ngram=n)
                print(f"{ck}: copy {c.copy}, coverage {c.coverage}; {a.split} ({int(m['documents'])} documents), "
                      f"beam {a.beam or c.beam}, no-repeat-ngram {n}: ROUGE-1 {m['rouge1']:.2f} ROUGE-2 "
                      f"{m['rouge2']:.2f} ROUGE-L {m['rougeL']:.2f} (max over refs: ROUGE-L {m['rougeL_max']:.2f}); "
                      f"lead ROUGE-L {m['lead_rougeL']:.2f}; repeated trigram in {100 * m['repetition']:.1f} % of "
                      f"summaries ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
