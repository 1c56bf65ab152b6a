"""Layer-normalised LSTM cell (Ba, Kiros & Hinton 2016), as PyTorch's
``benchmarks/fastrnns/custom_lstms.py`` ``LayerNormLSTMCell``:

    xhat = LN(xw),  hhat = LN(hw)                 LN over all 4H gate rows of one batch row
    a = (xhat * gamma_i + beta_i) + (hhat * gamma_h + beta_h)       (B, 4H), blocks i, f, g, o
    i, f, g, o = sigma(a_i), sigma(a_f), tanh(a_g), sigma(a_o)
    u = f * c_prev + i * g
    c = chat * gamma_c + beta_c,   chat = LN(u)  (over H)    the state carries the normalised c
    h = o * tanh(c)

with LN(v) = (v - mean(v)) * rstd, rstd = 1 / sqrt(var(v) + eps), var the biased variance,
eps = 1e-5 (torch.nn.LayerNorm's).  xw = x W_ih^T (+ b_ih) and hw = h_prev W_hh^T (+ b_hh)
come from the loop as for every cell; the reference has no projection biases
(``rnnkit.LayerNormLSTM`` defaults to ``bias=False``: the betas are the biases).

Own parameters (per layer and direction): ``layernorm_i_weight``/``_bias`` (4H,) = gamma_i,
beta_i; ``layernorm_h_weight``/``_bias`` (4H,); ``layernorm_c_weight``/``_bias`` (H,); init
1 and 0 (torch's).  Caches: xhat, hhat (4H), chat, tanh_c (H) and the three rstd per row.

Backward (per row; da is formed in d_hw's row, then both LN backwards; see docs/bptt.md):

    da_o = dh * tanh_c * o (1 - o)
    dc_n = dc + dh * o * (1 - tanh_c^2)                     dL/dc (the normalised c)
    dgamma_c += dc_n * chat ; dbeta_c += dc_n
    du = rstd_c * (dchat - mean(dchat) - chat * mean(dchat * chat)),  dchat = dc_n * gamma_c
    da_i = du * g * i (1 - i) ; da_f = du * c_prev * f (1 - f) ; da_g = du * i * (1 - g^2)
    dc_prev = du * f
    dgamma_i += da * xhat ; dbeta_i += da ; dgamma_h += da * hhat ; dbeta_h += da
    d_xw = rstd_x * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),  dxhat = da * gamma_i
    d_hw = rstd_h * (dhhat - mean(dhhat) - hhat * mean(dhhat * hhat)),  dhhat = da * gamma_h
"""
from __future__ import annotations

import numpy as np

from .cells import LSTMCell
from .kernels import rowjit, sigmoid_, stable_jit, tanh_

EPS = 1e-5
"""LayerNorm's epsilon (torch.nn.LayerNorm's default)."""

OWN = ("layernorm_i_weight", "layernorm_i_bias", "layernorm_h_weight", "layernorm_h_bias",
       "layernorm_c_weight", "layernorm_c_bias")
"""The cell's own parameters, in the order of the ``p`` / ``dp`` tuples."""


@rowjit
def _normalize(v, vhat):
    """vhat = (v - mean(v)) * rstd; returns rstd = 1 / sqrt(var(v) + eps) (biased variance)."""
    n, nf = v.shape[0], v.dtype.type(v.shape[0])  # typed like v: no float64 promotion in float32
    zero = v.dtype.type(0.0)
    s = zero
    for j in range(n):
        s += v[j]
    mu = s / nf
    q = zero
    for j in range(n):
        e = v[j] - mu
        q += e * e
    rstd = v.dtype.type(1.0) / np.sqrt(q / nf + v.dtype.type(EPS))
    for j in range(n):
        vhat[j] = (v[j] - mu) * rstd
    return rstd


@rowjit
def _ln_lstm_row(a, w, gi, bi, gh, bh, gc, bc, c_prev, xhat, hhat, chat, c, tanh_c, h, rstd):
    H = h.shape[0]
    rstd[0] = _normalize(a, xhat)
    rstd[1] = _normalize(w, hhat)
    for j in range(4 * H):  # a becomes the pre-activation, then the activated gates
        a[j] = (xhat[j] * gi[j] + bi[j]) + (hhat[j] * gh[j] + bh[j])
    for j in range(H):
        i = sigmoid_(a[j])
        f = sigmoid_(a[H + j])
        g = tanh_(a[2 * H + j])
        a[j], a[H + j], a[2 * H + j] = i, f, g
        a[3 * H + j] = sigmoid_(a[3 * H + j])
        c[j] = f * c_prev[j] + i * g  # u, normalised below
    rstd[2] = _normalize(c, chat)
    for j in range(H):
        c[j] = chat[j] * gc[j] + bc[j]
        tanh_c[j] = tanh_(c[j])
        h[j] = a[3 * H + j] * tanh_c[j]


