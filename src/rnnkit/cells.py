"""Recurrent cells: one time step forward and its hand-written backward.

A cell knows nothing about time, layers, directions or padding; the generic
loop in :mod:`rnnkit.scan` owns all of that.  Every cell works on the two
pre-activations that the loop computes with BLAS:

    xw = x_t     @ W_ih.T + b_ih      (B, G*H)   input projection, all steps in one GEMM
    hw = h_{t-1} @ W_hh.T + b_hh      (B, G*H)   recurrent projection, one GEMM per step

(for the RNN and LSTM, where a = xw + hw, the layer adds b_hh to xw once for all steps
and hw has no bias; the GRU keeps b_hh in hw, since r multiplies its n block).

The cell protocol (all arrays (B, .), preallocated by the loop, written in place):

* ``forward(xw, hw, state_prev, state, cache)``: the cell writes the new ``state``
  (h, and c for the LSTM) and its ``cache``.  The loop allots the cache: a field
  ``gates`` is xw itself (the cell turns xw into its activated gates in place), a
  field named like a state field is that field of the new state, any other field
  is a (B, H) buffer of its own.
* ``backward(d_state, cache, state_prev, d_xw, d_hw, d_state_prev)``: from
  d_state = dL/d(state_t) (all paths) the cell writes ``d_xw`` = dL/d(xw_t),
  ``d_hw`` = dL/d(hw_t) (the same array when ``dhw_is_dxw``), and the parts of
  dL/d(state_{t-1}) that do not flow through W_hh: LSTM ``d_state_prev.c``;
  GRU ``d_state_prev.h`` (its direct path z * h_prev, ``direct_h = True``).
  The loop adds ``d_hw @ W_hh`` to ``d_state_prev.h`` itself.

Caches hold *outputs* of the nonlinearities, so derivatives are formed from them:
sigma' = s(1-s), tanh' = 1-tanh^2.  The fused elementwise loops live in
:mod:`rnnkit.kernels`; transcendentals run as NumPy ufuncs over whole blocks, with
sigma(a) = (1 + tanh(a/2)) / 2.

Gate order is PyTorch's: RNN (a), LSTM (i, f, g, o), GRU (r, z, n).
See docs/bptt.md for the derivation in these names.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import kernels


class HState(NamedTuple):
    """State of an Elman RNN or GRU: the hidden vector h, shape (B, H)."""

    h: np.ndarray


class LSTMState(NamedTuple):
    """State of an LSTM: hidden h and cell c, each (B, H)."""

    h: np.ndarray
    c: np.ndarray


def sigmoid(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Numerically safe logistic function, 0.5 * (1 + tanh(a / 2))."""
    out = np.multiply(a, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


# ----------------------------------------------------------------------------- Elman RNN
class RNNCache(NamedTuple):
    h: np.ndarray  # (B, H) the new hidden state h = nonlinearity(a) (the state itself, not a copy)


class RNNCell:
    """Elman cell (the seed's h_t = tanh(U x_t + V h_{t-1} + b_h)).

    a = xw + hw ;  h = tanh(a)   (or relu(a))
    """

    n_gates = 1
    gate_names = ("a",)  # gate_activations() gives h = nonlinearity(a) for this block
    sigmoid_gates = ()
    forget_gate = None  # block index of the forget gate (none here)
    State = HState
    Cache = RNNCache
    dhw_is_dxw = True  # a = xw + hw, so d_hw == d_xw
    direct_h = False

    def __init__(self, nonlinearity: str = "tanh"):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self.relu = nonlinearity == "relu"

    def forward(self, xw, hw, state_prev: HState, state: HState, cache: RNNCache) -> None:
        a = np.add(xw, hw, out=state.h)
        if self.relu:
            np.maximum(a, 0.0, out=a)
        else:
            np.tanh(a, out=a)

    def backward(self, d_state: HState, cache: RNNCache, state_prev: HState, d_xw, d_hw, d_state_prev) -> None:
        # da = dh * tanh'(a) = dh (1 - h^2)  (relu: dh [a > 0]); a = xw + hw: both receive da
        kernels.rnn_backward(d_state.h, cache.h, d_xw, self.relu)


# ----------------------------------------------------------------------------- LSTM
class LSTMCache(NamedTuple):
    gates: np.ndarray  # (B, 4H) activated i, f, g, o
    tanh_c: np.ndarray  # (B, H) tanh(c_t)


class LSTMCell:
    """LSTM cell, the seed's equations with W_* . [h_{t-1}, x_t] split into W_ih, W_hh.

    a = xw + hw                        (B, 4H), blocks i, f, g, o
    i = sigma(a_i)  f = sigma(a_f)  g = tanh(a_g)  o = sigma(a_o)
    c = f * c_prev + i * g
    h = o * tanh(c)
    """

    n_gates = 4
    gate_names = ("i", "f", "g", "o")
    sigmoid_gates = ("i", "f", "o")
    forget_gate = 1  # block index of f (init sets its bias)
    State = LSTMState
    Cache = LSTMCache
    dhw_is_dxw = True  # a = xw + hw, so d_hw == d_xw
    direct_h = False

    def forward(self, xw, hw, state_prev: LSTMState, state: LSTMState, cache: LSTMCache) -> None:
        gates = cache.gates  # is xw: the gates are formed in place
        H = state.h.shape[-1]
        kernels.lstm_preact(gates, hw)  # a = xw + hw; a/2 on the sigmoid blocks i, f, o
        np.tanh(gates, out=gates)
        kernels.lstm_cell_state(gates, state_prev.c, state.c)  # i, f, o = sigma; c = f*c_prev + i*g
        np.tanh(state.c, out=cache.tanh_c)
        np.multiply(gates[:, 3 * H :], cache.tanh_c, out=state.h)  # h = o * tanh(c)

    def backward(self, d_state: LSTMState, cache: LSTMCache, state_prev: LSTMState, d_xw, d_hw,
                 d_state_prev) -> None:
        # dc = dh o (1 - tanh(c)^2) + dc_next ; di = dc g i(1-i) ; df = dc c_prev f(1-f) ;
        # dg = dc i (1-g^2) ; do = dh tanh(c) o(1-o) ; dc_prev = dc f   (see kernels.lstm_backward)
        kernels.lstm_backward(d_state.h, d_state.c, cache.gates, cache.tanh_c, state_prev.c, d_xw,
                              d_state_prev.c)


# ----------------------------------------------------------------------------- GRU
class GRUCache(NamedTuple):
    gates: np.ndarray  # (B, 3H) activated r, z, n
    hn: np.ndarray  # (B, H) W_hn h_prev + b_hn (the part r multiplies)


class GRUCell:
    """GRU cell in PyTorch's formulation.

    r = sigma(xr + hr)   z = sigma(xz + hz)   n = tanh(xn + r * hn)
    h = (1 - z) * n + z * h_prev
    where xw = [xr, xz, xn] and hw = [hr, hz, hn] (hn includes b_hn).
    """

    n_gates = 3
    gate_names = ("r", "z", "n")
    sigmoid_gates = ("r", "z")
    forget_gate = 1  # z keeps h_prev, the GRU's forget-like gate (init sets its bias)
    State = HState
    Cache = GRUCache
    dhw_is_dxw = False  # n = tanh(xn + r * hn): d_hn != d_xn
    direct_h = True  # h = ... + z * h_prev bypasses W_hh

    def forward(self, xw, hw, state_prev: HState, state: HState, cache: GRUCache) -> None:
        gates = cache.gates  # is xw: the gates are formed in place
        H = state.h.shape[-1]
        kernels.gru_preact(gates, hw)  # (xr + hr)/2, (xz + hz)/2
        np.tanh(gates[:, : 2 * H], out=gates[:, : 2 * H])
        kernels.gru_candidate(gates, hw, cache.hn)  # r, z = sigma; n-block = xn + r * hn
        np.tanh(gates[:, 2 * H :], out=gates[:, 2 * H :])  # n
        kernels.gru_hidden(gates, state_prev.h, state.h)  # h = (1-z)*n + z*h_prev

    def backward(self, d_state: HState, cache: GRUCache, state_prev: HState, d_xw, d_hw, d_state_prev) -> None:
        # dan = dh (1-z)(1-n^2) ; d_hn = dan r ; dr = dan hn r(1-r) ; dz = dh (h_prev - n) z(1-z) ;
        # direct dh_prev = dh z   (see kernels.gru_backward)
        kernels.gru_backward(d_state.h, cache.gates, cache.hn, state_prev.h, d_xw, d_hw, d_state_prev.h)

