"""Unit shards: a layer's forward without a tape (inference) split over its hidden units, not its batch rows.

Batch shards (:mod:`rnnkit.engine.threads`) give each thread some rows of the batch and all of W_hh, so every
core reads the whole packed W_hh (and W_ih when the loop forms xw, :mod:`rnnkit.engine.in_loop`) at every step.
Unit shards give each of S threads the gate rows of a share of the hidden units, H_k = u1 - u0 of them:

    hw_k = h_{t-1} @ W_hh[rows_k].T        (B, n_gates H_k): every row of h_{t-1}, the shard's gate rows
    xw_k = x_t @ W_ih[rows_k].T + biases   (before the loop for all t, or inside it)
    step(xw_k, hw_k) -> the shard's units of h_t (and c_t)

rows_k = the shard's units in each gate block (i, f, g, o).  It then copies its units of h_t into the layer's
h (T+1, B, H), which every shard's next GEMM reads, and waits for the others at a spinning barrier
(:mod:`rnnkit.engine.barrier`): one barrier a step, a third of a microsecond when the shards keep pace.
Each core then reads 1/S of the weights at every step, which pays where the weights, not the rows, are the
traffic: one step's products of LSTM (T, B, I, H) = (35, 20, 650, 650) on two cores, 2-core Intel Xeon:
recurrent alone 333 us in batch shards against 268 in unit shards; (64, 128, 256, 512) with xw inside the loop
1,413 against 1,331; (100, 32, 64, 128) 23 against 20.

The same loop (:func:`rnnkit.engine.scan.compiled_loops`), the same step function, the same products on the
micro-kernel: every number equals the batch-shard forward's (float64 to 1e-13, tested).  Only for a cell
whose units do not meet within a step (``cell.unit_local``, no parameters of its own, no GEMM of its own),
one direction, no dropout, no tape (the backward reads the gates in the layer's order).

:func:`chosen` measures, once per process and shape, one step's products side by side as the loops run them
(barrier included) in both layouts (:func:`time_units`, :func:`rnnkit.engine.in_loop.time_projection`), takes
unit shards if their recurrent product takes at most ``MARGIN`` x the batch shards', and forms their xw inside
the loop by in_loop's rule.  ``RNNKIT_UNIT_SHARDS=on|off`` forces it (any other value: one line,
exit 2).
"""
from __future__ import annotations

import functools
import time
from functools import partial

import numpy as np

from rnnkit.engine import big_gemm, in_loop
from rnnkit.engine.barrier import abort, new_barrier, wait
from rnnkit.engine.rows import gather_rows
from rnnkit.engine.buffers import absent, reuse_empty
from rnnkit.engine.gemm_rows import STREAMING_ROWS, forced_rows, packed_weights
from rnnkit.engine.in_loop import MARGIN as INSIDE_MARGIN, MIN_MACS, time_projection
from rnnkit.engine.scan import bounds, compiled_loops
from rnnkit.engine.step_gemm import PACKED, packed_gemm
from rnnkit.engine.threads import blas_threads_at_most, time_side_by_side
from rnnkit.checks.rules import env_choice
from rnnkit.kernels import add_present_biases, jit

MARGIN = 0.9
"""Unit shards when their recurrent product side by side (the barrier included) takes at most this share of the
batch shards' (what the layout changes; the input projection is then chosen for them as in_loop does).  Measured
ratios (2-core Intel Xeon): 0.81-0.85 at (T, B, I, H) = (35, 20, 650, 650) for the LSTM, GRU and RNN (whole
inference 26.3 -> 22.4 ms for the LSTM); 0.95-1.01 at (50, 64, 128, 256) and (64, 128, 256, 512), whose whole
inference did not gain; with the projection included the ratios moved by 0.1 from one measurement to the next."""
CHOICES = ("on", "off")
MIN_STEP_MACS = 1 << 18
"""Recurrent products (B H G multiply-adds a step) up to which batch shards are kept unmeasured: a few
microseconds a step, where the measurement (tens of ms) could never pay back."""


def forced() -> str | None:
    """``RNNKIT_UNIT_SHARDS`` (``on`` or ``off``), or None if unset."""
    return env_choice("RNNKIT_UNIT_SHARDS", CHOICES)


