"""Long-time-lag tasks: the adding problem and the copy memory task, as Trainer tasks.

``AddingTask(config)``: Recurrent -> Linear(H, 1) -> sigmoid, the seed's output
o = sigma(W_o h_L + b_o) read at each sequence's last valid step L; loss
MSE against 0.5 + (X1 + X2)/4.  ``CopyTask(config)``: Recurrent over one-hot
inputs -> Linear(H, 10) at every step; loss mean softmax cross-entropy over
all T + 20 outputs.  Data definitions: :mod:`rnnkit.data.longlag`.

Both follow the Task protocol of :mod:`rnnkit.train` (i.i.d. batches, no carry):
``train_batch(rng, carry)``, ``loss_and_backward(batch, carry)``,
``evaluate(split)``, ``state_arrays()``, ``meta()``, ``from_checkpoint``, and
``solved(metrics)`` that says when to stop.  ``task.fit(out_dir)`` trains with
:class:`rnnkit.train.Trainer` (Adam, clipping, evaluation every
``config.eval_every`` sequences) until solved or ``config.max_sequences``.
Randomness: the initial weights come from ``default_rng([seed, 1])``, the
fixed "val" and "test" sets from ``[seed, 2]`` and ``[seed, 3]``, the training
stream from the Trainer's ``default_rng(seed)``.

Defaults follow the measured facts: the forget-gate bias decides whether the
LSTM learns long lags at all (+3 here; PyTorch's default init stays on the
MSE plateau 1/24 at T=100), Adam, gradient-norm clipping at 1.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass

import numpy as np

from ..cells import sigmoid
from ..cli import nonneg_int, positive_float, positive_int
from ..errors import CheckpointError
from ..layers import LAYERS
from ..losses import mse, softmax_cross_entropy
from ..data.longlag import (
    COPY_CLASSES, COPY_LENGTH, AddingBatch, adding_batch, adding_correct, copy_baseline, copy_batch, one_hot,
)
from ..train import Trainer, TrainConfig
from .readout import Readout, check_cell

#: H&S 1997: the test set has 2560 sequences; solved when at most 3 are wrong
ADDING_TEST_SIZE, ADDING_MAX_WRONG = 2560, 3


def _check_positive_int(name, v):
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name}: expected a positive integer, got {v!r}")


@dataclass(frozen=True)
class LongLagConfig:
    """Shared fields of the long-lag tasks (sequence counts are in sequences, not batches)."""

    T: int = 100
    cell: str = "lstm"
    hidden: int = 32
    layers: int = 1
    batch: int = 20
    lr: float = 3e-3
    forget_bias: float | None = 3.0
    clip: float = 1.0
    max_sequences: int = 1_000_000
    eval_every: int = 10_000
    seed: int = 0

    def __post_init__(self):
        for name in ("T", "hidden", "layers", "batch", "max_sequences", "eval_every"):
            _check_positive_int(name, getattr(self, name))
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed: expected an integer >= 0, got {self.seed!r}")
        check_cell(self.cell)
        for name in ("lr", "clip"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name}: expected a finite number > 0, got {v!r}")
        fb = self.forget_bias
        if fb is not None and (not isinstance(fb, (int, float)) or isinstance(fb, bool) or not math.isfinite(fb)):
            raise ValueError(f"forget_bias: expected a finite number or None, got {fb!r}")

    @property
    def steps(self) -> int:
        """Optimizer steps for ``max_sequences``."""
        return -(-self.max_sequences // self.batch)


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
    lr: float = 1e-2  # measured at T=10: 1e-3 left the loss near the baseline after 100k sequences
    forget_bias: float | None = 1.0
    eval_size: int = 500

    def __post_init__(self):
        super().__post_init__()
        _check_positive_int("eval_size", self.eval_size)


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

    def __init__(self, config=None):
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise TypeError(f"config: expected {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        c = config
        self.model = Readout(c.cell, self.input_size, c.hidden, self.output_size, layers=c.layers,
                             forget_bias=c.forget_bias, seed=np.random.default_rng([c.seed, 1]))
        self._eval_sets = {}

    def _eval_set(self, split: str):
        if split not in ("val", "test"):
            raise ValueError(f"split: expected 'val' or 'test', got {split!r}")
        if split not in self._eval_sets:
            rng = np.random.default_rng([self.config.seed, 2 if split == "val" else 3])
            self._eval_sets[split] = self._draw(rng, self._eval_size())
        return self._eval_sets[split]

    # --- training
    def train_fields(self) -> dict:
        """The TrainConfig fields implied by the task config: Adam, clip, evaluation every eval_every sequences."""
        c = self.config
        return dict(steps=c.steps, lr=c.lr, optimizer="adam", clip=c.clip, eval_every=max(1, c.eval_every // c.batch),
                    seed=c.seed, log_every=max(1, min(50, c.eval_every // c.batch)))

    def train_config(self, progress: bool = True) -> TrainConfig:
        """The Trainer settings implied by the task config (:meth:`train_fields`)."""
        return TrainConfig(progress=progress, **self.train_fields())

    def fit(self, out_dir=None, progress: bool = True, on_eval=None, trainer: Trainer | None = None) -> LongLagResult:
        """Train until solved (checked on the val set at every evaluation) or max_sequences.

        ``on_eval(sequences, metrics)`` is called after every evaluation.  With
        ``out_dir``, checkpoints (last/best.safetensors) and metrics.jsonl go there.
        ``trainer`` (from ``Trainer.resume``) continues a saved run.
        """
        trainer = Trainer(self, self.train_config(progress), out_dir) if trainer is None else trainer
        batch = self.config.batch

        def hook(tr, rec):
            metrics = {k[len("val_"):]: v for k, v in rec.items() if k.startswith("val_")}
            if on_eval is not None:
                on_eval(tr.step * batch, metrics)
            return self.solved(metrics)  # True ends Trainer.fit (after this evaluation's checkpoint)

        t0 = time.perf_counter()
        reason = trainer.fit(hook).stop_reason
        # "on_eval": the hook found the task solved; "steps": max_sequences; or "interrupted", "time limit"
        reason = {"on_eval": "solved", "steps": "max sequences"}.get(reason, reason)
        val = self.evaluate("val")
        return LongLagResult(solved=self.solved(val), sequences=trainer.step * batch, steps=trainer.step,
                             seconds=time.perf_counter() - t0, stop_reason=reason, val=val,
                             test=self.evaluate("test"), checkpoint=trainer.last_path)

    # --- Task protocol
    def train_batch(self, rng: np.random.Generator, carry=None):
        """A fresh i.i.d. batch of ``config.batch`` sequences; no carry between steps."""
        return self._draw(rng, self.config.batch), None

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.model.params.items()}

    def meta(self) -> dict:
        return {"kind": self.kind, "config": dataclasses.asdict(self.config)}

    @classmethod
    def from_checkpoint(cls, arrays: dict, meta: dict):
        if meta.get("kind") != cls.kind:
            raise CheckpointError(f"checkpoint holds a {meta.get('kind')!r} model, expected {cls.kind!r}")
        try:
            config = cls.config_class(**meta["config"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint config is not a valid {cls.config_class.__name__}: {e}") from None
        task = cls(config)
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
    input_size, output_size = 2, 1

    def _eval_size(self):
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

    def solved(self, metrics: dict) -> bool:
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
    input_size = output_size = COPY_CLASSES

    def _eval_size(self):
        return self.config.eval_size

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

    def solved(self, metrics: dict) -> bool:
        """Every recalled symbol right on 99% of the evaluation set's positions."""
        return metrics["recall_accuracy"] >= 0.99


