"""Optimizers, global-norm gradient clipping and learning-rate schedules.

Every optimizer takes the model's ``params`` and ``grads`` dicts (the same
arrays the model computes with, see :mod:`rnnkit.module`) and ``step()``
updates the parameter arrays *in place*.  The update rules follow
``torch.optim`` exactly (same order of operations), so a float64 run agrees
with PyTorch to rounding.  Notation for one parameter p with gradient g at
step t (counted from 1):

SGD (momentum mu, weight decay wd)::

    d = g + wd p
    b = d                  (t = 1)      b = mu b + d   (t > 1)
    d = d + mu b  (Nesterov)   or   d = b  (plain momentum; mu = 0: d = g + wd p)
    p = p - lr d

Adam (beta1, beta2, eps; L2 weight decay folded into g)::

    g = g + wd p
    m = beta1 m + (1 - beta1) g
    v = beta2 v + (1 - beta2) g^2
    p = p - (lr / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

AdamW: decoupled weight decay ``p = p (1 - lr wd)``, then Adam with wd = 0.

State (``state_dict``) is ``(arrays, meta)``: arrays ``"<slot>/<param name>"``
(``momentum``, ``m``, ``v``), meta the hyper-parameters and step count, all
JSON-serialisable, ready for :func:`rnnkit.io.checkpoint.save_checkpoint`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rnnkit.errors import CheckpointError
from rnnkit.checks.rules import NONNEG_INT, POSITIVE_INT, check
from rnnkit.kernels import sum_squares


def _check_pos(name: str, v, allow_zero: bool = False) -> float:
    ok = isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or (v < 0 or (v == 0 and not allow_zero)):
        want = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"{name}: expected {want}, got {v!r}")
    return float(v)


class Optimizer:
    """Base class: holds params/grads (same keys, same shapes), ``lr`` and the step count ``t``."""

    slots: tuple[str, ...] = ()

    def __init__(self, params: dict, grads: dict, lr: float):
        if not isinstance(params, dict) or not isinstance(grads, dict):
            raise TypeError(f"params, grads: expected dicts name -> array, got {type(params).__name__}, "
                            f"{type(grads).__name__}")
        if set(params) != set(grads):
            raise ValueError(f"params and grads: expected the same names, "
                             f"params only {sorted(set(params) - set(grads))}, "
                             f"grads only {sorted(set(grads) - set(params))}")
        for k, p in params.items():
            if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                raise TypeError(f"params[{k!r}]: expected a float numpy array, got {type(p).__name__}")
            if grads[k].shape != p.shape:
                raise ValueError(f"grads[{k!r}]: expected shape {p.shape} (as the parameter), got {grads[k].shape}")
        self.params, self.grads = params, grads
        self.lr = _check_pos("lr", lr, allow_zero=True)
        self.t = 0
        self.state: dict[str, dict[str, np.ndarray]] = {s: {} for s in self.slots}

    def hyper(self) -> dict:
        """Hyper-parameters other than lr (JSON-serialisable)."""
        return {}

    def step(self) -> None:
        """Apply one update to every parameter in place."""
        self.t += 1
        for k, p in self.params.items():
            self._update(k, p, self.grads[k])

    def _update(self, k: str, p: np.ndarray, g: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _slot(self, slot: str, k: str, p: np.ndarray) -> np.ndarray:
        s = self.state[slot].get(k)
        if s is None:
            s = self.state[slot][k] = np.zeros_like(p)
        return s

    def state_dict(self) -> tuple[dict[str, np.ndarray], dict]:
        arrays = {f"{slot}/{k}": a for slot, d in self.state.items() for k, a in d.items()}
        meta = {"type": type(self).__name__, "lr": self.lr, "t": self.t, **self.hyper()}
        return arrays, meta

    def load_state_dict(self, arrays: dict, meta: dict) -> None:
        """Restore state saved by ``state_dict``; raises CheckpointError if it does not fit."""
        if meta.get("type") != type(self).__name__:
            raise CheckpointError(f"optimizer state: expected {type(self).__name__}, got {meta.get('type')!r}")
        state: dict[str, dict[str, np.ndarray]] = {s: {} for s in self.slots}
        for name, a in arrays.items():
            slot, _, k = name.partition("/")
            if slot not in state or k not in self.params:
                raise CheckpointError(f"optimizer state: unexpected entry {name!r} for {type(self).__name__} "
                                      f"over parameters {sorted(self.params)}")
            if a.shape != self.params[k].shape:
                raise CheckpointError(f"optimizer state {name!r}: expected shape {self.params[k].shape}, got {a.shape}")
            state[slot][k] = np.array(a, dtype=self.params[k].dtype)
        try:
            self.lr, self.t = float(meta["lr"]), int(meta["t"])
            self._set_hyper(meta)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"optimizer state: bad or missing field in {meta!r} ({e})") from None
        self.state = state

    def _set_hyper(self, meta: dict) -> None:
        pass

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v}" for k, v in self.hyper().items())
        return f"{type(self).__name__}(lr={self.lr}, {hp}, t={self.t})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay."""

    slots = ("momentum",)

    def __init__(self, params: dict, grads: dict, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        super().__init__(params, grads, lr)
        self.momentum = _check_pos("momentum", momentum, allow_zero=True)
        self.weight_decay = _check_pos("weight_decay", weight_decay, allow_zero=True)
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov: Nesterov momentum needs momentum > 0, got momentum=0")
        self.nesterov = bool(nesterov)

    def hyper(self):
        return {"momentum": self.momentum, "nesterov": self.nesterov, "weight_decay": self.weight_decay}

    def _set_hyper(self, meta):
        self.momentum, self.nesterov = float(meta["momentum"]), bool(meta["nesterov"])
        self.weight_decay = float(meta["weight_decay"])

    def _update(self, k, p, g):
        d = g + self.weight_decay * p if self.weight_decay else g
        if self.momentum:
            b = self.state["momentum"].get(k)
            if b is None:
                b = self.state["momentum"][k] = np.array(d, copy=True)  # b_1 = d
            else:
                b *= self.momentum
                b += d  # b_t = mu b_{t-1} + d
            d = d + self.momentum * b if self.nesterov else b
        p -= self.lr * d


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction, torch.optim.Adam's arithmetic."""

    slots = ("m", "v")
    decoupled = False

    def __init__(self, params: dict, grads: dict, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, grads, lr)
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and all(0 <= b < 1 for b in betas)):
            raise ValueError(f"betas: expected a pair of numbers in [0, 1), got {betas!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = _check_pos("eps", eps, allow_zero=True)
        self.weight_decay = _check_pos("weight_decay", weight_decay, allow_zero=True)

    def hyper(self):
        return {"betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay}

    def _set_hyper(self, meta):
        self.betas = (float(meta["betas"][0]), float(meta["betas"][1]))
        self.eps, self.weight_decay = float(meta["eps"]), float(meta["weight_decay"])

    def _update(self, k, p, g):
        b1, b2 = self.betas
        if self.weight_decay:
            if self.decoupled:
                p *= 1.0 - self.lr * self.weight_decay  # AdamW: p = p (1 - lr wd)
            else:
                g = g + self.weight_decay * p  # L2: g = g + wd p
        m, v = self._slot("m", k, p), self._slot("v", k, p)
        m *= b1
        m += (1.0 - b1) * g  # m = b1 m + (1 - b1) g
        v *= b2
        v += (1.0 - b2) * (g * g)  # v = b2 v + (1 - b2) g^2
        step_size = self.lr / (1.0 - b1 ** self.t)
        denom = np.sqrt(v) / math.sqrt(1.0 - b2 ** self.t)
        denom += self.eps
        p -= step_size * (m / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as torch.optim.AdamW."""

    decoupled = True

    def __init__(self, params: dict, grads: dict, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, grads, lr, betas, eps, weight_decay)


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def clip_grad_norm(grads: dict, max_norm: float) -> float:
    """Scale all gradients in place so their global L2 norm is at most ``max_norm``.

    norm = sqrt(sum_k ||g_k||^2); if norm > max_norm: g_k *= max_norm / (norm + 1e-6)
    (torch.nn.utils.clip_grad_norm_'s rule).  Returns the norm *before* clipping;
    a non-finite norm is returned as is and nothing is scaled.
    """
    max_norm = _check_pos("max_norm", max_norm)
    total = grad_norm(grads)
    if math.isfinite(total):
        coef = max_norm / (total + 1e-6)
        if coef < 1.0:
            for g in grads.values():
                g *= g.dtype.type(coef)
    return total


def grad_norm(grads: dict) -> float:
    """Global L2 norm of all gradient arrays (accumulated in float64)."""
    return math.sqrt(sum(sum_squares(g) for g in grads.values()))


@dataclass(frozen=True)
class Schedule:
    """Learning-rate schedule: ``lr_at(step, base_lr)`` is the lr for update number ``step`` (from 0).

    kind:
        "constant"  lr = base_lr
        "step"      lr = base_lr * gamma ** (s // step_size)
        "cosine"    lr = min_lr + (base_lr - min_lr) (1 + cos(pi min(1, s / (total_steps - warmup)))) / 2
    with s = step - warmup.  ``warmup`` > 0 adds a linear warm-up before that:
    lr = base_lr (step + 1) / warmup for step < warmup.
    """

    kind: str = "constant"
    warmup: int = 0
    step_size: int = 1000
    gamma: float = 0.1
    total_steps: int = 0
    min_lr: float = 0.0

    def __post_init__(self):
        if self.kind not in ("constant", "step", "cosine"):
            raise ValueError(f"schedule kind: expected 'constant', 'step' or 'cosine', got {self.kind!r}")
        check("warmup", self.warmup, NONNEG_INT)
        if self.kind == "step":
            check("step_size", self.step_size, POSITIVE_INT)
        if self.kind == "cosine" and self.total_steps <= self.warmup:
            raise ValueError(f"total_steps: the cosine schedule needs total_steps > warmup ({self.warmup}), "
                             f"got {self.total_steps!r}")

    def lr_at(self, step: int, base_lr: float) -> float:
        if step < self.warmup:
            return base_lr * (step + 1) / self.warmup
        s = step - self.warmup
        if self.kind == "step":
            return base_lr * self.gamma ** (s // self.step_size)
        if self.kind == "cosine":
            frac = min(1.0, s / (self.total_steps - self.warmup))
            return self.min_lr + (base_lr - self.min_lr) * (1.0 + math.cos(math.pi * frac)) / 2.0
        return base_lr
