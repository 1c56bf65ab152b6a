"""Sequence classifier (sequence -> label) with hand-written backward.

Time-major like the recurrent layers: token ids ``ids`` (T, B), ``lengths`` (B,).

    x_t    = E[ids_t]                               ``embedding``   (T, B, E)  (emb_dropout: whole rows)
    h, h_n = encoder(x, lengths)                    ``encoder``  h: (T, B, D*H), 0 past each length
    p      = pool(h)                                (B, D*H), ``pooling``:
             last       [h_n fwd; h_n bwd] of the top layer (the state at each row's last
                        valid step; the reverse direction's state after reading position 0)
             mean       sum_{t < len} h_t / len
             max        max_{t < len} h_t, elementwise (the gradient goes to the argmax step)
             attention  sum_t a_t h_t with a learned query (rnnkit.models.attention.AttentionPooling)
    z      = W p + b                                ``out``  (B, C)
    loss   = cross-entropy of z with optional class weights w (torch's ``weight=``:
             sum_n w_{y_n} nll_n / sum_n w_{y_n}).

Regularisers (training mode only, masks from the ``rng`` given to forward/loss): ``emb_dropout``
on the embedding rows and the recurrent layers' rates of rnnkit.models.charlm.LAYER_RATES
(rnnkit.engine.dropout); :meth:`SequenceClassifier.predict_proba` always runs without them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnkit.checks.arrays import check_fields, check_ids, check_lengths, check_positive
from rnnkit.models.charlm import LAYER_RATES
from rnnkit.models.attention import SCORES, AttentionPooling, source_mask
from rnnkit.cells.protocol import LSTMState
from rnnkit.engine.layer_types import LAYERS, CellVariant, config_cell, config_options
from rnnkit.engine.recurrent import as_rng
from rnnkit.nn.losses import softmax, softmax_cross_entropy
from rnnkit.module import Module
from rnnkit.nn.blocks import Embedding, Linear

POOLINGS = ("last", "mean", "max", "attention")


@dataclass(frozen=True)
class ClassifierConfig(CellVariant):
    """Sizes and kinds of a :class:`SequenceClassifier` (``score``/``attention_size`` only
    for pooling='attention'; the encoder's cell variant: CellVariant's ``peephole``, ``proj_size``)."""

    vocab_size: int
    num_classes: int
    emb: int = 32
    hidden: int = 64
    layers: int = 1
    cell: str = "lstm"
    bidirectional: bool = True
    pooling: str = "last"
    score: str = "additive"
    attention_size: int | None = None
    dtype: str = "float32"
    dropout: float = 0.0
    input_dropout: float = 0.0
    recurrent_dropout: float = 0.0
    weight_dropout: float = 0.0
    emb_dropout: float = 0.0

    def __post_init__(self):
        check_fields(self, ("vocab_size", "num_classes", "emb", "hidden", "layers"),
                     ("attention_size",), {"cell": LAYERS, "pooling": POOLINGS, "score": SCORES,
                                           "dtype": ("float32", "float64")})
        config_cell(self, self.hidden)


class SequenceClassifier(Module):
    """Embedding, (bi)directional multi-layer encoder with lengths, pooling, Linear to classes.

    forward(ids (T, B), lengths (B,), rng=None) -> logits (B, C);  backward(d_logits) fills ``grads``
    loss(ids, lengths, labels (B,), class_weights (C,) or None, backward=True, rng=None) -> float
    (``rng``: the generator of the dropout masks, needed in training mode with a rate > 0)
    predict_proba(ids, lengths) -> (B, C);  top_k(ids, lengths, k) -> (classes (B, k), probs (B, k))
    """

    def __init__(self, config: ClassifierConfig, seed=None):
        rng = as_rng(seed)
        c = self.config = config
        dt = self.dtype = np.dtype(c.dtype)
        self.D = 2 if c.bidirectional else 1
        self.embedding = Embedding(c.vocab_size, c.emb, dtype=dt, seed=rng, dropout=c.emb_dropout)
        self.encoder = LAYERS[c.cell](c.emb, c.hidden, c.layers, bidirectional=c.bidirectional, dtype=dt, seed=rng,
                                      **{n: getattr(c, n) for n in LAYER_RATES}, **config_options(c))
        width = self.D * self.encoder.h_size  # D*H, or D*proj_size
        if c.pooling == "attention":
            self.pool = AttentionPooling(width, c.score, c.attention_size, dtype=dt, seed=rng)
        self.out = Linear(width, c.num_classes, dtype=dt, seed=rng)
        self._cache, self._T = None, None

    # ------------------------------------------------------------------ pooling
    def _pool(self, h, state, lengths):
        """(T, B, DH) outputs and final state -> (B, DH) pooled, caching what backward needs."""
        kind, T = self.config.pooling, h.shape[0]
        mask = source_mask(lengths, T).T[:, :, None]  # (T, B, 1)
        if kind == "last":
            h_n = state.h if isinstance(state, LSTMState) else state
            top = h_n[-self.D:]  # (D, B, H): the top layer's directions
            self._cache = state
            return top.transpose(1, 0, 2).reshape(h.shape[1], -1)
        if kind == "mean":
            n = lengths[:, None].astype(self.dtype)
            self._cache = (mask, n)
            return h.sum(axis=0) / n  # h is 0 past each length
        if kind == "max":
            arg = np.where(mask, h, -np.inf).argmax(axis=0)  # (B, DH)
            self._cache = (arg, h.shape)
            return np.take_along_axis(h, arg[None], axis=0)[0]
        return self.pool.forward(h, source_mask(lengths, T))[0]

    def _pool_backward(self, dp):
        """d pooled (B, DH) -> (d_out (T, B, DH), d_state for the encoder or None)."""
        kind, cache, self._cache = self.config.pooling, self._cache, None
        if kind == "last":
            state, B = cache, dp.shape[0]
            h_n = state.h if isinstance(state, LSTMState) else state
            dh = np.zeros_like(h_n)
            dh[-self.D:] = dp.reshape(B, self.D, -1).transpose(1, 0, 2)
            d_state = (dh, None) if isinstance(state, LSTMState) else dh  # c gets no gradient from the pooling
            return np.zeros((self._T, B, dp.shape[1]), dtype=self.dtype), d_state
        if kind == "mean":
            mask, n = cache
            return mask * (dp / n)[None], None
        if kind == "max":
            arg, shape = cache
            d_out = np.zeros(shape, dtype=self.dtype)
            np.put_along_axis(d_out, arg[None], dp[None], axis=0)
            return d_out, None
        return np.ascontiguousarray(self.pool.backward(dp)), None

    # ------------------------------------------------------------------ training
    def forward(self, ids, lengths, rng=None):
        """Logits (B, C); caches for :meth:`backward`; ``rng``: the dropout masks' generator."""
        ids = check_ids("ids", ids, self.config.vocab_size)
        self._T = ids.shape[0]
        lengths = check_lengths(lengths, ids.shape[1], ids.shape[0])
        h, state = self.encoder.forward(self.embedding.forward(ids, rng), lengths=lengths, rng=rng)
        return self.out.forward(self._pool(h, state, lengths))

    __call__ = forward

    def backward(self, d_logits) -> None:
        """Backward of the last :meth:`forward` for d_logits (B, C); adds into ``grads``."""
        d_out, d_state = self._pool_backward(self.out.backward(d_logits))
        d_x, _ = self.encoder.backward(d_out, d_state)
        self.embedding.backward(d_x)

    def loss(self, ids, lengths, labels, class_weights=None, backward: bool = True, rng=None) -> float:
        """Mean cross-entropy (weighted as torch's ``weight=``); with ``backward`` adds every gradient."""
        loss, d_logits = softmax_cross_entropy(self.forward(ids, lengths, rng), np.asarray(labels),
                                               weight=class_weights)
        if backward:
            self.backward(d_logits)
        return loss

    # ------------------------------------------------------------------ inference
    def predict_proba(self, ids, lengths) -> np.ndarray:
        """Class probabilities (B, C) in evaluation mode (no dropout; the mode is restored); keeps no caches."""
        mode = self.training
        try:
            logits = self.eval().forward(ids, lengths)
        finally:
            self.train(mode)
        self.encoder.release()
        self.out.release()
        self._cache = None
        return softmax(logits)

    def top_k(self, ids, lengths, k: int = 3) -> tuple:
        """The k most probable classes per row, best first: (classes (B, k), probs (B, k))."""
        check_positive("k", k)
        p = self.predict_proba(ids, lengths)
        classes = np.argsort(-p, axis=1, kind="stable")[:, : min(k, p.shape[1])]
        return classes, np.take_along_axis(p, classes, axis=1)