# ----------------------------------------------------------------------------- command line
def forget_bias_arg(text: str):
    import argparse

    if text.lower() == "none":
        return None
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number or 'none', got {text!r}")
    return v


_CLI_FIELDS = (  # (flag, config field, type, help); model/data fields, then the training ones (_TRAIN_FIELDS)
    ("--T", "T", positive_int, "minimal sequence length (adding: T..T+T/10) / delay (copy)"),
    ("--cell", "cell", str, "recurrent cell: lstm, gru or rnn"),
    ("--hidden", "hidden", positive_int, "hidden units"),
    ("--layers", "layers", positive_int, "stacked recurrent layers"),
    ("--batch", "batch", positive_int, "sequences per optimizer step"),
    ("--lr", "lr", positive_float, "Adam learning rate"),
    ("--forget-bias", "forget_bias", forget_bias_arg, "LSTM forget-gate / GRU update-gate bias ('none': init default)"),
    ("--clip", "clip", positive_float, "gradient-norm clipping threshold"),
    ("--max-sequences", "max_sequences", positive_int, "stop after this many training sequences if not solved"),
    ("--eval-every", "eval_every", positive_int, "evaluate on the val set every N training sequences"),
    ("--seed", "seed", nonneg_int, "seed of weights, data and evaluation sets"),
)
#: fields that only steer training: ``--resume`` applies them; the others must match the checkpoint
_TRAIN_FIELDS = ("lr", "clip", "max_sequences", "eval_every")


def _add_parser(train_subparsers, task_cls, help_text):
    import argparse

    defaults = task_cls.config_class()
    p = train_subparsers.add_parser(task_cls.kind, help=help_text, description=help_text)
    for flag, name, typ, h in _CLI_FIELDS:
        kw = {"choices": tuple(LAYERS)} if name == "cell" else {}
        # not given: no attribute (a new run takes the config's default, --resume the checkpoint's value)
        p.add_argument(flag, dest=name, type=typ, default=argparse.SUPPRESS,
                       help=f"{h} (default {getattr(defaults, name)})", **kw)
    p.add_argument("--out", help=f"directory for checkpoints, metrics.jsonl and loss.png (default runs/{task_cls.kind})")
    p.add_argument("--resume", metavar="CKPT", help="continue a run from its last.safetensors")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=lambda args: _train_handler(task_cls, args))


