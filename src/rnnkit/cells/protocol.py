"""Recurrent cells: one time step forward and its hand-written backward, compiled (numba).

A cell knows nothing about time, layers, directions, threads or padding; the generic
compiled loop in :mod:`rnnkit.engine.scan` owns all of that and calls the cell's two compiled
functions at every step (they are its first-class arguments).  Every cell works on the
two pre-activations that the loop computes with BLAS:

    xw = x_t     @ W_ih.T + b_ih      (B, G*H)   input projection, all steps in one GEMM
    hw = h_{t-1} @ W_hh.T + b_hh      (B, G*H)   recurrent projection, one GEMM per step

(for the RNN and LSTM, where a = xw + hw, the layer adds b_hh to xw once for all steps
and hw has no bias: ``dhw_is_dxw``; the GRU keeps b_hh in hw, since r multiplies its n block).

The cell protocol.  A cell class declares

* ``State`` (a NamedTuple of (B, H) fields, h first), ``cache_fields`` (names of its own
  per-step (B, H) buffers), ``keeps_gates`` (the activated gates, written over xw, are kept
  for the backward), ``n_gates``, ``gate_names``, ``sigmoid_gates``, ``forget_gate``,
  ``dhw_is_dxw``, ``direct_h`` (see below);
* ``own_params(input_size, hidden_size)`` -> {name: shape} of parameters the cell owns beyond
  weight_ih/weight_hh/bias_ih/bias_hh, and ``init_own(name, shape, rng, hidden_size)``
  (none for the three cells here; the peephole, layer-normalised and projected LSTMs
  (cells_*.py) add their own);
* ``field_sizes(hidden_size)`` -> {field: width} of every state and cache field (default:
  all H; a cell with a wider cache or a projected h says so);
* a cell with a cell state c (the LSTM family): ``dc_from_h(dh, gates, cache, p)``, the part of
  dL/dc_t through h_t (NumPy; the gradient-flow diagnostics add it to the carried part);
* two compiled functions (:func:`kernels.stable_jit`), all arrays (B, .) C-contiguous views
  the loop hands out, tuples in the declared field order:

  ``step(xw, hw, p, prev, new, cache)``: xw holds the input projection on entry and the
  activated gates on return; hw holds the recurrent projection; the cell writes the ``new``
  state and its ``cache``.  ``p`` is the tuple of the cell's own parameters.

  ``step_backward(d_new, gates, cache, prev, new, p, d_xw, d_hw, d_prev, dp)``: from
  d_new = dL/d(state_t) (all paths) the cell writes d_xw = dL/d(xw_t), d_hw = dL/d(hw_t)
  (the same array when ``dhw_is_dxw``), adds its own parameters' gradients into ``dp``, and
  writes the parts of dL/d(state_{t-1}) that do not flow through W_hh: LSTM ``d_prev[1]``
  (c); the GRU's h (its direct path z * h_prev, ``direct_h = True``).  The loop puts
  ``d_hw @ W_hh`` into (or adds it to) ``d_prev[0]``.

* ``cell_hh_blocks`` (default 0): the number of trailing gate blocks of W_hh whose product
  the cell forms itself inside its step, because their input depends on the step's own gates
  (the GRU with ``linear_before_reset=False``: (r * h_prev) W_hn^T,
  :mod:`rnnkit.cells.gru_reset_before`).  The loop's GEMM then covers the leading blocks only
  (hw and d_hw are that narrow); the cell gets after its own parameters in ``p`` its rows of
  W_hh (as used: after weight dropout), of b_hh (size 0 without a bias) and its batch rows of
  the recurrent dropout mask (size 0 without).  It adds ``u @ W_rows.T + b_rows`` to those
  blocks of xw (so their d_xw is the product's gradient) and keeps u (B, H) as its first cache
  field: the loop forms those rows of dW_hh and db_hh after the time loop, one GEMM over all
  steps.  Its ``d_prev[0]`` includes the path through its product (mask included).
* ``unit_local`` (default False): True when hidden unit j's step reads only column j of each gate
  block of xw and hw and unit j of the state (the RNN, LSTM, GRU): inference may then run in unit
  shards, each thread the steps of some units (:mod:`rnnkit.engine.unit_shards`).  A subclass that
  owns parameters or a GEMM (``cell_hh_blocks``) is never split, whatever it inherits.

Caches hold *outputs* of the nonlinearities, so derivatives are formed from them:
sigma' = s(1-s), tanh' = 1-tanh^2.  The activations are :func:`kernels.tanh_` and
:func:`kernels.sigmoid_` (exact in float64, a <= 5e-7 approximation in float32).  Each
step loops over batch rows and calls a row function on 1-D views (gate blocks as separate
arrays), which LLVM vectorises.  Gate order is PyTorch's: RNN (a), LSTM (i, f, g, o),
GRU (r, z, n).  See docs/bptt.md for the derivation in these names.
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
    """Numerically safe logistic function, 0.5 * (1 + tanh(a / 2)) (NumPy, for the upper floors)."""
    out = np.multiply(a, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


class Cell:
    """Defaults of the cell protocol (see the module docstring)."""

    n_gates: int
    gate_names: tuple
    sigmoid_gates: tuple = ()
    forget_gate: int | None = None  # block index of the forget gate (init sets its bias)
    State: type = HState
    cache_fields: tuple = ()
    keeps_gates = True
    dhw_is_dxw = True
    direct_h = False
    cell_hh_blocks = 0  # trailing gate blocks of W_hh the cell multiplies itself (see the module docstring)
    unit_local = False  # True: each hidden unit's step reads only its own gate columns and state
    step = step_backward = None  # the compiled functions

    def own_params(self, input_size: int, hidden_size: int) -> dict:
        """{name: shape} of the parameters this cell owns beyond the four of every cell."""
        return {}

    def init_own(self, name: str, shape: tuple, rng: np.random.Generator, hidden_size: int) -> np.ndarray:
        raise NotImplementedError(name)

    def field_sizes(self, hidden_size: int) -> dict:
        """{field: width} of the state and cache fields (per batch row); h's width is the output size."""
        return {f: hidden_size for f in self.State._fields + tuple(self.cache_fields)}
