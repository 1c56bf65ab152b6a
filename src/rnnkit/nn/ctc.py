"""Connectionist temporal classification (CTC) loss: forward-backward in log space, compiled.

``loss, d_log_probs = ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0,
reduction="mean", zero_infinity=False)`` has ``torch.nn.functional.ctc_loss``'s semantics.

Shapes: ``log_probs`` (T, B, C), log-softmax outputs; ``targets`` (B, S) padded label ids (or
1-D, the B target sequences concatenated, as torch also accepts); ``input_lengths`` (B,) with
1 <= T_b <= T; ``target_lengths`` (B,) with 0 <= S_b <= S.

For one sequence, the extended label sequence is l' = (blank, l_1, blank, l_2, ..., l_S, blank)
of length L = 2 S_b + 1.  With lp[t, c] = log_probs[t, b, c] and -inf for log 0:

    la[0, 0] = lp[0, blank],  la[0, 1] = lp[0, l'_1]
    la[t, s] = logsumexp(la[t-1, s], la[t-1, s-1], [la[t-1, s-2] if l'_s != blank and l'_s != l'_{s-2}])
               + lp[t, l'_s]
    lb[T_b-1, L-1] = lp[T_b-1, blank],  lb[T_b-1, L-2] = lp[T_b-1, l'_{L-2}]
    lb[t, s] = logsumexp(lb[t+1, s], lb[t+1, s+1], [lb[t+1, s+2] if l'_s != blank and l'_s != l'_{s+2}])
               + lp[t, l'_s]
    nll = -logsumexp(la[T_b-1, L-1], la[T_b-1, L-2])
    d nll / d lp[t, c] = -exp(logsumexp_{s: l'_s = c}(la[t, s] + lb[t, s]) - lp[t, c] + nll)

(la and lb both hold lp[t, l'_s], hence the one - lp[t, c]; zero for t >= T_b.)  docs/ctc.md
derives it.  ``d_log_probs`` is the gradient of the returned loss (for "none": of its sum)
with respect to ``log_probs`` itself; through a log-softmax it gives the gradient torch's
autograd gives for the logits.  (torch's own gradient for ``log_probs`` differs by a term that
the log-softmax cancels: it assumes normalised rows.)

An impossible alignment (T_b < S_b + number of repeats) has nll = inf and a NaN gradient, as in
torch; ``zero_infinity=True`` makes both zero.  :func:`ctc_nll` returns the per-sequence values
before reduction, so a caller can count the infinite ones.
"""
from __future__ import annotations

import math

import numpy as np

from rnnkit.kernels import jit

REDUCTIONS = ("none", "mean", "sum")


@jit
def _log_add(a, b):
    """log(exp(a) + exp(b)), exact at -inf."""
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    if a > b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


