"""The GRU cell (gates r, z, n), PyTorch's linear_before_reset=1 form.

Protocol: :mod:`rnnkit.cells.protocol`; derivation: docs/bptt.md."""
from __future__ import annotations

import numpy as np

from rnnkit.kernels import stable_jit, rowjit, sigmoid_of_sum, tanh_of, wide_step
from rnnkit.cells.protocol import Cell, HState, LSTMState

@rowjit
def _gru_candidate_row(r, n, hn_w, hn, wide):
    for j in range(n.shape[0]):
        hn[j] = hn_w[j]  # kept: W_hn h_prev + b_hn, the part r multiplies
        n[j] = n[j] + r[j] * hn_w[j]
    tanh_of(n, None, n, wide)


@rowjit
def _gru_hidden_row(z, n, h_prev, h):
    for j in range(h.shape[0]):
        h[j] = n[j] + z[j] * (h_prev[j] - n[j])  # (1 - z) n + z h_prev


@stable_jit
def gru_step(xw, hw, p, prev, new, cache):
    """r, z = sigma(x_rz + h_rz); n = tanh(xn + r hn); h = (1 - z) n + z h_prev."""
    h_prev, h, hn = prev[0], new[0], cache[0]
    H, wide = h.shape[1], wide_step(h)
    for b in range(h.shape[0]):  # loops over few arrays each: LLVM vectorises them
        a, w = xw[b], hw[b]
        sigmoid_of_sum(a[: 2 * H], w[: 2 * H], a[: 2 * H], wide)  # r, z = sigma(xr + hr), sigma(xz + hz)
        _gru_candidate_row(a[:H], a[2 * H :], w[2 * H :], hn[b], wide)  # n = tanh(xn + r hn)
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
    unit_local = True  # a unit's step reads only its own gate columns and state (engine/unit_shards)
    gate_names = ("r", "z", "n")
    sigmoid_gates = ("r", "z")
    forget_gate = 1  # z keeps h_prev, the GRU's forget-like gate
    cache_fields = ("hn",)
    dhw_is_dxw = False  # n = tanh(xn + r * hn): d_hn != d_xn
    direct_h = True  # h = ... + z * h_prev bypasses W_hh
    step, step_backward = staticmethod(gru_step), staticmethod(gru_step_backward)
