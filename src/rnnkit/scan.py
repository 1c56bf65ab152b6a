"""The generic time loop: run any cell over a sequence, and BPTT back through it.

This is the only place that knows about time.  It is written once for every
cell (see :mod:`rnnkit.cells` for the cell protocol) and owns

* the recurrent GEMM ``hw = h_{t-1} @ W_hh.T + b_hh`` (one BLAS call per step),
* direction (``reverse=True`` walks t = T-1 .. 0),
* padding: with a mask, rows whose step is past their length keep their state
  (so the final state is the state at the last valid step, and the reverse
  direction starts at the last valid step from the initial state), emit 0,
  and pass gradients straight through,
* BPTT: the sum over all steps of the per-step gradients; weight gradients of
  ``W_hh``/``b_hh`` are formed with one GEMM after the loop.

Shapes: T steps, B batch, H hidden, G gates of the cell.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class ScanTape(NamedTuple):
    """What the forward scan keeps for its backward (one layer, one direction)."""

    states_prev: list  # states_prev[t]: cell state entering step t
    caches: list  # caches[t]: the cell's cache of step t
    h_prev: np.ndarray  # (T, B, H) h entering each step, for dW_hh
    mask: np.ndarray | None  # (T, B, 1) bool, True where t < length
    reverse: bool


def scan_forward(cell, xw, W_hh, b_hh, state0, mask=None, reverse=False):
    """Run ``cell`` over time.

    xw:     (T, B, G*H) input projections x_t @ W_ih.T + b_ih for all steps
    W_hh:   (G*H, H);  b_hh: (G*H,) or None
    state0: the cell's state tuple, each (B, H)
    mask:   (T, B, 1) bool or None

    Returns out (T, B, H) hidden states (0 where padded), the final state,
    and a :class:`ScanTape` for :func:`scan_backward`.
    """
    T, B, _ = xw.shape
    H = W_hh.shape[1]
    out = np.empty((T, B, H), dtype=xw.dtype)
    h_prev = np.empty((T, B, H), dtype=xw.dtype)
    states_prev, caches = [None] * T, [None] * T
    W_hhT = W_hh.T
    state = state0
    for t in range(T - 1, -1, -1) if reverse else range(T):
        hw = state.h @ W_hhT
        if b_hh is not None:
            hw += b_hh
        new, caches[t] = cell.forward(xw[t], hw, state)
        states_prev[t] = state
        h_prev[t] = state.h
        if mask is None:
            out[t] = new.h
        else:
            m = mask[t]
            new = cell.State(*(np.where(m, n, s) for n, s in zip(new, state)))
            np.multiply(new.h, m, out=out[t])
        state = new
    return out, state, ScanTape(states_prev, caches, h_prev, mask, reverse)


def scan_backward(cell, tape: ScanTape, d_out, d_state_T, W_hh, record=None):
    """BPTT through one scan.

    d_out:     (T, B, H) gradient of the loss w.r.t. ``out``
    d_state_T: state tuple of arrays (B, H), gradient w.r.t. the final state
    record:    optional dict; if given, record[field] = (T, B, H) total gradient
               dL/d(field)_t for each state field (h, c), as BPTT computes it
    Returns d_xw (T, B, G*H), dW_hh (G*H, H), db_hh (G*H,), d_state0.
    """
    T, B, H = d_out.shape
    G = W_hh.shape[0]
    mask = tape.mask
    d_xw = np.empty((T, B, G), dtype=d_out.dtype)
    d_hw = d_xw if getattr(cell, "dhw_is_dxw", False) else np.empty_like(d_xw)
    d_state = d_state_T
    if record is not None:
        record.update({f: np.zeros((T, B, H), dtype=d_out.dtype) for f in cell.State._fields})
    for t in range(T) if tape.reverse else range(T - 1, -1, -1):
        m = None if mask is None else mask[t]
        dh = d_state.h + (d_out[t] if m is None else d_out[t] * m)  # out_t = h_t (where valid)
        d_state = d_state._replace(h=dh)
        if record is not None:
            for f, v in zip(cell.State._fields, d_state):
                record[f][t] = v if m is None else v * m
        dxw_t, dhw_t, direct = cell.backward(d_state, tape.caches[t], tape.states_prev[t])
        if m is not None:  # padded rows: no gradient into this step's pre-activations
            dxw_t = dxw_t * m
            dhw_t = dxw_t if d_hw is d_xw else dhw_t * m
        d_xw[t] = dxw_t
        if d_hw is not d_xw:
            d_hw[t] = dhw_t
        dh_prev = dhw_t @ W_hh  # hw = h_prev @ W_hh.T
        if direct.h is not None:
            dh_prev += direct.h
        d_prev = (dh_prev,) + tuple(direct[1:])
        if m is not None:  # padded rows: the state was copied, so is its gradient
            d_prev = tuple(np.where(m, p, s) for p, s in zip(d_prev, d_state))
        d_state = cell.State(*d_prev)
    # hw_t = h_prev_t @ W_hh.T + b_hh summed over t: one GEMM for all steps
    dW_hh = np.tensordot(d_hw, tape.h_prev, axes=([0, 1], [0, 1]))
    db_hh = d_hw.sum(axis=(0, 1))
    return d_xw, dW_hh, db_hh, d_state
