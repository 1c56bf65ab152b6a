"""Sequence classifier: every gradient vs finite differences and vs a torch.nn version (float64)
for each pooling, with class weights; predict_proba / top_k."""
import dataclasses

import numpy as np
import pytest

from conftest import assert_close
from conftest import check_fd
from rnnkit.models.classifier import ClassifierConfig, SequenceClassifier

T, B, C = 6, 4, 3
LENGTHS = np.array([6, 2, 1, 4])
WEIGHTS = np.array([0.5, 2.0, 1.3])


def model(pooling, cell="lstm", bidir=True, L=2, score="additive", seed=0):
    cfg = ClassifierConfig(8, C, emb=3, hidden=3, layers=L, cell=cell, bidirectional=bidir,
                           pooling=pooling, score=score, attention_size=3, dtype="float64")
    return SequenceClassifier(cfg, seed=seed)


def batch(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 8, (T, B)), LENGTHS, np.array([0, 1, 2, 1])


FD_CONFIGS = [("last", "lstm", True, 2, "additive"), ("mean", "gru", True, 1, "additive"),
              ("max", "rnn", False, 2, "additive"), ("attention", "lstm", True, 1, "additive"),
              ("attention", "gru", False, 2, "general"), ("attention", "rnn", True, 1, "dot")]


@pytest.mark.slow
@pytest.mark.parametrize("pooling,cell,bidir,L,score", FD_CONFIGS)
def test_classifier_gradients_match_finite_differences(pooling, cell, bidir, L, score):
    m = model(pooling, cell, bidir, L, score)
    ids, lengths, labels = batch()

    def loss():
        return m.loss(ids, lengths, labels, WEIGHTS, backward=False)

    m.zero_grad()
    m.loss(ids, lengths, labels, WEIGHTS)
    grads = m.grads
    check_fd(loss, {f"grad {n}": (grads[n], p) for n, p in m.params.items()}, f"{pooling} {cell} bidir={bidir}")


TORCH_CONFIGS = [("last", "lstm", True, 2, "additive"), ("last", "gru", False, 1, "additive"),
                 ("mean", "rnn", True, 2, "additive"), ("max", "lstm", True, 1, "additive"),
                 ("max", "gru", False, 2, "additive"), ("attention", "lstm", True, 2, "additive"),
                 ("attention", "gru", True, 1, "general"), ("attention", "rnn", False, 1, "dot")]


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("pooling,cell,bidir,L,score", TORCH_CONFIGS)
def test_classifier_equals_torch(pooling, cell, bidir, L, score, weighted):
    torch = pytest.importorskip("torch")
    import torch_refs

    m = model(pooling, cell, bidir, L, score, seed=L)
    tm, forward = torch_refs.classifier(torch, m.config)
    torch_refs.copy_params(torch, tm, m.params)
    ids, lengths, labels = batch(seed=L)
    w = WEIGHTS if weighted else None
    m.zero_grad()
    loss = m.loss(ids, lengths, labels, w)
    t_logits = forward(torch.from_numpy(ids), lengths)
    t_loss = torch.nn.functional.cross_entropy(t_logits, torch.from_numpy(labels),
                                               weight=None if w is None else torch.from_numpy(w))
    t_loss.backward()
    assert_close("logits", m.forward(ids, lengths), t_logits.detach().numpy(), 1e-10)
    assert_close("loss", loss, t_loss.item(), 1e-10)
    grads = m.grads
    for name, p in tm.named_parameters():
        assert_close(f"grad {name}", grads[name], p.grad.numpy(), 1e-10)


def test_padding_does_not_change_prediction():
    m = model("max", "gru", True, 1)
    ids, lengths, _ = batch()
    p = m.predict_proba(ids, lengths)
    ids2 = np.concatenate([ids, np.full((3, B), 7)])  # three more padded steps of another token
    assert_close("probs", m.predict_proba(ids2, lengths), p, 1e-12)
    alone = m.predict_proba(ids[: lengths[1], 1:2], lengths[1:2])  # row 1 on its own, unpadded
    assert_close("probs row 1", alone[0], p[1], 1e-12)


