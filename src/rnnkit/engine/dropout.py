"""Dropout masks of the recurrent layers: which, their shapes, and how they are drawn.

A :class:`Recurrent <rnnkit.engine.recurrent.Recurrent>` layer in training mode (``layer.train()``,
the default) with any rate > 0 draws, at every ``forward(..., rng=)``, from the generator
passed in (never a global one), the masks below; in evaluation mode (``layer.eval()``) and
in ``step`` (streaming, sampling) none is applied.  Every mask is inverted dropout:
m = Bernoulli(1 - p) / (1 - p), so the expectation of ``m * x`` is ``x`` and evaluation
needs no rescaling.  For layer l and direction d (index l*D + d):

=====================  ==========================  =======================================
rate (layer argument)  mask shape                  where
=====================  ==========================  =======================================
``dropout``            (T, B, D*Hh) per layer       the output of every layer but the last
                       l < L-1                      (torch.nn.LSTM(dropout=p)); a fresh
                                                    value at every step
``input_dropout``      (B, I_l) per layer           the layer's input x_t, the same at every
                                                    step (variational, Gal & Ghahramani
                                                    2016); shared by both directions
``recurrent_dropout``  (B, Hh) per (l, d)           h_{t-1} before W_hh: hw = (h_{t-1} * m)
                                                    @ W_hh.T, the same at every step
``weight_dropout``     (G*H, Hh) per (l, d)         DropConnect on W_hh (Merity et al. 2018,
                                                    AWD-LSTM): one mask per forward
=====================  ==========================  =======================================

(Hh: the width of h, hidden_size or proj_size.)  Masks are drawn in this order: per layer,
its input mask, then per direction the recurrent and the weight mask, then the layer's
output mask; each with ``rng.random(shape) >= p``.  The backward multiplies each path's
gradient by the same mask (a fixed mask makes dropout a linear map: exact gradients).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np

from rnnkit.checks.fields import option
from rnnkit.checks.rules import RATE, check


@dataclass(frozen=True)
class DropoutRates:
    """The four rates of a recurrent layer, each in [0, 1)."""

    dropout: float = 0.0
    input_dropout: float = 0.0
    recurrent_dropout: float = 0.0
    weight_dropout: float = 0.0

    def __post_init__(self):
        for f in fields(self):
            check(f.name, getattr(self, f.name), RATE)

    @property
    def active(self) -> bool:
        return any(getattr(self, f.name) > 0 for f in fields(self))


@dataclass(frozen=True, kw_only=True)
class ConfigRates:
    """The dropout fields of a task config whose model is an Embedding and Recurrent layers (a frozen
    dataclass inherits them, as it inherits CellVariant; keyword-only): the four rates of
    :class:`DropoutRates` and ``emb_dropout`` (whole embedding rows), each in [0, 1), training only,
    recorded in checkpoints.  The config's ``__post_init__`` checks them (``check_options``)."""

    dropout: float = option(0.0, "dropout rate between the recurrent layers, training only", rule=RATE)
    input_dropout: float = option(0.0, "input dropout rate (variational), training only", rule=RATE)
    recurrent_dropout: float = option(0.0, "recurrent dropout rate on h_{t-1}, training only", rule=RATE)
    weight_dropout: float = option(0.0, "weight dropout rate (DropConnect on W_hh), training only", rule=RATE)
    emb_dropout: float = option(0.0, "embedding dropout rate (whole rows), training only", rule=RATE)

    @property
    def regularized(self) -> bool:
        """Any rate above 0 (then a training step draws masks)."""
        return any(getattr(self, n) > 0 for n in CONFIG_RATES)


CONFIG_RATES = tuple(f.name for f in fields(ConfigRates))
"""The rates of :class:`ConfigRates`, in order (the last of their group in ``--help``)."""


class Masks(NamedTuple):
    """Masks of one forward (None where the rate is 0); tuples per layer or per (layer, direction)."""

    input: tuple  # per layer l: (B, I_l) or None
    recurrent: tuple  # per (l, d): (B, Hh) or None
    weight: tuple  # per (l, d): (G*H, Hh) or None
    output: tuple  # per layer l: (T, B, D*Hh) or None (always None for the last layer)


def bernoulli_mask(rng: np.random.Generator, p: float, shape: tuple, dtype) -> np.ndarray | None:
    """Bernoulli(1 - p) / (1 - p) of ``shape`` in ``dtype``; None for p = 0."""
    if p <= 0:
        return None
    return ((rng.random(shape) >= p) / (1.0 - p)).astype(dtype)


def draw_masks(rates: DropoutRates, rng, T: int, B: int, input_sizes: list, h_size: int, gates_size: int,
               num_directions: int, dtype) -> Masks:
    """Every mask of one training forward (see the module docstring for the shapes and the order).

    rng: a numpy Generator (``None`` is refused with a one-line error: randomness is passed in).
    input_sizes: I_l per layer; gates_size: G*H (rows of W_hh).
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: training with dropout needs forward(..., rng=np.random.Generator) "
                        f"(or layer.eval()), got {type(rng).__name__}")
    L, D = len(input_sizes), num_directions
    masks = Masks([], [], [], [])
    for layer, size in enumerate(input_sizes):
        masks.input.append(bernoulli_mask(rng, rates.input_dropout, (B, size), dtype))
        for _ in range(D):
            masks.recurrent.append(bernoulli_mask(rng, rates.recurrent_dropout, (B, h_size), dtype))
            masks.weight.append(bernoulli_mask(rng, rates.weight_dropout, (gates_size, h_size), dtype))
        p_out = rates.dropout if layer < L - 1 else 0.0
        masks.output.append(bernoulli_mask(rng, p_out, (T, B, D * h_size), dtype))
    return Masks(*map(tuple, masks))  # tuples: Tape.arrays() finds them


def apply(x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """x * mask (broadcast), or x itself when there is no mask."""
    return x if mask is None else x * mask
