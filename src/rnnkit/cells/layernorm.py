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

from rnnkit.cells.lstm import LSTMCell
from rnnkit.kernels import rowjit, sigmoid_, stable_jit, tanh_

EPS = 1e-5
"""LayerNorm's epsilon (torch.nn.LayerNorm's default)."""

OWN = ("layernorm_i_weight", "layernorm_i_bias", "layernorm_h_weight", "layernorm_h_bias",
       "layernorm_c_weight", "layernorm_c_bias")
"""The cell's own parameters, in the order of the ``p`` / ``dp`` tuples."""


@rowjit
def _sum(v, mu):
    """sum_j (v_j - mu) and sum_j (v_j - mu)^2, in four interleaved partial sums each (independent
    chains: the row's reductions are the cell's critical path; the order is fixed, so results are
    deterministic)."""
    zero = v.dtype.type(0.0)
    s0 = s1 = s2 = s3 = q0 = q1 = q2 = q3 = zero
    n, j = v.shape[0], 0
    while j + 4 <= n:
        e0, e1, e2, e3 = v[j] - mu, v[j + 1] - mu, v[j + 2] - mu, v[j + 3] - mu
        s0, s1, s2, s3 = s0 + e0, s1 + e1, s2 + e2, s3 + e3
        q0, q1, q2, q3 = q0 + e0 * e0, q1 + e1 * e1, q2 + e2 * e2, q3 + e3 * e3
        j += 4
    while j < n:
        e0 = v[j] - mu
        s0, q0 = s0 + e0, q0 + e0 * e0
        j += 1
    return (s0 + s1) + (s2 + s3), (q0 + q1) + (q2 + q3)


@rowjit
def _dots(a, g, vhat):
    """(sum_j a_j g_j, sum_j a_j g_j vhat_j), four partial sums each (see :func:`_sum`)."""
    zero = a.dtype.type(0.0)
    s0 = s1 = s2 = s3 = q0 = q1 = q2 = q3 = zero
    n, j = a.shape[0], 0
    while j + 4 <= n:
        e0, e1, e2, e3 = a[j] * g[j], a[j + 1] * g[j + 1], a[j + 2] * g[j + 2], a[j + 3] * g[j + 3]
        s0, s1, s2, s3 = s0 + e0, s1 + e1, s2 + e2, s3 + e3
        q0, q1 = q0 + e0 * vhat[j], q1 + e1 * vhat[j + 1]
        q2, q3 = q2 + e2 * vhat[j + 2], q3 + e3 * vhat[j + 3]
        j += 4
    while j < n:
        e0 = a[j] * g[j]
        s0, q0 = s0 + e0, q0 + e0 * vhat[j]
        j += 1
    return (s0 + s1) + (s2 + s3), (q0 + q1) + (q2 + q3)


@rowjit
def _normalize(v, vhat):
    """vhat = (v - mean(v)) * rstd; returns rstd = 1 / sqrt(var(v) + eps) (biased variance)."""
    nf = v.dtype.type(v.shape[0])  # typed like v: no float64 promotion in float32
    mu = _sum(v, v.dtype.type(0.0))[0] / nf
    rstd = v.dtype.type(1.0) / np.sqrt(_sum(v, mu)[1] / nf + v.dtype.type(EPS))
    for j in range(v.shape[0]):
        vhat[j] = (v[j] - mu) * rstd
    return rstd


@rowjit
def _affine_sum(a, xhat, gi, bi, hhat, gh, bh):
    """a = (xhat gi + bi) + (hhat gh + bh): the gate pre-activations."""
    for j in range(a.shape[0]):
        a[j] = (xhat[j] * gi[j] + bi[j]) + (hhat[j] * gh[j] + bh[j])


@rowjit
def _sigmoid_inplace(a):
    for j in range(a.shape[0]):
        a[j] = sigmoid_(a[j])


@rowjit
def _tanh_inplace(a):
    for j in range(a.shape[0]):
        a[j] = tanh_(a[j])


@rowjit
def _cell_row(i, f, g, c_prev, u):
    for j in range(u.shape[0]):
        u[j] = f[j] * c_prev[j] + i[j] * g[j]


@rowjit
def _output_row(chat, gc, bc, o, c, tanh_c, h):
    for j in range(h.shape[0]):
        c[j] = chat[j] * gc[j] + bc[j]
        tanh_c[j] = tanh_(c[j])
        h[j] = o[j] * tanh_c[j]


