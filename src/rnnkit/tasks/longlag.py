"""Long-time-lag tasks: the adding problem and the copy memory task, as Trainer tasks.

``AddingTask(config)``: Recurrent -> Linear(H, 1) -> sigmoid, the seed's output
o = sigma(W_o h_L + b_o) read at each sequence's last valid step L; loss
MSE against 0.5 + (X1 + X2)/4.  ``CopyTask(config)``: Recurrent over one-hot
inputs -> Linear(H, 10) at every step; loss mean softmax cross-entropy over
all T + 20 outputs.  Data definitions: :mod:`rnnkit.data.longlag`.

Both follow the Task contract of :mod:`rnnkit.train.task` (i.i.d. batches, no carry):
``train_batch(rng, carry)``, ``loss_and_backward(batch, carry)``,
``evaluate(split)``, ``state_arrays()``, ``meta()``, ``from_checkpoint``, and
``solved(metrics)`` that says when to stop.  ``task.fit(out_dir, train)`` trains with
:class:`rnnkit.train.Trainer` until solved or ``train.steps``.  Training settings live in the
TrainConfig only: the class's ``train_defaults`` (Adam, clipping at 1, counted in steps of
``DEFAULT_BATCH`` sequences: 1,000,000 training sequences, an evaluation every 10,000), and
``task.train_config(max_sequences=..., eval_every=..., **fields)`` gives it with the budgets
counted in training sequences of this config's batch (the units of ``rnnkit train adding``).
Randomness: the initial weights come from ``default_rng([seed, 1])``, the
fixed "val" and "test" sets from ``[seed, 2]`` and ``[seed, 3]``, the training
stream from the Trainer's ``default_rng(seed)``.

Defaults follow the measured facts: the forget-gate bias decides whether the
LSTM learns long lags at all (+3 here; PyTorch's default init stays on the
MSE plateau 1/24 at T=100), Adam, gradient-norm clipping at 1.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from rnnkit.cells.protocol import sigmoid
from rnnkit.data.longlag import (
    COPY_CLASSES, COPY_LENGTH, AddingBatch, adding_batch, adding_correct, copy_baseline, copy_batch, one_hot,
)
from rnnkit.errors import CheckpointError
from rnnkit.nn.losses import mse, softmax_cross_entropy
from rnnkit.train import Trainer, TrainConfig, metrics_of
from rnnkit.checks.rules import FINITE_OR_NONE, NONNEG_INT, POSITIVE_INT, POSITIVE_NUMBER, check, check_each
from rnnkit.models.readout import Readout, check_cell
from rnnkit.tasks.readout import readout_plan

#: H&S 1997: the test set has 2560 sequences; solved when at most 3 are wrong
ADDING_TEST_SIZE, ADDING_MAX_WRONG = 2560, 3
#: the copy task is solved when the loss is "clearly below" the memoryless baseline: < 0.5 x baseline
COPY_FACTOR = 0.5
#: the one statement of that criterion (CopyTask.solved, ``rnnkit train copy --help``, bench longlag, docs/tasks.md)
COPY_CRITERION = f"loss < {COPY_FACTOR} x the memoryless baseline 10 ln 8 / (T + 20)"
#: the batch the step counts of ``train_defaults`` are counted in (LongLagConfig.batch)
DEFAULT_BATCH = 20
#: training settings that rnnkit <= 0.2 kept in the task config (meta["task"]["config"] of its checkpoints)
LEGACY_TRAIN_FIELDS = ("lr", "clip", "max_sequences", "eval_every")


@dataclass(frozen=True)
class LongLagConfig:
    """Model and data fields of the long-lag tasks (training settings: TrainConfig, ``train_defaults``)."""

    T: int = 100
    cell: str = "lstm"
    hidden: int = 32
    layers: int = 1
    batch: int = DEFAULT_BATCH
    forget_bias: float | None = 3.0
    seed: int = 0

    def __post_init__(self):
        check_each(self, POSITIVE_INT, "T", "hidden", "layers", "batch")
        check("seed", self.seed, NONNEG_INT)
        check_cell(self.cell)
        check("forget_bias", self.forget_bias, FINITE_OR_NONE)


def in_sequences(base: TrainConfig, batch: int, max_sequences: int | None = None, eval_every: int | None = None,
                 **fields) -> TrainConfig:
    """``base`` with its budgets given in training sequences of ``batch`` (None: keep ``base``'s) and
    other TrainConfig ``fields``: steps = ceil(max_sequences / batch), eval_every = max(1,
    eval_every // batch) steps, log_every = max(1, min(50, eval_every)).  The long-lag tasks train
    with Adam and clipping: ``lr`` and ``clip`` must be finite numbers > 0 (ValueError naming them)."""
    check("batch", batch, POSITIVE_INT)
    if max_sequences is not None:
        check("max_sequences", max_sequences, POSITIVE_INT)
        fields["steps"] = -(-max_sequences // batch)
    if eval_every is not None:
        check("eval_every", eval_every, POSITIVE_INT)
        every = max(1, eval_every // batch)
        fields.update(eval_every=every, log_every=max(1, min(50, every)))
    for name in ("lr", "clip"):
        check(name, fields.get(name, getattr(base, name)), POSITIVE_NUMBER)
    return dataclasses.replace(base, **fields)


@dataclass(frozen=True)
class AddingConfig(LongLagConfig):
    T: int = 100

    def __post_init__(self):
        super().__post_init__()
        if self.T < 11:  # the first marker is among the first 10 pairs and must not be the last pair
            raise ValueError(f"T: expected an integer >= 11 for the adding problem, got {self.T}")


@dataclass(frozen=True)
class CopyConfig(LongLagConfig):
    hidden: int = 64
    forget_bias: float | None = 1.0
    eval_size: int = 500

    def __post_init__(self):
        super().__post_init__()
        check("eval_size", self.eval_size, POSITIVE_INT)


@dataclass
class LongLagResult:
    """What ``fit`` did: solved or not, after how many training sequences, final val/test metrics."""

    solved: bool
    sequences: int
    steps: int
    seconds: float
    stop_reason: str  # "solved", "max sequences", "interrupted" (Ctrl-C), "time limit"
    val: dict
    test: dict
    checkpoint: str | None = None


class _LongLagTask:
    count_unit = "seqs"
    kind: str
    config_class: type
    input_size: int
    output_size: int
    #: a new run's training settings, counted in steps of DEFAULT_BATCH sequences (see train_config)
    train_defaults: TrainConfig

    def __init__(self, config=None):
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise TypeError(f"config: expected {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        #: lr, clip, max_sequences, eval_every of a checkpoint of rnnkit <= 0.2 (kept in its task config;
        #: from_checkpoint): ``train_config(base=saved, **legacy_train_fields)`` applies them on resume
        self.legacy_train_fields: dict = {}
        c = config
        self.model = Readout(c.cell, self.input_size, c.hidden, self.output_size, layers=c.layers,
                             forget_bias=c.forget_bias, seed=np.random.default_rng([c.seed, 1]))
        self._eval_sets = {}

    def _eval_set(self, split: str):
        if split not in ("val", "test"):
            raise ValueError(f"split: expected 'val' or 'test', got {split!r}")
        if split not in self._eval_sets:
            rng = np.random.default_rng([self.config.seed, 2 if split == "val" else 3])
            self._eval_sets[split] = self._draw(rng, self._eval_size(self.config))
        return self._eval_sets[split]

    # --- training
    @classmethod
    def default_sequences(cls) -> tuple[int, int]:
        """(max_sequences, eval_every) of ``train_defaults`` in training sequences (its steps x DEFAULT_BATCH)."""
        d = cls.train_defaults
        return d.steps * DEFAULT_BATCH, d.eval_every * DEFAULT_BATCH

    def train_config(self, max_sequences: int | None = None, eval_every: int | None = None,
                     base: TrainConfig | None = None, **fields) -> TrainConfig:
        """The TrainConfig of a run of this task: ``base`` (default: ``train_defaults`` with its
        budgets kept in sequences for this config's batch, the seed the config's) with the budgets
        in training sequences and other TrainConfig ``fields`` (:func:`in_sequences`)."""
        if base is None:
            default_max, default_every = self.default_sequences()
            base = in_sequences(self.train_defaults, self.config.batch, default_max, default_every,
                                seed=self.config.seed)
        return in_sequences(base, self.config.batch, max_sequences, eval_every, **fields)

    def fit(self, out_dir=None, train: TrainConfig | None = None, progress: bool | None = None, on_eval=None,
            trainer: Trainer | None = None) -> LongLagResult:
        """Train until solved (checked on the val set at every evaluation) or ``train.steps``.

        ``train``: the TrainConfig (default :meth:`train_config`: the task's defaults);
        ``progress`` (if not None) overrides its progress bar.  ``on_eval(trainer, record)`` is
        called after every evaluation (rnnkit.train.task; training sequences so far:
        ``trainer.step * config.batch``).  With ``out_dir``, checkpoints (last/best.safetensors)
        and metrics.jsonl go there.  ``trainer`` (from ``Trainer.resume``) continues a saved run.
        """
        if trainer is None:
            train = self.train_config() if train is None else train
            train = train if progress is None else dataclasses.replace(train, progress=progress)
            trainer = Trainer(self, train, out_dir)
        batch = self.config.batch

        def hook(tr, rec):
            if on_eval is not None:
                on_eval(tr, rec)
            return self.solved(metrics_of(rec))  # True ends Trainer.fit (after this evaluation's checkpoint)

        t0 = time.perf_counter()
        reason = trainer.fit(hook).stop_reason
        # "on_eval": the hook found the task solved; "steps": the budget; or "interrupted", "time limit"
        reason = {"on_eval": "solved", "steps": "max sequences"}.get(reason, reason)
        val = self.evaluate("val")
        return LongLagResult(solved=self.solved(val), sequences=trainer.step * batch, steps=trainer.step,
                             seconds=time.perf_counter() - t0, stop_reason=reason, val=val,
                             test=self.evaluate("test"), checkpoint=trainer.last_path)

    # --- Task protocol
    def train_batch(self, rng: np.random.Generator, carry=None):
        """A fresh i.i.d. batch of ``config.batch`` sequences; no carry between steps."""
        return self._draw(rng, self.config.batch), None

    def shard_batch(self, batch, comm):
        """This MPI rank's sequences ``comm.shard(B)`` of a global batch (rnnkit.train.data_parallel): each
        field along its item axis (``item_axes``: time-major arrays 1, per-sequence arrays 0)."""
        part = comm.shard(self.config.batch)
        return type(batch)(*(a[(slice(None),) * axis + (part,)] for a, axis in zip(batch, self.item_axes)))

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.model.params.items()}

    def meta(self) -> dict:
        return {"kind": self.kind, "config": dataclasses.asdict(self.config)}

    @classmethod
    def config_of(cls, meta: dict):
        """(config, legacy training fields) of a ``meta()`` dict: a checkpoint of rnnkit <= 0.2 also
        holds lr, clip, max_sequences and eval_every in ``meta["config"]``; they are split off."""
        fields = dict(meta["config"])
        legacy = {k: fields.pop(k) for k in LEGACY_TRAIN_FIELDS if k in fields}
        return cls.config_class(**fields), legacy

    @classmethod
    def model_plan(cls, meta: dict):
        """The model's parameters and buffers from ``meta["config"]`` alone (rnnkit.train.task); the
        sequence length is bounded by T + T/10 + 2 * COPY_LENGTH, the batch by the evaluation set."""
        c, _ = cls.config_of(meta)
        T = c.T + c.T // 10 + 2 * COPY_LENGTH
        return readout_plan(c.cell, cls.input_size, c.hidden, cls.output_size, c.layers, T=T,
                            B=max(c.batch, cls._eval_size(c)))

    @classmethod
    def from_checkpoint(cls, arrays: dict, meta: dict):
        if meta.get("kind") != cls.kind:
            raise CheckpointError(f"checkpoint holds a {meta.get('kind')!r} model, expected {cls.kind!r}")
        try:
            config, legacy = cls.config_of(meta)
            in_sequences(TrainConfig(), config.batch, **legacy)  # valid training fields
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint config is not a valid {cls.config_class.__name__}: {e}") from None
        task = cls(config)
        task.legacy_train_fields = legacy
        try:
            task.model.load_params(arrays)
        except ValueError as e:
            raise CheckpointError(f"checkpoint parameters do not fit the model: {e}") from None
        return task


class AddingTask(_LongLagTask):
    """The adding problem (Hochreiter & Schmidhuber 1997, Exp. 4); see rnnkit.data.longlag.

    Model: o = sigma(W_o h_L + b_o), h_L the last layer's state at the last valid step.
    evaluate(split) on 2560 fixed sequences -> loss (MSE), correct, accuracy, wrong.
    """

    kind = "adding"
    config_class = AddingConfig
    #: Adam 3e-3, clipping at 1; 1,000,000 training sequences, an evaluation every 10,000 (of 20 per step)
    train_defaults = TrainConfig(steps=50_000, lr=3e-3, clip=1.0, eval_every=500, log_every=50)
    item_axes = (1, 0, 0, 0)  # AddingBatch x (T, B, 2), lengths (B,), target (B,), positions (B, 2)
    input_size, output_size = 2, 1

    @staticmethod
    def _eval_size(config) -> int:
        return ADDING_TEST_SIZE

    def _draw(self, rng, n):
        return adding_batch(rng, self.config.T, n)

    def predict(self, x: np.ndarray, lengths=None) -> np.ndarray:
        """x (T, B, 2) pairs -> (B,) outputs in (0, 1)."""
        out = sigmoid(self.model.last(x, lengths))[:, 0]
        self.model.release()
        return out

    def loss_and_backward(self, batch: AddingBatch, carry=None):
        o = sigmoid(self.model.last(batch.x, batch.lengths))[:, 0]  # (B,)
        loss, do = mse(o, batch.target)
        self.model.backward_last((do * o * (1.0 - o))[:, None])  # sigma' = o (1 - o)
        return loss, None, len(batch.target)

    def evaluate(self, split: str = "val") -> dict[str, float]:
        b = self._eval_set(split)
        pred = self.predict(b.x, b.lengths)
        loss, _ = mse(pred, b.target)
        correct = int(adding_correct(pred, b.target).sum())
        n = len(b.target)
        return {"loss": loss, "correct": float(correct), "wrong": float(n - correct), "accuracy": correct / n}

    @staticmethod
    def solved(metrics: dict) -> bool:
        """The paper's criterion: at most 3 of 2560 sequences with |error| >= 0.04."""
        return metrics["wrong"] <= ADDING_MAX_WRONG


class CopyTask(_LongLagTask):
    """The copy memory task (Arjovsky et al. 2016); see rnnkit.data.longlag.

    Model: logits_t = W h_t + b at every step over one-hot inputs.
    evaluate(split) on config.eval_size fixed sequences -> loss (nats per output),
    baseline (10 ln 8 / (T + 20)), recall_accuracy (argmax over the last 10 outputs).
    """

    kind = "copy"
    config_class = CopyConfig
    #: as adding, but lr 1e-2 (measured at T=10: 1e-3 left the loss near the baseline after 100k sequences)
    train_defaults = TrainConfig(steps=50_000, lr=1e-2, clip=1.0, eval_every=500, log_every=50)
    item_axes = (1, 1)  # CopyBatch ids (T + 20, B), target (T + 20, B)
    input_size = output_size = COPY_CLASSES

    @staticmethod
    def _eval_size(config) -> int:
        return config.eval_size

    def _draw(self, rng, n):
        return copy_batch(rng, self.config.T, n)

    def predict(self, ids: np.ndarray) -> np.ndarray:
        """ids (T + 20, B) -> logits (T + 20, B, 10)."""
        logits = self.model.every(one_hot(ids, COPY_CLASSES))
        self.model.release()
        return logits

    def loss_and_backward(self, batch, carry=None):
        logits = self.model.every(one_hot(batch.ids, COPY_CLASSES))
        loss, d = softmax_cross_entropy(logits, batch.target)
        self.model.backward_every(d)
        return loss, None, batch.ids.shape[1]

    def evaluate(self, split: str = "val") -> dict[str, float]:
        b = self._eval_set(split)
        logits = self.predict(b.ids)
        loss, _ = softmax_cross_entropy(logits, b.target)
        recall = logits[-COPY_LENGTH:].argmax(-1) == b.target[-COPY_LENGTH:]
        return {"loss": loss, "baseline": copy_baseline(self.config.T), "recall_accuracy": float(recall.mean())}

    @staticmethod
    def solved(metrics: dict) -> bool:
        """COPY_CRITERION: loss < 0.5 x the memoryless baseline 10 ln 8 / (T + 20) ("clearly below" it;
        the criterion of ``rnnkit bench longlag`` too; Arjovsky, Shah & Bengio 2016).  ``recall_accuracy``
        is reported beside it as a metric, not a criterion."""
        return metrics["loss"] < COPY_FACTOR * metrics["baseline"]
