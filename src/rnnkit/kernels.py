"""Numba-compiled elementwise work of one time step, for the cells in :mod:`rnnkit.cells`.

Why: a time step of an LSTM is ~20 small elementwise operations; as separate NumPy calls
each costs ~1 µs of call overhead, which dominates small shapes.  Each kernel here fuses
a run of them into one compiled loop over (b, j) that reads like the equations.
The transcendentals stay in NumPy (``np.tanh`` over whole blocks is SIMD-vectorised;
numba's scalar tanh/exp is not), using sigma(a) = (1 + tanh(a/2)) / 2: the ``*_preact``
kernels halve the sigmoid pre-activations, ``np.tanh`` runs over the block, and the next
kernel finishes sigma = half + half * tanh(a/2).  Halving is exact in binary floating point.

The step kernels' arrays are 2-D (B, ·) (the ``_row`` helpers get 1-D rows of them), C-contiguous, float32 or float64 (one compiled version per
dtype, cached on disk by ``cache=True``).  Gate blocks are PyTorch's: LSTM (i, f, g, o),
GRU (r, z, n), each H columns wide.  Backward kernels form every derivative from cached
*outputs*: sigma' = s(1 - s), tanh' = 1 - t^2.  No fastmath: results are IEEE-exact in the
order written, so float64 matches PyTorch to 1e-10.  Constants are typed like the
arrays (``x.dtype.type(0.5)``): a float64 literal would promote every float32 product.
"""
from __future__ import annotations

import numpy as np
from numba import njit

jit = njit(cache=True, nogil=True)
rowjit = njit(cache=True, nogil=True, inline="always")
"""For the per-row loops: the row kernels work on 1-D views of one batch row (gate blocks as
separate arrays), which LLVM vectorises; the same loop over 2-D (b, j) indices stays scalar
(measured 2-3x slower for the LSTM backward at B=16..32, H=64..128)."""


# ----------------------------------------------------------------------------- LSTM
@jit
def lstm_preact(a, hw):
    """a <- a + hw, halved on the sigmoid blocks i, f, o (a holds xw on entry)."""
    B, G = a.shape
    half = a.dtype.type(0.5)
    H = G // 4
    for b in range(B):
        for k in range(2 * H):  # i, f
            a[b, k] = half * (a[b, k] + hw[b, k])
        for k in range(2 * H, 3 * H):  # g
            a[b, k] = a[b, k] + hw[b, k]
        for k in range(3 * H, G):  # o
            a[b, k] = half * (a[b, k] + hw[b, k])


@jit
def lstm_cell_state(gates, c_prev, c):
    """gates: tanh(a/2) for i, f, o and tanh(a_g) for g on entry -> activated i, f, g, o.

    c = f * c_prev + i * g
    """
    H = c.shape[1]
    for b in range(c.shape[0]):  # per row on 1-D gate views: lets LLVM vectorise the loop
        row = gates[b]
        _lstm_cell_state_row(row[:H], row[H : 2 * H], row[2 * H : 3 * H], row[3 * H :], c_prev[b], c[b])


@rowjit
def _lstm_cell_state_row(i, f, g, o, c_prev, c):
    half = i.dtype.type(0.5)
    for j in range(c.shape[0]):
        i[j] = half + half * i[j]  # sigma(a) = (1 + tanh(a/2)) / 2
        f[j] = half + half * f[j]
        o[j] = half + half * o[j]
        c[j] = f[j] * c_prev[j] + i[j] * g[j]


@jit
def lstm_backward(dh, dc, gates, tanh_c, c_prev, da, dc_prev):
    """dh: dL/dh_t (all paths), dc: dL/dc_t from step t+1 -> da = dL/d(a_i, a_f, a_g, a_o), dc_prev = dL/dc_{t-1} via c."""
    H = dh.shape[1]
    for b in range(dh.shape[0]):  # per row on 1-D gate views: lets LLVM vectorise the loop
        g, d = gates[b], da[b]
        _lstm_backward_row(dh[b], dc[b], g[:H], g[H : 2 * H], g[2 * H : 3 * H], g[3 * H :], tanh_c[b], c_prev[b],
                           d[:H], d[H : 2 * H], d[2 * H : 3 * H], d[3 * H :], dc_prev[b])


@rowjit
def _lstm_backward_row(dh, dc, i, f, g, o, tanh_c, c_prev, di, df, dg, do, dc_prev):
    one = dh.dtype.type(1.0)
    for j in range(dh.shape[0]):
        tc = tanh_c[j]
        dc_t = dh[j] * o[j] * (one - tc * tc) + dc[j]  # h = o tanh(c): dh/dc = o (1 - tanh(c)^2)
        di[j] = dc_t * g[j] * (i[j] * (one - i[j]))  # di = dc g ; sigma' = i (1 - i)
        df[j] = dc_t * c_prev[j] * (f[j] * (one - f[j]))  # df = dc c_prev
        dg[j] = dc_t * i[j] * (one - g[j] * g[j])  # dg = dc i ; tanh' = 1 - g^2
        do[j] = dh[j] * tc * (o[j] * (one - o[j]))  # do = dh tanh(c)
        dc_prev[j] = dc_t * f[j]  # dc/dc_prev = f


