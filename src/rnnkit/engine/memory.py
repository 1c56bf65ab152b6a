"""Memory a recurrent model will allocate, checked against the machine before allocating.

``--hidden 100000`` used to start allocating (298 GiB) and end in a MemoryError
traceback.  :func:`estimate_rnn_bytes` computes from the sizes alone, without
building anything, what a :class:`rnnkit.engine.recurrent.Recurrent` stack plus its
training state allocates; :func:`check_memory` compares a byte count with the
physical memory (``SC_PAGE_SIZE * SC_PHYS_PAGES``) and raises a one-line
:class:`~rnnkit.errors.InsufficientMemory` naming both sizes.

Every size comes from the cell's protocol (rnnkit.cells.protocol), so the estimate covers every cell and
variant (peephole, LayerNorm, projected LSTM) with no table per cell: G = ``n_gates * H``, the
width w_f of each state field and cache field (``field_sizes(H)``: the LayerNorm LSTM's caches
are 4H wide, the projected LSTM's h is P wide), Hh = w_h the width of h, the cell's own
parameters (``own_params``), whether the gates are kept (``keeps_gates``) and whether it has a
separate d_hw (not ``dhw_is_dxw``).  In elements (D directions, I_l the input size of layer l:
I for l = 0, else D*Hh)::

    params        sum over l, d of  G*(I_l + Hh) + 2*G + own parameters      (+ extra_params)
    grads         = params
    optimizer     slots * params                                 (Adam m, v: 2; SGD momentum: 1)
    activations   sum over l, d of  T*B*G (xw: the input projections, then the gates)
                  + (T+1)*B*sum(w_f, state fields) + T*B*sum(w_f, cache fields)
                  + T*B*G (d_xw), + T*B*G more without ``dhw_is_dxw`` (d_hw)
                  + T*B*D*Hh per layer (its output)
    tape          the part of the activations a forward keeps for the backward (:func:`tape_elements`)
    temporaries   3 x the largest parameter (the optimizer's step works one parameter at a time)
                  + 2 x G*Hh per (layer, direction): the loops' copies of W_hh (transposed, or packed for
                  the micro-kernel, forward and backward; rnnkit.engine.gemm_rows.loop_operands)
                  + G*I_l per (layer, direction): W_ih packed where the loop forms xw (rnnkit.engine.in_loop)
    init          the largest (layer, direction)'s weights drawn in float64 before the cast

    bytes = max((params * (2 + slots) + activations + temporaries) * itemsize,
                (params + grads) * itemsize + init)

These mirror the buffers of ``rnnkit.engine.scan`` and ``rnnkit.engine.recurrent`` (kept per layer
and direction between calls); embedding and output layers enter as ``extra_params``.
It is an estimate of the large arrays, not of every temporary.  ``cell`` is a cell object
(rnnkit.engine.layer_types.make_cell) or a name of rnnkit.engine.layer_types.LAYERS (its plain variant).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from rnnkit.errors import InsufficientMemory, format_bytes
from rnnkit.engine.layer_types import make_cell


def physical_memory() -> int:
    """Bytes of physical memory (``SC_PAGE_SIZE * SC_PHYS_PAGES``)."""
    return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))


def _positive(name: str, v) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    return v


def as_cell(cell, hidden: int):
    """``cell`` as a cell object: a LAYERS name is its plain variant's cell (hidden size ``hidden``)."""
    return make_cell(cell, hidden) if isinstance(cell, str) else cell


def rnn_param_shapes(input_size: int, hidden: int, layers: int = 1, directions: int = 1, cell="lstm",
                     bias: bool = True, prefix: str = "") -> dict[str, tuple[int, ...]]:
    """The parameter names and shapes of a Recurrent stack (PyTorch's), from the sizes alone.

    ``weight_ih_l{l}[_reverse]`` (G, I_l), ``weight_hh_l{l}`` (G, Hh), ``bias_ih_l{l}`` and
    ``bias_hh_l{l}`` (G,), then the cell's own parameters (``cell.own_params``), each name
    prefixed with ``prefix`` (e.g. ``"rnn."``); G = n_gates * H, Hh the width of h.
    """
    I, H, L = _positive("input_size", input_size), _positive("hidden", hidden), _positive("layers", layers)
    if directions not in (1, 2):
        raise ValueError(f"directions: expected 1 or 2, got {directions!r}")
    cell = as_cell(cell, H)
    G, Hh = cell.n_gates * H, cell.field_sizes(H)["h"]
    shapes = {}
    for layer in range(L):
        inp = I if layer == 0 else Hh * directions
        for d in range(directions):
            s = f"_l{layer}" + ("_reverse" if d else "")
            shapes[f"{prefix}weight_ih{s}"] = (G, inp)
            shapes[f"{prefix}weight_hh{s}"] = (G, Hh)
            if bias:
                shapes[f"{prefix}bias_ih{s}"] = (G,)
                shapes[f"{prefix}bias_hh{s}"] = (G,)
            shapes.update({f"{prefix}{n}{s}": tuple(shape) for n, shape in cell.own_params(inp, H).items()})
    return shapes


