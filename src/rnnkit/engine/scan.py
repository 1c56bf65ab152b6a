"""The generic time loop, compiled whole: run any cell over a sequence, and BPTT back through it.

This is the only place that knows about time.  It is written once for every cell: the
cell's compiled ``step`` / ``step_backward`` (see :mod:`rnnkit.cells.protocol` for the protocol) are
first-class arguments of the compiled loops here, so one call runs all T steps of one
layer and direction (of one shard: batch rows, or hidden units in inference, :mod:`rnnkit.engine.unit_shards`)
without returning to Python, with the GIL released (``nogil``: shards and directions run side by side on threads).
The loops own

* the recurrent GEMM ``hw = h_{t-1} @ W_hh.T (+ b_hh)`` at every step (:mod:`rnnkit.engine.step_gemm`; b_hh
  joins xw instead for cells with a = xw + hw), over the leading gate blocks only for a cell that multiplies
  the trailing ones itself (``cell.cell_hh_blocks``, :func:`split_hh`),
* direction (``reverse`` walks t = T-1 .. 0),
* padding: rows whose step is past their length (``keep[t, b]``) keep their state (so the
  final state is the state at the last valid step, and the reverse direction starts at the
  last valid step from the initial state), emit 0, and pass gradients straight through,
* BPTT: the sum over all steps of the per-step gradients; weight gradients of
  ``W_hh``/``b_hh`` are formed with one GEMM after the loop.

Buffers (:class:`ScanTape`): states[f] (T+1, B, width) per state field f; step t reads the
state at ``t + reverse`` and writes the one at ``t + 1 - reverse``; the cache fields are
(T, B, width) each (widths: ``cell.field_sizes(H)``, H by default), the activated gates are
the xw buffer (T, B, G) itself.  Shapes: T steps, B batch, H hidden, G = n_gates * H.
"Absent" arrays (no mask, no bias, no record) are passed as size-0 arrays, so each cell and
dtype compiles one loop.
"""
from __future__ import annotations

import functools
import hashlib
from typing import NamedTuple

import numpy as np

from rnnkit.engine import barrier, big_gemm, step_gemm, tuples
from rnnkit.engine.barrier import wait
from rnnkit.engine.buffers import absent, reuse_empty
from rnnkit.engine.gemm_rows import loop_operands, step_gemm_rows
import rnnkit.kernels as kernels
from rnnkit.kernels import add_bias, add_present_biases, add_row, all_finite, copy_row, jit, sum_rows
from rnnkit.engine.tape import ScanTape
from rnnkit.engine.tuples import at, rows
from rnnkit.engine.step_gemm import PACKED, packed_gemm, times_w, times_wt


# ----------------------------------------------------------------------------- compiled loops
@jit
def mul_rows(a, m, out):
    """out[b, j] = a[b, j] * m[b, j] (2-D, same shapes): the recurrent dropout mask applied to h."""
    for b in range(a.shape[0]):
        for j in range(a.shape[1]):
            out[b, j] = a[b, j] * m[b, j]


class Loops(NamedTuple):
    """The compiled loops of one cell (:func:`compiled_loops`)."""

    forward: object
    backward: object
    step: object


INLINED = (barrier, kernels, step_gemm, tuples)
"""Modules whose compiled code the loops inline: their sources key the loops' disk cache (:func:`helpers_key`)."""


@functools.lru_cache(maxsize=None)
def helpers_key() -> str:
    """A hash of the :data:`INLINED` modules' sources.  numba keys a closure's disk cache by its bytecode and the
    values it closes over, not by the files of the functions it calls: after an edit of step_gemm.py alone the
    loops still ran the old micro-kernel from the cache (seen in issue 19, round 5).  Closing over this key ties
    the cache to those files too."""
    h = hashlib.sha256()
    for module in INLINED:
        with open(module.__file__, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:20]


