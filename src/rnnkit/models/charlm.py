"""The char-LM's network: Embedding -> multi-layer RNN/LSTM/GRU -> Linear (the task: rnnkit.tasks.charlm).

    e_t = E[x_t]                 E: (V, emb)
    h_t = RNN(e_t, h_{t-1})      layers x hidden (an LSTM also carries c_t)
    z_t = W h_t + b              W: (V, Hh), Hh = hidden (or proj_size)

``config``: the char-LM config (rnnkit.tasks.charlm.CharLMConfig): ``cell`` and its variant,
``layers``, ``hidden``, ``emb``, ``seed``, ``dtype``, the rates of :data:`LAYER_RATES` and ``emb_dropout``.
"""
from __future__ import annotations

import numpy as np

from rnnkit.engine.layer_types import LAYERS, config_options
from rnnkit.module import Module
from rnnkit.nn.blocks import Embedding, Linear

LAYER_RATES = ("dropout", "input_dropout", "recurrent_dropout", "weight_dropout")
"""The config's dropout rates the recurrent layers take (rnnkit.engine.dropout)."""


class CharLMModel(Module):
    """emb -> rnn -> head.  forward(ids (T, B), state) -> (logits (T, B, V), state)."""

    def __init__(self, vocab_size: int, config):
        rng, dtype = np.random.default_rng(config.seed), np.dtype(config.dtype)
        self.emb = Embedding(vocab_size, config.emb, seed=rng, dtype=dtype, dropout=config.emb_dropout)
        self.rnn = LAYERS[config.cell](config.emb, config.hidden, num_layers=config.layers, seed=rng, dtype=dtype,
                                      **{n: getattr(config, n) for n in LAYER_RATES}, **config_options(config))
        self.head = Linear(self.rnn.h_size, vocab_size, seed=rng, dtype=dtype)

    def forward(self, ids: np.ndarray, state=None, rng=None, need_backward: bool = True):
        """``rng``: the generator of the dropout masks (training mode with a rate > 0 only); ``need_backward``
        False (evaluation): the recurrent layers keep no tape (``Recurrent.forward``)."""
        h, state = self.rnn(self.emb.lookup(ids, rng), state, rng=rng, need_backward=need_backward)  # table path
        return self.head(h), state

    __call__ = forward

    def backward(self, d_logits: np.ndarray) -> None:
        d_h = self.head.backward(d_logits)  # dL/dh = dL/dz W
        d_table, _ = self.rnn.backward(d_h)  # BPTT within the window; no gradient into the carried state
        self.emb.backward(d_table)  # dL/dE[k] = sum of dL/de_t where x_t = k (rnnkit.engine.rows)

    def stream(self, ids, state=None):
        """Feed characters one at a time (``rnn.step``, B = 1): for each id yield (h, state) after
        it, h (1, H) the top layer's output.  The one streaming path: sampling and the inspect page."""
        E = self.emb.params["weight"]
        for i in ids:
            h, state = self.rnn.step(E[i : i + 1], state)
            yield h, state

    def next_logits(self, h: np.ndarray) -> np.ndarray:
        """Logits (V,) float64 of the next character from the top layer's h (1, H)."""
        return (h[0] @ self.head.params["weight"].T + self.head.params["bias"]).astype(np.float64)
