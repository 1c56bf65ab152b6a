"""Regularisation: dropout between layers (torch.nn.LSTM(dropout=p) with the same masks, 1e-10), variational
input and recurrent dropout, DropConnect on W_hh, embedding dropout.  Exact backward with a fixed mask
(finite differences), train/eval modes, masks from the generator passed in."""
import numpy as np
import pytest

import rnnkit
from conftest import assert_close, check_layer_gradients

KINDS = ["dropout", "input_dropout", "recurrent_dropout", "weight_dropout", "all"]
LAYERS = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU, "rnn": rnnkit.RNN, "lnlstm": rnnkit.LayerNormLSTM}


def rates(kind, p=0.4):
    names = KINDS[:4] if kind == "all" else [kind]
    return {n: p for n in names}


def fixed_rng():
    return {"rng": np.random.default_rng(5)}


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("L,bidir,use_lengths", [(2, True, True), (2, False, False), (1, True, True)])
def test_dropout_gradients_match_finite_differences(cell, kind, L, bidir, use_lengths):
    if kind == "dropout" and L == 1:
        pytest.skip("dropout between layers needs two layers")
    T, B, I, H, D = 5, 3, 3, 4, 2 if bidir else 1
    layer = LAYERS[cell](I, H, num_layers=L, bidirectional=bidir, dtype=np.float64, seed=2, **rates(kind))
    rng = np.random.default_rng(L + 3 * bidir)
    x = rng.standard_normal((T, B, I))
    state = 0.5 * rng.standard_normal((2, L * D, B, H))
    state = rnnkit.LSTMState(*state) if cell == "lstm" else state[0]
    lengths = np.array([5, 2, 1]) if use_lengths else None
    layer.eval()
    out_eval = layer.forward(x, state, lengths)[0].copy()
    layer.train()
    out = layer.forward(x, state, lengths, **fixed_rng())[0]
    assert np.abs(out - out_eval).max() > 1e-3, f"{kind}: training forward equals the eval forward"
    check_layer_gradients(layer, x, state, lengths, forward_kw=fixed_rng,
                          label=f"{cell} {kind} L={L} bidir={bidir} lengths={use_lengths}")


