"""The compiled time loops: activation error bounds, float32 vs float64, threads, the cell protocol."""
import threading

import numpy as np
import pytest
from numba import njit

import rnnkit
from rnnkit import threads
from rnnkit.cells.protocol import Cell, HState
from rnnkit.kernels import stable_jit, rowjit, sigmoid_, tanh_
from rnnkit.engine.layer_types import LAYERS
from rnnkit.engine.recurrent import LayerBusyError, Recurrent

from conftest import assert_close
from conftest import fd_rel_error as rel_error, numeric_grad


@njit
def _activations(x, t, s):
    for k in range(x.shape[0]):
        t[k] = tanh_(x[k])
        s[k] = sigmoid_(x[k])


GRID = ((100, 32, 64, 128), (50, 64, 128, 256), (200, 16, 32, 64), (35, 20, 650, 650), (100, 1, 16, 32),
        (64, 128, 256, 512))
"""The benchmark's grid (T, B, I, H) (``rnnkit bench``; kept here: the harness is not a library module)."""


def _dense_float32_grid():
    """Every 512th float32 in [-20, 20] (2 x 2.1M points over every binade) plus the clamp's edges."""
    pos = np.arange(0, np.float32(20).view(np.int32), 512, dtype=np.int32).view(np.float32)
    edges = np.float32([7.9053111, 7.90531, 7.9054, 1e-30, 0.0, 3e38, np.inf])
    return np.concatenate([pos, edges, -pos, -edges])


@pytest.mark.slow
def test_float32_tanh_and_sigmoid_within_5e7_of_exact():
    x = _dense_float32_grid()
    t, s = np.empty_like(x), np.empty_like(x)
    _activations(x, t, s)
    x64 = x.astype(np.float64)
    err_t = np.abs(t.astype(np.float64) - np.tanh(x64))
    err_s = np.abs(s.astype(np.float64) - 0.5 * (1 + np.tanh(0.5 * x64)))
    assert err_t.max() <= 5e-7, f"fast tanh: max abs error {err_t.max():.3e} at x = {x[err_t.argmax()]!r}"
    assert err_s.max() <= 5e-7, f"fast sigmoid: max abs error {err_s.max():.3e} at x = {x[err_s.argmax()]!r}"
    assert np.all(np.abs(t) <= 1) and np.all((s >= 0) & (s <= 1)), "activations out of range"
    n = x.size // 2  # x[n:] = -x[:n]
    assert np.array_equal(t[n:], -t[:n]), "fast tanh is not odd"


def test_float64_activations_are_exact_libm():
    x = np.linspace(-30, 30, 100_001)
    t, s = np.empty_like(x), np.empty_like(x)
    _activations(x, t, s)
    assert_close("float64 tanh_", t, np.tanh(x), 1e-15)
    assert_close("float64 sigmoid_", s, 0.5 + 0.5 * np.tanh(0.5 * x), 1e-15)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("T,B,I,H", [(3,) + g[1:] for g in GRID])
