"""Checkpoint layout of a task and its training state (one safetensors file, rnnkit.io.checkpoint)::

    arrays  "task/<k>"   task.state_arrays()
            "optim/<k>"  optimizer slots (Adam m, v; SGD momentum)
            "carry/<k>"  the carry dict, if any
    meta    {"kind": task.kind, "task": task.meta(),
             "train": {"step", "rng" (bit_generator.state), "optim" (hyper-parameters, t),
                       "config" (TrainConfig), "best_val", "bad_evals", "has_carry"}}

A checkpoint without "train" (e.g. from :func:`save_task`) holds a model only.
:func:`rnnkit.train.guard.read_checkpoint` reads (and validates) a file once; everything else
works on its (arrays, meta).
"""
from __future__ import annotations

import os

from rnnkit.errors import CheckpointError
from rnnkit.io.checkpoint import save_checkpoint
from rnnkit.train.config import TrainConfig


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
