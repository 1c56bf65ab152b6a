"""Encoder–decoder with Luong attention (sequence -> sequence), hand-written backward.

Everything is time-major, like the recurrent layers: source ids ``src`` (S, B), target ids
(T, B), with ``src_lengths`` (B,) (PyTorch packed-sequence semantics in the encoder).

    x_s      = E_src[src_s]                                   ``src_embedding``  (S, B, E)
    k, h_n   = encoder(x, lengths)                            ``encoder``  k: (S, B, D*H)
    bridge   per decoder layer l (the same weights for every layer):
             h0_l = tanh(W_bh [h_n fwd_l; h_n bwd_l] + b_bh)   ``bridge_h``  Linear(D*H, H)
             c0_l =      W_bc [c_n fwd_l; c_n bwd_l] + b_bc    ``bridge_c``  (LSTM only; linear,
                                                              as the cell state is unbounded)
    y_t      = E_tgt[tgt_in_t]                                ``tgt_embedding``  (T, B, E)
    h_t      = decoder(y, state0 = (h0, c0))                  ``decoder`` (unidirectional, same
                                                              cell and layers), one scan
    h~_t, a  = attention(h, k, source mask)                   ``attention`` (GlobalAttention)
    z_t      = W_out h~_t + b_out                             ``out``  (T, B, V_tgt)
    loss     = masked cross-entropy of z against tgt_out, the MEAN over the target tokens
               where tgt_mask is true (torch's cross_entropy(ignore_index=pad) semantics),
               optional label smoothing.

Decoding (greedy / beam search, rnnkit.models.decoding) uses :meth:`encode` and
:meth:`decode_step`, which streams the decoder through the layers' ``step``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnkit.checks.arrays import check_fields, check_ids, check_lengths
from rnnkit.models.attention import SCORES, GlobalAttention, source_mask
from rnnkit.cells.protocol import LSTMState
from rnnkit.engine.layer_types import LAYERS, CellVariant, config_cell, config_options
from rnnkit.engine.recurrent import as_rng
from rnnkit.nn.losses import softmax_cross_entropy
from rnnkit.module import Module
from rnnkit.nn.blocks import Embedding, Linear


@dataclass(frozen=True)
class Seq2SeqConfig(CellVariant):
    """Sizes and kinds of an :class:`EncoderDecoder` (``hidden`` is per encoder direction
    and the decoder's; attention_size only for the 'additive' score, default ``hidden``; the
    cell variant of encoder and decoder: CellVariant's ``peephole``, ``proj_size``)."""

    src_vocab: int
    tgt_vocab: int
    emb: int = 32
    hidden: int = 64
    layers: int = 1
    cell: str = "lstm"
    bidirectional: bool = True
    score: str = "general"
    attention_size: int | None = None
    dtype: str = "float32"

    def __post_init__(self):
        check_fields(self, ("src_vocab", "tgt_vocab", "emb", "hidden", "layers"),
                     ("attention_size",), {"cell": LAYERS, "score": SCORES, "dtype": ("float32", "float64")})
        config_cell(self, self.hidden)
        if self.score == "dot" and self.bidirectional:
            raise ValueError("score: 'dot' needs encoder outputs of the decoder's size; a bidirectional "
                             "encoder gives 2*hidden (use 'general' or 'additive')")


def merge_directions(a: np.ndarray, D: int) -> np.ndarray:
    """Final states (L*D, B, H) in PyTorch's order -> (L, B, D*H): [h_fwd; h_bwd] per layer."""
    LD, B, H = a.shape
    return a.reshape(LD // D, D, B, H).transpose(0, 2, 1, 3).reshape(LD // D, B, D * H)


def split_directions(d: np.ndarray, D: int) -> np.ndarray:
    """Inverse of :func:`merge_directions`: (L, B, D*H) -> (L*D, B, H)."""
    L, B, DH = d.shape
    return d.reshape(L, B, D, DH // D).transpose(0, 2, 1, 3).reshape(L * D, B, DH // D)


class EncoderDecoder(Module):
    """Embedding, (bi)directional encoder, bridge, decoder, Luong attention, output layer.

    forward(src (S, B), src_lengths (B,), tgt_in (T, B)) -> (logits (T, B, V_tgt), weights (T, B, S))
    backward(d_logits) fills ``grads`` (every parameter)
    loss(src, src_lengths, tgt_in, tgt_out, tgt_mask=None, label_smoothing=0.0, backward=True) -> float
    encode(src, src_lengths) -> (memory, state0);  decode_step(tokens (B,), state, memory)
        -> (logits (B, V_tgt), state, weights (B, S)): inference, no caches kept.
    """

    def __init__(self, config: Seq2SeqConfig, seed=None):
        rng = as_rng(seed)
        c = self.config = config
        dt, E, H, L = np.dtype(c.dtype), c.emb, c.hidden, c.layers
        self.dtype = dt
        self.D = 2 if c.bidirectional else 1
        layer, options = LAYERS[c.cell], config_options(c)
        self.src_embedding = Embedding(c.src_vocab, E, dtype=dt, seed=rng)
        self.encoder = layer(E, H, L, bidirectional=c.bidirectional, dtype=dt, seed=rng, **options)
        width = self.encoder.cell.field_sizes(H)  # of h (H, or proj_size) and c
        Hh = width["h"]
        self.bridge_h = Linear(self.D * Hh, Hh, dtype=dt, seed=rng)
        if "c" in self.encoder.cell.State._fields:  # the LSTMs: c is bridged too
            self.bridge_c = Linear(self.D * width["c"], width["c"], dtype=dt, seed=rng)
        self.tgt_embedding = Embedding(c.tgt_vocab, E, dtype=dt, seed=rng)
        self.decoder = layer(E, H, L, dtype=dt, seed=rng, **options)
        self.attention = self._attention(Hh, self.D * Hh, rng)
        self.out = Linear(Hh, c.tgt_vocab, dtype=dt, seed=rng)
        self._h0 = None

    def _attention(self, query_size: int, key_size: int, rng):
        """The attention layer (a subclass may build another one with the same interface)."""
        c = self.config
        return GlobalAttention(query_size, key_size, c.score, c.attention_size, dtype=self.dtype, seed=rng)

    # ------------------------------------------------------------------ bridge
    def _bridge(self, enc_state):
        """Final encoder state -> decoder initial state (see the module docstring)."""
        lstm = isinstance(enc_state, LSTMState)
        h_n = enc_state.h if lstm else enc_state
        self._h0 = h0 = np.tanh(self.bridge_h.forward(merge_directions(h_n, self.D)))
        if not lstm:
            return h0
        return LSTMState(h0, self.bridge_c.forward(merge_directions(enc_state.c, self.D)))

    def _bridge_backward(self, d_state0):
        lstm = isinstance(d_state0, LSTMState)
        dh0 = d_state0.h if lstm else d_state0
        d_h_n = split_directions(self.bridge_h.backward(dh0 * (1.0 - self._h0 * self._h0)), self.D)
        if not lstm:
            return d_h_n
        return d_h_n, split_directions(self.bridge_c.backward(d_state0.c), self.D)

    def _check_source(self, src, src_lengths):
        src = check_ids("src", src, self.config.src_vocab)
        return src, check_lengths(src_lengths, src.shape[1], src.shape[0])

    # ------------------------------------------------------------------ training
    def forward(self, src, src_lengths, tgt_in):
        """Teacher-forced pass; caches for :meth:`backward`.  Returns (logits, attention weights)."""
        keys, dec_out, _, mask = self._run(src, src_lengths, tgt_in)
        h_tilde, weights = self.attention.forward(dec_out, keys, mask)
        return self.out.forward(h_tilde), weights

    def _run(self, src, src_lengths, tgt_in):
        """Embeddings, encoder, bridge and decoder under teacher forcing (caching) ->
        (keys (S, B, D*H), decoder outputs (T, B, H), decoder inputs y (T, B, E), source mask (B, S))."""
        src, src_lengths = self._check_source(src, src_lengths)
        tgt_in = check_ids("tgt_in", tgt_in, self.config.tgt_vocab, src.shape[1])
        keys, enc_state = self.encoder.forward(self.src_embedding.forward(src), lengths=src_lengths)
        y = self.tgt_embedding.forward(tgt_in)
        dec_out, _ = self.decoder.forward(y, self._bridge(enc_state))
        return keys, dec_out, y, source_mask(src_lengths, src.shape[0])

    __call__ = forward

    def backward(self, d_logits) -> None:
        """Backward of the last :meth:`forward` for d_logits (T, B, V_tgt); adds into ``grads``."""
        self._run_backward(*self.attention.backward(self.out.backward(d_logits)))

    def _run_backward(self, d_dec_out, d_keys, d_y_extra=None) -> None:
        """Backward of :meth:`_run` for d decoder outputs (T, B, H), d keys (S, B, D*H) and an optional
        gradient of the decoder inputs y (T, B, E) from another use of them; adds into ``grads``."""
        d_y, d_state0 = self.decoder.backward(np.ascontiguousarray(d_dec_out))
        self.tgt_embedding.backward(d_y if d_y_extra is None else d_y + d_y_extra)
        d_x, _ = self.encoder.backward(np.ascontiguousarray(d_keys), self._bridge_backward(d_state0))
        self.src_embedding.backward(d_x)

    def loss(self, src, src_lengths, tgt_in, tgt_out, tgt_mask=None, label_smoothing: float = 0.0,
             backward: bool = True) -> float:
        """Mean masked cross-entropy over the target tokens; with ``backward`` adds every gradient."""
        logits, _ = self.forward(src, src_lengths, tgt_in)
        tgt_out = check_ids("tgt_out", tgt_out, self.config.tgt_vocab, logits.shape[1])
        loss, d_logits = softmax_cross_entropy(logits, tgt_out, tgt_mask, label_smoothing=label_smoothing)
        if backward:
            self.backward(d_logits)
        return loss

    # ------------------------------------------------------------------ inference
    def encode(self, src, src_lengths):
        """Run the encoder and bridge without caches: -> (memory for the attention, decoder state0)."""
        src, src_lengths = self._check_source(src, src_lengths)
        keys, enc_state = self.encoder.forward(self.src_embedding.params["weight"][src], lengths=src_lengths,
                                               need_backward=False)
        self.encoder.release()
        state0 = self._bridge(enc_state)
        for m in (self.bridge_h, getattr(self, "bridge_c", None)):
            if m is not None:
                m.release()
        self._h0 = None
        return self.attention.memory(keys, source_mask(src_lengths, src.shape[0])), state0

    def decode_step(self, tokens, state, memory):
        """One decoder step: tokens (B,) -> (logits (B, V_tgt), state, attention weights (B, S))."""
        y, state = self.decoder.step(self.tgt_embedding.params["weight"][tokens], state)
        h_tilde, weights = self.attention.step(y, memory)
        logits = self.out.forward(h_tilde)
        self.out.release()
        return logits, state, weights
