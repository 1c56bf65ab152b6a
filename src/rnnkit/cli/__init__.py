"""Command line: ``rnnkit COMMAND ...`` (also ``python -m rnnkit``).

Commands are registered by extension modules: each module named in
``_EXTENSIONS`` defines ``register_cli(root_subparsers, train_subparsers)`` and
adds its parsers with ``set_defaults(func=handler)``, ``handler(args) -> int``.
A module may also define ``EVAL_KINDS`` (checkpoint kinds) and
``eval_checkpoint(path, meta, args) -> int`` to serve ``rnnkit eval CKPT``.

User mistakes raise :class:`rnnkit.errors.UserError` (or ``CheckpointError``);
``main`` prints them as one line ``rnnkit: error: ...`` on stderr and returns 2.

Shared helpers for training subcommands: :func:`add_train_args` adds the
:class:`rnnkit.train.TrainConfig` flags (dest = field name, default None) and
:func:`train_config_from_args` maps them onto a TrainConfig, keeping the base
config's value for every flag not given (so ``--resume`` keeps the saved
settings unless overridden); :func:`refuse_model_changes` refuses, on ``--resume``,
a model/data flag whose value differs from the checkpoint's.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys

from ..errors import CheckpointError, UserError
from .args import nonneg_float, nonneg_int, positive_float, positive_int

_EXTENSIONS = ("rnnkit.tasks.charlm", "rnnkit.tasks.forecast", "rnnkit.tasks.longlag", "rnnkit.cli.bench",
               "rnnkit.diagnostics.cli")


def add_train_args(p: argparse.ArgumentParser, defaults=None) -> None:
    """Add a flag for every TrainConfig field to a ``train TASK`` parser (help shows ``defaults``)."""
    from ..train import TrainConfig

    d = defaults or TrainConfig()
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=nonneg_int, help=f"total optimizer steps (default {d.steps})")
    g.add_argument("--lr", type=nonneg_float, help=f"learning rate (default {d.lr})")
    g.add_argument("--optimizer", choices=["adam", "adamw", "sgd"], help=f"(default {d.optimizer})")
    g.add_argument("--momentum", type=nonneg_float, help="SGD momentum (default 0)")
    g.add_argument("--nesterov", action="store_const", const=True, help="SGD Nesterov momentum")
    g.add_argument("--weight-decay", dest="weight_decay", type=nonneg_float, help="(default 0)")
    g.add_argument("--clip", type=nonneg_float, help=f"global gradient-norm clip, 0 = off (default {d.clip})")
    g.add_argument("--schedule", choices=["constant", "step", "cosine"], help=f"lr schedule (default {d.schedule})")
    g.add_argument("--warmup", type=nonneg_int, help="linear warm-up steps (default 0)")
    g.add_argument("--step-size", dest="step_size", type=positive_int,
                   help=f"--schedule step: multiply the lr by --gamma every N steps (default {d.step_size})")
    g.add_argument("--gamma", type=positive_float, help=f"--schedule step: lr decay factor (default {d.gamma})")
    g.add_argument("--min-lr", dest="min_lr", type=nonneg_float,
                   help=f"--schedule cosine: final learning rate (default {d.min_lr})")
    g.add_argument("--eval-every", dest="eval_every", type=nonneg_int,
                   help=f"evaluate on the val split every N steps, 0 = only at the end (default {d.eval_every})")
    g.add_argument("--checkpoint-every", dest="checkpoint_every", type=nonneg_int,
                   help="also checkpoint every N steps (default: at every evaluation)")
    g.add_argument("--log-every", dest="log_every", type=nonneg_int,
                   help=f"log the mean training loss every N steps, 0 = never (default {d.log_every})")
    g.add_argument("--patience", type=nonneg_int, help="early stopping after N evaluations without a new best")
    g.add_argument("--seed", type=nonneg_int, help=f"seed for initialisation and batches (default {d.seed})")
    g.add_argument("--time-limit", dest="time_limit", type=nonneg_float,
                   help="stop (and checkpoint) after this many seconds of training")
    g.add_argument("--blas-threads", dest="blas_threads", type=nonneg_int,
                   help=f"BLAS threads while training, 0 = numpy's default (default {d.blas_threads})")
    g.add_argument("--no-progress", dest="progress", action="store_const", const=False, help="no progress bar")
    g.add_argument("--out", help="output directory for checkpoints, metrics.jsonl and loss.png")
    g.add_argument("--resume", metavar="CKPT", help="continue training from a checkpoint (last.safetensors)")


def train_config_from_args(args, base=None):
    """TrainConfig from parsed flags: every TrainConfig field whose flag was given overrides ``base``."""
    from ..train import TrainConfig

    base = base or TrainConfig()
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if getattr(args, f.name, None) is not None}
    try:
        return dataclasses.replace(base, **given)
    except ValueError as e:
        raise UserError(str(e)) from None


def refuse_model_changes(config, given: dict) -> None:
    """On ``--resume`` the model and data settings come from the checkpoint: ``given`` maps the
    ``config`` fields whose flags were given on the command line to their values; one that differs
    from the checkpoint's ``config`` is a UserError naming the flag (``--field-name``)."""
    for name, v in given.items():
        old = getattr(config, name)
        if v != old:
            raise UserError(f"--{name.replace('_', '-')} {v}: differs from the checkpoint's {old}; "
                            "model settings come from the checkpoint when resuming")