@functools.lru_cache(maxsize=None)
def compiled_loops(step, step_backward) -> Loops:
    """The generic loops, compiled around one cell's ``step`` and ``step_backward``.

    Written once here for every cell; each cell gets its own compiled copy in which the
    calls to its step functions are direct (inlinable) calls.  Cached on disk: the cells'
    functions carry stable names (:func:`kernels.stable_jit`), and each loop closes over
    :func:`helpers_key`.  Made once per process and cell, on first use.

    The loops take their arrays positionally: passing them as one NamedTuple instead cost 3.6 %
    of an LSTM fwd+BPTT at (T, B, I, H) = (100, 1, 32, 32) (0.232 vs 0.224 ms, 7 of 7 alternating
    pairs slower, about 4 µs a call: the dispatcher types a tuple argument more slowly than arrays).
    """
    helpers = helpers_key()

    @jit
    def forward_loop(xw, hw, W_hh, W_hhT, b_hh, states, cache, p, keep, reverse, h_mask, h_masked, b0, b1, gemm_rows,
                     h_all, u0, bar, n_shards, x, W_ihP, b_x1, b_x2):
        """Rows b0:b1 of the whole sequence: for each t, hw = h_prev @ W_hh.T (+ b_hh); step; padding.

        xw (T, B, G) in: input projections, out: activated gates; hw (B, G) scratch;
        x (T, B, I) or size 0: the input projection is formed here, step by step (:mod:`rnnkit.engine.in_loop`):
        xw_t = x_t @ W_ih.T (W_ihP: W_ih.T packed) + b_x1 (+ b_x2) (size 0: absent), xw then only an output;
        W_hh (G, H) and W_hhT, its contiguous transpose or packed or size 0
        (:func:`rnnkit.engine.gemm_rows.loop_operands`);
        b_hh (G,) or size 0; states: per field
        (T+1, B, H) with the initial state at index T (reverse) or 0; cache: per field (T, B, H).
        Without a tape (inference) xw (with x), the cache and the state fields after h may hold one step (1, B, .)
        or two (2, B, .), indexed modulo their length (:func:`rnnkit.engine.tuples.at`);
        p: the cell's own parameters; keep (T, B) bool (True: padded step, the state is carried) or
        size 0; h_mask (B, H) or size 0: hw = (h_prev * h_mask) @ W_hh.T (recurrent dropout),
        h_masked (B, H) its scratch; gemm_rows: how the GEMM runs (:mod:`rnnkit.engine.gemm_rows`).
        A unit shard (:mod:`rnnkit.engine.unit_shards`; else h_all size 0): h_all (T+1, B, H) every unit's h (the
        GEMM's input, the output), this shard's units from column u0; its part of h_t goes there, then it waits
        at ``bar`` for the other ``n_shards - 1`` (:func:`rnnkit.engine.barrier.wait`).
        """
        n_all = h_all.shape[0] + 0 * len(helpers)  # + 0: the key is in the closure (helpers_key)
        T = (n_all if n_all else states[0].shape[0]) - 1  # h: (T+1, B, H) always (it is the output)
        Tx = xw.shape[0]  # T, or 1: xw_t overwritten at every step (inference without a tape)
        hw = hw[b0:b1]
        for s in range(T):
            t = T - 1 - s if reverse else s
            tp = t + 1 if reverse else t  # state entering step t
            tn = t if reverse else t + 1  # state leaving it
            prev, new = at(states, tp, b0, b1), at(states, tn, b0, b1)
            h_in = h_all[tp % n_all, b0:b1] if n_all else prev[0]  # the GEMM's h_prev: every unit
            if x.shape[0]:  # xw_t = x_t @ W_ih.T + b_ih (+ b_hh), the biases added as before the loop
                a = xw[t % Tx, b0:b1]
                packed_gemm(x[t, b0:b1], W_ihP, a)
                add_present_biases(a, b_x1, b_x2)
            if h_mask.shape[0]:  # recurrent dropout: hw = (h_prev * h_mask) @ W_hh.T
                hm = h_masked[b0:b1]
                mul_rows(h_in, h_mask[b0:b1], hm)
                times_wt(hm, W_hh, W_hhT, hw, gemm_rows)
            else:
                times_wt(h_in, W_hh, W_hhT, hw, gemm_rows)  # hw = h_prev @ W_hh.T
            if b_hh.shape[0]:
                add_bias(hw, b_hh)
            step(xw[t % Tx, b0:b1], hw, p, prev, new, at(cache, t, b0, b1))
            if keep.shape[0]:  # padded rows keep their state
                for b in range(b0, b1):
                    if keep[t, b]:
                        for k in range(len(states)):
                            n = states[k].shape[0]
                            copy_row(states[k][tn % n, b], states[k][tp % n, b])
            if n_all:  # a unit shard: its part of h_t into every unit's h, then all shards meet
                h_out = h_all[tn % n_all, b0:b1]
                for b in range(h_out.shape[0]):
                    copy_row(h_out[b, u0:u0 + new[0].shape[1]], new[0][b])
                wait(bar, n_shards)


    @jit
    def backward_loop(d_out, d_new, d_prev, carry, dh_w, gates, states, cache, p, dp, W_hh, W_hhT, d_xw,
                      d_hw, keep, reverse, direct_h, record, h_mask, b0, b1, gemm_rows):
        """BPTT of rows b0:b1 over all steps; returns dL/d(initial state) (one of the two buffer tuples).

        d_out (T, B, H): dL/d out; d_new: per state field (B, H), dL/d(final state) on entry;
        d_prev, carry: same shapes, scratch; dh_w (B, H) scratch; gates, states, cache: the forward's
        buffers; dp: gradients of the cell's own parameters (added into); d_xw, d_hw (T, B, G)
        outputs (the same array for cells with a = xw + hw); record: per state field (T, B, H)
        or size 0 (see :func:`scan_backward`); h_mask (B, H) or size 0: the forward's recurrent
        dropout mask (dL/dh_prev through W_hh is multiplied by it); gemm_rows: the GEMM's row blocks.
        """
        T = d_out.shape[0] + 0 * len(helpers)  # + 0: the key is in the closure (helpers_key)
        dn, dpr, cr, dhw_ = rows(d_new, b0, b1), rows(d_prev, b0, b1), rows(carry, b0, b1), dh_w[b0:b1]
        for s in range(T):
            t = s if reverse else T - 1 - s
            tp = t + 1 if reverse else t
            tn = t if reverse else t + 1
            dh = dn[0]
            for b in range(b1 - b0):  # out_t = h_t where valid; padded outputs were 0 and pass nothing
                if not (keep.shape[0] and keep[t, b0 + b]):
                    add_row(dh[b], d_out[t, b0 + b])
            if record[0].shape[0]:
                for k in range(len(dn)):
                    for b in range(b1 - b0):
                        if not (keep.shape[0] and keep[t, b0 + b]):
                            copy_row(record[k][t, b0 + b], dn[k][b])
            if keep.shape[0]:  # padded rows: the state was carried through, so is its gradient; the step gets 0
                for b in range(b1 - b0):
                    if keep[t, b0 + b]:
                        for k in range(len(dn)):
                            copy_row(cr[k][b], dn[k][b])
                            dn[k][b] = 0
            dxw, dhw = d_xw[t, b0:b1], d_hw[t, b0:b1]
            step_backward(dn, gates[t, b0:b1], at(cache, t, b0, b1), at(states, tp, b0, b1), at(states, tn, b0, b1),
                          p, dxw, dhw, dpr, dp)
            if direct_h:  # the cell wrote its direct part of dh_prev; add the part through W_hh
                times_w(dhw, W_hh, W_hhT, dhw_, gemm_rows)
                if h_mask.shape[0]:
                    mul_rows(dhw_, h_mask[b0:b1], dhw_)
                for b in range(b1 - b0):
                    add_row(dpr[0][b], dhw_[b])
            else:
                times_w(dhw, W_hh, W_hhT, dpr[0], gemm_rows)  # hw = h_prev @ W_hh.T
                if h_mask.shape[0]:  # hw = (h_prev * h_mask) @ W_hh.T
                    mul_rows(dpr[0], h_mask[b0:b1], dpr[0])
            if keep.shape[0]:  # padded rows: the carried gradient passes on unchanged
                for b in range(b1 - b0):
                    if keep[t, b0 + b]:
                        for k in range(len(dn)):
                            copy_row(dpr[k][b], cr[k][b])
            dn, dpr = dpr, dn
        return dn


    @jit
    def step_once(x, layers, prev, new, xw, hw, cache):
        """One step of a stack of layers alone (streaming), in one call.

        x (B, I); layers: per layer (W_ih, b_x1, b_x2, W_hh, b_h, p); prev, new: per state
        field (L, B, H).  Per layer: xw = x @ W_ih.T + b_x1 (+ b_x2); hw = h_prev @ W_hh.T
        (+ b_h); step; the next layer's x is this layer's new h.  The biases are added as in
        the sequence path (b_x2 = b_hh for cells with a = xw + hw, b_h = b_hh for the others;
        size 0 when absent), so streaming computes the same numbers.
        Returns whether x and prev are finite (checked here: a separate compiled check of each costs
        its dispatch, about 0.3 us a call, a tenth of a small step; the caller raises if not).
        """
        B = x.shape[0] + 0 * len(helpers)  # + 0: the key is in the closure (helpers_key)
        finite = all_finite(x)
        for a in prev:  # as 2-D, the rank x has: all_finite compiles once per rank
            finite = finite and all_finite(a.reshape(a.shape[0] * a.shape[1], a.shape[2]))
        for layer in range(len(layers)):
            W_ih, b_x1, b_x2, W_hh, b_h, p = layers[layer]
            np.dot(x, W_ih.T, xw)
            add_present_biases(xw, b_x1, b_x2)
            h_prev = at(prev, layer, 0, B)
            np.dot(h_prev[0], W_hh.T, hw)
            if b_h.shape[0]:
                add_bias(hw, b_h)
            h_new = at(new, layer, 0, B)
            step(xw, hw, p, h_prev, h_new, cache)
            x = h_new[0]
        return finite

    return Loops(forward_loop, backward_loop, step_once)


