"""Tier 1: every gradient of the hand-written BPTT equals central finite differences (float64)."""
import itertools

import numpy as np
import pytest

from conftest import CELLS, LAYERS, fd_rel_error as rel_error, numeric_grad


def setup(kind, L, bidir, use_lengths, seed=0):
    rng = np.random.default_rng(seed)
    T, B, I, H = 5, 3, 3, 4
    layer = LAYERS[kind](I, H, num_layers=L, bidirectional=bidir, dtype=np.float64, seed=seed)
    D = 2 if bidir else 1
    x = rng.standard_normal((T, B, I))
    lengths = np.array([5, 2, 1]) if use_lengths else None
    is_lstm = kind == "lstm"
    h0 = rng.standard_normal((L * D, B, H)) * 0.5
    c0 = rng.standard_normal((L * D, B, H)) * 0.5
    R = rng.standard_normal((T, B, D * H))
    Rh, Rc = rng.standard_normal((2, L * D, B, H))

    def loss():
        out, st = layer.forward(x, (h0, c0) if is_lstm else h0, lengths=lengths)
        v = (out * R).sum() + ((st.h if is_lstm else st) * Rh).sum()
        if is_lstm:
            v += (st.c * Rc).sum()
        return v

    return layer, x, h0, c0, R, Rh, Rc, lengths, is_lstm, loss


@pytest.mark.parametrize("kind,L,bidir,use_lengths",
                         list(itertools.product(CELLS, [1, 2], [False, True], [False, True])))
def test_gradients_match_finite_differences(kind, L, bidir, use_lengths):
    layer, x, h0, c0, R, Rh, Rc, lengths, is_lstm, loss = setup(kind, L, bidir, use_lengths)
    layer.zero_grad()
    loss()
    d_x, d_s0 = layer.backward(R, (Rh, Rc) if is_lstm else Rh)
    checks = {"d_x": (d_x, x), "d_h0": (d_s0.h if is_lstm else d_s0, h0)}
    if is_lstm:
        checks["d_c0"] = (d_s0.c, c0)
    for name, p in layer.params.items():
        checks[f"grad {name}"] = (layer.grads[name], p)
    for name, (analytic, arr) in checks.items():
        num = numeric_grad(loss, arr)
        err = rel_error(analytic, num)
        assert err <= 1e-6, f"{name}: relative error {err:.2e} vs finite differences ({kind}, L={L}, bidir={bidir})"
        assert np.abs(analytic).max() > 0 or np.abs(num).max() < 1e-9, f"{name}: gradient is all zero"
    if use_lengths:  # padded inputs get exactly zero gradient
        for b, n in enumerate(lengths):
            assert np.all(d_x[n:, b] == 0), f"d_x: nonzero gradient in padding of row {b}"


def test_gradcheck_detects_a_wrong_gradient():
    """The checker itself can fail: corrupt one gradient and it must be caught."""
    layer, x, h0, c0, R, Rh, Rc, lengths, is_lstm, loss = setup("lstm", 1, False, False)
    loss()
    layer.backward(R, (Rh, Rc))
    g = layer.grads["weight_hh_l0"].copy()
    g[3, 1] *= 1.01
    assert rel_error(g, numeric_grad(loss, layer.params["weight_hh_l0"])) > 1e-6
