"""GRU with linear_before_reset=False (rnnkit.GRU(linear_before_reset=False), ONNX's default GRU):
finite differences for every gradient, a plain-NumPy loop of the equations, streaming step = forward,
float32 close to float64, dropout on batch shards, and the refusals (to_torch, bad flag)."""
import itertools

import numpy as np
import pytest

import rnnkit
from conftest import assert_close, assert_step_equals_forward, check_layer_gradients


def make(I=3, H=4, **kw):
    kw.setdefault("dtype", np.float64)
    return rnnkit.GRU(I, H, seed=1, linear_before_reset=False, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("L,bidir,use_lengths", list(itertools.product([1, 2], [False, True], [False, True])))
def test_gradients_match_finite_differences(L, bidir, use_lengths):
    rng = np.random.default_rng(L * 4 + bidir * 2 + use_lengths)
    T, B, I, H, D = 5, 3, 3, 4, 2 if bidir else 1
    layer = make(I, H, num_layers=L, bidirectional=bidir)
    x = rng.standard_normal((T, B, I))
    h0 = 0.5 * rng.standard_normal((L * D, B, H))
    lengths = np.array([5, 2, 1]) if use_lengths else None
    check_layer_gradients(layer, x, h0, lengths, label=f"gru lbr=0 L={L} bidir={bidir} lengths={use_lengths}")


@pytest.mark.slow
def test_gradients_with_every_dropout_and_without_bias():
    """Fixed masks (a fresh generator with one seed per forward): dropout is a linear map, exact gradients."""
    rng = np.random.default_rng(7)
    x, h0 = rng.standard_normal((5, 3, 3)), 0.5 * rng.standard_normal((4, 3, 4))
    layer = make(num_layers=2, bidirectional=True, dropout=0.3, input_dropout=0.3, recurrent_dropout=0.3,
                 weight_dropout=0.3)
    check_layer_gradients(layer, x, h0, np.array([5, 3, 4]), forward_kw=lambda: dict(rng=np.random.default_rng(3)),
                          label="gru lbr=0 dropouts")
    check_layer_gradients(make(num_layers=2, bias=False), x, h0[:2], label="gru lbr=0 bias=False")


def reference(layer, x, h0, lengths):
    """The equations in plain NumPy, one row and step at a time (float64):
    r = s(W_ir x + b_ir + W_hr h + b_hr), z = s(W_iz x + b_iz + W_hz h + b_hz),
    n = tanh(W_in x + b_in + W_hn (r * h) + b_hn), h' = (1 - z) n + z h; past a row's length the state is
    carried and the output is 0; the reverse direction starts at the row's last valid step."""
    sig = lambda a: 1.0 / (1.0 + np.exp(-a))  # noqa: E731
    T, B, _ = x.shape
    L, D, H = layer.num_layers, layer.num_directions, layer.hidden_size
    p = layer.params
    inp, finals = x, np.zeros((L * D, B, H))
    for layer_k in range(L):
        outs = np.zeros((T, B, D * H))
        for d in range(D):
            s = f"_l{layer_k}" + ("_reverse" if d else "")
            W_ir, W_iz, W_in = np.split(p["weight_ih" + s], 3)
            W_hr, W_hz, W_hn = np.split(p["weight_hh" + s], 3)
            b_ir, b_iz, b_in = np.split(p["bias_ih" + s], 3)
            b_hr, b_hz, b_hn = np.split(p["bias_hh" + s], 3)
            for b in range(B):
                h = h0[layer_k * D + d, b].copy()
                steps = range(lengths[b])
                for t in (reversed(steps) if d else steps):
                    xt = inp[t, b]
                    r = sig(W_ir @ xt + b_ir + W_hr @ h + b_hr)
                    z = sig(W_iz @ xt + b_iz + W_hz @ h + b_hz)
                    n = np.tanh(W_in @ xt + b_in + W_hn @ (r * h) + b_hn)
                    h = (1 - z) * n + z * h
                    outs[t, b, d * H : (d + 1) * H] = h
                finals[layer_k * D + d, b] = h
        inp = outs
    return inp, finals


@pytest.mark.parametrize("L,bidir", [(1, False), (2, True)])
def test_equals_numpy_reference(L, bidir):
    rng = np.random.default_rng(11)
    T, B, I, H, D = 6, 3, 3, 5, 2 if bidir else 1
    layer = make(I, H, num_layers=L, bidirectional=bidir)
    x, h0 = rng.standard_normal((T, B, I)), rng.standard_normal((L * D, B, H))
    lengths = np.array([6, 2, 4])
    out, h_n = layer.forward(x, h0, lengths)
    want_out, want_h = reference(layer, x, h0, lengths)
    assert_close("out", out, want_out, atol=1e-12)
    assert_close("h_n", h_n, want_h, atol=1e-12)
    plain = rnnkit.GRU(I, H, num_layers=L, bidirectional=bidir, dtype=np.float64, seed=1)
    assert np.abs(plain.forward(x, h0, lengths)[0] - out).max() > 1e-3, "linear_before_reset=False had no effect"


def test_step_equals_forward():
    layer = make(num_layers=2)
    assert_step_equals_forward(layer, np.random.default_rng(1).standard_normal((6, 2, 3)), atol=1e-13)
    layer32 = make(num_layers=2, dtype=np.float32, bias=False)
    assert_step_equals_forward(layer32, np.random.default_rng(1).standard_normal((6, 2, 3)).astype(np.float32),
                               atol=1e-6)


def test_float32_close_to_float64():
    rng = np.random.default_rng(2)
    x, lengths = rng.standard_normal((7, 3, 3)), np.array([7, 3, 5])
    l64, l32 = make(num_layers=2, bidirectional=True), make(num_layers=2, bidirectional=True, dtype=np.float32)
    l32.load_params({k: v.astype(np.float32) for k, v in l64.params.items()})
    (o64, h64), (o32, h32) = l64.forward(x, lengths=lengths), l32.forward(x.astype(np.float32), lengths=lengths)
    assert_close("out float32", o32, o64, atol=2e-6)
    assert_close("h_n float32", h32, h64, atol=2e-6)
    d64, _ = l64.backward(np.ones_like(o64))
    d32, _ = l32.backward(np.ones_like(o32))
    assert_close("d_x float32", d32, d64, atol=2e-5)
    for k, g in l64.grads.items():
        assert_close(f"grad {k} float32", l32.grads[k], g, atol=2e-5)


@pytest.mark.slow
def test_flag_and_refusals():
    assert make().linear_before_reset is False and rnnkit.GRU(3, 4).linear_before_reset is True
    assert set(make().params) == set(rnnkit.GRU(3, 4).params)
    with pytest.raises(ValueError, match=r"^linear_before_reset: expected True or False, got 2$"):
        rnnkit.GRU(3, 4, linear_before_reset=2)
    pytest.importorskip("torch")
    with pytest.raises(ValueError) as e:
        rnnkit.to_torch(make())
    assert "linear_before_reset=False" in str(e.value) and "\n" not in str(e.value)


def test_charlm_checkpoint_keeps_the_flag(tmp_path, capsys):
    """CharLMConfig(linear_before_reset=False) builds the lbr=0 GRU; save/load restores flag and weights;
    the flag is the GRU's only; bad values are one-line errors (config and command line, exit 2)."""
    from rnnkit.cli import main
    from rnnkit.tasks.charlm import CharLM, CharLMConfig

    cfg = CharLMConfig(cell="gru", layers=2, hidden=6, emb=4, batch=2, bptt=5, dtype="float64",
                       linear_before_reset=False)
    lm = CharLM(cfg, text="the cat sat on the mat. " * 20)
    assert lm.model.rnn.linear_before_reset is False
    lm.save(tmp_path / "lm.safetensors")
    back = CharLM.load(tmp_path / "lm.safetensors")
    assert back.config.linear_before_reset is False and back.model.rnn.linear_before_reset is False
    for k, v in lm.model.params.items():
        assert np.array_equal(back.model.params[k], v), f"{k} differs after the round trip"
    assert CharLM(CharLMConfig(cell="gru", batch=2, bptt=5), text="abc " * 50).model.rnn.linear_before_reset is True
    with pytest.raises(ValueError, match=r"^linear_before_reset: only for cell gru, got cell 'lstm'$"):
        CharLMConfig(cell="lstm", linear_before_reset=False)
    with pytest.raises(ValueError, match=r"^linear_before_reset: expected True or False, got 0$"):
        CharLMConfig(cell="gru", linear_before_reset=0)
    rc = main(["train", "charlm", "--cell", "gru", "--linear-before-reset", "2", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "argument --linear-before-reset: expected 0 or 1, got '2'" in err and "Traceback" not in err
    rc = main(["train", "charlm", "--cell", "lstm", "--linear-before-reset", "0", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "linear_before_reset: only for cell gru, got cell 'lstm'" in err and "Traceback" not in err, err