# ----------------------------------------------------------------------------- Python side
def split_hh(cell, W_hh, b_hh):
    """(W_hh, b_hh) of the loop's recurrent GEMM, and (W, b) of the trailing ``cell.cell_hh_blocks``
    gate blocks the cell multiplies itself (None if none; b: size 0 without a bias).  Views."""
    k = cell.cell_hh_blocks
    if not k:
        return W_hh, b_hh, None
    r = W_hh.shape[0] // cell.n_gates * (cell.n_gates - k)
    b_cell = absent(W_hh.dtype, 1) if b_hh is None else b_hh[r:]
    return W_hh[:r], None if b_hh is None else b_hh[:r], (W_hh[r:], b_cell)


def bounds(shards, B: int) -> list:
    """The shards' (b0, b1) row ranges, an open end (None) closed at B."""
    return [(b0, B if b1 is None else b1) for b0, b1 in shards]


def cell_args(cell_hh, h_mask, b0, b1) -> tuple:
    """What a cell with ``cell_hh_blocks`` gets after its own parameters in ``p``: its rows of W_hh
    and b_hh, and rows b0:b1 of the recurrent dropout mask (size 0 without); () for other cells."""
    if cell_hh is None:
        return ()
    W, b = cell_hh
    return W, b, absent(W.dtype, 2) if h_mask is None else h_mask[b0:b1]


