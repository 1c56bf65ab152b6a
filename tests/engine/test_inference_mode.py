"""forward(..., need_backward=False): inference without a tape computes what the taped forward computes, keeps
about one step of gates, caches and cell states, and refuses a backward with one line."""
from __future__ import annotations

import numpy as np
import pytest

import rnnkit
from rnnkit.engine.rows import Rows

VARIANTS = {
    "lstm-bi-2layer": lambda: rnnkit.LSTM(5, 12, num_layers=2, bidirectional=True, dtype=np.float64, seed=3),
    "peephole": lambda: rnnkit.LSTM(5, 12, dtype=np.float64, seed=3, peephole=True),
    "proj": lambda: rnnkit.LSTM(5, 12, num_layers=2, dtype=np.float64, seed=3, proj_size=7),
    "layernorm": lambda: rnnkit.LayerNormLSTM(5, 12, dtype=np.float64, seed=3),
    "gru-bi": lambda: rnnkit.GRU(5, 12, bidirectional=True, dtype=np.float64, seed=3),
    "gru-reset-before": lambda: rnnkit.GRU(5, 12, dtype=np.float64, seed=3, linear_before_reset=False),
    "rnn-relu": lambda: rnnkit.RNN(5, 12, num_layers=2, dtype=np.float64, seed=3, nonlinearity="relu"),
}


def _fields(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("plan", ["one_thread", "batch_shards"])
@pytest.mark.parametrize("where", ["loop", "gemm"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_inference_equals_the_taped_forward(monkeypatch, variant, where, plan):
    monkeypatch.setenv("RNNKIT_INPUT_PROJECTION", where)
    monkeypatch.setenv("RNNKIT_PLAN", plan)
    layer = VARIANTS[variant]()
    rng = np.random.default_rng(1)
    x, lengths = rng.standard_normal((7, 19, 5)), np.array([7, 2, 5] + [7] * 16)
    state0 = tuple(s + 0.1 for s in _fields(layer.forward(x[:1])[1]))  # a non-zero initial state
    state0 = state0 if len(state0) > 1 else state0[0]
    out, state = layer.forward(x, state0, lengths=lengths)
    out_i, state_i = layer.forward(x, state0, lengths=lengths, need_backward=False)
    np.testing.assert_array_equal(out_i, out, err_msg="out")
    for name, a, b in zip("hc", _fields(state_i), _fields(state)):
        np.testing.assert_array_equal(a, b, err_msg=f"final state {name}")
    with pytest.raises(RuntimeError, match=r"after forward\(\.\.\., need_backward=False\)"):
        layer.backward(np.ones_like(out))


def test_inference_keeps_one_step_and_a_taped_forward_after_it_trains(monkeypatch):
    monkeypatch.setenv("RNNKIT_INPUT_PROJECTION", "loop")
    layer = rnnkit.LSTM(5, 12, dtype=np.float64, seed=3)
    x = np.random.default_rng(2).standard_normal((30, 8, 5))
    out1, _ = layer.forward(x, need_backward=False)
    work = layer._workspace[0]
    assert "state.h" not in work, "h is the output: every step, in a buffer handed to the caller, not kept"
    assert work["state.c"].shape == (2, 8, 12), "c: the two steps the loop alternates between"
    assert work["cache.tanh_c"].shape == (1, 8, 12) and work["xw"].shape == (8, 48), "one step of cache and gates"
    kept = out1.copy()
    layer.forward(np.cos(x), need_backward=False)
    np.testing.assert_array_equal(out1, kept, err_msg="the next call wrote into the first call's output")
    out, _ = layer.forward(x)  # taped again: full buffers, and the backward equals a fresh layer's
    d_x, _ = layer.backward(np.cos(out))
    fresh = rnnkit.LSTM(5, 12, dtype=np.float64, seed=3)
    out_f, _ = fresh.forward(x)
    d_x_f, _ = fresh.backward(np.cos(out_f))
    np.testing.assert_array_equal(out, out_f, err_msg="out")
    np.testing.assert_array_equal(d_x, d_x_f, err_msg="d_x")
    for k, g in fresh.grads.items():
        np.testing.assert_array_equal(layer.grads[k], g, err_msg=f"grad {k}")


def test_inference_on_an_embeddings_rows_and_batch_first():
    layer = rnnkit.GRU(4, 6, batch_first=True, dtype=np.float64, seed=1)
    table = np.random.default_rng(3).standard_normal((5, 4))
    ids = np.random.default_rng(4).integers(0, 5, size=(3, 9))  # (B, T) with batch_first
    out, h = layer.forward(Rows(table, ids))
    out_i, h_i = layer.forward(Rows(table, ids), need_backward=False)
    np.testing.assert_array_equal(out_i, out, err_msg="out")
    np.testing.assert_array_equal(h_i, h, err_msg="final h")
