"""``rnnkit bench longlag``: the adding problem and the copy task for RNN, LSTM and GRU.

For every task, T, cell and seed: train with Adam and gradient-norm clipping
(the task's config and its ``train_defaults``, which flags may override) for at most ``budget``
training sequences, evaluate on the fixed test set every ``eval_every`` sequences, and record the number of training
sequences seen when the success criterion first held:

    adding: at least 2557 of 2560 test sequences with |error| < 0.04
            (Hochreiter & Schmidhuber 1997, Exp. 4)
    copy:   test loss < 0.5 x the memoryless baseline 10 ln 8 / (T + 20)
            (COPY_CRITERION; "clearly below" it; Arjovsky, Shah & Bengio 2016)

The resolution of the count is ``eval_every``.  The printed markdown table puts
the published LSTM figures of H&S 1997, Table 7, beside ours: 74,000 training
sequences at T = 100 and 209,000 at T = 500 (their LSTM: online updates,
negative input-gate biases).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from rnnkit.errors import TrainingDiverged, UserError
from rnnkit.engine.layer_types import LAYERS
from rnnkit.tasks.longlag import (ADDING_MAX_WRONG, ADDING_TEST_SIZE, COPY_CRITERION, AddingConfig, AddingTask,
                                  CopyConfig, CopyTask)
from rnnkit.sweep.grid import run_grid
from rnnkit.train import Trainer, metrics_of

TASKS = {"adding": (AddingTask, AddingConfig), "copy": (CopyTask, CopyConfig)}
CELL_NAMES = tuple(LAYERS)
#: Hochreiter & Schmidhuber 1997, Table 7 (adding problem, LSTM): T -> training sequences
HS1997_ADDING = {100: 74_000, 500: 209_000}


@dataclass(frozen=True)
class LongLagBenchConfig:
    """Settings of ``rnnkit bench longlag`` (one CLI flag per field).

    Defaults run in a few minutes on a CPU and are far too short to solve
    anything; the real runs take flags, e.g. ``--tasks adding --T 100
    --cells lstm,rnn --budget 200000``.
    """

    tasks: tuple = ("adding", "copy")
    T: tuple = (50, 100, 200)
    cells: tuple = CELL_NAMES
    seeds: int = 2
    budget: int = 2_000
    eval_every: int = 1_000
    hidden: int | None = None  # None: the task's default (adding 32, copy 64)
    batch: int | None = None  # None: task default (20)
    lr: float | None = None  # None: task default (adding 3e-3, copy 1e-2)
    forget_bias: float | None = None  # None: task default (adding +3, copy +1)
    clip: float | None = None  # None: task default (1.0)

    def __post_init__(self):
        for t in self.tasks:
            if t not in TASKS:
                raise UserError(f"--tasks: expected a comma list of {', '.join(TASKS)}, got {t!r}")
        for c in self.cells:
            if c not in CELL_NAMES:
                raise UserError(f"--cells: expected a comma list of {', '.join(CELL_NAMES)}, got {c!r}")
        if not self.T or any(t < 11 for t in self.T):
            raise UserError(f"--T: expected a comma list of integers >= 11, got {self.T!r}")
        for name in ("seeds", "budget", "eval_every"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')}: expected an integer >= 1, got {getattr(self, name)}")

    def task_config(self, task: str, T: int, cell: str, seed: int):
        """The task config (model and data) of one run."""
        _, config_class = TASKS[task]
        over = {k: getattr(self, k) for k in ("hidden", "batch", "forget_bias") if getattr(self, k) is not None}
        try:
            return config_class(T=T, cell=cell, seed=seed, **over)
        except ValueError as e:
            raise UserError(f"bench longlag: {e}") from None

    def train_fields(self) -> dict:
        """The training settings of every run (``task.train_config`` arguments): the budget, --lr, --clip."""
        over = {k: getattr(self, k) for k in ("lr", "clip") if getattr(self, k) is not None}
        return dict(max_sequences=self.budget, eval_every=self.eval_every, **over)


@dataclass(frozen=True)
class RunResult:
    task: str
    T: int
    cell: str
    seed: int
    solved_at: int | None  # training sequences when the criterion first held; None: not within budget
    sequences: int  # training sequences seen in total
    metric: dict  # the last test evaluation
    seconds: float
    diverged: bool = False


def success(task: str, metrics: dict) -> bool:
    """The criterion of the module docstring for one test evaluation: the task's own ``solved``."""
    return TASKS[task][0].solved(metrics)