def unit_bounds(H: int, S: int) -> list:
    """[(u0, u1)]: H hidden units in S contiguous shares, as even as can be."""
    edges = [H * k // S for k in range(S + 1)]
    return list(zip(edges[:-1], edges[1:]))


def gate_rows(n_gates: int, H: int, u0: int, u1: int) -> np.ndarray:
    """Rows of W_ih, W_hh and the biases for units u0:u1: those units in each of the n_gates blocks of H rows."""
    return (np.arange(n_gates)[:, None] * H + np.arange(u0, u1)[None, :]).ravel()


def supported(cell, x, input_size: int, hidden_size: int, directions: int, shards, tape: bool, dropout) -> bool:
    """Whether this forward can run in unit shards (see the module docstring): several shards, a unit-local cell
    with no parameters or GEMM of its own, one direction, no tape, no dropout, x an array."""
    return (len(shards) > 1 and not tape and dropout is None and directions == 1 and isinstance(x, np.ndarray)
            and getattr(cell, "unit_local", False) and not cell.own_params(input_size, hidden_size)
            and not cell.cell_hh_blocks and forced_rows() in (None, PACKED))


@jit
def _unit_step(x, W_ihP, h, W_hhP, xw, hw, bar, n_shards, inside, n):
    for _ in range(n):
        if inside:
            packed_gemm(x, W_ihP, xw)
        packed_gemm(h, W_hhP, hw)
        wait(bar, n_shards)


def time_units(B: int, S: int, I: int, H: int, n_gates: int, dtype, clock=time.perf_counter) -> dict:
    """Wall seconds per step of S unit shards side by side, each with all B rows and its own gate rows
    (n_gates H / S of them) of its own weights, the barrier included: {"loop": both products, "alone": the
    recurrent product alone}, both on the micro-kernel."""
    rng = np.random.default_rng(0)
    shards = []
    for u0, u1 in unit_bounds(H, S):
        Gk = n_gates * (u1 - u0)
        W_ih = (rng.standard_normal((Gk, I)) * 0.1).astype(dtype)
        W_hh = (rng.standard_normal((Gk, H)) * 0.1).astype(dtype)
        shards.append((rng.standard_normal((B, I)).astype(dtype), packed_weights(W_ih, False),
                       rng.standard_normal((B, H)).astype(dtype), packed_weights(W_hh, False),
                       np.empty((B, Gk), dtype), np.empty((B, Gk), dtype)))
    out = {}
    with blas_threads_at_most(1):
        for name, inside in (("loop", True), ("alone", False)):
            bar = new_barrier()
            out[name] = time_side_by_side(lambda n: [partial(_unit_step, *s, bar, S, inside, n) for s in shards], clock)
    return out


@functools.lru_cache(maxsize=None)
def _measured(T: int, B: int, S: int, I: int, H: int, n_gates: int, dtype: str) -> tuple:
    """(unit shards?, xw inside their loop?) for this shape (see :func:`chosen`)."""
    G, M = n_gates * H, -(-B // S)
    batch = time_projection(M, S, T * B, I, H, G, G, PACKED, np.dtype(dtype))
    units = time_units(B, S, I, H, n_gates, np.dtype(dtype))
    inside = T * B * I * G > MIN_MACS and units["loop"] - units["alone"] <= INSIDE_MARGIN * batch["gemm"]
    return units["alone"] <= MARGIN * batch["alone"], inside


def chosen(cell, x, W_ih: np.ndarray, W_hh: np.ndarray, shards, tape: bool, dropout) -> tuple:
    """(unit shards?, xw inside their loop?) for one layer's forward (``shards``: the plan's batch shards when
    one direction runs them side by side, else ()): never where :func:`supported` says no;
    ``RNNKIT_UNIT_SHARDS`` if set (with xw inside the loop as :mod:`rnnkit.engine.in_loop` chooses for
    the batch shards); else measured once per process and shape (the module docstring)."""
    choice, H = forced(), W_hh.shape[1]  # a bad RNNKIT_UNIT_SHARDS is an error wherever it is read
    if not supported(cell, x, W_ih.shape[1], H, 1, shards, tape, dropout):
        return False, False
    T, B, I = x.shape
    if B <= STREAMING_ROWS:
        return False, False
    if choice is not None:
        return choice == "on", in_loop.chosen(cell, x, W_ih, W_hh, shards)
    if B * H * cell.n_gates * H <= MIN_STEP_MACS:
        return False, False
    return _measured(T, B, len(shards), I, H, cell.n_gates, x.dtype.name)


class UnitTape:
    """What a unit-shard forward leaves: every unit's h (T+1, B, H), and each shard's state fields (2, B, H_k)."""

    def __init__(self, h_all: np.ndarray, parts: list):
        self.h_all, self.parts = h_all, parts

    def h_new(self) -> np.ndarray:
        """(T, B, H): h leaving each step t."""
        return self.h_all[1:]

    def final(self) -> tuple:
        """The state fields after the last step, each (B, H): the shards' units side by side."""
        last = (len(self.h_all) - 1) % 2  # T % 2: the two-step buffer written last
        return tuple(np.concatenate([states[f][last] for states in self.parts], axis=1)
                     for f in range(len(self.parts[0])))


def _shard(forward, loop_args: tuple, bar, x, W_ih, W_hh, rows, b_x1, b_x2, inside: bool, workspace: dict,
           name: str):
    """The job of one unit shard, all on its own thread (the compiled calls release the GIL): pack its rows of
    W_hh (and of W_ih inside the loop), else form its xw (T, B, G_k) for all steps on one BLAS thread, then run
    the forward loop (``loop_args``: its arguments but W_hh's packed rows and the projection; ``bar`` among them).
    A shard that fails before its loop aborts the barrier, so that the others finish instead of waiting for it."""
    T, B, I = x.shape
    dt = W_hh.dtype
    xw, hw, W_none, *rest = loop_args
    try:
        W_hhP = packed_weights(W_hh, False, workspace, name + "W_hh", rows)  # W_hh[rows].T, gathered
        if inside:
            projection = (x, packed_weights(W_ih, False, workspace, name + "W_ih", rows), b_x1, b_x2)
        else:
            W_ih_k = reuse_empty(workspace, name + "W_ih", (1, len(rows), I), dt)
            gather_rows(W_ih, rows[None, :], W_ih_k)  # W_ih[rows]
            xw2 = xw.reshape(T * B, -1)
            big_gemm.gemm(x.reshape(T * B, I), W_ih_k[0].T, xw2)  # one BLAS thread (run_jobs)
            add_present_biases(xw2, b_x1, b_x2)
            projection = (absent(dt, 3), absent(dt, 2), absent(dt, 1), absent(dt, 1))
    except BaseException:  # this shard will never meet the others: release them, then raise
        abort(bar)
        raise
    forward(xw, hw, W_none, W_hhP, *rest, *projection)


def unit_forward(cell, x, W_ih, b_x1, b_x2, W_hh, b_hh, state0, keep, S: int, inside: bool,
                 workspace: dict) -> tuple:
    """(UnitTape, jobs) of one layer's forward in S unit shards, the jobs to run side by side (each packs its
    weights and, unless ``inside``, projects its xw for all steps itself, :func:`_shard`).

    x (T, B, I) C-contiguous; W_ih (G, I), W_hh (G, H); b_x1, b_x2 the biases of xw (size 0: absent), b_hh
    that of hw or None (:meth:`rnnkit.engine.recurrent.Recurrent._input_biases`); state0 the cell's state tuple,
    each (B, H); keep (T, B) bool or None (True: padded step); ``inside``: each shard forms its xw_t in the loop."""
    T, B, I = x.shape
    H, dt = W_hh.shape[1], W_hh.dtype
    h_all = reuse_empty(workspace, "units.h", (T + 1, B, H), dt)
    h_all[0] = state0[0]
    bar, keep = new_barrier(), absent(np.dtype(bool), 2) if keep is None else keep
    none2 = absent(dt, 2)
    forward = compiled_loops(cell.step, cell.step_backward).forward
    jobs, parts = [], []
    for k, (u0, u1) in enumerate(unit_bounds(H, S)):
        rows, Hk, name = gate_rows(cell.n_gates, H, u0, u1), u1 - u0, f"units.{k}."

        def sub(b):
            return b if b is None or not b.size else np.ascontiguousarray(b[rows])

        xw = reuse_empty(workspace, name + "xw", (1 if inside else T, B, len(rows)), dt)
        states = tuple(reuse_empty(workspace, name + f, (2, B, Hk), dt) for f in cell.State._fields)
        for buf, s0 in zip(states, state0):
            buf[0] = s0[:, u0:u1]
        cache = tuple(reuse_empty(workspace, name + f, (1, B, Hk), dt) for f in cell.cache_fields)
        hw = reuse_empty(workspace, name + "hw", (B, len(rows)), dt)
        bias = absent(dt, 1) if b_hh is None else sub(b_hh)
        loop_args = (xw, hw, none2, bias, states, cache, (), keep, False, none2, none2, 0, B, PACKED, h_all, u0, bar, S)
        jobs.append(partial(_shard, forward, loop_args, bar, x, W_ih, W_hh, rows, sub(b_x1), sub(b_x2), inside,
                            workspace, name))
        parts.append(states)
    return UnitTape(h_all, parts), jobs
