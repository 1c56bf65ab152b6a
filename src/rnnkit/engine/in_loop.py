"""Where a layer's input projection xw_t = x_t @ W_ih.T (+ biases) is formed: before the time loop, for all
T steps in one big GEMM, or inside the loop, step by step, on the micro-kernel; chosen by measurement.

* Before the loop (:meth:`rnnkit.engine.recurrent.Recurrent._project`): one (T B, I) @ (I, G) GEMM on all
  cores (:mod:`rnnkit.engine.big_gemm`) writes xw (T, B, G), a pass adds the biases, and the loop reads it
  back, step by step: xw makes two round trips through memory (67 MB at (T, B, H) = (64, 128, 512)).
* Inside the loop: each batch shard multiplies its rows of x_t by W_ih.T, packed once per call
  (:func:`rnnkit.engine.step_gemm.pack`), adds the biases in the same order, and runs the step on that
  xw_t while it is still in cache.  Same products, same order of the bias adds; only the GEMM's kernel
  differs (float64 results equal to 1e-13, tested).

Which pays depends on the CPU and the shape: the micro-kernel on a shard's few rows re-reads W_ih at every
step, which pays while W_ih and W_hh stay in cache (LSTM (T, B, I, H) = (100, 32, 64, 128) inference: 4.1 ms
before the loop, 3.2 ms inside; (64, 128, 256, 512): 133 against 111) and not when the weights stream from
L3 at every step on both cores at once ((35, 20, 650, 650): 25.4 against 30.3; 2-core Intel Xeon, issue 19).
So :func:`chosen` measures, once per process and shape, with BLAS on one thread and the shards
side by side on their threads, as the loops run (timed on one thread, the L3 contention is missed: the
ratio below was 0.82 at (35, 20, 650, 650) alone, 2.1-2.2 side by side):

* inside: the step's two products (x rows @ W_ih.T, then h rows @ W_hh.T, both on the micro-kernel) less the
  recurrent product alone on the kernel :mod:`rnnkit.engine.gemm_rows` chose;
* before: the big GEMM's share of a step (:func:`rnnkit.engine.big_gemm.dot` on the same cores, over a
  sample of at most ``SAMPLE_ROWS`` rows a core).

It chooses inside when ``inside <= MARGIN * before``: the margin stands for what the measurement leaves out,
the bias pass and xw's round trips through memory, which only the "before" path pays.  Measured ratios:
0.57-0.64 at (100, 32, 64, 128), 0.64 at (50, 64, 128, 256), 0.17-0.37 at (200, 16, 32, 64), 0.59-0.93 at
(64, 128, 256, 512), 2.1-2.2 at (35, 20, 650, 650).  Projections of at most ``MIN_MACS`` multiply-adds
keep the big GEMM unmeasured.

``RNNKIT_INPUT_PROJECTION`` forces it: ``loop`` (inside, wherever the loop's GEMM is the micro-kernel) or
``gemm`` (before); any other value is one line, exit 2.
"""
from __future__ import annotations

import functools
from functools import partial
import time

import numpy as np

from rnnkit.engine import big_gemm
from rnnkit.engine.gemm_rows import STREAMING_ROWS, forced_rows, packed_weights, repeat, step_gemm_rows
from rnnkit.engine.scan import bounds, split_hh
from rnnkit.engine.step_gemm import PACKED, packed_gemm
from rnnkit.engine.threads import blas_threads_at_most, time_side_by_side
from rnnkit.checks.rules import env_choice
from rnnkit.kernels import jit

MARGIN = 1.1
"""Inside the loop when its measured cost is at most this times the big GEMM's (see the module docstring)."""
SAMPLE_ROWS = 512
"""Rows of the big GEMM timed (at most T * B): enough for BLAS's blocking, a few ms at most."""
CHOICES = ("loop", "gemm")
MIN_MACS = 1 << 20
"""Projections (T B I G multiply-adds) up to which the big GEMM is kept without measuring: it takes under
about 10 us there, less than the measurement's 30-70 ms could ever win back."""


@jit
def _both(x, W_ihP, h, W_hhP, xw, hw, n):
    for _ in range(n):
        packed_gemm(x, W_ihP, xw)
        packed_gemm(h, W_hhP, hw)


