"""Seconds numba takes to compile a cell's step and its backward (float32, B = 32, H = 128) in a fresh process with
an empty numba cache, after a trivial compile (numba's own start-up); run it a few times, alternating checkouts.
usage: PYTHONPATH=<src> python benchmarks/step_compile.py [lstm|gru|rnn]   (issue 19, session 15)"""
import os
import sys
import tempfile
import time

os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="rnnkit-step-compile-")
import numpy as np  # noqa: E402  (after the cache folder is set)
from numba import njit  # noqa: E402

import rnnkit  # noqa: E402


@njit
def _trivial(x):
    return x + 1


_trivial(1.0)
kind = sys.argv[1] if len(sys.argv) > 1 else "lstm"
layer = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU, "rnn": rnnkit.RNN}[kind](8, 128, seed=0)
cell, B, H, dt = layer.cell, 32, 128, np.float32
G = cell.n_gates * H
state = tuple(np.zeros((B, H), dt) for _ in cell.State._fields)
new = tuple(np.zeros((B, H), dt) for _ in cell.State._fields)
cache = tuple(np.zeros((B, H), dt) for _ in cell.cache_fields)
xw, hw = np.zeros((B, G), dt), np.zeros((B, G), dt)
t0 = time.perf_counter()
cell.step(xw, hw, (), state, new, cache)
print(f"{kind} step: {time.perf_counter() - t0:.2f} s")
t0 = time.perf_counter()
cell.step_backward(new, xw, cache, state, new, (), xw.copy(), xw.copy(), tuple(a.copy() for a in state), ())
print(f"{kind} step_backward: {time.perf_counter() - t0:.2f} s")
