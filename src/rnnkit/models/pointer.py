"""Pointer-generator with coverage (See, Liu & Manning, ACL 2017) on the encoder-decoder, hand-written backward.

Builds on :class:`rnnkit.models.encdec.EncoderDecoder` (embeddings, encoder, bridge, decoder: the
same names and equations) with :class:`rnnkit.models.coverage.CoverageAttention` in place of the
attention.  Time-major like the layers.

Extended vocabulary.  ``src`` holds ids of an *extended* vocabulary: 0..V-1 the target
vocabulary (V = ``tgt_vocab``; source and target share it, ``src_vocab`` must equal it), and
V, V+1, .. the batch's source words outside it (temporary ids).  The embeddings read an id >= V
as <unk> (1); the copy distribution keeps the temporary id, so a source OOV can be produced.
V_ext = max(V, max(src) + 1).  Targets (``tgt_out``) are extended ids too: a target word that
is an OOV of its own source has that source's temporary id, any other OOV is <unk> (without
copying, every temporary id in a target reads as <unk>).

For target step t (s_t the decoder output, x_t = E[tgt_in_t] its input, c_t, a_t, cov_t and h~_t
from the attention):

    P_vocab_t = softmax(W_out h~_t + b_out)                     ``out``   (B, V)
    p_gen_t   = sigma(w_c . c_t + w_s . s_t + w_x . x_t + b)     ``p_gen`` Linear(He + Hd + E, 1) on [c; s; x]
    P_t(w)    = p_gen_t P_vocab_t(w) + (1 - p_gen_t) sum_{s: src_s = w} a_ts      (B, V_ext)
    loss      = (1/N) sum_{t,b} m_tb [ -log P_t(y_tb) + lambda sum_s min(a_ts, cov_ts) ]

m the target mask, N = sum m (torch's mean over the unmasked tokens), lambda = ``cov_loss_weight``.
``copy=False``: P_t = P_vocab_t (no p_gen); ``coverage=False``: no coverage in the score and no
coverage loss.  Both off is Luong attention with the additive score (the seq2seq baseline).

Decoding (rnnkit.models.decoding): ``encode(src, lengths)`` and ``decode_step(tokens, state,
memory)``, which returns log P_t over the extended vocabulary (log 0 = -inf for a temporary id
no source of that row has) in place of logits: log_softmax leaves them as they are.  Its state
is a :class:`PointerState` (decoder state and coverage).  The backward is derived in
docs/summarize.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from rnnkit.cells.protocol import sigmoid
from rnnkit.checks.arrays import check_ids
from rnnkit.checks.rules import NONNEG_NUMBER, check
from rnnkit.data.vocab import UNK
from rnnkit.engine.recurrent import as_rng
from rnnkit.models.coverage import CoverageAttention
from rnnkit.models.encdec import EncoderDecoder, Seq2SeqConfig
from rnnkit.nn.blocks import Linear
from rnnkit.nn.losses import softmax


@dataclass(frozen=True)
class PointerConfig(Seq2SeqConfig):
    """Seq2SeqConfig with the additive score, ``copy`` (pointer-generator), ``coverage`` and the
    coverage loss weight lambda (``cov_loss_weight``, See et al.'s 1.0)."""

    score: str = "additive"
    copy: bool = True
    coverage: bool = True
    cov_loss_weight: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        if self.score != "additive":
            raise ValueError(f"score: the pointer-generator uses the 'additive' score, got {self.score!r}")
        check("cov_loss_weight", self.cov_loss_weight, NONNEG_NUMBER)
        if self.copy and self.src_vocab != self.tgt_vocab:
            raise ValueError(f"src_vocab: copying needs one vocabulary for both sides, got {self.src_vocab} "
                             f"and tgt_vocab {self.tgt_vocab}")


class PointerState(NamedTuple):
    """Decoding state: the decoder's (array or LSTMState) and the coverage (B, S)."""

    dec: object
    cov: np.ndarray

    def select(self, rows):
        """The state of batch rows ``rows`` (beam search)."""
        d = self.dec
        dec = type(d)(*(x[:, rows] for x in d)) if isinstance(d, tuple) else d[:, rows]
        return PointerState(dec, self.cov[rows])


def extended_size(V: int, *ids) -> int:
    """V_ext = max(V, 1 + the largest id of ``ids``)."""
    return max([V] + [int(np.max(x)) + 1 for x in ids if np.size(x)])


def in_vocab(ids, V: int) -> np.ndarray:
    """Extended ids with the temporary ones (>= V) read as <unk>."""
    ids = np.asarray(ids)
    return np.where(ids >= V, UNK, ids)


def final_distribution(p_vocab, a, p_gen, src_ext, V_ext: int) -> np.ndarray:
    """P(w) = p_gen P_vocab(w) + (1 - p_gen) sum_{s: src_ext_s = w} a_s over the extended vocabulary.

    p_vocab (..., B, V), a (..., B, S), p_gen (..., B, 1) or None (P = P_vocab), src_ext (B, S)
    -> (..., B, V_ext); padded sources have a = 0 and add nothing.
    """
    V = p_vocab.shape[-1]
    p = np.zeros(p_vocab.shape[:-1] + (V_ext,), p_vocab.dtype)
    if p_gen is None:
        p[..., :V] = p_vocab
        return p
    p[..., :V] = p_gen * p_vocab
    rows = np.arange(p[..., 0].size).reshape(p.shape[:-1])  # one row per (..., b)
    flat = (rows[..., None] * V_ext + src_ext).reshape(-1)
    p += np.bincount(flat, ((1.0 - p_gen) * a).reshape(-1), minlength=p.size).reshape(p.shape)
    return p


class PointerGenerator(EncoderDecoder):
    """forward(src (S, B) extended ids, src_lengths (B,), tgt_in (T, B)) -> dict of the step's arrays
    loss(src, src_lengths, tgt_in, tgt_out, tgt_mask=None, backward=True) -> float (module docstring)
    encode / decode_step: decoding (module docstring)."""

    def __init__(self, config: PointerConfig, seed=None):
        if not isinstance(config, PointerConfig):
            raise TypeError(f"config: expected a PointerConfig, got {type(config).__name__}")
        rng = as_rng(seed)
        super().__init__(config, seed=rng)
        if config.copy:
            Hh, He = self.attention.query_size, self.attention.key_size
            self.p_gen = Linear(He + Hh + config.emb, 1, dtype=self.dtype, seed=rng)
        self._cache = None

    def _attention(self, query_size, key_size, rng):
        c = self.config
        return CoverageAttention(query_size, key_size, c.attention_size, c.coverage, dtype=self.dtype, seed=rng)

    def _src(self, src):
        src = np.asarray(src)
        check_ids("src", src, np.iinfo(np.int64).max)
        return in_vocab(src, self.config.tgt_vocab), src.T  # embedding ids (S, B), extended (B, S)

    # ------------------------------------------------------------------ training
    def forward(self, src, src_lengths, tgt_in):
        """Teacher-forced pass (caching): {"p_vocab" (T, B, V), "a", "cov" (T, B, S), "p_gen" (T, B, 1)
        or None, "src_ext" (B, S)}."""
        src_in, src_ext = self._src(src)
        keys, dec_out, y, mask = self._run(src_in, src_lengths, in_vocab(tgt_in, self.config.tgt_vocab))
        h_tilde, a, c, cov = self.attention.forward(dec_out, keys, mask)
        p_vocab = softmax(self.out.forward(h_tilde))
        p_gen = None
        if self.config.copy:
            p_gen = sigmoid(self.p_gen.forward(np.concatenate([c, dec_out, y], axis=-1)))
        out = {"p_vocab": p_vocab, "a": a, "cov": cov, "p_gen": p_gen, "src_ext": src_ext}
        self._cache = out
        return out

    __call__ = forward

    def target_probability(self, out, tgt_out) -> tuple:
        """(P_t(y) (T, B), P_vocab_t(y) (T, B), copy mass A_t(y) = sum_{s: src_s = y} a_ts (T, B), its
        (T, B, S) indicator) for targets ``tgt_out`` (T, B) of extended ids."""
        p_vocab, a = out["p_vocab"], out["a"]
        V = p_vocab.shape[-1]
        pv_y = np.take_along_axis(p_vocab, np.minimum(tgt_out, V - 1)[..., None], -1)[..., 0] * (tgt_out < V)
        if out["p_gen"] is None:
            return pv_y, pv_y, None, None
        hit = out["src_ext"][None, :, :] == tgt_out[:, :, None]  # (T, B, S)
        copy_y = (a * hit).sum(axis=-1)
        pg = out["p_gen"][..., 0]
        return pg * pv_y + (1.0 - pg) * copy_y, pv_y, copy_y, hit

    def loss(self, src, src_lengths, tgt_in, tgt_out, tgt_mask=None, backward: bool = True) -> float:
        """The mean loss of the module docstring; with ``backward`` adds every gradient into ``grads``."""
        out = self.forward(src, src_lengths, tgt_in)
        T, B, V = out["p_vocab"].shape
        tgt_out = check_ids("tgt_out", tgt_out, extended_size(V, src), B)
        if not self.config.copy:  # nothing produces a temporary id: the target is <unk>
            tgt_out = in_vocab(tgt_out, V)
        m = np.ones((T, B), bool) if tgt_mask is None else np.asarray(tgt_mask, bool)
        w = (m / max(int(m.sum()), 1)).astype(self.dtype)  # each token's weight in the mean
        p_y, pv_y, copy_y, hit = self.target_probability(out, tgt_out)
        with np.errstate(divide="ignore"):
            nll = float(-(w * np.log(np.where(m, p_y, 1.0))).sum())
        a, cov, lam = out["a"], out["cov"], self.config.cov_loss_weight
        use_cov = self.config.coverage and lam > 0
        loss = nll + (lam * float((w[..., None] * np.minimum(a, cov)).sum()) if use_cov else 0.0)
        if backward:
            self._backward(out, tgt_out, w, p_y, pv_y, copy_y, hit, lam if use_cov else 0.0)
        self._cache = None
        return loss

    def _backward(self, out, tgt_out, w, p_y, pv_y, copy_y, hit, lam) -> None:
        p_vocab, a, cov, pg = out["p_vocab"], out["a"], out["cov"], out["p_gen"]
        V = p_vocab.shape[-1]
        dp_y = -w / np.where(w > 0, p_y, 1.0)  # d loss / d P_t(y)
        g = dp_y * pv_y * (1.0 if pg is None else pg[..., 0])  # d loss / d log P_vocab(y), then softmax:
        d_logits = -g[..., None] * p_vocab  # dz = g (onehot(y) - P_vocab)
        t_idx, b_idx = np.nonzero(tgt_out < V)
        d_logits[t_idx, b_idx, tgt_out[t_idx, b_idx]] += g[t_idx, b_idx]
        da = dc = d_x = d_s = None
        if pg is not None:
            dz_gen = (dp_y * (pv_y - copy_y) * pg[..., 0] * (1.0 - pg[..., 0]))[..., None]  # sigma' = p(1-p)
            d_cat = self.p_gen.backward(dz_gen)
            He, Hh = self.attention.key_size, self.attention.query_size
            dc, d_s, d_x = d_cat[..., :He], d_cat[..., He:He + Hh], d_cat[..., He + Hh:]
            da = (dp_y * (1.0 - pg[..., 0]))[..., None] * hit
        dcov = None
        if lam:  # min(a, cov): the smaller one gets the gradient, half each at a tie (torch.minimum)
            wl = lam * w[..., None]
            da_cov = wl * np.where(a < cov, 1.0, np.where(a == cov, 0.5, 0.0))
            dcov = wl * np.where(cov < a, 1.0, np.where(a == cov, 0.5, 0.0))
            da = da_cov if da is None else da + da_cov
        dt = self.dtype
        cast = lambda x: None if x is None else x.astype(dt, copy=False)  # noqa: E731
        d_dec_out, d_keys = self.attention.backward(self.out.backward(cast(d_logits)), cast(dc), cast(da), cast(dcov))
        if d_s is not None:
            d_dec_out = d_dec_out + d_s
        self._run_backward(d_dec_out, d_keys, d_x)

    def backward(self, d_logits) -> None:
        raise NotImplementedError("PointerGenerator: use loss(..., backward=True); the loss is not a "
                                  "cross-entropy of logits")

    # ------------------------------------------------------------------ inference
    def encode(self, src, src_lengths):
        """-> (memory (the attention's, extended source ids (B, S), V_ext), PointerState)."""
        src_in, src_ext = self._src(src)
        memory, state0 = super().encode(src_in, src_lengths)
        cov = np.zeros(src_ext.shape, self.dtype)
        return (memory, src_ext, extended_size(self.config.tgt_vocab, src_ext)), PointerState(state0, cov)

    def decode_step(self, tokens, state, memory):
        """One step: tokens (B,) extended ids -> (log P_t (B, V_ext), PointerState, attention weights (B, S))."""
        att_memory, src_ext, V_ext = memory
        x = self.tgt_embedding.params["weight"][in_vocab(tokens, self.config.tgt_vocab)]
        s, dec = self.decoder.step(x, state.dec)
        h_tilde, a, c, cov = self.attention.step(s, att_memory, state.cov)
        p_vocab = softmax(self.out.forward(h_tilde))
        self.out.release()
        pg = None
        if self.config.copy:
            pg = sigmoid(self.p_gen.forward(np.concatenate([c, s, x], axis=-1)))
            self.p_gen.release()
        p = final_distribution(p_vocab, a, pg, src_ext, V_ext)
        with np.errstate(divide="ignore"):
            return np.log(p), PointerState(dec, cov), a