@pytest.mark.slow
def test_dropout_with_the_other_cells_matches_finite_differences():
    """The RNN (no gates kept) and the LayerNorm LSTM (d_hw != d_xw) with every kind at once."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 2, 3))
    for cell in ("rnn", "lnlstm"):
        layer = LAYERS[cell](3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=1, **rates("all", 0.3))
        state = 0.5 * rng.standard_normal((2, 4, 2, 4))
        state = rnnkit.LSTMState(*state) if cell == "lnlstm" else state[0]
        check_layer_gradients(layer, x, state, np.array([4, 2]), forward_kw=fixed_rng, label=f"{cell} all")


def torch_lstm_with_masks(torch, layer, x, state, lengths, masks):
    """torch.nn.LSTM(num_layers=L, dropout=p) in training, computed layer by layer: one single-layer
    torch.nn.LSTM per layer with the copied weights, the output of every layer but the last times
    rnnkit's mask (torch's dropout: x * Bernoulli(1-p) / (1-p)); packed sequences for the lengths."""
    nn = torch.nn
    pack, unpack = nn.utils.rnn.pack_padded_sequence, nn.utils.rnn.pad_packed_sequence
    L, D, T = layer.num_layers, layer.num_directions, x.shape[0]
    h0, c0 = (torch.tensor(a, requires_grad=True) for a in state)
    xt = torch.tensor(x, requires_grad=True)
    mods, inp, hs, cs = [], xt, [], []
    for l_ in range(L):
        m = nn.LSTM(inp.shape[-1], layer.hidden_size, bidirectional=D == 2, dtype=torch.float64)
        with torch.no_grad():
            for name, p in m.named_parameters():
                p.copy_(torch.from_numpy(layer.params[name.replace("_l0", f"_l{l_}")]))
        mods.append(m)
        packed = pack(inp, torch.tensor(lengths), enforce_sorted=False)
        out, (h, c) = m(packed, (h0[l_ * D : (l_ + 1) * D], c0[l_ * D : (l_ + 1) * D]))
        out = unpack(out, total_length=T)[0]
        hs.append(h)
        cs.append(c)
        inp = out * torch.from_numpy(masks.output[l_]) if masks.output[l_] is not None else out
    return xt, h0, c0, mods, inp, torch.cat(hs), torch.cat(cs)


@pytest.mark.parametrize("bidir", [False, True])
def test_dropout_between_layers_equals_torch_with_the_same_masks(bidir):
    torch = pytest.importorskip("torch")
    L, T, B, I, H, D = 3, 6, 4, 3, 5, 2 if bidir else 1
    layer = rnnkit.LSTM(I, H, num_layers=L, bidirectional=bidir, dtype=np.float64, seed=3, dropout=0.5)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((T, B, I))
    state = rnnkit.LSTMState(*(0.5 * rng.standard_normal((2, L * D, B, H))))
    lengths = np.array([6, 3, 1, 5])
    out, final = layer.forward(x, state, lengths, rng=np.random.default_rng(9))
    masks = layer.tape.masks
    assert [m is None for m in masks.output] == [False] * (L - 1) + [True], "masks on every layer but the last"
    assert set(np.unique(masks.output[0])) <= {0.0, 2.0} and 0 < (masks.output[0] == 0).mean() < 1
    R, Rh, Rc = rng.standard_normal(out.shape), rng.standard_normal(final.h.shape), rng.standard_normal(final.c.shape)
    layer.zero_grad()
    d_x, d_s0 = layer.backward(R, (Rh, Rc))
    xt, h0, c0, mods, t_out, t_h, t_c = torch_lstm_with_masks(torch, layer, x, state, lengths, masks)
    ((t_out * torch.tensor(R)).sum() + (t_h * torch.tensor(Rh)).sum() + (t_c * torch.tensor(Rc)).sum()).backward()
    for name, got, want in [("out", out, t_out), ("h_n", final.h, t_h), ("c_n", final.c, t_c), ("d_x", d_x, xt.grad),
                            ("d_h0", d_s0.h, h0.grad), ("d_c0", d_s0.c, c0.grad)]:
        assert_close(name, got, want.detach().numpy(), atol=1e-10)
    for l_, m in enumerate(mods):
        for name, p in m.named_parameters():
            ours = name.replace("_l0", f"_l{l_}")
            assert_close(f"grad {ours}", layer.grads[ours], p.grad.numpy(), atol=1e-10)
    # eval mode: no dropout, the same as torch.nn.LSTM(dropout=p).eval()
    layer.eval()
    tm = rnnkit.to_torch(layer).eval()
    assert tm.dropout == 0.5
    with torch.no_grad():
        want = tm(torch.tensor(x), tuple(torch.tensor(a) for a in state))[0].numpy()
    assert_close("eval out", layer.forward(x, state)[0], want, atol=1e-10)


def test_variational_masks_are_one_per_sequence_and_equal_their_definitions():
    """input_dropout = the eval layer on x * m (the same m at every step); weight_dropout = the eval layer
    with W_hh * M; recurrent_dropout = a NumPy LSTM loop with hw = (h_prev * m) W_hh^T."""
    T, B, I, H = 5, 3, 3, 4
    x = np.random.default_rng(0).standard_normal((T, B, I))
    lstm = lambda **kw: rnnkit.LSTM(I, H, dtype=np.float64, seed=6, **kw)  # noqa: E731
    ref = lstm().eval()
    layer = lstm(input_dropout=0.5)
    out = layer.forward(x, rng=np.random.default_rng(1))[0]
    m = layer.tape.masks.input[0]
    assert m.shape == (B, I)
    assert_close("input_dropout out", out, ref.forward(x * m)[0], atol=1e-14)
    layer = lstm(weight_dropout=0.5)
    out = layer.forward(x, rng=np.random.default_rng(2))[0]
    M = layer.tape.masks.weight[0]
    assert M.shape == (4 * H, H)
    dropped = lstm().eval()
    dropped.params["weight_hh_l0"][:] *= M
    assert_close("weight_dropout out", out, dropped.forward(x)[0], atol=1e-14)
    layer = lstm(recurrent_dropout=0.5)
    out = layer.forward(x, rng=np.random.default_rng(3))[0]
    m = layer.tape.masks.recurrent[0]
    assert m.shape == (B, H)
    p = layer.params
    h, c, want = np.zeros((B, H)), np.zeros((B, H)), []
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    for t in range(T):
        a = x[t] @ p["weight_ih_l0"].T + p["bias_ih_l0"] + (h * m) @ p["weight_hh_l0"].T + p["bias_hh_l0"]
        i, f, g, o = np.split(a, 4, axis=1)
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
        want.append(h)
    assert_close("recurrent_dropout out", out, np.stack(want), atol=1e-13)


def test_modes_generator_and_errors():
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    layer = rnnkit.LSTM(3, 4, num_layers=2, seed=0, dropout=0.3, recurrent_dropout=0.3)
    assert layer.training
    with pytest.raises(TypeError, match=r"^rng: training with dropout needs forward\(\.\.\., "
                                        r"rng=np\.random\.Generator\)"):
        layer.forward(x)
    a = layer.forward(x, rng=np.random.default_rng(1))[0].copy()
    b = layer.forward(x, rng=np.random.default_rng(1))[0].copy()
    c = layer.forward(x, rng=np.random.default_rng(2))[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c), "masks come from the generator passed in"
    assert layer.eval() is layer and not layer.training
    plain = rnnkit.LSTM(3, 4, num_layers=2, seed=0)
    assert np.array_equal(layer.forward(x)[0], plain.forward(x)[0]), "eval mode runs without dropout"
    assert np.array_equal(layer.step(x[0])[0], plain.step(x[0])[0])
    for bad in (-0.1, 1.0, "0.5", True):
        with pytest.raises(ValueError, match=r"^recurrent_dropout: expected a rate in \[0, 1\), got"):
            rnnkit.GRU(3, 4, recurrent_dropout=bad)
    emb = rnnkit.Embedding(5, 3, seed=0, dropout=0.5)
    with pytest.raises(TypeError, match=r"^rng: embedding dropout"):
        emb.forward(np.array([1, 2]))


def test_train_and_eval_reach_children():
    class Model(rnnkit.Module):
        def __init__(self):
            self._params, self._grads = {}, {}
            self.emb = rnnkit.Embedding(5, 3, seed=0, dropout=0.2)
            self.rnn = rnnkit.LSTM(3, 4, seed=0, dropout=0.2)

    m = Model().eval()
    assert not m.training and not m.emb.training and not m.rnn.training
    m.train()
    assert m.emb.training and m.rnn.training


def test_embedding_dropout_drops_whole_rows_and_its_gradient_is_exact():
    V, E = 7, 3
    emb = rnnkit.Embedding(V, E, dtype=np.float64, seed=0, dropout=0.5)
    ids = np.array([[0, 1, 2, 1], [3, 1, 0, 6]])
    y = emb.forward(ids, rng=np.random.default_rng(3))
    m = emb.row_mask
    assert m.shape == (V,) and set(np.unique(m)) == {0.0, 2.0}
    assert_close("embedding dropout", y, emb.params["weight"][ids] * m[ids][..., None], atol=0)
    R = np.random.default_rng(1).standard_normal(y.shape)
    emb.zero_grad()
    emb.backward(R)
    W, num = emb.params["weight"], np.zeros((V, E))
    for k in np.ndindex(W.shape):  # central differences with the same mask (fresh generator, same seed)
        old = W[k]
        W[k] = old + 1e-6
        fp = (emb.forward(ids, rng=np.random.default_rng(3)) * R).sum()
        W[k] = old - 1e-6
        fm = (emb.forward(ids, rng=np.random.default_rng(3)) * R).sum()
        W[k] = old
        num[k] = (fp - fm) / 2e-6
    assert_close("grad weight (embedding dropout)", emb.grads["weight"], num, atol=1e-8)
    emb.eval()
    assert np.array_equal(emb.forward(ids), W[ids]), "eval mode: no embedding dropout"
