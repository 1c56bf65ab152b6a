"""The Trainer: the one training loop of rnnkit (optimizer, clipping, schedule, evaluation
cadence, checkpoints, best checkpoint, metrics.jsonl, progress bar, resume).

Tasks follow :mod:`rnnkit.train.task`; the checkpoint layout is :mod:`rnnkit.train.state`.
Resuming restores parameters, optimizer state, rng, step and carry, so training N steps,
saving, loading into fresh objects and training N more gives the same loss at every step as
training 2N straight (tests/test_train.py).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import CheckpointError, TrainingDiverged, UserError
from ..io.checkpoint import save_checkpoint
from ..optim import OPTIMIZERS, clip_grad_norm, grad_norm
from .config import TrainConfig
from .log import append_record, trim_after
from .state import prefixed, read_checkpoint, saved_train_config, task_from, unprefixed


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


@dataclass
class _Run:
    """What one ``fit`` call tracks besides the trainer's state."""

    t_start: float
    interrupted: bool = False
    saved_at: int | None = None  # step of the latest checkpoint written in this call
    bar: object = None


class Trainer:
    """Train a Task (:mod:`rnnkit.train.task`).  ``out_dir`` (optional) receives
    ``last.safetensors``, ``best.safetensors`` and ``metrics.jsonl``.  ``eval_split``: the split
    every evaluation uses (None: no evaluations, e.g. a fixed number of steps between two
    measurements).  ``rng``: the training batches' Generator (default ``np.random.default_rng(config.seed)``);
    its state is checkpointed."""

    def __init__(self, task, config: TrainConfig = TrainConfig(), out_dir=None, eval_split: str | None = "val",
                 rng: np.random.Generator | None = None):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config: expected a TrainConfig, got {type(config).__name__}")
        self.task, self.config, self.eval_split = task, config, eval_split
        self.out_dir = os.fspath(out_dir) if out_dir is not None else None
        self.model = task.model
        self.optimizer = config.make_optimizer(self.model.params, self.model.grads)
        self.schedule = config.make_schedule()
        self.rng = np.random.default_rng(config.seed) if rng is None else rng
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
        arrays = prefixed(self.task.state_arrays(), "task")
        arrays.update(prefixed(opt_arrays, "optim"))
        if self.carry is not None:
            arrays.update(prefixed(self.carry, "carry"))
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
    def resume(cls, path, task_cls, config: TrainConfig | None = None, out_dir=None, **kwargs) -> "Trainer":
        """Rebuild task + trainer from a full checkpoint.  ``config`` overrides the saved
        TrainConfig (e.g. more steps); by default the saved one is used."""
        return cls.from_checkpoint(*read_checkpoint(path, task_cls), task_cls, config, out_dir, path=path, **kwargs)

    @classmethod
    def from_checkpoint(cls, arrays: dict, meta: dict, task_cls, config: TrainConfig | None = None, out_dir=None,
                        path="", **kwargs) -> "Trainer":
        """:meth:`resume` from a checkpoint already read (:func:`rnnkit.train.state.read_checkpoint`)."""
        saved = saved_train_config(meta, path)
        self = cls(task_from(arrays, meta, task_cls, path), saved if config is None else config, out_dir, **kwargs)
        self.load_state(arrays, meta)
        return self

    def load_state(self, arrays: dict, meta: dict) -> None:
        """Restore optimizer, rng, step, carry and early-stopping state from a checkpoint's (arrays, meta)."""
        try:
            train = meta["train"]
            self.optimizer.load_state_dict(unprefixed(arrays, "optim"), train["optim"])
            self.rng.bit_generator.state = train["rng"]
            self.step = int(train["step"])
            self.carry = unprefixed(arrays, "carry") if train["has_carry"] else None
            self.best_val = math.inf if train["best_val"] is None else float(train["best_val"])
            self.bad_evals = int(train["bad_evals"])
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, CheckpointError):
                raise
            raise CheckpointError(f"checkpoint: bad training state ({type(e).__name__}: {e})") from None

    # ------------------------------------------------------------------ logging
    def _log(self, record: dict) -> None:
        if self.log_path:
            append_record(self.log_path, record)

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
        still that of ``config.steps``.  ``on_eval(trainer, record)`` is called after every
        evaluation (record: see :mod:`rnnkit.train.task`); if it returns True, training stops
        (stop_reason "on_eval", e.g. a task that is solved) after the checkpoint of that
        evaluation.  Ctrl-C finishes the current step, saves ``last.safetensors`` and returns
        with stop_reason "interrupted"; a second Ctrl-C aborts at once.  A non-finite loss or
        gradient raises :class:`TrainingDiverged` without touching the saved checkpoints.
        """
        cfg = self.config
        self._sync_config()
        result = TrainResult(step=self.step, stop_reason="steps", best_val=self.best_val)
        stop_at = cfg.steps if until is None else min(int(until), cfg.steps)
        unit = getattr(self.task, "count_unit", "tokens")
        with self._session(result) as run:
            win_loss, win_steps, win_count, win_t = 0.0, 0, 0, run.t_start
            while self.step < stop_at:
                if run.interrupted:
                    result.stop_reason = "interrupted"
                    break
                if cfg.time_limit and time.perf_counter() - run.t_start >= cfg.time_limit:
                    result.stop_reason = "time limit"
                    break
                loss, gn, count, lr = self.train_step()
                result.losses.append(loss)
                win_loss, win_steps, win_count = win_loss + loss, win_steps + 1, win_count + count
                run.bar.update(1)
                if cfg.log_every and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
                    now = time.perf_counter()
                    rate = win_count / max(now - win_t, 1e-9)
                    self._log({"step": self.step, "loss": win_loss / win_steps, "lr": lr, "grad_norm": gn,
                               f"{unit}_per_s": rate, "elapsed_s": now - run.t_start})
                    run.bar.set_postfix({"loss": f"{win_loss / win_steps:.3f}", f"{unit}/s": f"{rate:.0f}"},
                                        refresh=False)
                    win_loss, win_steps, win_count, win_t = 0.0, 0, 0, now
                if (cfg.eval_every and self.step % cfg.eval_every == 0) or self.step == cfg.steps:
                    t_eval = time.perf_counter()
                    stop = self._eval_and_checkpoint(result, on_eval, t_eval - run.t_start, run)
                    win_t += time.perf_counter() - t_eval  # throughput counts training time only
                    if stop:
                        result.stop_reason = stop
                        break
                elif cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.out_dir:
                    self.save(self.last_path)
                    run.saved_at = self.step
            if (result.stop_reason == "time limit" and result.losses
                    and (not result.evals or result.evals[-1]["step"] != self.step)):
                # a time limit ends the run between evaluations: evaluate where it stopped
                self._eval_and_checkpoint(result, on_eval, time.perf_counter() - run.t_start, run)
            if self.step == stop_at < cfg.steps and result.stop_reason == "steps":
                result.stop_reason = "until"
        return result

    def train_step(self) -> tuple[float, float, int, float]:
        """One optimizer step: batch, forward + backward, clipping, :meth:`_check_step`, update.
        Returns (loss, gradient norm before clipping, count, lr)."""
        cfg, task = self.config, self.task
        lr = self.schedule.lr_at(self.step, cfg.lr)
        self.optimizer.lr = lr
        batch, carry = task.train_batch(self.rng, self.carry)
        self.model.zero_grad()
        loss, carry, count = task.loss_and_backward(batch, carry)
        grads = self.model.grads
        gn = clip_grad_norm(grads, cfg.clip) if cfg.clip > 0 else grad_norm(grads)
        self._check_step(float(loss), gn)
        self.optimizer.step()
        self.carry = carry
        self.step += 1
        self.last_loss = float(loss)
        return float(loss), gn, count, lr

    def _check_step(self, loss: float, gn: float) -> None:
        """The one place a step is rejected, before the update and before any save:
        a non-finite loss or gradient norm raises TrainingDiverged."""
        if math.isfinite(loss) and math.isfinite(gn):
            return
        what = "loss" if not math.isfinite(loss) else "gradient norm"
        self._log({"event": "diverged", "step": self.step + 1, "loss": loss, "grad_norm": gn})
        kept = (f"last good checkpoint kept at {self.last_path}"
                if self.last_path and os.path.exists(self.last_path) else "no checkpoint written")
        raise TrainingDiverged(f"non-finite {what} ({loss if what == 'loss' else gn}) at step "
                               f"{self.step + 1}; training stopped ({kept}); try a lower --lr or --clip")

    @contextlib.contextmanager
    def _session(self, result: TrainResult):
        """The one place a run starts and ends.  Start: output directory, log trimmed to the
        step (resume), start/resume event, Ctrl-C handler, BLAS thread limit, progress bar.
        End (also after an exception): handler, limit and bar restored; on a normal end the
        last checkpoint is written if the final step has none, and the stop event logged."""
        from tqdm import tqdm

        cfg, task = self.config, self.task
        if self.out_dir:
            os.makedirs(self.out_dir, exist_ok=True)
            if self.log_path:
                trim_after(self.log_path, self.step)
        if self.step == 0:
            self._log({"event": "start", "step": 0, "kind": task.kind, "num_params": self.model.num_params(),
                       "config": dataclasses.asdict(cfg)})
        else:
            self._log({"event": "resume", "step": self.step})
        run = _Run(t_start=time.perf_counter())
        old_handler = None
        if threading.current_thread() is threading.main_thread():
            def handler(signum, frame):
                if run.interrupted:
                    raise KeyboardInterrupt
                run.interrupted = True
            old_handler = signal.signal(signal.SIGINT, handler)
        blas = contextlib.ExitStack()
        if cfg.blas_threads:
            try:
                from threadpoolctl import threadpool_limits
                blas.enter_context(threadpool_limits(limits=cfg.blas_threads, user_api="blas"))
            except ImportError:  # optional: without threadpoolctl numpy's default applies
                pass
        run.bar = tqdm(total=cfg.steps, initial=self.step, disable=not cfg.progress, unit="step",
                       dynamic_ncols=True, file=sys.stderr, leave=False)
        try:
            yield run
        finally:
            blas.close()
            run.bar.close()
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
        if self.out_dir and run.saved_at != self.step:
            self.save(self.last_path)
        result.step, result.best_val = self.step, self.best_val
        result.seconds = time.perf_counter() - run.t_start
        result.checkpoint = self.last_path
        result.best_checkpoint = self.best_path if self.best_path and os.path.exists(self.best_path) else None
        self._log({"event": "stop", "step": self.step, "reason": result.stop_reason, "seconds": result.seconds})

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

    def _eval_and_checkpoint(self, result: TrainResult, on_eval, elapsed: float, run) -> str | None:
        if self.eval_split is None:  # no evaluations: only the checkpoint
            if self.out_dir:
                self.save(self.last_path)
                run.saved_at = self.step
            return None
        ev = self.evaluate(self.eval_split)
        rec = {"step": self.step, **{f"{self.eval_split}_{k}": float(v) for k, v in ev.items()}, "elapsed_s": elapsed}
        result.evals.append(rec)
        improved = ev["loss"] < self.best_val
        if improved:
            self.best_val, self.bad_evals = float(ev["loss"]), 0
        else:
            self.bad_evals += 1
        self._log(rec)
        if self.out_dir:
            self.save(self.last_path, *([self.best_path] if improved else []))
            run.saved_at = self.step
        if on_eval is not None and on_eval(self, rec):
            return "on_eval"
        if self.config.patience and self.bad_evals >= self.config.patience:
            return "early stopping"
        return None
