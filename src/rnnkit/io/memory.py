"""Memory a recurrent model will allocate, checked against the machine before allocating.

``--hidden 100000`` used to start allocating (298 GiB) and end in a MemoryError
traceback.  :func:`estimate_rnn_bytes` computes from the sizes alone, without
building anything, what a :class:`rnnkit.layers.Recurrent` stack plus its
training state allocates; :func:`check_memory` compares a byte count with the
physical memory (``SC_PAGE_SIZE * SC_PHYS_PAGES``) and raises a one-line
:class:`~rnnkit.errors.InsufficientMemory` naming both sizes.

The estimate, in elements (H hidden, G gates per cell: RNN 1, GRU 3, LSTM 4;
S state fields: LSTM 2 (h, c), else 1; D directions; I_l the input size of
layer l: I for l = 0, else D*H)::

    params        sum over l, d of  G*H*(I_l + H) + 2*G*H        (+ extra_params)
    grads         = params
    optimizer     slots * params                                 (Adam m, v: 2; SGD momentum: 1)
    activations   sum over l, d of  T*B*(2*G + 1)*H + (T+1)*B*S*H  (gate cache and its
                  gradient, the cell cache, the states) + T*B*D*H per layer (its output),
                  + T*B*G*H more per l, d for the GRU (its separate d_hw)
    temporaries   3 x the largest parameter (the optimizer's step works one parameter at a time)
    init          the largest (layer, direction)'s weights drawn in float64 before the cast

    bytes = max((params * (2 + slots) + activations + temporaries) * itemsize,
                (params + grads) * itemsize + init)

These mirror the buffers of ``rnnkit.scan`` and ``rnnkit.layers`` (kept per layer
and direction between calls); embedding and output layers enter as ``extra_params``.
It is an estimate of the large arrays, not of every temporary.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from ..errors import InsufficientMemory
from .atomic import format_bytes

GATES = {"rnn": 1, "gru": 3, "lstm": 4}
"""Gate blocks per cell (the G of ``weight_ih`` shape (G*H, I))."""


def physical_memory() -> int:
    """Bytes of physical memory (``SC_PAGE_SIZE * SC_PHYS_PAGES``)."""
    return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))


def _positive(name: str, v) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    return v


def rnn_param_shapes(input_size: int, hidden: int, layers: int = 1, directions: int = 1, gates: int = 4,
                     bias: bool = True, prefix: str = "") -> dict[str, tuple[int, ...]]:
    """The parameter names and shapes of a Recurrent stack (PyTorch's), from the sizes alone.

    ``weight_ih_l{l}[_reverse]`` (G*H, I_l), ``weight_hh_l{l}`` (G*H, H), ``bias_ih_l{l}`` and
    ``bias_hh_l{l}`` (G*H,), each name prefixed with ``prefix`` (e.g. ``"rnn."``).
    """
    I, H, L = _positive("input_size", input_size), _positive("hidden", hidden), _positive("layers", layers)
    G = _positive("gates", gates)
    if directions not in (1, 2):
        raise ValueError(f"directions: expected 1 or 2, got {directions!r}")
    shapes = {}
    for layer in range(L):
        inp = I if layer == 0 else H * directions
        for d in range(directions):
            s = f"_l{layer}" + ("_reverse" if d else "")
            shapes[f"{prefix}weight_ih{s}"] = (G * H, inp)
            shapes[f"{prefix}weight_hh{s}"] = (G * H, H)
            if bias:
                shapes[f"{prefix}bias_ih{s}"] = (G * H,)
                shapes[f"{prefix}bias_hh{s}"] = (G * H,)
    return shapes


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes by kind (see the module docstring); ``total`` is the peak."""

    params: int
    grads: int
    optimizer: int
    activations: int
    temporaries: int
    init: int

    @property
    def total(self) -> int:
        return max(self.params + self.grads + self.optimizer + self.activations + self.temporaries,
                   self.params + self.grads + self.init)

    def describe(self) -> str:
        return (f"{format_bytes(self.params)} parameters + {format_bytes(self.grads)} gradients + "
                f"{format_bytes(self.optimizer)} optimizer state + {format_bytes(self.activations)} activations")


def estimate_rnn_bytes(input_size: int, hidden: int, layers: int = 1, T: int = 1, B: int = 1, directions: int = 1,
                       gates: int = 4, itemsize: int = 4, optimizer_slots: int = 2, bias: bool = True,
                       extra_params: int = 0) -> MemoryEstimate:
    """Estimate what a Recurrent stack and its training allocate (formula in the module docstring).

    ``gates``: 1 (RNN), 3 (GRU), 4 (LSTM); ``itemsize``: 4 (float32) or 8 (float64);
    ``optimizer_slots``: arrays per parameter the optimizer keeps (Adam 2, SGD with momentum 1,
    plain SGD 0); ``extra_params``: other parameters (embedding, output layer).
    """
    T, B = _positive("T", T), _positive("B", B)
    if itemsize not in (4, 8):
        raise ValueError(f"itemsize: expected 4 (float32) or 8 (float64), got {itemsize!r}")
    if not isinstance(optimizer_slots, int) or optimizer_slots < 0:
        raise ValueError(f"optimizer_slots: expected an integer >= 0, got {optimizer_slots!r}")
    if not isinstance(extra_params, int) or extra_params < 0:
        raise ValueError(f"extra_params: expected an integer >= 0, got {extra_params!r}")
    shapes = rnn_param_shapes(input_size, hidden, layers, directions, gates, bias)
    sizes = [math.prod(shape) for shape in shapes.values()]
    n_params, biggest = extra_params + sum(sizes), max(sizes)
    largest = 0
    for layer in range(layers):  # one (layer, direction)'s float64 draws exist at once during init
        inp = input_size if layer == 0 else hidden * directions
        largest = max(largest, gates * hidden * (inp + hidden + 2))
    H, G, D = hidden, gates, directions
    S = 2 if gates == 4 else 1
    per_ld = T * B * (2 * G + 1) * H + (T + 1) * B * S * H + (T * B * G * H if gates == 3 else 0)
    n_act = layers * (D * per_ld + T * B * D * H)
    return MemoryEstimate(params=n_params * itemsize, grads=n_params * itemsize,
                          optimizer=optimizer_slots * n_params * itemsize, activations=n_act * itemsize,
                          temporaries=3 * biggest * itemsize, init=largest * 8)


def check_memory(nbytes: int, what: str, available: int | None = None) -> int:
    """Raise InsufficientMemory if ``nbytes`` exceeds ``available`` (default: physical memory).

    ``what`` names the thing (e.g. ``"--hidden 100000: the model"``).  Returns ``nbytes``.
    """
    nbytes = int(nbytes)
    if nbytes < 0:
        raise ValueError(f"nbytes: expected an integer >= 0, got {nbytes}")
    have = physical_memory() if available is None else int(available)
    if nbytes > have:
        raise InsufficientMemory(f"{what} needs about {format_bytes(nbytes)} ({nbytes} bytes), more than the "
                                 f"{format_bytes(have)} of physical memory of this machine; use smaller sizes",
                                 needed=nbytes, available=have)
    return nbytes
