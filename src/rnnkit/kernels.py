"""Numba-compiled elementwise work of one time step, for the cells in :mod:`rnnkit.cells`.

Why: a time step of an LSTM is ~20 small elementwise operations; as separate NumPy calls
each costs ~1 µs of call overhead, which dominates small shapes.  Each kernel here fuses
a run of them into one compiled loop over (b, j) that reads like the equations.
The transcendentals stay in NumPy (``np.tanh`` over whole blocks is SIMD-vectorised;
numba's scalar tanh/exp is not), using sigma(a) = (1 + tanh(a/2)) / 2: the ``*_preact``
kernels halve the sigmoid pre-activations, ``np.tanh`` runs over the block, and the next
kernel finishes sigma = half + half * tanh(a/2).  Halving is exact in binary floating point.

All arrays are 2-D (B, ·), C-contiguous, float32 or float64 (one compiled version per
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
    B, H = c.shape
    half = gates.dtype.type(0.5)
    for b in range(B):
        for j in range(H):
            i = half + half * gates[b, j]
            f = half + half * gates[b, H + j]
            g = gates[b, 2 * H + j]
            gates[b, j] = i
            gates[b, H + j] = f
            gates[b, 3 * H + j] = half + half * gates[b, 3 * H + j]  # o
            c[b, j] = f * c_prev[b, j] + i * g


@jit
def lstm_backward(dh, dc, gates, tanh_c, c_prev, da, dc_prev):
    """dh: dL/dh_t (all paths), dc: dL/dc_t from step t+1 -> da = dL/d(a_i, a_f, a_g, a_o), dc_prev = dL/dc_{t-1} via c."""
    B, H = dh.shape
    one = dh.dtype.type(1.0)
    for b in range(B):
        for j in range(H):
            i = gates[b, j]
            f = gates[b, H + j]
            g = gates[b, 2 * H + j]
            o = gates[b, 3 * H + j]
            tc = tanh_c[b, j]
            dc_t = dh[b, j] * o * (one - tc * tc) + dc[b, j]  # h = o tanh(c): dh/dc = o (1 - tanh(c)^2)
            da[b, j] = dc_t * g * (i * (one - i))  # di = dc g ; sigma' = i (1 - i)
            da[b, H + j] = dc_t * c_prev[b, j] * (f * (one - f))  # df = dc c_prev
            da[b, 2 * H + j] = dc_t * i * (one - g * g)  # dg = dc i ; tanh' = 1 - g^2
            da[b, 3 * H + j] = dh[b, j] * tc * (o * (one - o))  # do = dh tanh(c)
            dc_prev[b, j] = dc_t * f  # dc/dc_prev = f


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
    B, H = hn.shape
    half = gates.dtype.type(0.5)
    for b in range(B):
        for j in range(H):
            r = half + half * gates[b, j]
            gates[b, j] = r
            gates[b, H + j] = half + half * gates[b, H + j]  # z
            hn[b, j] = hw[b, 2 * H + j]
            gates[b, 2 * H + j] = gates[b, 2 * H + j] + r * hn[b, j]


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
    B, H = dh.shape
    one = dh.dtype.type(1.0)
    for b in range(B):
        for j in range(H):
            r = gates[b, j]
            z = gates[b, H + j]
            n = gates[b, 2 * H + j]
            dan = dh[b, j] * (one - z) * (one - n * n)  # dh/dn = 1 - z ; tanh' = 1 - n^2
            d_xw[b, 2 * H + j] = dan
            d_hw[b, 2 * H + j] = dan * r  # d(hn) = dan r
            dr = dan * hn[b, j] * (r * (one - r))  # dr = dan hn ; sigma'
            d_xw[b, j] = dr
            d_hw[b, j] = dr
            dz = dh[b, j] * (h_prev[b, j] - n) * (z * (one - z))  # dh/dz = h_prev - n ; sigma'
            d_xw[b, H + j] = dz
            d_hw[b, H + j] = dz
            dh_prev[b, j] = dh[b, j] * z  # dh/dh_prev (direct path) = z


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


# ----------------------------------------------------------------------------- input checks
@jit
def all_finite(a):
    """True if no element of ``a`` (any shape, float) is NaN or +-inf; stops at the first."""
    for v in a.flat:
        if not np.isfinite(v):
            return False
    return True
