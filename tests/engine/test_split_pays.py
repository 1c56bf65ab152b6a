"""The big GEMMs' split below MIN_SPLIT, decided by measurement (rnnkit.engine.big_gemm.splits / split_pays): the
thresholds, the choice from the clock, and the same numbers either way (float64)."""
import numpy as np
import pytest

from rnnkit.engine import big_gemm
from rnnkit.engine.big_gemm import DOT, DOT_T, INTO


def _never_measured(*args, **kwargs):
    raise AssertionError("split_pays called outside [MIN_TRY_SPLIT, MIN_SPLIT)")


def test_splits_measures_only_between_the_two_thresholds(monkeypatch):
    monkeypatch.setattr(big_gemm, "split_pays", _never_measured)
    big = big_gemm.MIN_SPLIT // (256 * 256)
    assert big_gemm.splits(DOT, big, 256, 256, np.float32, 2), "from MIN_SPLIT: split"
    assert not big_gemm.splits(DOT, big, 256, 256, np.float32, 1), "one core: never split"
    small = big_gemm.MIN_TRY_SPLIT // (256 * 256) - 1
    assert not big_gemm.splits(INTO, small, 256, 256, np.float32, 2), "below MIN_TRY_SPLIT: never split"
    asked = []
    monkeypatch.setattr(big_gemm, "split_pays", lambda *args: asked.append(args) or True)
    mid = big_gemm.MIN_TRY_SPLIT // (256 * 256)
    assert big_gemm.splits(DOT_T, mid, 256, 256, np.dtype(np.float64), 2)
    assert asked == [(DOT_T, mid, 256, 256, "float64", 2)], "between the thresholds: measured for the shape"


@pytest.mark.parametrize("op", [DOT, DOT_T, INTO])
def test_split_pays_follows_the_clock(op):
    ticks = iter(range(100))  # every run takes one tick: equal, so no split (it must gain SPLIT_MARGIN)
    assert not big_gemm.split_pays.__wrapped__(op, 64, 16, 32, "float64", 2, clock=lambda: next(ticks))
    # the warm-up rep reads the clock once a run; then one thread (start, end) 10 ticks, split (start, end) 5
    stamps = [0, 1] + [t for r in range(4) for t in (100 * r, 100 * r + 10, 100 * r + 10, 100 * r + 15)]
    ticks = iter(stamps)
    assert big_gemm.split_pays.__wrapped__(op, 64, 16, 32, "float64", 2, clock=lambda: next(ticks))
    stamps = [0, 1] + [t for r in range(4) for t in (100 * r, 100 * r + 20, 100 * r + 20, 100 * r + 39)]
    ticks = iter(stamps)
    assert not big_gemm.split_pays.__wrapped__(op, 64, 16, 32, "float64", 2, clock=lambda: next(ticks)), \
        "split 0.95 x one thread's time: not enough"


@pytest.mark.parametrize("n", [2, 3])
def test_the_same_numbers_split_or_not(n):
    rng = np.random.default_rng(n)
    R, M, N = 101, 70, 37  # K = 70 > MICRO_MAX_K: BLAS blocks; the thin case below runs the micro-kernel
    for K in (M, 20):
        a, b = rng.standard_normal((R, K)), rng.standard_normal((K, N))
        for split in (False, True):
            out = np.empty((R, N))
            big_gemm._dot(a, b, out, n, split)
            np.testing.assert_allclose(out, a @ b, rtol=1e-13, atol=1e-12, err_msg=f"a @ b (K={K}, split={split})")
    a, b, g0 = rng.standard_normal((R, M)), rng.standard_normal((R, N)), rng.standard_normal((N, M))
    for split in (False, True):
        np.testing.assert_allclose(big_gemm._dot_t(a, b, n, split), b.T @ a, rtol=1e-13, atol=1e-12,
                                   err_msg=f"dW = (a^T b)^T (split={split})")
        g = g0.copy()
        big_gemm._into(g, a, b, n, split)
        np.testing.assert_allclose(g, g0 + b.T @ a, rtol=1e-13, atol=1e-12, err_msg=f"grad += b^T a (split={split})")



@pytest.mark.parametrize("op", ["dot", "dot_t", "add_t"])
def test_a_product_from_min_one_thread_holds_blas_to_one_thread(monkeypatch, op):
    """From 256K multiply-adds OpenBLAS threads a GEMM; while the loops hold BLAS to one thread its other threads fall
    asleep, and a threaded call then waits for them (3-4 ms for a 2.1M product, session 16).  Such a product that is
    not split runs with BLAS held to one thread; a smaller one leaves BLAS alone."""
    held = []
    real = big_gemm.blas_threads_at_most
    monkeypatch.setattr(big_gemm, "blas_threads_at_most", lambda n: held.append(n) or real(n))
    rng = np.random.default_rng(0)
    for R, expect in ((1024, 1), (64, None)):  # 1024 * 32 * 64 = 2.1M multiply-adds; 64 * 32 * 64 = 131K
        a, b = rng.standard_normal((R, 32)), rng.standard_normal((R, 64))
        held.clear()
        if op == "dot":
            big_gemm.dot(a, rng.standard_normal((32, 64)), cores=1)
        elif op == "dot_t":
            big_gemm.dot_t(a, b, cores=1)
        else:
            big_gemm.add_t(np.zeros((64, 32)), a, b, cores=1)
        if expect:
            assert held == [1], (op, R, held)
        else:  # BLAS left as it is
            assert held in ([], [None]), (op, R, held)
