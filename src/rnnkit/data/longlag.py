"""Generators for the classic long-time-lag benchmarks: the adding problem and the copy task.

Both take an ``np.random.Generator`` (no global seeding) and return time-major
arrays, the layout :class:`rnnkit.Recurrent` expects: ``(time, batch, features)``.

Adding problem (Hochreiter & Schmidhuber 1997, "Long Short-Term Memory", Experiment 4)
----------------------------------------------------------------------------------------
Each step is a pair ``(value, marker)``; ``value ~ U[-1, 1]``.  A sequence has a
random length ``L`` drawn uniformly from ``T .. T + T//10`` (inclusive).  Exactly two
pairs are marked (marker ``1``):

* the first one uniformly among the first 10 pairs (positions ``0..9``),
* the second uniformly among the still-unmarked pairs of the first ``T//2 - 1``
  (positions ``0 .. T//2 - 2`` minus the first one), so the two are distinct.

All other markers are ``0``, except the first pair (position 0) and the last pair
(position ``L - 1``) whose markers are ``-1`` when they are not marked.  As in the
paper ("in the rare case where the first pair gets marked, we set X1 to zero"),
a marked pair at position 0 has its value set to 0.  The last pair is never
marked because ``T//2 - 2 < T - 1``.  The target, given at the last valid
step only, is ``0.5 + (X1 + X2) / 4`` in ``[0, 1]``; a sequence counts as
correct when ``|prediction - target| < 0.04``.  Steps past ``L`` are zero
padding; pass ``lengths`` to the layer so the state at ``L - 1`` is the final one.

Copy memory task (Arjovsky, Shah & Bengio 2016, "Unitary Evolution RNNs", sec. 4.1)
--------------------------------------------------------------------------------
Categories ``0..9``: ``0`` blank, ``1..8`` symbols, ``9`` delimiter.  Input of
length ``T + 20``: 10 symbols drawn uniformly from ``1..8``, then ``T - 1``
blanks, the delimiter, then 10 blanks.  Target of the same length: ``T + 10``
blanks, then the 10 symbols.  The loss is the mean softmax cross-entropy over all
``T + 20`` outputs.  A memoryless strategy (blank for the first ``T + 10``
steps, uniform over the 8 symbols in the last 10) scores
``10 * ln(8) / (T + 20)`` nats: :func:`copy_baseline`.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

#: a prediction counts as correct when its absolute error is below this (H&S 1997)
ADDING_TOLERANCE = 0.04

COPY_BLANK, COPY_DELIMITER, COPY_CLASSES, COPY_SYMBOLS, COPY_LENGTH = 0, 9, 10, 8, 10


def _check_int(name: str, v, lo: int) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
        raise ValueError(f"{name}: expected an integer >= {lo}, got {v!r}")
    return int(v)


def _check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    return rng


class AddingBatch(NamedTuple):
    """One batch of the adding problem.

    x:         (T_max, B, 2) pairs (value, marker), zero past each length
    lengths:   (B,) int64, each in T .. T + T//10; T_max = lengths.max()
    target:    (B,) 0.5 + (X1 + X2) / 4
    positions: (B, 2) int64 positions of the two marked pairs (first, second)
    """

    x: np.ndarray
    lengths: np.ndarray
    target: np.ndarray
    positions: np.ndarray


def adding_batch(rng: np.random.Generator, T: int, batch: int, dtype=np.float32) -> AddingBatch:
    """Draw ``batch`` adding-problem sequences of minimal length ``T`` (see module docstring)."""
    rng = _check_rng(rng)
    T = _check_int("T", T, 11)  # first marker in 0..9 must not reach the last pair (L - 1 >= T - 1)
    B = _check_int("batch", batch, 1)
    lengths = rng.integers(T, T + T // 10 + 1, size=B).astype(np.int64)
    T_max = int(lengths.max())
    rows = np.arange(B)
    x = np.zeros((T_max, B, 2), dtype=np.float64)
    valid = np.arange(T_max)[:, None] < lengths[None, :]
    x[:, :, 0] = np.where(valid, rng.uniform(-1.0, 1.0, size=(T_max, B)), 0.0)
    x[0, :, 1] = -1.0
    x[lengths - 1, rows, 1] = -1.0
    p1 = rng.integers(0, 10, size=B)
    # second marker: uniform over positions 0..T//2-2 except p1 (one slot fewer when p1 is
    # among them; skip over p1)
    n2 = T // 2 - 1
    inside = p1 < n2
    p2 = rng.integers(0, n2 - inside, size=B)
    p2 = p2 + (inside & (p2 >= p1))
    for p in (p1, p2):
        x[p, rows, 1] = 1.0
    x[0, (p1 == 0) | (p2 == 0), 0] = 0.0  # H&S: a marked first pair has value 0
    target = 0.5 + (x[p1, rows, 0] + x[p2, rows, 0]) / 4.0
    return AddingBatch(x.astype(dtype), lengths, target.astype(dtype), np.stack([p1, p2], axis=1).astype(np.int64))


def adding_correct(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(B,) bool: ``|pred - target| < 0.04`` (the paper's criterion)."""
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"pred: expected shape {target.shape} (as target), got {pred.shape}")
    return np.abs(pred - target) < ADDING_TOLERANCE


class CopyBatch(NamedTuple):
    """One batch of the copy memory task.

    ids:     (T + 20, B) int64 input categories (0 blank, 1..8 symbols, 9 delimiter)
    target:  (T + 20, B) int64 target categories
    """

    ids: np.ndarray
    target: np.ndarray


def copy_batch(rng: np.random.Generator, T: int, batch: int) -> CopyBatch:
    """Draw ``batch`` copy-task sequences with delay ``T`` (see module docstring)."""
    rng = _check_rng(rng)
    T = _check_int("T", T, 1)
    B = _check_int("batch", batch, 1)
    n = COPY_LENGTH
    symbols = rng.integers(1, COPY_SYMBOLS + 1, size=(n, B))
    ids = np.full((T + 2 * n, B), COPY_BLANK, dtype=np.int64)
    ids[:n] = symbols
    ids[n + T - 1] = COPY_DELIMITER
    target = np.full_like(ids, COPY_BLANK)
    target[T + n:] = symbols
    return CopyBatch(ids, target)


def one_hot(ids: np.ndarray, n: int, dtype=np.float32) -> np.ndarray:
    """ids (...) ints in 0..n-1 -> (..., n) one-hot."""
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"ids: expected integer ids, got dtype {ids.dtype.name}")
    if ids.size and (ids.min() < 0 or ids.max() >= n):
        raise ValueError(f"ids: expected values in 0..{n - 1}, got range {ids.min()}..{ids.max()}")
    return np.eye(n, dtype=dtype)[ids]


def copy_baseline(T: int) -> float:
    """Cross-entropy (nats per output) of the memoryless strategy: ``10 ln 8 / (T + 20)``."""
    T = _check_int("T", T, 1)
    return COPY_LENGTH * float(np.log(COPY_SYMBOLS)) / (T + 2 * COPY_LENGTH)
