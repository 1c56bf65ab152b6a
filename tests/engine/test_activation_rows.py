"""The row activations of the kernels (``sigmoid_of_sum``, ``tanh_of_sum``, ``tanh_of``): float32 rows in vectors of
WIDE or NARROW floats, then of 4, 2 and 1, give the same bits as the scalar ``sigmoid_``/``tanh_`` wherever an
element falls; float64 rows are libm's tanh; NaN passes through."""
import math

import numpy as np
import pytest
from numba import njit

from rnnkit.kernels import NARROW, WIDE, sigmoid_, sigmoid_of_sum, tanh_, tanh_of, tanh_of_sum


@njit
def _rows(x, w, s, t, u, wide):
    sigmoid_of_sum(x, w, s, wide)
    tanh_of_sum(x, w, t, wide)
    tanh_of(x, None, u, wide)


@njit
def _scalars(x, w, s, t, u):
    for j in range(x.shape[0]):
        s[j] = sigmoid_(x[j] + w[j])
        t[j] = tanh_(x[j] + w[j])
        u[j] = tanh_(x[j])


@njit
def _in_place(a, w):
    sigmoid_of_sum(a, w, a, True)


def _inputs(n, dtype, start=0):
    rng = np.random.default_rng(n)
    x, w = (rng.standard_normal(n + start) * 6).astype(dtype), (rng.standard_normal(n + start) * 3).astype(dtype)
    edges = np.array([0.0, -0.0, 7.9053111, -7.9054, 30.0, -1e-30, 1e-3], dtype)  # zeros, the clamp, tiny
    x[::7] = np.resize(edges, len(x[::7]))
    return x[start:], w[start:]


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 31, 33, 100, 515])
@pytest.mark.parametrize("start", [0, 3])
@pytest.mark.parametrize("wide", [True, False])
def test_float32_rows_equal_the_scalar_activations_bit_for_bit(n, start, wide):
    x, w = _inputs(n, np.float32, start)  # start 3: views that begin off a 64-byte boundary
    rows = [np.empty(n, np.float32) for _ in range(3)]
    scalars = [np.empty(n, np.float32) for _ in range(3)]
    _rows(x, w, *rows, wide)
    _scalars(x, w, *scalars)
    for name, r, s in zip(("sigmoid_of_sum", "tanh_of_sum", "tanh_of"), rows, scalars):
        assert np.array_equal(r.view(np.int32), s.view(np.int32)), (
            f"{name} (n = {n}, start = {start}, wide = {wide}): first differing element "
            f"{np.flatnonzero(r.view(np.int32) != s.view(np.int32))[:1]}")


def test_float32_rows_close_to_exact_and_in_place():
    x, w = _inputs(1000, np.float32)
    a = x.copy()
    _in_place(a, w)
    exact = 0.5 + 0.5 * np.tanh(0.5 * (x.astype(np.float64) + w.astype(np.float64)))
    err = np.abs(a - exact).max()
    assert err <= 5e-7 + 1e-7, f"sigmoid_of_sum in place: max abs error {err:.3e}"
    assert (WIDE, NARROW) == (16, 8)


def test_float64_rows_are_libm():
    x, w = _inputs(300, np.float64)
    s, t, u = (np.empty(300) for _ in range(3))
    _rows(x, w, s, t, u, True)
    assert np.array_equal(t, np.array([math.tanh(v) for v in x + w])), "tanh_of_sum float64 is not libm's tanh"
    assert np.array_equal(u, np.array([math.tanh(v) for v in x])), "tanh_of float64 is not libm's tanh"
    assert np.array_equal(s, 0.5 + 0.5 * np.array([math.tanh(0.5 * v) for v in x + w])), "sigmoid_of_sum float64"


def test_nan_passes_through_the_float32_rows():
    x = np.zeros(40, np.float32)
    x[[3, 20, 39]] = np.nan  # one in each vector and in the scalar tail
    s, t, u = (np.empty(40, np.float32) for _ in range(3))
    _rows(x, np.zeros(40, np.float32), s, t, u, True)
    for name, r in (("sigmoid_of_sum", s), ("tanh_of_sum", t), ("tanh_of", u)):
        assert np.isnan(r[[3, 20, 39]]).all(), f"{name}: NaN lost"
        assert not np.isnan(np.delete(r, [3, 20, 39])).any(), f"{name}: NaN where there was none"
