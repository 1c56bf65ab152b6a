"""The Task contract: what the :class:`~rnnkit.train.Trainer` needs from a training task.

A task owns a model, its data and its loss; the Trainer owns the loop, the optimizer, clipping,
the learning-rate schedule, checkpoints, metrics.jsonl, the progress bar, the evaluation cadence
and the best checkpoint.  Any object with these members is a Task (structural typing: subclass
nothing; ``isinstance(obj, Task)`` checks the members exist)::

    kind: str                     checkpoint kind ("charlm", "forecast", "adding", "copy", ...)
    config                        frozen dataclass of the model and data settings (no training settings)
    model: Module                 rnnkit Module: params / grads / zero_grad (rnnkit.module)
    count_unit: str               what ``count`` counts, for the throughput column: "tokens" or "seqs"

    train_batch(rng, carry) -> (batch, carry)
        rng: the Trainer's np.random.Generator, the only source of training randomness (its
        state is checkpointed).  batch: anything loss_and_backward understands, e.g. ids
        (T, B) and targets (T, B), or windows (T, B, I) and targets (B, K).  carry: None at
        the start, afterwards what loss_and_backward returned; None or dict[str, ndarray]
        (checkpointed), e.g. the detached state of truncated BPTT.  I.i.d. tasks return None.
    loss_and_backward(batch, carry) -> (loss: float, carry, count: int)
        forward, mean loss over the batch, backward: gradients are ADDED to model.grads (the
        Trainer zeroes them first).  count: tokens or sequences in the batch (throughput).
    evaluate(split="val") -> dict[str, float]
        holds "loss" (lower is better: it picks the best checkpoint); any other metrics
        ("bpc", "accuracy", "rmse", ...).  Deterministic; must not touch the rng or the carry.
    state_arrays() -> dict[str, ndarray]   the parameters (and any other arrays to rebuild the task)
    meta() -> dict                        JSON: config, vocabulary, normalisation statistics, ...
    from_checkpoint(arrays, meta) -> Task classmethod; receives exactly what the two above returned

Evaluation records.  After every evaluation the Trainer logs and passes to ``on_eval`` one record
``{"step": int, "val_<metric>": float for every metric of evaluate(), "elapsed_s": float}``;
``on_eval(trainer, record) -> bool | None`` is the one callback signature: True stops training
(stop_reason "on_eval") after that evaluation's checkpoint.  :func:`metrics_of` gives the
evaluate() dict back from a record.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..module import Module


@runtime_checkable
class Task(Protocol):
    kind: str
    config: Any
    model: Module
    count_unit: str

    def train_batch(self, rng: np.random.Generator, carry: dict | None) -> tuple[Any, dict | None]: ...

    def loss_and_backward(self, batch: Any, carry: dict | None) -> tuple[float, dict | None, int]: ...

    def evaluate(self, split: str = "val") -> dict[str, float]: ...

    def state_arrays(self) -> dict[str, np.ndarray]: ...

    def meta(self) -> dict: ...

    @classmethod
    def from_checkpoint(cls, arrays: dict[str, np.ndarray], meta: dict) -> "Task": ...


def metrics_of(record: dict, split: str = "val") -> dict[str, float]:
    """The evaluate() dict inside an evaluation record: ``{"val_loss": x, ...}`` -> ``{"loss": x, ...}``."""
    p = split + "_"
    return {k[len(p):]: v for k, v in record.items() if k.startswith(p)}
