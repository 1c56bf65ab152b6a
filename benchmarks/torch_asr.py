"""PyTorch side by side with ``rnnkit train asr``: the same recipe, both in this process, one after the other.

Same in both: the corpus, features, CMVN, SpecAugment and batches of rnnkit.tasks.asr (the task's
``train_batch`` drawn from ``np.random.default_rng(seed)`` for torch; rnnkit's Trainer draws its
own from the same seed), the same initial weights (rnnkit's initial model copied into torch by
name: the recurrent layers use PyTorch's parameter names), a (bi)directional ``nn.LSTM`` stack ->
``nn.Linear`` -> log-softmax, ``nn.CTCLoss(blank=0, reduction="mean", zero_infinity=True)``,
Adam with the same lr and cosine schedule (``CosineAnnealingLR``, eta_min = --min-lr), global
gradient-norm clip 5, float32, the same number of steps, ``--threads`` each (default 1: torch.set_num_threads(1);
rnnkit's Trainer limits BLAS to 1 thread).  Evaluation: greedy CTC decoding of the test split,
CER and WER with jiwer, isolated-digit accuracy and connected-digit CER.  Throughput: feature
frames (10 ms) per second of training, evaluation excluded.

Usage (from the repository root)::

    python benchmarks/torch_asr.py --fsdd ../shared/data/fsdd --steps 3000

The manifest recipe (``--manifest``: 16 kHz, 80 log-mel, 4 x 256, batch 16, Adam 1e-3 without decay when
``--hidden``, ``--layers``, ``--batch`` are 0 and ``--schedule constant``), e.g. on the stand-in corpus of
``experiments/digit_manifests.py``, both on two threads::

    python benchmarks/torch_asr.py --manifest M/train.tsv --val-manifest M/val.tsv --test-manifest M/test.tsv \
        --hidden 0 --layers 0 --batch 0 --lr 1e-3 --schedule constant --steps 100 --threads 2
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "src")]

from rnnkit.tasks.asr import ASRTask, ASRTaskConfig  # noqa: E402
from rnnkit.train import TrainConfig, Trainer, read_metrics  # noqa: E402


def torch_model(torch, task):
    c, m = task.config, task.model
    rnn = torch.nn.LSTM(m.config.input_size, c.hidden, c.layers, bidirectional=c.bidirectional)
    head = torch.nn.Linear(m.head.params["weight"].shape[1], m.head.params["weight"].shape[0])
    with torch.no_grad():
        for name, p in rnn.named_parameters():
            p.copy_(torch.from_numpy(m.encoder.params[name]))
        head.weight.copy_(torch.from_numpy(m.head.params["weight"]))
        head.bias.copy_(torch.from_numpy(m.head.params["bias"]))
    return rnn, head


def torch_forward(torch, rnn, head, x, lengths):
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths),
                                                     enforce_sorted=False)
    out, _ = rnn(packed)
    h, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=x.shape[0])
    return head(h).log_softmax(-1)


def scores(task, hyps, split="test"):
    import jiwer

    d = task.data[split]
    iso = np.flatnonzero(d.isolated)
    con = np.flatnonzero(~d.isolated)
    out = {"cer": jiwer.cer(d.texts, hyps), "wer": jiwer.wer(d.texts, hyps)}
    if iso.size:
        out["accuracy"] = float(np.mean([hyps[i] == d.texts[i] for i in iso]))
        out["cer_connected"] = jiwer.cer([d.texts[i] for i in con], [hyps[i] for i in con])
    return out


def run_torch(task, args):
    import torch
    from rnnkit.data.features import pad_frames, stack_frames

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rnn, head = torch_model(torch, task)
    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=args.lr)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.steps, eta_min=args.min_lr)
             if args.schedule == "cosine" else torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0))
    ctc = torch.nn.CTCLoss(blank=0, reduction="mean", zero_infinity=True)
    rng, carry, frames, seconds = np.random.default_rng(args.seed), None, 0, 0.0
    rnn.train()
    for step in range(args.steps):
        (x, lengths, ids, _, n), carry = task.train_batch(rng, carry)
        t0 = time.perf_counter()
        lp = torch_forward(torch, rnn, head, x, lengths)
        targets = torch.from_numpy(np.concatenate(ids))
        loss = ctc(lp, targets, torch.from_numpy(lengths), torch.tensor([a.size for a in ids]))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        sched.step()
        seconds += time.perf_counter() - t0
        frames += n
        if step % 500 == 0:
            print(f"torch step {step}: loss {loss.item():.4f}", flush=True)
    rnn.eval()
    d = task.data["test"]
    hyps = [None] * len(d.texts)
    with torch.no_grad():
        for start in range(0, len(d.texts), 64):
            idx = list(range(start, min(start + 64, len(d.texts))))
            x, lengths = pad_frames([stack_frames(d.feats[i], task.config.stack) for i in idx])
            lp = torch_forward(torch, rnn, head, x, lengths).numpy()
            for i, h in zip(idx, task.decode(lp, lengths)):
                hyps[i] = h
    return frames / seconds, seconds, scores(task, hyps)


def run_rnnkit(task, args):
    cfg = TrainConfig(steps=args.steps, lr=args.lr, schedule=args.schedule, min_lr=args.min_lr,
                      eval_every=args.steps, seed=args.seed, progress=False, blas_threads=args.threads)
    t0 = time.perf_counter()
    trainer = Trainer(task, cfg, out_dir=args.out)
    res = trainer.fit()
    rates = [r["tokens_per_s"] for r in read_metrics(trainer.log_path) if "tokens_per_s" in r]
    _, hyps = task.hypotheses("test")
    return float(np.mean(rates)), time.perf_counter() - t0, scores(task, hyps), res


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fsdd", default="../shared/data/fsdd")
    p.add_argument("--connected", type=int, default=2000)
    p.add_argument("--manifest", help="TSV/JSON-lines training manifest instead of spoken digits")
    p.add_argument("--val-manifest")
    p.add_argument("--test-manifest")
    p.add_argument("--batch", type=int, default=0, help="0: the task's default for the corpus")
    p.add_argument("--schedule", choices=["cosine", "constant"], default="cosine")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads and rnnkit's --blas-threads")
    p.add_argument("--hidden", type=int, default=96)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--min-lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--which", choices=["both", "torch", "rnnkit"], default="both")
    p.add_argument("--out", default="runs/torch_asr_rnnkit")
    args = p.parse_args()
    config = ASRTaskConfig(fsdd=os.path.abspath(args.fsdd), connected=args.connected, hidden=args.hidden,
                           layers=args.layers, batch=args.batch, seed=args.seed, manifest=args.manifest,
                           val_manifest=args.val_manifest, test_manifest=args.test_manifest)
    rows = []
    if args.which in ("both", "torch"):
        task = ASRTask(config)
        rows.append(("torch", *run_torch(task, args)))
    if args.which in ("both", "rnnkit"):
        task = ASRTask(config)
        rows.append(("rnnkit", *run_rnnkit(task, args)[:3]))
    print(f"{'library':8s} {'steps':>6s} {'frames/s':>10s} {'train s':>8s} {'test CER':>9s} {'WER':>7s} "
          f"{'isolated acc':>12s} {'connected CER':>13s}")
    for name, rate, secs, m in rows:
        print(f"{name:8s} {args.steps:6d} {rate:10,.0f} {secs:8.0f} {100 * m['cer']:8.2f}% {100 * m['wer']:6.2f}% "
              f"{100 * m.get('accuracy', math.nan):11.2f}% {100 * m.get('cer_connected', math.nan):12.2f}%")


if __name__ == "__main__":
    main()
