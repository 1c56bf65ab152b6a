"""Additive attention with coverage (See, Liu & Manning 2017), hand-written backward.

Time-major at the boundary like :class:`rnnkit.models.attention.GlobalAttention` (of which this
is a subclass: the same ``score`` (an AdditiveScore: ``query_proj`` W_q (A, Hd), ``key_proj``
W_k (A, He) + b_k, ``v`` (1, A)) and ``linear_out`` W_c (Hd, He + Hd)), batch-major inside.
For decoder state s_t (a row of ``queries``), encoder output k_s (a row of ``keys``):

    cov_t    = sum_{t' < t} a_t'                   the coverage vector (B, S); cov_0 = 0
    u_ts     = tanh(W_q s_t + W_k k_s + b_k + w_cov * cov_ts)     ``w_cov`` (A,) (coverage only)
    e_ts     = v . u_ts
    a_t      = masked softmax_s(e_t)               (padded sources: exactly 0)
    c_t      = sum_s a_ts k_s
    h~_t     = tanh(W_c [c_t; s_t])

Coverage makes a_t depend on a_<t, so the T steps run in a loop (vectorised over B and S); the
decoder itself still runs as one scan (no input feeding).  Without coverage (``coverage=False``)
w_cov is absent and cov does not enter the score (Bahdanau's additive score).

forward(queries (T, B, Hd), keys (S, B, He), mask (B, S)) -> (h~ (T, B, Hd), a (T, B, S),
    c (T, B, He), cov (T, B, S)): cov[t] is cov_t, the coverage *before* step t.
backward(d_h_tilde, dc=None, da=None, dcov=None) -> (d_queries, d_keys): gradients of the
    four outputs (dc, da, dcov from other uses of them: the copy distribution, the coverage
    loss); u is recomputed per step instead of cached ((B, T, S, A) would not fit long sources).
memory(keys, mask) / step(query (B, Hd), memory, cov (B, S)) -> (h~, a, c, cov + a): decoding.
The backward is derived in docs/summarize.md.
"""
from __future__ import annotations

import numpy as np

from rnnkit.checks.arrays import check_array
from rnnkit.engine.recurrent import as_rng
from rnnkit.models.attention import GlobalAttention, masked_softmax, masked_softmax_backward