def forced() -> str | None:
    """``RNNKIT_INPUT_PROJECTION`` (``loop`` or ``gemm``), or None if unset."""
    return env_choice("RNNKIT_INPUT_PROJECTION", CHOICES)


def time_projection(M: int, S: int, TB: int, I: int, H: int, G: int, G_loop: int, rows: int, dtype,
                    clock=time.perf_counter) -> dict:
    """Wall seconds per step of S shards of M rows side by side, as the loops run them, W_ih (G, I) and the
    loop's W_hh (G_loop, H): {"loop": both products on the micro-kernel, "alone": the recurrent product alone on
    its kernel ``rows`` (:mod:`rnnkit.engine.gemm_rows`), "gemm": the big GEMM's share of one step (on S cores,
    over a sample of at most ``SAMPLE_ROWS`` rows per core of its T B)}."""
    rng = np.random.default_rng(0)
    W_ih = (rng.standard_normal((G, I)) * 0.1).astype(dtype)
    W_hh = (rng.standard_normal((G_loop, H)) * 0.1).astype(dtype)
    W_ihP, W_hhP = packed_weights(W_ih, False), packed_weights(W_hh, False)
    WT = W_hhP if rows == PACKED else np.ascontiguousarray(W_hh.T)
    shards = [(rng.standard_normal((M, I)).astype(dtype), rng.standard_normal((M, H)).astype(dtype),
               np.empty((M, G), dtype), np.empty((M, G_loop), dtype)) for _ in range(S)]
    R = min(TB, SAMPLE_ROWS * S)
    X, XW = rng.standard_normal((R, I)).astype(dtype), np.empty((R, G), dtype)

    def big(n):
        for _ in range(n):
            big_gemm.dot(X, W_ih.T, out=XW, cores=S)

    with blas_threads_at_most(1):
        both = time_side_by_side(lambda n: [partial(_both, x, W_ihP, h, W_hhP, xw, hw, n) for x, h, xw, hw in shards],
                                 clock)
        alone = time_side_by_side(
            lambda n: [partial(repeat, h, W_hh, WT, hw, rows, False, n) for x, h, xw, hw in shards], clock)
        whole = time_side_by_side(lambda n: [partial(big, n)], clock)
    return {"loop": both, "alone": alone, "gemm": whole / R * (M * S)}


@functools.lru_cache(maxsize=None)
def _measured(M: int, S: int, TB: int, I: int, H: int, G: int, G_loop: int, dtype: str) -> bool:
    rows = step_gemm_rows(M, H, G_loop, dtype, False)
    t = time_projection(M, S, TB, I, H, G, G_loop, rows, np.dtype(dtype))
    return t["loop"] - t["alone"] <= MARGIN * t["gemm"]


def chosen(cell, x, W_ih: np.ndarray, W_hh: np.ndarray, shards) -> bool:
    """Whether the forward of one layer and direction forms its input projection inside the loop (whose
    recurrent GEMM then runs on the micro-kernel).  Never for ``x`` a :class:`rnnkit.engine.rows.Rows` (its rows
    are gathered from a projected table), for shards of at most ``STREAMING_ROWS`` rows, or with
    ``RNNKIT_GEMM_ROWS`` set to BLAS; else ``RNNKIT_INPUT_PROJECTION`` if set; else not for projections of at
    most ``MIN_MACS`` multiply-adds; else measured once per process and shape (:func:`time_projection`):
    inside if the shards' step with both products on the micro-kernel takes at most ``MARGIN`` x the big GEMM's
    share of a step longer than with the recurrent product alone on its chosen kernel."""
    if not isinstance(x, np.ndarray) or forced_rows() not in (None, PACKED):
        return False
    T, B, I = x.shape
    M = max(b1 - b0 for b0, b1 in bounds(shards, B))
    choice = forced()
    if M <= STREAMING_ROWS or choice is not None:
        return M > STREAMING_ROWS and choice == "loop"
    G = W_ih.shape[0]
    if T * B * I * G <= MIN_MACS:
        return False
    G_loop, H = split_hh(cell, W_hh, None)[0].shape
    return _measured(M, len(shards), T * B, I, H, G, G_loop, x.dtype.name)
