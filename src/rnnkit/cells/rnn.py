"""The Elman RNN cell: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act = tanh or relu.

Protocol: :mod:`rnnkit.cells.protocol`; derivation: docs/bptt.md."""
from __future__ import annotations

import numpy as np

from rnnkit.kernels import stable_jit, rowjit, tanh_of_sum, wide_step
from rnnkit.cells.protocol import Cell, HState, LSTMState

@rowjit
def _rnn_row(a, ha, h, relu, wide):
    zero = h.dtype.type(0.0)
    if not relu:
        tanh_of_sum(a, ha, h, wide)  # a = xw + hw
        return
    for j in range(h.shape[0]):
        h[j] = max(a[j] + ha[j], zero)


@rowjit
def _rnn_backward_row(dh, h, da, relu):
    one, zero = dh.dtype.type(1.0), dh.dtype.type(0.0)
    for j in range(dh.shape[0]):  # tanh' = 1 - h^2, relu' = [h > 0]
        da[j] = (dh[j] if h[j] > zero else zero) if relu else dh[j] * (one - h[j] * h[j])


@stable_jit
def rnn_tanh_step(xw, hw, p, prev, new, cache):
    """h = tanh(xw + hw)."""
    h = new[0]
    wide = wide_step(h)
    for b in range(h.shape[0]):
        _rnn_row(xw[b], hw[b], h[b], False, wide)


@stable_jit
def rnn_relu_step(xw, hw, p, prev, new, cache):
    """h = max(xw + hw, 0)."""
    h = new[0]
    for b in range(h.shape[0]):
        _rnn_row(xw[b], hw[b], h[b], True, False)


@stable_jit
def rnn_tanh_step_backward(d_new, gates, cache, prev, new, p, d_xw, d_hw, d_prev, dp):
    """da = dh (1 - h^2) into d_xw (= d_hw)."""
    dh, h = d_new[0], new[0]
    for b in range(dh.shape[0]):
        _rnn_backward_row(dh[b], h[b], d_xw[b], False)


@stable_jit
def rnn_relu_step_backward(d_new, gates, cache, prev, new, p, d_xw, d_hw, d_prev, dp):
    """da = dh [h > 0] into d_xw (= d_hw)."""
    dh, h = d_new[0], new[0]
    for b in range(dh.shape[0]):
        _rnn_backward_row(dh[b], h[b], d_xw[b], True)


class RNNCell(Cell):
    """Elman cell (the seed's h_t = tanh(U x_t + V h_{t-1} + b_h)).

    a = xw + hw ;  h = tanh(a)   (or relu(a))
    """

    n_gates = 1
    unit_local = True  # a unit's step reads only its own gate columns and state (engine/unit_shards)
    gate_names = ("a",)  # gate_activations() gives h = nonlinearity(a) for this block
    keeps_gates = False  # its backward needs only h

    def __init__(self, nonlinearity: str = "tanh"):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        relu = nonlinearity == "relu"
        self.step = rnn_relu_step if relu else rnn_tanh_step
        self.step_backward = rnn_relu_step_backward if relu else rnn_tanh_step_backward


