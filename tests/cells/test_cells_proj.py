"""LSTM with projections (rnnkit.LSTM(proj_size=P)) equals torch.nn.LSTM(proj_size=P): outputs, states and
every gradient within 1e-10 (float64, copied weights); to_torch(from_torch(m)) exact; finite differences."""
import itertools

import numpy as np
import pytest

import rnnkit
from conftest import assert_close, assert_step_equals_forward, check_layer_gradients


@pytest.mark.slow
@pytest.mark.parametrize("L,bidir,use_lengths", list(itertools.product([1, 2], [False, True], [False, True])))
def test_proj_gradients_match_finite_differences(L, bidir, use_lengths):
    rng = np.random.default_rng(L + 2 * bidir)
    T, B, I, H, P, D = 5, 3, 3, 5, 3, 2 if bidir else 1
    layer = rnnkit.LSTM(I, H, num_layers=L, bidirectional=bidir, dtype=np.float64, seed=4, proj_size=P)
    x = rng.standard_normal((T, B, I))
    state = rnnkit.LSTMState(0.5 * rng.standard_normal((L * D, B, P)), 0.5 * rng.standard_normal((L * D, B, H)))
    lengths = np.array([5, 2, 1]) if use_lengths else None
    check_layer_gradients(layer, x, state, lengths, label=f"proj L={L} bidir={bidir} lengths={use_lengths}")


@pytest.mark.slow
@pytest.mark.parametrize("L,bidir,batch_first,use_lengths",
                         [(1, False, False, False), (2, True, False, True), (3, False, True, True),
                          (2, True, True, False)])
def test_proj_lstm_equals_torch(L, bidir, batch_first, use_lengths):
    torch = pytest.importorskip("torch")
    T, B, I, H, P, D = 6, 4, 3, 5, 2, 2 if bidir else 1
    torch.manual_seed(L)
    tm = torch.nn.LSTM(I, H, num_layers=L, bidirectional=bidir, batch_first=batch_first, proj_size=P,
                       dtype=torch.float64)
    layer = rnnkit.from_torch(tm)
    assert layer.proj_size == P and layer.h_size == P
    assert layer.params["weight_hr_l0"].shape == (P, H) and layer.params[f"weight_hh_l{L - 1}"].shape == (4 * H, P)
    rng = np.random.default_rng(L)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
    h0, c0 = rng.standard_normal((L * D, B, P)), rng.standard_normal((L * D, B, H))
    lengths = np.array([6, 2, 5, 1]) if use_lengths else None
    out, final = layer.forward(x, rnnkit.LSTMState(h0, c0), lengths)
    R, Rh, Rc = rng.standard_normal(out.shape), rng.standard_normal(h0.shape), rng.standard_normal(c0.shape)
    d_x, d_s0 = layer.backward(R, (Rh, Rc))

    xt, h0t, c0t = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    inp = xt
    if use_lengths:
        inp = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.as_tensor(lengths), batch_first=batch_first,
                                                      enforce_sorted=False)
    tout, (th, tc) = tm(inp, (h0t, c0t))
    if use_lengths:
        tout = torch.nn.utils.rnn.pad_packed_sequence(tout, batch_first=batch_first, total_length=T)[0]
    ((tout * torch.tensor(R)).sum() + (th * torch.tensor(Rh)).sum() + (tc * torch.tensor(Rc)).sum()).backward()
    for name, got, want in [("out", out, tout), ("h_n", final.h, th), ("c_n", final.c, tc), ("d_x", d_x, xt.grad),
                            ("d_h0", d_s0.h, h0t.grad), ("d_c0", d_s0.c, c0t.grad)]:
        assert_close(name, got, want.detach().numpy(), atol=1e-10)
    names = [n for n, _ in tm.named_parameters()]
    assert sorted(names) == sorted(layer.params)
    for name, p in tm.named_parameters():
        assert_close(f"grad {name}", layer.grads[name], p.grad.numpy(), atol=1e-10)


def test_proj_roundtrip_through_torch_is_exact_and_step_equals_forward():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm = torch.nn.LSTM(3, 6, num_layers=2, bidirectional=True, proj_size=4, dropout=0.25, dtype=torch.float64)
    back = rnnkit.to_torch(rnnkit.from_torch(tm))
    assert (back.proj_size, back.dropout, back.num_layers, back.bidirectional) == (4, 0.25, 2, True)
    assert back.training and not rnnkit.from_torch(tm.eval()).training, "the train/eval mode travels too"
    assert not rnnkit.to_torch(rnnkit.from_torch(tm)).training
    a, b = dict(tm.named_parameters()), dict(back.named_parameters())
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    layer = rnnkit.LSTM(3, 6, num_layers=2, dtype=np.float64, seed=1, proj_size=4)
    state = assert_step_equals_forward(layer, np.random.default_rng(2).standard_normal((5, 2, 3)), atol=1e-13)
    assert state.h.shape == (2, 2, 4) and state.c.shape == (2, 2, 6)
    for bad, msg in ((6, "must be smaller than hidden_size"), (-1, "expected an integer >= 0")):
        with pytest.raises(ValueError, match=f"^proj_size: .*{msg}"):
            rnnkit.LSTM(3, 6, proj_size=bad)


def test_proj_float32_is_close_to_float64():
    l64 = rnnkit.LSTM(3, 6, num_layers=2, bidirectional=True, dtype=np.float64, seed=5, proj_size=3)
    l32 = rnnkit.LSTM(3, 6, num_layers=2, bidirectional=True, dtype=np.float32, seed=5, proj_size=3)
    x = np.random.default_rng(0).standard_normal((7, 4, 3))
    lengths = np.array([7, 3, 5, 1])
    (o64, s64), (o32, s32) = l64.forward(x, lengths=lengths), l32.forward(x.astype(np.float32), lengths=lengths)
    assert_close("float32 out", o32, o64, atol=2e-5)
    assert_close("float32 c_n", s32.c, s64.c, atol=2e-5)
