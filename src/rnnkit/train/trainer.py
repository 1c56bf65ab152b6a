"""The Trainer: the one training loop of rnnkit (optimizer, clipping, schedule, evaluation
cadence, checkpoints, best checkpoint, metrics.jsonl, progress bar, resume).

Tasks follow :mod:`rnnkit.train.task`; the checkpoint layout is :mod:`rnnkit.train.state`.
Resuming restores parameters, optimizer state, rng, step and carry, so training N steps,
saving, loading into fresh objects and training N more gives the same loss at every step as
training 2N straight (tests/train/test_train.py).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from rnnkit.checks.arrays import first_nonfinite
from rnnkit.io.distributed import Communicator
from rnnkit.errors import NonFiniteError, UserError
from rnnkit.io.checkpoint import save_checkpoint
from rnnkit.io.lock import claim_out_dir
from rnnkit.train.signals import StopSignals
from rnnkit.nn.optim import OPTIMIZERS, clip_grad_norm, grad_norm
from rnnkit.engine.threads import blas_threads, use_cores
from rnnkit.train.config import TrainConfig
from rnnkit.train.guard import read_checkpoint
from rnnkit.train.log import LogWindow, append_record, trim_after
from rnnkit.train.result import TrainResult
from rnnkit.train.data_parallel import agreed_stop, shard_batch
from rnnkit.nn.average import ParamAverage
from rnnkit.train.state import restore_training, saved_train_config, task_from, training_state


@dataclass
class _Run:
    """What one ``fit`` call tracks besides the trainer's state."""

    t_start: float
    stop: StopSignals = field(default_factory=StopSignals)  # SIGINT/SIGTERM/SIGHUP: a flag checked between steps
    saved_at: int | None = None  # step of the latest checkpoint written in this call
    bar: object = None


