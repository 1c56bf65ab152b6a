"""Command line: ``rnnkit COMMAND ...`` (also ``python -m rnnkit``).  The top floor: it imports
the tasks, diagnostics and benchmarks it offers explicitly; nothing in rnnkit imports it.

* ``rnnkit train TASK``: one generic handler (:mod:`.train`) driven by the task specs of
  :data:`TASK_SPECS` (:mod:`.charlm`, :mod:`.forecast`, :mod:`.longlag`, :mod:`.seq2seq`,
  :mod:`.classify`, :mod:`.summarize`)
* ``rnnkit eval CKPT``: the spec of the checkpoint's kind evaluates it
* ``sample`` (:mod:`.charlm`), ``translate`` (:mod:`.seq2seq`), ``summarize`` (:mod:`.summarize`),
  ``classify`` (:mod:`.classify`),
  ``demo`` (:mod:`.demo`), ``forecast`` (:mod:`.forecast`), ``gradflow`` and ``inspect``
  (:mod:`.diagnostics`), ``bench`` (:mod:`.bench`)

User mistakes raise :class:`rnnkit.errors.UserError` (``CheckpointError`` and ``OutputError``
included); ``main`` prints them as one line ``rnnkit: error: ...`` on stderr (under mpiexec: rank
0 only) and returns 2; a usage error is one line too, ``... (see rnnkit train charlm --help)``
(:class:`.args.Parser`).  argparse types: :mod:`.args`.
"""
from __future__ import annotations

import argparse
import os
import sys

from rnnkit._version import __version__
from rnnkit.errors import UserError
from rnnkit.io.distributed import launched_rank
from rnnkit.cli import asr
from rnnkit.cli import bench
from rnnkit.cli import charlm
from rnnkit.cli import classify
from rnnkit.cli import demo
from rnnkit.cli import diagnostics
from rnnkit.cli import export
from rnnkit.cli import forecast
from rnnkit.cli import seq2seq
from rnnkit.cli import summarize
from rnnkit.cli import sweep
from rnnkit.cli.args import Parser, nonneg_float, nonneg_int, positive_float, positive_int
from rnnkit.cli.asr import ASRSpec
from rnnkit.cli.charlm import CharLMSpec
from rnnkit.cli.classify import ClassifySpec
from rnnkit.cli.forecast import ForecastSpec
from rnnkit.cli.longlag import AddingSpec, CopySpec
from rnnkit.cli.seq2seq import Seq2SeqSpec
from rnnkit.cli.summarize import SummarizeSpec
from rnnkit.cli.train import (TaskSpec, add_task_parser, add_train_args, eval_handler, refuse_existing_checkpoint,
                    refuse_model_changes, train_config_from_args, train_handler)

#: the tasks of ``rnnkit train TASK`` and ``rnnkit eval``
TASK_SPECS = (CharLMSpec(), ForecastSpec(), AddingSpec(), CopySpec(), Seq2SeqSpec(), ClassifySpec(), SummarizeSpec(),
              ASRSpec())
#: modules adding other commands: ``register(root_subparsers)``
COMMANDS = (charlm, demo, forecast, seq2seq, classify, summarize, asr, bench, diagnostics)
#: modules adding commands that work for every task: ``register(root_subparsers, specs)``
SPEC_COMMANDS = (export, sweep)

__all__ = ["main", "build_parser", "TASK_SPECS", "TaskSpec", "train_handler", "eval_handler", "add_train_args",
           "train_config_from_args", "refuse_model_changes", "refuse_existing_checkpoint", "positive_int",
           "nonneg_int", "nonneg_float", "positive_float"]


def build_parser(specs=TASK_SPECS) -> argparse.ArgumentParser:
    parser = Parser(
        prog="rnnkit", description="Recurrent networks (RNN, LSTM, GRU) on NumPy: train, sample, evaluate.",
        epilog="Start with: rnnkit demo")
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    root = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    train = root.add_parser("train", help="train a model (rnnkit train TASK --help)",
                            description="Train a model.  Ctrl-C saves a checkpoint; --resume continues.")
    train_sub = train.add_subparsers(dest="task", metavar="TASK", required=True)
    for spec in specs:
        add_task_parser(train_sub, spec)
    ev = root.add_parser("eval", help="evaluate a checkpoint on a split or a file",
                         description="Evaluate a checkpoint: loss on a split of its corpus or on a file.")
    ev.add_argument("checkpoint", metavar="CKPT")
    ev.add_argument("--split", choices=["val", "test", "train"], default=None,
                    help="(default val; with --text: that split of FILE, else the whole FILE)")
    ev.add_argument("--text", metavar="FILE", help="evaluate on this file instead of the recorded corpus")
    ev.set_defaults(func=lambda a: eval_handler(specs, a))
    for mod in COMMANDS:
        mod.register(root)
    for mod in SPEC_COMMANDS:
        mod.register(root, specs)
    return parser


def main(argv=None, specs=TASK_SPECS) -> int:
    """Entry point of the ``rnnkit`` console script; returns the exit code.  ``specs``: the tasks
    offered by ``train`` and ``eval`` (a program may add its own :class:`TaskSpec`)."""
    root = launched_rank() == 0  # under mpiexec every rank meets the same mistake: rank 0 alone says it
    try:
        parser = build_parser(specs)
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, argparse usage errors (exit 2, one line: cli.args.Parser)
        return int(e.code or 0)
    try:
        return int(args.func(args) or 0)
    except UserError as e:  # every error a user can cause (rnnkit.errors)
        if root:
            print(f"rnnkit: error: {e}", file=sys.stderr)
        return 2
    except MemoryError as e:  # a model without a memory plan (rnnkit.train.task.ModelPlan) that does not fit
        print(f"rnnkit: error: out of memory: {str(e) or type(e).__name__}; use smaller sizes", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # a second stop signal (rnnkit.errors.Interrupted) or Ctrl-C outside training
        print("rnnkit: interrupted", file=sys.stderr)
        return getattr(e, "exit_code", 130)
    except BrokenPipeError:  # e.g. rnnkit sample ... | head
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
