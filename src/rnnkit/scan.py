"""The generic time loop: run any cell over a sequence, and BPTT back through it.

This is the only place that knows about time.  It is written once for every
cell (see :mod:`rnnkit.cells` for the cell protocol) and owns

* the recurrent GEMM ``hw = h_{t-1} @ W_hh.T + b_hh`` (one BLAS call per step;
  for cells with a = xw + hw the layer adds b_hh to xw once for all steps instead),
* the buffers: states of all steps, the cell's caches, the gradient buffers;
  the cell reads and writes per-step (B, .) views of them,
* direction (``reverse=True`` walks t = T-1 .. 0),
* padding: with a mask, rows whose step is past their length keep their state
  (so the final state is the state at the last valid step, and the reverse
  direction starts at the last valid step from the initial state), emit 0,
  and pass gradients straight through,
* BPTT: the sum over all steps of the per-step gradients; weight gradients of
  ``W_hh``/``b_hh`` are formed with one GEMM after the loop.

Shapes: T steps, B batch, H hidden, G = n_gates * H.
"""
from __future__ import annotations

import contextlib
import functools
from typing import NamedTuple

import numpy as np

from . import kernels

SMALL_STEP_GEMM = 1 << 20
"""Multiply-adds of the per-step GEMM (B x H times H x G) up to which the time loops run
BLAS single-threaded: handing such a small GEMM to two threads costs more than it saves at
every step, and far more when the cores are shared.  Measured on the idle 2-core machine
with ``bench/rnnkit_alone.py --small-step-gemm N`` (docs/performance.md, round 3): from 1M
up, two threads win (LSTM B=32 H=128, 2.1M: inference 6.5-7.0 -> 4.7-6.4 ms; RNN B=64
H=256, 4.2M: fwd+bwd 13.5-14.9 -> 10.1-12.9 ms)."""


@functools.lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()  # scanning the loaded BLAS libraries is slow: do it once


def _loop_blas_threads(B: int, G: int, H: int):
    """Context manager for a time loop: one BLAS thread when the per-step GEMM is small."""
    if B * G * H <= SMALL_STEP_GEMM:
        return _blas_controller().limit(limits=1, user_api="blas")
    return contextlib.nullcontext()


class ScanTape(NamedTuple):
    """What the forward scan keeps for its backward (one layer, one direction).

    states[f] is (T+1, B, H) for each state field f (h, and c for the LSTM): the state
    entering step t is ``states[f][t + reverse]``, the one leaving it ``states[f][t + 1 - reverse]``.
    cache is a list of (buffer, offset) per field of the cell's cache: step t's view is
    ``buffer[t + offset]`` (``gates``: the xw buffer, overwritten by the activated gates;
    a field named like a state field: that state buffer; others: a (T, B, H) buffer).
    """

    states: tuple
    cache: list
    mask: np.ndarray | None  # (T, B, 1) bool, True where t < length
    reverse: bool
    state_at: list  # per-step views, from step_views (made once by the forward, reused by the backward)
    cache_at: list
    keep: np.ndarray | None  # ~mask: rows whose state is carried through step t unchanged

    def h_prev(self) -> np.ndarray:
        """(T, B, H): h entering each step t."""
        return self.states.h[1:] if self.reverse else self.states.h[:-1]

    def h_new(self) -> np.ndarray:
        """(T, B, H): h leaving each step t (before masking)."""
        return self.states.h[:-1] if self.reverse else self.states.h[1:]

    def gates(self, cell) -> np.ndarray:
        """(T, B, G): activated gates of every step (the Elman RNN's only "gate" is h)."""
        if "gates" in cell.Cache._fields:
            return self.cache[cell.Cache._fields.index("gates")][0]
        return self.h_new()


def cache_buffers(cell, xw, states, reverse: bool, workspace=None) -> list:
    """Allot the cell's cache over all steps: (buffer, offset) per field, see :class:`ScanTape`."""
    T, B, _ = xw.shape
    H = states.h.shape[-1]
    bufs = []
    for f in cell.Cache._fields:
        if f == "gates":
            bufs.append((xw, 0))
        elif f in cell.State._fields:
            bufs.append((getattr(states, f), 1 - reverse))
        else:
            bufs.append((reuse_empty(workspace, "cache." + f, (T, B, H), xw.dtype), 0))
    return bufs


