"""TrainConfig: every training setting (the task's config holds the model and data settings)."""
from __future__ import annotations

from dataclasses import dataclass

from rnnkit.nn.optim import OPTIMIZERS, Schedule
from rnnkit.checks.rules import (NONNEG_INT, NONNEG_NUMBER, POSITIVE_INT, POSITIVE_NUMBER, RATE, check, check_choice,
                                 check_each)


@dataclass(frozen=True)
class TrainConfig:
    """How to train (model/data settings live in the task's own config).

    steps is the total number of optimizer steps; a resumed run continues up to it.
    clip 0 disables clipping; eval_every 0 evaluates only at the end;
    checkpoint_every 0 checkpoints at every evaluation; patience 0 disables
    early stopping (else: stop after ``patience`` evaluations without a new best
    val loss); time_limit 0 means none (seconds of training in this call).
    blas_threads: the cores rnnkit's threads use while training (:func:`rnnkit.engine.threads.use_cores`:
    the loops' batch shards and directions, the big GEMMs split by rows, and BLAS's threads for a plan
    that asks for them; BLAS itself stays on one thread otherwise); 0 = every core this rank may use.
    1 in the dataclass; the command line's default is the cores free now (``free_cores``).
    ema: the decay of an exponential moving average of the parameters (:mod:`rnnkit.nn.average`), 0 = off;
    with it evaluations, checkpoints and the model after training are the average.
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
    ema: float = 0.0

    def __post_init__(self):
        check_each(self, NONNEG_INT, "steps", "eval_every", "checkpoint_every", "patience", "log_every", "warmup",
                     "blas_threads", "seed")
        check_choice("optimizer", self.optimizer, sorted(OPTIMIZERS))
        check_each(self, NONNEG_NUMBER, "lr", "clip", "time_limit", "weight_decay", "momentum", "min_lr")
        check("gamma", self.gamma, POSITIVE_NUMBER)
        check("ema", self.ema, RATE)
        check("step_size", self.step_size, POSITIVE_INT)
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
