"""Tier 2: outputs, final states, d_x, d_state0 and every parameter gradient equal torch.nn.RNN/LSTM/GRU."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rnnkit
from conftest import assert_close, needs_torch, torch_layer_classes


def make_pair(kind, I, H, L, bidir, batch_first, bias=True, dtype=None, seed=0):
    torch = needs_torch()
    TORCH = torch_layer_classes(torch)
    torch.manual_seed(seed)
    dtype = torch.float64 if dtype is None else dtype
    kw = dict(num_layers=L, bidirectional=bidir, batch_first=batch_first, bias=bias, dtype=dtype)
    if kind == "rnn_relu":
        kw["nonlinearity"] = "relu"
    tm = TORCH[kind](I, H, **kw)
    if kind == "rnn_relu":  # keep relu networks away from the kink at 0 and from blow-up
        with torch.no_grad():
            for p in tm.parameters():
                p.mul_(0.5)
    return tm, rnnkit.from_torch(tm)


def run_both(kind, T, B, I, H, L, bidir, batch_first, lengths, seed, dtype=np.float64, with_state=True):
    torch = needs_torch()
    rng = np.random.default_rng(seed)
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    tm, layer = make_pair(kind, I, H, L, bidir, batch_first, dtype=tdt, seed=seed)
    D = 2 if bidir else 1
    shape = (B, T, I) if batch_first else (T, B, I)
    x = rng.standard_normal(shape).astype(dtype)
    is_lstm = kind == "lstm"
    h0 = rng.standard_normal((L * D, B, H)).astype(dtype) if with_state else None
    c0 = rng.standard_normal((L * D, B, H)).astype(dtype) if with_state else None
    state0 = ((h0, c0) if is_lstm else h0) if with_state else None
    out_shape = (B, T, D * H) if batch_first else (T, B, D * H)
    R = rng.standard_normal(out_shape).astype(dtype)
    Rh = rng.standard_normal((L * D, B, H)).astype(dtype)
    Rc = rng.standard_normal((L * D, B, H)).astype(dtype)

    # rnnkit
    out, state = layer.forward(x, state0, lengths=lengths)
    d_state = (Rh, Rc) if is_lstm else Rh
    d_x, d_state0 = layer.backward(R, d_state)

    # torch
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    args = []
    if with_state:
        h0t = torch.from_numpy(h0.copy()).requires_grad_(True)
        c0t = torch.from_numpy(c0.copy()).requires_grad_(True)
        args = [(h0t, c0t) if is_lstm else h0t]
    inp = xt
    if lengths is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.as_tensor(lengths), batch_first=batch_first,
                                                      enforce_sorted=False)
    tout, tstate = tm(inp, *args)
    if lengths is not None:
        tout, _ = torch.nn.utils.rnn.pad_packed_sequence(tout, batch_first=batch_first, total_length=T)
    th, tc = tstate if is_lstm else (tstate, None)
    loss = (tout * torch.from_numpy(R)).sum() + (th * torch.from_numpy(Rh)).sum()
    if is_lstm:
        loss = loss + (tc * torch.from_numpy(Rc)).sum()
    loss.backward()
    return dict(layer=layer, tm=tm, out=out, state=state, d_x=d_x, d_state0=d_state0, xt=xt, tout=tout,
                th=th, tc=tc, args=args, is_lstm=is_lstm)


def check(r, atol):
    layer, tm = r["layer"], r["tm"]
    assert_close("out", r["out"], r["tout"].detach().numpy(), atol)
    h = r["state"].h if r["is_lstm"] else r["state"]
    assert_close("h_n", h, r["th"].detach().numpy(), atol)
    if r["is_lstm"]:
        assert_close("c_n", r["state"].c, r["tc"].detach().numpy(), atol)
    assert_close("d_x", r["d_x"], r["xt"].grad.numpy(), atol)
    if r["args"]:
        if r["is_lstm"]:
            h0t, c0t = r["args"][0]
            assert_close("d_h0", r["d_state0"].h, h0t.grad.numpy(), atol)
            assert_close("d_c0", r["d_state0"].c, c0t.grad.numpy(), atol)
        else:
            assert_close("d_h0", r["d_state0"], r["args"][0].grad.numpy(), atol)
    grads = layer.grads
    for name, p in tm.named_parameters():
        assert_close(f"grad {name}", grads[name], p.grad.numpy(), atol)


configs = st.fixed_dictionaries(dict(
    T=st.integers(1, 20), B=st.integers(1, 5), I=st.integers(1, 16), H=st.integers(1, 16),
    L=st.integers(1, 3), bidir=st.booleans(), batch_first=st.booleans(),
    use_lengths=st.booleans(), seed=st.integers(0, 2**16),
))


def lengths_for(cfg):
    if not cfg["use_lengths"]:
        return None
    rng = np.random.default_rng(cfg["seed"])
    T, B = cfg["T"], cfg["B"]
    lengths = rng.integers(1, T + 1, size=B)
    lengths[0] = T  # full length always present
    if B > 1:
        lengths[-1] = 1  # and length 1
    return lengths


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn", "rnn_relu"])
@settings(max_examples=30, deadline=None, derandomize=True)
@given(cfg=configs)
def test_equals_torch_float64(kind, cfg):
    r = run_both(kind, cfg["T"], cfg["B"], cfg["I"], cfg["H"], cfg["L"], cfg["bidir"], cfg["batch_first"],
                 lengths_for(cfg), cfg["seed"], with_state=cfg["seed"] % 2 == 0)
    check(r, atol=1e-10)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("bidir", [False, True])
def test_equals_torch_float32(kind, bidir):
    r = run_both(kind, T=12, B=4, I=7, H=9, L=2, bidir=bidir, batch_first=False,
                 lengths=np.array([12, 5, 1, 9]), seed=3, dtype=np.float32)
    assert r["out"].dtype == np.float32 and r["d_x"].dtype == np.float32
    assert all(g.dtype == np.float32 for g in r["layer"].grads.values())
    check(r, atol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_no_bias_equals_torch(kind):
    torch = needs_torch()
    TORCH = torch_layer_classes(torch)
    torch.manual_seed(0)
    tm = TORCH[kind](4, 5, num_layers=2, bias=False, dtype=torch.float64)
    layer = rnnkit.from_torch(tm)
    assert not any("bias" in k for k in layer.params)
    x = np.random.default_rng(0).standard_normal((6, 3, 4))
    out, _ = layer.forward(x)
    assert_close("out", out, tm(torch.from_numpy(x))[0].detach().numpy(), 1e-12)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn", "rnn_relu"])
@pytest.mark.parametrize("bidir", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_to_torch_roundtrip_exact(kind, bidir, batch_first):
    torch = needs_torch()
    tm, layer = make_pair(kind, 3, 4, 2, bidir, batch_first)
    back = rnnkit.to_torch(layer)
    assert type(back) is type(tm) and back.batch_first == batch_first and back.bidirectional == bidir
    assert getattr(back, "nonlinearity", None) == getattr(tm, "nonlinearity", None)
    a, b = dict(tm.named_parameters()), dict(back.named_parameters())
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    assert torch.equal(tm(x)[0], back(x)[0])


def test_from_torch_float32_keeps_dtype():
    torch = needs_torch()
    tm = torch.nn.LSTM(3, 4)
    assert rnnkit.from_torch(tm).dtype == np.float32


def test_from_torch_rejects_unsupported():
    torch = needs_torch()
    with pytest.raises(TypeError, match="expected torch.nn.RNN, LSTM or GRU"):
        rnnkit.from_torch(torch.nn.Linear(2, 3))
    with pytest.raises(ValueError, match="torch.nn.LSTM has no peepholes"):
        rnnkit.to_torch(rnnkit.LSTM(3, 4, peephole=True))
    with pytest.raises(ValueError, match="has no recurrent_dropout"):
        rnnkit.to_torch(rnnkit.LSTM(3, 4, recurrent_dropout=0.1))
    with pytest.raises(TypeError, match="expected rnnkit.RNN, LSTM or GRU, got LayerNormLSTM"):
        rnnkit.to_torch(rnnkit.LayerNormLSTM(3, 4))