def _buffers(cell, H: int, T: int, B: int) -> dict:
    """Elements of the buffers of one (layer, direction) by kind, from the cell's declared sizes."""
    w, G = cell.field_sizes(H), cell.n_gates * H
    return {"xw": T * B * G,  # the input projections, then the activated gates
            "states": (T + 1) * B * sum(w[f] for f in cell.State._fields),
            "cache": T * B * sum(w[f] for f in cell.cache_fields),
            # d_xw (T, B, G), and d_hw over the gate blocks the loop multiplies (cell_hh_blocks: the cell's own)
            "grads": T * B * (G + (0 if cell.dhw_is_dxw else G - cell.cell_hh_blocks * H))}


def tape_elements(cell, input_size: int, hidden: int, layers: int = 1, T: int = 1, B: int = 1,
                  directions: int = 1, lengths: bool = False) -> int:
    """Elements a forward keeps for its backward (``layer.saved_for_backward()`` less the input x and
    the parameters), from the cell's declared sizes: per (layer, direction) the states, the caches
    and the gates (``keeps_gates``); per layer > 0 its input, the outputs of the layer below when
    they are a new array (two directions concatenated, or with ``lengths`` masked; else a view of
    the states).  With ``lengths`` also the (T, B) keep mask, counted as T*B elements (its bytes:
    at most that)."""
    H = _positive("hidden", hidden)
    cell = as_cell(cell, H)
    n = _buffers(cell, H, T, B)
    per_ld = n["states"] + n["cache"] + (n["xw"] if cell.keeps_gates else 0)
    copied = directions > 1 or lengths
    inputs = (layers - 1) * T * B * directions * cell.field_sizes(H)["h"] if copied else 0
    return layers * directions * per_ld + inputs + (T * B if lengths else 0)


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
                       cell="lstm", itemsize: int = 4, optimizer_slots: int = 2, bias: bool = True,
                       extra_params: int = 0) -> MemoryEstimate:
    """Estimate what a Recurrent stack and its training allocate (formula in the module docstring).

    ``cell``: a cell object (any variant) or a LAYERS name; ``itemsize``: 4 (float32) or 8
    (float64); ``optimizer_slots``: arrays per parameter the optimizer keeps (Adam 2, SGD with
    momentum 1, plain SGD 0); ``extra_params``: other parameters (embedding, output layer).
    """
    T, B = _positive("T", T), _positive("B", B)
    if itemsize not in (4, 8):
        raise ValueError(f"itemsize: expected 4 (float32) or 8 (float64), got {itemsize!r}")
    if not isinstance(optimizer_slots, int) or optimizer_slots < 0:
        raise ValueError(f"optimizer_slots: expected an integer >= 0, got {optimizer_slots!r}")
    if not isinstance(extra_params, int) or extra_params < 0:
        raise ValueError(f"extra_params: expected an integer >= 0, got {extra_params!r}")
    cell = as_cell(cell, _positive("hidden", hidden))
    shapes = rnn_param_shapes(input_size, hidden, layers, directions, cell, bias)
    sizes = [math.prod(shape) for shape in shapes.values()]
    n_params, biggest = extra_params + sum(sizes), max(sizes)
    per_ld = len(shapes) // (layers * directions)  # parameters per (layer, direction), in order
    groups = [sizes[k : k + per_ld] for k in range(0, len(sizes), per_ld)]
    largest = max(sum(g) for g in groups)  # one (layer, direction)'s float64 draws exist at once during init
    n = _buffers(cell, hidden, T, B)
    w_hh = cell.n_gates * hidden * cell.field_sizes(hidden)["h"]  # one (layer, direction)'s W_hh
    w_ih = sum(math.prod(shape) for n, shape in shapes.items() if n.startswith("weight_ih"))  # packed copies
    outputs = layers * T * B * directions * cell.field_sizes(hidden)["h"]  # each layer's output (T, B, D*Hh)
    n_act = layers * directions * (n["xw"] + n["states"] + n["cache"] + n["grads"]) + outputs
    return MemoryEstimate(params=n_params * itemsize, grads=n_params * itemsize,
                          optimizer=optimizer_slots * n_params * itemsize, activations=n_act * itemsize,
                          temporaries=(3 * biggest + layers * directions * 2 * w_hh + w_ih) * itemsize,
                          init=largest * 8)


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