def step_cache(cell, xw, state):
    """The cache of one step run alone (``Recurrent.step``), allotted as :func:`cache_buffers` does."""
    return cell.Cache._make([xw if f == "gates" else getattr(state, f) if f in cell.State._fields
                             else np.empty_like(state.h) for f in cell.Cache._fields])


def step_views(cell, states, cache, T: int) -> tuple[list, list]:
    """Per-step (B, .) views, made once per scan instead of once per step and use.

    Returns ``state_at`` (T+1 ``cell.State`` tuples, ``state_at[k]`` = field buffers at
    index k, see :class:`ScanTape`) and ``cache_at`` (T ``cell.Cache`` tuples, step t's
    cache at ``cache_at[t]``).
    """
    state_at = [cell.State._make(v) for v in zip(*states)]
    cache_at = [cell.Cache._make(v) for v in zip(*(b[o : o + T] for b, o in cache))]
    return state_at, cache_at


def reuse_empty(workspace: dict | None, key: str, shape: tuple, dtype) -> np.ndarray:
    """``np.empty(shape, dtype)``, kept in ``workspace`` (if given) and handed out again next call.

    Why: a fresh multi-MB array is mapped page by page on first write, and the loops write
    it one step at a time, so every call pays a page fault per 4 KiB inside the time loop
    (measured: ~20-30% of an LSTM fwd+bwd at T=100, B=32, H=128).  Only for buffers that
    never leave the layer (the caller must not return them or views of them).
    """
    if workspace is None:
        return np.empty(shape, dtype=dtype)
    a = workspace.get(key)
    if a is None or a.shape != shape or a.dtype != dtype:
        a = workspace[key] = np.empty(shape, dtype=dtype)
    return a


def _steps(T: int, reverse: bool):
    return range(T - 1, -1, -1) if reverse else range(T)


def scan_step(cell, xw, hw, W_hhT, b_hh, state_prev, state, cache) -> None:
    """One step of the loop: hw = h_prev @ W_hh.T (+ b_hh) into ``hw``, then the cell.

    Writes ``state`` and ``cache``; all (B, .).
    """
    np.dot(state_prev.h, W_hhT, out=hw)
    if b_hh is not None:
        kernels.add_bias(hw, b_hh)
    cell.forward(xw, hw, state_prev, state, cache)


def scan_forward(cell, xw, W_hh, b_hh, state0, mask=None, reverse=False, workspace=None):
    """Run ``cell`` over time.

    xw:     (T, B, G) input projections x_t @ W_ih.T + b_ih for all steps; the scan
            takes it over (it becomes the tape's gate buffer)
    W_hh:   (G, H);  b_hh: (G,) or None (None also when the caller added it to xw,
            which cells with a = xw + hw allow: ``cell.dhw_is_dxw``)
    state0: the cell's state tuple, each (B, H)
    mask:   (T, B, 1) bool or None
    workspace: optional dict the caller keeps between calls; the tape's state and cache
            buffers are kept there (:func:`reuse_empty`) and overwritten by the next call,
            so the tape, ``out`` (without a mask) and the final state are valid until then

    Returns out (T, B, H) hidden states (0 where padded), the final state,
    and a :class:`ScanTape` for :func:`scan_backward`.
    """
    T, B, G = xw.shape
    H = W_hh.shape[1]
    State = cell.State
    states = State._make(reuse_empty(workspace, "state." + f, (T + 1, B, H), xw.dtype) for f in State._fields)
    for buf, s0 in zip(states, state0):
        buf[T if reverse else 0] = s0
    cache = cache_buffers(cell, xw, states, reverse, workspace)
    hw = np.empty((B, G), dtype=xw.dtype)
    W_hhT = W_hh.T
    keep = None if mask is None else ~mask
    state_at, cache_at = step_views(cell, states, cache, T)
    with _loop_blas_threads(B, G, H):
        for t in _steps(T, reverse):
            prev, new = state_at[t + reverse], state_at[t + 1 - reverse]
            scan_step(cell, xw[t], hw, W_hhT, b_hh, prev, new, cache_at[t])
            if keep is not None:  # padded rows keep their state
                k_t = keep[t]
                for n, p in zip(new, prev):
                    np.copyto(n, p, where=k_t)
    tape = ScanTape(states, cache, mask, reverse, state_at, cache_at, keep)
    out = tape.h_new() if mask is None else tape.h_new() * mask
    final = State._make(s[0 if reverse else T] for s in states)
    return out, final, tape


