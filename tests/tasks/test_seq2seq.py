"""Encoder–decoder: every gradient vs finite differences and vs a torch.nn version (float64),
label smoothing and class weights vs torch's cross_entropy, decoding via step vs the forward."""
import dataclasses

import numpy as np
import pytest

from conftest import assert_close
from conftest import check_fd, fd_rel_error as rel_error, numeric_grad
from rnnkit.models.encdec import EncoderDecoder, Seq2SeqConfig
from rnnkit.nn.losses import softmax_cross_entropy

S, T, B = 5, 4, 3
SRC_LENGTHS = np.array([5, 2, 3])  # padding on the source side ...
TGT_LENGTHS = np.array([4, 1, 3])  # ... and on the target side


def batch(cfg, seed=0):
    rng = np.random.default_rng(seed)
    src = rng.integers(0, cfg.src_vocab, (S, B))
    tgt_in, tgt_out = rng.integers(0, cfg.tgt_vocab, (2, T, B))
    tgt_mask = np.arange(T)[:, None] < TGT_LENGTHS[None, :]
    return src, SRC_LENGTHS, tgt_in, tgt_out, tgt_mask


def model(cell, bidir, L, score, seed=1, **kw):
    cfg = Seq2SeqConfig(7, 6, emb=3, hidden=4, layers=L, cell=cell, bidirectional=bidir,
                        score=score, attention_size=3, dtype="float64", **kw)
    return EncoderDecoder(cfg, seed=seed)


FD_CONFIGS = [("lstm", True, 1, "additive"), ("gru", False, 2, "dot"), ("rnn", True, 2, "general"),
              ("lstm", False, 2, "general")]


@pytest.mark.slow
@pytest.mark.parametrize("cell,bidir,L,score", FD_CONFIGS)
def test_encdec_gradients_match_finite_differences(cell, bidir, L, score):
    m = model(cell, bidir, L, score)
    if score == "additive":  # larger attention weights: the score's gradients well above FD noise
        for p in m.attention.score.params.values():
            p *= 3.0
    data = batch(m.config)

    def loss():
        return m.loss(*data, label_smoothing=0.1 if cell == "lstm" else 0.0, backward=False)

    m.zero_grad()
    m.loss(*data, label_smoothing=0.1 if cell == "lstm" else 0.0)
    grads = m.grads
    check_fd(loss, {f"grad {n}": (grads[n], p) for n, p in m.params.items()}, f"{cell} bidir={bidir} L={L} {score}")


def test_padding_gets_no_gradient():
    m = model("gru", True, 1, "additive")
    src, sl, tgt_in, tgt_out, tgt_mask = batch(m.config)
    src[:, 0] = 0  # row 0 uses only token 0 ...
    src[sl[1]:, 1] = 6  # ... token 6 appears only in padding
    tgt_in[TGT_LENGTHS[2]:, 2] = 5
    tgt_in[:, :2][tgt_in[:, :2] == 5] = 4  # target token 5 only in padding (of row 2)
    m.zero_grad()
    m.loss(src, sl, tgt_in, tgt_out, tgt_mask)
    assert np.all(m.grads["src_embedding.weight"][6] == 0), "src_embedding.weight: padded source token got gradient"
    assert np.all(m.grads["tgt_embedding.weight"][5] == 0), "tgt_embedding.weight: padded target token got gradient"
    _, weights = m.forward(src, sl, tgt_in)
    for b, n in enumerate(sl):
        assert np.all(weights[:, b, n:] == 0), f"attention weights: nonzero on padded source of row {b}"


TORCH_CONFIGS = [("lstm", True, 2, "general", 0.0), ("gru", True, 1, "additive", 0.1),
                 ("rnn", False, 2, "dot", 0.0), ("lstm", False, 1, "additive", 0.2),
                 ("gru", False, 2, "general", 0.0), ("rnn", True, 1, "additive", 0.0)]


@pytest.mark.parametrize("cell,bidir,L,score,smoothing", TORCH_CONFIGS)
def test_encdec_equals_torch(cell, bidir, L, score, smoothing):
    torch = pytest.importorskip("torch")
    import torch_refs

    m = model(cell, bidir, L, score, seed=L + len(score))
    tm, forward = torch_refs.seq2seq(torch, m.config)
    torch_refs.copy_params(torch, tm, m.params)
    src, sl, tgt_in, tgt_out, tgt_mask = batch(m.config, seed=L)
    m.zero_grad()
    loss = m.loss(src, sl, tgt_in, tgt_out, tgt_mask, label_smoothing=smoothing)
    logits, _ = m.forward(src, sl, tgt_in)
    t_logits = forward(torch.from_numpy(src), sl, torch.from_numpy(tgt_in))
    t_loss = torch.nn.functional.cross_entropy(
        t_logits.reshape(-1, m.config.tgt_vocab), torch.from_numpy(np.where(tgt_mask, tgt_out, -100).reshape(-1)),
        ignore_index=-100, label_smoothing=smoothing)
    t_loss.backward()
    assert_close("logits", logits, t_logits.detach().numpy(), 1e-10)
    assert_close("loss", loss, t_loss.item(), 1e-10)
    grads = m.grads
    for name, p in tm.named_parameters():
        assert_close(f"grad {name}", grads[name], p.grad.numpy(), 1e-10)


