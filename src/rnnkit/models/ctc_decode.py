"""Decoding CTC outputs: greedy, and prefix beam search with optional shallow fusion.

``log_probs`` of one utterance: (T, C), class 0..C-1 with ``blank``.

Greedy: the best class per frame, repeats merged, blanks removed.

Prefix beam search (Hannun et al. 2014): every prefix l keeps two acoustic log-probabilities, of
the frames so far ending in a blank (pb) and in its last label (pnb).  A frame t extends each
prefix with every class c whose lp[t, c] is within ``prune`` of the frame's best:

    blank:            pb'(l)      += p(l) * y_t(blank)                     p(l) = pb(l) + pnb(l)
    c = last of l:    pnb'(l)     += pnb(l) * y_t(c)   (the label goes on)
                      pnb'(l + c) += pb(l) * y_t(c)    (a new label after a blank)
    other c:          pnb'(l + c) += p(l) * y_t(c)

(sums in log space).  The ``beam`` prefixes with the best score survive each frame:

    score(l) = log p(l) + lm_weight * log P_lm(l) + bonus * |l|

Shallow fusion: ``lm`` is any object with ``start() -> state``, ``log_probs(state) -> (C,)``
(log-probability of each class as the next label; the blank's entry is unused),
``advance(state, c) -> state`` and optionally ``end_log_prob(state) -> float`` (of the
utterance ending there, added to the final score).  ``log P_lm(l)`` sums the label
log-probabilities along l.  Without ``lm`` (or lm_weight 0) the score is acoustic + bonus.
"""
from __future__ import annotations

import numpy as np

NEG_INF = -np.inf


def greedy(log_probs: np.ndarray, blank: int = 0) -> list[int]:
    """Best path: argmax per frame, repeats merged, blanks removed."""
    best = np.asarray(log_probs).argmax(axis=-1)
    keep = np.ones(best.shape, dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    return [int(c) for c in best[keep] if c != blank]


class _LMCache:
    """LM states and next-label log-probabilities of the prefixes seen, by prefix."""

    def __init__(self, lm):
        self.lm = lm
        s = lm.start()
        self.states = {(): s}
        self.next = {(): lm.log_probs(s)}
        self.total = {(): 0.0}

    def extend(self, prefix: tuple, c: int) -> None:
        new = prefix + (c,)
        if new in self.total:
            return
        s = self.lm.advance(self.states[prefix], c)
        self.states[new], self.next[new] = s, self.lm.log_probs(s)
        self.total[new] = self.total[prefix] + float(self.next[prefix][c])


def prefix_beam_search(log_probs: np.ndarray, beam: int = 8, blank: int = 0, lm=None, lm_weight: float = 0.0,
                       bonus: float = 0.0, prune: float = 12.0) -> list[int]:
    """The best labelling of one utterance's (T, C) log-probabilities (see the module docstring)."""
    lp = np.asarray(log_probs, dtype=np.float64)
    use_lm = lm is not None and lm_weight != 0.0
    cache = _LMCache(lm) if use_lm else None
    beams = {(): (0.0, NEG_INF)}

    def score(prefix, pb, pnb):
        s = np.logaddexp(pb, pnb) + bonus * len(prefix)
        return s + lm_weight * cache.total[prefix] if use_lm else s

    for t in range(lp.shape[0]):
        row = lp[t]
        cands = np.flatnonzero(row >= row.max() - prune)
        nxt: dict = {}

        def add(prefix, which, value):
            pb, pnb = nxt.get(prefix, (NEG_INF, NEG_INF))
            nxt[prefix] = (np.logaddexp(pb, value), pnb) if which == 0 else (pb, np.logaddexp(pnb, value))

        for prefix, (pb, pnb) in beams.items():
            p = np.logaddexp(pb, pnb)
            last = prefix[-1] if prefix else None
            for c in cands:
                c, y = int(c), row[c]
                if c == blank:
                    add(prefix, 0, p + y)
                    continue
                new = prefix + (c,)
                if use_lm:
                    cache.extend(prefix, c)
                if c == last:
                    add(prefix, 1, pnb + y)
                    add(new, 1, pb + y)
                else:
                    add(new, 1, p + y)
        ranked = sorted(nxt.items(), key=lambda kv: -score(kv[0], *kv[1]))
        beams = dict(ranked[:beam])

    def final(prefix, pb, pnb):
        s = score(prefix, pb, pnb)
        if use_lm and hasattr(lm, "end_log_prob"):
            s += lm_weight * lm.end_log_prob(cache.states[prefix])
        return s

    best = max(beams.items(), key=lambda kv: final(kv[0], *kv[1]))
    return list(best[0])
