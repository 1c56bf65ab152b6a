"""rnnkit.ctc_loss against torch.nn.functional.ctc_loss (float64, 1e-10) and finite differences."""
import numpy as np
import pytest

import rnnkit
from conftest import assert_close, fd_rel_error, needs_torch
from rnnkit.nn.ctc import ctc_nll
from rnnkit.nn.losses import log_softmax


def _logits_grad(d_lp, logits):
    """d/dlogits through log_softmax: d_lp - softmax * sum_c d_lp."""
    p = np.exp(log_softmax(logits))
    return d_lp - p * d_lp.sum(-1, keepdims=True)


def _case(rng, T=9, B=4, C=5, S=4, blank=0, repeats=False):
    logits = rng.standard_normal((T, B, C))
    labels = [c for c in range(C) if c != blank]
    targets = rng.choice(labels, (B, S))
    if repeats:
        targets[:, 1] = targets[:, 0]  # "aa" needs a blank between: an extra frame
        targets[:, 2] = targets[:, 1]
    input_lengths = np.array([T, T - 1, T - 3, T][:B])
    target_lengths = np.array([S, S - 1, 0, 2][:B])
    return logits, targets, input_lengths, target_lengths


def _torch_ctc(torch, logits, targets, input_lengths, target_lengths, **kw):
    z = torch.tensor(logits, requires_grad=True)
    loss = torch.nn.functional.ctc_loss(z.log_softmax(-1), torch.tensor(targets), torch.tensor(input_lengths),
                                        torch.tensor(target_lengths), **kw)
    loss.sum().backward()
    return loss.detach().numpy(), z.grad.numpy()


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("blank", [0, 2, 4])
@pytest.mark.parametrize("repeats", [False, True])
def test_ctc_equals_torch(rng, reduction, blank, repeats):
    torch = needs_torch()
    logits, targets, il, tl = _case(rng, blank=blank, repeats=repeats)
    loss, d_lp = rnnkit.ctc_loss(log_softmax(logits), targets, il, tl, blank=blank, reduction=reduction)
    want_loss, want_grad = _torch_ctc(torch, logits, targets, il, tl, blank=blank, reduction=reduction)
    assert_close("loss", loss, want_loss, 1e-10, 1e-12)
    assert_close("d_logits", _logits_grad(d_lp, logits), want_grad, 1e-10)


@pytest.mark.parametrize("zero_infinity", [False, True])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_impossible_alignment(rng, zero_infinity, reduction):
    torch = needs_torch()
    logits = rng.standard_normal((4, 3, 4))
    targets = np.array([[1, 1, 2], [1, 2, 3], [3, 3, 3]])  # 1 1 2 needs 4 frames; 3 3 3 needs 5
    il, tl = np.array([3, 4, 4]), np.array([3, 3, 3])
    loss, d_lp = rnnkit.ctc_loss(log_softmax(logits), targets, il, tl, reduction=reduction,
                                 zero_infinity=zero_infinity)
    want_loss, want_grad = _torch_ctc(torch, logits, targets, il, tl, reduction=reduction,
                                      zero_infinity=zero_infinity)
    nll, _ = ctc_nll(log_softmax(logits), targets, il, tl)
    assert np.isinf(nll).sum() == 2, "nll: two impossible alignments"
    assert (np.isinf(loss) == np.isinf(want_loss)).all(), "loss: inf where torch has inf"
    fin = np.isfinite(want_loss)
    assert_close("loss", np.asarray(loss)[fin], np.asarray(want_loss)[fin], 1e-10, 1e-12)
    got = _logits_grad(d_lp, logits)
    assert (np.isnan(got) == np.isnan(want_grad)).all(), "d_logits: NaN where torch has NaN"
    assert_close("d_logits", np.nan_to_num(got), np.nan_to_num(want_grad), 1e-10)


def test_concatenated_targets_and_float32(rng):
    logits, targets, il, tl = _case(rng)
    flat = np.concatenate([targets[b, :tl[b]] for b in range(len(tl))])
    lp = log_softmax(logits)
    a, da = rnnkit.ctc_loss(lp, targets, il, tl)
    b, db = rnnkit.ctc_loss(lp, flat, il, tl)
    assert a == b and (da == db).all(), "1-D targets: same loss and gradient as padded"
    c, dc = rnnkit.ctc_loss(lp.astype(np.float32), targets, il, tl)
    assert dc.dtype == np.float32, "d_log_probs: dtype of log_probs"
    assert abs(c - a) < 1e-5 * abs(a), "loss: float32 within float32 rounding"


def test_finite_differences(rng):
    """d_log_probs is the gradient of the loss w.r.t. log_probs themselves (any values)."""
    logits, targets, il, tl = _case(rng, T=7, B=3, C=4, S=3, repeats=True)
    lp = log_softmax(logits) + 0.3 * rng.standard_normal(logits.shape)  # not normalised: the general case
    for reduction in ("mean", "sum"):
        _, d = rnnkit.ctc_loss(lp, targets, il, tl, reduction=reduction)
        num = np.zeros_like(lp)
        eps = 1e-6
        for k in np.ndindex(lp.shape):
            p, m = lp.copy(), lp.copy()
            p[k] += eps
            m[k] -= eps
            num[k] = (rnnkit.ctc_loss(p, targets, il, tl, reduction=reduction)[0]
                      - rnnkit.ctc_loss(m, targets, il, tl, reduction=reduction)[0]) / (2 * eps)
        assert fd_rel_error(d, num) < 1e-8, f"d_log_probs ({reduction}): finite differences"
        assert (d[il[1]:, 1] == 0).all(), "d_log_probs: zero past the input length"


def test_single_path_is_exact():
    """T = S with distinct labels: one path, nll = -sum_t lp[t, l_t]."""
    lp = log_softmax(np.random.default_rng(3).standard_normal((3, 1, 4)))
    nll, _ = ctc_nll(lp, np.array([[1, 2, 3]]), np.array([3]), np.array([3]))
    assert_close("nll", nll, [-(lp[0, 0, 1] + lp[1, 0, 2] + lp[2, 0, 3])], 1e-14)


@pytest.mark.parametrize("kw, match", [
    ({"reduction": "avg"}, "reduction"),
    ({"blank": 7}, "blank"),
    ({"input_lengths": np.array([9, 1])}, "input_lengths"),
    ({"targets": np.array([[0, 1], [1, 2]])}, "targets"),
])
def test_bad_arguments(kw, match):
    args = {"log_probs": np.zeros((5, 2, 4)), "targets": np.array([[1, 2], [3, 1]]),
            "input_lengths": np.array([5, 5]), "target_lengths": np.array([2, 2])}
    args.update(kw)
    with pytest.raises((ValueError, TypeError), match=match):
        rnnkit.ctc_loss(**args)
