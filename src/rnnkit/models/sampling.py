"""Sampling from a recurrent language model one token at a time (``rnnkit sample``).

The model streams ids through its recurrent stack (``model.stream(ids, state)`` yields (h, state)
after each id, B = 1) and gives the next token's logits from h (``model.next_logits(h)`` (V,)
float64): rnnkit.models.charlm.CharLMModel.  After the prime, each next id is drawn from
softmax(z / temperature) by inverting the cumulative sum with one uniform number of ``rng``.
"""
from __future__ import annotations

import math

import numpy as np

from rnnkit.errors import UserError


def sample_ids(model, prime_ids, length: int, temperature: float, rng: np.random.Generator) -> list:
    """``length`` ids drawn after ``prime_ids`` (at least one id; not returned)."""
    if not isinstance(length, int) or length < 0:
        raise UserError(f"--length: expected an integer >= 0, got {length!r}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise UserError(f"--temperature: expected a number > 0, got {temperature!r}")
    state, out = None, []
    for _, state in model.stream(prime_ids[:-1]):
        pass
    cur = int(prime_ids[-1])
    for _ in range(length):
        h, state = next(model.stream([cur], state))
        z = model.next_logits(h) / temperature
        p = np.exp(z - z.max())
        cdf = np.cumsum(p)
        cur = int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(cdf) - 1))
        out.append(cur)
    return out
