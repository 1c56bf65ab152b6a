"""An exponential moving average of the parameters (``--ema DECAY``), kept beside the optimizer.

The same average as ``torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))``
updated after every optimizer step (and Keras's ``use_ema``).  For one parameter p and its average a,
after update n (counted from 1)::

    a = p                            (n = 1: the first update copies)
    a = lerp(a, p, w),  w = 1 - decay   (n > 1), torch.lerp's two branches:
        a + w (p - a)                (w < 0.5)
        p - (p - a) (1 - w)          (w >= 0.5)

The average is evaluated and saved; the optimizer keeps stepping the raw parameters.  Both live in
the model's own arrays by turns: :meth:`ParamAverage.use` exchanges every parameter array's contents
with its average's in place (exactly: an exchange, no arithmetic), and ``averaged_in`` says which of
the two the model's arrays hold now.  Before any update (n = 0) there is no average: the parameters
stand for it and ``use`` changes nothing.

State (``state_dict``): arrays ``{name: the values not in the model now}``, meta ``{"decay", "n",
"averaged_in"}``; a checkpoint saved with the average in the model holds the average as the model's
parameters and the raw ones here, so a model loaded from it for evaluation is the averaged model.
"""
from __future__ import annotations

import contextlib

import numpy as np

from rnnkit.checks.rules import RATE, check
from rnnkit.errors import CheckpointError


class ParamAverage:
    """The moving average of ``params`` (the model's dict name -> array, updated in place by the optimizer).

    ``decay`` in [0, 1): the weight of the old average at each update (0.999: about the last 1,000 steps)."""

    def __init__(self, params: dict, decay: float):
        check("decay", decay, RATE)
        self.params, self.decay = params, float(decay)
        self.n = 0  # updates so far
        self.other: dict[str, np.ndarray] = {}  # the average (averaged_in False) or the raw parameters (True)
        self.averaged_in = False

    def update(self) -> None:
        """Fold the current (raw) parameters into the average."""
        if self.averaged_in:
            raise RuntimeError("ParamAverage.update: the model holds the average now; use(False) first")
        w = 1.0 - self.decay
        for k, p in self.params.items():
            a = self.other.get(k)
            if a is None or self.n == 0:
                self.other[k] = np.array(p, copy=True)
            elif w < 0.5:
                a += w * (p - a)
            else:
                a[...] = p - (p - a) * (1.0 - w)
        self.n += 1

    def use(self, averaged: bool) -> None:
        """Make the model's arrays hold the average (``averaged``) or the raw parameters (no-op before any update)."""
        if self.n == 0 or bool(averaged) == self.averaged_in:
            return
        for k, p in self.params.items():
            a = self.other[k]
            held = p.copy()
            p[...] = a
            a[...] = held
        self.averaged_in = bool(averaged)

    @contextlib.contextmanager
    def averaged(self):
        """The average in the model's arrays inside the block, the previous contents after it."""
        before = self.averaged_in
        self.use(True)
        try:
            yield self
        finally:
            self.use(before)

    def state_dict(self) -> tuple[dict[str, np.ndarray], dict]:
        return dict(self.other) if self.n else {}, {"decay": self.decay, "n": self.n, "averaged_in": self.averaged_in}

    def load_state_dict(self, arrays: dict, meta: dict) -> None:
        """Restore ``state_dict``'s output (with the parameters it was saved beside already in the model);
        CheckpointError if it does not fit the parameters."""
        try:
            n, averaged_in = int(meta["n"]), bool(meta["averaged_in"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"parameter average: bad or missing field in {meta!r} ({e})") from None
        if n and set(arrays) != set(self.params):
            raise CheckpointError(f"parameter average: expected arrays for {sorted(self.params)}, got {sorted(arrays)}")
        other = {}
        for k, a in (arrays.items() if n else ()):
            if a.shape != self.params[k].shape:
                raise CheckpointError(f"parameter average {k!r}: expected shape {self.params[k].shape}, got {a.shape}")
            other[k] = np.array(a, dtype=self.params[k].dtype)
        self.n, self.other, self.averaged_in = n, other, averaged_in and n > 0