def run_one(task_name: str, config, log=None, **train) -> RunResult:
    """Train one model with the Trainer until the criterion holds or the budget is spent.

    ``config`` is an AddingConfig/CopyConfig; ``train``: arguments of ``task.train_config`` (e.g.
    ``max_sequences``, ``eval_every`` in sequences, ``lr``; the rest the task's defaults); the
    evaluations use the fixed test set.  ``log(dict)`` receives every evaluation (and the one before training).
    """
    task_class, _ = TASKS[task_name]
    task = task_class(config)
    try:
        train = task.train_config(progress=False, **train)
    except ValueError as e:
        raise UserError(f"bench longlag: {e}") from None
    # training batches from default_rng([seed, 3]) as in rnnkit 0.1.0, so earlier counts reproduce
    trainer = Trainer(task, train, eval_split="test",
                      rng=np.random.default_rng([config.seed, 3]))
    t0 = time.perf_counter()
    head = dict(task=task_name, T=config.T, cell=config.cell, seed=config.seed)
    state = {"metric": task.evaluate("test"), "solved_at": None}
    if log:
        log(dict(head, sequences=0, **state["metric"]))

    def on_eval(tr, rec):
        seen = tr.step * config.batch
        state["metric"] = metrics_of(rec, "test")
        if log:
            log(dict(head, sequences=seen, train_loss=tr.last_loss, seconds=round(time.perf_counter() - t0, 1),
                     **state["metric"]))
        if success(task_name, state["metric"]):
            state["solved_at"] = seen
            return True
        return False

    diverged = False
    try:
        trainer.fit(on_eval=on_eval)
    except TrainingDiverged:
        diverged = True
    return RunResult(task_name, config.T, config.cell, config.seed, state["solved_at"], trainer.step * config.batch,
                     state["metric"], time.perf_counter() - t0, diverged)


def _metric_text(r: RunResult) -> str:
    m = r.metric
    if r.task == "adding":
        return f"{int(m['wrong'])}/{ADDING_TEST_SIZE} wrong, MSE {m['loss']:.4f}"
    return f"loss {m['loss']:.4f} ({m['loss'] / m['baseline']:.2f}x baseline), recall {m['recall_accuracy']:.3f}"


def _published(task: str, T: int, cell: str) -> str:
    if task == "adding" and cell == "lstm" and T in HS1997_ADDING:
        return f"{HS1997_ADDING[T]:,} (H&S 1997, Table 7)"
    return "—"


def table(results: list[RunResult], cfg: LongLagBenchConfig) -> str:
    """Markdown table, one row per (task, T, cell), one entry per seed."""
    lines = [
        f"Budget {cfg.budget:,} training sequences per run, test every {cfg.eval_every:,}; "
        f"adding solved = at most {ADDING_MAX_WRONG} of {ADDING_TEST_SIZE} test sequences with |err| >= 0.04, "
        f"copy solved = test {COPY_CRITERION}.",
        "",
        "| task | T | cell | sequences until solved (per seed) | final test metric (per seed) | published LSTM |",
        "|---|---|---|---|---|---|",
    ]
    groups: dict = {}
    for r in results:
        groups.setdefault((r.task, r.T, r.cell), []).append(r)
    for (task, T, cell), rs in groups.items():
        solved = " / ".join(
            f"{r.solved_at:,}" if r.solved_at is not None
            else ("diverged" if r.diverged else f"not solved within {r.sequences:,}") for r in rs)
        metrics = " / ".join(_metric_text(r) for r in rs)
        lines.append(f"| {task} | {T} | {cell} | {solved} | {metrics} | {_published(task, T, cell)} |")
    return "\n".join(lines)


def run_logged(cell: tuple) -> tuple:
    """``run_one`` of a grid cell (task name, task config, training fields) -> (RunResult, the records it logged)."""
    task, config, train = cell
    records = []
    return run_one(task, config, log=records.append, **train), records


def run_bench(cfg: LongLagBenchConfig, log=None, engine: str = "local", cpus: int | None = None,
              address: str | None = None) -> list[RunResult]:
    """Every run of the grid task x T x cell x seed, in this order.  ``engine`` "local": one after
    the other in this process, ``log`` called as they go; "ray": one Ray task per run
    (:func:`rnnkit.sweep.grid.run_grid`, ``cpus`` / ``address`` as there), ``log`` called with each run's
    records afterwards, in the same order.  The runs are seeded: both engines give the same results."""
    cells = [(task, cfg.task_config(task, T, cell, seed), cfg.train_fields())
             for task in cfg.tasks for T in cfg.T for cell in cfg.cells for seed in range(cfg.seeds)]
    if engine == "local":
        return [run_one(task, config, log, **train) for task, config, train in cells]
    done = run_grid(cells, run_logged, engine=engine, cpus=cpus, address=address)
    for _, records in done:
        for rec in records if log else ():
            log(rec)
    return [result for result, _ in done]