def no_units(dtype) -> tuple:
    """The forward loop's unit-shard arguments (h_all, u0, bar, n_shards) for a batch shard: none."""
    return absent(dtype, 3), 0, absent(np.dtype(np.int64), 1), 0


class InputProjection(NamedTuple):
    """The input projection formed inside the forward loop (:mod:`rnnkit.engine.in_loop`): xw_t = x_t @ W_ih.T
    + b_x1 (+ b_x2); x (T, B, I) C-contiguous, W_ihP W_ih.T packed, absent biases size 0."""

    x: np.ndarray
    W_ihP: np.ndarray
    b_x1: np.ndarray
    b_x2: np.ndarray


def scan_forward(cell, xw, W_hh, b_hh, state0, keep=None, reverse=False, p=(), shards=((0, None),),
                 workspace=None, h_mask=None, projection: InputProjection | None = None, tape: bool = True):
    """Prepare the compiled forward of one layer and direction: returns (tape, jobs).

    xw:     (T, B, G) input projections x_t @ W_ih.T + b_ih for all steps, or with ``projection`` a
            buffer the loop forms them in; the scan takes it over (the activated gates are written into it)
    W_hh:   (G, H);  b_hh: (G,) or None (None also when the caller added it to xw, which
            cells with a = xw + hw allow: ``cell.dhw_is_dxw``)
    state0: the cell's state tuple, each (B, H)
    keep:   (T, B) bool or None: True where t >= length (padded step)
    p:      tuple of the cell's own parameters
    h_mask: (B, H) or None: recurrent dropout, hw = (h_prev * h_mask) @ W_hh.T at every step
    shards: (b0, b1) row ranges; one job (a zero-argument callable) per shard, to be run
            (side by side or not) before the tape is read
    workspace: dict the caller keeps between calls: the tape's buffers are kept there
            (:func:`reuse_empty`) and overwritten by the next call
    projection: an :class:`InputProjection` the loop forms xw with, step by step (its recurrent GEMM then
            runs on the micro-kernel too), or None (xw holds the projections)
    tape:   False (inference): only h is kept for every step (it is the output); the other state fields
            alternate between two steps and the cache holds one, and with ``projection`` xw may be (1, B, G):
            the returned ScanTape then serves :meth:`ScanTape.h_new` and :meth:`ScanTape.final`, not a backward
    """
    _, B, G = xw.shape
    T = xw.shape[0] if projection is None else projection.x.shape[0]
    H = W_hh.shape[1]
    width = cell.field_sizes(G // cell.n_gates)
    kept = {f: T + 1 if tape or f == "h" else 2 for f in cell.State._fields}
    states = tuple(reuse_empty(workspace, "state." + f, (kept[f], B, width[f]), xw.dtype) for f in cell.State._fields)
    for buf, s0 in zip(states, state0):
        buf[(T if reverse else 0) % len(buf)] = s0
    cache = tuple(reuse_empty(workspace, "cache." + f, (T if tape else 1, B, width[f]), xw.dtype)
                  for f in cell.cache_fields)
    W_hh, b_hh, cell_hh = split_hh(cell, W_hh, b_hh)
    hw = reuse_empty(workspace, "hw", (B, W_hh.shape[0]), xw.dtype)
    bias = absent(xw.dtype, 1) if b_hh is None else b_hh
    keep = absent(np.dtype(bool), 2) if keep is None else keep
    mask = absent(xw.dtype, 2) if h_mask is None else h_mask
    masked = absent(xw.dtype, 2) if h_mask is None else reuse_empty(workspace, "h_masked", (B, H), xw.dtype)
    blocks = [(b0, b1, step_gemm_rows(b1 - b0, H, W_hh.shape[0], xw.dtype, False)) for b0, b1 in bounds(shards, B)]
    if projection is not None:  # the loop forms xw_t on the micro-kernel: its recurrent GEMM too
        blocks = [(b0, b1, PACKED) for b0, b1, _ in blocks]
    blocks, W_hhT = loop_operands(W_hh, blocks, False, workspace)  # W_hh.T copied or packed, where read
    if projection is None:
        projection = InputProjection(absent(xw.dtype, 3), absent(xw.dtype, 2), absent(xw.dtype, 1), absent(xw.dtype, 1))
    forward = compiled_loops(cell.step, cell.step_backward).forward
    jobs = [functools.partial(forward, xw, hw, W_hh, W_hhT, bias, states, cache, p + cell_args(cell_hh, h_mask, b0, b1),
                              keep, reverse, mask, masked, b0, b1, r, *no_units(xw.dtype), *projection)
            for b0, b1, r in blocks]
    return ScanTape(states, xw if cell.keeps_gates else None, cache, reverse, h_mask), jobs


def scan_backward(cell, tape: ScanTape, d_out, d_state_T, W_hh, keep=None, p=(), dp=(), record=None,
                  shards=((0, None),), workspace=None):
    """Prepare BPTT through one scan: returns (jobs, finish); run the jobs, then ``finish()``.

    d_out:     (T, B, H) gradient of the loss w.r.t. the scan's output
    d_state_T: state tuple of arrays (B, H), gradient w.r.t. the final state
    dp:        gradients of the cell's own parameters, added into by ``finish``
    record:    optional dict; if given, record["h"] (T, B, H) holds at [t] the total
               dL/dh_t (output path + recurrent path) and, for the LSTM, record["c"][t]
               the part of dL/dc_t arriving from step t+1 (via f_{t+1}); the part
               through h_t = o_t tanh(c_t) is added inside the cell's backward; 0 in
               padded rows
    workspace: d_xw (and the GRU's d_hw) are written into buffers kept there
    ``finish(blas, dW_hh)`` adds dL/dW_hh into ``dW_hh`` (G, H) (:func:`rnnkit.engine.big_gemm.add_t`: no temporary)
    and returns d_xw (T, B, G), db_hh (G,), d_state0 (``blas``: the thread plan's BLAS threads,
    :func:`rnnkit.engine.big_gemm.dot`).
    """
    d_out = np.ascontiguousarray(d_out)
    T, B, H = d_out.shape
    G = W_hh.shape[0]
    dt = d_out.dtype
    State = cell.State
    width = cell.field_sizes(G // cell.n_gates)
    W_hh, _, cell_hh = split_hh(cell, W_hh, None)
    d_xw = reuse_empty(workspace, "d_xw", (T, B, G), dt)
    d_hw = d_xw if cell.dhw_is_dxw else reuse_empty(workspace, "d_hw", (T, B, W_hh.shape[0]), dt)
    d_new = tuple(np.array(a, dtype=dt) for a in d_state_T)
    d_prev = tuple(np.empty((B, width[f]), dtype=dt) for f in State._fields)
    carry = tuple(reuse_empty(workspace, "carry." + f, (B, width[f]), dt) for f in State._fields)
    dh_w = reuse_empty(workspace, "dh_w", (B, H), dt)
    if record is not None:
        record.update({f: np.zeros((T, B, width[f]), dtype=dt) for f in State._fields})
        rec = tuple(record[f] for f in State._fields)
    else:
        rec = (absent(dt, 3),) * len(State._fields)
    keep = absent(np.dtype(bool), 2) if keep is None else keep
    gates = d_xw if tape.gates is None else tape.gates  # a cell without gates does not read them
    mask = absent(dt, 2) if tape.h_mask is None else tape.h_mask
    dps = [dp if len(shards) == 1 else tuple(np.zeros_like(g) for g in dp) for _ in shards]
    blocks = [(b0, b1, step_gemm_rows(b1 - b0, H, W_hh.shape[0], dt, True)) for b0, b1 in bounds(shards, B)]
    blocks, W_hhT = loop_operands(W_hh, blocks, True, workspace)  # W_hh copied transposed or packed, where read
    backward = compiled_loops(cell.step, cell.step_backward).backward
    jobs = [functools.partial(backward, d_out, d_new, d_prev, carry, dh_w, gates, tape.states, tape.cache,
                              p + cell_args(cell_hh, tape.h_mask, b0, b1), dps[k], W_hh, W_hhT, d_xw, d_hw, keep,
                              tape.reverse, cell.direct_h, rec, mask, b0, b1, r)
            for k, (b0, b1, r) in enumerate(blocks)]

    def finish(blas: int, dW_hh):
        if len(shards) > 1:
            for g, *parts in zip(dp, *dps):
                g += sum(parts)
        d0 = d_new if T % 2 == 0 else d_prev  # the loop swaps the two buffers at every step
        # hw_t = h_prev_t @ W_hh.T + b_hh summed over t: one GEMM for all steps, on all cores
        h_in = tape.h_prev() if tape.h_mask is None else tape.h_prev() * tape.h_mask  # what met W_hh
        r = W_hh.shape[0]  # the loop's rows; the rows the cell multiplied itself (cell_hh) follow
        parts = [(h_in.reshape(T * B, H), d_hw.reshape(T * B, r))]
        db_hh = sum_rows(d_hw.reshape(T * B, -1))
        if cell_hh is not None:  # those rows met the cell's first cache field
            d_own = d_xw[..., r:].reshape(T * B, G - r)
            parts.append((tape.cache[0].reshape(T * B, -1), d_own))
            db_hh = np.concatenate([db_hh, sum_rows(d_own)])
        for (a, d), rows in zip(parts, (slice(0, r), slice(r, G))):
            big_gemm.add_t(dW_hh[rows], a, d, blas)
        return d_xw, db_hh, State._make(d0)

    return jobs, finish
