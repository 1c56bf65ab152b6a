"""rnnkit.engine.plans: every plan computes the same numbers (float64, 1e-13); the planner picks the fastest
candidate, caches it on disk per machine and says so once; RNNKIT_PLAN and ``layer.strategy`` force a plan.
Choices are made deterministic with a fake timer: no test depends on this machine's speed."""
import json

import numpy as np
import pytest

import rnnkit
from conftest import CELLS, LAYERS, assert_close
from rnnkit.engine import plans
from rnnkit.engine.plans import STRATEGIES, Planner, PlanKey, candidates
from rnnkit.engine.threads import ThreadPlan, use_cores


def _run(layer, x, lengths, state):
    layer.zero_grad()
    out, final = layer.forward(x, state=state, lengths=lengths)
    d_out = np.cos(np.arange(out.size, dtype=np.float64)).reshape(out.shape)
    d_x, d_state = layer.backward(d_out)
    return out.copy(), final, d_x, d_state, {k: g.copy() for k, g in layer.grads.items()}


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_every_plan_computes_the_same_numbers(cell, bidirectional, rng):
    T, B, I, H = 7, 9, 5, 6
    layer = LAYERS[cell](I, H, num_layers=2, bidirectional=bidirectional, dtype=np.float64, seed=3)
    x = rng.standard_normal((T, B, I))
    lengths = rng.integers(1, T + 1, size=B)
    D = 2 if bidirectional else 1
    h0 = rng.standard_normal((2 * D, B, H))
    state = rnnkit.LSTMState(h0, rng.standard_normal((2 * D, B, H))) if cell == "lstm" else h0
    with use_cores(2):
        assert candidates(B, H, 4 * H, D, 8, 2)["batch_shards"].parallel, "2 cores: the shards run side by side"
        results = {}
        for name in STRATEGIES:
            layer.strategy = name
            results[name] = _run(layer, x, lengths, state)
    ref = results["one_thread"]
    for name, (out, final, d_x, d_state, grads) in results.items():
        assert_close(f"{cell} {name}: out", out, ref[0], 1e-13)
        assert_close(f"{cell} {name}: d_x", d_x, ref[2], 1e-13)
        for k, (a, b) in enumerate(zip(np.atleast_1d(final), np.atleast_1d(ref[1]))):
            assert_close(f"{cell} {name}: final state field {k}", a, b, 1e-13)
        for k, (a, b) in enumerate(zip(np.atleast_1d(d_state), np.atleast_1d(ref[3]))):
            assert_close(f"{cell} {name}: d_state0 field {k}", a, b, 1e-13)
        for k in grads:
            assert_close(f"{cell} {name}: grad {k}", grads[k], ref[4][k], 1e-13)


def test_candidates_on_one_and_two_cores():
    one = ThreadPlan(((0, 32),), False, 1)
    assert set(candidates(32, 128, 512, 1, 4, 1).values()) == {one}, "one core: one thread, whatever the name"
    two = candidates(32, 128, 512, 1, 4, 2)
    assert two["one_thread"] == one
    assert two["blas_threads"] == ThreadPlan(((0, 32),), False, 2)
    assert two["batch_shards"] == ThreadPlan(((0, 16), (16, 32)), True, 1)
    assert candidates(32, 128, 512, 2, 4, 2)["batch_shards"] == ThreadPlan(((0, 32),), True, 1)  # directions
    assert candidates(1, 128, 512, 1, 4, 2)["batch_shards"] == ThreadPlan(((0, 1),), False, 1)  # B = 1: no shards


def _fake_timer(times, calls):
    def timer(layer, key, candidates_):
        calls.append(key)
        return {name: times[name] for name in candidates_}
    return timer


