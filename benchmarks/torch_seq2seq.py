"""PyTorch reference of rnnkit's seq2seq recipe, side by side with rnnkit (each in its own process).

Same recipe in both workers: the corpus, tokenisers and vocabularies of ``rnnkit train seq2seq``
(built by rnnkit.tasks.seq2seq from the same flags), the same batches (the task's
length-bucketed batch plan drawn from ``np.random.default_rng(seed)``), the same model (the
torch module of tests/torch_refs.py: nn.Embedding, packed nn.LSTM/GRU/RNN encoder, bridge,
decoder, Luong attention, output layer, in float32) starting from the SAME initial weights
(rnnkit's initial model copied into torch by name), Adam with the same lr, global gradient-norm
clip 5, the mean masked cross-entropy per target token (+ label smoothing), the same number of
steps.  Evaluation: greedy decoding of every val source (torch: the teacher-forced forward
re-run on the growing prefix, which is exactly greedy decoding), exact match and sacreBLEU
(tokenize 13a) against the same references.  Throughput: target tokens per second of training
(evaluation excluded); both on ``--blas-threads`` threads (default 1: torch.set_num_threads in the
torch worker, the BLAS limit in rnnkit's; on the shared 2-core machine torch's default 2 threads
ran 2-3x slower than 1 while other jobs ran).

Usage (from the repository root; any ``rnnkit train seq2seq`` corpus/model flag works)::

    python benchmarks/torch_seq2seq.py --steps 300                       # the dates corpus
    python benchmarks/torch_seq2seq.py --src ../shared/data/g2p/src-train.txt --tgt ../shared/data/g2p/tgt-train.txt \\
        --val-src ../shared/data/g2p/src-val.txt --val-tgt ../shared/data/g2p/tgt-val.txt --tokens space --steps 1500

Prints one line per library: steps, seconds, target tokens/s, val exact match (= word accuracy for
g2p), BLEU, and the token error rate (edit distance over whitespace tokens / reference tokens: the
phoneme error rate for g2p's space-separated phonemes).
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
    """(task, TrainConfig, steps) from ``rnnkit train seq2seq`` flags (the rnnkit CLI's own parser)."""
    from rnnkit.cli import build_parser
    from rnnkit.cli.seq2seq import Seq2SeqSpec

    spec = Seq2SeqSpec()
    args = build_parser().parse_args(["train", "seq2seq", *argv])
    task = spec.new_task(spec.new_config(args), args)
    return task, spec.train_config(args, None, task)


def run_rnnkit(task, cfg):
    from threadpoolctl import threadpool_limits

    from rnnkit.train import Trainer

    tokens, t0 = 0, time.perf_counter()
    tr = Trainer(task, cfg, eval_split=None)
    with threadpool_limits(limits=cfg.blas_threads or None, user_api="blas"):  # as Trainer.fit does
        for _ in range(cfg.steps):
            tokens += tr.train_step()[2]
    seconds = time.perf_counter() - t0
    return tokens, seconds, task.hypotheses("val"), tr.last_loss


def run_torch(task, cfg):
    import torch
    import torch_refs

    c = task.config
    torch.set_num_threads(cfg.blas_threads or os.cpu_count())  # the same thread count as rnnkit's BLAS
    tm, forward = torch_refs.seq2seq(torch, task.model.config)
    tm.float()
    torch_refs.copy_params(torch, tm, task.model.params)  # the same initial weights
    opt = torch.optim.Adam(tm.parameters(), lr=cfg.lr)
    rng, carry = np.random.default_rng(cfg.seed), None
    tokens, t0 = 0, time.perf_counter()
    for _ in range(cfg.steps):
        b, carry = task.train_batch(rng, carry)
        logits = forward(torch.from_numpy(b.src), b.src_lengths, torch.from_numpy(b.tgt_in))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 torch.from_numpy(b.tgt_out).reshape(-1), ignore_index=0,
                                                 label_smoothing=c.label_smoothing)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tm.parameters(), cfg.clip)
        opt.step()
        tokens += int(b.tgt_mask.sum())
    seconds = time.perf_counter() - t0
    return tokens, seconds, torch_greedy(task, forward, torch), float(loss)


def torch_greedy(task, forward, torch):
    """Greedy decoding of the val split with the torch model (prefix re-run), as strings."""
    from rnnkit.data.batching import seq2seq_batch
    from rnnkit.data.vocab import BOS, EOS
    from rnnkit.tasks.textdata import in_batches

    d, out = task.data["val"], {}
    with torch.no_grad():
        for idx in in_batches(d.src_len, 256):
            b = seq2seq_batch([d.src_ids[i] for i in idx], [[EOS]] * len(idx))
            src = torch.from_numpy(b.src)
            ys = torch.full((1, len(idx)), BOS, dtype=torch.int64)
            for _ in range(task.decode_len):
                nxt = forward(src, b.src_lengths, ys)[-1].argmax(-1)
                ys = torch.cat([ys, nxt[None]])
                if (ys[1:] == EOS).any(0).all():
                    break
            for j, i in enumerate(idx):
                out[int(i)] = task.tgt_tok.detokenize(task.tgt_vocab.decode(ys[1:, j].numpy()))
    return [out[i] for i in range(len(d.src_ids))]


def edit_distance(a, b) -> int:
    """Levenshtein distance between two token lists (insertions, deletions, substitutions)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def token_error_rate(hyps, refs) -> float:
    """Sum of edit distances over whitespace tokens / reference tokens (the phoneme error rate of g2p)."""
    return sum(edit_distance(h.split(), r.split()) for h, r in zip(hyps, refs)) / sum(len(r.split()) for r in refs)


def worker(impl, argv):
    from rnnkit.tasks.seq2seq import corpus_bleu

    task, cfg = build(argv)
    tokens, seconds, hyps, last = (run_torch if impl == "torch" else run_rnnkit)(task, cfg)
    refs = task.data["val"].refs
    return {"impl": impl, "steps": cfg.steps, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "exact_match": float(np.mean([h == r for h, r in zip(hyps, refs)])),
            "bleu": corpus_bleu(hyps, refs).score, "ter": token_error_rate(hyps, refs), "last_loss": last,
            "val_pairs": len(refs)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=False)
    p.add_argument("--impl", choices=["torch", "rnnkit"], help="run one worker (the script runs both by default)")
    known, rest = p.parse_known_args()
    if known.impl:
        print(json.dumps(worker(known.impl, rest)))
        return
    rows = []
    for impl in ("rnnkit", "torch"):
        r = subprocess.run([sys.executable, __file__, "--impl", impl, *rest], capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"{impl} worker failed:\n{r.stderr}")
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    print(f"recipe: rnnkit train seq2seq {' '.join(rest)}")
    for r in rows:
        print(f"{r['impl']:>7}: {r['steps']} steps in {r['seconds']:.1f} s, {r['tokens_per_s']:,.0f} target tokens/s; "
              f"val ({r['val_pairs']} pairs, greedy) exact match {100 * r['exact_match']:.2f} %, "
              f"BLEU {r['bleu']:.2f}, token error rate {100 * r['ter']:.2f} %; last training loss {r['last_loss']:.4f}")
    print(f"tokens/s rnnkit / torch: {rows[0]['tokens_per_s'] / rows[1]['tokens_per_s']:.2f}; "
          f"BLEU rnnkit - torch: {rows[0]['bleu'] - rows[1]['bleu']:+.2f}")


if __name__ == "__main__":
    main()
