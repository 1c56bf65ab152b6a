"""PyTorch reference of rnnkit's char-LM recipe, to check that rnnkit's *training* is right.

Same recipe as ``rnnkit train charlm`` with its defaults: embedding 64, 2-layer
LSTM 128, linear to the vocabulary, batch 32, bptt 100, Adam lr 2e-3, global
gradient-norm clip 5, contiguous 90/5/5 split, the same batching (32 parallel
streams of length L = (n_train - 1) // 32, consecutive windows of 100 steps,
hidden state carried detached across windows and reset to zero when the
streams start over) and the same evaluation (the whole val split as 32 streams,
state carried, mean over every predicted character).

Usage (from the repository root)::

    python benchmarks/torch_charlm.py --steps 1500 --eval-every 250
    python benchmarks/torch_charlm.py --impl rnnkit --steps 1500 --eval-every 250   # same recipe in rnnkit
    python benchmarks/torch_charlm.py --impl rnnkit --init-from-torch ...   # ... from torch's initial weights
    python benchmarks/torch_charlm.py --hidden 512 --dropout 0.25 --threads 1 --metrics torch.jsonl ...

``--dropout P`` is ``torch.nn.LSTM(dropout=P)`` (between the layers, training only; rnnkit:
``--dropout P`` of ``rnnkit train charlm``); ``--metrics FILE`` appends one JSON line per
evaluation: step, the mean training loss since the previous evaluation, val loss, seconds.

Prints ``step N  val_loss X nats/char  (T s)`` at every evaluation.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TEXT = os.path.join(HERE, "..", "..", "shared", "data", "tinyshakespeare.txt")  # ../shared/data from the repo root


def load_splits(path):
    sys.path.insert(0, os.path.join(HERE, "..", "src"))
    from rnnkit.data.text import Vocab, load_text, split_ids

    text = load_text(path)
    vocab = Vocab.from_text(text)
    return vocab, split_ids(vocab.encode(text)), text


def torch_model(args, V):
    """The reference model, initialised by torch.manual_seed(args.seed)."""
    import torch
    from torch import nn

    torch.manual_seed(args.seed)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(V, args.emb)
            self.rnn = nn.LSTM(args.emb, args.hidden, num_layers=args.layers, dropout=args.dropout)
            self.head = nn.Linear(args.hidden, V)

        def forward(self, x, state):
            h, state = self.rnn(self.emb(x), state)
            return self.head(h), state

    return Model()


def run_torch(args, vocab, splits):
    import torch
    from torch import nn

    V, B, T = len(vocab), args.batch, args.bptt
    model = torch_model(args, V)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    train = torch.from_numpy(splits["train"].astype(np.int64))
    L = (len(train) - 1) // B
    n_windows = L // T
    starts = torch.arange(B) * L

    def evaluate(ids):
        ids = torch.from_numpy(ids.astype(np.int64))
        b = min(B, len(ids) - 1)
        Lv = (len(ids) - 1) // b
        X = ids[: b * Lv].reshape(b, Lv).T
        Y = ids[1 : b * Lv + 1].reshape(b, Lv).T
        total, state = 0.0, None
        model.eval()  # no dropout while evaluating
        with torch.no_grad():
            for p in range(0, Lv, T):
                logits, state = model(X[p : p + T], state)
                total += float(nn.functional.cross_entropy(logits.reshape(-1, V), Y[p : p + T].reshape(-1),
                                                           reduction="sum"))
        model.train()
        return total / (b * Lv)

    state, t0, window = None, time.perf_counter(), []
    for step in range(args.steps):
        k = step % n_windows
        if k == 0:
            state = None
        idx = starts[None, :] + k * T + torch.arange(T)[:, None]
        x, y = train[idx], train[idx + 1]
        logits, state = model(x, state)
        state = tuple(s.detach() for s in state)
        loss = nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        window.append(loss.item())
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            v = evaluate(splits["val"])
            record(args, step + 1, sum(window) / len(window), v, time.perf_counter() - t0)
            window = []
            print(f"torch   step {step + 1:6d}  train_loss {loss.item():.4f}  val_loss {v:.4f} nats/char "
                  f"({v / math.log(2):.3f} bits/char)  ({time.perf_counter() - t0:.0f} s)", flush=True)
    # as ``rnnkit train charlm`` counts: every training token over the run's time, evaluations included
    seconds = time.perf_counter() - t0
    print(f"stopped at step {args.steps} after {seconds:.0f} s, {args.steps * B * T / seconds:,.0f} tokens/s")


def record(args, step, train_loss, val_loss, seconds):
    """Append one evaluation to ``--metrics`` (JSON lines), if given."""
    if args.metrics:
        with open(args.metrics, "a") as f:
            f.write(json.dumps(dict(step=step, train_loss=train_loss, val_loss=val_loss, seconds=seconds)) + "\n")


def run_rnnkit(args, vocab, splits, text):
    from rnnkit.tasks.charlm import CharLM, CharLMConfig
    from rnnkit.train import Trainer, TrainConfig

    cfg = CharLMConfig(cell="lstm", layers=args.layers, hidden=args.hidden, emb=args.emb, batch=args.batch,
                       bptt=args.bptt, seed=args.seed, dropout=args.dropout)
    lm = CharLM(cfg, text)
    if args.init_from_torch:  # start from exactly the reference's initial weights
        tm = torch_model(args, len(vocab))
        lm.model.load_params({k: v.detach().numpy().copy() for k, v in tm.state_dict().items()})
    t0 = time.perf_counter()

    def on_eval(trainer, rec):
        v = rec["val_loss"]
        print(f"rnnkit  step {rec['step']:6d}  train_loss {trainer.last_loss:.4f}  val_loss {v:.4f} nats/char "
              f"({v / math.log(2):.3f} bits/char)  ({time.perf_counter() - t0:.0f} s)", flush=True)

    tr = Trainer(lm, TrainConfig(steps=args.steps, lr=args.lr, clip=args.clip, eval_every=args.eval_every,
                                 seed=args.seed, progress=False, log_every=0))
    tr.fit(on_eval=on_eval)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--text", default=DEFAULT_TEXT)
    ap.add_argument("--impl", choices=["torch", "rnnkit"], default="torch")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--bptt", type=int, default=100)
    ap.add_argument("--emb", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--clip", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dropout", type=float, default=0.0, help="between the LSTM layers, training only")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads, 0 = torch's default")
    ap.add_argument("--metrics", help="--impl torch: append one JSON line per evaluation to this file")
    ap.add_argument("--init-from-torch", action="store_true",
                    help="rnnkit: copy the initial weights of the torch reference (same --seed)")
    args = ap.parse_args()
    vocab, splits, text = load_splits(args.text)
    print(f"{args.impl}: {os.path.normpath(args.text)}: {sum(len(s) for s in splits.values())} chars, vocab "
          f"{len(vocab)}, train/val/test {[len(s) for s in splits.values()]}", flush=True)
    if args.impl == "torch":
        if args.threads:
            import torch
            torch.set_num_threads(args.threads)
        run_torch(args, vocab, splits)
    else:
        run_rnnkit(args, vocab, splits, text)


if __name__ == "__main__":
    main()
