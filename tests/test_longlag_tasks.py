"""Long-lag generators (adding problem, copy task) and their task classes."""
import math

import numpy as np
import pytest

from rnnkit.data.longlag import adding_batch, adding_correct, copy_batch, copy_baseline, one_hot


@pytest.mark.parametrize("T", [11, 20, 50, 100])
def test_adding_layout_matches_hochreiter_schmidhuber(T):
    b = adding_batch(np.random.default_rng(T), T, 3000, dtype=np.float64)
    x, L, y, pos = b
    B = len(L)
    assert x.shape == (L.max(), B, 2) and L.dtype == np.int64
    assert L.min() == T and L.max() == T + T // 10  # both ends of the length range occur
    rows = np.arange(B)
    valid = np.arange(x.shape[0])[:, None] < L[None, :]
    vals, marks = x[..., 0], x[..., 1]
    assert np.all(x[~valid] == 0)  # padding
    assert np.all(np.abs(vals[valid]) <= 1) and vals[valid].std() > 0.5  # U[-1,1]: std 0.577
    # exactly two markers equal to 1, at the recorded positions, distinct
    assert np.all((marks == 1).sum(axis=0) == 2)
    assert np.all(marks[pos[:, 0], rows] == 1) and np.all(marks[pos[:, 1], rows] == 1)
    assert np.all(pos[:, 0] != pos[:, 1])
    assert pos[:, 0].min() == 0 and pos[:, 0].max() == 9
    assert pos[:, 1].min() == 0 and pos[:, 1].max() == T // 2 - 2
    # the other markers: -1 at the first (unless marked) and last pair, 0 elsewhere
    first_marked = (pos == 0).any(axis=1)
    assert np.all(marks[0, ~first_marked] == -1)
    assert np.all(marks[L - 1, rows] == -1)
    other = valid.copy()
    other[0] = False
    other[L - 1, rows] = False
    other[pos[:, 0], rows] = False
    other[pos[:, 1], rows] = False
    assert np.all(marks[other] == 0)
    # a marked first pair has value 0 (the paper's rule); target formula
    assert first_marked.any() and np.all(vals[0, first_marked] == 0)
    assert np.array_equal(y, 0.5 + (vals[pos[:, 0], rows] + vals[pos[:, 1], rows]) / 4)
    assert 0 <= y.min() and y.max() <= 1


def test_adding_second_marker_uniform_and_reproducible():
    a = adding_batch(np.random.default_rng(7), 20, 20000)
    b = adding_batch(np.random.default_rng(7), 20, 20000)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    counts = np.bincount(a.positions[:, 1], minlength=9)
    assert len(counts) == 9  # positions 0..T/2-2 = 0..8
    assert counts.min() > 0.85 * counts.mean() and counts.max() < 1.15 * counts.mean()


def test_adding_correct_threshold():
    t = np.array([0.5, 0.5, 0.5])
    assert adding_correct(np.array([0.539, 0.461, 0.541]), t).tolist() == [True, True, False]
    with pytest.raises(ValueError, match="expected shape"):
        adding_correct(np.zeros(2), t)


def test_adding_rejects_bad_arguments():
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        adding_batch(0, 20, 4)
    with pytest.raises(ValueError, match="T: expected an integer >= 11"):
        adding_batch(np.random.default_rng(0), 10, 4)


def test_copy_layout_and_baseline():
    T, B = 7, 500
    ids, tgt = copy_batch(np.random.default_rng(0), T, B)
    assert ids.shape == tgt.shape == (T + 20, B)
    assert ids[:10].min() == 1 and ids[:10].max() == 8
    assert np.all(ids[10 : 10 + T - 1] == 0) and np.all(ids[10 + T - 1] == 9) and np.all(ids[10 + T :] == 0)
    assert np.all(tgt[: T + 10] == 0) and np.array_equal(tgt[T + 10 :], ids[:10])
    assert copy_baseline(100) == pytest.approx(10 * math.log(8) / 120)
    # the baseline is the loss of the memoryless strategy, computed with the real loss function
    from rnnkit.losses import softmax_cross_entropy
    p = np.zeros((T + 20, B, 10))
    p[: T + 10, :, 0] = 1.0
    p[T + 10 :, :, 1:9] = 1 / 8
    logits = np.log(np.maximum(p, 1e-300))
    loss, _ = softmax_cross_entropy(logits, tgt)
    assert loss == pytest.approx(copy_baseline(T), rel=1e-9)
    oh = one_hot(ids, 10)
    assert oh.shape == (T + 20, B, 10) and np.array_equal(oh.argmax(-1), ids) and np.all(oh.sum(-1) == 1)
