"""Recurrent cells: one time step forward and its hand-written backward.

A cell knows nothing about time, layers, directions or padding; the generic
loop in :mod:`rnnkit.scan` owns all of that.  Every cell receives the two
pre-activations that the loop computes with BLAS:

    xw = x_t     @ W_ih.T + b_ih      (B, G*H)   input projection, all steps in one GEMM
    hw = h_{t-1} @ W_hh.T + b_hh      (B, G*H)   recurrent projection, one GEMM per step

and returns the new state and a small named cache.  ``backward`` maps the
gradient of the new state back to ``d_xw``, ``d_hw`` and the part of
``d_state_prev`` that does not flow through ``W_hh`` (the loop adds
``d_hw @ W_hh`` itself).  Caches hold *outputs* of the nonlinearities, so
derivatives are formed from them: sigma' = s(1-s), tanh' = 1-tanh^2.

Gate order is PyTorch's: RNN (a), LSTM (i, f, g, o), GRU (r, z, n).
See docs/bptt.md for the derivation in these names.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


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
    h: np.ndarray  # (B, H) new hidden state = nonlinearity(a)


class RNNCell:
    """Elman cell (the seed's h_t = tanh(U x_t + V h_{t-1} + b_h)).

    a = xw + hw ;  h = tanh(a)   (or relu(a))
    """

    n_gates = 1
    gate_names = ("a",)
    State = HState
    dhw_is_dxw = True  # a = xw + hw, so d_hw == d_xw

    def __init__(self, nonlinearity: str = "tanh"):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity

    def forward(self, xw, hw, state: HState):
        a = np.add(xw, hw)
        if self.nonlinearity == "tanh":
            h = np.tanh(a, out=a)
        else:
            h = np.maximum(a, 0.0, out=a)
        return HState(h), RNNCache(h)

    def backward(self, d_state: HState, cache: RNNCache, state_prev: HState):
        h = cache.h
        if self.nonlinearity == "tanh":
            da = d_state.h * (1.0 - h * h)  # dh/da = 1 - tanh(a)^2
        else:
            da = d_state.h * (h > 0)  # dh/da = [a > 0]
        # a = xw + hw: both receive da; nothing bypasses W_hh
        return da, da, HState(None)


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
    State = LSTMState
    dhw_is_dxw = True  # a = xw + hw, so d_hw == d_xw

    def forward(self, xw, hw, state: LSTMState):
        H = state.h.shape[-1]
        gates = np.add(xw, hw)
        sigmoid(gates[:, : 2 * H], out=gates[:, : 2 * H])  # i, f
        np.tanh(gates[:, 2 * H : 3 * H], out=gates[:, 2 * H : 3 * H])  # g
        sigmoid(gates[:, 3 * H :], out=gates[:, 3 * H :])  # o
        i, f, g, o = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H : 3 * H], gates[:, 3 * H :]
        c = f * state.c
        c += i * g
        tanh_c = np.tanh(c)
        h = o * tanh_c
        return LSTMState(h, c), LSTMCache(gates, tanh_c)

    def backward(self, d_state: LSTMState, cache: LSTMCache, state_prev: LSTMState):
        H = cache.tanh_c.shape[-1]
        gates, tanh_c = cache.gates, cache.tanh_c
        i, f, g, o = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H : 3 * H], gates[:, 3 * H :]
        dh = d_state.h
        da = np.empty_like(gates)
        # dc_t: from the next step plus through h = o * tanh(c)
        dc = dh * o
        dc *= 1.0 - tanh_c * tanh_c  # dh/dc = o * (1 - tanh(c)^2)
        dc += d_state.c  # + dL/dc_t arriving from step t+1
        np.multiply(dc * g, i * (1.0 - i), out=da[:, :H])  # di = dc*g ; sigma' = i(1-i)
        np.multiply(dc * state_prev.c, f * (1.0 - f), out=da[:, H : 2 * H])  # df = dc*c_prev
        np.multiply(dc * i, 1.0 - g * g, out=da[:, 2 * H : 3 * H])  # dg = dc*i ; tanh' = 1-g^2
        np.multiply(dh * tanh_c, o * (1.0 - o), out=da[:, 3 * H :])  # do = dh*tanh(c)
        dc_prev = dc * f  # dc/dc_prev = f
        return da, da, LSTMState(None, dc_prev)


# ----------------------------------------------------------------------------- GRU
class GRUCache(NamedTuple):
    gates: np.ndarray  # (B, 3H) activated r, z, n
    hn: np.ndarray  # (B, H) W_hn h_prev + b_hn (the part r multiplies)
    h: np.ndarray  # (B, H) new hidden state


class GRUCell:
    """GRU cell in PyTorch's formulation.

    r = sigma(xr + hr)   z = sigma(xz + hz)   n = tanh(xn + r * hn)
    h = (1 - z) * n + z * h_prev
    where xw = [xr, xz, xn] and hw = [hr, hz, hn] (hn includes b_hn).
    """

    n_gates = 3
    gate_names = ("r", "z", "n")
    State = HState

    def forward(self, xw, hw, state: HState):
        H = state.h.shape[-1]
        gates = np.add(xw[:, : 2 * H], hw[:, : 2 * H])
        gates = np.concatenate([gates, xw[:, 2 * H :]], axis=1)
        sigmoid(gates[:, : 2 * H], out=gates[:, : 2 * H])  # r, z
        r, z, n = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H :]
        hn = hw[:, 2 * H :].copy()
        n += r * hn
        np.tanh(n, out=n)
        h = n + z * (state.h - n)  # (1-z)*n + z*h_prev
        return HState(h), GRUCache(gates, hn, h)

    def backward(self, d_state: HState, cache: GRUCache, state_prev: HState):
        H = cache.hn.shape[-1]
        gates = cache.gates
        r, z, n = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H :]
        dh = d_state.h
        d_xw = np.empty_like(gates)
        d_hw = np.empty_like(gates)
        dan = dh * (1.0 - z)  # dh/dn = 1 - z
        dan *= 1.0 - n * n  # tanh' = 1 - n^2
        d_xw[:, 2 * H :] = dan
        np.multiply(dan, r, out=d_hw[:, 2 * H :])  # d(hn) = dan * r
        np.multiply(dan * cache.hn, r * (1.0 - r), out=d_xw[:, :H])  # dr = dan*hn ; sigma'
        np.multiply(dh * (state_prev.h - n), z * (1.0 - z), out=d_xw[:, H : 2 * H])  # dz
        d_hw[:, : 2 * H] = d_xw[:, : 2 * H]
        dh_prev = dh * z  # dh/dh_prev (direct path) = z
        return d_xw, d_hw, HState(dh_prev)


CELLS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
