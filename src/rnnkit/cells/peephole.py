"""Peephole LSTM cell (Gers & Schmidhuber 2000): the gates also see the cell state.

    a = xw + hw                                  (B, 4H), blocks i, f, g, o (PyTorch order)
    i = sigma(a_i + p_i * c_prev)    f = sigma(a_f + p_f * c_prev)    g = tanh(a_g)
    c = f * c_prev + i * g
    o = sigma(a_o + p_o * c)                     (o sees the new c)
    h = o * tanh(c)

The peephole weights are one own parameter ``weight_p`` of shape (3H,), laid out as the ONNX
``LSTM`` operator's ``P`` for one direction: [p_i, p_o, p_f], each (H,) (diagonal peepholes).

Backward (per row; caches: tanh_c; gates i, f, g, o are kept; see docs/bptt.md):

    dc_t = dc + dh * o * (1 - tanh_c^2) + da_o * p_o,   da_o = dh * tanh_c * o (1 - o)
    da_i = dc_t * g * i (1 - i)       da_f = dc_t * c_prev * f (1 - f)
    da_g = dc_t * i * (1 - g^2)
    dc_prev = dc_t * f + da_i * p_i + da_f * p_f
    dp_i += da_i * c_prev   dp_f += da_f * c_prev   dp_o += da_o * c   (summed over rows and steps)
"""
from __future__ import annotations

import numpy as np

from rnnkit.cells.lstm import LSTMCell
from rnnkit.kernels import rowjit, sigmoid_, stable_jit, tanh_


@rowjit
def _peephole_row(i, f, g, o, hi, hf, hg, ho, p_i, p_o, p_f, c_prev, c, tanh_c, h):
    for j in range(h.shape[0]):
        i[j] = sigmoid_(i[j] + hi[j] + p_i[j] * c_prev[j])
        f[j] = sigmoid_(f[j] + hf[j] + p_f[j] * c_prev[j])
        g[j] = tanh_(g[j] + hg[j])
        c[j] = f[j] * c_prev[j] + i[j] * g[j]
        o[j] = sigmoid_(o[j] + ho[j] + p_o[j] * c[j])
        tanh_c[j] = tanh_(c[j])
        h[j] = o[j] * tanh_c[j]


@stable_jit
def peephole_step(xw, hw, p, prev, new, cache):
    """The LSTM step with i, f seeing c_prev and o seeing c (p[0] = [p_i, p_o, p_f])."""
    c_prev, h, c, tanh_c, P = prev[1], new[0], new[1], cache[0], p[0]
    H = h.shape[1]
    for b in range(h.shape[0]):
        a, w = xw[b], hw[b]
        _peephole_row(a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :], w[:H], w[H : 2 * H], w[2 * H : 3 * H],
                      w[3 * H :], P[:H], P[H : 2 * H], P[2 * H :], c_prev[b], c[b], tanh_c[b], h[b])


@rowjit
def _peephole_backward_row(dh, dc, i, f, g, o, tanh_c, c_prev, c, p_i, p_o, p_f, di, df, dg, do, dc_prev,
                           dp_i, dp_o, dp_f):
    one = dh.dtype.type(1.0)
    for j in range(dh.shape[0]):
        tc = tanh_c[j]
        do[j] = dh[j] * tc * (o[j] * (one - o[j]))  # h = o tanh(c)
        dc_t = dh[j] * o[j] * (one - tc * tc) + dc[j] + do[j] * p_o[j]  # o = sigma(a_o + p_o c)
        di[j] = dc_t * g[j] * (i[j] * (one - i[j]))
        df[j] = dc_t * c_prev[j] * (f[j] * (one - f[j]))
        dg[j] = dc_t * i[j] * (one - g[j] * g[j])
        dc_prev[j] = dc_t * f[j] + di[j] * p_i[j] + df[j] * p_f[j]
        dp_i[j] += di[j] * c_prev[j]
        dp_o[j] += do[j] * c[j]
        dp_f[j] += df[j] * c_prev[j]


@stable_jit
def peephole_step_backward(d_new, gates, cache, prev, new, p, d_xw, d_hw, d_prev, dp):
    """(dh, dc) -> da into d_xw (= d_hw), dc_prev into d_prev[1], dP added into dp[0]."""
    dh, dc, c_prev, c, tanh_c, dc_prev, P, dP = d_new[0], d_new[1], prev[1], new[1], cache[0], d_prev[1], p[0], dp[0]
    H = dh.shape[1]
    for b in range(dh.shape[0]):
        g, d = gates[b], d_xw[b]
        _peephole_backward_row(dh[b], dc[b], g[:H], g[H : 2 * H], g[2 * H : 3 * H], g[3 * H :], tanh_c[b],
                               c_prev[b], c[b], P[:H], P[H : 2 * H], P[2 * H :], d[:H], d[H : 2 * H],
                               d[2 * H : 3 * H], d[3 * H :], dc_prev[b], dP[:H], dP[H : 2 * H], dP[2 * H :])


class PeepholeLSTMCell(LSTMCell):
    """LSTM with diagonal peepholes (see the module docstring); own parameter ``weight_p`` (3H,)."""

    step, step_backward = staticmethod(peephole_step), staticmethod(peephole_step_backward)

    def own_params(self, input_size: int, hidden_size: int) -> dict:
        return {"weight_p": (3 * hidden_size,)}

    def dc_from_h(self, dh, gates, cache: dict, p: tuple):
        """o = sigma(a_o + p_o c) sees c too: dL/dc = dh o (1 - tanh_c^2) + dh tanh_c o (1 - o) p_o."""
        H = gates.shape[-1] // 4
        o, tanh_c, p_o = gates[..., 3 * H :], cache["tanh_c"], p[0][H : 2 * H]
        return super().dc_from_h(dh, gates, cache, p) + dh * tanh_c * o * (1.0 - o) * p_o

    def init_own(self, name: str, shape: tuple, rng: np.random.Generator, hidden_size: int) -> np.ndarray:
        """U(-1/sqrt(H), 1/sqrt(H)), as the other weights (ONNX's default P is 0)."""
        k = 1.0 / np.sqrt(hidden_size)
        return rng.uniform(-k, k, shape)
