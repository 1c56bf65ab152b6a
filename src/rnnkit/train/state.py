"""Checkpoint layout of a task and its training state (one safetensors file, rnnkit.io.checkpoint)::

    arrays  "task/<k>"   task.state_arrays()
            "optim/<k>"  optimizer slots (Adam m, v; SGD momentum)
            "carry/<k>"  the carry dict, if any
            "average/<k>"  with ``--ema``: the parameters not in "task/" (rnnkit.nn.average)
    meta    {"kind": task.kind, "task": task.meta(),
             "train": {"step", "rng" (bit_generator.state), "optim" (hyper-parameters, t),
                       "config" (TrainConfig), "best_val", "bad_evals", "has_carry", "log_window",
                       "average" (None, or the average's decay, update count and which one "task/" holds)}}

A checkpoint without "train" (e.g. from :func:`save_task`) holds a model only.
:func:`rnnkit.train.guard.read_checkpoint` reads (and validates) a file once; everything else
works on its (arrays, meta).
"""
from __future__ import annotations

import dataclasses
import math
import os
import time

from rnnkit.errors import CheckpointError
from rnnkit.io.checkpoint import save_checkpoint
from rnnkit.nn.average import ParamAverage
from rnnkit.train.config import TrainConfig
from rnnkit.train.data_parallel import gather_carry, shard_carry


def prefixed(arrays: dict, prefix: str) -> dict:
    return {f"{prefix}/{k}": v for k, v in arrays.items()}


def unprefixed(arrays: dict, prefix: str) -> dict:
    p = prefix + "/"
    return {k[len(p):]: v for k, v in arrays.items() if k.startswith(p)}


def task_from(arrays: dict, meta: dict, task_cls, path=""):
    """Rebuild the task of a checkpoint's (arrays, meta)."""
    if "task" not in meta:
        raise CheckpointError(f"checkpoint {os.fspath(path)!r}: has no task metadata")
    return task_cls.from_checkpoint(unprefixed(arrays, "task"), meta["task"])


def saved_train_config(meta: dict, path="") -> TrainConfig:
    """The TrainConfig a training checkpoint records (CheckpointError for a model-only or bad one)."""
    train = meta.get("train")
    if not isinstance(train, dict):
        raise CheckpointError(f"checkpoint {os.fspath(path)!r}: holds a model only, no training state to resume")
    try:
        return TrainConfig(**train["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {os.fspath(path)!r}: bad training config ({e})") from None


def save_task(path, task) -> None:
    """Save a task's model (no training state) as a checkpoint loadable by :func:`load_task`."""
    save_checkpoint(path, prefixed(task.state_arrays(), "task"), {"kind": task.kind, "task": task.meta()})


def restore(cls, arrays: dict, meta: dict, build):
    """``cls.from_checkpoint(arrays, meta)`` of a task: ``build(meta)`` makes the task from its metadata
    (KeyError, TypeError, ValueError or AttributeError: bad metadata), then the parameters ``arrays`` are
    loaded into ``task.model``; every failure is one CheckpointError naming the kind."""
    if meta.get("kind", cls.kind) != cls.kind:
        raise CheckpointError(f"checkpoint holds a {meta.get('kind')!r} model, expected {cls.kind!r}")
    try:
        task = build(meta)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{cls.kind} checkpoint: bad metadata ({type(e).__name__}: {e})") from None
    try:
        task.model.load_params(arrays)
    except ValueError as e:
        raise CheckpointError(f"{cls.kind} checkpoint: parameters do not fit the config ({e})") from None
    return task


def training_state(trainer) -> tuple[dict, dict]:
    """(arrays, meta) of a full training checkpoint of a :class:`rnnkit.train.Trainer`, the model's arrays as
    they stand (the trainer saves with the parameter average in them: :meth:`~rnnkit.train.Trainer.save`)."""
    opt_arrays, opt_meta = trainer.optimizer.state_dict()
    arrays = prefixed(trainer.task.state_arrays(), "task")
    arrays.update(prefixed(opt_arrays, "optim"))
    average = None
    if trainer.average is not None:
        average_arrays, average = trainer.average.state_dict()
        arrays.update(prefixed(average_arrays, "average"))
    carry = gather_carry(trainer.task, trainer.carry, trainer.comm)  # every rank's items (a collective)
    if carry is not None:
        arrays.update(prefixed(carry, "carry"))
    best = trainer.best_val
    train = {
        "step": trainer.step, "rng": trainer.rng.bit_generator.state, "optim": opt_meta,
        "config": dataclasses.asdict(trainer.config), "best_val": best if math.isfinite(best) else None,
        "bad_evals": trainer.bad_evals, "has_carry": trainer.carry is not None,
        "log_window": trainer.window.state(), "average": average,
    }
    return arrays, {"kind": trainer.task.kind, "task": trainer.task.meta(), "train": train}


def restore_training(trainer, arrays: dict, meta: dict, reset_optimizer: bool = False) -> None:
    """Set a trainer's optimizer, rng, step, carry, parameter average and early-stopping state from a
    checkpoint's (arrays, meta) (its model already holds the checkpoint's "task/" arrays).  A saved average
    is kept when the trainer's config asks for one (``ema`` > 0, that decay from now on); otherwise the raw
    parameters go back into the model and averaging stops.  ``reset_optimizer``: keep the trainer's fresh
    optimizer state.  CheckpointError when the state does not fit."""
    try:
        train = meta["train"]
        if not reset_optimizer:
            trainer.optimizer.load_state_dict(unprefixed(arrays, "optim"), train["optim"])
        trainer.rng.bit_generator.state = train["rng"]
        trainer.step = int(train["step"])
        has_carry = train["has_carry"]
        trainer.carry = shard_carry(trainer.task, unprefixed(arrays, "carry"), trainer.comm) if has_carry else None
        trainer.best_val = math.inf if train["best_val"] is None else float(train["best_val"])
        trainer.bad_evals = int(train["bad_evals"])
        trainer.window.load(train.get("log_window"), time.perf_counter())
        saved = train.get("average")
        if saved is not None:
            average = ParamAverage(trainer.model.params, trainer.config.ema or float(saved["decay"]))
            average.load_state_dict(unprefixed(arrays, "average"), saved)
            if not trainer.config.ema:
                average.use(False)
            trainer.average = average if trainer.config.ema else None
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"checkpoint: bad training state ({type(e).__name__}: {e})") from None
