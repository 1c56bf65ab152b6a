"""Recurrent cells: one time step forward and its hand-written backward, compiled (numba).

A cell knows nothing about time, layers, directions, threads or padding; the generic
compiled loop in :mod:`rnnkit.scan` owns all of that and calls the cell's two compiled
functions at every step (they are its first-class arguments).  Every cell works on the
two pre-activations that the loop computes with BLAS:

    xw = x_t     @ W_ih.T + b_ih      (B, G*H)   input projection, all steps in one GEMM
    hw = h_{t-1} @ W_hh.T + b_hh      (B, G*H)   recurrent projection, one GEMM per step

(for the RNN and LSTM, where a = xw + hw, the layer adds b_hh to xw once for all steps
and hw has no bias: ``dhw_is_dxw``; the GRU keeps b_hh in hw, since r multiplies its n block).

The cell protocol.  A cell class declares

* ``State`` (a NamedTuple of (B, H) fields, h first), ``cache_fields`` (names of its own
  per-step (B, H) buffers), ``keeps_gates`` (the activated gates, written over xw, are kept
  for the backward), ``n_gates``, ``gate_names``, ``sigmoid_gates``, ``forget_gate``,
  ``dhw_is_dxw``, ``direct_h`` (see below);
* ``own_params(input_size, hidden_size)`` -> {name: shape} of parameters the cell owns beyond
  weight_ih/weight_hh/bias_ih/bias_hh, and ``init_own(name, shape, rng, hidden_size)``
  (none for the three cells here; the peephole, layer-normalised and projected LSTMs
  (cells_*.py) add their own);
* ``field_sizes(hidden_size)`` -> {field: width} of every state and cache field (default:
  all H; a cell with a wider cache or a projected h says so);
* a cell with a cell state c (the LSTM family): ``dc_from_h(dh, gates, cache, p)``, the part of
  dL/dc_t through h_t (NumPy; the gradient-flow diagnostics add it to the carried part);
* two compiled functions (:func:`kernels.stable_jit`), all arrays (B, .) C-contiguous views
  the loop hands out, tuples in the declared field order:

  ``step(xw, hw, p, prev, new, cache)``: xw holds the input projection on entry and the
  activated gates on return; hw holds the recurrent projection; the cell writes the ``new``
  state and its ``cache``.  ``p`` is the tuple of the cell's own parameters.

  ``step_backward(d_new, gates, cache, prev, new, p, d_xw, d_hw, d_prev, dp)``: from
  d_new = dL/d(state_t) (all paths) the cell writes d_xw = dL/d(xw_t), d_hw = dL/d(hw_t)
  (the same array when ``dhw_is_dxw``), adds its own parameters' gradients into ``dp``, and
  writes the parts of dL/d(state_{t-1}) that do not flow through W_hh: LSTM ``d_prev[1]``
  (c); the GRU's h (its direct path z * h_prev, ``direct_h = True``).  The loop puts
  ``d_hw @ W_hh`` into (or adds it to) ``d_prev[0]``.

* ``cell_hh_blocks`` (default 0): the number of trailing gate blocks of W_hh whose product
  the cell forms itself inside its step, because their input depends on the step's own gates
  (the GRU with ``linear_before_reset=False``: (r * h_prev) W_hn^T,
  :mod:`rnnkit.cells_gru_reset_before`).  The loop's GEMM then covers the leading blocks only
  (hw and d_hw are that narrow); the cell gets after its own parameters in ``p`` its rows of
  W_hh (as used: after weight dropout), of b_hh (size 0 without a bias) and its batch rows of
  the recurrent dropout mask (size 0 without).  It adds ``u @ W_rows.T + b_rows`` to those
  blocks of xw (so their d_xw is the product's gradient) and keeps u (B, H) as its first cache
  field: the loop forms those rows of dW_hh and db_hh after the time loop, one GEMM over all
  steps.  Its ``d_prev[0]`` includes the path through its product (mask included).

Caches hold *outputs* of the nonlinearities, so derivatives are formed from them:
sigma' = s(1-s), tanh' = 1-tanh^2.  The activations are :func:`kernels.tanh_` and
:func:`kernels.sigmoid_` (exact in float64, a <= 5e-7 approximation in float32).  Each
step loops over batch rows and calls a row function on 1-D views (gate blocks as separate
arrays), which LLVM vectorises.  Gate order is PyTorch's: RNN (a), LSTM (i, f, g, o),
GRU (r, z, n).  See docs/bptt.md for the derivation in these names.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .kernels import stable_jit, rowjit, sigmoid_, tanh_


class HState(NamedTuple):
    """State of an Elman RNN or GRU: the hidden vector h, shape (B, H)."""

    h: np.ndarray


class LSTMState(NamedTuple):
    """State of an LSTM: hidden h and cell c, each (B, H)."""

    h: np.ndarray
    c: np.ndarray


def sigmoid(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Numerically safe logistic function, 0.5 * (1 + tanh(a / 2)) (NumPy, for the upper floors)."""
    out = np.multiply(a, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


class Cell:
    """Defaults of the cell protocol (see the module docstring)."""

    n_gates: int
    gate_names: tuple
    sigmoid_gates: tuple = ()
    forget_gate: int | None = None  # block index of the forget gate (init sets its bias)
    State: type = HState
    cache_fields: tuple = ()
    keeps_gates = True
    dhw_is_dxw = True
    direct_h = False
    cell_hh_blocks = 0  # trailing gate blocks of W_hh the cell multiplies itself (see the module docstring)
    step = step_backward = None  # the compiled functions

    def own_params(self, input_size: int, hidden_size: int) -> dict:
        """{name: shape} of the parameters this cell owns beyond the four of every cell."""
        return {}

    def init_own(self, name: str, shape: tuple, rng: np.random.Generator, hidden_size: int) -> np.ndarray:
        raise NotImplementedError(name)

    def field_sizes(self, hidden_size: int) -> dict:
        """{field: width} of the state and cache fields (per batch row); h's width is the output size."""
        return {f: hidden_size for f in self.State._fields + tuple(self.cache_fields)}


# ----------------------------------------------------------------------------- Elman RNN
@rowjit
def _rnn_row(a, ha, h, relu):
    zero = h.dtype.type(0.0)
    for j in range(h.shape[0]):
        v = a[j] + ha[j]  # a = xw + hw
        h[j] = max(v, zero) if relu else tanh_(v)


@rowjit
def _rnn_backward_row(dh, h, da, relu):
    one, zero = dh.dtype.type(1.0), dh.dtype.type(0.0)
    for j in range(dh.shape[0]):  # tanh' = 1 - h^2, relu' = [h > 0]
        da[j] = (dh[j] if h[j] > zero else zero) if relu else dh[j] * (one - h[j] * h[j])


@stable_jit
def rnn_tanh_step(xw, hw, p, prev, new, cache):
    """h = tanh(xw + hw)."""
    h = new[0]
    for b in range(h.shape[0]):
        _rnn_row(xw[b], hw[b], h[b], False)


@stable_jit
def rnn_relu_step(xw, hw, p, prev, new, cache):
    """h = max(xw + hw, 0)."""
    h = new[0]
    for b in range(h.shape[0]):
        _rnn_row(xw[b], hw[b], h[b], True)


@stable_jit
def rnn_tanh_step_backward(d_new, gates, cache, prev, new, p, d_xw, d_hw, d_prev, dp):
    """da = dh (1 - h^2) into d_xw (= d_hw)."""
    dh, h = d_new[0], new[0]
    for b in range(dh.shape[0]):
        _rnn_backward_row(dh[b], h[b], d_xw[b], False)


@stable_jit
def rnn_relu_step_backward(d_new, gates, cache, prev, new, p, d_xw, d_hw, d_prev, dp):
    """da = dh [h > 0] into d_xw (= d_hw)."""
    dh, h = d_new[0], new[0]
    for b in range(dh.shape[0]):
        _rnn_backward_row(dh[b], h[b], d_xw[b], True)


class RNNCell(Cell):
    """Elman cell (the seed's h_t = tanh(U x_t + V h_{t-1} + b_h)).

    a = xw + hw ;  h = tanh(a)   (or relu(a))
    """

    n_gates = 1
    gate_names = ("a",)  # gate_activations() gives h = nonlinearity(a) for this block
    keeps_gates = False  # its backward needs only h

    def __init__(self, nonlinearity: str = "tanh"):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        relu = nonlinearity == "relu"
        self.step = rnn_relu_step if relu else rnn_tanh_step
        self.step_backward = rnn_relu_step_backward if relu else rnn_tanh_step_backward


# ----------------------------------------------------------------------------- LSTM
@rowjit
def _sigmoid_of_sum(a, w):
    """a <- sigma(a + w) (a gate block: xw + hw, activated in place)."""
    for j in range(a.shape[0]):
        a[j] = sigmoid_(a[j] + w[j])


@rowjit
def _tanh_of_sum(a, w):
    """a <- tanh(a + w)."""
    for j in range(a.shape[0]):
        a[j] = tanh_(a[j] + w[j])


@rowjit
def _lstm_cell_row(i, f, g, c_prev, c):
    for j in range(c.shape[0]):
        c[j] = f[j] * c_prev[j] + i[j] * g[j]


@rowjit
def _lstm_hidden_row(o, c, tanh_c, h):
    for j in range(h.shape[0]):
        tanh_c[j] = tanh_(c[j])
        h[j] = o[j] * tanh_c[j]


@stable_jit
def lstm_step(xw, hw, p, prev, new, cache):
    """i, f, g, o = sigma, sigma, tanh, sigma of xw + hw; c = f c_prev + i g; h = o tanh(c)."""
    c_prev, h, c, tanh_c = prev[1], new[0], new[1], cache[0]
    H = h.shape[1]
    for b in range(h.shape[0]):  # loops over few arrays each: LLVM vectorises them
        a, w = xw[b], hw[b]
        i, f, g, o = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
        _sigmoid_of_sum(a[: 2 * H], w[: 2 * H])  # i, f = sigma(a_i), sigma(a_f)
        _tanh_of_sum(g, w[2 * H : 3 * H])  # g = tanh(a_g)
        _sigmoid_of_sum(o, w[3 * H :])  # o = sigma(a_o)
        _lstm_cell_row(i, f, g, c_prev[b], c[b])  # c = f * c_prev + i * g
        _lstm_hidden_row(o, c[b], tanh_c[b], h[b])  # h = o * tanh(c)


@rowjit
def _lstm_dc_row(dh, dc, o, tanh_c, dc_t):
    one = dh.dtype.type(1.0)
    for j in range(dh.shape[0]):
        dc_t[j] = dh[j] * o[j] * (one - tanh_c[j] * tanh_c[j]) + dc[j]  # h = o tanh(c): dh/dc = o (1 - tanh(c)^2)


@rowjit
def _lstm_gates_backward_row(dc_t, i, f, g, c_prev, di, df, dg):
    one = dc_t.dtype.type(1.0)
    for j in range(dc_t.shape[0]):
        di[j] = dc_t[j] * g[j] * (i[j] * (one - i[j]))  # di = dc g ; sigma' = i (1 - i)
        df[j] = dc_t[j] * c_prev[j] * (f[j] * (one - f[j]))  # df = dc c_prev
        dg[j] = dc_t[j] * i[j] * (one - g[j] * g[j])  # dg = dc i ; tanh' = 1 - g^2


@rowjit
def _lstm_output_backward_row(dh, o, tanh_c, do):
    one = dh.dtype.type(1.0)
    for j in range(dh.shape[0]):
        do[j] = dh[j] * tanh_c[j] * (o[j] * (one - o[j]))  # do = dh tanh(c)


@rowjit
def _scale_row(a, f):
    for j in range(a.shape[0]):
        a[j] *= f[j]


@stable_jit
def lstm_step_backward(d_new, gates, cache, prev, new, p, d_xw, d_hw, d_prev, dp):
    """(dh, dc) -> da = d(a_i, a_f, a_g, a_o) into d_xw (= d_hw), dc_prev into d_prev[1]."""
    dh, dc, c_prev, tanh_c, dc_prev = d_new[0], d_new[1], prev[1], cache[0], d_prev[1]
    H = dh.shape[1]
    for b in range(dh.shape[0]):
        g, d = gates[b], d_xw[b]
        dc_t = dc_prev[b]  # dc_t is formed in the dc_prev row, which becomes dc_t * f at the end
        _lstm_dc_row(dh[b], dc[b], g[3 * H :], tanh_c[b], dc_t)  # dc = dh o (1 - tanh(c)^2) + dc_next
        _lstm_gates_backward_row(dc_t, g[:H], g[H : 2 * H], g[2 * H : 3 * H], c_prev[b], d[:H], d[H : 2 * H],
                                 d[2 * H : 3 * H])
        _lstm_output_backward_row(dh[b], g[3 * H :], tanh_c[b], d[3 * H :])
        _scale_row(dc_t, g[H : 2 * H])  # dc_prev = dc f (dc/dc_prev = f)


class LSTMCell(Cell):
    """LSTM cell, the seed's equations with W_* . [h_{t-1}, x_t] split into W_ih, W_hh.

    a = xw + hw                        (B, 4H), blocks i, f, g, o
    i = sigma(a_i)  f = sigma(a_f)  g = tanh(a_g)  o = sigma(a_o)
    c = f * c_prev + i * g
    h = o * tanh(c)
    """

    n_gates = 4
    gate_names = ("i", "f", "g", "o")
    sigmoid_gates = ("i", "f", "o")
    forget_gate = 1
    State = LSTMState
    cache_fields = ("tanh_c",)  # tanh(c_t)
    step, step_backward = staticmethod(lstm_step), staticmethod(lstm_step_backward)

    def dc_from_h(self, dh, gates, cache: dict, p: tuple):
        """The part of dL/dc_t that flows through h_t, from dL/dh_t (NumPy, for the diagnostics:
        the total dL/dc_t is this plus the part carried in from step t+1, rnnkit.diagnostics.gradflow).

        dh (..., Hh); gates (..., 4H) the activated gates; cache {field: (..., width)} of the step;
        p the cell's own parameters.  Here h = o * tanh(c): dL/dc = dh * o * (1 - tanh(c)^2).
        Every LSTM-family cell whose h is formed differently overrides it."""
        H = gates.shape[-1] // 4
        tanh_c = cache["tanh_c"]
        return dh * gates[..., 3 * H :] * (1.0 - tanh_c * tanh_c)


# ----------------------------------------------------------------------------- GRU
@rowjit
def _gru_candidate_row(r, n, hn_w, hn):
    for j in range(n.shape[0]):
        hn[j] = hn_w[j]  # kept: W_hn h_prev + b_hn, the part r multiplies
        n[j] = tanh_(n[j] + r[j] * hn_w[j])


@rowjit
def _gru_hidden_row(z, n, h_prev, h):
    for j in range(h.shape[0]):
        h[j] = n[j] + z[j] * (h_prev[j] - n[j])  # (1 - z) n + z h_prev


@stable_jit
def gru_step(xw, hw, p, prev, new, cache):
    """r, z = sigma(x_rz + h_rz); n = tanh(xn + r hn); h = (1 - z) n + z h_prev."""
    h_prev, h, hn = prev[0], new[0], cache[0]
    H = h.shape[1]
    for b in range(h.shape[0]):  # loops over few arrays each: LLVM vectorises them
        a, w = xw[b], hw[b]
        _sigmoid_of_sum(a[: 2 * H], w[: 2 * H])  # r, z = sigma(xr + hr), sigma(xz + hz)
        _gru_candidate_row(a[:H], a[2 * H :], w[2 * H :], hn[b])  # n = tanh(xn + r hn)
        _gru_hidden_row(a[H : 2 * H], a[2 * H :], h_prev[b], h[b])  # h = (1 - z) n + z h_prev


@rowjit
def _gru_n_backward_row(dh, r, z, n, hn, dx_r, dx_n, dw_n):
    one = dh.dtype.type(1.0)
    for j in range(dh.shape[0]):
        dan = dh[j] * (one - z[j]) * (one - n[j] * n[j])  # dh/dn = 1 - z ; tanh' = 1 - n^2
        dx_n[j] = dan
        dw_n[j] = dan * r[j]  # d(hn) = dan r
        dx_r[j] = dan * hn[j] * (r[j] * (one - r[j]))  # dr = dan hn ; sigma'


@rowjit
def _gru_z_backward_row(dh, z, n, h_prev, dx_z, dh_prev):
    one = dh.dtype.type(1.0)
    for j in range(dh.shape[0]):
        dx_z[j] = dh[j] * (h_prev[j] - n[j]) * (z[j] * (one - z[j]))  # dh/dz = h_prev - n ; sigma'
        dh_prev[j] = dh[j] * z[j]  # dh/dh_prev (direct path) = z


@rowjit
def _copy_row(src, dst):
    for j in range(dst.shape[0]):
        dst[j] = src[j]


@stable_jit
def gru_step_backward(d_new, gates, cache, prev, new, p, d_xw, d_hw, d_prev, dp):
    """dh -> d_xw, d_hw, and the direct dh_prev = z dh into d_prev[0]."""
    dh, hn, h_prev, dh_prev = d_new[0], cache[0], prev[0], d_prev[0]
    H = dh.shape[1]
    for b in range(dh.shape[0]):
        g, dx, dw = gates[b], d_xw[b], d_hw[b]
        r, z, n = g[:H], g[H : 2 * H], g[2 * H :]
        _gru_n_backward_row(dh[b], r, z, n, hn[b], dx[:H], dx[2 * H :], dw[2 * H :])
        _gru_z_backward_row(dh[b], z, n, h_prev[b], dx[H : 2 * H], dh_prev[b])
        _copy_row(dx[: 2 * H], dw[: 2 * H])  # r and z enter as xw + hw: d_hw = d_xw on those blocks


class GRUCell(Cell):
    """GRU cell in PyTorch's formulation.

    r = sigma(xr + hr)   z = sigma(xz + hz)   n = tanh(xn + r * hn)
    h = (1 - z) * n + z * h_prev
    where xw = [xr, xz, xn] and hw = [hr, hz, hn] (hn includes b_hn).
    """

    n_gates = 3
    gate_names = ("r", "z", "n")
    sigmoid_gates = ("r", "z")
    forget_gate = 1  # z keeps h_prev, the GRU's forget-like gate
    cache_fields = ("hn",)
    dhw_is_dxw = False  # n = tanh(xn + r * hn): d_hn != d_xn
    direct_h = True  # h = ... + z * h_prev bypasses W_hh
    step, step_backward = staticmethod(gru_step), staticmethod(gru_step_backward)
