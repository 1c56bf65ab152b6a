"""Optimizers and schedules against torch.optim (float64, identical gradients), clipping vs torch."""
import math

import numpy as np
import pytest

from conftest import needs_torch
from rnnkit.errors import CheckpointError
from rnnkit.nn.optim import SGD, Adam, AdamW, Schedule, clip_grad_norm


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    params = {"w": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}
    grads_seq = [{k: rng.standard_normal(v.shape) for k, v in params.items()} for _ in range(6)]
    return params, grads_seq


CASES = [
    (SGD, "SGD", dict(lr=0.1)),  # (ours, the torch.optim class of the same name, settings)
    (SGD, "SGD", dict(lr=0.1, momentum=0.9)),
    (SGD, "SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    (Adam, "Adam", dict(lr=1e-2)),
    (Adam, "Adam", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    (AdamW, "AdamW", dict(lr=1e-2)),
    (AdamW, "AdamW", dict(lr=3e-2, weight_decay=0.3, betas=(0.5, 0.9))),
]


@pytest.mark.slow
@pytest.mark.parametrize("ours,theirs,kw", CASES)
def test_matches_torch_float64(ours, theirs, kw):
    torch = needs_torch()
    params, grads_seq = _problem()
    tp = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    opt = ours(params, grads, **kw)
    topt = getattr(torch.optim, theirs)(list(tp.values()), **kw)
    for gs in grads_seq:
        for k in params:
            grads[k][...] = gs[k]
            tp[k].grad = torch.tensor(gs[k].copy())
        opt.step()
        topt.step()
        for k in params:
            np.testing.assert_allclose(params[k], tp[k].detach().numpy(), rtol=1e-12, atol=1e-14)
    assert not np.allclose(params["w"], _problem()[0]["w"])  # it did move


@pytest.mark.parametrize("ours,kw", [(SGD, dict(lr=0.1, momentum=0.9, nesterov=True)), (Adam, dict(lr=1e-2)),
                                     (AdamW, dict(lr=1e-2))])
def test_state_dict_roundtrip_continues_identically(ours, kw):
    params, grads_seq = _problem(1)
    p2 = {k: v.copy() for k, v in params.items()}
    g1 = {k: np.zeros_like(v) for k, v in params.items()}
    g2 = {k: np.zeros_like(v) for k, v in params.items()}
    a = ours(params, g1, **kw)
    for gs in grads_seq[:3]:
        for k in params:
            g1[k][...] = gs[k]
        a.step()
    arrays, meta = a.state_dict()
    for k in p2:
        p2[k][...] = params[k]
    b = ours(p2, g2, **kw)
    b.load_state_dict({k: v.copy() for k, v in arrays.items()}, dict(meta))
    for gs in grads_seq[3:]:
        for k in params:
            g1[k][...] = gs[k]
            g2[k][...] = gs[k]
        a.step()
        b.step()
    for k in params:
        assert np.array_equal(params[k], p2[k])


def test_load_state_dict_rejects_wrong_type_and_shape():
    params, _ = _problem()
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    adam = Adam(params, grads)
    sgd = SGD(params, grads, lr=0.1, momentum=0.9)
    with pytest.raises(CheckpointError, match="expected SGD, got 'Adam'"):
        sgd.load_state_dict(*adam.state_dict())
    with pytest.raises(CheckpointError, match="expected shape"):
        adam.load_state_dict({"m/w": np.zeros((2, 2))}, adam.state_dict()[1])


def test_bad_arguments():
    params, _ = _problem()
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    with pytest.raises(ValueError, match="lr: expected a finite number >= 0, got -1"):
        SGD(params, grads, lr=-1)
    with pytest.raises(ValueError, match="nesterov"):
        SGD(params, grads, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        Adam(params, grads, betas=(0.9, 1.5))
    with pytest.raises(ValueError, match=r"grads\['w'\]: expected shape \(4, 3\)"):
        Adam(params, {"w": np.zeros(2), "b": grads["b"]})


@pytest.mark.parametrize("max_norm", [0.5, 3.0, 100.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_clip_grad_norm_matches_torch(max_norm, dtype):
    torch = needs_torch()
    rng = np.random.default_rng(3)
    grads = {"a": rng.standard_normal((5, 4)).astype(dtype), "b": rng.standard_normal(7).astype(dtype)}
    ts = [torch.zeros(v.shape, dtype=torch.float64, requires_grad=True) for v in grads.values()]
    for t, v in zip(ts, grads.values()):
        t.grad = torch.tensor(v.astype(np.float64))
    want = float(torch.nn.utils.clip_grad_norm_(ts, max_norm))
    got = clip_grad_norm(grads, max_norm)
    tol = 1e-12 if dtype == np.float64 else 1e-6
    assert got == pytest.approx(want, rel=tol)
    for t, v in zip(ts, grads.values()):
        np.testing.assert_allclose(v, t.grad.numpy(), rtol=tol)
    if max_norm < want:
        assert math.sqrt(sum(float((v.astype(np.float64) ** 2).sum()) for v in grads.values())) == pytest.approx(
            max_norm, rel=1e-5)


def test_clip_grad_norm_nonfinite_returns_without_scaling():
    grads = {"a": np.array([1.0, np.nan])}
    assert math.isnan(clip_grad_norm(grads, 1.0))
    assert grads["a"][0] == 1.0


def _torch_lrs(make_sched, n, base=0.1):
    torch = needs_torch()
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base)
    sched = make_sched(opt)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.slow
def test_schedules_match_torch():
    torch = needs_torch()
    S = torch.optim.lr_scheduler
    cases = [
        (Schedule("step", step_size=7, gamma=0.5), lambda o: S.StepLR(o, 7, 0.5)),
        (Schedule("cosine", total_steps=20), lambda o: S.CosineAnnealingLR(o, T_max=20)),
        (Schedule("cosine", total_steps=20, min_lr=0.01), lambda o: S.CosineAnnealingLR(o, T_max=20, eta_min=0.01)),
        (Schedule("constant", warmup=5), lambda o: S.LinearLR(o, start_factor=1 / 5, total_iters=4)),
    ]
    for ours, make in cases:
        n = 21 if ours.kind == "cosine" else 30  # torch's cosine restarts past T_max; ours stays at min_lr
        want = _torch_lrs(make, n)
        got = [ours.lr_at(s, 0.1) for s in range(n)]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15, err_msg=repr(ours))


def test_warmup_then_cosine_shape():
    s = Schedule("cosine", warmup=10, total_steps=110)
    lrs = [s.lr_at(k, 1.0) for k in range(120)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0) and lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.5) and lrs[110] == pytest.approx(0.0, abs=1e-15) and lrs[119] == lrs[110]
    with pytest.raises(ValueError, match="kind"):
        Schedule("linear")
    with pytest.raises(ValueError, match="total_steps"):
        Schedule("cosine", warmup=5, total_steps=5)
