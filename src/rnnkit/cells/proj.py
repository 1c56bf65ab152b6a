"""LSTM with a projected hidden state, as ``torch.nn.LSTM(proj_size=P)`` (Sak et al. 2014).

    a = xw + hw                     hw = h_prev W_hh^T, h_prev (B, P), W_hh (4H, P)
    i, f, g, o, c as the LSTM's;    m = o * tanh(c)    (B, H)
    h = m W_hr^T                    W_hr = ``weight_hr`` (P, H), the cell's own parameter

The state is (h (B, P), c (B, H)); the layer's output has D*P features.  The step is the
plain LSTM step (:func:`rnnkit.cells.lstm.lstm_step`, writing m where it would write h) followed by
one GEMM.  Backward:

    dm = dh W_hr            dW_hr += dh^T m            (summed over steps)
    then the LSTM backward with dm in place of dh (d_xw, dc_prev).

Caches: tanh_c, m (H each).  Init of W_hr: U(-1/sqrt(H), 1/sqrt(H)) (torch's).
"""
from __future__ import annotations

import numpy as np

from rnnkit.cells.lstm import LSTMCell, lstm_step, lstm_step_backward
from rnnkit.kernels import add_row, stable_jit


@stable_jit
def proj_lstm_step(xw, hw, p, prev, new, cache):
    """The LSTM step into m = o tanh(c), then h = m @ W_hr.T."""
    tanh_c, m = cache
    lstm_step(xw, hw, p, prev, (m, new[1]), (tanh_c,))
    np.dot(m, p[0].T, new[0])


@stable_jit
def proj_lstm_step_backward(d_new, gates, cache, prev, new, p, d_xw, d_hw, d_prev, dp):
    """dh -> dm = dh @ W_hr, dW_hr += dh.T @ m; then the LSTM backward from (dm, dc)."""
    tanh_c, m = cache
    dh = d_new[0]
    dW_hr = np.dot(dh.T, m)
    for r in range(dW_hr.shape[0]):  # dp[0] += dW_hr row by row: no slice assignment (kernels.copy_row says why)
        add_row(dp[0][r], dW_hr[r])
    dm = np.dot(dh, p[0])
    lstm_step_backward((dm, d_new[1]), gates, (tanh_c,), prev, (m, new[1]), p, d_xw, d_hw, d_prev, dp)


class ProjLSTMCell(LSTMCell):
    """LSTM cell with h = (o * tanh(c)) @ W_hr.T of width ``proj_size`` (see the module docstring)."""

    cache_fields = ("tanh_c", "m")
    step, step_backward = staticmethod(proj_lstm_step), staticmethod(proj_lstm_step_backward)

    def __init__(self, proj_size: int):
        if not isinstance(proj_size, (int, np.integer)) or isinstance(proj_size, bool) or proj_size < 1:
            raise ValueError(f"proj_size: expected a positive integer, got {proj_size!r}")
        self.proj_size = int(proj_size)

    def own_params(self, input_size: int, hidden_size: int) -> dict:
        return {"weight_hr": (self.proj_size, hidden_size)}

    def init_own(self, name: str, shape: tuple, rng: np.random.Generator, hidden_size: int) -> np.ndarray:
        k = 1.0 / np.sqrt(hidden_size)
        return rng.uniform(-k, k, shape)

    def field_sizes(self, hidden_size: int) -> dict:
        return dict(h=self.proj_size, c=hidden_size, tanh_c=hidden_size, m=hidden_size)

    def dc_from_h(self, dh, gates, cache: dict, p: tuple):
        """h = m W_hr^T: dL/dm = dh W_hr, then the LSTM's m = o tanh(c)."""
        return super().dc_from_h(dh @ p[0], gates, cache, p)
