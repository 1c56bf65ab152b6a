"""Attention blocks: gradients of every score kind vs finite differences (queries, keys and
every parameter), padded sources get exactly zero weight and gradient, step == forward."""
import numpy as np
import pytest

from conftest import assert_close
from conftest import check_fd
from rnnkit.models.attention import AttentionPooling, GlobalAttention, masked_softmax, source_mask

T, S, B = 3, 5, 3
LENGTHS = np.array([5, 2, 4])


def inputs(Hd, He, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((T, B, Hd)), rng.standard_normal((S, B, He)), rng.standard_normal((T, B, Hd))


@pytest.mark.parametrize("score,Hd,He", [("dot", 4, 4), ("general", 4, 3), ("additive", 4, 3)])
def test_global_attention_gradients_match_finite_differences(score, Hd, He):
    att = GlobalAttention(Hd, He, score, attention_size=5, dtype=np.float64, seed=0)
    q, k, R = inputs(Hd, He)
    mask = source_mask(LENGTHS, S)
    k[:, 1][LENGTHS[1]:] = 0.0  # as an encoder's outputs past the length

    def loss():
        h, a = att.forward(q, k, mask)
        return (h * R).sum()

    att.zero_grad()
    loss()
    dq, dk = att.backward(R)
    checks = {"d_queries": (dq, q), "d_keys": (dk, k)}
    checks.update({f"grad {n}": (att.grads[n], p) for n, p in att.params.items()})
    check_fd(loss, checks, score)
    for b, n in enumerate(LENGTHS):
        assert np.all(dk[n:, b] == 0), f"d_keys: nonzero gradient on padded source of row {b}"


@pytest.mark.parametrize("score", ["dot", "general", "additive"])
def test_padded_sources_get_zero_weight_and_step_equals_forward(score):
    att = GlobalAttention(4, 4, score, dtype=np.float64, seed=1)
    q, k, _ = inputs(4, 4, seed=1)
    mask = source_mask(LENGTHS, S)
    h, a = att.forward(q, k, mask)
    assert_close("weights sum", a.sum(-1), np.ones((T, B)), 1e-12)
    for b, n in enumerate(LENGTHS):
        assert np.all(a[:, b, n:] == 0), f"weights: nonzero on padded source of row {b}"
    k2 = k.copy()
    k2[LENGTHS[1]:, 1] = 1e3  # whatever sits in the padding does not matter
    h2, _ = att.forward(q, k2, mask)
    assert_close("h_tilde with changed padding", h2, h, 1e-12)
    memory = att.memory(k, mask)
    for t in range(T):
        h_t, a_t = att.step(q[t], memory)
        assert_close(f"step h_tilde[{t}]", h_t, h[t], 1e-12)
        assert_close(f"step weights[{t}]", a_t, a[t], 1e-12)


def test_masked_softmax_matches_softmax_over_valid_positions():
    rng = np.random.default_rng(2)
    e = rng.standard_normal((B, T, S))
    a = masked_softmax(e, source_mask(LENGTHS, S))
    for b, n in enumerate(LENGTHS):
        ref = np.exp(e[b, :, :n]) / np.exp(e[b, :, :n]).sum(-1, keepdims=True)
        assert_close(f"weights row {b}", a[b, :, :n], ref, 1e-12)


@pytest.mark.parametrize("score", ["dot", "general", "additive"])
def test_attention_pooling_gradients_match_finite_differences(score):
    pool = AttentionPooling(4, score, attention_size=3, dtype=np.float64, seed=0)
    _, k, _ = inputs(4, 4, seed=3)
    R = np.random.default_rng(4).standard_normal((B, 4))
    mask = source_mask(LENGTHS, S)

    def loss():
        return (pool.forward(k, mask)[0] * R).sum()

    pool.zero_grad()
    loss()
    dk = pool.backward(R)
    checks = {"d_keys": (dk, k)}
    checks.update({f"grad {n}": (pool.grads[n], p) for n, p in pool.params.items()})
    check_fd(loss, checks, score)


def test_dot_score_rejects_unequal_sizes():
    with pytest.raises(ValueError, match="score 'dot': query size 4 must equal key size 6"):
        GlobalAttention(4, 6, "dot")
    with pytest.raises(ValueError, match="score: expected one of"):
        GlobalAttention(4, 4, "cosine")