# ----------------------------------------------------------------------------- GRU
@jit
def gru_preact(a, hw):
    """a[:, r|z] <- (xw + hw) / 2 on the sigmoid blocks r, z (a holds xw on entry)."""
    B, G = a.shape
    half = a.dtype.type(0.5)
    H = G // 3
    for b in range(B):
        for k in range(2 * H):
            a[b, k] = half * (a[b, k] + hw[b, k])


@jit
def gru_candidate(gates, hw, hn):
    """gates: tanh(a/2) for r, z on entry -> r, z; n-block <- xn + r * hn (pre-activation); hn kept."""
    H = hn.shape[1]
    for b in range(hn.shape[0]):  # per row on 1-D gate views: lets LLVM vectorise the loop
        g = gates[b]
        _gru_candidate_row(g[:H], g[H : 2 * H], g[2 * H :], hw[b, 2 * H :], hn[b])


@rowjit
def _gru_candidate_row(r, z, n, hw_n, hn):
    half = r.dtype.type(0.5)
    for j in range(r.shape[0]):
        r[j] = half + half * r[j]  # sigma(a) = (1 + tanh(a/2)) / 2
        z[j] = half + half * z[j]
        hn[j] = hw_n[j]
        n[j] = n[j] + r[j] * hn[j]


@jit
def gru_hidden(gates, h_prev, h):
    """h = (1 - z) * n + z * h_prev, written n + z * (h_prev - n)."""
    B, H = h.shape
    for b in range(B):
        for j in range(H):
            z = gates[b, H + j]
            n = gates[b, 2 * H + j]
            h[b, j] = n + z * (h_prev[b, j] - n)


@jit
def gru_backward(dh, gates, hn, h_prev, d_xw, d_hw, dh_prev):
    """dh = dL/dh_t -> d_xw, d_hw (dL/d of the two projections), dh_prev = direct part z * dh."""
    H = dh.shape[1]
    for b in range(dh.shape[0]):  # per row on 1-D gate views: lets LLVM vectorise the loop
        g, dx, dw = gates[b], d_xw[b], d_hw[b]
        _gru_backward_row(dh[b], g[:H], g[H : 2 * H], g[2 * H :], hn[b], h_prev[b],
                          dx[:H], dx[H : 2 * H], dx[2 * H :], dw[:H], dw[H : 2 * H], dw[2 * H :], dh_prev[b])


@rowjit
def _gru_backward_row(dh, r, z, n, hn, h_prev, dx_r, dx_z, dx_n, dw_r, dw_z, dw_n, dh_prev):
    one = dh.dtype.type(1.0)
    for j in range(dh.shape[0]):
        dan = dh[j] * (one - z[j]) * (one - n[j] * n[j])  # dh/dn = 1 - z ; tanh' = 1 - n^2
        dx_n[j] = dan
        dw_n[j] = dan * r[j]  # d(hn) = dan r
        dr = dan * hn[j] * (r[j] * (one - r[j]))  # dr = dan hn ; sigma'
        dx_r[j] = dr
        dw_r[j] = dr
        dz = dh[j] * (h_prev[j] - n[j]) * (z[j] * (one - z[j]))  # dh/dz = h_prev - n ; sigma'
        dx_z[j] = dz
        dw_z[j] = dz
        dh_prev[j] = dh[j] * z[j]  # dh/dh_prev (direct path) = z


# ----------------------------------------------------------------------------- Elman RNN
@jit
def rnn_backward(dh, h, da, relu):
    """da = dh * nonlinearity'(a), from h: tanh' = 1 - h^2, relu' = [h > 0]."""
    B, H = dh.shape
    one = dh.dtype.type(1.0)
    zero = dh.dtype.type(0.0)
    for b in range(B):
        for j in range(H):
            if relu:
                da[b, j] = dh[b, j] if h[b, j] > zero else zero
            else:
                da[b, j] = dh[b, j] * (one - h[b, j] * h[b, j])


# ----------------------------------------------------------------------------- projections
@jit
def add_bias(a, b):
    """a[r, k] += b[k] for every row r of a (R, G): a bias added to a projection in place.

    One compiled loop: NumPy's broadcasting ``a += b`` costs ~0.6 µs of call overhead,
    which dominates a streaming step (R = B = 1).
    """
    R, G = a.shape
    for r in range(R):
        for k in range(G):
            a[r, k] += b[k]


@jit
def add_biases(a, b1, b2):
    """a[r, k] = (a[r, k] + b1[k]) + b2[k]: two biases in one call, rounded as two separate adds."""
    R, G = a.shape
    for r in range(R):
        for k in range(G):
            a[r, k] = (a[r, k] + b1[k]) + b2[k]


# ----------------------------------------------------------------------------- input checks
@jit
def all_finite(a):
    """True if no element of ``a`` (any shape, float) is NaN or +-inf; stops at the first."""
    for v in a.flat:
        if not np.isfinite(v):
            return False
    return True
