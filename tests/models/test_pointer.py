"""Pointer-generator with coverage (rnnkit.models.pointer): the copy distribution, p_gen, the
coverage (attention term and loss) and every gradient vs a PyTorch autograd reference written
here (float64, 1e-10, padding on both sides, source OOVs with temporary ids that targets copy),
finite differences, decoding step by step vs the teacher-forced pass, and a copy task whose
words are all outside the vocabulary."""
import numpy as np
import pytest

from conftest import assert_close
from conftest import check_fd
from rnnkit.models.decoding import beam_search
from rnnkit.models.pointer import PointerConfig, PointerGenerator, final_distribution
from rnnkit.nn.optim import Adam

V, S, T, B = 9, 6, 5, 3
SRC_LENGTHS = np.array([6, 3, 4])  # padding on the source side ...
TGT_LENGTHS = np.array([5, 2, 4])  # ... and on the target side
MODES = [(True, True), (True, False), (False, True), (False, False)]  # (copy, coverage)


def model(copy, coverage, cell="lstm", bidir=True, L=1, seed=1, lam=1.0):
    cfg = PointerConfig(V, V, emb=3, hidden=4, layers=L, cell=cell, bidirectional=bidir,
                        attention_size=5, dtype="float64", copy=copy, coverage=coverage, cov_loss_weight=lam)
    return PointerGenerator(cfg, seed=seed)


def batch(seed=0):
    """Sources with OOVs (ids V, V+1, V+2; id V twice in row 0) and targets that copy them."""
    rng = np.random.default_rng(seed)
    src = rng.integers(4, V, (S, B))
    src[1, 0] = src[4, 0] = V  # one source OOV at two positions
    src[2, 1], src[0, 2] = V + 1, V + 2
    src[np.arange(S)[:, None] >= SRC_LENGTHS[None, :]] = 0
    tgt_out = rng.integers(4, V, (T, B))
    tgt_out[0, 0], tgt_out[3, 0], tgt_out[1, 1], tgt_out[2, 2] = V, V, V + 1, V + 2
    tgt_out[1, 2] = 1  # <unk>: a target OOV that is not in its source
    tgt_in = np.concatenate([np.full((1, B), 2), tgt_out[:-1]])  # <bos> y_1 .. (temporary ids read as <unk>)
    tgt_mask = np.arange(T)[:, None] < TGT_LENGTHS[None, :]
    return src, SRC_LENGTHS, tgt_in, tgt_out, tgt_mask


def torch_pointer(torch, m):
    """torch_refs.pointer for ``m``'s config with ``m``'s weights; its loss function also runs backward."""
    import torch_refs

    tm, loss_fn = torch_refs.pointer(torch, m.config)
    torch_refs.copy_params(torch, tm, m.params)

    def run(*data):
        out = loss_fn(*data)
        out[0].backward()
        return out

    return tm, run


