"""Building blocks and losses vs torch (float64), and composition into a model."""
import numpy as np
import pytest

import rnnkit
from conftest import assert_close, needs_torch


def test_linear_over_time_equals_torch(rng):
    torch = needs_torch()
    F = torch.nn.functional
    lin = rnnkit.Linear(5, 3, dtype=np.float64, seed=0)
    x = rng.standard_normal((4, 2, 5))
    dy = rng.standard_normal((4, 2, 3))
    y = lin.forward(x)
    dx = lin.backward(dy)
    W = torch.tensor(lin.params["weight"], requires_grad=True)
    b = torch.tensor(lin.params["bias"], requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    yt = F.linear(xt, W, b)
    (yt * torch.tensor(dy)).sum().backward()
    assert_close("y", y, yt.detach().numpy(), 1e-12)
    assert_close("d_x", dx, xt.grad.numpy(), 1e-12)
    assert_close("grad weight", lin.grads["weight"], W.grad.numpy(), 1e-12)
    assert_close("grad bias", lin.grads["bias"], b.grad.numpy(), 1e-12)


def test_embedding_equals_torch(rng):
    torch = needs_torch()
    F = torch.nn.functional
    emb = rnnkit.Embedding(7, 3, dtype=np.float64, seed=0)
    ids = rng.integers(0, 7, size=(5, 4))
    dy = rng.standard_normal((5, 4, 3))
    y = emb.forward(ids)
    emb.backward(dy)
    W = torch.tensor(emb.params["weight"], requires_grad=True)
    yt = F.embedding(torch.tensor(ids), W)
    (yt * torch.tensor(dy)).sum().backward()
    assert_close("y", y, yt.detach().numpy(), 0)
    assert_close("grad weight", emb.grads["weight"], W.grad.numpy(), 1e-12)
    with pytest.raises(ValueError, match=r"ids: every id must be in 0..6"):
        emb.forward(np.array([[7]]))


def test_sigmoid_head_equals_torch(rng):
    torch = needs_torch()
    a = rng.standard_normal((3, 4)) * 3
    do = rng.standard_normal((3, 4))
    s = rnnkit.Sigmoid()
    o = s.forward(a)
    da = s.backward(do)
    at = torch.tensor(a, requires_grad=True)
    ot = torch.sigmoid(at)
    (ot * torch.tensor(do)).sum().backward()
    assert_close("o", o, ot.detach().numpy(), 1e-14)
    assert_close("d_a", da, at.grad.numpy(), 1e-14)


@pytest.mark.parametrize("use_mask", [False, True])
def test_softmax_cross_entropy_equals_torch(rng, use_mask):
    torch = needs_torch()
    F = torch.nn.functional
    z = rng.standard_normal((6, 3, 11)) * 4
    y = rng.integers(0, 11, size=(6, 3))
    mask = rng.random((6, 3)) < 0.6 if use_mask else None
    loss, dz = rnnkit.softmax_cross_entropy(z, y, mask)
    zt = torch.tensor(z, requires_grad=True)
    per = F.cross_entropy(zt.reshape(-1, 11), torch.tensor(y).reshape(-1), reduction="none")
    w = torch.tensor(mask.reshape(-1).astype(float)) if use_mask else torch.ones(18, dtype=torch.float64)
    lt = (per * w).sum() / w.sum()
    lt.backward()
    assert abs(loss - lt.item()) < 1e-12, f"loss {loss} vs torch {lt.item()}"
    assert_close("d_logits", dz, zt.grad.numpy(), 1e-14)
    assert_close("softmax", rnnkit.softmax(z), torch.softmax(torch.tensor(z), -1).numpy(), 1e-14)


def test_bce_with_logits_and_mse_equal_torch(rng):
    torch = needs_torch()
    F = torch.nn.functional
    z = rng.standard_normal((5, 4)) * 5
    y = rng.random((5, 4))
    loss, dz = rnnkit.bce_with_logits(z, y)
    zt = torch.tensor(z, requires_grad=True)
    lt = F.binary_cross_entropy_with_logits(zt, torch.tensor(y))
    lt.backward()
    assert abs(loss - lt.item()) < 1e-12
    assert_close("d_logits", dz, zt.grad.numpy(), 1e-14)
    loss, dp = rnnkit.mse(z, y)
    zt = torch.tensor(z, requires_grad=True)
    lt = F.mse_loss(zt, torch.tensor(y))
    lt.backward()
    assert abs(loss - lt.item()) < 1e-12
    assert_close("d_pred", dp, zt.grad.numpy(), 1e-14)


def test_loss_bad_input():
    with pytest.raises(ValueError, match=r"targets: class ids must be in 0..2"):
        rnnkit.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"targets: expected shape \(2,\), got \(3,\)"):
        rnnkit.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"targets: expected shape \(2, 3\)"):
        rnnkit.mse(np.zeros((2, 3)), np.zeros((3, 2)))


class CharModel(rnnkit.Module):
    """Embedding -> LSTM -> Linear, the char-LM stack, composed from the blocks."""

    def __init__(self, V, E, H):
        self.emb = rnnkit.Embedding(V, E, dtype=np.float64, seed=0)
        self.rnn = rnnkit.LSTM(E, H, num_layers=2, dtype=np.float64, seed=1)
        self.head = rnnkit.Linear(H, V, dtype=np.float64, seed=2)

    def loss(self, ids, targets):
        out, _ = self.rnn.forward(self.emb.forward(ids))
        loss, dz = rnnkit.softmax_cross_entropy(self.head.forward(out), targets)
        d_x, _ = self.rnn.backward(self.head.backward(dz))
        self.emb.backward(d_x)
        return loss


def test_composed_model_equals_torch(rng):
    torch = needs_torch()
    F = torch.nn.functional
    V, E, H = 9, 4, 5
    m = CharModel(V, E, H)
    assert set(m.params) == set(m.grads)
    assert {k.split(".")[0] for k in m.params} == {"emb", "rnn", "head"}
    assert m.num_params() == sum(p.size for p in m.params.values())
    ids = rng.integers(0, V, size=(7, 3))
    tgt = rng.integers(0, V, size=(7, 3))
    loss = m.loss(ids, tgt)

    emb = torch.nn.Embedding(V, E, dtype=torch.float64)
    lstm = rnnkit.to_torch(m.rnn)
    head = torch.nn.Linear(H, V, dtype=torch.float64)
    with torch.no_grad():
        emb.weight.copy_(torch.tensor(m.params["emb.weight"]))
        head.weight.copy_(torch.tensor(m.params["head.weight"]))
        head.bias.copy_(torch.tensor(m.params["head.bias"]))
    out, _ = lstm(emb(torch.tensor(ids)))
    lt = F.cross_entropy(head(out).reshape(-1, V), torch.tensor(tgt).reshape(-1))
    lt.backward()
    assert abs(loss - lt.item()) < 1e-12
    tg = {"emb.weight": emb.weight.grad, "head.weight": head.weight.grad, "head.bias": head.bias.grad}
    tg.update({f"rnn.{k}": p.grad for k, p in lstm.named_parameters()})
    assert set(tg) == set(m.grads)
    for k, g in m.grads.items():
        assert_close(f"grad {k}", g, tg[k].numpy(), 1e-12)
    m.zero_grad()
    assert all(not g.any() for g in m.grads.values())