class Trainer:
    """Train a Task (:mod:`rnnkit.train.task`).  ``out_dir`` (optional) receives
    ``last.safetensors``, ``best.safetensors`` and ``metrics.jsonl``; every ``fit`` holds its lock
    (:func:`rnnkit.io.lock.claim_out_dir`: one writer per directory, stray temp files removed)
    unless ``out_lock``, a held lock of that directory (the CLI holds one for the whole command),
    is set.  ``eval_split``: the split every evaluation uses (None: no evaluations, e.g. a fixed
    number of steps between two measurements).  ``rng``: the training batches' Generator
    (default ``np.random.default_rng(config.seed)``); its state is checkpointed.

    ``comm``: the :class:`rnnkit.io.distributed.Communicator` (default ``from_environment()``: under
    ``mpiexec -n N`` data-parallel over N ranks, else one process without MPI).  With N > 1 every
    rank trains on its shard of each global batch (:mod:`rnnkit.train.data_parallel`), the gradients
    are summed by one Allreduce before clipping, every rank applies the same update, and rank 0
    alone writes checkpoints, metrics.jsonl and the progress bar."""

    def __init__(self, task, config: TrainConfig = TrainConfig(), out_dir=None, eval_split: str | None = "val",
                 rng: np.random.Generator | None = None, comm: Communicator | None = None):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config: expected a TrainConfig, got {type(config).__name__}")
        self.task, self.config, self.eval_split = task, config, eval_split
        self.out_dir = os.fspath(out_dir) if out_dir is not None else None
        self.model = task.model
        self.optimizer = config.make_optimizer(self.model.params, self.model.grads)
        self.schedule = config.make_schedule()
        self.average = ParamAverage(self.model.params, config.ema) if config.ema else None  # --ema; None: off
        self.rng = np.random.default_rng(config.seed) if rng is None else rng
        self.step = 0
        self.carry = None
        self.best_val = math.inf
        self.bad_evals = 0
        self.last_loss = math.nan  # training loss of the latest step
        self.window = LogWindow()  # the steps since the last logged loss (checkpointed: the resumed log is the same)
        self.out_lock = None  # a held rnnkit.io.lock.OutDirLock of out_dir: fit does not lock again
        self.exit_code = 0  # of the latest fit: 0, or the stop signal's shell code (130, 143, 129)
        self.comm = Communicator.from_environment() if comm is None else comm
        self._stop_flags = (False, False)  # (this rank wants to stop, the last Allreduce said some rank does)

    def cores(self) -> int:
        """Cores the model's loops may use while this trainer trains (:func:`rnnkit.engine.threads.use_cores`):
        this rank's share of its node (MPI), lowered to ``config.blas_threads`` when that is set."""
        n = self.comm.cores()
        return min(n, self.config.blas_threads) if self.config.blas_threads else n

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
        """(arrays, meta) of a full training checkpoint (:func:`rnnkit.train.state.training_state`)."""
        return training_state(self)

    @contextlib.contextmanager
    def averaged(self):
        """The parameter average (``--ema``) in the model's arrays inside the block (no average: as they are)."""
        with self.average.averaged() if self.average is not None else contextlib.nullcontext():
            yield

    def save(self, *paths) -> None:
        """Write the training checkpoint (:meth:`state`, computed once) to every path given.
        Every rank computes the state (the carry is gathered); rank 0 alone writes."""
        with self.averaged():  # the model saved is the average: evaluated, and loaded by eval, as the best
            state = self.state()
            for path in paths if self.comm.is_root else ():
                save_checkpoint(path, *state)

    @classmethod
    def resume(cls, path, task_cls, config: TrainConfig | None = None, out_dir=None, reset_optimizer: bool = False,
               **kwargs) -> "Trainer":
        """Rebuild task + trainer from a full checkpoint, validated first
        (:func:`rnnkit.train.guard.read_checkpoint`).  ``config`` overrides the saved TrainConfig
        (e.g. more steps); by default the saved one is used.  ``reset_optimizer``: start with a
        fresh optimizer state (needed when the checkpoint has none or one that does not fit;
        the run then no longer continues exactly)."""
        arrays, meta = read_checkpoint(path, task_cls, training=True, reset_optimizer=reset_optimizer)
        return cls.from_checkpoint(arrays, meta, task_cls, config, out_dir, path=path,
                                   reset_optimizer=reset_optimizer, **kwargs)

    @classmethod
    def from_checkpoint(cls, arrays: dict, meta: dict, task_cls, config: TrainConfig | None = None, out_dir=None,
                        path="", reset_optimizer: bool = False, **kwargs) -> "Trainer":
        """:meth:`resume` from a checkpoint already read (:func:`rnnkit.train.guard.read_checkpoint`)."""
        saved = saved_train_config(meta, path)
        self = cls(task_from(arrays, meta, task_cls, path), saved if config is None else config, out_dir, **kwargs)
        self.load_state(arrays, meta, reset_optimizer)
        return self

    def load_state(self, arrays: dict, meta: dict, reset_optimizer: bool = False) -> None:
        """Restore optimizer, rng, step, carry, parameter average and early-stopping state from a checkpoint's
        (arrays, meta) (:func:`rnnkit.train.state.restore_training`); ``reset_optimizer``: keep this trainer's
        fresh optimizer state instead of the saved one."""
        restore_training(self, arrays, meta, reset_optimizer)

    # ------------------------------------------------------------------ logging
    def _log(self, record: dict) -> None:
        if self.log_path and self.comm.is_root:
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
        evaluation.  SIGINT (Ctrl-C), SIGTERM or SIGHUP finishes the current step, saves
        ``last.safetensors`` and returns with stop_reason "interrupted" and ``exit_code`` 130, 143
        or 129 (also ``self.exit_code``); a second signal aborts at once
        (:class:`rnnkit.errors.Interrupted`).  A non-finite loss, gradient or updated parameter
        raises :class:`~rnnkit.errors.NonFiniteError` (a ``TrainingDiverged``) before anything is
        saved: the checkpoints on disk are those of the last finite state.
        """
        cfg = self.config
        self._sync_config()
        result = TrainResult(step=self.step, stop_reason="steps", best_val=self.best_val)
        stop_at = cfg.steps if until is None else min(int(until), cfg.steps)
        unit = getattr(self.task, "count_unit", "tokens")
        with self._session(result) as run:
            win = self.window
            win.t0 = run.t_start
            while self.step < stop_at:
                time_up = bool(cfg.time_limit) and time.perf_counter() - run.t_start >= cfg.time_limit
                stop = agreed_stop(self.comm, run, time_up, self._stop_flags[1])
                if stop:
                    result.stop_reason, result.exit_code = stop
                    break
                self._stop_flags = (bool(run.stop) or time_up, False)
                loss, gn, count, lr = self.train_step()
                result.losses.append(loss)
                win.add(loss, count)
                run.bar.update(1)
                if cfg.log_every and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
                    now = time.perf_counter()
                    rate = win.count / max(now - win.t0, 1e-9)
                    self._log({"step": self.step, "loss": win.loss / win.steps, "lr": lr, "grad_norm": gn,
                               f"{unit}_per_s": rate, "elapsed_s": now - run.t_start})
                    run.bar.set_postfix({"loss": f"{win.loss / win.steps:.3f}", f"{unit}/s": f"{rate:.0f}"},
                                        refresh=False)
                    win.reset(now)
                if (cfg.eval_every and self.step % cfg.eval_every == 0) or self.step == cfg.steps:
                    t_eval = time.perf_counter()
                    stop = self._eval_and_checkpoint(result, on_eval, t_eval - run.t_start, run)
                    win.t0 += time.perf_counter() - t_eval  # throughput counts training time only
                    if stop:
                        result.stop_reason = stop
                        break
                elif cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.out_dir:
                    self.save(self.last_path)
                    run.saved_at = self.step
            late = int(self.comm.max(run.stop.exit_code if run.stop else 0))  # a stop signal on any rank
            if late:  # also a signal during the last evaluation: the run was stopped, never exit 0
                result.exit_code = late
            if (result.stop_reason == "time limit" and result.losses
                    and (not result.evals or result.evals[-1]["step"] != self.step)):
                # a time limit ends the run between evaluations: evaluate where it stopped
                self._eval_and_checkpoint(result, on_eval, time.perf_counter() - run.t_start, run)
            if self.step == stop_at < cfg.steps and result.stop_reason == "steps":
                result.stop_reason = "until"
        return result

    def train_step(self) -> tuple[float, float, int, float]:
        """One optimizer step: batch, forward + backward, clipping, :meth:`_check_step`, update,
        :meth:`_check_update`.  Returns (loss, gradient norm before clipping, count, lr)."""
        cfg, task = self.config, self.task
        lr = self.schedule.lr_at(self.step, cfg.lr)
        self.optimizer.lr = lr
        batch, carry = task.train_batch(self.rng, self.carry)
        batch = shard_batch(task, batch, self.comm)
        self.model.zero_grad()
        loss, carry, count = task.loss_and_backward(batch, carry)
        grads = self.model.grads
        if self.comm.size > 1:  # the global batch's gradient and mean loss on every rank; stop agreed
            reduced = self.comm.allreduce_grads(grads, loss, count, stop=self._stop_flags[0])
            loss, count, self._stop_flags = reduced.loss, reduced.count, (False, reduced.stop)
        gn = clip_grad_norm(grads, cfg.clip) if cfg.clip > 0 else grad_norm(grads)
        self._check_step(float(loss), gn)
        self.optimizer.step()
        self._check_update(float(loss))
        if self.average is not None:
            self.average.update()
        self.carry = carry
        self.step += 1
        self.last_loss = float(loss)
        return float(loss), gn, count, lr

    def _check_step(self, loss: float, gn: float) -> None:
        """Before the update: a non-finite loss or gradient rejects the step (:meth:`_diverged`)."""
        if math.isfinite(loss) and math.isfinite(gn):
            return
        if not math.isfinite(loss):
            self._diverged(f"non-finite loss ({loss})", "loss", (), loss, gn)
        name, k, v = first_nonfinite(self.model.grads) or ("gradient norm", (), gn)
        self._diverged(f"non-finite gradient {name!r} ({v}{f' at index {k}' if k else ''})", name, k, loss, gn)

    def _check_update(self, loss: float) -> None:
        """After the update, before any save: a non-finite parameter rejects the step."""
        bad = first_nonfinite(self.model.params)
        if bad is not None:
            name, k, v = bad
            self._diverged(f"non-finite parameter {name!r} after the update ({v}{f' at index {k}' if k else ''})",
                           name, k, loss, math.nan)

    def _diverged(self, what: str, tensor: str, index: tuple, loss: float, gn: float):
        """The one place a step is rejected: logged, then NonFiniteError; nothing of it is saved."""
        self._log({"event": "diverged", "step": self.step + 1, "tensor": tensor, "loss": loss, "grad_norm": gn})
        kept = (f"last good checkpoint kept at {self.last_path}"
                if self.last_path and os.path.exists(self.last_path) else "no checkpoint written")
        raise NonFiniteError(f"{what} at step {self.step + 1}; training stopped ({kept}); try a lower --lr or --clip",
                             tensor=tensor, index=index)

    def _holds_out_dir(self) -> bool:
        lock = self.out_lock
        return bool(lock is not None and lock.held and lock.directory == os.path.abspath(self.out_dir))

    @contextlib.contextmanager
    def _session(self, result: TrainResult):
        """The one place a run starts and ends.  Start: output directory claimed (locked, stray
        temp files removed; :func:`rnnkit.io.lock.claim_out_dir`), log trimmed to the step
        (resume), start/resume event, stop-signal flag (:class:`rnnkit.train.signals.StopSignals`),
        BLAS thread limit, NumPy overflow warnings off (every step is checked for NaN/inf
        instead), progress bar.  End (also after an exception): all of it restored and the lock
        released; on a normal end (a stop signal included) the last checkpoint is written if the
        final step has none, and the stop event logged."""
        from tqdm import tqdm

        cfg, task = self.config, self.task
        root = self.comm.is_root
        with contextlib.ExitStack() as stack:
            stack.enter_context(self.comm.guard())  # several ranks: an exception on one ends the job
            self.comm.broadcast_params(self.model.params)  # rank 0's weights on every rank
            self._stop_flags = (False, False)
            if self.out_dir and root and not self._holds_out_dir():
                stack.enter_context(claim_out_dir(self.out_dir))
            if self.log_path and root:
                trim_after(self.log_path, self.step)
            if self.step == 0:
                self._log({"event": "start", "step": 0, "kind": task.kind, "num_params": self.model.num_params(),
                           "config": dataclasses.asdict(cfg)})
            else:
                self._log({"event": "resume", "step": self.step})
            run = _Run(t_start=time.perf_counter())
            self.exit_code = 0
            with contextlib.ExitStack() as running:
                running.enter_context(run.stop)
                running.enter_context(np.errstate(over="ignore", invalid="ignore", divide="ignore"))
                running.enter_context(use_cores(self.cores()))  # rnnkit's threads: this rank's share of its node
                # BLAS itself on one thread: the loops and the big GEMMs split the work over rnnkit's threads
                # (rnnkit.engine.big_gemm), and a plan that wants BLAS's threads sets them for its loops.
                # Measured (issue 19): BLAS on the rank's cores instead let OpenBLAS's idle threads spin on
                # the loops' cores: the char-LM trained at 49,318-53,956 tokens/s against 82,751-83,952
                running.enter_context(blas_threads(1))
                run.bar = running.enter_context(tqdm(total=cfg.steps, initial=self.step,
                                                     disable=not (cfg.progress and root), unit="step",
                                                     dynamic_ncols=True, file=sys.stderr, leave=False))
                if self.average is not None:  # the optimizer steps the raw parameters
                    self.average.use(False)
                yield run
                if self.out_dir and run.saved_at != self.step:
                    self.save(self.last_path)  # a second signal here aborts; the earlier checkpoint stays
                if self.average is not None:  # after training the model is the average (as saved)
                    self.average.use(True)
            result.step, result.best_val = self.step, self.best_val
            result.seconds = time.perf_counter() - run.t_start
            result.checkpoint = self.last_path
            result.best_checkpoint = self.best_path if self.best_path and os.path.exists(self.best_path) else None
            self.exit_code = result.exit_code
            stats = self.comm.stats  # several ranks: rank 0's time in the step's Allreduce (waits included)
            self._log({"event": "stop", "step": self.step, "reason": result.stop_reason, "seconds": result.seconds,
                       **({"signal": run.stop.signame} if run.stop else {}),
                       **({"ranks": self.comm.size, "ranks_on_node": self.comm.ranks_on_node(),
                           "cores": self.cores(), "allreduce_s": stats.allreduce_seconds,
                           "allreduce_calls": stats.allreduce_calls} if self.comm.size > 1 else {})})

    def _sync_config(self) -> None:
        """Apply ``self.config`` (it may have been replaced, e.g. after ``resume``) to schedule and optimizer."""
        cfg = self.config
        self.schedule = cfg.make_schedule()
        if type(self.optimizer) is not OPTIMIZERS[cfg.optimizer]:
            raise UserError(f"optimizer: this run's state is {type(self.optimizer).__name__}, the config asks for "
                            f"{cfg.optimizer!r}; the optimizer cannot change when continuing a run")
        self.optimizer.weight_decay = float(cfg.weight_decay)
        if not cfg.ema and self.average is not None:  # averaging stops: on from the raw parameters
            self.average.use(False)
            self.average = None
        elif cfg.ema:
            if self.average is None:
                self.average = ParamAverage(self.model.params, cfg.ema)
            self.average.decay = float(cfg.ema)
        if cfg.optimizer == "sgd":
            self.optimizer.momentum, self.optimizer.nesterov = float(cfg.momentum), bool(cfg.nesterov)

    def _eval_and_checkpoint(self, result: TrainResult, on_eval, elapsed: float, run) -> str | None:
        if self.eval_split is None:  # no evaluations: only the checkpoint
            if self.out_dir:
                self.save(self.last_path)
                run.saved_at = self.step
            return None
        with self.averaged():
            ev = self.evaluate(self.eval_split)
        rec = {"step": self.step, **{f"{self.eval_split}_{k}": float(v) for k, v in ev.items()}, "elapsed_s": elapsed}
        result.evals.append(rec)
        name, sign = getattr(self.task, "best_metric", ("loss", 1))  # rnnkit.train.task: lower is better
        score = sign * float(ev[name])
        improved = score < self.best_val
        if improved:
            self.best_val, self.bad_evals = score, 0
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
