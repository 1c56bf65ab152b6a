"""Validate a checkpoint against the model it is to fill, before anything is built.

A hand-made or damaged checkpoint with a valid digest used to fail late (a
traceback from inside the model) or not at all: float64 tensors loaded into a
float32 model, a negative step, ``hidden: 100000`` in the metadata (the model
was built, 298 GiB, before shapes were compared), a missing optimizer state
(resumed silently with fresh Adam moments, so no longer exact).

:func:`validate_checkpoint` takes what the checkpoint holds (``tensors``: name
-> anything with ``.dtype`` and ``.shape``: the arrays of ``load_checkpoint``
or the :class:`~rnnkit.io.checkpoint.TensorInfo` of ``read_header``, which
reads no data) and what the model will be (``expected``: parameter name ->
shape, computed from the sizes in the checkpoint's metadata without
allocating, e.g. with :func:`rnnkit.engine.memory.rnn_param_shapes`; and its
dtype), and raises a one-line :class:`~rnnkit.errors.CheckpointError` for the
first problem, naming the file and the tensor.  Nothing in it is task specific;
the layout is the trainer's (``task/<param>``, ``optim/<slot>/<param>``,
``meta["train"]["step"]``, ``meta["train"]["optim"]``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rnnkit.checks.arrays import first_nonfinite
from rnnkit.errors import CheckpointError
from rnnkit.engine.memory import check_memory


@dataclass(frozen=True)
class CheckpointPlan:
    """The outcome of a successful validation: what the caller may load."""

    step: int | None  # the training step, None for a model-only checkpoint
    load_optimizer: bool  # False: no (usable) optimizer state, and the caller passed reset_optimizer=True
    nbytes: int  # the memory estimate that was checked
    note: str = ""  # why the optimizer state is not loaded, for the caller to print


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_sizes(sizes: dict, where: str) -> None:
    """Every value in ``sizes`` (metadata name -> value, e.g. ``{"hidden": 128}``) must be a positive int."""
    for name, v in sizes.items():
        if not _is_int(v) or v < 1:
            raise CheckpointError(f"{where}: metadata {name!r} = {v!r}, expected a positive integer")


def validate_checkpoint(tensors: dict, meta: dict, expected, dtype, *, path: str = "checkpoint",
                        training: bool = True, optimizer_slots: tuple = (), reset_optimizer: bool = False,
                        sizes: dict | None = None, extra_bytes: int = 0, available: int | None = None,
                        prefix: str = "task/", optim_prefix: str = "optim/") -> CheckpointPlan:
    """Check a checkpoint's tensors and metadata against the model to be built; see the module docstring.

    tensors          name -> array or TensorInfo (all tensors of the file)
    meta             the checkpoint's metadata dict
    expected         parameter name (without ``prefix``) -> shape the model will have, or a
                     function returning that dict, called after ``sizes`` are checked (its
                     KeyError, TypeError or ValueError become a CheckpointError)
    dtype            the model's float dtype (every parameter and optimizer tensor must have it)
    training         a resume: needs ``meta["train"]`` with ``step`` >= 0 and the optimizer state
    optimizer_slots  the slots the optimizer keeps for every parameter once it has stepped
                     (Adam ``("m", "v")``, SGD with momentum ``("momentum",)``, plain SGD ``()``)
    reset_optimizer  accept a missing or mismatched optimizer state (``load_optimizer`` False)
    sizes            metadata sizes to check positive (``{"hidden": 128, "layers": 2}``)
    extra_bytes      memory beyond parameters, gradients and optimizer state (activations)
    available        bytes of memory to check against (default: physical memory)

    Returns a :class:`CheckpointPlan`; raises CheckpointError (or InsufficientMemory).
    """
    where = f"checkpoint {path!r}"
    dtype = np.dtype(dtype)
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: corrupt metadata (expected a JSON object)")
    check_sizes(sizes or {}, where)

    step, train = None, meta.get("train")
    if training:
        if not isinstance(train, dict):
            raise CheckpointError(f"{where}: holds a model only, no training state to resume")
        step = train.get("step")
        if not _is_int(step) or step < 0:
            raise CheckpointError(f"{where}: training step = {step!r}, expected an integer >= 0")

    if callable(expected):
        try:
            expected = expected()
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{where}: bad model metadata ({type(e).__name__}: {e})") from None
    nelem = 0
    for name, shape in expected.items():  # the expected sizes themselves come from the metadata
        if not all(_is_int(s) and s > 0 for s in shape):
            raise CheckpointError(f"{where}: parameter {name!r} would have shape {tuple(shape)}; "
                                  f"the metadata's sizes must be positive")
        nelem += math.prod(shape)

    own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    missing, extra = sorted(set(expected) - set(own)), sorted(set(own) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{where}: parameters do not fit the model its metadata describes: missing "
                              f"{[prefix + k for k in missing]}, unexpected {[prefix + k for k in extra]}")
    for name, shape in expected.items():
        t = own[name]
        if tuple(t.shape) != tuple(shape):
            raise CheckpointError(f"{where}: tensor {prefix + name!r} has shape {tuple(t.shape)}, the model its "
                                  f"metadata describes has {tuple(shape)}")
        if np.dtype(t.dtype) != dtype:
            raise CheckpointError(f"{where}: tensor {prefix + name!r} is {np.dtype(t.dtype).name}, the model is "
                                  f"{dtype.name}")

    load_optimizer, note = training, ""
    if training:
        problem = _optimizer_problem(tensors, train, expected, dtype, step, optimizer_slots, optim_prefix)
        if problem:
            if not reset_optimizer:
                raise CheckpointError(f"{where}: {problem}; resuming without it would not continue the run "
                                      f"exactly; pass --reset-optimizer to resume with a fresh optimizer state")
            load_optimizer, note = False, f"optimizer state reset ({problem})"

    nbytes = nelem * dtype.itemsize * (2 + len(optimizer_slots)) + int(extra_bytes)
    check_memory(nbytes, f"{where}: the model", available)

    bad = first_nonfinite({k: v for k, v in tensors.items() if isinstance(v, np.ndarray)
                           and (k.startswith(prefix) or (load_optimizer and k.startswith(optim_prefix))
                                or (training and k.startswith("average/")))})  # --ema's raw parameters
    if bad is not None:
        name, k, v = bad
        at = f" at index {k}" if k else ""
        raise CheckpointError(f"{where}: tensor {name!r} is not finite ({v}{at}); the file holds a diverged model")
    return CheckpointPlan(step=step, load_optimizer=load_optimizer, nbytes=nbytes, note=note)


def _optimizer_problem(tensors, train, expected, dtype, step, slots, optim_prefix) -> str:
    """Why the optimizer state cannot be restored exactly ('' if it can)."""
    om = train.get("optim")
    if not isinstance(om, dict):
        return "no optimizer state in the metadata"
    t, lr = om.get("t"), om.get("lr")
    if not _is_int(t) or t < 0:
        return f"optimizer step count t = {t!r}, expected an integer >= 0"
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0:
        return f"optimizer lr = {lr!r}, expected a finite number >= 0"
    have = {k[len(optim_prefix):]: v for k, v in tensors.items() if k.startswith(optim_prefix)}
    for name, a in have.items():
        slot, _, param = name.partition("/")
        if slot not in slots or param not in expected:
            return (f"unexpected optimizer tensor {optim_prefix + name!r} "
                    f"(slots {list(slots)} over the model's parameters)")
        if tuple(a.shape) != tuple(expected[param]):
            return (f"optimizer tensor {optim_prefix + name!r} has shape {tuple(a.shape)}, "
                    f"the parameter has {tuple(expected[param])}")
        if np.dtype(a.dtype) != dtype:
            return f"optimizer tensor {optim_prefix + name!r} is {np.dtype(a.dtype).name}, the model is {dtype.name}"
    if step or t:  # after its first step the optimizer holds every slot of every parameter
        absent = [f"{optim_prefix}{s}/{p}" for s in slots for p in expected if f"{s}/{p}" not in have]
        if absent:
            return (f"optimizer state missing: {len(absent)} of {len(slots) * len(expected)} tensors "
                    f"(first {absent[0]!r})")
    return ""
