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

Optional (the reliability checks use it; docs/reliability.md)::

    model_plan(meta) -> ModelPlan     classmethod: from a meta() dict alone, allocating nothing, the
        names, shapes and dtype of the parameters in state_arrays() and the activation bytes of one
        training step.  For a new run ``meta`` holds only ``{"config": asdict(config)}``; a size it
        cannot know yet (e.g. the vocabulary) counts as its smallest value, so the memory estimate
        is a lower bound.
        With it, a model larger than the machine's memory is refused before anything is allocated,
        and a checkpoint is checked tensor by tensor against the model its metadata describes
        before the task is built.  Without it, a checkpoint is still checked for its step, its
        optimizer state and NaN/inf, but not against the model's shapes.

Optional, the best checkpoint and early stopping::

    best_metric: tuple[str, int]      (metric of evaluate(), sign): an evaluation is better when
        sign * metric is lower than the best so far (Trainer.best_val holds that product);
        default ("loss", 1).  E.g. ("accuracy", -1): the classifier keeps its most accurate model.

Optional, for the engines (docs/scaling.md, docs/interop.md)::

    shard_batch(batch, comm) -> batch   this MPI rank's items comm.shard(B) of a global batch, and
        carry_axes: dict[str, int]      carry arrays holding one entry per item, for ``mpiexec -n N
                                        rnnkit train`` (rnnkit.train.data_parallel; without shard_batch:
                                        the time-major split, arrays (T, B, ...) and vectors (B,))
    onnx_parts() -> dict                {"recurrent": layer, "embedding": Embedding | None, "head":
                                        Linear | None, "readout": "every" | "last", "metadata": {...}}:
                                        ``rnnkit export CKPT --onnx FILE`` (rnnkit.io.onnx_export.compose_onnx)

Evaluation records.  After every evaluation the Trainer logs and passes to ``on_eval`` one record
``{"step": int, "val_<metric>": float for every metric of evaluate(), "elapsed_s": float}``;
``on_eval(trainer, record) -> bool | None`` is the one callback signature: True stops training
(stop_reason "on_eval") after that evaluation's checkpoint.  :func:`metrics_of` gives the
evaluate() dict back from a record.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rnnkit.module import Module


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


@dataclass(frozen=True)
class ModelPlan:
    """What a task's model will allocate, computed from its metadata without building it.

    shapes            parameter name (as in ``state_arrays()``) -> shape
    dtype             the parameters' dtype
    activation_bytes  the forward/backward buffers of one training step (batch x window)
    init_bytes        temporaries while building (e.g. float64 draws before a float32 cast)
    sizes             metadata sizes that must be positive integers (named in errors)
    """

    shapes: dict
    dtype: Any = np.float32
    activation_bytes: int = 0
    init_bytes: int = 0
    sizes: dict = field(default_factory=dict)

    def param_count(self) -> int:
        return sum(math.prod(s) for s in self.shapes.values())

    def training_bytes(self, optimizer_slots: int = 2) -> int:
        """Peak bytes of training: parameters, gradients, ``optimizer_slots`` optimizer arrays per
        parameter and the activations; or, if larger, parameters + gradients + the init temporaries."""
        n = self.param_count() * np.dtype(self.dtype).itemsize
        return max(n * (2 + optimizer_slots) + self.activation_bytes, 2 * n + self.init_bytes)


def metrics_of(record: dict, split: str = "val") -> dict[str, float]:
    """The evaluate() dict inside an evaluation record: ``{"val_loss": x, ...}`` -> ``{"loss": x, ...}``."""
    p = split + "_"
    return {k[len(p):]: v for k, v in record.items() if k.startswith(p)}