@stable_jit
def layernorm_lstm_step(xw, hw, p, prev, new, cache):
    """LN on xw and hw, the LSTM gates, LN on c (see the module docstring)."""
    gi, bi, gh, bh, gc, bc = p
    c_prev, h, c = prev[1], new[0], new[1]
    xhat, hhat, chat, tanh_c, rstd = cache
    for b in range(h.shape[0]):
        _ln_lstm_row(xw[b], hw[b], gi, bi, gh, bh, gc, bc, c_prev[b], xhat[b], hhat[b], chat[b], c[b], tanh_c[b],
                     h[b], rstd[b])


@rowjit
def _ln_lstm_backward_row(dh, dc, gates, xhat, hhat, chat, tanh_c, rstd, c_prev, gi, gh, gc,
                          d_xw, da, dc_prev, dgi, dbi, dgh, dbh, dgc, dbc):
    H = dh.shape[0]
    G = 4 * H
    one, zero = dh.dtype.type(1.0), dh.dtype.type(0.0)
    Hf, Gf = dh.dtype.type(H), dh.dtype.type(G)
    s1, s2 = zero, zero
    for j in range(H):  # through h = o tanh(c) to da_o and dc_n = dL/dc; LN_c's parameters
        o, tc = gates[3 * H + j], tanh_c[j]
        da[3 * H + j] = dh[j] * tc * (o * (one - o))
        dcn = dc[j] + dh[j] * o * (one - tc * tc)
        dgc[j] += dcn * chat[j]
        dbc[j] += dcn
        dchat = dcn * gc[j]
        s1 += dchat
        s2 += dchat * chat[j]
        dc_prev[j] = dchat  # scratch until the next loop
    m1, m2, r = s1 / Hf, s2 / Hf, rstd[2]
    for j in range(H):  # LN_c backward to du, then the gates
        du = r * (dc_prev[j] - m1 - chat[j] * m2)
        i, f, g = gates[j], gates[H + j], gates[2 * H + j]
        da[j] = du * g * (i * (one - i))
        da[H + j] = du * c_prev[j] * (f * (one - f))
        da[2 * H + j] = du * i * (one - g * g)
        dc_prev[j] = du * f
    u1, u2, v1, v2 = zero, zero, zero, zero
    for j in range(G):  # the two input LNs' parameters and the sums of their backward
        dbi[j] += da[j]
        dgi[j] += da[j] * xhat[j]
        dbh[j] += da[j]
        dgh[j] += da[j] * hhat[j]
        dx, dw = da[j] * gi[j], da[j] * gh[j]
        u1 += dx
        u2 += dx * xhat[j]
        v1 += dw
        v2 += dw * hhat[j]
    u1, u2, v1, v2 = u1 / Gf, u2 / Gf, v1 / Gf, v2 / Gf
    rx, rh = rstd[0], rstd[1]
    for j in range(G):  # da (in d_hw's row) -> d_xw, then d_hw in place
        d_xw[j] = rx * (da[j] * gi[j] - u1 - xhat[j] * u2)
        da[j] = rh * (da[j] * gh[j] - v1 - hhat[j] * v2)


@stable_jit
def layernorm_lstm_step_backward(d_new, gates, cache, prev, new, p, d_xw, d_hw, d_prev, dp):
    """(dh, dc) -> d_xw, d_hw (through both LNs), dc_prev into d_prev[1], the LN gradients into dp."""
    gi, _, gh, _, gc, _ = p
    dgi, dbi, dgh, dbh, dgc, dbc = dp
    dh, dc, c_prev, dc_prev = d_new[0], d_new[1], prev[1], d_prev[1]
    xhat, hhat, chat, tanh_c, rstd = cache
    for b in range(dh.shape[0]):
        _ln_lstm_backward_row(dh[b], dc[b], gates[b], xhat[b], hhat[b], chat[b], tanh_c[b], rstd[b], c_prev[b],
                              gi, gh, gc, d_xw[b], d_hw[b], dc_prev[b], dgi, dbi, dgh, dbh, dgc, dbc)


class LayerNormLSTMCell(LSTMCell):
    """LSTM with LayerNorm on both projections and on c (see the module docstring)."""

    cache_fields = ("xhat", "hhat", "chat", "tanh_c", "rstd")
    dhw_is_dxw = False  # LN_i(xw) + LN_h(hw): separate gradients
    step, step_backward = staticmethod(layernorm_lstm_step), staticmethod(layernorm_lstm_step_backward)

    def own_params(self, input_size: int, hidden_size: int) -> dict:
        G = 4 * hidden_size
        return dict(zip(OWN, ((G,), (G,), (G,), (G,), (hidden_size,), (hidden_size,))))

    def init_own(self, name: str, shape: tuple, rng: np.random.Generator, hidden_size: int) -> np.ndarray:
        """LayerNorm's init: weight 1, bias 0."""
        return np.ones(shape) if name.endswith("_weight") else np.zeros(shape)

    def field_sizes(self, hidden_size: int) -> dict:
        G = 4 * hidden_size
        return dict(h=hidden_size, c=hidden_size, xhat=G, hhat=G, chat=hidden_size, tanh_c=hidden_size, rstd=3)