def refuse_existing_checkpoint(out: str) -> None:
    """A new training run never overwrites the checkpoint of an earlier one in ``out``."""
    last = os.path.join(out, "last.safetensors")
    if os.path.exists(last):
        raise UserError(f"--out {out}: already holds a checkpoint; continue it with --resume {last} "
                        "or choose another --out")


def load_extensions() -> list:
    """Import every module that adds subcommands (all are part of rnnkit; none is optional)."""
    return [importlib.import_module(name) for name in _EXTENSIONS]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="rnnkit", description="Recurrent networks (RNN, LSTM, GRU) on NumPy: train, sample, evaluate.",
        epilog="Start with: rnnkit demo")
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    root = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    train = root.add_parser("train", help="train a model (rnnkit train TASK --help)",
                            description="Train a model.  Ctrl-C saves a checkpoint; --resume continues.")
    train_sub = train.add_subparsers(dest="task", metavar="TASK", required=True)
    mods = load_extensions()
    ev = root.add_parser("eval", help="evaluate a checkpoint on a split or a file",
                         description="Evaluate a checkpoint: loss on a split of its corpus or on a file.")
    ev.add_argument("checkpoint", metavar="CKPT")
    ev.add_argument("--split", choices=["val", "test", "train"], default="val", help="(default val)")
    ev.add_argument("--text", metavar="FILE", help="evaluate on this whole file instead of a split")
    ev.set_defaults(func=lambda a: _eval(a, mods))
    for mod in mods:
        mod.register_cli(root, train_sub)
    return parser


def _eval(args, mods) -> int:
    from ..io.checkpoint import load_checkpoint

    _, meta = load_checkpoint(args.checkpoint)
    kind = meta.get("kind")
    for mod in mods:
        if kind in getattr(mod, "EVAL_KINDS", ()):
            return mod.eval_checkpoint(args.checkpoint, meta, args)
    raise UserError(f"eval: no evaluator for checkpoint kind {kind!r} ({args.checkpoint})")


def main(argv=None) -> int:
    """Entry point of the ``rnnkit`` console script; returns the exit code."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, argparse usage errors (exit 2)
        return int(e.code or 0)
    try:
        return int(args.func(args) or 0)
    except (UserError, CheckpointError) as e:
        print(f"rnnkit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rnnkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. rnnkit sample ... | head
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