@pytest.mark.parametrize("copy,coverage", MODES)
@pytest.mark.parametrize("cell,bidir,L", [("lstm", True, 1), ("gru", False, 2)])
def test_pointer_generator_matches_torch_autograd(copy, coverage, cell, bidir, L):
    torch = pytest.importorskip("torch")
    m = model(copy, coverage, cell, bidir, L, seed=L + 3, lam=0.7)
    if coverage:  # a coverage weight large enough to matter
        m.params["attention.w_cov"][...] *= 5.0
    tm, loss_fn = torch_pointer(torch, m)
    data = batch(seed=L)
    m.zero_grad()
    loss = m.loss(*data)
    out = m.forward(*data[:3])
    t_loss, t_P, t_pg, t_a, t_cov = loss_fn(*data)
    tag = f"copy={copy} coverage={coverage} {cell}"
    V_ext = max(V, int(data[0].max()) + 1)
    P = final_distribution(out["p_vocab"], out["a"], out["p_gen"], out["src_ext"], V_ext)
    bt = lambda x: x.detach().numpy().transpose(1, 0, 2)  # noqa: E731  (B, T, .) -> (T, B, .)
    assert_close(f"final distribution P ({tag})", P, bt(t_P), 1e-10)
    assert_close(f"attention a ({tag})", out["a"], bt(t_a), 1e-10)
    assert_close(f"coverage cov ({tag})", out["cov"], bt(t_cov), 1e-10)
    if copy:
        assert_close(f"p_gen ({tag})", out["p_gen"], bt(t_pg), 1e-10)
    assert_close(f"loss ({tag})", loss, t_loss.item(), 1e-10)
    grads = m.grads
    for name, p in tm.named_parameters():
        assert_close(f"grad {name} ({tag})", grads[name], p.grad.numpy(), 1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("copy,coverage", MODES[:3])
def test_pointer_generator_gradients_match_finite_differences(copy, coverage):
    m = model(copy, coverage)
    for p in m.attention.score.params.values():  # larger scores: attention gradients above FD noise
        p *= 3.0
    data = batch()
    m.zero_grad()
    m.loss(*data)
    grads = m.grads
    check_fd(lambda: m.loss(*data, backward=False), {f"grad {n}": (grads[n], p) for n, p in m.params.items()},
             f"copy={copy} coverage={coverage}")


def test_the_copy_probability_of_a_source_oov_is_its_attention_mass():
    m = model(True, True)
    src, sl, tgt_in, _, _ = batch()
    out = m.forward(src, sl, tgt_in)
    P = final_distribution(out["p_vocab"], out["a"], out["p_gen"], out["src_ext"], V + 3)
    a, pg = out["a"], out["p_gen"][..., 0]
    assert_close("P(oov V) row 0", P[:, 0, V], (1 - pg[:, 0]) * (a[:, 0, 1] + a[:, 0, 4]), 1e-14)
    assert_close("P(oov V+1) row 1", P[:, 1, V + 1], (1 - pg[:, 1]) * a[:, 1, 2], 1e-14)
    assert (P[:, 1, V] == 0).all() and (P[:, 0, V + 2] == 0).all(), "another row's OOV must have probability 0"
    assert_close("sum of P", P.sum(-1), np.ones((T, B)), 1e-12)


@pytest.mark.parametrize("copy,coverage", MODES[:3])
def test_decode_step_equals_the_teacher_forced_pass(copy, coverage):
    m = model(copy, coverage, "gru", False, 2)
    src, sl, tgt_in, _, _ = batch()
    out = m.forward(src, sl, tgt_in)
    P = final_distribution(out["p_vocab"], out["a"], out["p_gen"], out["src_ext"], V + 3)
    memory, state = m.encode(src, sl)
    for t in range(T):
        logp, state, a = m.decode_step(tgt_in[t], state, memory)
        assert_close(f"P[{t}] step by step", np.exp(logp), P[t], 1e-12)
        assert_close(f"a[{t}] step by step", a, out["a"][t], 1e-12)
        assert_close(f"cov[{t + 1}] step by step", state.cov, out["a"][: t + 1].sum(0), 1e-12)


@pytest.mark.slow
def test_pointer_generator_learns_to_copy_words_outside_its_vocabulary():
    """Every source word is an OOV (temporary ids 4+V..): only the copy path can produce them."""
    rng = np.random.default_rng(0)
    cfg = PointerConfig(6, 6, emb=8, hidden=16, attention_size=16, dtype="float64")
    m = PointerGenerator(cfg, seed=0)
    opt = Adam(m.params, m.grads, lr=0.02)

    def sample(n):
        lens = rng.integers(2, 6, n)
        src = np.zeros((5, n), np.int64)
        for b in range(n):
            src[: lens[b], b] = rng.permutation(np.arange(6, 16))[: lens[b]]
        tgt_out = np.concatenate([src, np.zeros((1, n), np.int64)])
        tgt_out[lens, np.arange(n)] = 3  # <eos>
        tgt_in = np.concatenate([np.full((1, n), 2), tgt_out[:-1]])
        return src, lens, tgt_in, tgt_out, np.arange(6)[:, None] <= lens[None, :]

    for _ in range(300):
        m.zero_grad()
        m.loss(*sample(16))
        opt.step()
    src, lens, *_ = sample(20)
    hyps = beam_search(m, src, lens, 2, 3, beam_size=1, max_len=8)
    right = sum(h.tokens == tuple(src[: lens[b], b]) for b, h in enumerate(hyps))
    assert right >= 18, f"copied {right} of 20 all-OOV sources exactly"
