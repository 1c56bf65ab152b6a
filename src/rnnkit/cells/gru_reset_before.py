"""GRU with the reset gate applied before the recurrent product: ONNX's ``linear_before_reset=0``
(its default), Keras's ``reset_after=False``, the GRU of Cho et al. 2014.

    r = sigma(xr + hr)          z = sigma(xz + hz)          hr, hz: the loop's hw = h_in W_{hr,hz}^T + b_{hr,hz}
    rh = r * h_in                                           (B, H), cached
    n = tanh(xn + rh W_hn^T + b_hn)
    h = (1 - z) * n + z * h_prev

h_in = h_prev, or h_prev * m under recurrent dropout (mask m, (B, H)).  PyTorch's GRU
(:class:`rnnkit.cells.gru.GRUCell`, ONNX ``linear_before_reset=1``) has r * (h W_hn^T + b_hn)
instead.  The parameters are the GRU's (weight_ih, weight_hh, bias_ih, bias_hh, r, z, n
blocks); the n block of W_hh multiplies r * h_in, which exists only inside the step, so the
cell runs that GEMM itself (``cell_hh_blocks = 1``, see :mod:`rnnkit.cells.protocol`): the loop
computes hw for the r and z blocks, and p = (W_hn (H, H), b_hn (H,) or size 0, m rows or size 0).

Backward (per step; gates r, z, n kept, cache rh; see docs/bptt.md section 7):

    da_n = dh (1 - z) (1 - n^2)            -> d_xw n block
    da_z = dh (h_prev - n) z (1 - z)       -> d_xw, d_hw z block
    d_rh = da_n W_hn                       (B, H)
    da_r = d_rh h_in r (1 - r)             -> d_xw, d_hw r block
    dh_prev (direct and through W_hn) = dh z + d_rh r m   (m = 1 without recurrent dropout);
    the loop adds (d_hw W_{hr,hz}) m, and after the time loop dW_hn = sum_t da_n^T rh and
    db_hn = sum_t da_n (d_xw's n block and the cache rh, one GEMM).
"""
from __future__ import annotations

import numpy as np

from rnnkit.cells.gru import GRUCell, _copy_row
from rnnkit.kernels import add_bias, rowjit, sigmoid_of_sum, stable_jit, tanh_of_sum, wide_step


@rowjit
def _reset_row(r, h_prev, m, masked, rh):
    """rh = r * h_in, h_in = h_prev * m (recurrent dropout, ``masked``) or h_prev."""
    for j in range(rh.shape[0]):
        rh[j] = r[j] * (h_prev[j] * m[j] if masked else h_prev[j])


@rowjit
def _update_row(z, n, h_prev, h, wide):
    """n = tanh(xn + hn) in place; h = (1 - z) n + z h_prev (h holds hn on entry)."""
    tanh_of_sum(n, h, n, wide)
    for j in range(h.shape[0]):
        h[j] = n[j] + z[j] * (h_prev[j] - n[j])


@stable_jit
def gru_reset_before_step(xw, hw, p, prev, new, cache):
    """r, z = sigma(x_rz + h_rz); rh = r h_in; n = tanh(xn + rh W_hn^T + b_hn); h = (1 - z) n + z h_prev."""
    W_n, b_n, m = p
    h_prev, h, rh = prev[0], new[0], cache[0]
    H, masked, wide = h.shape[1], m.shape[0] > 0, wide_step(h)
    for b in range(h.shape[0]):
        a = xw[b]
        sigmoid_of_sum(a[: 2 * H], hw[b], a[: 2 * H], wide)  # r, z
        _reset_row(a[:H], h_prev[b], m[b] if masked else h_prev[b], masked, rh[b])
    np.dot(rh, W_n.T, h)  # h holds hn = rh W_hn^T (+ b_hn) until the update
    if b_n.shape[0]:
        add_bias(h, b_n)
    for b in range(h.shape[0]):
        a = xw[b]
        _update_row(a[H : 2 * H], a[2 * H :], h_prev[b], h[b], wide)


@rowjit
def _z_n_backward_row(dh, z, n, h_prev, da_z, da_n):
    """dh/dz = h_prev - n, dh/dn = 1 - z; sigma' = z (1 - z), tanh' = 1 - n^2."""
    one = dh.dtype.type(1.0)
    for j in range(dh.shape[0]):
        da_z[j] = dh[j] * (h_prev[j] - n[j]) * (z[j] * (one - z[j]))
        da_n[j] = dh[j] * (one - z[j]) * (one - n[j] * n[j])


@rowjit
def _r_backward_row(dh, r, z, h_prev, m, masked, d_rh, dx_r, dw_r, dh_prev):
    """da_r = d_rh h_in r (1 - r); dh_prev = dh z (direct path) + d_rh r m (through rh = r h_in)."""
    one = dh.dtype.type(1.0)
    for j in range(dh.shape[0]):
        d_in = d_rh[j] * r[j]  # dL/dh_in
        dr = d_rh[j] * (h_prev[j] * m[j] if masked else h_prev[j]) * (r[j] * (one - r[j]))
        dx_r[j] = dr
        dw_r[j] = dr
        dh_prev[j] = dh[j] * z[j] + (d_in * m[j] if masked else d_in)


@stable_jit
def gru_reset_before_step_backward(d_new, gates, cache, prev, new, p, d_xw, d_hw, d_prev, dp):
    """dh -> d_xw (r, z, n), d_hw (r, z), dh_prev (direct and through W_hn)."""
    W_n, _, m = p
    dh, h_prev, dh_prev = d_new[0], prev[0], d_prev[0]
    H = dh.shape[1]
    for b in range(dh.shape[0]):  # da_n also into dh_prev's rows (contiguous, for the GEMM)
        g, dx = gates[b], d_xw[b]
        _z_n_backward_row(dh[b], g[H : 2 * H], g[2 * H :], h_prev[b], dx[H : 2 * H], dx[2 * H :])
        _copy_row(dx[H : 2 * H], d_hw[b][H:])  # z enters as xw + hw
        _copy_row(dx[2 * H :], dh_prev[b])
    d_rh = np.dot(dh_prev, W_n)  # n's pre-activation has + rh W_hn^T
    masked = m.shape[0] > 0
    for b in range(dh.shape[0]):
        g, dx, dw = gates[b], d_xw[b], d_hw[b]
        _r_backward_row(dh[b], g[:H], g[H : 2 * H], h_prev[b], m[b] if masked else h_prev[b], masked, d_rh[b],
                        dx[:H], dw[:H], dh_prev[b])


class GRUResetBeforeCell(GRUCell):
    """GRU with n = tanh(xn + (r * h_prev) W_hn^T + b_hn) (see the module docstring)."""

    cache_fields = ("rh",)  # the input of the cell's product (first: the loop forms dW_hn from it)
    cell_hh_blocks = 1  # the n block of W_hh multiplies r * h_in: the cell's own GEMM
    step, step_backward = staticmethod(gru_reset_before_step), staticmethod(gru_reset_before_step_backward)
