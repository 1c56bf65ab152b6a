"""``rnnkit demo``: a small LSTM char-LM learns to write Python for a couple of minutes, printing samples."""
from __future__ import annotations

import dataclasses
import math
import os
import time

from rnnkit.errors import UserError
from rnnkit.io.lock import LOCK_NAME
from rnnkit.io.outputs import write_output
from rnnkit.train.plots import plot_loss
from rnnkit.tasks.charlm import CharLM, CharLMConfig
from rnnkit.train import TrainConfig, Trainer
from rnnkit.cli.args import nonneg_float, nonneg_int, positive_int
from rnnkit.cli.charlm import describe_charlm
from rnnkit.cli.train import NOT_PLOTTED, claimed

#: marks a directory written by ``rnnkit demo`` (the next demo may replace its files)
DEMO_MARKER = ".rnnkit-demo"
#: every file ``rnnkit demo`` writes into --out
DEMO_FILES = ("last.safetensors", "best.safetensors", "metrics.jsonl", "loss.png", DEMO_MARKER)


def _is_demo_file(out: str, name: str) -> bool:
    """One of the demo's files, or a temporary file left by an interrupted write of one."""
    own = name in DEMO_FILES or name == "loss.png.tmp.png" or (
        name.endswith(".tmp") and any(name.startswith(f + ".") for f in DEMO_FILES))
    path = os.path.join(out, name)
    return own and (os.path.isfile(path) or os.path.islink(path))


def _prepare_demo_dir(out: str) -> None:
    """Make ``out`` ready for a fresh demo: a new or empty directory, or one an earlier demo wrote,
    whose files (:data:`DEMO_FILES`) are removed.  Never removes a directory or a file the demo does
    not write: a directory holding anything else, or files not marked as the demo's, is refused.
    Called while holding the directory's lock (its lock file is not the demo's to remove)."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"demo --out {out}: exists and is not a directory")
    names = sorted(n for n in os.listdir(out) if n != LOCK_NAME) if os.path.isdir(out) else []
    if names:
        other = [n for n in names if not _is_demo_file(out, n)]
        if other or DEMO_MARKER not in names:
            shown = ", ".join(repr(n) for n in (other or names)[:3]) + (", ..." if len(other or names) > 3 else "")
            raise UserError(f"demo --out {out}: not an earlier demo's directory (holds {shown}); the demo replaces "
                            f"its own files on every run and touches nothing else, so choose a new or empty --out")
        for n in names:
            os.remove(os.path.join(out, n))
    os.makedirs(out, exist_ok=True)
    write_output(os.path.join(out, DEMO_MARKER), "written by rnnkit demo; the next rnnkit demo with this --out "
                 "replaces the files listed here:\n" + "\n".join(DEMO_FILES) + "\n", "text", what="--out")


def _demo(args) -> int:
    """The demo, holding the lock of ``--out`` throughout (one writer); returns 0, or the stop
    signal's exit code (130, 143, 129) when a signal ended it (after its checkpoint)."""
    with claimed(args.out, "demo --out", DEMO_FILES) as lock:  # only the demo's own stray temps go
        return _demo_in(args, lock)


def _demo_in(args, lock) -> int:
    out = args.out
    _prepare_demo_dir(out)  # the demo starts fresh: its own earlier files go, nothing else is touched
    print(f"rnnkit demo: a character-level LSTM learns to write Python, {args.time_limit:.0f} s on this CPU.")
    lm = CharLM(CharLMConfig(cell="lstm", layers=1, hidden=args.hidden, emb=32, batch=32, bptt=64, seed=args.seed),
                max_chars=args.max_chars)
    describe_charlm(lm)
    prime = "def "

    def show(step, ev, elapsed):
        s = lm.sample(prime, 160, temperature=0.7, seed=args.seed)
        print(f"\n--- step {step}, {elapsed:.0f} s: val {ev['loss']:.3f} nats/char = {ev['bpc']:.2f} bits/char; "
              f"sample (temperature 0.7):")
        print(prime + s)

    t0 = time.perf_counter()
    show(0, lm.evaluate("val"), 0.0)
    cfg = TrainConfig(steps=20, lr=args.lr, clip=5.0, eval_every=0, seed=args.seed, progress=not args.quiet)
    trainer = Trainer(lm, cfg, out)
    trainer.out_lock = lock
    # samples after 20 steps, then at 1/32, 1/16, ..., 1/2 and the whole of the time limit
    targets = [args.time_limit / 2 ** j for j in range(5, -1, -1)]
    for target in [None] + targets:
        if target is not None:
            elapsed = time.perf_counter() - t0
            if elapsed >= target - 0.5:
                continue
            per_step = res.seconds / max(len(res.losses), 1)  # measured in the previous stage
            n = max(1, int(1.5 * (target - elapsed) / per_step))  # the time limit ends the stage
            trainer.config = dataclasses.replace(cfg, steps=trainer.step + n, time_limit=target - elapsed)
        res = trainer.fit()
        ev = ({"loss": res.evals[-1]["val_loss"], "bpc": res.evals[-1]["val_bpc"]} if res.evals
              else lm.evaluate("val"))
        show(trainer.step, ev, time.perf_counter() - t0)
        if trainer.exit_code:
            break
    png = plot_loss(trainer.log_path, os.path.join(out, "loss.png"), title="rnnkit demo: char-LM on Python code",
                    ylabel="cross-entropy (nats/char)")
    ev = lm.evaluate("val")
    print(f"\nval loss after {trainer.step} steps ({time.perf_counter() - t0:.0f} s): {ev['loss']:.3f} nats/char = "
          f"{ev['bpc']:.2f} bits/char (uniform guessing: {math.log2(len(lm.vocab)):.2f} bits/char)")
    print(f"checkpoint: {trainer.last_path}")
    print(f"loss curve: {png}" if png else NOT_PLOTTED)
    print(f"next: rnnkit sample {trainer.last_path} --prime 'class ' --length 400")
    return trainer.exit_code


def register(root) -> None:
    """``rnnkit demo``."""
    m = root.add_parser("demo", help="train a small char-LM on Python's own source for ~2 minutes",
                        description="Train a small LSTM char-LM on the standard library's .py files, printing "
                                    "samples as it learns, then the val bits/char, checkpoint and loss curve.")
    m.add_argument("--time-limit", dest="time_limit", type=nonneg_float, default=120.0, help="seconds (default 120)")
    m.add_argument("--out", default=os.path.join("runs", "demo"), help="output directory (default runs/demo)")
    m.add_argument("--hidden", type=positive_int, default=128, help="LSTM hidden size (default 128)")
    m.add_argument("--lr", type=nonneg_float, default=4e-3, help="Adam learning rate (default 4e-3)")
    m.add_argument("--max-chars", dest="max_chars", type=positive_int, default=1_000_000,
                   help="corpus size in characters (default 1000000)")
    m.add_argument("--seed", type=nonneg_int, default=0, help="seed of weights, batches and samples (default 0)")
    m.add_argument("--quiet", action="store_true", help="no progress bar")
    m.set_defaults(func=_demo)
