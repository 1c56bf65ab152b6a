"""A generic trainer: optimizer, clipping, schedule, evaluation, checkpoints, resume.

The Task protocol
-----------------
Any object with these members can be trained (duck-typed; see
:class:`rnnkit.tasks.charlm.CharLMTask` for a stateful example):

``task.model``
    an rnnkit :class:`~rnnkit.module.Module` (``params`` / ``grads`` / ``zero_grad``).
``task.kind: str``
    the model kind stored in checkpoints (``"charlm"``, ``"forecast"``, ...).
``task.config``
    a frozen dataclass describing the model and data (goes into the checkpoint).
``task.train_batch(rng, carry) -> (batch, carry)``
    draw the next training batch.  ``rng`` is the trainer's
    ``np.random.Generator`` (the only source of randomness; its state is
    checkpointed).  ``carry`` is ``None`` at the start and afterwards whatever
    the task returned last; it must be ``None`` or a ``dict[str, np.ndarray]``
    (so it can be checkpointed), e.g. the stream position and the detached
    hidden state of truncated BPTT.  I.i.d. tasks ignore and return ``None``.
``task.loss_and_backward(batch, carry) -> (loss, carry, count)``
    forward, loss (a float, mean over the batch), backward: gradients are
    *added* to ``model.grads`` (the trainer zeroes them before).  Returns the
    carry for the next step (the detached final state) and ``count``, the
    number of tokens/sequences, for throughput.
``task.evaluate(split="val") -> dict[str, float]``
    must hold ``"loss"``; may add ``"bpc"``, ``"accuracy"``, ``"rmse"``...  Must
    not touch the training rng or carry (deterministic).
``task.state_arrays() -> dict[str, np.ndarray]`` and ``task.meta() -> dict``
    everything needed to rebuild the task (parameters; vocabulary, config,
    normalisation statistics as JSON).
``TaskClass.from_checkpoint(arrays, meta) -> task``
    classmethod; receives exactly what ``state_arrays()`` / ``meta()`` returned.
Optional: ``task.count_unit`` (``"tokens"`` default, or ``"seqs"``) names the
throughput column.

Checkpoint layout (one safetensors file, see :mod:`rnnkit.io.checkpoint`)::

    arrays  "task/<k>"   task.state_arrays()
            "optim/<k>"  optimizer slots (Adam m, v; SGD momentum)
            "carry/<k>"  the carry dict, if any
    meta    {"kind": task.kind, "task": task.meta(),
             "train": {"step", "rng" (bit_generator.state), "optim" (hyper-parameters, t),
                       "config" (TrainConfig), "best_val", "bad_evals", "has_carry"}}

A checkpoint without "train" (e.g. from :func:`save_task`) loads as a model
only.  Resuming restores parameters, optimizer state, rng, step and carry, so
training N steps, saving, loading into fresh objects and training N more gives
the same loss at every step as training 2N straight (tests/test_train.py).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .errors import CheckpointError, TrainingDiverged, UserError
from .io.checkpoint import load_checkpoint, save_checkpoint
from .optim import OPTIMIZERS, Schedule, clip_grad_norm, grad_norm


@dataclass(frozen=True)
class TrainConfig:
    """How to train (model/data settings live in the task's own config).

    steps is the total number of optimizer steps; a resumed run continues up to it.
    clip 0 disables clipping; eval_every 0 evaluates only at the end;
    checkpoint_every 0 checkpoints at every evaluation; patience 0 disables
    early stopping (else: stop after ``patience`` evaluations without a new best
    val loss); time_limit 0 means none (seconds of training in this call).
    blas_threads: BLAS threads while training (0 = numpy's default).  1 by default:
    the GEMMs of these models are small, and on the project's shared 2-core machine
    one thread trained 3-5x faster than two (docs/training.md).
    """

    steps: int = 1000
    lr: float = 2e-3
    optimizer: str = "adam"
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    clip: float = 5.0
    schedule: str = "constant"
    warmup: int = 0
    step_size: int = 1000
    gamma: float = 0.1
    min_lr: float = 0.0
    eval_every: int = 100
    checkpoint_every: int = 0
    patience: int = 0
    seed: int = 0
    time_limit: float = 0.0
    log_every: int = 10
    progress: bool = True
    blas_threads: int = 1

    def __post_init__(self):
        for name in ("steps", "eval_every", "checkpoint_every", "patience", "log_every", "warmup", "blas_threads",
                     "seed"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name}: expected an integer >= 0, got {v!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {sorted(OPTIMIZERS)}, got {self.optimizer!r}")
        for name in ("lr", "clip", "time_limit", "weight_decay", "momentum", "min_lr"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name}: expected a finite number >= 0, got {v!r}")
        if not isinstance(self.gamma, (int, float)) or not (math.isfinite(self.gamma) and self.gamma > 0):
            raise ValueError(f"gamma: expected a finite number > 0, got {self.gamma!r}")
        if not isinstance(self.step_size, int) or isinstance(self.step_size, bool) or self.step_size < 1:
            raise ValueError(f"step_size: expected an integer >= 1, got {self.step_size!r}")
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0:
            raise ValueError("nesterov: --nesterov (Nesterov momentum) needs --momentum > 0, got momentum 0")
        self.make_schedule()  # validates the schedule fields

    def make_schedule(self) -> Schedule:
        return Schedule(self.schedule, warmup=self.warmup, step_size=self.step_size, gamma=self.gamma,
                        total_steps=self.steps, min_lr=self.min_lr)

    def make_optimizer(self, params: dict, grads: dict):
        cls = OPTIMIZERS[self.optimizer]
        if self.optimizer == "sgd":
            return cls(params, grads, self.lr, momentum=self.momentum, nesterov=self.nesterov,
                       weight_decay=self.weight_decay)
        return cls(params, grads, self.lr, weight_decay=self.weight_decay)


@dataclass
class TrainResult:
    """What ``Trainer.fit`` did: steps reached, why it stopped, per-step losses of this call, evaluations."""

    step: int
    stop_reason: str  # "steps", "until", "time limit", "early stopping", "on_eval", "interrupted"
    losses: list = field(default_factory=list)
    evals: list = field(default_factory=list)
    best_val: float = math.inf
    checkpoint: str | None = None
    best_checkpoint: str | None = None
    seconds: float = 0.0


def _prefixed(arrays: dict, prefix: str) -> dict:
    return {f"{prefix}/{k}": v for k, v in arrays.items()}


def _unprefix(arrays: dict, prefix: str) -> dict:
    p = prefix + "/"
    return {k[len(p):]: v for k, v in arrays.items() if k.startswith(p)}


def save_task(path, task) -> None:
    """Save a task's model (no training state) as a checkpoint loadable by :func:`load_task`."""
    save_checkpoint(path, _prefixed(task.state_arrays(), "task"), {"kind": task.kind, "task": task.meta()})


def load_task(path, task_cls, kind: str | None = None):
    """Rebuild a task from a checkpoint (with or without training state)."""
    kind = kind if kind is not None else getattr(task_cls, "kind", None)
    arrays, meta = load_checkpoint(path, kind=kind if isinstance(kind, str) else None)
    if "task" not in meta:
        raise CheckpointError(f"checkpoint {os.fspath(path)!r}: has no task metadata")
    return task_cls.from_checkpoint(_unprefix(arrays, "task"), meta["task"])


class Trainer:
    """Train a Task (see the module docstring).  ``out_dir`` (optional) receives
    ``last.safetensors``, ``best.safetensors`` and ``metrics.jsonl``."""

    def __init__(self, task, config: TrainConfig = TrainConfig(), out_dir=None):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config: expected a TrainConfig, got {type(config).__name__}")
        self.task, self.config = task, config
        self.out_dir = os.fspath(out_dir) if out_dir is not None else None
        self.model = task.model
        self.optimizer = config.make_optimizer(self.model.params, self.model.grads)
        self.schedule = config.make_schedule()
        self.rng = np.random.default_rng(config.seed)
        self.step = 0
        self.carry = None
        self.best_val = math.inf
        self.bad_evals = 0
        self.last_loss = math.nan  # training loss of the latest step

    # ------------------------------------------------------------------ paths
    def _path(self, name: str) -> str | None:
        return os.path.join(self.out_dir, name) if self.out_dir else None

    @property
    def last_path(self):
        return self._path("last.safetensors")

    @property
    def best_path(self):
        return self._path("best.safetensors")

    @property
    def log_path(self):
        return self._path("metrics.jsonl")

    # ------------------------------------------------------------------ state
    def state(self) -> tuple[dict, dict]:
        """(arrays, meta) of a full training checkpoint."""
        opt_arrays, opt_meta = self.optimizer.state_dict()
        arrays = _prefixed(self.task.state_arrays(), "task")
        arrays.update(_prefixed(opt_arrays, "optim"))
        if self.carry is not None:
            arrays.update(_prefixed(self.carry, "carry"))
        train = {
            "step": self.step, "rng": self.rng.bit_generator.state, "optim": opt_meta,
            "config": dataclasses.asdict(self.config),
            "best_val": self.best_val if math.isfinite(self.best_val) else None,
            "bad_evals": self.bad_evals, "has_carry": self.carry is not None,
        }
        return arrays, {"kind": self.task.kind, "task": self.task.meta(), "train": train}

    def save(self, *paths) -> None:
        """Write the training checkpoint (:meth:`state`, computed once) to every path given."""
        state = self.state()
        for path in paths:
            save_checkpoint(path, *state)

    @classmethod
    def resume(cls, path, task_cls, config: TrainConfig | None = None, out_dir=None) -> "Trainer":
        """Rebuild task + trainer from a full checkpoint.  ``config`` overrides the saved
        TrainConfig (e.g. more steps); by default the saved one is used."""
        kind = getattr(task_cls, "kind", None)
        arrays, meta = load_checkpoint(path, kind=kind if isinstance(kind, str) else None)
        train = meta.get("train")
        if not isinstance(train, dict):
            raise CheckpointError(f"checkpoint {os.fspath(path)!r}: holds a model only, no training state to resume")
        task = task_cls.from_checkpoint(_unprefix(arrays, "task"), meta["task"])
        if config is None:
            try:
                config = TrainConfig(**train["config"])
            except (TypeError, ValueError) as e:
                raise CheckpointError(f"checkpoint {os.fspath(path)!r}: bad training config ({e})") from None
        self = cls(task, config, out_dir)
        self.load_state(arrays, meta)
        return self

    def load_state(self, arrays: dict, meta: dict) -> None:
        """Restore optimizer, rng, step, carry and early-stopping state from a checkpoint's (arrays, meta)."""
        try:
            train = meta["train"]
            self.optimizer.load_state_dict(_unprefix(arrays, "optim"), train["optim"])
            self.rng.bit_generator.state = train["rng"]
            self.step = int(train["step"])
            self.carry = _unprefix(arrays, "carry") if train["has_carry"] else None
            self.best_val = math.inf if train["best_val"] is None else float(train["best_val"])
            self.bad_evals = int(train["bad_evals"])
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, CheckpointError):
                raise
            raise CheckpointError(f"checkpoint: bad training state ({type(e).__name__}: {e})") from None

    # ------------------------------------------------------------------ logging
    def _log(self, record: dict) -> None:
        if not self.log_path:
            return
        clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in record.items()}
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(clean) + "\n")

    def _trim_log(self) -> None:
        """On resume, drop log lines from steps after the checkpoint (they will be redone)."""
        p = self.log_path
        if not p or not os.path.exists(p):
            return
        with open(p, encoding="utf-8") as f:
            lines = [ln for ln in f if ln.strip()]
        keep = []
        for ln in lines:
            try:
                if json.loads(ln).get("step", 0) <= self.step:
                    keep.append(ln)
            except json.JSONDecodeError:
                pass
        if len(keep) != len(lines):  # atomic: a crash leaves the old log, never a truncated one
            fd, tmp = tempfile.mkstemp(prefix=os.path.basename(p) + ".", suffix=".tmp", dir=os.path.dirname(p))
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.writelines(keep)
                os.replace(tmp, p)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, split: str = "val") -> dict:
        ev = self.task.evaluate(split)
        if "loss" not in ev:
            raise TypeError(f"task.evaluate: expected a dict with 'loss', got keys {sorted(ev)}")
        return ev

    # ------------------------------------------------------------------ the loop
    def fit(self, on_eval=None, until: int | None = None) -> TrainResult:
        """Train until ``config.steps`` (or time limit / early stopping / Ctrl-C).

        ``self.config`` may be replaced between calls (e.g. more steps, another lr or
        schedule after ``resume``); the schedule and optimizer hyper-parameters follow it.

        ``until`` stops earlier, at that step (stop_reason "until"), with the schedule
        still that of ``config.steps``.  ``on_eval(trainer, record)`` is called after every evaluation
        (the demo prints samples there); if it returns True, training stops (stop_reason
        "on_eval", e.g. a task that is solved) after the checkpoint of that evaluation.  Ctrl-C finishes the current step, saves
        ``last.safetensors`` and returns with stop_reason "interrupted"; a second
        Ctrl-C aborts at once.  A non-finite loss or gradient raises
        :class:`TrainingDiverged` without touching the saved checkpoints.
        """
        from tqdm import tqdm

        cfg, task = self.config, self.task
        self._sync_config()
        unit = getattr(task, "count_unit", "tokens")
        if self.out_dir:
            os.makedirs(self.out_dir, exist_ok=True)
            self._trim_log()
        result = TrainResult(step=self.step, stop_reason="steps", best_val=self.best_val)
        if self.step == 0:
            self._log({"event": "start", "step": 0, "kind": task.kind, "num_params": self.model.num_params(),
                       "config": dataclasses.asdict(cfg)})
        else:
            self._log({"event": "resume", "step": self.step})
        interrupted = []
        old_handler = None
        if threading.current_thread() is threading.main_thread():
            def handler(signum, frame):
                if interrupted:
                    raise KeyboardInterrupt
                interrupted.append(True)
            old_handler = signal.signal(signal.SIGINT, handler)
        blas = contextlib.ExitStack()
        if cfg.blas_threads:
            try:
                from threadpoolctl import threadpool_limits
                blas.enter_context(threadpool_limits(limits=cfg.blas_threads, user_api="blas"))
            except ImportError:  # optional: without threadpoolctl numpy's default applies
                pass
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not cfg.progress, unit="step",
                   dynamic_ncols=True, file=sys.stderr, leave=False)
        t_start = time.perf_counter()
        win_loss, win_steps, win_count, win_t = 0.0, 0, 0, t_start
        saved_at = None
        try:
            stop_at = cfg.steps if until is None else min(int(until), cfg.steps)
            while self.step < stop_at:
                if interrupted:
                    result.stop_reason = "interrupted"
                    break
                if cfg.time_limit and time.perf_counter() - t_start >= cfg.time_limit:
                    result.stop_reason = "time limit"
                    break
                lr = self.schedule.lr_at(self.step, cfg.lr)
                self.optimizer.lr = lr
                batch, carry = task.train_batch(self.rng, self.carry)
                self.model.zero_grad()
                loss, carry, count = task.loss_and_backward(batch, carry)
                grads = self.model.grads
                gn = clip_grad_norm(grads, cfg.clip) if cfg.clip > 0 else grad_norm(grads)
                if not (math.isfinite(loss) and math.isfinite(gn)):
                    what = "loss" if not math.isfinite(loss) else "gradient norm"
                    self._log({"event": "diverged", "step": self.step + 1, "loss": float(loss), "grad_norm": gn})
                    kept = (f"last good checkpoint kept at {self.last_path}"
                            if self.last_path and os.path.exists(self.last_path) else "no checkpoint written")
                    raise TrainingDiverged(f"non-finite {what} ({loss if what == 'loss' else gn}) at step "
                                           f"{self.step + 1}; training stopped ({kept}); try a lower --lr or --clip")
                self.optimizer.step()
                self.carry = carry
                self.step += 1
                result.losses.append(float(loss))
                self.last_loss = float(loss)
                win_loss += loss
                win_steps += 1
                win_count += count
                bar.update(1)
                if cfg.log_every and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
                    now = time.perf_counter()
                    rate = win_count / max(now - win_t, 1e-9)
                    rec = {"step": self.step, "loss": win_loss / win_steps, "lr": lr, "grad_norm": gn,
                           f"{unit}_per_s": rate, "elapsed_s": now - t_start}
                    self._log(rec)
                    bar.set_postfix({"loss": f"{win_loss / win_steps:.3f}", f"{unit}/s": f"{rate:.0f}"},
                                    refresh=False)
                    win_loss, win_steps, win_count, win_t = 0.0, 0, 0, now
                do_eval = (cfg.eval_every and self.step % cfg.eval_every == 0) or self.step == cfg.steps
                if do_eval:
                    t_eval = time.perf_counter()
                    stop = self._eval_and_checkpoint(result, on_eval, t_eval - t_start)
                    win_t += time.perf_counter() - t_eval  # throughput counts training time only
                    saved_at = self.step if self.out_dir else None
                    if stop:
                        result.stop_reason = stop
                        break
                elif cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.out_dir:
                    self.save(self.last_path)
                    saved_at = self.step
            if (result.stop_reason == "time limit" and result.losses
                    and (not result.evals or result.evals[-1]["step"] != self.step)):
                # a time limit ends the run between evaluations: evaluate where it stopped
                self._eval_and_checkpoint(result, on_eval, time.perf_counter() - t_start)
                saved_at = self.step if self.out_dir else None
        finally:
            blas.close()
            bar.close()
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
        if self.step == stop_at < cfg.steps and result.stop_reason == "steps":
            result.stop_reason = "until"
        if self.out_dir and saved_at != self.step:
            self.save(self.last_path)
        result.step, result.best_val = self.step, self.best_val
        result.seconds = time.perf_counter() - t_start
        result.checkpoint = self.last_path
        result.best_checkpoint = self.best_path if self.best_path and os.path.exists(self.best_path) else None
        self._log({"event": "stop", "step": self.step, "reason": result.stop_reason, "seconds": result.seconds})
        return result

    def _sync_config(self) -> None:
        """Apply ``self.config`` (it may have been replaced, e.g. after ``resume``) to schedule and optimizer."""
        cfg = self.config
        self.schedule = cfg.make_schedule()
        if type(self.optimizer) is not OPTIMIZERS[cfg.optimizer]:
            raise UserError(f"optimizer: this run's state is {type(self.optimizer).__name__}, the config asks for "
                            f"{cfg.optimizer!r}; the optimizer cannot change when continuing a run")
        self.optimizer.weight_decay = float(cfg.weight_decay)
        if cfg.optimizer == "sgd":
            self.optimizer.momentum, self.optimizer.nesterov = float(cfg.momentum), bool(cfg.nesterov)

    def _eval_and_checkpoint(self, result: TrainResult, on_eval, elapsed: float) -> str | None:
        ev = self.evaluate("val")
        rec = {"step": self.step, **{f"val_{k}": float(v) for k, v in ev.items()}, "elapsed_s": elapsed}
        result.evals.append(rec)
        improved = ev["loss"] < self.best_val
        if improved:
            self.best_val, self.bad_evals = float(ev["loss"]), 0
        else:
            self.bad_evals += 1
        self._log(rec)
        if self.out_dir:
            self.save(self.last_path, *([self.best_path] if improved else []))
        if on_eval is not None and on_eval(self, rec):
            return "on_eval"
        if self.config.patience and self.bad_evals >= self.config.patience:
            return "early stopping"
        return None


def read_metrics(log_path) -> list[dict]:
    """The records of a metrics.jsonl file."""
    with open(log_path, encoding="utf-8") as f:
        return [json.loads(ln) for ln in f if ln.strip()]


def plot_metrics(log_path, png_path, title: str = "Training loss", ylabel: str = "loss (nats/char)"):
    """Plot train and validation loss from a metrics.jsonl file to a PNG.

    Returns the PNG path, or None when matplotlib is not installed (callers print one line).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    recs = read_metrics(log_path)
    train = [(r["step"], r["loss"]) for r in recs if "loss" in r and "event" not in r and isinstance(r["loss"], float)]
    val = [(r["step"], r["val_loss"]) for r in recs if "val_loss" in r]
    fig = Figure(figsize=(7, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if train:
        ax.plot(*zip(*train), label="train (mean over log interval)", color="tab:blue", lw=1)
    if val:
        ax.plot(*zip(*val), "o-", label="validation", color="tab:orange", ms=3)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = os.fspath(png_path) + ".tmp.png"
    fig.savefig(tmp)
    os.replace(tmp, png_path)
    return os.fspath(png_path)
