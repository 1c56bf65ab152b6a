"""BLAS's GEMM on strided views with beta (rnnkit.engine.blas_call) and the weight gradients added straight into
the gradient (rnnkit.engine.big_gemm.add_t): the same numbers as NumPy, float64, whatever the way and the split."""
import numpy as np
import pytest

import rnnkit
from rnnkit.engine import big_gemm
from rnnkit.engine.blas_call import gemm_into, unit_strides


def layouts(x):
    """x as a row-major array, a transposed view of a row-major copy, and a block of a larger array."""
    big = np.zeros((x.shape[0] + 3, x.shape[1] + 5), x.dtype)
    big[2 : 2 + x.shape[0], 1 : 1 + x.shape[1]] = x
    return {"row-major": x.copy(), "transposed": np.ascontiguousarray(x.T).T,
            "block": big[2 : 2 + x.shape[0], 1 : 1 + x.shape[1]]}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("M,K,N", [(7, 5, 9), (1, 4, 6), (6, 1, 1), (33, 17, 65), (3, 0, 4)])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
def test_gemm_into_equals_numpy_for_every_layout(M, K, N, beta, dtype):
    rng = np.random.default_rng(M * 100 + K * 10 + N)
    a, b = rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
    c0 = rng.standard_normal((M, N)).astype(dtype)
    want = a.astype(np.float64) @ b.astype(np.float64) + beta * c0
    tol = 1e-13 if dtype == np.float64 else 1e-5 * max(1, K) ** 0.5
    for la, A in layouts(a).items():
        for lb, B in layouts(b).items():
            big = np.full((M + 2, N + 3), np.nan, dtype)  # c a block too: nothing around it written
            c = big[1 : 1 + M, 2 : 2 + N]
            c[...] = c0
            assert unit_strides(A, B, c)
            gemm_into(A, B, c, beta)
            np.testing.assert_allclose(c, want, rtol=tol, atol=tol, err_msg=f"c = a @ b + beta c, a {la}, b {lb}")
            assert np.isnan(big[0]).all() and np.isnan(big[:, :2]).all(), "c: wrote outside the block"


def test_gemm_into_with_beta_0_ignores_what_c_held():
    a, b = np.ones((2, 3)), np.ones((3, 2))
    c = np.full((2, 2), np.nan)
    gemm_into(a, b, c, 0.0)
    np.testing.assert_array_equal(c, np.full((2, 2), 3.0), err_msg="c")


def test_views_blas_cannot_take_are_refused():
    x = np.ones((4, 3))
    assert not unit_strides(np.broadcast_to(np.ones(3), (4, 3)), x.T, x), "a broadcast (stride 0) operand"
    assert not unit_strides(x[::2, ::2], x.T, np.ones((2, 4))), "no unit stride"
    assert not unit_strides(x[:, ::-1], x.T, x), "a negative stride"
    assert not unit_strides(x, x.T, np.ones((4, 4)).T), "c transposed"
    assert not unit_strides(x.astype(np.float32), x.T, x), "mixed dtypes"
    assert unit_strides(x, x.T, np.ones((4, 4)))


@pytest.mark.parametrize("how", [big_gemm.INTO, big_gemm.SUM, None])
@pytest.mark.parametrize("cores,split", [(1, False), (2, False), (2, True), (3, True)])
def test_add_t_adds_the_weight_gradient_whatever_the_way_and_split(monkeypatch, how, cores, split):
    monkeypatch.setattr(big_gemm, "MIN_ONE_THREAD", 0)
    monkeypatch.setattr(big_gemm, "MIN_MEASURED", 0)
    if split:
        monkeypatch.setattr(big_gemm, "MIN_SPLIT", 0)
    rng = np.random.default_rng(cores)
    R, M, N = 97, 13, 70
    a, b, g0 = rng.standard_normal((R, M)), rng.standard_normal((R, N)), rng.standard_normal((N, M))
    g = g0.copy()
    big_gemm.add_t(g, a, b, cores=cores, how=how)
    np.testing.assert_allclose(g, g0 + b.T @ a, rtol=1e-13, atol=1e-13, err_msg=f"grad += b^T a ({how})")
    g = g0.copy()
    big_gemm.add_t(g, a[:, ::-1], b, cores=cores, how=how)  # a stride BLAS can't take: NumPy's way
    np.testing.assert_allclose(g, g0 + b.T @ a[:, ::-1], rtol=1e-13, atol=1e-13, err_msg="grad, strided a")


def test_add_t_way_is_measured_and_small_products_go_straight_in():
    assert big_gemm.add_t_way(8, 4, 4, "float64", 2) == big_gemm.INTO, "below MIN_MEASURED: no temporary"
    ticks = iter(range(100))
    way = big_gemm.add_t_way.__wrapped__(64, 256, 256, "float32", 2, clock=lambda: next(ticks))
    assert way == big_gemm.SUM, "equal times: SUM (INTO must gain a margin)"
    ticks = iter([0, 0, 0, 10, 10, 40, 40, 50, 50, 80])  # warm-up starts, then INTO 10 and SUM 30 ticks twice
    assert big_gemm.add_t_way.__wrapped__(64, 256, 256, "float32", 2, clock=lambda: next(ticks)) == big_gemm.INTO
    assert big_gemm.add_t_way(64, 256, 256, "float32", 2) in (big_gemm.INTO, big_gemm.SUM)


MAKERS = {"lstm": lambda: rnnkit.LSTM(5, 12, num_layers=2, dtype=np.float64, seed=3),
          "gru_reset_before": lambda: rnnkit.GRU(5, 12, linear_before_reset=False, dtype=np.float64, seed=3),
          "linear": lambda: rnnkit.Linear(5, 9, dtype=np.float64, seed=3)}


def gradients(make, x) -> dict:
    layer = make()
    out = layer.forward(x)
    out = out[0] if isinstance(out, tuple) else out
    layer.backward(np.cos(out))
    return {k: g.copy() for k, g in layer.grads.items()}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_a_layer_computes_the_same_gradients_either_way(monkeypatch, name):
    """The weight gradients (dW_ih in backprop; dW_hh in the scan, with the rows a reset-before GRU multiplies
    itself; the Linear head's) added either way, split over threads: equal to 1e-13 (float64)."""
    monkeypatch.setattr(big_gemm, "MIN_ONE_THREAD", 0)
    monkeypatch.setattr(big_gemm, "MIN_SPLIT", 0)
    x = np.random.default_rng(2).standard_normal((6, 17, 5))
    got = {}
    for how in (big_gemm.INTO, big_gemm.SUM):
        monkeypatch.setattr(big_gemm, "add_t_way", lambda *args, how=how: how)
        got[how] = gradients(MAKERS[name], x)
    for k, g in got[big_gemm.INTO].items():
        np.testing.assert_allclose(g, got[big_gemm.SUM][k], rtol=1e-13, atol=1e-13, err_msg=f"{name} grad {k}")
