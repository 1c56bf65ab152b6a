"""Shallow fusion with an rnnkit character language model (a ``rnnkit train charlm`` checkpoint).

``CharLMScorer(lm_task, alphabet)`` is the ``lm`` of rnnkit.models.ctc_decode.prefix_beam_search:
its states are (h, state) of the char-LM fed one character at a time (``CharLMModel.stream``),
started on a newline (the start of a line) when the LM knows it.  ``log_probs(state)`` gives the
LM's log-probability of each ASR class as the next character (class 0, the blank: unused); an
ASR character the LM has never seen gets ``unknown`` (log 1e-6).  ``end_log_prob`` is the LM's
log-probability of a newline (the end of the utterance), 0 if it has none.
"""
from __future__ import annotations

import numpy as np

from rnnkit.nn.losses import log_softmax

UNKNOWN = float(np.log(1e-6))


class CharLMScorer:
    def __init__(self, lm_task, alphabet: str, unknown: float = UNKNOWN):
        self.model = lm_task.model
        self.model.eval()
        table = {ch: i for i, ch in enumerate(lm_task.vocab.chars)}
        self.lm_id = [None] + [table.get(ch) for ch in alphabet]  # ASR class -> LM id
        self.newline = table.get("\n")
        self.unknown = unknown
        self.known = np.array([i is not None for i in self.lm_id])
        self.ids = np.array([i if i is not None else 0 for i in self.lm_id])

    def _feed(self, state, lm_id):
        h, s = next(self.model.stream([lm_id], None if state is None else state[1]))
        return h.copy(), s  # h may share a buffer the next step reuses

    def start(self):
        if self.newline is not None:
            return self._feed(None, self.newline)
        return None

    def _next(self, state) -> np.ndarray:
        if state is None:  # no newline in the LM: a uniform first character
            return np.full(len(self.model.head.params["bias"]), -np.log(len(self.model.head.params["bias"])))
        return log_softmax(self.model.next_logits(state[0]))

    def log_probs(self, state) -> np.ndarray:
        lsm = self._next(state)
        return np.where(self.known, lsm[self.ids], self.unknown)

    def advance(self, state, c: int):
        i = self.lm_id[c]
        return state if i is None else self._feed(state, i)

    def end_log_prob(self, state) -> float:
        return 0.0 if self.newline is None else float(self._next(state)[self.newline])
