"""Data parallelism for the Trainer: what a task adds so ``mpiexec -n N rnnkit train TASK`` works.

The Trainer holds a :class:`rnnkit.io.distributed.Communicator` (``Communicator.from_environment()``
unless given: a plain run is rank 0 of 1 and never imports mpi4py).  With N > 1 ranks every rank
draws the same *global* batch (the same rng state on every rank) and trains on its share::

    batch = task.train_batch(rng, carry)            the global batch (B items)
    batch = task.shard_batch(batch, comm)           this rank's items comm.shard(B)
    loss_r, carry, n_r = task.loss_and_backward(batch, carry)
    comm.allreduce_grads(grads, loss_r, n_r, stop)  one Allreduce: gradients and loss of all B items

so N ranks x B/N items equal one rank x B (to rounding) when ``loss_and_backward`` returns the
mean over the ``count`` elements it reports (tokens, sequences; see rnnkit.io.distributed).

Task members for this (optional)::

    shard_batch(batch, comm) -> batch   this rank's items ``comm.shard(B)`` of a global batch.
                                        Without it, :func:`shard_time_major` (rnnkit's layout:
                                        ids (T, B), features (T, B, I), lengths / labels (B,)), which
                                        refuses, in one line, a batch that does not follow it.
    carry_axes: dict[str, int]          carry arrays that hold one entry per batch item, and
                                        their item axis (char-LM {"h": 1, "c": 1}: (layers, B, H)).
                                        Each rank carries its own items; a checkpoint holds all of
                                        them (gathered for rank 0), and a resumed run (any number
                                        of ranks) takes its share, so shard_batch leaves them alone.
"""
from __future__ import annotations

import numpy as np

from rnnkit.errors import UserError


def shard_batch(task, batch, comm):
    """This rank's share of the global ``batch`` (the batch itself on one rank): the task's own
    ``shard_batch``, else :func:`shard_time_major`."""
    if comm.size == 1:
        return batch
    shard = getattr(task, "shard_batch", None)
    if shard is not None:
        return shard(batch, comm)
    return shard_time_major(batch, comm, f"task {task.kind!r}")


def _arrays(batch, path="batch"):
    """(path, array) of every array in a batch made of tuples, named tuples, lists, dicts and arrays."""
    if isinstance(batch, np.ndarray):
        yield path, batch
    elif isinstance(batch, dict):
        for k, v in batch.items():
            yield from _arrays(v, f"{path}[{k!r}]")
    elif isinstance(batch, (tuple, list)):
        names = getattr(batch, "_fields", None) or range(len(batch))
        for k, v in zip(names, batch):
            yield from _arrays(v, f"{path}.{k}" if isinstance(k, str) else f"{path}[{k}]")


def _map(batch, fn):
    if isinstance(batch, np.ndarray):
        return fn(batch)
    if isinstance(batch, dict):
        return {k: _map(v, fn) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        items = [_map(v, fn) for v in batch]
        return type(batch)(*items) if hasattr(batch, "_fields") else type(batch)(items)
    return batch


def shard_time_major(batch, comm, what: str = "batch"):
    """This rank's items of a batch in rnnkit's time-major layout: every array with 2 or more axes
    holds the items on axis 1 ((T, B), (T, B, I)), every 1-d array on axis 0 ((B,): lengths,
    labels); other values are kept.  All arrays must agree on B, else a one-line UserError says
    which do not (the task then needs its own ``shard_batch``)."""
    found = list(_arrays(batch))
    counts = {path: a.shape[1 if a.ndim >= 2 else 0] for path, a in found if a.ndim >= 1}
    if not counts or len(set(counts.values())) != 1:
        got = ", ".join(f"{p} {n}" for p, n in counts.items()) or "no arrays"
        raise UserError(f"{what}: cannot split its batch over {comm.size} MPI ranks: the time-major layout "
                        f"(items on axis 1, of vectors axis 0) gives {got}; give the task a "
                        f"shard_batch(batch, comm) (rnnkit.train.data_parallel)")
    part = comm.shard(next(iter(counts.values())))
    return _map(batch, lambda a: a if a.ndim == 0 else a[:, part] if a.ndim >= 2 else a[part])


def _axes(task, carry) -> dict:
    axes = getattr(task, "carry_axes", None) or {}
    return {k: a for k, a in axes.items() if k in carry}


def gather_carry(task, carry, comm):
    """The carry of the whole batch (for a checkpoint): every per-item array gathered from the
    ranks' shards (a collective: every rank calls it)."""
    if comm.size == 1 or carry is None:
        return carry
    full = dict(carry)
    for k, axis in sorted(_axes(task, carry).items()):
        n = int(comm.total(carry[k].shape[axis]))
        full[k] = comm.gather_shards(carry[k], n, axis)
    return full


def shard_carry(task, carry, comm):
    """This rank's items of a whole-batch carry (read from a checkpoint written with any number of ranks)."""
    if comm.size == 1 or carry is None:
        return carry
    part = dict(carry)
    for k, axis in _axes(task, carry).items():
        index = [slice(None)] * carry[k].ndim
        index[axis] = comm.shard(carry[k].shape[axis])
        part[k] = carry[k][tuple(index)].copy()
    return part


def agreed_stop(comm, run, local_time_up: bool, agreed: bool) -> tuple[str, int] | None:
    """(stop reason, exit code) or None, the same on every rank.

    One rank: the stop signal or the time limit, checked before the step.  Several: a rank's signal
    or time limit travels in the next step's Allreduce (``stop``); once it says some rank stops
    (``agreed``), the ranks learn the signal's exit code (largest over the ranks, 0 if none: the
    time limit) and all stop together, one step later than a single process would."""
    if comm.size == 1:
        if run.stop:
            return "interrupted", run.stop.exit_code
        return ("time limit", 0) if local_time_up else None
    if not agreed:
        return None
    code = int(comm.max(run.stop.exit_code if run.stop else 0))
    return ("interrupted", code) if code else ("time limit", 0)