def test_predict_proba_and_top_k():
    m = model("attention", "lstm", True, 1)
    ids, lengths, _ = batch()
    p = m.predict_proba(ids, lengths)
    assert p.shape == (B, C) and np.allclose(p.sum(1), 1.0)
    classes, probs = m.top_k(ids, lengths, k=2)
    assert classes.shape == (B, 2)
    assert np.array_equal(classes[:, 0], p.argmax(1)) and np.all(probs[:, 0] >= probs[:, 1])
    assert_close("top-k probs", probs, np.take_along_axis(p, classes, 1), 0.0)
    assert m.top_k(ids, lengths, k=10)[0].shape == (B, C)


def test_bad_config_and_input_errors():
    with pytest.raises(ValueError, match="pooling: expected one of"):
        ClassifierConfig(5, 2, pooling="sum")
    m = model("mean")
    ids, lengths, labels = batch()
    with pytest.raises(ValueError, match="weight: expected one weight per class"):
        m.loss(ids, lengths, labels, np.ones(2))
    with pytest.raises(ValueError, match=r"targets: class ids must be in 0..2"):
        m.loss(ids, lengths, labels + 1)
    with pytest.raises(TypeError, match="ids: expected integer token ids"):
        m.loss(ids.astype(float), lengths, labels)


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
def test_float32_model_matches_float64(pooling):
    """The default float32 model keeps float32 everywhere and agrees with float64 on the same weights."""
    m64 = model(pooling)
    m32 = SequenceClassifier(dataclasses.replace(m64.config, dtype="float32"), seed=0)
    m32.load_params({k: v.astype(np.float32) for k, v in m64.params.items()})
    ids, lengths, labels = batch()
    loss64, loss32 = m64.loss(ids, lengths, labels, WEIGHTS), m32.loss(ids, lengths, labels, WEIGHTS)
    assert abs(loss32 - loss64) < 1e-5
    g64 = m64.grads
    for name, g in m32.grads.items():
        assert g.dtype == np.float32, f"grad {name}: dtype {g.dtype}"
        assert_close(f"grad {name}", g, g64[name], 1e-5)
    assert m32.predict_proba(ids, lengths).dtype == np.float32


RATES = dict(dropout=0.3, input_dropout=0.2, recurrent_dropout=0.25, weight_dropout=0.2, emb_dropout=0.1)


@pytest.mark.slow
def test_dropout_gradients_match_finite_differences_with_fixed_masks():
    """Every dropout kind on, training mode, the masks fixed by a fresh generator of the same seed per
    evaluation: the hand-written backward is the gradient of that masked loss."""
    cfg = ClassifierConfig(8, C, emb=3, hidden=3, layers=2, pooling="mean", dtype="float64", **RATES)
    m = SequenceClassifier(cfg, seed=0)
    ids, lengths, labels = batch()

    def loss():
        return m.loss(ids, lengths, labels, WEIGHTS, backward=False, rng=np.random.default_rng(7))

    m.zero_grad()
    m.loss(ids, lengths, labels, WEIGHTS, rng=np.random.default_rng(7))
    assert loss() != m.loss(ids, lengths, labels, WEIGHTS, backward=False, rng=np.random.default_rng(8)), \
        "loss: other masks, same value (dropout not applied)"
    check_fd(loss, {f"grad {n}": (m.grads[n], p) for n, p in m.params.items()}, "mean lstm 2 layers, dropout")


def test_predict_proba_runs_without_dropout():
    ids, lengths, _ = batch()
    plain = model("last")
    m = SequenceClassifier(dataclasses.replace(plain.config, **RATES), seed=0)
    want = plain.predict_proba(ids, lengths)
    assert np.array_equal(m.predict_proba(ids, lengths), want), "predict_proba: dropout applied in evaluation"
    assert m.training, "predict_proba: training mode not restored"
    noisy = m.forward(ids, lengths, rng=np.random.default_rng(1))
    assert not np.allclose(noisy, plain.forward(ids, lengths)), "forward in training mode: no dropout"
