"""The input projection formed inside the time loop (rnnkit.engine.in_loop): the same numbers as the big GEMM
before the loop, for every cell variant, padding, shards, dropout and both directions; the choice and its
forcing."""
from __future__ import annotations

import numpy as np
import pytest

import rnnkit
from rnnkit.engine import in_loop
from rnnkit.engine.rows import Rows
from rnnkit.errors import SettingError

VARIANTS = {
    "lstm-bi-2layer": lambda **k: rnnkit.LSTM(5, 12, num_layers=2, bidirectional=True, dtype=np.float64, seed=3, **k),
    "peephole": lambda **k: rnnkit.LSTM(5, 12, dtype=np.float64, seed=3, peephole=True, **k),
    "proj": lambda **k: rnnkit.LSTM(5, 12, num_layers=2, dtype=np.float64, seed=3, proj_size=7, **k),
    "layernorm": lambda **k: rnnkit.LayerNormLSTM(5, 12, dtype=np.float64, seed=3, **k),
    "gru": lambda **k: rnnkit.GRU(5, 12, bidirectional=True, dtype=np.float64, seed=3, **k),
    "gru-reset-before": lambda **k: rnnkit.GRU(5, 12, dtype=np.float64, seed=3, linear_before_reset=False, **k),
    "rnn-relu": lambda **k: rnnkit.RNN(5, 12, dtype=np.float64, seed=3, nonlinearity="relu", **k),
    "lstm-no-bias": lambda **k: rnnkit.LSTM(5, 12, dtype=np.float64, seed=3, bias=False, **k),
}


def _run(monkeypatch, where: str, make, plan: str = "one_thread", train: bool = False, **kw):
    monkeypatch.setenv("RNNKIT_INPUT_PROJECTION", where)
    monkeypatch.setenv("RNNKIT_PLAN", plan)
    layer = make(**kw)
    if train:
        layer.train()
    x = np.random.default_rng(1).standard_normal((6, 19, 5))
    lengths = np.array([6, 3, 5] + [6] * 16)
    out, state = layer.forward(x, lengths=lengths, rng=np.random.default_rng(7))
    d_x, _ = layer.backward(np.cos(out))
    packed = any("W_ih_packed" in w for w in layer._workspace)
    return out, state, d_x, {k: g.copy() for k, g in layer.grads.items()}, packed


def _assert_same(a, b):
    (out0, s0, dx0, g0, _), (out1, s1, dx1, g1, _) = a, b
    np.testing.assert_allclose(out1, out0, rtol=0, atol=1e-13, err_msg="out")
    for f0, f1, name in zip(s0 if isinstance(s0, tuple) else (s0,), s1 if isinstance(s1, tuple) else (s1,), "hc"):
        np.testing.assert_allclose(f1, f0, rtol=0, atol=1e-13, err_msg=f"final state {name}")
    np.testing.assert_allclose(dx1, dx0, rtol=0, atol=1e-13, err_msg="d_x")
    for k in g0:
        np.testing.assert_allclose(g1[k], g0[k], rtol=0, atol=1e-12, err_msg=f"grad {k}")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_inside_the_loop_computes_what_the_big_gemm_computes(monkeypatch, variant):
    before = _run(monkeypatch, "gemm", VARIANTS[variant])
    inside = _run(monkeypatch, "loop", VARIANTS[variant])
    assert not before[-1] and inside[-1], "the forced choice was not the one run (W_ih packed or not)"
    _assert_same(before, inside)


@pytest.mark.parametrize("variant", ["lstm-bi-2layer", "gru"])
def test_inside_the_loop_on_batch_shards_with_dropout(monkeypatch, variant):
    """Two shards (each forms its own rows of xw_t), training mode with every dropout (the input dropout mask
    meets x before the projection, the weight dropout W_hh only)."""
    kw = dict(dropout=0.3, input_dropout=0.2, recurrent_dropout=0.25, weight_dropout=0.1)
    before = _run(monkeypatch, "gemm", VARIANTS[variant], plan="batch_shards", train=True, **kw)
    inside = _run(monkeypatch, "loop", VARIANTS[variant], plan="batch_shards", train=True, **kw)
    assert inside[-1]
    _assert_same(before, inside)


def test_inside_the_loop_equals_torch(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("RNNKIT_INPUT_PROJECTION", "loop")
    layer = rnnkit.LSTM(5, 12, num_layers=2, bidirectional=True, dtype=np.float64, seed=3)
    ref = torch.nn.LSTM(5, 12, num_layers=2, bidirectional=True, dtype=torch.float64)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(torch.from_numpy(layer.params[name]))
    x = np.random.default_rng(2).standard_normal((7, 9, 5))
    out, _ = layer.forward(x)
    xt = torch.from_numpy(x).requires_grad_(True)
    out_t, _ = ref(xt)
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=0, atol=1e-12, err_msg="out")
    d_x, _ = layer.backward(np.sin(out))
    out_t.backward(torch.sin(out_t.detach()))
    np.testing.assert_allclose(d_x, xt.grad.numpy(), rtol=0, atol=1e-12, err_msg="d_x")
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(layer.grads[name], p.grad.numpy(), rtol=0, atol=1e-11, err_msg=f"grad {name}")


def test_forcing_and_what_is_never_inside(monkeypatch):
    layer = rnnkit.LSTM(4, 8, dtype=np.float64, seed=0)
    x, W_ih, W_hh = np.zeros((3, 8, 4)), layer.params["weight_ih_l0"], layer.params["weight_hh_l0"]
    monkeypatch.setenv("RNNKIT_INPUT_PROJECTION", "loop")
    assert in_loop.chosen(layer.cell, x, W_ih, W_hh, ((0, None),))
    assert not in_loop.chosen(layer.cell, x[:, :2], W_ih, W_hh, ((0, None),)), "2 rows (streaming): BLAS"
    rows = Rows(np.zeros((5, 4)), np.zeros((3, 8), dtype=np.int64))
    assert not in_loop.chosen(layer.cell, rows, W_ih, W_hh, ((0, None),)), "an embedding's rows: the table"
    monkeypatch.setenv("RNNKIT_GEMM_ROWS", "0")
    assert not in_loop.chosen(layer.cell, x, W_ih, W_hh, ((0, None),)), "the loop's GEMM forced to BLAS"
    monkeypatch.setenv("RNNKIT_GEMM_ROWS", "packed")
    monkeypatch.setenv("RNNKIT_INPUT_PROJECTION", "gemm")
    assert not in_loop.chosen(layer.cell, x, W_ih, W_hh, ((0, None),))
    monkeypatch.setenv("RNNKIT_INPUT_PROJECTION", "inside")
    with pytest.raises(SettingError, match="RNNKIT_INPUT_PROJECTION: expected one of loop, gemm, got 'inside'"):
        in_loop.forced()


def test_the_measurement_times_all_three():
    t = in_loop.time_projection(M=8, S=2, TB=64, I=6, H=16, G=64, G_loop=64, rows=0, dtype=np.float32)
    assert set(t) == {"loop", "alone", "gemm"}
    assert all(0 < v < 0.01 for v in t.values()), t