def scan_backward(cell, tape: ScanTape, d_out, d_state_T, W_hh, record=None, workspace=None):
    """BPTT through one scan.

    d_out:     (T, B, H) gradient of the loss w.r.t. ``out``
    d_state_T: state tuple of arrays (B, H), gradient w.r.t. the final state
    record:    optional dict; if given, record["h"] (T, B, H) holds at [t] the total
               dL/dh_t (output path + recurrent path) and, for the LSTM, record["c"][t]
               the part of dL/dc_t arriving from step t+1 (via f_{t+1}); the part
               through h_t = o_t tanh(c_t) is added inside the cell's backward; 0 in
               padded rows
    workspace: optional dict the caller keeps between calls; d_xw (and the GRU's d_hw) are
               written into buffers kept there (:func:`reuse_empty`), so the returned d_xw
               is only valid until the next call with the same workspace
    Returns d_xw (T, B, G), dW_hh (G, H), db_hh (G,), d_state0.
    """
    T, B, H = d_out.shape
    G = W_hh.shape[0]
    State = cell.State
    mask, reverse, state_at, cache_at, keep = tape.mask, tape.reverse, tape.state_at, tape.cache_at, tape.keep
    d_xw = reuse_empty(workspace, "d_xw", (T, B, G), d_out.dtype)
    d_hw = d_xw if cell.dhw_is_dxw else reuse_empty(workspace, "d_hw", (T, B, G), d_out.dtype)
    # d_state = dL/d(state leaving step t), d_prev = dL/d(state entering it); swapped each step
    d_state = State._make(np.array(a, dtype=d_out.dtype) for a in d_state_T)
    d_prev = State._make(np.empty((B, H), dtype=d_out.dtype) for _ in State._fields)
    dh_hh = np.empty((B, H), dtype=d_out.dtype) if cell.direct_h else None
    if record is not None:
        record.update({f: np.zeros((T, B, H), dtype=d_out.dtype) for f in State._fields})
    if mask is not None:  # once for all steps: padded outputs were 0, so they pass no gradient
        d_out = d_out * mask
    with _loop_blas_threads(B, G, H):
        for t in _steps(T, not reverse):
            m = None if mask is None else mask[t]
            dxw_t = d_xw[t]
            dhw_t = dxw_t if d_hw is d_xw else d_hw[t]
            np.add(d_state.h, d_out[t], out=d_state.h)  # out_t = h_t (where valid)
            if record is not None:
                for f, v in zip(State._fields, d_state):
                    record[f][t] = v if m is None else v * m
            cell.backward(d_state, cache_at[t], state_at[t + reverse], dxw_t, dhw_t, d_prev)
            if m is not None:  # padded rows: no gradient into this step's pre-activations
                dxw_t *= m
                if dhw_t is not dxw_t:
                    dhw_t *= m
            if dh_hh is None:
                np.dot(dhw_t, W_hh, out=d_prev.h)  # hw = h_prev @ W_hh.T
            else:  # the cell wrote its direct part of dh_prev; add the part through W_hh
                np.dot(dhw_t, W_hh, out=dh_hh)
                np.add(d_prev.h, dh_hh, out=d_prev.h)
            if keep is not None:  # padded rows: the state was copied, so is its gradient
                k_t = keep[t]
                for p, s in zip(d_prev, d_state):
                    np.copyto(p, s, where=k_t)
            d_state, d_prev = d_prev, d_state
    # hw_t = h_prev_t @ W_hh.T + b_hh summed over t: one GEMM for all steps
    # (written as (h_prev^T d_hw)^T: OpenBLAS runs this orientation up to 2x faster)
    dW_hh = (tape.h_prev().reshape(T * B, H).T @ d_hw.reshape(T * B, G)).T
    db_hh = d_hw.sum(axis=(0, 1))
    return d_xw, dW_hh, db_hh, d_state
