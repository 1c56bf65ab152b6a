"""Greedy decoding and beam search for a sequence-to-sequence model.

The model needs two methods (rnnkit.models.encdec.EncoderDecoder has them):

    encode(src (S, B), src_lengths (B,)) -> (memory, state0)
    decode_step(tokens (B,), state, memory) -> (logits (B, V), state, attention weights (B, S))

where ``state`` is an array (L, B, H) or a tuple of them (LSTMState); decoding streams
the decoder one token at a time through the recurrent layers' ``step``.

Scores.  A hypothesis y_1..y_n (y_n = <eos> when finished) has the raw score
score = sum_t log p(y_t | y_<t, x) and the length-normalised score
norm_score = score / n ** alpha  (Wu et al. 2016's simple form; n counts the <eos>;
alpha = 0: no normalisation, alpha = 1: mean log-probability per token).

Beam search (beam size k, per source): at each step the k live hypotheses are extended by
every token; candidates are visited best raw score first; a candidate ending in <eos> is
moved to the finished list, the others become the next live hypotheses until k are taken.
A source stops when k hypotheses have finished or after ``max_len`` steps (then its live
hypotheses join the finished ones as unfinished).  The answer is the hypothesis with the
best norm_score.  With k = 1 this is exactly greedy decoding.

Constraints (beam search): ``min_len`` m: <eos> gets probability 0 before m tokens are out;
``no_repeat_ngram`` n (0 = off): a token that would complete an n-gram the hypothesis already
contains gets probability 0 (Paulus et al. 2018's trigram blocking with n = 3).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnkit.nn.losses import log_softmax


@dataclass(frozen=True)
class Hypothesis:
    """One decoded sequence: ``tokens`` without the <eos>; ``attention`` (n, S_b): one row of
    source weights per generated token (n = len(tokens) + finished), S_b = the source length."""

    tokens: tuple
    score: float
    norm_score: float
    finished: bool
    attention: np.ndarray


def _hypothesis(tokens, attention, score, finished, alpha, src_len) -> Hypothesis:
    n = len(tokens)
    return Hypothesis(tuple(int(t) for t in (tokens[:-1] if finished else tokens)), float(score),
                      float(score / n ** alpha) if n else float(score), bool(finished),
                      np.array(attention[:, :src_len]))


def _check(max_len, alpha, beam_size=1):
    for name, v in (("max_len", max_len), ("beam_size", beam_size)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    if not alpha >= 0:
        raise ValueError(f"alpha: expected a length-normalisation exponent >= 0, got {alpha!r}")


def greedy_decode(model, src, src_lengths, bos: int, eos: int, max_len: int = 50,
                  alpha: float = 0.0) -> list[Hypothesis]:
    """Most probable token at every step, for each source column of ``src`` (S, B)."""
    _check(max_len, alpha)
    memory, state = model.encode(src, src_lengths)
    S, B = np.shape(src)
    tokens = np.full(B, bos)
    out, attn = np.zeros((B, max_len), dtype=np.int64), np.zeros((B, max_len, S))
    scores, lengths, done = np.zeros(B), np.full(B, max_len), np.zeros(B, dtype=bool)
    for t in range(max_len):
        logits, state, weights = model.decode_step(tokens, state, memory)
        logp = log_softmax(logits)
        tokens = logp.argmax(axis=-1)
        live = ~done
        scores[live] += logp[np.arange(B), tokens][live]
        out[:, t], attn[:, t] = tokens, weights
        ended = live & (tokens == eos)
        lengths[ended], done = t + 1, done | ended
        if done.all():
            break
    return [_hypothesis(out[b, : lengths[b]], attn[b, : lengths[b]], scores[b], done[b], alpha, src_lengths[b])
            for b in range(B)]


def select_rows(state, rows):
    """Rows (batch index, axis 1) of a decoder state: an array (L, B, H) or a tuple of them, or a state
    with its own ``select(rows)`` (rnnkit.models.pointer.PointerState)."""
    if hasattr(state, "select"):
        return state.select(rows)
    if isinstance(state, tuple):
        return type(state)(*(a[:, rows] for a in state))
    return state[:, rows]


def blocked_tokens(seq, n: int) -> list:
    """Tokens that would complete an n-gram already in ``seq`` (a token sequence) when appended."""
    if n < 1 or len(seq) < n - 1:
        return []
    seq = [int(x) for x in seq]
    prefix = seq[len(seq) - (n - 1):]
    return [seq[i + n - 1] for i in range(len(seq) - n + 1) if seq[i:i + n - 1] == prefix]


def beam_search(model, src, src_lengths, bos: int, eos: int, beam_size: int = 4, max_len: int = 50,
                alpha: float = 0.6, min_len: int = 0, no_repeat_ngram: int = 0) -> list[Hypothesis]:
    """Beam search (see the module docstring) for each source column of ``src`` (S, B)."""
    _check(max_len, alpha, beam_size)
    for name, v in (("min_len", min_len), ("no_repeat_ngram", no_repeat_ngram)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name}: expected an integer >= 0, got {v!r}")
    k = int(beam_size)
    S, B = np.shape(src)
    memory, state = model.encode(np.repeat(src, k, axis=1), np.repeat(src_lengths, k))  # row b*k + j
    tokens = np.full(B * k, bos)
    scores = np.full((B, k), -np.inf)
    scores[:, 0] = 0.0  # one live hypothesis at the start
    hist, ahist = np.zeros((B, k, 0), dtype=np.int64), np.zeros((B, k, 0, S))
    finished = [[] for _ in range(B)]
    done = np.zeros(B, dtype=bool)
    for t in range(max_len):
        logits, state, weights = model.decode_step(tokens, state, memory)
        logp = log_softmax(logits).reshape(B, k, -1)
        V = logp.shape[-1]
        if t < min_len:
            logp[:, :, eos] = -np.inf
        if no_repeat_ngram and t >= no_repeat_ngram - 1:
            for b in np.flatnonzero(~done):
                for j in range(k):
                    logp[b, j, blocked_tokens(hist[b, j], no_repeat_ngram)] = -np.inf
        weights = weights.reshape(B, k, 1, S)
        cand = (scores[:, :, None] + logp).reshape(B, k * V)
        top = np.argpartition(-cand, min(2 * k, k * V) - 1, axis=1)[:, : 2 * k]  # <= k of them end in <eos>
        top = np.take_along_axis(top, np.lexsort((top, -np.take_along_axis(cand, top, 1))), 1)  # best first
        new_scores = np.full((B, k), -np.inf)
        parent, new_tok = np.zeros((B, k), dtype=np.int64), np.full((B, k), eos)
        for b in np.flatnonzero(~done):
            n = 0
            for idx in top[b]:
                if cand[b, idx] == -np.inf:
                    break
                j, tok = divmod(int(idx), V)
                if tok == eos:
                    seq, seq_attn = np.append(hist[b, j], eos), np.concatenate([ahist[b, j], weights[b, j]])
                    finished[b].append(_hypothesis(seq, seq_attn, cand[b, idx], True, alpha, src_lengths[b]))
                    continue
                new_scores[b, n], parent[b, n], new_tok[b, n] = cand[b, idx], j, tok
                n += 1
                if n == k:
                    break
            done[b] = len(finished[b]) >= k
        if done.all():
            break
        take = parent[:, :, None]
        hist = np.concatenate([np.take_along_axis(hist, take, 1), new_tok[:, :, None]], axis=2)
        ahist = np.concatenate([np.take_along_axis(ahist, take[..., None], 1),
                                np.take_along_axis(weights, take[..., None], 1)], axis=2)
        scores = new_scores
        state = select_rows(state, (np.arange(B)[:, None] * k + parent).reshape(-1))
        tokens = new_tok.reshape(-1)
    else:  # max_len reached: live hypotheses compete as unfinished
        for b in np.flatnonzero(~done):
            finished[b] += [_hypothesis(hist[b, j], ahist[b, j], scores[b, j], False, alpha, src_lengths[b])
                            for j in range(k) if scores[b, j] > -np.inf]
    return [max(hyps, key=lambda h: h.norm_score) for hyps in finished]
