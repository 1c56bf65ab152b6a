"""Tier 3: properties of the layers (float64)."""
import numpy as np
import pytest

import rnnkit
from conftest import CELLS, LAYERS, assert_close

KINDS = list(CELLS)


def state_h(state):
    return state.h if isinstance(state, rnnkit.LSTMState) else state


@pytest.mark.parametrize("kind", KINDS)
def test_layer_equals_hand_written_cell_loop(kind, rng):
    layer = LAYERS[kind](3, 5, dtype=np.float64, seed=1)
    x = rng.standard_normal((7, 2, 3))
    out, _ = layer.forward(x)
    p = layer.params
    W_ih, W_hh, b_ih, b_hh = p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"], p["bias_hh_l0"]
    H = 5
    h, c = np.zeros((2, H)), np.zeros((2, H))
    sig = lambda a: 1 / (1 + np.exp(-a))
    for t in range(7):
        xw, hw = x[t] @ W_ih.T + b_ih, h @ W_hh.T + b_hh
        if kind == "rnn":
            h = np.tanh(xw + hw)
        elif kind == "lstm":
            a = xw + hw
            i, f, g, o = sig(a[:, :H]), sig(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]), sig(a[:, 3 * H:])
            c = f * c + i * g
            h = o * np.tanh(c)
        else:
            r, z = sig(xw[:, :H] + hw[:, :H]), sig(xw[:, H:2 * H] + hw[:, H:2 * H])
            n = np.tanh(xw[:, 2 * H:] + r * hw[:, 2 * H:])
            h = (1 - z) * n + z * h
        assert_close(f"out[{t}]", out[t], h, 1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("L", [1, 2])
def test_chunked_with_carried_state_equals_full_run(kind, L, rng):
    full = LAYERS[kind](4, 6, num_layers=L, dtype=np.float64, seed=2)
    a = LAYERS[kind](4, 6, num_layers=L, dtype=np.float64, seed=99)
    b = LAYERS[kind](4, 6, num_layers=L, dtype=np.float64, seed=98)
    a.load_params(full.params)
    b.load_params(full.params)
    x = rng.standard_normal((10, 3, 4))
    R = rng.standard_normal((10, 3, 6))
    out, st = full.forward(x)
    o1, s1 = a.forward(x[:4])
    o2, s2 = b.forward(x[4:], s1)
    assert_close("out", np.concatenate([o1, o2]), out, 1e-12)
    assert_close("h_n", state_h(s2), state_h(st), 1e-12)
    # BPTT across the chunk boundary: d_state0 of chunk 2 is d_state of chunk 1
    dx_full, _ = full.backward(R)
    dx2, ds1 = b.backward(R[4:])
    dx1, _ = a.backward(R[:4], ds1)
    assert_close("d_x", np.concatenate([dx1, dx2]), dx_full, 1e-12)
    for k, g in full.grads.items():
        assert_close(f"grad {k}", a.grads[k] + b.grads[k], g, 1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_step_equals_forward(kind, rng):
    layer = LAYERS[kind](3, 4, num_layers=2, dtype=np.float64, seed=3)
    x = rng.standard_normal((6, 2, 3))
    out, st = layer.forward(x)
    s = None
    for t in range(6):
        y, s = layer.step(x[t], s)
        assert_close(f"step y[{t}]", y, out[t], 1e-13)
    assert_close("step final h", state_h(s), state_h(st), 1e-13)


@pytest.mark.parametrize("kind", KINDS)
def test_t1_and_size_one_dims(kind):
    layer = LAYERS[kind](1, 1, dtype=np.float64, seed=0)
    x = np.array([[[0.3]]])
    out, st = layer.forward(x)
    assert out.shape == (1, 1, 1) and state_h(st).shape == (1, 1, 1)
    assert_close("out == h_n", out[0], state_h(st)[0], 0)
    d_x, d_s0 = layer.backward(np.ones_like(out))
    assert d_x.shape == (1, 1, 1) and state_h(d_s0).shape == (1, 1, 1)
    assert np.isfinite(d_x).all() and d_x[0, 0, 0] != 0


@pytest.mark.parametrize("kind", KINDS)
def test_batch_first_is_a_transpose(kind, rng):
    tm = LAYERS[kind](3, 4, bidirectional=True, dtype=np.float64, seed=5)
    bf = LAYERS[kind](3, 4, bidirectional=True, dtype=np.float64, seed=5, batch_first=True)
    x = rng.standard_normal((5, 2, 3))
    lengths = np.array([5, 3])
    o1, _ = tm.forward(x, lengths=lengths)
    o2, _ = bf.forward(x.transpose(1, 0, 2).copy(), lengths=lengths)
    assert_close("out", o2.transpose(1, 0, 2), o1, 0)
    R = rng.standard_normal(o1.shape)
    d1, _ = tm.backward(R)
    d2, _ = bf.backward(R.transpose(1, 0, 2).copy())
    assert_close("d_x", d2.transpose(1, 0, 2), d1, 0)


@pytest.mark.parametrize("kind", KINDS)
def test_padded_row_equals_row_run_alone(kind, rng):
    layer = LAYERS[kind](3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=6)
    x = rng.standard_normal((8, 3, 3))
    lengths = np.array([8, 5, 1])
    out, st = layer.forward(x, lengths=lengths)
    for b, n in enumerate(lengths):
        ob, sb = layer.forward(x[:n, b : b + 1].copy())
        assert_close(f"out row {b}", out[:n, b : b + 1], ob, 1e-12)
        assert np.all(out[n:, b] == 0), f"out: row {b} not zero past its length"
        assert_close(f"h_n row {b}", state_h(st)[:, b : b + 1], state_h(sb), 1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_close_to_float64(kind, rng):
    l64 = LAYERS[kind](5, 8, num_layers=2, dtype=np.float64, seed=7)
    l32 = LAYERS[kind](5, 8, num_layers=2, dtype=np.float32, seed=7)
    x = rng.standard_normal((20, 4, 5))
    o64, _ = l64.forward(x)
    o32, _ = l32.forward(x.astype(np.float32))
    assert o32.dtype == np.float32
    assert_close("out float32 vs float64", o32, o64, 1e-5)


def test_seed_reproducible_and_generator_accepted():
    a, b, c = rnnkit.LSTM(3, 4, seed=1), rnnkit.LSTM(3, 4, seed=1), rnnkit.LSTM(3, 4, seed=2)
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k])
    assert not np.array_equal(a.params["weight_hh_l0"], c.params["weight_hh_l0"])
    g = rnnkit.LSTM(3, 4, seed=np.random.default_rng(1))
    assert np.array_equal(g.params["weight_hh_l0"], a.params["weight_hh_l0"])


def test_pytorch_default_init_range():
    layer = rnnkit.GRU(3, 16, seed=0, dtype=np.float64)
    for k, p in layer.params.items():
        assert np.abs(p).max() <= 0.25 and np.abs(p).max() > 0.2, k  # U(-1/sqrt(16), 1/sqrt(16))


@pytest.mark.parametrize("kind,gate", [("lstm", 1), ("gru", 1)])
def test_orthogonal_init_and_forget_bias(kind, gate):
    H = 6
    layer = LAYERS[kind](3, H, init="orthogonal", dtype=np.float64, seed=0)
    W_hh = layer.params["weight_hh_l0"]
    for k in range(layer.cell.n_gates):
        blk = W_hh[k * H : (k + 1) * H]
        assert_close(f"W_hh block {k} orthogonal", blk @ blk.T, np.eye(H), 1e-12)
    b = layer.params["bias_ih_l0"] + layer.params["bias_hh_l0"]
    assert_close("forget bias", b[gate * H : (gate + 1) * H], np.ones(H), 0)
    assert np.all(np.delete(b, np.s_[gate * H : (gate + 1) * H]) == 0)
    fb = LAYERS[kind](3, H, forget_bias=3.0, dtype=np.float64, seed=0)
    assert_close("forget_bias=3", (fb.params["bias_ih_l0"] + fb.params["bias_hh_l0"])[gate * H : (gate + 1) * H],
                 np.full(H, 3.0), 0)


def test_grads_accumulate_until_zero_grad(rng):
    layer = rnnkit.LSTM(3, 4, dtype=np.float64, seed=0)
    x = rng.standard_normal((4, 2, 3))
    out, _ = layer.forward(x)
    layer.backward(np.ones_like(out))
    once = {k: g.copy() for k, g in layer.grads.items()}
    out, _ = layer.forward(x)
    layer.backward(np.ones_like(out))
    for k, g in layer.grads.items():
        assert_close(f"accumulated {k}", g, 2 * once[k], 1e-12)
    layer.zero_grad()
    assert all(not g.any() for g in layer.grads.values())


def test_record_state_grads_are_bptt_state_gradients(rng):
    """dL/dh_t recorded at step t equals d_state0 of a run that starts at t (chunking)."""
    layer = rnnkit.LSTM(3, 4, dtype=np.float64, seed=0)
    x = rng.standard_normal((6, 2, 3))
    R = rng.standard_normal((6, 2, 4))
    layer.forward(x)
    layer.backward(R, record_state_grads=True)
    rec = layer.state_grads[0]
    _, s2 = layer.forward(x[:3])
    layer.forward(x[3:], s2)
    _, d_s = layer.backward(R[3:])
    # d_state0 of the second chunk is dL/d(h_2, c_2); recorded h includes d_out at step 2 too
    assert_close("dL/dc_2", rec["c"][2], d_s.c[0], 1e-12)
    _, s3 = layer.forward(x[:2])
    layer.forward(x[2:], s3)
    _, d_s = layer.backward(R[2:])
    assert_close("dL/dh_1 (total)", rec["h"][1], d_s.h[0] + R[1], 1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bidir", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_returned_arrays_survive_later_calls(kind, bidir, padded, rng):
    """Buffers reused between calls never alias what a call returned (outputs, states, d_x, d_state0)."""
    layer = LAYERS[kind](3, 4, num_layers=2, bidirectional=bidir, dtype=np.float64, seed=8)
    fresh = LAYERS[kind](3, 4, num_layers=2, bidirectional=bidir, dtype=np.float64, seed=8)
    x1, x2 = rng.standard_normal((2, 6, 2, 3))
    lengths = np.array([6, 3]) if padded else None
    o1, s1 = layer.forward(x1, lengths=lengths)
    fields = lambda s: list(s) if isinstance(s, tuple) else [s]  # noqa: E731  (h, c) or h
    keep_o1, keep_s1 = o1.copy(), [a.copy() for a in fields(s1)]
    d1, ds1 = layer.backward(np.ones_like(o1))
    keep_d1 = d1.copy()
    o2, s2 = layer.forward(x2, s1)  # second call, fed the first call's state
    assert_close("first out after a second forward", o1, keep_o1, 0)
    for k, a in enumerate(fields(s1)):
        assert_close(f"first state[{k}] after a second forward", a, keep_s1[k], 0)
    layer.backward(np.ones_like(o2))
    assert_close("first d_x after a second backward", d1, keep_d1, 0)
    # and the second call computed what a fresh layer computes from the same inputs
    fo2, _ = fresh.forward(x2, s1)
    assert_close("second out == fresh layer", o2, fo2, 0)


@pytest.mark.parametrize("kind", KINDS)
def test_release_frees_tape_and_buffers(kind, rng):
    """release(): backward needs a new forward, the kept bytes drop to 0, results are unchanged."""
    from rnnkit.bench.memory import tape_bytes

    layer = LAYERS[kind](3, 4, num_layers=2, dtype=np.float64, seed=3)
    x = rng.standard_normal((5, 2, 3))
    out, _ = layer.forward(x)
    out = out.copy()
    kept = tape_bytes([layer._tape, layer._workspace], exclude=[x])
    assert kept > 0
    layer.release()
    assert tape_bytes([layer._tape, layer._workspace]) == 0
    with pytest.raises(RuntimeError, match="no forward pass"):
        layer.backward(np.ones_like(out))
    out2, _ = layer.forward(x)
    assert_close("out after release", out2, out, 0)
    d_x, _ = layer.backward(np.ones_like(out2))
    assert np.isfinite(d_x).all()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_forget_bias_is_refused(value):
    with pytest.raises(ValueError, match="forget_bias: expected a finite number"):
        rnnkit.LSTM(3, 4, forget_bias=value)
