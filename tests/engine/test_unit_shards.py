"""Unit shards (rnnkit.engine.unit_shards): inference split over the hidden units computes what batch shards
compute, is used only where it can be, and is chosen by its rule; the spinning barrier keeps threads in step."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import rnnkit
from rnnkit.engine import unit_shards
from rnnkit.engine.barrier import new_barrier, wait
from rnnkit.errors import SettingError
from rnnkit.kernels import jit

UNIT_LOCAL = {
    "lstm-2layer": lambda: rnnkit.LSTM(5, 13, num_layers=2, dtype=np.float64, seed=3),
    "gru": lambda: rnnkit.GRU(5, 13, dtype=np.float64, seed=3),
    "rnn-tanh": lambda: rnnkit.RNN(5, 13, dtype=np.float64, seed=3),
    "rnn-relu-nobias": lambda: rnnkit.RNN(5, 13, dtype=np.float64, seed=3, nonlinearity="relu", bias=False),
}
NEVER = {  # cells whose units meet within a step, or own parameters, or two directions
    "peephole": lambda: rnnkit.LSTM(5, 13, dtype=np.float64, seed=3, peephole=True),
    "proj": lambda: rnnkit.LSTM(5, 13, dtype=np.float64, seed=3, proj_size=7),
    "layernorm": lambda: rnnkit.LayerNormLSTM(5, 13, dtype=np.float64, seed=3),
    "gru-reset-before": lambda: rnnkit.GRU(5, 13, dtype=np.float64, seed=3, linear_before_reset=False),
    "bidirectional": lambda: rnnkit.LSTM(5, 13, bidirectional=True, dtype=np.float64, seed=3),
}


@pytest.fixture
def spy(monkeypatch):
    """Counts the unit-shard forwards."""
    calls = []
    real = unit_shards.unit_forward

    def counted(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(unit_shards, "unit_forward", counted)
    return calls


def _fields(state):
    return state if isinstance(state, tuple) else (state,)


def _inputs(layer, B=19):
    rng = np.random.default_rng(1)
    x, lengths = rng.standard_normal((7, B, 5)), np.array([7, 2, 5] + [7] * (B - 3))
    state0 = tuple(s + 0.1 for s in _fields(layer.forward(x[:1])[1]))  # a non-zero initial state
    return x, lengths, state0 if len(state0) > 1 else state0[0]


@pytest.mark.parametrize("where", ["loop", "gemm"])
@pytest.mark.parametrize("variant", list(UNIT_LOCAL))
def test_unit_shards_compute_what_batch_shards_compute(monkeypatch, spy, variant, where):
    monkeypatch.setenv("RNNKIT_INPUT_PROJECTION", where)
    monkeypatch.setenv("RNNKIT_PLAN", "batch_shards")
    layer = UNIT_LOCAL[variant]()
    x, lengths, state0 = _inputs(layer)
    monkeypatch.setenv("RNNKIT_UNIT_SHARDS", "off")
    out, state = layer.forward(x, state0, lengths=lengths, need_backward=False)
    assert not spy
    monkeypatch.setenv("RNNKIT_UNIT_SHARDS", "on")
    out_u, state_u = layer.forward(x, state0, lengths=lengths, need_backward=False)
    assert len(spy) == layer.num_layers, "every layer in unit shards"
    tol = 0 if where == "loop" else 1e-13  # the big GEMM per shard: BLAS may block its sums differently
    np.testing.assert_allclose(out_u, out, rtol=0, atol=tol, err_msg="out")
    for name, a, b in zip("hc", _fields(state_u), _fields(state)):
        np.testing.assert_allclose(a, b, rtol=0, atol=tol, err_msg=f"final state {name}")


def test_each_call_hands_over_its_own_output(monkeypatch, spy):
    """The unit shards write every step's h into a fresh buffer, the caller's: the next call writes elsewhere."""
    monkeypatch.setenv("RNNKIT_PLAN", "batch_shards")
    monkeypatch.setenv("RNNKIT_UNIT_SHARDS", "on")
    layer = rnnkit.GRU(5, 13, dtype=np.float64, seed=3)
    x = np.random.default_rng(5).standard_normal((6, 16, 5))
    out1, _ = layer.forward(x, need_backward=False)
    kept = out1.copy()
    out2, _ = layer.forward(np.cos(x), need_backward=False)
    assert len(spy) == 2 and "units.h" not in layer._workspace[0]
    np.testing.assert_array_equal(out1, kept, err_msg="the second call wrote into the first call's output")
    assert not np.shares_memory(out1, out2)


def test_a_shard_that_fails_before_its_loop_raises_instead_of_hanging(monkeypatch):
    """The other shard would wait at the barrier for ever: the failing one aborts it, and its error is raised."""
    monkeypatch.setenv("RNNKIT_PLAN", "batch_shards")
    monkeypatch.setenv("RNNKIT_UNIT_SHARDS", "on")
    real = unit_shards.packed_weights

    def fails_for_the_second_shard(W, backward, workspace=None, key=None, rows=None):
        if key is not None and key.startswith("units.1."):
            raise MemoryError("no room for shard 1's weights")
        return real(W, backward, workspace, key, rows)

    monkeypatch.setattr(unit_shards, "packed_weights", fails_for_the_second_shard)
    layer = rnnkit.LSTM(5, 13, dtype=np.float64, seed=3)
    x = np.random.default_rng(6).standard_normal((6, 16, 5))
    outcome = []

    def run():
        try:
            layer.forward(x, need_backward=False)
        except MemoryError as e:
            outcome.append(str(e))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive(), "the forward hung at the barrier"
    assert outcome == ["no room for shard 1's weights"]


def test_unit_shards_equal_torch(monkeypatch, spy):
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("RNNKIT_PLAN", "batch_shards")
    monkeypatch.setenv("RNNKIT_UNIT_SHARDS", "on")
    layer = rnnkit.LSTM(5, 21, num_layers=2, dtype=np.float64, seed=4)
    ref = torch.nn.LSTM(5, 21, num_layers=2, dtype=torch.float64)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(torch.from_numpy(layer.params[name]))
    x = np.random.default_rng(2).standard_normal((9, 16, 5))
    out, (h, c) = layer.forward(x, need_backward=False)
    assert spy, "unit shards ran"
    with torch.no_grad():
        out_t, (h_t, c_t) = ref(torch.from_numpy(x))
    for name, a, b in (("out", out, out_t), ("h_n", h, h_t), ("c_n", c, c_t)):
        np.testing.assert_allclose(a, b.numpy(), rtol=0, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("variant", list(NEVER))
def test_never_where_units_meet_or_two_directions(monkeypatch, spy, variant):
    monkeypatch.setenv("RNNKIT_PLAN", "batch_shards")
    monkeypatch.setenv("RNNKIT_UNIT_SHARDS", "on")
    layer = NEVER[variant]()
    x, _, _ = _inputs(layer)
    layer.forward(x, need_backward=False)
    assert not spy


def test_never_with_a_tape_one_thread_or_dropout(monkeypatch, spy):
    monkeypatch.setenv("RNNKIT_UNIT_SHARDS", "on")
    layer = rnnkit.LSTM(5, 13, dtype=np.float64, seed=3, dropout=0.0, recurrent_dropout=0.3)
    x = np.random.default_rng(1).standard_normal((7, 19, 5))
    monkeypatch.setenv("RNNKIT_PLAN", "batch_shards")
    layer.eval()
    layer.forward(x)  # taped: the backward reads the gates in the layer's order
    layer.train()
    layer.forward(x, need_backward=False, rng=np.random.default_rng(0))  # training mode: recurrent dropout
    monkeypatch.setenv("RNNKIT_PLAN", "one_thread")
    layer.eval()
    layer.forward(x, need_backward=False)  # one shard: nobody to split the units with
    assert not spy
    monkeypatch.setenv("RNNKIT_PLAN", "batch_shards")
    layer.forward(x, need_backward=False)
    assert len(spy) == 1, "eval, two shards, no tape: unit shards"


def test_forcing_is_checked(monkeypatch):
    monkeypatch.setenv("RNNKIT_UNIT_SHARDS", "yes")
    with pytest.raises(SettingError, match="RNNKIT_UNIT_SHARDS: expected one of on, off, got 'yes'"):
        unit_shards.forced()


def test_the_rule_takes_unit_shards_only_where_their_recurrent_product_gains(monkeypatch):
    """The decision of the measurement, with the timings given: unit shards at <= MARGIN x the batch shards'
    recurrent product; their xw inside the loop by in_loop's rule."""
    def batch(*args, **kwargs):
        return {"loop": 8e-6, "alone": 5e-6, "gemm": 4e-6}

    for alone, loop, expected in ((4.4e-6, 7e-6, (True, True)), (4.6e-6, 7e-6, (False, True)),
                                  (4.0e-6, 9.5e-6, (True, False))):
        monkeypatch.setattr(unit_shards, "time_projection", batch)
        monkeypatch.setattr(unit_shards, "time_units", lambda *a, **k: {"loop": loop, "alone": alone})
        got = unit_shards._measured.__wrapped__(T=50, B=64, S=2, I=128, H=256, n_gates=4, dtype="float32")
        assert got == expected, (alone, loop, got)