def test_float32_within_1e5_of_float64_on_the_grid(kind, T, B, I, H):
    """The benchmark grid's shapes (T cut to 3): float32 (fast activations, sharded loops) vs float64."""
    x = np.random.default_rng(0).standard_normal((T, B, I))
    l64 = LAYERS[kind](I, H, dtype=np.float64, seed=0)
    l32 = LAYERS[kind](I, H, dtype=np.float32, seed=0)
    l32.load_params({k: v.astype(np.float32) for k, v in l64.params.items()})
    R = np.random.default_rng(1).standard_normal((T, B, H)) / np.sqrt(B * T)  # a loss of the size of a mean
    o64, s64 = l64.forward(x)
    o32, s32 = l32.forward(x.astype(np.float32))
    d64, _ = l64.backward(R)
    d32, _ = l32.backward(R.astype(np.float32))
    assert_close(f"{kind} out", o32, o64, 1e-5)
    assert_close(f"{kind} final h", s32.h if kind == "lstm" else s32, s64.h if kind == "lstm" else s64, 1e-5)
    assert_close(f"{kind} d_x", d32, d64, 1e-5)
    for name, g in l64.grads.items():
        assert_close(f"{kind} grad {name}", l32.grads[name], g, 1e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("bidir,use_lengths", [(False, False), (True, True)])
def test_batch_shards_compute_what_one_thread_computes(kind, bidir, use_lengths):
    T, B, I, H = 6, 9, 3, 5
    rng = np.random.default_rng(2)
    x, R = rng.standard_normal((T, B, I)), rng.standard_normal((T, B, 2 * H if bidir else H))
    lengths = rng.integers(1, T + 1, B) if use_lengths else None
    results = []
    for cores in (1, 2, 3):  # 1 thread; 2 shards (or the directions side by side); 3 shards of 3 rows
        layer = LAYERS[kind](I, H, num_layers=2, bidirectional=bidir, dtype=np.float64, seed=0)
        layer.cores = cores
        out, _ = layer.forward(x, lengths=lengths)
        d_x, _ = layer.backward(R, record_state_grads=True)
        results.append((out, d_x, dict(layer.grads), layer.state_grads[0]["h"]))
    assert threads.plan(B, H, 4 * H, 1, 8, 2).shards == ((0, 4), (4, 9))
    for cores, (out, d_x, grads, rec) in zip((2, 3), results[1:]):
        assert_close(f"out with {cores} cores", out, results[0][0], 1e-13)
        assert_close(f"d_x with {cores} cores", d_x, results[0][1], 1e-13)
        assert_close(f"recorded dL/dh with {cores} cores", rec, results[0][3], 1e-13)
        for name, g in grads.items():
            assert_close(f"grad {name} with {cores} cores", g, results[0][2][name], 1e-12)


def test_thread_plan_from_shapes_and_cores():
    assert threads.plan(32, 128, 512, 1, 4, 2) == threads.ThreadPlan(((0, 16), (16, 32)), True, 1)
    assert threads.plan(20, 650, 2600, 1, 4, 2).shards == ((0, 20),)  # big W_hh, 10-row shards: one
    assert threads.plan(128, 512, 2048, 1, 4, 2).shards == ((0, 64), (64, 128))  # 64 rows a shard
    assert threads.plan(32, 128, 512, 2, 4, 2) == threads.ThreadPlan(((0, 32),), True, 1)  # directions
    assert threads.plan(1, 32, 128, 1, 4, 2) == threads.ThreadPlan(((0, 1),), False, 1)
    assert threads.plan(32, 128, 512, 1, 4, 1).parallel is False


@pytest.mark.parametrize("call", ["forward", "backward", "step"])
def test_a_layer_used_from_two_threads_raises(call):
    layer = rnnkit.LSTM(3, 4, seed=0)
    x = np.zeros((2, 1, 3), np.float32)
    layer.forward(x)
    inner = {"forward": "_forward", "backward": "_backward", "step": "_step"}[call]
    started, release = threading.Event(), threading.Event()
    original = getattr(layer, inner)

    def held(*args):
        started.set()
        release.wait(10)
        return original(*args)

    setattr(layer, inner, held)
    args = {"forward": (x,), "backward": (np.ones((2, 1, 4), np.float32),), "step": (x[0],)}[call]
    t = threading.Thread(target=getattr(layer, call), args=args)
    t.start()
    try:
        assert started.wait(10)
        with pytest.raises(LayerBusyError, match="layer is in use by another thread; use one layer per thread"):
            layer.forward(x)
    finally:
        release.set()
        t.join()
    layer.forward(x)  # free again


def test_one_layer_per_thread_gives_one_thread_numbers():
    x = np.random.default_rng(3).standard_normal((20, 16, 8))
    layers = [rnnkit.GRU(8, 16, dtype=np.float64, seed=s) for s in range(4)]
    alone = [layer.forward(x)[0].copy() for layer in layers]
    outs = [None] * 4

    def run(k):
        for _ in range(5):
            outs[k] = layer_out = layers[k].forward(x)[0]
            assert np.array_equal(layer_out, alone[k])

    ts = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for k in range(4):
        assert_close(f"layer {k} out from its own thread", outs[k], alone[k], 0)


# ----------------------------------------------------------------------------- the cell protocol
@rowjit
def _scaled_row(a, ha, s, u, h):
    for j in range(h.shape[0]):
        u[j] = tanh_(a[j] + ha[j])
        h[j] = s[j] * u[j]


@stable_jit
def scaled_step(xw, hw, p, prev, new, cache):
    """h = s * tanh(xw + hw), s a per-unit parameter the cell owns; cache u = tanh(.)."""
    h, u, s = new[0], cache[0], p[0]
    for b in range(h.shape[0]):
        _scaled_row(xw[b], hw[b], s, u[b], h[b])


@stable_jit
def scaled_step_backward(d_new, gates, cache, prev, new, p, d_xw, d_hw, d_prev, dp):
    dh, u, s, ds = d_new[0], cache[0], p[0], dp[0]
    for b in range(dh.shape[0]):
        for j in range(dh.shape[1]):
            ds[j] += dh[b, j] * u[b, j]
            d_xw[b, j] = dh[b, j] * s[j] * (1 - u[b, j] * u[b, j])


class ScaledCell(Cell):
    """A cell with a parameter of its own: the loops take it without a change."""

    n_gates, gate_names, State, cache_fields, keeps_gates = 1, ("a",), HState, ("u",), False
    step, step_backward = staticmethod(scaled_step), staticmethod(scaled_step_backward)

    def own_params(self, input_size, hidden_size):
        return {"scale": (hidden_size,)}

    def init_own(self, name, shape, rng, hidden_size):
        return rng.uniform(0.5, 1.5, shape)


class ScaledRNN(Recurrent):
    cell_class = ScaledCell


@pytest.mark.slow
@pytest.mark.parametrize("cores", [1, 2])
def test_a_cell_with_its_own_parameter_passes_gradcheck(cores):
    T, B, I, H = 4, 8, 3, 4
    rng = np.random.default_rng(4)
    layer = ScaledRNN(I, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    layer.cores = cores
    assert "scale_l1_reverse" in layer.params
    x, R = rng.standard_normal((T, B, I)), rng.standard_normal((T, B, 2 * H))
    lengths = np.array([4, 3, 4, 1, 2, 4, 4, 3])

    def loss():
        return (layer.forward(x, lengths=lengths)[0] * R).sum()

    layer.zero_grad()
    loss()
    d_x, _ = layer.backward(R)
    for name, p in {"x": x, **layer.params}.items():
        analytic = d_x if name == "x" else layer.grads[name]
        err = rel_error(analytic, numeric_grad(loss, p))
        assert err <= 1e-6, f"{name}: relative error {err:.2e} vs finite differences"
    single = ScaledRNN(I, H, dtype=np.float64, seed=0)
    single.load_params({k: v for k, v in layer.params.items() if k.endswith("_l0")})
    assert_close("step of a cell with its own parameter", single.step(x[0])[0], single.forward(x[:1])[0][0], 1e-15)


def test_tape_is_a_named_structure():
    layer = rnnkit.LSTM(3, 4, num_layers=2, bidirectional=True, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    out, _ = layer.forward(x, lengths=np.array([5, 3]))
    tape = layer.tape
    assert len(tape.layers) == 2 and [len(lt.directions) for lt in tape.layers] == [2, 2]
    assert tape.layers[0].input.shape == (5, 2, 3) and tape.layers[1].input.shape == (5, 2, 8)
    rev = tape.layers[1].directions[1]
    assert rev.reverse and rev.states[1].shape == (6, 2, 4) and rev.gates.shape == (5, 2, 16)
    assert tape.keep.tolist() == [[False, False]] * 3 + [[False, True]] * 2
    assert_close("tape h of the last layer", np.concatenate([d.h_new() for d in tape.layers[1].directions], -1)[:, 0],
                 out[:, 0], 0)
    layer.backward(np.ones_like(out))
    assert layer.tape is None


@pytest.mark.slow
def test_compiled_loops_load_from_the_disk_cache_in_a_new_process():
    """numba ``cache=True``: a second process finds every loop of a cell on disk (none compiled again)."""
    import subprocess
    import sys

    code = ("import numpy as np, rnnkit\n"
            "from rnnkit.engine.scan import compiled_loops\n"
            "l = rnnkit.GRU(3, 4, num_layers=2, dtype=np.float64, seed=0)\n"
            "o, _ = l.forward(np.ones((3, 2, 3))); l.backward(np.ones_like(o)); l.step(np.ones((2, 3)))\n"
            "f = compiled_loops(l.cell.step, l.cell.step_backward)\n"
            "print(sum(sum(d.stats.cache_misses.values()) for d in f), sum(sum(d.stats.cache_hits.values()) for d in f))")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
    misses, hits = map(int, runs[1].stdout.split())
    assert (misses, hits) == (0, 3), f"second process: {misses} loops compiled again, {hits} loaded from the cache"