def _describe(task, metrics: dict) -> str:
    if task.kind == "adding":
        n = int(metrics["correct"] + metrics["wrong"])
        return (f"mse {metrics['loss']:.5f}  correct {int(metrics['correct'])}/{n} "
                f"({100 * metrics['accuracy']:.2f}%)")
    return (f"loss {metrics['loss']:.4f} nats (memoryless baseline {metrics['baseline']:.4f})  "
            f"recall accuracy {100 * metrics['recall_accuracy']:.2f}%")


def _train_handler(task_cls, args) -> int:
    from tqdm import tqdm

    from ..cli import refuse_existing_checkpoint, refuse_model_changes
    from ..errors import UserError
    from ..train import plot_metrics

    given = {name: getattr(args, name) for _, name, _, _ in _CLI_FIELDS if hasattr(args, name)}
    if args.resume:
        out = args.out or os.path.dirname(os.path.abspath(args.resume))
        trainer = Trainer.resume(args.resume, task_cls, out_dir=out)
        task = trainer.task
        refuse_model_changes(task.config, {k: v for k, v in given.items() if k not in _TRAIN_FIELDS})
        try:  # the training flags given override the checkpoint's (recorded in the next checkpoint)
            task.config = dataclasses.replace(task.config, **{k: v for k, v in given.items() if k in _TRAIN_FIELDS})
            trainer.config = dataclasses.replace(trainer.config, **task.train_fields(), progress=not args.no_progress)
        except ValueError as e:
            raise UserError(str(e)) from None
        print(f"resuming {task.kind} from {args.resume} at {trainer.step * task.config.batch:,} sequences")
    else:
        fields = given
        try:
            config = task_cls.config_class(**fields)
        except ValueError as e:
            raise UserError(str(e)) from None
        out = args.out or os.path.join("runs", task_cls.kind)
        refuse_existing_checkpoint(out)
        task = task_cls(config)
        trainer = Trainer(task, task.train_config(progress=not args.no_progress), out)
    c = task.config
    print(f"{task.kind} T={c.T}: {c.cell.upper()} {c.layers}x{c.hidden}, batch {c.batch}, Adam lr {c.lr}, "
          f"clip {c.clip}, forget bias {c.forget_bias}, seed {c.seed}; {task.model.num_params():,} parameters; "
          f"at most {c.max_sequences:,} sequences")

    def on_eval(seqs, metrics):
        tqdm.write(f"{seqs:>10,} sequences  val {_describe(task, metrics)}")

    res = task.fit(on_eval=on_eval, trainer=trainer)
    state = "solved" if res.stop_reason == "solved" else f"not solved ({res.stop_reason})"
    print(f"{state} after {res.sequences:,} training sequences ({res.steps:,} steps, {res.seconds:.0f} s)")
    print(f"test: {_describe(task, res.test)}")
    print(f"checkpoint: {res.checkpoint}")
    if res.stop_reason == "interrupted":
        print(f"interrupted: resume with  rnnkit train {task.kind} --resume {res.checkpoint}")
    got = plot_metrics(trainer.log_path, os.path.join(trainer.out_dir, "loss.png"), title=f"{task.kind} T={c.T}",
                       ylabel="MSE" if task.kind == "adding" else "cross-entropy (nats per output)")
    print(f"loss curve: {got}" if got else "loss curve: not plotted (matplotlib is not installed)")
    return 0


EVAL_KINDS = ("adding", "copy")


def eval_checkpoint(path, meta, args) -> int:
    """``rnnkit eval CKPT [--split val|test]``: the fixed evaluation sets regenerate from the seed."""
    from ..errors import UserError
    from ..train import load_task

    if args.text or args.split == "train":
        raise UserError(f"eval: a {meta.get('kind')} checkpoint is evaluated on its fixed 'val' or 'test' set "
                        f"(--split val|test), not on {'a file' if args.text else 'a train split'}")
    task = load_task(path, {"adding": AddingTask, "copy": CopyTask}[meta["kind"]])
    print(f"{task.kind} T={task.config.T}, {args.split} set: {_describe(task, task.evaluate(args.split))}")
    return 0


def register_cli(root_subparsers, train_subparsers) -> None:
    """``rnnkit train adding`` and ``rnnkit train copy``."""
    _add_parser(train_subparsers, AddingTask, "adding problem (Hochreiter & Schmidhuber 1997, Exp. 4)")
    _add_parser(train_subparsers, CopyTask, "copy memory task (Arjovsky et al. 2016)")
