"""Attention with hand-written backward: score functions, masked softmax, context, Luong's layer.

Shapes.  Inside this module everything is batch-major: queries ``q`` (B, T, Hq), keys ``k``
(B, S, Hk), scores and weights (B, T, S).  :class:`GlobalAttention`, the layer the models
use, takes and returns time-major arrays like the recurrent layers ((T, B, Hq), (S, B, Hk)).

Score functions (``SCORES``), for query q_t and key (= encoder output) k_s:

    dot       e_ts = q_t . k_s                                (Luong 2015; needs Hq = Hk)
    general   e_ts = q_t . (W_a k_s)            W_a: (Hq, Hk)   (Luong 2015)
    additive  e_ts = v . tanh(W_q q_t + W_k k_s + b_k)          (Bahdanau 2015; W_q (A, Hq),
                                                                 W_k (A, Hk), v (1, A))

Weights  a_ts = exp(e_ts) / sum_{s' valid} exp(e_ts')  over the valid source positions
(``mask`` (B, S) True where valid); padded positions get exactly a_ts = 0 and zero gradient.
Context  c_t = sum_s a_ts k_s  (the keys are also the values).

Each score object has ``forward(q, k)`` -> e (caching), ``backward(de)`` -> (dq, dk), and,
for decoding, ``keys(k)`` (the per-source part, computed once) and ``step(q, kp)``.
The backward equations are derived in docs/attention.md.
"""
from __future__ import annotations

import numpy as np

from rnnkit.checks.arrays import check_array
from rnnkit.engine.recurrent import as_rng
from rnnkit.module import Module
from rnnkit.nn.blocks import Linear


