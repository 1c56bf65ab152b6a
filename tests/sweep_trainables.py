"""Trainables for tests/tools/test_sweep.py (a module of its own, so Ray's workers can import it by name).

A tiny LSTM(2, hidden) + Linear(hidden, 1) regressor in float64, trained with Adam on a
fixed synthetic task (predict the running mean of the first input), evaluated on a fixed
validation batch (mse).
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from rnnkit import LSTM, Linear, Module, mse
from rnnkit.io.checkpoint import load_checkpoint, save_checkpoint
from rnnkit.nn.optim import Adam


class Net(Module):
    def __init__(self, hidden: int, seed: int):
        rng = np.random.default_rng(seed)
        self.lstm = LSTM(2, hidden, dtype=np.float64, seed=rng)
        self.head = Linear(hidden, 1, dtype=np.float64, seed=rng)

    def loss(self, x, y, backward: bool):
        h, _ = self.lstm(x)
        loss, d = mse(self.head(h), y)
        if backward:
            self.lstm.backward(self.head.backward(d))
        else:
            self.head.release()
            self.lstm.release()
        return loss


def data(split: str, T: int = 8, B: int = 16):
    rng = np.random.default_rng({"train": 0, "val": 1}[split])
    x = rng.standard_normal((T, B, 2))
    y = np.cumsum(x[..., :1], axis=0) / np.arange(1, T + 1)[:, None, None]
    return x, y


def val_loss(net: Net) -> float:
    return net.loss(*data("val"), backward=False)


def fit(config: dict, report=None) -> dict:
    """Train ``config["steps"]`` steps; every ``config["eval_every"]`` steps evaluate and, with a
    ``report``, save a checkpoint (in a new directory under ``config["out"]``) and
    ``report({"val_loss", "train_loss"}, path)``.  Returns the last metrics."""
    net = Net(int(config["hidden"]), int(config.get("seed", 0)))
    opt = Adam(net.params, net.grads, lr=float(config["lr"]))
    x, y = data("train")
    out = None
    if report is not None:
        os.makedirs(config["out"], exist_ok=True)
        out = tempfile.mkdtemp(prefix="trial-", dir=config["out"])
    metrics = {}
    for step in range(1, int(config["steps"]) + 1):
        net.zero_grad()
        train = net.loss(x, y, backward=True)
        opt.step()
        if step % int(config["eval_every"]) == 0:
            metrics = {"val_loss": val_loss(net), "train_loss": train}
            if report is not None:
                path = os.path.join(out, f"step{step}.safetensors")
                save_checkpoint(path, net.params, {"kind": "sweep-test", "hidden": int(config["hidden"])})
                report(metrics, path)
    return metrics


def evaluate_checkpoint(path) -> float:
    arrays, meta = load_checkpoint(path, kind="sweep-test")
    net = Net(meta["hidden"], 0)
    net.load_params(arrays)
    return val_loss(net)


def grid_cell(cell) -> tuple:
    """One long-lag-bench-like cell: (hidden, seed) -> (final val loss, final train loss)."""
    hidden, seed = cell
    m = fit({"hidden": hidden, "seed": seed, "lr": 0.02, "steps": 6, "eval_every": 6})
    return m["val_loss"], m["train_loss"]
