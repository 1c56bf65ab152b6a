"""Layer-normalised LSTM (rnnkit.LayerNormLSTM): finite differences for every gradient, and outputs,
states and every gradient equal a torch-autograd reference written here (PyTorch's
benchmarks/fastrnns/custom_lstms.py LayerNormLSTMCell, stacked, bidirectional, per-row lengths)."""
import itertools

import numpy as np
import pytest

import rnnkit
from conftest import assert_close, assert_step_equals_forward, check_layer_gradients


def make_layer(L, bidir, bias=False, seed=0, dtype=np.float64):
    """A LayerNormLSTM with random LayerNorm weights and biases (the init's 1 and 0 would hide errors)."""
    layer = rnnkit.LayerNormLSTM(3, 4, num_layers=L, bidirectional=bidir, dtype=dtype, seed=seed, bias=bias)
    rng = np.random.default_rng(seed + 100)
    for name, p in layer.params.items():
        if name.startswith("layernorm"):
            p[:] = rng.uniform(0.5, 1.5, p.shape) if "_weight" in name else rng.uniform(-0.5, 0.5, p.shape)
    return layer


def inputs(L, D, seed, T=5, B=3, I=3, H=4):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((T, B, I)), rnnkit.LSTMState(*(0.5 * rng.standard_normal((2, L * D, B, H))))


CASES = list(itertools.product([1, 2], [False, True], [False, True]))


@pytest.mark.slow
@pytest.mark.parametrize("L,bidir,use_lengths", CASES)
def test_layernorm_lstm_gradients_match_finite_differences(L, bidir, use_lengths):
    layer = make_layer(L, bidir, bias=use_lengths)  # half the cases with the projection biases
    x, state = inputs(L, 2 if bidir else 1, seed=L + 2 * bidir)
    lengths = np.array([5, 2, 1]) if use_lengths else None
    check_layer_gradients(layer, x, state, lengths, label=f"LayerNormLSTM L={L} bidir={bidir} lengths={use_lengths}")


def torch_reference(torch, layer, x, state, lengths, R, Rh, Rc):
    """custom_lstms.py's LayerNormLSTMCell (+ b_ih, b_hh when the layer has them), run row by row for
    its length (the reverse direction from the row's last valid step), outputs 0-padded; returns
    (out, h_n, c_n) and the autograd gradients of sum(out R) + sum(h_n Rh) + sum(c_n Rc)."""
    F = torch.nn.functional
    P = {k: torch.tensor(v, requires_grad=True) for k, v in layer.params.items()}
    xt, h0, c0 = (torch.tensor(a, requires_grad=True) for a in (x, state.h, state.c))
    T, B, _ = x.shape
    H, L, D = layer.hidden_size, layer.num_layers, layer.num_directions

    def cell(inp, hx, cx, s):
        xw, hw = inp @ P["weight_ih" + s].T, hx @ P["weight_hh" + s].T
        if layer.bias:
            xw, hw = xw + P["bias_ih" + s], hw + P["bias_hh" + s]
        igates = F.layer_norm(xw, (4 * H,), P["layernorm_i_weight" + s], P["layernorm_i_bias" + s], 1e-5)
        hgates = F.layer_norm(hw, (4 * H,), P["layernorm_h_weight" + s], P["layernorm_h_bias" + s], 1e-5)
        i, f, g, o = (igates + hgates).chunk(4, 1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        cy = F.layer_norm(f * cx + i * g, (H,), P["layernorm_c_weight" + s], P["layernorm_c_bias" + s], 1e-5)
        return o * torch.tanh(cy), cy

    layer_in, h_n, c_n = xt, [], []
    for l_ in range(L):
        outs = []
        for d in range(D):
            k, s = l_ * D + d, f"_l{l_}" + ("_reverse" if d else "")
            rows, hs, cs = [], [], []
            for b in range(B):
                n = T if lengths is None else int(lengths[b])
                h, c = h0[k, b : b + 1], c0[k, b : b + 1]
                ys = [None] * n
                for t in (range(n) if d == 0 else range(n - 1, -1, -1)):
                    h, c = cell(layer_in[t, b : b + 1], h, c, s)
                    ys[t] = h
                rows.append(F.pad(torch.cat(ys, 0), (0, 0, 0, T - n)))
                hs.append(h)
                cs.append(c)
            outs.append(torch.stack(rows, 1))
            h_n.append(torch.cat(hs, 0))
            c_n.append(torch.cat(cs, 0))
        layer_in = torch.cat(outs, -1)
    h_n, c_n = torch.stack(h_n), torch.stack(c_n)
    loss = (layer_in * torch.tensor(R)).sum() + (h_n * torch.tensor(Rh)).sum() + (c_n * torch.tensor(Rc)).sum()
    loss.backward()
    grads = {k: v.grad.numpy() for k, v in P.items()}
    return (layer_in.detach().numpy(), h_n.detach().numpy(), c_n.detach().numpy(),
            xt.grad.numpy(), h0.grad.numpy(), c0.grad.numpy(), grads)


@pytest.mark.slow
@pytest.mark.parametrize("L,bidir,use_lengths", [(1, False, False), (2, True, True), (2, False, True)])
def test_layernorm_lstm_equals_torch_autograd_reference(L, bidir, use_lengths):
    torch = pytest.importorskip("torch")
    layer = make_layer(L, bidir, bias=L == 2, seed=3)
    x, state = inputs(L, 2 if bidir else 1, seed=7)
    lengths = np.array([5, 3, 1]) if use_lengths else None
    rng = np.random.default_rng(8)
    out, final = layer.forward(x, state, lengths)
    R, Rh, Rc = rng.standard_normal(out.shape), rng.standard_normal(final.h.shape), rng.standard_normal(final.c.shape)
    layer.zero_grad()
    d_x, d_s0 = layer.backward(R, (Rh, Rc))
    t_out, t_h, t_c, t_dx, t_dh0, t_dc0, t_grads = torch_reference(torch, layer, x, state, lengths, R, Rh, Rc)
    for name, got, want in [("out", out, t_out), ("h_n", final.h, t_h), ("c_n", final.c, t_c), ("d_x", d_x, t_dx),
                            ("d_h0", d_s0.h, t_dh0), ("d_c0", d_s0.c, t_dc0)]:
        assert_close(name, got, want, atol=1e-10)
    assert layer.grads.keys() == t_grads.keys()
    for name, g in layer.grads.items():
        assert_close(f"grad {name}", g, t_grads[name], atol=1e-10)


def test_layernorm_lstm_contract():
    """The layer contract of rnnkit.LSTM: batch_first, step == forward, float32 close to float64, own names."""
    layer = make_layer(2, False, bias=True, seed=1)
    assert {n for n in layer.params if n.startswith("layernorm")} == {
        f"layernorm_{a}_{b}_l{k}" for a in "ihc" for b in ("weight", "bias") for k in (0, 1)}
    x, _ = inputs(2, 1, seed=2, T=6)
    assert_step_equals_forward(layer, x, atol=1e-12)
    out = layer.forward(x)[0]
    bf = make_layer(2, False, bias=True, seed=1)
    bf.batch_first = True
    assert_close("batch_first out", bf.forward(x.transpose(1, 0, 2).copy())[0].transpose(1, 0, 2), out, atol=1e-12)
    f32 = make_layer(2, False, bias=True, seed=1, dtype=np.float32)
    assert_close("float32 out", f32.forward(x.astype(np.float32))[0], out, atol=2e-5)
    assert not rnnkit.LayerNormLSTM(3, 4).bias, "the reference cell has no projection biases"
