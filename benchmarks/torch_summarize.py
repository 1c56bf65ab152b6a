"""PyTorch reference of rnnkit's summarisation recipe (pointer-generator + coverage), side by side.

Same recipe in both workers (each in its own process): the corpus, tokeniser, shared vocabulary,
truncation and per-document OOV ids of ``rnnkit train summarize`` (built by rnnkit.tasks.summarize
from the same flags), the same batches (the task's length-bucketed plan drawn from
``np.random.default_rng(seed)``), the same model starting from the SAME initial weights
(tests/torch_refs.pointer: nn.Embedding, packed nn.LSTM encoder, bridge, decoder, additive
attention with coverage as a Python loop over the target steps, p_gen, ``scatter_add`` for the copy
distribution, ``torch.minimum`` for the coverage loss; autograd, float32), Adam with the same lr and
gradient-norm clip, the same number of steps or the same time limit.  Evaluation: the torch weights
are copied back into rnnkit's model and both are decoded by rnnkit's beam search and scored by
the same ROUGE (rnnkit.tasks.rouge), so only the training differs.  Throughput: summary tokens
per second of training from the second step (the first compiles rnnkit's numba loops) on
``--blas-threads`` threads (default 1, torch.set_num_threads in torch's).

Usage (from the repository root; any ``rnnkit train summarize`` corpus/model flag works)::

    python benchmarks/torch_summarize.py --data ../shared/data/dialogsum/train.jsonl \\
        --val-data ../shared/data/dialogsum/dev.jsonl --test-data ../shared/data/dialogsum/test.jsonl \\
        --src-field dialogue --ref-fields summary1,summary2,summary3 --steps 200 [--split test]

Prints one line per library: steps, seconds, summary tokens/s, last training loss, ROUGE-1/2/L F1
(mean over references) of the chosen split (``--split``, default val; ``--no-eval`` skips it).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "src"), os.path.join(HERE, "..", "tests")]


def build(argv):
    """(task, TrainConfig) from ``rnnkit train summarize`` flags (the rnnkit CLI's own parser)."""
    from rnnkit.cli import build_parser
    from rnnkit.cli.summarize import SummarizeSpec

    spec = SummarizeSpec()
    args = build_parser().parse_args(["train", "summarize", *argv])
    task = spec.new_task(spec.new_config(args), args)
    return task, spec.train_config(args, None, task)


def _limit(cfg, t0, step) -> bool:
    return step >= cfg.steps or (cfg.time_limit and time.perf_counter() - t0 >= cfg.time_limit)


def run_rnnkit(task, cfg):
    from threadpoolctl import threadpool_limits

    from rnnkit.train import Trainer

    tokens, steps, t0 = 0, 0, time.perf_counter()
    tr = Trainer(task, cfg, eval_split=None)
    with threadpool_limits(limits=cfg.blas_threads or None, user_api="blas"):  # as Trainer.fit does
        while not _limit(cfg, t0, steps):
            n = tr.train_step()[2]
            steps += 1
            if steps == 1:  # numba compiles the loops in the first step: time from the second
                t0 = time.perf_counter()
            else:
                tokens += n
    return steps, tokens, time.perf_counter() - t0, tr.last_loss


def run_torch(task, cfg):
    import torch
    import torch_refs

    torch.set_num_threads(cfg.blas_threads or os.cpu_count())
    tm, loss_fn = torch_refs.pointer(torch, task.model.config)
    tm.float()
    torch_refs.copy_params(torch, tm, task.model.params)  # the same initial weights
    opt = torch.optim.Adam(tm.parameters(), lr=cfg.lr)
    rng, carry = np.random.default_rng(cfg.seed), None
    tokens, steps, t0 = 0, 0, time.perf_counter()
    while not _limit(cfg, t0, steps):
        b, carry = task.train_batch(rng, carry)
        loss = loss_fn(b.src, b.src_lengths, b.tgt_in, b.tgt_out, b.tgt_mask)[0]
        opt.zero_grad()
        loss.backward()
        if cfg.clip:
            torch.nn.utils.clip_grad_norm_(tm.parameters(), cfg.clip)
        opt.step()
        steps += 1
        if steps == 1:  # as rnnkit's: time from the second step
            t0 = time.perf_counter()
        else:
            tokens += int(b.tgt_mask.sum())
    seconds = time.perf_counter() - t0
    task.model.load_params({n: p.detach().numpy() for n, p in tm.named_parameters()})  # rnnkit decodes both
    return steps, tokens, seconds, float(loss)


def worker(impl, argv, split):
    task, cfg = build(argv)
    steps, tokens, seconds, last = (run_torch if impl == "torch" else run_rnnkit)(task, cfg)
    out = {"impl": impl, "steps": steps, "seconds": seconds, "tokens_per_s": tokens / seconds, "last_loss": last}
    if split:
        m = task.evaluate(split, beam=task.config.beam)
        out.update({k: m[k] for k in ("rouge1", "rouge2", "rougeL", "repetition", "documents")}, split=split)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=False)
    p.add_argument("--impl", choices=["torch", "rnnkit"], help="run one worker (the script runs both by default)")
    p.add_argument("--split", default="val", choices=["val", "test"], help="the split ROUGE is reported on")
    p.add_argument("--no-eval", dest="split", action="store_const", const=None, help="training speed only")
    known, rest = p.parse_known_args()
    if known.impl:
        print(json.dumps(worker(known.impl, rest, known.split)))
        return
    rows = []
    for impl in ("rnnkit", "torch"):
        args = [sys.executable, __file__, "--impl", impl, *rest] + (["--split", known.split] if known.split else
                                                                     ["--no-eval"])
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"{impl} worker failed:\n{r.stderr}")
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    print(f"recipe: rnnkit train summarize {' '.join(rest)}")
    for r in rows:
        score = (f"; {r['split']} ({int(r['documents'])} documents, rnnkit's beam search) ROUGE-1 {r['rouge1']:.2f} "
                 f"ROUGE-2 {r['rouge2']:.2f} ROUGE-L {r['rougeL']:.2f}" if "rouge1" in r else "")
        print(f"{r['impl']:>7}: {r['steps']} steps, steps 2.. in {r['seconds']:.1f} s, "
              f"{r['tokens_per_s']:,.0f} summary tokens/s; last training loss {r['last_loss']:.4f}{score}")
    print(f"tokens/s rnnkit / torch: {rows[0]['tokens_per_s'] / rows[1]['tokens_per_s']:.2f}"
          + (f"; ROUGE-L rnnkit - torch: {rows[0]['rougeL'] - rows[1]['rougeL']:+.2f}" if "rougeL" in rows[0] else ""))


if __name__ == "__main__":
    main()
