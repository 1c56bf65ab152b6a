"""Gradient flow through time: how large dL/dh_t (and dL/dc_t) are at every step.

The numbers come from the real BPTT pass of :meth:`rnnkit.Recurrent.backward`
(``record_state_grads=True``), not from a separate autograd.  For a batch the
norm at step t is the Frobenius norm over batch rows and units,

    ||dL/dh_t|| = sqrt( sum_{b,j} (dL/dh_{t,b,j})^2 )

where dL/dh_t is the *total* derivative (through the output at t and through
every later step).  For a cell with a cell state c (the LSTM family: plain,
peephole, LayerNorm, projected) the cell-state gradient reported is also the
total derivative,

    dL/dc_t = dL/dc_t|from t+1 + (dh_t/dc_t)^T dL/dh_t

(the BPTT hook records the first term, the gradient carried along the cell
state; the second, through h_t, is added here by the cell's own
``dc_from_h`` from the gates and caches of the same forward: for the LSTM
dL/dh_t * o_t * (1 - tanh(c_t)^2); the peephole LSTM adds its o_t's p_o path,
the projected LSTM first maps dL/dh_t through W_hr).

With a loss on the last step only (the adding problem), "distance from the
loss" is T-1-t; a vanishing gradient shows as a norm that falls exponentially
with distance, a straight line on a log scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnkit.engine.recurrent import Recurrent


@dataclass(frozen=True)
class GradFlow:
    """Per-step gradient norms of one forward/backward.

    h_sq: (L*D, T, B) squared norm over units of dL/dh_t per batch row, for each
          (layer, direction) (index l*D + d), time-major; 0 at padded steps
    c_sq: (L*D, T, B) the same for dL/dc_t (cells with a cell state c, else None)
    lengths: (B,) valid lengths (T for every row when none were given)
    loss: the loss value of this batch
    """

    h_sq: np.ndarray
    c_sq: np.ndarray | None
    lengths: np.ndarray
    loss: float

    @property
    def h(self) -> np.ndarray:
        """(L*D, T) ||dL/dh_t||, Frobenius norm over batch rows and units."""
        return np.sqrt(self.h_sq.sum(axis=2))

    @property
    def c(self) -> np.ndarray | None:
        """(L*D, T) ||dL/dc_t|| (the LSTM family), else None."""
        return None if self.c_sq is None else np.sqrt(self.c_sq.sum(axis=2))

    def by_distance(self, field: str = "h") -> np.ndarray:
        """(L*D, T) norms indexed by distance k = L_b - 1 - t from each row's last valid step.

        For a loss read at each row's last valid step (the adding problem with
        variable lengths), k is the distance from the loss.  Entry k sums the
        rows that have a step at that distance (all rows for k < min length).
        """
        sq = {"h": self.h_sq, "c": self.c_sq}[field]
        if sq is None:
            raise ValueError(f"field: {field!r} is only recorded for cells with a cell state (the LSTMs)")
        LD, T, B = sq.shape
        out = np.zeros((LD, T))
        for b, n in enumerate(self.lengths):
            out[:, :n] += sq[:, n - 1 :: -1, b]  # steps n-1, n-2, ..., 0
        return np.sqrt(out)


def _total_dc(cell, record: dict, gates, cache: dict, p: tuple) -> np.ndarray:
    """(T, B, H) float64 total dL/dc_t of one (layer, direction): the recorded part carried from t+1
    plus the cell's ``dc_from_h`` of the recorded dL/dh_t (both 0 at padded steps, so is the sum)."""
    f64 = np.float64
    return record["c"].astype(f64) + cell.dc_from_h(record["h"].astype(f64), gates.astype(f64),
                                                    {n: a.astype(f64) for n, a in cache.items()},
                                                    tuple(a.astype(f64) for a in p))


def gradient_flow(layer: Recurrent, x: np.ndarray, loss_fn, state=None, lengths=None) -> GradFlow:
    """Forward ``x`` through ``layer``, apply ``loss_fn``, run BPTT, and measure.

    layer:   an rnnkit RNN/LSTM/GRU/LayerNormLSTM (any variant, depth, directions, batch_first)
    x:       input batch as ``layer.forward`` takes it
    loss_fn: out -> (loss, d_out); the head and loss on top of the recurrent
             output (it may run its own backward, e.g. a Linear head's)
    state, lengths: passed to ``layer.forward``

    Gradients are added into ``layer.grads`` as in a training step (so this can
    be the training step); zero them before if they must not accumulate.
    Returns a :class:`GradFlow`.
    """
    if not isinstance(layer, Recurrent):
        raise TypeError(f"layer: expected an rnnkit RNN, LSTM or GRU, got {type(layer).__name__}")
    out, _ = layer.forward(x, state, lengths)
    cell = layer.cell
    with_c = "c" in cell.State._fields  # the LSTM family: dL/dc_t through the cell's dc_from_h
    kept = [(t.gates.copy(), {f: a.copy() for f, a in zip(cell.cache_fields, t.cache)}, layer.cell_params(k))
            for k, t in enumerate(layer.tape.directions())] if with_c else None
    loss, d_out = loss_fn(out)
    layer.backward(d_out, record_state_grads=True)
    records = layer.state_grads
    T, B = records[0]["h"].shape[:2]
    h = np.stack([(r["h"].astype(np.float64) ** 2).sum(axis=2) for r in records])
    c = None
    if with_c:
        c = np.stack([(_total_dc(cell, r, *k) ** 2).sum(axis=2) for r, k in zip(records, kept)])
    lengths = np.full(B, T, dtype=np.int64) if lengths is None else np.asarray(lengths, dtype=np.int64)
    return GradFlow(h_sq=h, c_sq=c, lengths=lengths, loss=float(loss))


def last_step_loss(head_forward, head_backward, loss, targets):
    """Build a ``loss_fn`` for a loss on the last time step only (time-major out).

    head_forward(h_T (B, H)) -> prediction ; head_backward(d_pred) -> d_h_T
    loss(pred, targets) -> (value, d_pred)
    """

    def fn(out):
        pred = head_forward(out[-1])
        value, d_pred = loss(pred, targets)
        d_out = np.zeros_like(out)
        d_out[-1] = head_backward(d_pred)
        return value, d_out

    return fn