class CoverageAttention(GlobalAttention):
    """Luong's global attention with the additive score and an optional coverage term (module docstring)."""

    def __init__(self, query_size: int, key_size: int, attention_size=None, coverage: bool = True,
                 dtype=np.float32, seed=None):
        rng = as_rng(seed)
        super().__init__(query_size, key_size, "additive", attention_size, dtype=dtype, seed=rng)
        self.coverage = bool(coverage)
        A = self.score.v.in_features
        self._params, self._grads = {}, {}
        if self.coverage:  # w_cov ~ U(-1/sqrt(A), 1/sqrt(A)); cov is O(1) like the projections
            b = 1.0 / np.sqrt(A)
            self._params["w_cov"] = rng.uniform(-b, b, A).astype(dtype)
            self._grads["w_cov"] = np.zeros(A, dtype=dtype)

    def _w(self):
        return self._params["w_cov"] if self.coverage else np.zeros(self.score.v.in_features, self.dtype)

    def _scores(self, qp_t, kp, cov_t):
        """u (B, S, A) and e (B, S) of one step from W_q s_t (B, A), W_k k + b_k (B, S, A), cov_t (B, S)."""
        pre = qp_t[:, None, :] + kp
        if self.coverage:
            pre = pre + cov_t[:, :, None] * self._params["w_cov"]
        u = np.tanh(pre)
        return u, u @ self.score.v.params["weight"][0]

    def forward(self, queries, keys, mask=None):
        self._check(queries, keys, mask)
        # contiguous: numpy's matmul of strided 3-d views does not reach BLAS (10x slower)
        q, k = np.ascontiguousarray(queries.transpose(1, 0, 2)), np.ascontiguousarray(keys.transpose(1, 0, 2))
        B, T, S = q.shape[0], q.shape[1], k.shape[1]
        qp, kp = self.score.query_proj.forward(q), self.score.key_proj.forward(k)  # (B, T, A), (B, S, A)
        a, covs = np.zeros((B, T, S), self.dtype), np.zeros((B, T, S), self.dtype)
        cov = np.zeros((B, S), self.dtype)
        for t in range(T):
            covs[:, t] = cov
            _, e = self._scores(qp[:, t], kp, cov)
            a[:, t] = masked_softmax(e[:, None, :], mask)[:, 0]
            cov = cov + a[:, t]
        c = a @ k
        h_tilde = np.tanh(self.linear_out.forward(np.concatenate([c, q], axis=-1)))
        self._cache = (k, qp, kp, a, covs, mask, h_tilde)
        tm = lambda x: np.ascontiguousarray(x.transpose(1, 0, 2))  # noqa: E731  batch-major -> time-major
        return tm(h_tilde), tm(a), tm(c), tm(covs)

    __call__ = forward

    def backward(self, d_h_tilde, dc=None, da=None, dcov=None):
        if self._cache is None:
            raise RuntimeError("CoverageAttention.backward: called before forward or twice for one forward")
        k, qp, kp, a, covs, mask, h_tilde = self._cache
        self._cache = None
        B, T, S = a.shape
        check_array("d_h_tilde", d_h_tilde, (T, B, self.query_size), self.dtype)
        bm = lambda x: np.ascontiguousarray(x.transpose(1, 0, 2))  # noqa: E731  time-major -> batch-major
        d_pre = bm(d_h_tilde) * (1.0 - h_tilde * h_tilde)
        d_cat = self.linear_out.backward(d_pre)
        dc_all = d_cat[..., : self.key_size] + (0.0 if dc is None else bm(dc))
        dq = d_cat[..., self.key_size:]
        da_all = dc_all @ k.transpose(0, 2, 1) + (0.0 if da is None else bm(da))  # c = a k
        dk = a.transpose(0, 2, 1) @ dc_all
        v, w = self.score.v.params["weight"][0], self._w()
        dqp, dkp = np.zeros_like(qp), np.zeros_like(kp)
        dv, dw = np.zeros_like(v), np.zeros_like(w)
        g = np.zeros((B, S), self.dtype)  # d cov_{t+1}
        for t in range(T - 1, -1, -1):
            u, _ = self._scores(qp[:, t], kp, covs[:, t])
            de = masked_softmax_backward(a[:, t], da_all[:, t] + g)  # cov_{t+1} = cov_t + a_t
            dv += np.einsum("bs,bsa->a", de, u)
            dpre = de[:, :, None] * v * (1.0 - u * u)  # (B, S, A)
            dqp[:, t] = dpre.sum(axis=1)
            dkp += dpre
            g = g + dpre @ w + (0.0 if dcov is None else dcov[t])
            if self.coverage:
                dw += np.einsum("bsa,bs->a", dpre, covs[:, t])
        self.score.v.grads["weight"][0] += dv
        if self.coverage:
            self._grads["w_cov"] += dw
        dq = dq + self.score.query_proj.backward(dqp)
        dk = dk + self.score.key_proj.backward(dkp)
        return np.ascontiguousarray(dq.transpose(1, 0, 2)), np.ascontiguousarray(dk.transpose(1, 0, 2))

    def step(self, query, memory, cov=None):
        """One decoder step: query (B, Hd), cov (B, S) -> (h~ (B, Hd), a (B, S), c (B, He), cov + a)."""
        k, kp, mask = memory
        if cov is None:
            cov = np.zeros(kp.shape[:2], self.dtype)
        qp = self.score.query_proj.forward(query)
        self.score.query_proj.release()
        _, e = self._scores(qp, kp, cov)
        a = masked_softmax(e[:, None, :], mask)[:, 0]
        c = (a[:, None, :] @ k)[:, 0]
        h_tilde = np.tanh(self.linear_out.forward(np.concatenate([c, query], axis=-1)))
        self.linear_out.release()
        return h_tilde, a, c, cov + a