@rowjit
def _ln_lstm_row(a, w, gi, bi, gh, bh, gc, bc, c_prev, xhat, hhat, chat, c, tanh_c, h, rstd):
    H = h.shape[0]
    rstd[0] = _normalize(a, xhat)
    rstd[1] = _normalize(w, hhat)
    _affine_sum(a, xhat, gi, bi, hhat, gh, bh)  # a: the pre-activation, then the activated gates
    i, f, g, o = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
    _sigmoid_inplace(a[: 2 * H])
    _tanh_inplace(g)
    _sigmoid_inplace(o)
    _cell_row(i, f, g, c_prev, c)  # u, normalised next
    rstd[2] = _normalize(c, chat)
    _output_row(chat, gc, bc, o, c, tanh_c, h)


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
def _through_h_row(dh, dc, o, tanh_c, chat, da_o, dcn, dgc, dbc):
    """da_o = dh tanh_c o (1 - o); dcn = dL/dc = dc + dh o (1 - tanh_c^2); LN_c's parameter gradients."""
    one = dh.dtype.type(1.0)
    for j in range(dh.shape[0]):
        da_o[j] = dh[j] * tanh_c[j] * (o[j] * (one - o[j]))
        dcn[j] = dc[j] + dh[j] * o[j] * (one - tanh_c[j] * tanh_c[j])
        dgc[j] += dcn[j] * chat[j]
        dbc[j] += dcn[j]


@rowjit
def _gates_backward_row(dcn, gc, chat, r, m1, m2, i, f, g, c_prev, di, df, dg, dc_prev):
    """du = LN_c backward of dcn; then da_i, da_f, da_g and dc_prev = du f (dc_prev may be dcn)."""
    one = dcn.dtype.type(1.0)
    for j in range(dcn.shape[0]):
        du = r * (dcn[j] * gc[j] - m1 - chat[j] * m2)
        di[j] = du * g[j] * (i[j] * (one - i[j]))
        df[j] = du * c_prev[j] * (f[j] * (one - f[j]))
        dg[j] = du * i[j] * (one - g[j] * g[j])
        dc_prev[j] = du * f[j]


@rowjit
def _ln_params_row(da, xhat, hhat, dgi, dbi, dgh, dbh):
    for j in range(da.shape[0]):
        dbi[j] += da[j]
        dgi[j] += da[j] * xhat[j]
        dbh[j] += da[j]
        dgh[j] += da[j] * hhat[j]


@rowjit
def _ln_inputs_row(da, gi, xhat, rx, u1, u2, gh, hhat, rh, v1, v2, d_xw):
    """da (in d_hw's row) -> d_xw through LN_i, then d_hw in place through LN_h."""
    for j in range(da.shape[0]):
        d_xw[j] = rx * (da[j] * gi[j] - u1 - xhat[j] * u2)
        da[j] = rh * (da[j] * gh[j] - v1 - hhat[j] * v2)


@rowjit
def _ln_lstm_backward_row(dh, dc, gates, xhat, hhat, chat, tanh_c, rstd, c_prev, gi, gh, gc,
                          d_xw, da, dc_prev, dgi, dbi, dgh, dbh, dgc, dbc):
    H = dh.shape[0]
    Hf, Gf = dh.dtype.type(H), dh.dtype.type(4 * H)
    i, f, g, o = gates[:H], gates[H : 2 * H], gates[2 * H : 3 * H], gates[3 * H :]
    _through_h_row(dh, dc, o, tanh_c, chat, da[3 * H :], dc_prev, dgc, dbc)  # dcn into dc_prev's row
    s1, s2 = _dots(dc_prev, gc, chat)  # sums of dchat = dcn gc and of dchat chat
    _gates_backward_row(dc_prev, gc, chat, rstd[2], s1 / Hf, s2 / Hf, i, f, g, c_prev, da[:H], da[H : 2 * H],
                        da[2 * H : 3 * H], dc_prev)
    _ln_params_row(da, xhat, hhat, dgi, dbi, dgh, dbh)
    u1, u2 = _dots(da, gi, xhat)
    v1, v2 = _dots(da, gh, hhat)
    _ln_inputs_row(da, gi, xhat, rstd[0], u1 / Gf, u2 / Gf, gh, hhat, rstd[1], v1 / Gf, v2 / Gf, d_xw)


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
    """LSTM with LayerNorm on both projections and on c (see the module docstring); ``dc_from_h`` is
    the LSTM's (h = o tanh(c) of the normalised c, the state)."""

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