def test_the_measurement_times_both_products_with_the_barrier():
    t = unit_shards.time_units(B=8, S=2, I=6, H=16, n_gates=4, dtype=np.float32)
    assert set(t) == {"loop", "alone"}
    assert all(0 < v < 0.01 for v in t.values()), t


def test_unit_bounds_and_gate_rows():
    assert unit_shards.unit_bounds(13, 2) == [(0, 6), (6, 13)]
    assert unit_shards.unit_bounds(650, 3) == [(0, 216), (216, 433), (433, 650)]
    np.testing.assert_array_equal(unit_shards.gate_rows(3, 5, 1, 3), [1, 2, 6, 7, 11, 12])


@jit
def _rounds(bar, n_threads, me, log):
    """Each round: write my round number, meet, check every thread wrote it; returns the first bad round + 1."""
    for r in range(log.shape[1]):
        log[me, r] = r
        wait(bar, n_threads)
        for other in range(n_threads):
            if log[other, r] != r:
                return r + 1
    return 0


@pytest.mark.parametrize("n_threads", [2, 5])
def test_the_barrier_lets_no_thread_run_ahead(n_threads):
    """5 threads on a machine of fewer cores: the spinning threads must yield their cores for this to end."""
    bar, log = new_barrier(), np.full((n_threads, 3000), -1, np.int64)
    results = [None] * n_threads

    def run(me):
        results[me] = _rounds(bar, n_threads, me, log)

    threads = [threading.Thread(target=run, args=(me,)) for me in range(1, n_threads)]
    for t in threads:
        t.start()
    run(0)
    for t in threads:
        t.join()
    assert results == [0] * n_threads, "a thread saw a round another had not finished"
    assert bar[0] == 0 and bar[8] == log.shape[1], "count reset, one generation per round"
