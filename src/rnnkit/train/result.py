"""What one ``Trainer.fit`` call did (:class:`TrainResult`)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class TrainResult:
    """What ``Trainer.fit`` did: steps reached, why it stopped, per-step losses of this call, evaluations."""

    step: int
    stop_reason: str  # "steps", "until", "time limit", "early stopping", "on_eval", "interrupted"
    exit_code: int = 0  # "interrupted": the shell's code of the stop signal (SIGINT 130, SIGTERM 143, SIGHUP 129)
    losses: list = field(default_factory=list)
    evals: list = field(default_factory=list)
    best_val: float = math.inf
    checkpoint: str | None = None
    best_checkpoint: str | None = None
    seconds: float = 0.0
