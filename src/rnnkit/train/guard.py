"""Checks before anything is built or loaded, for every task alike (docs/reliability.md).

* :func:`check_model_fits`: a new model's memory (its task's :class:`~rnnkit.train.task.ModelPlan`:
  parameters, gradients, optimizer state, activations) against physical memory, before building it
  (``--hidden 100000`` is one line, not a 298 GiB allocation).
* :func:`read_checkpoint`: the one way rnnkit reads a checkpoint (eval, sample, forecast, resume;
  :func:`load_task` builds the task of one):
  the header first (names, dtypes, shapes, metadata; no data read), checked by
  :func:`rnnkit.io.checkpoint_checks.validate_checkpoint` against the model the metadata describes and the
  machine's memory; then the data (digest checked) and NaN/inf.  Nothing is built before both pass.

Both need only the task class (``model_plan``, optional) and the checkpoint layout of
:mod:`rnnkit.train.state` (``task/``, ``optim/``, ``meta["train"]``).
"""
from __future__ import annotations

import os

import numpy as np

from rnnkit.errors import CheckpointError
from rnnkit.io.checkpoint import load_checkpoint, read_header
from rnnkit.engine.memory import check_memory
from rnnkit.io.checkpoint_checks import validate_checkpoint
from rnnkit.nn.optim import OPTIMIZERS
from rnnkit.train.config import TrainConfig
from rnnkit.train.state import saved_train_config, task_from
from rnnkit.train.task import ModelPlan


def optimizer_slots(config: TrainConfig | None) -> tuple[str, ...]:
    """The arrays the optimizer of ``config`` keeps per parameter once it has stepped
    (Adam/AdamW ``("m", "v")``, SGD with momentum ``("momentum",)``, plain SGD none)."""
    if config is None or (config.optimizer == "sgd" and not config.momentum):
        return ()
    return OPTIMIZERS[config.optimizer].slots


def model_plan(task_cls, task_meta: dict) -> ModelPlan | None:
    """``task_cls.model_plan(task_meta)``, or None for a task without one."""
    plan = getattr(task_cls, "model_plan", None)
    return None if plan is None else plan(task_meta)


def check_model_fits(task_cls, task_meta: dict, config: TrainConfig | None = None, what: str = "the model") -> None:
    """Raise InsufficientMemory (one line, both sizes) if training the model ``task_meta`` describes
    (with the optimizer of ``config``) needs more than the physical memory.  Nothing is allocated."""
    plan = model_plan(task_cls, task_meta)
    if plan is not None:
        check_memory(plan.training_bytes(len(optimizer_slots(config))), what)


def _expected(task_cls, meta: dict, tensors: dict, where: str) -> ModelPlan:
    """The plan of the model the checkpoint's metadata describes (or, for a task without
    ``model_plan``, the checkpoint's own task tensors, so only dtype, step and optimizer are checked)."""
    try:
        plan = model_plan(task_cls, meta["task"]) if task_cls is not None else None
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: bad model metadata ({type(e).__name__}: {e})") from None
    if plan is not None:
        return plan
    own = {k[5:]: t for k, t in tensors.items() if k.startswith("task/")}
    dtype = next((np.dtype(t.dtype) for t in own.values() if np.dtype(t.dtype).kind == "f"), np.dtype(np.float32))
    return ModelPlan({k: tuple(t.shape) for k, t in own.items()}, dtype)


def read_checkpoint(path, task_cls=None, *, training: bool = False,
                    reset_optimizer: bool = False) -> tuple[dict, dict]:
    """(arrays, meta) of a checkpoint, validated before anything is built (see the module docstring).

    ``task_cls``: the task the checkpoint must hold (its ``kind``, its ``model_plan``); None: any kind,
    not checked against a model.  ``training``: a resume (needs the step and, unless
    ``reset_optimizer``, an optimizer state that fits).  Raises CheckpointError or InsufficientMemory.
    """
    path = os.fspath(path)
    where = f"checkpoint {path!r}"
    kind = getattr(task_cls, "kind", None)
    kind = kind if isinstance(kind, str) else None

    def validate(tensors: dict, meta: dict) -> None:
        plan = _expected(task_cls, meta, tensors, where)
        config = saved_train_config(meta, path) if training else None
        validate_checkpoint(tensors, meta, plan.shapes, plan.dtype, path=path, training=training,
                            optimizer_slots=optimizer_slots(config) if training else (),
                            reset_optimizer=reset_optimizer, sizes=plan.sizes, extra_bytes=plan.activation_bytes)

    validate(*read_header(path, kind))  # sizes, dtypes, step, optimizer, memory: before reading the data
    arrays, meta = load_checkpoint(path, kind)  # the data, its digest
    validate(arrays, meta)  # and NaN/inf in the parameters (and the optimizer state it will load)
    return arrays, meta


def load_task(path, task_cls):
    """Rebuild a task from a checkpoint (with or without training state), validated first."""
    return task_from(*read_checkpoint(path, task_cls), task_cls, path)