def test_the_planner_picks_the_fastest_caches_it_per_machine_and_says_so_once(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_PLAN", "measure")
    path = str(tmp_path / "cache" / "plans.json")
    calls, said = [], []
    times = {"one_thread": 3e-3, "blas_threads": 2e-3, "batch_shards": 1e-3, "heuristic": 1.5e-3}
    planner = Planner(path, timer=_fake_timer(times, calls), log=said.append, load=lambda: 0.0)
    monkeypatch.setattr(plans, "default_planner", lambda: planner)
    layer = rnnkit.GRU(4, 8, seed=0)
    with use_cores(2):
        assert layer.thread_plan(32, 20) == candidates(32, 8, 24, 1, 4, 2)["batch_shards"]
        layer.thread_plan(32, 20)  # memoised: not timed again
        layer.thread_plan(32, 30)  # T 20 and 30 round up to 32: the same key
        layer.thread_plan(16, 20)  # a new batch size: a new key
    assert [k.B for k in calls] == [32, 16], calls
    assert len(said) == 1 and "plans.json" in said[0], said
    data = json.load(open(path))
    (machine, entries), = data["machines"].items()
    assert machine == plans.machine_key() and "|" in machine  # CPU model | BLAS kernel
    key = PlanKey("GRUCell", 32, 32, 4, 8, 1, 1, "float32", 2).text()
    assert entries[key]["plan"] == "batch_shards" and entries[key]["ms"]["one_thread"] == 3.0, entries
    again = Planner(path, timer=_fake_timer(times, calls), log=said.append, load=lambda: 0.0)  # a new process: read from disk
    assert again.plan(layer, 20, 32, 2, candidates(32, 8, 24, 1, 4, 2)) == "batch_shards"
    assert len(calls) == 2, "a cached plan is not timed again"


def test_a_plan_can_be_forced(monkeypatch):
    layer = rnnkit.LSTM(4, 8, seed=0)
    with use_cores(2):
        monkeypatch.setenv("RNNKIT_PLAN", "blas_threads")
        assert layer.thread_plan(32) == ThreadPlan(((0, 32),), False, 2)
        layer.strategy = "one_thread"  # the layer's own setting wins over the environment
        assert layer.thread_plan(32) == ThreadPlan(((0, 32),), False, 1)
        layer.strategy = None
        monkeypatch.setenv("RNNKIT_PLAN", "fastest")
        with pytest.raises(ValueError, match="RNNKIT_PLAN: expected one of one_thread, blas_threads"):
            layer.thread_plan(32)
    with pytest.raises(ValueError, match="strategy: expected one of"):
        rnnkit.LSTM(4, 8, strategy="fast")
    assert rnnkit.GRU(4, 8, strategy="batch_shards").strategy == "batch_shards"


def test_measuring_uses_a_copy_and_leaves_the_layer_alone(monkeypatch):
    layer = rnnkit.LSTM(3, 5, num_layers=2, dtype=np.float64, seed=1)
    x = np.ones((4, 6, 3))
    out, _ = layer.forward(x)
    kept = [a.copy() for a in layer.saved_for_backward()]
    key = PlanKey.of(layer, 4, 6, 2)
    with use_cores(2):
        times = plans.time_candidates(layer, key, candidates(6, 5, 20, 1, 8, 2), budget_s=0.0)
    assert set(times) == set(STRATEGIES) and all(0 < t < float("inf") for t in times.values()), times
    assert not any(g.any() for g in layer.grads.values()), "planning added into the layer's gradients"
    assert all((a == b).all() for a, b in zip(layer.saved_for_backward(), kept)), "planning overwrote the tape"
    layer.backward(np.ones_like(out))  # the layer's own forward is still the one to differentiate
    assert layer.strategy is None


def test_an_unwritable_cache_is_said_and_the_plan_still_used(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_PLAN", "measure")
    blocker = tmp_path / "file"
    blocker.write_text("")
    said = []
    planner = Planner(str(blocker / "plans.json"), timer=_fake_timer(dict.fromkeys(STRATEGIES, 1.0), []),
                      log=said.append, load=lambda: 0.0)
    layer = rnnkit.RNN(4, 8, seed=0)
    assert planner.plan(layer, 10, 8, 2, candidates(8, 8, 8, 1, 4, 2)) == "heuristic"  # ties: no margin, heuristic
    assert any("plans not cached" in s for s in said), said


def test_a_plan_measured_on_a_busy_machine_is_not_cached(tmp_path):
    said, calls = [], []
    path = tmp_path / "plans.json"
    busy = Planner(str(path), timer=_fake_timer(dict.fromkeys(STRATEGIES, 1.0), calls), log=said.append,
                   load=lambda: 1000.0)
    layer = rnnkit.LSTM(4, 8, seed=0)
    options = candidates(8, 8, 32, 1, 4, 2)
    assert busy.plan(layer, 10, 8, 2, options) == "heuristic"  # ties: no margin over the heuristic
    assert busy.plan(layer, 10, 8, 2, options) == "heuristic" and len(calls) == 1, "kept for this process"
    assert not path.exists(), "a plan timed under load was cached"
    assert any("not cached" in s for s in said), said


def test_plans_on_blas_threads_are_timed_after_the_others():
    """BLAS's threads spin after a call: a plan timed right after blas_threads ran on a busy machine (measured, LSTM
    (100, 32, 64, 128): batch shards 14.1 ms there, 7.7 timed first)."""
    options = candidates(32, 128, 512, 1, 4, 2)
    names = ["one_thread", "blas_threads", "batch_shards", "heuristic"]
    assert plans.timing_phases(options, names) == [["one_thread", "batch_shards", "heuristic"], ["blas_threads"]]
    assert plans.timing_phases(options, ["one_thread"]) == [["one_thread"], []]


@pytest.mark.parametrize("fastest,share,chosen", [("batch_shards", 0.89, "batch_shards"),
                                                  ("one_thread", 0.95, "heuristic"),
                                                  ("blas_threads", 0.91, "heuristic")])
def test_another_plan_replaces_the_heuristic_only_by_a_margin(tmp_path, fastest, share, chosen):
    times = {"one_thread": 1.0, "blas_threads": 1.0, "batch_shards": 1.0, "heuristic": 1.0}
    times[fastest] = share
    planner = Planner(str(tmp_path / "plans.json"), timer=_fake_timer(times, []), log=lambda s: None,
                      load=lambda: 0.0)
    layer = rnnkit.LSTM(4, 8, seed=0)
    name, _ = planner.measure(layer, PlanKey.of(layer, 20, 32, 2), candidates(32, 8, 32, 1, 4, 2))
    assert name == chosen, (fastest, share)
