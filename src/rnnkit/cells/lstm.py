"""The LSTM cell (gates i, f, g, o; cell state c).

Protocol: :mod:`rnnkit.cells.protocol`; derivation: docs/bptt.md."""
from __future__ import annotations

import numpy as np

from rnnkit.kernels import stable_jit, rowjit, sigmoid_of_sum, tanh_of, tanh_of_sum, wide_step
from rnnkit.cells.protocol import Cell, HState, LSTMState

@rowjit
def _lstm_cell_row(i, f, g, c_prev, c):
    for j in range(c.shape[0]):
        c[j] = f[j] * c_prev[j] + i[j] * g[j]


@rowjit
def _lstm_hidden_row(o, c, tanh_c, h, wide):
    tanh_of(c, None, tanh_c, wide)
    for j in range(h.shape[0]):
        h[j] = o[j] * tanh_c[j]


@stable_jit
def lstm_step(xw, hw, p, prev, new, cache):
    """i, f, g, o = sigma, sigma, tanh, sigma of xw + hw; c = f c_prev + i g; h = o tanh(c)."""
    c_prev, h, c, tanh_c = prev[1], new[0], new[1], cache[0]
    H, wide = h.shape[1], wide_step(h)
    for b in range(h.shape[0]):  # loops over few arrays each: LLVM vectorises them
        a, w = xw[b], hw[b]
        i, f, g, o = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
        sigmoid_of_sum(a[: 2 * H], w[: 2 * H], a[: 2 * H], wide)  # i, f = sigma(a_i), sigma(a_f)
        tanh_of_sum(g, w[2 * H : 3 * H], g, wide)  # g = tanh(a_g)
        sigmoid_of_sum(o, w[3 * H :], o, wide)  # o = sigma(a_o)
        _lstm_cell_row(i, f, g, c_prev[b], c[b])  # c = f * c_prev + i * g
        _lstm_hidden_row(o, c[b], tanh_c[b], h[b], wide)  # h = o * tanh(c)


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
    unit_local = True  # a unit's step reads only its own gate columns and state (engine/unit_shards)
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