# ---------------------------------------------------------------- softmax and context
def masked_softmax(e: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """a = softmax(e) over the last axis (sources), 0 where ``mask`` is False.

    e: (B, T, S); mask: (B, S) bool or None (all valid).  Every row needs one valid source.
    """
    if mask is not None:
        e = np.where(mask[:, None, :], e, -np.inf)  # exp(-inf) = 0: padded weights are exactly 0
    e = e - e.max(axis=-1, keepdims=True)
    a = np.exp(e)
    a /= a.sum(axis=-1, keepdims=True)
    return a


def masked_softmax_backward(a: np.ndarray, da: np.ndarray) -> np.ndarray:
    """de = a * (da - sum_s a_s da_s); zero wherever a = 0 (padded sources)."""
    return a * (da - (a * da).sum(axis=-1, keepdims=True))


def attend(score, q: np.ndarray, k: np.ndarray, mask) -> tuple:
    """Scores, masked softmax and context: q (B, T, Hq), k (B, S, Hk) -> (c (B, T, Hk), a (B, T, S), cache)."""
    a = masked_softmax(score.forward(q, k), mask)
    return a @ k, a, (a, k)


def attend_backward(score, cache, dc: np.ndarray) -> tuple:
    """Backward of :func:`attend` for d context (B, T, Hk) -> (dq (B, T, Hq), dk (B, S, Hk))."""
    a, k = cache
    da = dc @ k.transpose(0, 2, 1)  # c = a k  =>  da = dc k^T
    dk_value = a.transpose(0, 2, 1) @ dc  # dk (as values) = a^T dc
    dq, dk_score = score.backward(masked_softmax_backward(a, da))
    return dq, dk_value + dk_score


# ---------------------------------------------------------------- score functions
class DotScore(Module):
    """e_ts = q_t . k_s.  No parameters; needs query_size == key_size."""

    def __init__(self, query_size: int, key_size: int, dtype=np.float32, seed=None):
        if query_size != key_size:
            raise ValueError(f"score 'dot': query size {query_size} must equal key size {key_size} "
                             f"(use 'general' or 'additive' otherwise)")
        self._params, self._grads, self._cache = {}, {}, None

    def keys(self, k):
        """The per-source part used by :meth:`step`: here the keys themselves (B, S, Hk)."""
        return k

    def step(self, q, kp):
        """One query per row: q (B, Hq), kp = keys(k) -> e (B, S)."""
        return (kp @ q[:, :, None])[:, :, 0]

    def forward(self, q, k):
        self._cache = (q, k)
        return q @ k.transpose(0, 2, 1)

    def backward(self, de):
        q, k = self._cache
        self._cache = None
        return de @ k, de.transpose(0, 2, 1) @ q  # dq = de k, dk = de^T q


class GeneralScore(Module):
    """e_ts = q_t . (W_a k_s); W_a is ``weight`` (Hq, Hk) of a bias-free Linear(Hk, Hq)."""

    def __init__(self, query_size: int, key_size: int, dtype=np.float32, seed=None):
        self.linear = Linear(key_size, query_size, bias=False, dtype=dtype, seed=seed)
        self._dot = DotScore(query_size, query_size)

    def keys(self, k):
        kp = self.linear.forward(k)
        self.linear.release()
        return kp

    def step(self, q, kp):
        return self._dot.step(q, kp)

    def forward(self, q, k):
        return self._dot.forward(q, self.linear.forward(k))

    def backward(self, de):
        dq, dkp = self._dot.backward(de)
        return dq, self.linear.backward(dkp)  # kp = k W_a^T  =>  dk = dkp W_a


class AdditiveScore(Module):
    """e_ts = v . tanh(W_q q_t + W_k k_s + b_k): ``query_proj`` Linear(Hq, A, no bias),
    ``key_proj`` Linear(Hk, A), ``v`` Linear(A, 1, no bias).  Cost O(B T S A)."""

    def __init__(self, query_size: int, key_size: int, attention_size: int | None = None,
                 dtype=np.float32, seed=None):
        rng = as_rng(seed)
        A = attention_size or query_size
        self.query_proj = Linear(query_size, A, bias=False, dtype=dtype, seed=rng)
        self.key_proj = Linear(key_size, A, dtype=dtype, seed=rng)
        self.v = Linear(A, 1, bias=False, dtype=dtype, seed=rng)
        self._u = None

    def keys(self, k):
        kp = self.key_proj.forward(k)
        self.key_proj.release()
        return kp

    def step(self, q, kp):
        qp = self.query_proj.forward(q)
        self.query_proj.release()
        u = np.tanh(qp[:, None, :] + kp)  # (B, S, A)
        e = self.v.forward(u)[..., 0]
        self.v.release()
        return e

    def forward(self, q, k):
        qp, kp = self.query_proj.forward(q), self.key_proj.forward(k)  # (B, T, A), (B, S, A)
        self._u = u = np.tanh(qp[:, :, None, :] + kp[:, None, :, :])  # (B, T, S, A)
        return self.v.forward(u)[..., 0]

    def backward(self, de):
        u, self._u = self._u, None
        du = self.v.backward(de[..., None])  # (B, T, S, A)
        dpre = du * (1.0 - u * u)  # tanh' = 1 - u^2
        return self.query_proj.backward(dpre.sum(axis=2)), self.key_proj.backward(dpre.sum(axis=1))


SCORES = {"dot": DotScore, "general": GeneralScore, "additive": AdditiveScore}
"""Score class by name."""


def make_score(kind: str, query_size: int, key_size: int, attention_size=None, dtype=np.float32, seed=None):
    """The score module ``kind`` ('dot', 'general' or 'additive')."""
    if kind not in SCORES:
        raise ValueError(f"score: expected one of {sorted(SCORES)}, got {kind!r}")
    if kind == "additive":
        return AdditiveScore(query_size, key_size, attention_size, dtype=dtype, seed=seed)
    return SCORES[kind](query_size, key_size, dtype=dtype, seed=seed)


def source_mask(lengths, S: int) -> np.ndarray:
    """(B, S) bool, True at positions s < lengths[b]."""
    return np.arange(S)[None, :] < np.asarray(lengths)[:, None]


# ---------------------------------------------------------------- Luong's global attention
class GlobalAttention(Module):
    """Luong et al. (2015) global attention over all decoder states at once.

    forward(queries (T, B, Hd), keys (S, B, He), mask (B, S) or None)
        -> (h_tilde (T, B, Hd), weights (T, B, S))
        e_ts = score(h_t, k_s);  a_t = masked softmax_s(e_t);  c_t = sum_s a_ts k_s
        h_tilde_t = tanh(W_c [c_t; h_t])     W_c = ``linear_out.weight`` (Hd, He + Hd), no bias
    backward(d_h_tilde (T, B, Hd)) -> (d_queries (T, B, Hd), d_keys (S, B, He))
        adds into ``grads``; the keys are the encoder outputs, so d_keys = d_encoder_outputs.
    memory(keys, mask) / step(query (B, Hd), memory) -> (h_tilde (B, Hd), weights (B, S))
        the same computation one decoder step at a time (decoding), without caches.
    Without input feeding, h_tilde_t does not feed the decoder, so the decoder runs as
    one scan over the target under teacher forcing.
    """

    def __init__(self, query_size: int, key_size: int, score: str = "general", attention_size=None,
                 dtype=np.float32, seed=None):
        rng = as_rng(seed)
        self.query_size, self.key_size, self.dtype = int(query_size), int(key_size), np.dtype(dtype)
        self.score = make_score(score, query_size, key_size, attention_size, dtype, rng)
        self.linear_out = Linear(key_size + query_size, query_size, bias=False, dtype=dtype, seed=rng)
        self._cache = None

    def _check(self, queries, keys, mask):
        check_array("queries", queries, (None, None, self.query_size), self.dtype)
        B = queries.shape[-2]
        check_array("keys", keys, (None, B, self.key_size), self.dtype)
        if mask is not None and np.shape(mask) != (B, keys.shape[0]):
            raise ValueError(f"mask: expected shape {(B, keys.shape[0])} (batch, sources), got {np.shape(mask)}")

    def forward(self, queries, keys, mask=None):
        self._check(queries, keys, mask)
        q, k = queries.transpose(1, 0, 2), keys.transpose(1, 0, 2)
        c, a, cache = attend(self.score, q, k, mask)
        h_tilde = np.tanh(self.linear_out.forward(np.concatenate([c, q], axis=-1)))  # (B, T, Hd)
        self._cache = (cache, h_tilde)
        return h_tilde.transpose(1, 0, 2), a.transpose(1, 0, 2)

    __call__ = forward

    def backward(self, d_h_tilde):
        if self._cache is None:
            raise RuntimeError("GlobalAttention.backward: called before forward or twice for one forward")
        cache, h_tilde = self._cache
        self._cache = None
        check_array("d_h_tilde", d_h_tilde, (h_tilde.shape[1], h_tilde.shape[0], self.query_size), self.dtype)
        d_pre = d_h_tilde.transpose(1, 0, 2) * (1.0 - h_tilde * h_tilde)  # tanh' = 1 - h_tilde^2
        d_cat = self.linear_out.backward(d_pre)
        dq_score, dk = attend_backward(self.score, cache, d_cat[..., : self.key_size])
        dq = dq_score + d_cat[..., self.key_size:]  # h_t enters both the score and [c_t; h_t]
        return dq.transpose(1, 0, 2), dk.transpose(1, 0, 2)

    def memory(self, keys, mask=None) -> tuple:
        """Per-source part for :meth:`step`: keys (S, B, He), mask (B, S) -> memory tuple."""
        self._check(np.zeros((1, keys.shape[1], self.query_size), self.dtype), keys, mask)
        k = keys.transpose(1, 0, 2)
        return k, self.score.keys(k), mask

    def step(self, query, memory):
        """One decoder step: query (B, Hd) -> (h_tilde (B, Hd), weights (B, S))."""
        k, kp, mask = memory
        a = masked_softmax(self.score.step(query, kp)[:, None, :], mask)[:, 0]  # (B, S)
        c = (a[:, None, :] @ k)[:, 0]
        h_tilde = np.tanh(self.linear_out.forward(np.concatenate([c, query], axis=-1)))
        self.linear_out.release()
        return h_tilde, a


# ---------------------------------------------------------------- pooling with a learned query
class AttentionPooling(Module):
    """Attention pooling of a sequence with a learned query u (``query``, (Hk,)).

    forward(keys (S, B, Hk), mask (B, S) or None) -> (pooled (B, Hk), weights (B, S))
        e_s = score(u, k_s);  a = masked softmax_s(e);  pooled = sum_s a_s k_s
        (with the 'additive' score this is Yang et al. 2016's v . tanh(W_k k_s + b + W_q u))
    backward(d_pooled (B, Hk)) -> d_keys (S, B, Hk); adds d_u = sum_b dq_b into ``grads``.
    Init: u ~ U(-1/sqrt(Hk), 1/sqrt(Hk)).
    """

    def __init__(self, key_size: int, score: str = "additive", attention_size=None, dtype=np.float32, seed=None):
        rng = as_rng(seed)
        self.key_size, self.dtype = int(key_size), np.dtype(dtype)
        b = 1.0 / np.sqrt(key_size)
        self._params = {"query": rng.uniform(-b, b, key_size).astype(dtype)}
        self._grads = {"query": np.zeros_like(self._params["query"])}
        self.score = make_score(score, key_size, key_size, attention_size, dtype, rng)
        self._cache = None

    def forward(self, keys, mask=None):
        check_array("keys", keys, (None, None, self.key_size), self.dtype)
        k = keys.transpose(1, 0, 2)
        q = np.broadcast_to(self._params["query"], (k.shape[0], 1, self.key_size))
        c, a, self._cache = attend(self.score, q, k, mask)
        return c[:, 0], a[:, 0]

    __call__ = forward

    def backward(self, d_pooled):
        if self._cache is None:
            raise RuntimeError("AttentionPooling.backward: called before forward or twice for one forward")
        cache, self._cache = self._cache, None
        dq, dk = attend_backward(self.score, cache, d_pooled[:, None, :])
        self._grads["query"] += dq.sum(axis=(0, 1))  # u is shared by every batch row
        return dk.transpose(1, 0, 2)
