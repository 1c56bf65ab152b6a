"""The acoustic model of speech recognition: a (bidirectional) recurrent stack of any rnnkit cell
-> Linear -> log-softmax over the characters and the CTC blank (id 0).

forward(x (T, B, F), lengths (B,), rng=None) -> log_probs (T, B, C)
backward(d_log_probs (T, B, C)) adds every parameter gradient (through the log-softmax:
    d_z = d_lp - softmax(z) * sum_c d_lp);
step(x_t (B, F), state) -> (log_probs (B, C), state): one frame, for streaming (unidirectional only).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnkit.checks.arrays import check_fields
from rnnkit.engine.layer_types import LAYERS, CellVariant, config_cell, config_options
from rnnkit.engine.recurrent import as_rng
from rnnkit.module import Module
from rnnkit.nn.blocks import Linear
from rnnkit.nn.ctc import log_softmax_backward
from rnnkit.nn.losses import log_softmax


@dataclass(frozen=True)
class ASRModelConfig(CellVariant):
    """Sizes of an :class:`ASRModel`: ``input_size`` features per (stacked) frame, ``num_classes``
    = characters + 1 (the blank), ``hidden_size`` per direction; ``dropout`` between layers."""

    input_size: int
    num_classes: int
    hidden_size: int = 128
    num_layers: int = 2
    cell: str = "lstm"
    bidirectional: bool = True
    dropout: float = 0.0
    dtype: str = "float32"

    def __post_init__(self):
        check_fields(self, ("input_size", "num_classes", "hidden_size", "num_layers"), (),
                     {"cell": LAYERS, "dtype": ("float32", "float64")})
        config_cell(self, self.hidden_size)


class ASRModel(Module):
    """Recurrent encoder -> ``head`` Linear -> log-softmax (see the module docstring)."""

    def __init__(self, config: ASRModelConfig, seed=None):
        rng = as_rng(seed)
        c = self.config = config
        dt = self.dtype = np.dtype(c.dtype)
        self.encoder = LAYERS[c.cell](c.input_size, c.hidden_size, c.num_layers, bidirectional=c.bidirectional,
                                      dtype=dt, seed=rng, dropout=c.dropout, **config_options(c))
        self.head = Linear((2 if c.bidirectional else 1) * self.encoder.h_size, c.num_classes, dtype=dt, seed=rng)
        self._lp = None

    def forward(self, x, lengths, rng=None):
        h, _ = self.encoder.forward(np.asarray(x, dtype=self.dtype), lengths=lengths, rng=rng)
        self._lp = log_softmax(self.head.forward(h))
        return self._lp

    __call__ = forward

    def backward(self, d_log_probs) -> None:
        d_z = log_softmax_backward(np.asarray(d_log_probs, dtype=self.dtype), self._lp)
        self._lp = None
        d_h = self.head.backward(d_z)
        self.encoder.backward(d_h)

    def step(self, x_t, state=None):
        """One frame (B, F) through a unidirectional model: (log_probs (B, C), new state)."""
        if self.config.bidirectional:
            raise ValueError("step: a bidirectional model needs the whole input; streaming takes a unidirectional one")
        h, state = self.encoder.step(np.asarray(x_t, dtype=self.dtype), state)
        return log_softmax(self.head.forward(h)), state