@pytest.mark.parametrize("cell,bidir,score", [("lstm", True, "additive"), ("gru", False, "dot"),
                                              ("rnn", True, "general")])
def test_decode_step_equals_teacher_forced_forward(cell, bidir, score):
    m = model(cell, bidir, 2, score)
    src, sl, tgt_in, _, _ = batch(m.config)
    logits, weights = m.forward(src, sl, tgt_in)
    memory, state = m.encode(src, sl)
    for t in range(T):
        step_logits, state, step_weights = m.decode_step(tgt_in[t], state, memory)
        assert_close(f"logits[{t}]", step_logits, logits[t], 1e-12)
        assert_close(f"weights[{t}]", step_weights, weights[t], 1e-12)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.4])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_smoothing_and_weights_equal_torch(smoothing, weighted):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    z, y, mask = rng.standard_normal((5, 3, 7)), rng.integers(0, 7, (5, 3)), rng.random((5, 3)) > 0.3
    w = rng.random(7) + 0.1 if weighted else None
    loss, d = softmax_cross_entropy(z, y, mask, label_smoothing=smoothing, weight=w)
    zt = torch.tensor(z, requires_grad=True)
    t_loss = torch.nn.functional.cross_entropy(
        zt.reshape(-1, 7), torch.from_numpy(np.where(mask, y, -100).reshape(-1)), ignore_index=-100,
        weight=None if w is None else torch.from_numpy(w), label_smoothing=smoothing)
    t_loss.backward()
    assert_close("loss", loss, t_loss.item(), 1e-12)
    assert_close("d_logits", d, zt.grad.numpy(), 1e-12)


def test_cross_entropy_default_unchanged():
    rng = np.random.default_rng(1)
    z, y = rng.standard_normal((4, 5)), rng.integers(0, 5, 4)
    loss, d = softmax_cross_entropy(z, y)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert_close("loss", loss, -np.log(p[np.arange(4), y]).mean(), 1e-12)
    assert_close("d_logits", d, (p - np.eye(5)[y]) / 4, 1e-12)


def test_bad_config_and_input_errors():
    with pytest.raises(ValueError, match="score: 'dot' needs"):
        Seq2SeqConfig(5, 5, bidirectional=True, score="dot")
    with pytest.raises(ValueError, match="cell: expected one of"):
        Seq2SeqConfig(5, 5, cell="tcn")
    with pytest.raises(ValueError, match="label_smoothing"):
        softmax_cross_entropy(np.zeros((2, 3)), np.zeros(2, dtype=int), label_smoothing=1.5)
    m = model("gru", False, 1, "general")
    src, sl, tgt_in, tgt_out, tgt_mask = batch(m.config)
    with pytest.raises(ValueError, match=r"src: ids must be in 0..6"):
        m.loss(src + 7, sl, tgt_in, tgt_out, tgt_mask)
    with pytest.raises(ValueError, match=r"tgt_in: expected .*\(T, 3\)"):
        m.loss(src, sl, tgt_in[:, :2], tgt_out, tgt_mask)
    with pytest.raises(ValueError, match="lengths: every length must be in 1..5"):
        m.loss(src, np.array([6, 1, 1]), tgt_in, tgt_out, tgt_mask)


@pytest.mark.parametrize("score", ["dot", "general", "additive"])
def test_float32_model_matches_float64(score):
    """The default float32 model keeps float32 everywhere and agrees with float64 on the same weights."""
    m64 = model("lstm", score != "dot", 2, score)
    m32 = EncoderDecoder(dataclasses.replace(m64.config, dtype="float32"), seed=0)
    m32.load_params({k: v.astype(np.float32) for k, v in m64.params.items()})
    data = batch(m64.config)
    loss64, loss32 = m64.loss(*data, label_smoothing=0.1), m32.loss(*data, label_smoothing=0.1)
    assert abs(loss32 - loss64) < 1e-5
    g64 = m64.grads
    for name, g in m32.grads.items():
        assert g.dtype == np.float32, f"grad {name}: dtype {g.dtype}"
        assert_close(f"grad {name}", g, g64[name], 1e-5)