@jit
def _extended(targets, b, Sb, blank, ext):
    """l' of sequence b into ext[:2 Sb + 1]."""
    for s in range(2 * Sb + 1):
        ext[s] = blank if s % 2 == 0 else targets[b, s // 2]


@jit
def _alpha(lp, b, Tb, ext, L, blank, la):
    """Forward variables la[:Tb, :L] of sequence b (log space)."""
    la[:Tb, :L] = -np.inf
    la[0, 0] = lp[0, b, blank]
    if L > 1:
        la[0, 1] = lp[0, b, ext[1]]
    for t in range(1, Tb):
        for s in range(L):
            a = la[t - 1, s]
            if s >= 1:
                a = _log_add(a, la[t - 1, s - 1])
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                a = _log_add(a, la[t - 1, s - 2])
            if a != -np.inf:
                la[t, s] = a + lp[t, b, ext[s]]


@jit
def _beta(lp, b, Tb, ext, L, blank, lb):
    """Backward variables lb[:Tb, :L] of sequence b (log space, emission at t included)."""
    lb[:Tb, :L] = -np.inf
    lb[Tb - 1, L - 1] = lp[Tb - 1, b, ext[L - 1]]
    if L > 1:
        lb[Tb - 1, L - 2] = lp[Tb - 1, b, ext[L - 2]]
    for t in range(Tb - 2, -1, -1):
        for s in range(L):
            a = lb[t + 1, s]
            if s + 1 < L:
                a = _log_add(a, lb[t + 1, s + 1])
            if s + 2 < L and ext[s] != blank and ext[s] != ext[s + 2]:
                a = _log_add(a, lb[t + 1, s + 2])
            if a != -np.inf:
                lb[t, s] = a + lp[t, b, ext[s]]


@jit
def _ctc_batch(lp, targets, input_lengths, target_lengths, blank, nll, d_lp):
    """nll (B,) and d nll_b / d lp (T, B, C) for every sequence; lp float64 (T, B, C)."""
    T, B, C = lp.shape
    S = targets.shape[1]
    ext = np.empty(2 * S + 1, dtype=np.int64)
    la = np.empty((T, 2 * S + 1))
    lb = np.empty((T, 2 * S + 1))
    occ = np.empty(C)
    d_lp[:] = 0.0
    for b in range(B):
        Tb, Sb = input_lengths[b], target_lengths[b]
        L = 2 * Sb + 1
        _extended(targets, b, Sb, blank, ext)
        _alpha(lp, b, Tb, ext, L, blank, la)
        end = la[Tb - 1, L - 1]
        if L > 1:
            end = _log_add(end, la[Tb - 1, L - 2])
        nll[b] = -end
        if end == -np.inf:
            d_lp[:Tb, b, :] = np.nan
            continue
        _beta(lp, b, Tb, ext, L, blank, lb)
        for t in range(Tb):
            occ[:] = -np.inf
            for s in range(L):
                occ[ext[s]] = _log_add(occ[ext[s]], la[t, s] + lb[t, s])
            for c in range(C):
                if occ[c] != -np.inf:
                    d_lp[t, b, c] = -math.exp(occ[c] - lp[t, b, c] - end)


def _padded_targets(targets, target_lengths, B: int) -> np.ndarray:
    """Targets as (B, S) int64; 1-D concatenated targets are split by ``target_lengths``."""
    targets = np.asarray(targets)
    if targets.dtype.kind not in "iu":
        raise TypeError(f"targets: expected integer label ids, got dtype {targets.dtype.name}")
    if targets.ndim == 2:
        if targets.shape[0] != B:
            raise ValueError(f"targets: expected (B={B}, S) padded ids, got shape {targets.shape}")
        return np.ascontiguousarray(targets, dtype=np.int64)
    if targets.ndim != 1:
        raise ValueError(f"targets: expected (B, S) padded or 1-D concatenated ids, got shape {targets.shape}")
    if int(target_lengths.sum()) != targets.size:
        raise ValueError(f"targets: 1-D targets must hold sum(target_lengths) = {int(target_lengths.sum())} ids, "
                         f"got {targets.size}")
    out = np.zeros((B, max(int(target_lengths.max(initial=0)), 1)), dtype=np.int64)
    ends = np.cumsum(target_lengths)
    for b in range(B):
        out[b, :target_lengths[b]] = targets[ends[b] - target_lengths[b]:ends[b]]
    return out


def _lengths(name: str, values, B: int, low: int, high: int) -> np.ndarray:
    v = np.asarray(values)
    if v.shape != (B,) or v.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected ({B},) integers, got shape {v.shape} dtype {v.dtype.name}")
    if B and (v.min() < low or v.max() > high):
        raise ValueError(f"{name}: expected values in {low}..{high}, got range {v.min()}..{v.max()}")
    return v.astype(np.int64)


def ctc_nll(log_probs, targets, input_lengths, target_lengths, blank: int = 0):
    """Per-sequence negative log-likelihoods ``nll`` (B,) float64 and their gradients
    ``d_nll`` (T, B, C) float64 (column b is d nll_b / d log_probs[:, b]); inf / NaN where an
    alignment is impossible."""
    lp = np.asarray(log_probs)
    if lp.ndim != 3 or lp.dtype.kind != "f":
        raise ValueError(f"log_probs: expected float (T, B, C), got shape {lp.shape} dtype {lp.dtype.name}")
    T, B, C = lp.shape
    if not 0 <= blank < C:
        raise ValueError(f"blank: expected a class id in 0..{C - 1}, got {blank}")
    input_lengths = _lengths("input_lengths", input_lengths, B, 1, T)
    target_lengths = np.asarray(target_lengths)
    tl = _lengths("target_lengths", target_lengths, B, 0,
                  np.asarray(targets).shape[1] if np.asarray(targets).ndim == 2 else np.iinfo(np.int64).max)
    tg = _padded_targets(targets, tl, B)
    for b in range(B):
        row = tg[b, :tl[b]]
        if row.size and (row.min() < 0 or row.max() >= C or (row == blank).any()):
            raise ValueError(f"targets: sequence {b} holds ids outside 0..{C - 1} or the blank {blank}")
    lp64 = np.ascontiguousarray(lp, dtype=np.float64)
    nll = np.empty(B)
    d_nll = np.empty((T, B, C))
    _ctc_batch(lp64, tg, input_lengths, tl, int(blank), nll, d_nll)
    return nll, d_nll


def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank: int = 0, reduction: str = "mean",
             zero_infinity: bool = False):
    """CTC loss and its gradient, as ``torch.nn.functional.ctc_loss`` (see the module docstring).

    Returns ``(loss, d_log_probs)``: ``loss`` a float ("mean", "sum") or a (B,) array ("none");
    "mean" is mean_b(nll_b / max(S_b, 1)).  ``d_log_probs`` (T, B, C), in ``log_probs``' dtype,
    is the gradient of the loss (for "none": of its sum).
    """
    nll, d = ctc_nll(log_probs, targets, input_lengths, target_lengths, blank)
    loss, d, _ = reduce_ctc(nll, d, target_lengths, reduction, zero_infinity)
    dtype = np.asarray(log_probs).dtype
    return (loss.astype(dtype) if reduction == "none" else loss), d.astype(dtype, copy=False)


def reduce_ctc(nll: np.ndarray, d_nll: np.ndarray, target_lengths, reduction: str = "mean",
               zero_infinity: bool = False):
    """``(loss, d_log_probs, n_infinite)`` from :func:`ctc_nll`'s per-sequence values (changed in
    place): infinite nll and their NaN gradients zeroed with ``zero_infinity``, then reduced."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")
    bad = ~np.isfinite(nll)
    n_infinite = int(bad.sum())
    if zero_infinity and n_infinite:
        nll[bad] = 0.0
        d_nll[:, bad, :] = 0.0
    if reduction == "none":
        return nll, d_nll, n_infinite
    if reduction == "sum":
        return float(nll.sum()), d_nll, n_infinite
    scale = 1.0 / (np.maximum(np.asarray(target_lengths).astype(np.float64), 1.0) * max(nll.shape[0], 1))
    d_nll *= scale[None, :, None]
    return float((nll * scale).sum()), d_nll, n_infinite

def log_softmax_backward(d_log_probs: np.ndarray, log_probs: np.ndarray) -> np.ndarray:
    """d/dz of lp = log_softmax(z) (last axis): d_z = d_lp - softmax(z) * sum_c d_lp."""
    return d_log_probs - np.exp(log_probs) * d_log_probs.sum(axis=-1, keepdims=True)
