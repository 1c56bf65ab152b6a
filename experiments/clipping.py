"""Exploding gradients and gradient-norm clipping (Pascanu, Mikolov & Bengio 2013).

An Elman RNN (tanh, H = 32) whose recurrent matrix is ``scale`` times a random
orthogonal matrix (spectral radius ``scale`` = 2: too large) learns a delayed
recall task with plain SGD, twice from the same initialisation and the same
batches:

    task:   x_t ~ N(0, 1) (one input),  y_t = x_{t-lag} (0 for t < lag),  MSE at every step
    model:  h_t = tanh(W_ih x_t + W_hh h_{t-1} + b),  y^_t = W_o h_t + b_o
    run A:  SGD, no clipping
    run B:  SGD, global gradient-norm clipping: g <- g * max_norm / ||g|| when ||g|| > max_norm

Both runs log the loss and the global gradient norm *before* clipping at every
step.  Without clipping an occasional huge gradient (a "cliff") throws the
weights far away: the loss jumps by orders of magnitude or becomes non-finite
(the run then stops).  With clipping the same spikes only take a step of length
lr * max_norm and training continues.

    .venv/bin/python experiments/clipping.py                  # defaults, ~30 s on a CPU
    .venv/bin/python experiments/clipping.py --scale 1.0      # a well-scaled W_hh: both runs train

Writes ``--out-dir`` (default runs/clipping)/clipping.png (loss and gradient norm vs step, both runs),
clipping.csv (run, step, loss, grad_norm), clipping.json (the config and each run's summary)
and prints the summary.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from dataclasses import asdict, dataclass

import numpy as np

import rnnkit
from rnnkit.module import Module
from rnnkit.nn.optim import SGD, clip_grad_norm, grad_norm


@dataclass(frozen=True)
class ClippingConfig:
    scale: float = 2.0  # spectral radius of the initial W_hh
    hidden: int = 32
    T: int = 50
    lag: int = 3
    batch: int = 32
    lr: float = 0.1
    max_norm: float = 5.0
    steps: int = 400
    seed: int = 0
    out_dir: str = "runs/clipping"

    def __post_init__(self):
        if not 0 < self.lag < self.T:
            raise ValueError(f"lag: expected 0 < lag < T = {self.T}, got {self.lag}")
        for name in ("hidden", "batch", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        for name in ("scale", "lr", "max_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a number > 0, got {getattr(self, name)}")


class DelayModel(Module):
    """RNN(1, H) + Linear(H, 1) read at every step; W_hh = scale * orthogonal."""

    def __init__(self, cfg: ClippingConfig):
        rng = np.random.default_rng([cfg.seed, 0])
        self.rnn = rnnkit.RNN(1, cfg.hidden, seed=rng)
        self.head = rnnkit.Linear(cfg.hidden, 1, seed=rng)
        q, r = np.linalg.qr(rng.standard_normal((cfg.hidden, cfg.hidden)))
        self.rnn.params["weight_hh_l0"][...] = cfg.scale * q * np.sign(np.diag(r))

    def loss_and_backward(self, x, y) -> float:
        h, _ = self.rnn(x)
        loss, d = rnnkit.mse(self.head(h), y)
        self.rnn.backward(self.head.backward(d))
        return loss


def delay_batch(rng: np.random.Generator, cfg: ClippingConfig):
    """x (T, B, 1) ~ N(0, 1); y_t = x_{t-lag}, 0 before."""
    x = rng.standard_normal((cfg.T, cfg.batch, 1)).astype(np.float32)
    y = np.zeros_like(x)
    y[cfg.lag :] = x[: -cfg.lag]
    return x, y


def train(cfg: ClippingConfig, clip: bool) -> list[dict]:
    """One run; returns per-step records {step, loss, grad_norm}; stops at a non-finite loss or norm."""
    model = DelayModel(cfg)
    opt = SGD(model.params, model.grads, lr=cfg.lr)
    rng = np.random.default_rng([cfg.seed, 1])  # same batches in both runs
    log = []
    with np.errstate(over="ignore", invalid="ignore"):
        for step in range(cfg.steps):
            x, y = delay_batch(rng, cfg)
            model.zero_grad()
            loss = model.loss_and_backward(x, y)
            norm = clip_grad_norm(model.grads, cfg.max_norm) if clip else grad_norm(model.grads)
            log.append({"step": step, "loss": loss, "grad_norm": norm})
            if not (math.isfinite(loss) and math.isfinite(norm)):
                break
            opt.step()
    return log


def summary(log: list[dict]) -> dict:
    loss = np.array([r["loss"] for r in log])
    norm = np.array([r["grad_norm"] for r in log])
    finite = np.isfinite(loss) & np.isfinite(norm)
    return {
        "steps_run": len(log),
        "stopped_non_finite": bool(not finite.all()),
        "loss_first_20": float(loss[:20].mean()),
        "loss_last_50": float(loss[-50:].mean()) if finite[-50:].all() else float("inf"),
        "max_loss": float(np.nanmax(np.where(finite, loss, np.nan))),
        "median_grad_norm": float(np.median(norm[finite])),
        "max_grad_norm": float(np.nanmax(np.where(finite, norm, np.nan))),
    }


def plot(runs: dict, cfg: ClippingConfig, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.4))
    colours = {"no clipping": "tab:red", f"clipping at {cfg.max_norm:g}": "tab:blue"}
    for name, log in runs.items():
        steps = [r["step"] for r in log]
        loss = np.array([r["loss"] for r in log])
        norm = np.array([r["grad_norm"] for r in log])
        a1.semilogy(steps, np.where(np.isfinite(loss), loss, np.nan), color=colours[name], label=name, lw=1.2)
        a2.semilogy(steps, np.where(np.isfinite(norm), norm, np.nan), color=colours[name], label=name, lw=1.0)
        if not (np.isfinite(loss[-1]) and np.isfinite(norm[-1])):
            for ax in (a1, a2):
                ax.axvline(steps[-1], color=colours[name], ls=":", lw=1)
            a1.annotate(f"non-finite at step {steps[-1]}", (steps[-1], np.nanmax(loss[np.isfinite(loss)])),
                        color=colours[name], fontsize=8, ha="right")
    a2.axhline(cfg.max_norm, color="0.4", ls="--", lw=0.8, label=f"max_norm = {cfg.max_norm:g}")
    a1.set_title("training loss")
    a1.set_ylabel("MSE per output (log scale)")
    a2.set_title("global gradient norm before clipping")
    a2.set_ylabel("‖∇L‖₂ (log scale)")
    for ax in (a1, a2):
        ax.set_xlabel(f"SGD step (batch {cfg.batch} sequences)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Elman RNN, W_hh = {cfg.scale:g} × orthogonal, delayed recall (lag {cfg.lag}, T = {cfg.T}), "
                 f"SGD lr {cfg.lr:g}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    d = ClippingConfig()
    p = argparse.ArgumentParser(description="Exploding gradients with and without gradient-norm clipping.")
    for f, v in asdict(d).items():
        p.add_argument("--" + f.replace("_", "-"), type=type(v), default=v, help=f"(default {v})")
    a = p.parse_args(argv)
    try:
        cfg = ClippingConfig(**{f: getattr(a, f) for f in asdict(d)})
    except ValueError as e:
        print(f"clipping.py: error: {e}", file=sys.stderr)
        return 2
    os.makedirs(cfg.out_dir, exist_ok=True)
    runs = {"no clipping": train(cfg, clip=False), f"clipping at {cfg.max_norm:g}": train(cfg, clip=True)}
    with open(os.path.join(cfg.out_dir, "clipping.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "step", "loss", "grad_norm"])
        for name, log in runs.items():
            w.writerows([name, r["step"], r["loss"], r["grad_norm"]] for r in log)
    plot(runs, cfg, os.path.join(cfg.out_dir, "clipping.png"))
    result = {"config": asdict(cfg), "runs": {name: summary(log) for name, log in runs.items()}}
    with open(os.path.join(cfg.out_dir, "clipping.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result["runs"], indent=2))
    print(f"wrote {cfg.out_dir}/clipping.png, clipping.csv, clipping.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
