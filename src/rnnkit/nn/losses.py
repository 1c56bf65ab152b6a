"""Losses and softmax.  Each loss returns ``(loss, d_input)`` in one call.

Reductions are means over the counted elements (masked-out positions do not
count), matching torch's ``reduction='mean'``.
"""
from __future__ import annotations

import math

import numpy as np

from rnnkit.cells.protocol import sigmoid
from rnnkit.kernels import jit


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis``."""
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def _check_same(name, a, b):
    if a.shape != b.shape:
        raise ValueError(f"{name}: expected shape {a.shape} (as the predictions), got {b.shape}")


@jit
def _xent_rows(z, y, scale, d):
    """Log-softmax and cross-entropy fused, one row at a time: z (N, V) logits, y (N,) targets;
    writes d = (softmax(z) - onehot(y)) * scale into d (which may be z itself) and returns
    sum_n -log softmax(z_n)[y_n] (float64).  Per row: m = max z, s = sum exp(z - m),
    -log p_y = log s - (z_y - m), d = exp(z - m) / s * scale, d_y -= scale."""
    total = 0.0
    for n in range(z.shape[0]):
        row, out = z[n], d[n]
        m = row[0]
        for c in range(1, row.shape[0]):
            m = max(m, row[c])
        zy = row[y[n]] - m
        s = row.dtype.type(0)
        for c in range(row.shape[0]):
            e = math.exp(row[c] - m)
            out[c] = e
            s += e
        total += math.log(s) - zy
        k = scale / s
        for c in range(row.shape[0]):
            out[c] *= k
        out[y[n]] -= scale
    return total


def softmax_cross_entropy(logits: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None,
                          label_smoothing: float = 0.0, weight: np.ndarray | None = None, out=None):
    """Mean cross-entropy of softmax(logits) against integer targets (torch's semantics).

    logits: (..., V);  targets: (...) ints in 0..V-1;  mask: (...) bool/0-1 or None
    (masked-out positions count nowhere, as torch's ``ignore_index``);
    ``label_smoothing`` eps in [0, 1]: the target distribution is (1-eps) onehot + eps/V;
    ``weight``: (V,) class weights w_c or None, as ``torch.nn.functional.cross_entropy(weight=)``.
    With p = softmax(z), m_n the mask, N = sum_n m_n w_{y_n}:

        loss = sum_n m_n [(1-eps) w_{y_n} (-log p_{n,y_n}) + eps/V sum_c w_c (-log p_{nc})] / N
        d_logits_nc = m_n [(1-eps) w_{y_n} (p_nc - [c = y_n]) + eps/V (p_nc sum_c' w_c' - w_c)] / N

    Without ``weight`` (w = 1) and eps = 0: d_logits = (softmax - onehot) * mask / count.
    Without mask, weight and smoothing the log-softmax and the loss are one compiled pass over the
    logits (:func:`_xent_rows`), writing d_logits into ``out`` (may be ``logits`` itself: then the
    logits are overwritten; None: a new array).
    """
    targets = np.asarray(targets)
    V = logits.shape[-1]
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"targets: expected shape {logits.shape[:-1]}, got {targets.shape}")
    if targets.dtype.kind not in "iu":
        raise TypeError(f"targets: expected integer class ids, got dtype {targets.dtype.name}")
    if targets.size and (targets.min() < 0 or targets.max() >= V):
        raise ValueError(f"targets: class ids must be in 0..{V - 1}, got range {targets.min()}..{targets.max()}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing: expected a number in [0, 1], got {label_smoothing!r}")
    if mask is None and weight is None and not label_smoothing and logits.dtype in (np.float32, np.float64):
        N = max(targets.size, 1)
        z, y = np.ascontiguousarray(logits).reshape(-1, V), np.ascontiguousarray(targets).reshape(-1)
        d = np.empty_like(z) if out is None else out.reshape(-1, V)
        total = _xent_rows(z, y, logits.dtype.type(1.0 / N), d)
        return total / N, d.reshape(logits.shape)
    logp = log_softmax(logits)
    nll = -np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    m, count = _mask_weights(mask, targets, logits.dtype)
    w_y = m  # per-position weight m_n w_{y_n}
    if weight is not None:
        weight = np.asarray(weight, dtype=logits.dtype)
        if weight.shape != (V,):
            raise ValueError(f"weight: expected one weight per class, shape ({V},), got {weight.shape}")
        w_y = m * weight[targets]
        total = float(w_y.sum())
        count = total if total > 0 else 1.0
    eps = float(label_smoothing)
    per = (1.0 - eps) * w_y * nll
    d = np.exp(logp)  # softmax
    if eps:  # smoothing term eps/V sum_c w_c (-log p_c), with d/dz_c = eps/V (p_c sum w - w_c)
        wc = np.ones(V, dtype=logits.dtype) if weight is None else weight
        per = per + (eps / V) * m * -(logp @ wc)
        smooth = (eps / V) * (d * wc.sum() - wc)
        d *= ((1.0 - eps) * w_y)[..., None]
        np.put_along_axis(d, targets[..., None], np.take_along_axis(d, targets[..., None], -1)
                          - ((1.0 - eps) * w_y)[..., None], axis=-1)
        d += m[..., None] * smooth
    else:
        np.put_along_axis(d, targets[..., None], np.take_along_axis(d, targets[..., None], -1) - 1.0, axis=-1)
        d *= w_y[..., None]
    loss = float(per.sum() / count)
    d /= count  # d/dz of the mean
    return loss, d


def _mask_weights(mask, like: np.ndarray, dtype):
    """(w, N): per-element weights (1, or the mask checked against ``like``'s shape) and the
    number of elements the mean is over (at least 1)."""
    if mask is None:
        w = np.ones(like.shape, dtype=dtype)
    else:
        mask = np.asarray(mask)
        _check_same("mask", like, mask)
        w = mask.astype(dtype)
    return w, max(float(w.sum()), 1.0)


def bce_with_logits(logits: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None):
    """Mean binary cross-entropy of sigmoid(logits) against targets in [0, 1].

    loss = mean(max(z,0) - z*y + log(1 + exp(-|z|)));  d/dz = (sigma(z) - y) / N.
    """
    targets = np.asarray(targets, dtype=logits.dtype)
    _check_same("targets", logits, targets)
    w, count = _mask_weights(mask, logits, logits.dtype)
    z = logits
    per = np.maximum(z, 0) - z * targets + np.log1p(np.exp(-np.abs(z)))
    loss = float((per * w).sum() / count)
    d = (sigmoid(z) - targets) * w / count
    return loss, d


def mse(pred: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None):
    """Mean squared error; d/dpred = 2 (pred - y) / N."""
    targets = np.asarray(targets, dtype=pred.dtype)
    _check_same("targets", pred, targets)
    w, count = _mask_weights(mask, pred, pred.dtype)
    err = pred - targets
    loss = float((err * err * w).sum() / count)
    return loss, 2.0 * err * w / count
