"""The gradient-flow experiment of ``rnnkit gradflow``: for each cell an adding-problem model
(rnnkit.tasks.longlag.AddingTask), gradient norms ||dL/dh_t|| (and ||dL/dc_t||) vs distance from
the loss on a fixed batch, at initialisation and after ``steps`` steps of the Trainer.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

from rnnkit.cells.protocol import sigmoid
from rnnkit.data.longlag import adding_batch
from rnnkit.errors import UserError
from rnnkit.io.outputs import write_output
from rnnkit.engine.layer_types import LAYERS
from rnnkit.nn.losses import mse
from rnnkit.tasks.longlag import AddingConfig, AddingTask
from rnnkit.train import TrainConfig, Trainer
from rnnkit.diagnostics.gradflow import gradient_flow


@dataclass(frozen=True)
class GradFlowConfig:
    """Settings of ``rnnkit gradflow`` (one flag per field)."""

    cells: tuple = tuple(LAYERS)
    T: int = 200
    steps: int = 200
    batch: int = 20
    measure_batch: int = 64
    hidden: int = 32
    lr: float = 3e-3
    forget_bias: float | None = 3.0
    seed: int = 0
    out_dir: str = "runs/gradflow"

    def __post_init__(self):
        for c in self.cells:
            if c not in LAYERS:
                raise UserError(f"--cell: expected a comma list of {', '.join(LAYERS)}, got {c!r}")
        if not self.cells:
            raise UserError(f"--cell: expected at least one of {', '.join(LAYERS)}")
        if self.T < 11:
            raise UserError(f"--T: expected an integer >= 11 (adding problem), got {self.T}")
        for name in ("steps", "batch", "measure_batch", "hidden"):
            if getattr(self, name) < (0 if name == "steps" else 1):
                raise UserError(f"--{name.replace('_', '-')}: expected a positive integer, got {getattr(self, name)}")
        if not self.lr > 0:
            raise UserError(f"--lr: expected a number > 0, got {self.lr}")

    def train_config(self) -> TrainConfig:
        """The training between the two measurements: Adam, clipping at the adding task's default."""
        return TrainConfig(steps=self.steps, lr=self.lr, clip=AddingTask.train_defaults.clip, eval_every=0, log_every=0,
                           seed=self.seed, progress=False)


def adding_flow(task, batch):
    """Gradient flow of an AddingTask's model on one AddingBatch (loss read at each row's last step).

    The same loss and gradients as ``task.loss_and_backward(batch)`` (added into
    ``task.model.grads``; zero them afterwards if this was only a measurement).
    """
    model = task.model
    rows = np.arange(batch.x.shape[1])
    last = batch.lengths - 1

    def loss_fn(out):
        h_last = out[last, rows]  # (B, H): out_t = h_t at each row's last valid step
        o = sigmoid(model.head(h_last))[:, 0]
        loss, do = mse(o, batch.target)
        d_out = np.zeros_like(out)
        d_out[last, rows] = model.head.backward((do * o * (1.0 - o))[:, None])  # sigma' = o(1-o)
        return loss, d_out

    return gradient_flow(model.rnn, batch.x, loss_fn, lengths=batch.lengths)


def run_gradflow(cfg: GradFlowConfig, progress=print) -> list[dict]:
    """Measure, train (the Trainer, no evaluations), measure for every cell; returns CSV rows
    (see :func:`write_gradflow_csv`)."""
    rows = []
    for cell in cfg.cells:
        task = AddingTask(AddingConfig(T=cfg.T, cell=cell, hidden=cfg.hidden, batch=cfg.batch,
                                       forget_bias=cfg.forget_bias, seed=cfg.seed))
        probe = adding_batch(np.random.default_rng([cfg.seed, 7]), cfg.T, cfg.measure_batch)
        trainer = Trainer(task, cfg.train_config(), eval_split=None, rng=np.random.default_rng([cfg.seed, 3]))
        for stage in ("init", "trained"):
            if stage == "trained":
                trainer.fit()
            flow = adding_flow(task, probe)
            task.model.zero_grad()
            fields = ("h", "c") if flow.c_sq is not None else ("h",)
            for field in fields:
                norms = flow.by_distance(field)
                for k in range(norms.shape[0]):
                    for dist in range(int(flow.lengths.min())):
                        seen = 0 if stage == "init" else cfg.steps * cfg.batch
                        rows.append(dict(cell=cell, stage=stage, sequences=seen, layer=k, state=field,
                                         distance=dist, norm=float(norms[k, dist]), loss=flow.loss))
            progress(f"gradflow: {cell} {stage}: loss {flow.loss:.4f}, ||dL/dh|| at distance 0: "
                     f"{flow.by_distance('h')[0, 0]:.3e}, at {int(flow.lengths.min()) - 1}: "
                     f"{flow.by_distance('h')[0, int(flow.lengths.min()) - 1]:.3e}")
    return rows


def write_gradflow_csv(rows: list[dict], path) -> None:
    """Columns: cell, stage (init|trained), sequences, layer, state (h|c), distance, norm, loss."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    write_output(path, buf.getvalue(), "csv", what="--out-dir")  # atomic; never over another kind of file
