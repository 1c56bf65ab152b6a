"""How the per-step recurrent GEMM runs, chosen by measurement once per shape and process.

The time loops multiply a (M, K) block of rows by the recurrent weights at every step
(:func:`rnnkit.engine.step_gemm.times_wt` forward, :func:`rnnkit.engine.step_gemm.times_w` backward): in one BLAS
call, in BLAS calls on blocks of rows, or with rnnkit's micro-kernel on W_hh packed once per call
(:data:`rnnkit.engine.step_gemm.PACKED`; measured 1.5-2.5x faster than OpenBLAS at the loops' shapes on an
AVX-512 Xeon, but what it gives on another CPU is measured there).  Some BLAS builds
run small products with a separate small-matrix kernel: OpenBLAS's SkylakeX build does when
M N K <= 100^3, and then e.g. (32 x 128) @ (128 x 512) is 1.2x faster as four (8 x 128) blocks, and
(32 x 512) @ (512 x 128) 1.4x (measured, 2-core Intel Xeon, one BLAS thread, issue 19).  Other
builds and kernels (Haswell's, another BLAS) have no such kernel, and blocks only add calls.  So the
block is not a constant: :func:`step_gemm_rows` times the candidates (the whole product, blocks of
2, 4, ... rows, and the micro-kernel) on this machine, in this process, and keeps the fastest.

Timing: one compiled loop per candidate repeats the product until about ``BLOCK_S`` seconds, the
candidates interleaved over ``ROUNDS`` rounds (one twice as slow as the whole product is dropped
after a round); a candidate's time is the smallest of its rounds, and a candidate wins only if it is
faster than the whole product by ``MARGIN`` (noise never buys extra calls).  About 10-30 ms per new
(M, K, N, dtype, direction), once per process, with BLAS on one thread as in the loops.
``RNNKIT_GEMM_ROWS`` forces it: ``0`` the whole product, ``n`` blocks of n rows, ``packed`` the
micro-kernel.  No choice changes a result's value beyond the kernels' own rounding (each element is one
dot product either way; tested in float64 to 1e-13).
"""
from __future__ import annotations

import functools
import os
import time

import numpy as np

from rnnkit.engine.buffers import absent, reuse_empty, transposed
from rnnkit.engine.threads import blas_threads_at_most
from rnnkit.errors import SettingError
from rnnkit.kernels import jit
from rnnkit.engine.step_gemm import PACKED, SMALL_GEMM, pack, packed_shape, times

CANDIDATES = (2, 4, 8, 16, 32, 64)
"""Row blocks tried (those smaller than M), besides the whole product (0) and the micro-kernel (PACKED)."""
STREAMING_ROWS = min(CANDIDATES)
"""Rows of a streaming product.  One row stays one BLAS call, unmeasured (OpenBLAS runs it as a GEMV, at the
memory's speed: (1 x 512) @ (512 x 2048) 49 us against the micro-kernel's 45); two rows are measured like more (one
sgemm call packs all of W at every step: (2 x 512) @ (512 x 2048) 376 us against the micro-kernel's 49, (2 x 1024) @
(1024 x 4096) 3,440 against 522; 2-core AMD EPYC, one thread, session 16).  The in-loop projection and unit shards
leave shards of up to this many rows alone (:mod:`rnnkit.engine.in_loop`, :mod:`rnnkit.engine.unit_shards`)."""
MIN_TWO_ROW_MACS = 1 << 18
"""Multiply-adds from which a product of two rows is measured; below, one BLAS call (LSTM (50, 2, 64, 64)
fwd+BPTT, (2 x 64) @ (64 x 256) a step, ran 1.05x slower on the micro-kernel chosen by its timing alone)."""
ROUNDS = 5
BLOCK_S = 1e-3
MARGIN = 0.95
"""A block must take at most this share of the whole product's time to be chosen."""


@jit
def repeat(a, W, WT, out, rows, backward, n):
    """n products of :func:`rnnkit.engine.step_gemm.times` (the loops' per-step GEMM, the same compiled copy)."""
    for _ in range(n):
        times(a, W, WT, out, rows, backward)


def forced_rows() -> int | None:
    """``RNNKIT_GEMM_ROWS`` as an int (0: the whole product, PACKED for ``packed``), or None if unset."""
    env = os.environ.get("RNNKIT_GEMM_ROWS", "").strip()
    if not env:
        return None
    if env == "packed":
        return PACKED
    if not env.isdigit():
        raise SettingError(f"RNNKIT_GEMM_ROWS: expected an integer >= 0 or 'packed', got {env!r}")
    return int(env)


def packed_weights(W: np.ndarray, backward: bool, workspace: dict | None = None, key: str | None = None,
                   rows: np.ndarray | None = None) -> np.ndarray:
    """The micro-kernel's operand: W.T (forward) or W (backward) packed (:func:`rnnkit.engine.step_gemm.pack`),
    made per call (W changes in place between calls) in a buffer kept in ``workspace`` under ``key`` (default:
    W_hh's forward or backward buffer; the input projection inside the loop keeps W_ih's under its own).
    ``rows`` (forward only): W[rows].T, gathered while packing (a unit shard's gate rows)."""
    B = W if backward else W.T
    key = key or ("W_hh_packed.backward" if backward else "W_hh_packed.forward")  # two shapes: one buffer each
    cols = np.empty(0, np.intp) if rows is None else np.asarray(rows, np.intp)
    Bp = reuse_empty(workspace, key, packed_shape(B.shape[0], len(cols) or B.shape[1], W.dtype), W.dtype)
    pack(B, Bp, cols)
    return Bp


def needs_wt(M: int, rows: int, W_hh, backward: bool) -> bool:
    """Whether the loops' BLAS GEMMs on M rows in blocks of ``rows`` (0: whole) read W_hh's contiguous
    transpose (:func:`rnnkit.engine.step_gemm.times_wt`: the forward's blocks of at most ``SMALL_GEMM``
    multiply-adds; :func:`rnnkit.engine.step_gemm.times_w`: the backward's larger ones).  If none does, the copy
    (6.8 MB at H = 650) is not made."""
    whole = rows <= 0 or rows >= M
    size = M if whole else ((M % rows or rows) if not backward else rows)  # the smallest, or the largest, block
    small = size * W_hh.shape[0] * W_hh.shape[1] <= SMALL_GEMM
    return not small if backward else small


def loop_operands(W_hh, blocks: list, backward: bool, workspace: dict | None) -> tuple:
    """(blocks, second operand) for the loops of one layer direction, from ``blocks`` [(b0, b1, rows)]:
    if any shard chose the micro-kernel, every shard uses it (one packed W_hh); else W_hh's contiguous
    transpose where a block reads it (:func:`needs_wt`), or a size-0 array."""
    if any(r == PACKED for _, _, r in blocks):
        return [(b0, b1, PACKED) for b0, b1, _ in blocks], packed_weights(W_hh, backward, workspace)
    if any(needs_wt(b1 - b0, r, W_hh, backward) for b0, b1, r in blocks):
        return blocks, transposed(W_hh, workspace)
    return blocks, absent(W_hh.dtype, 2)


def time_rows(M: int, H: int, G: int, dtype, backward: bool, clock=time.perf_counter, blocks: bool = True) -> dict:
    """{rows: seconds per product} for each candidate (0: the whole product, PACKED: the micro-kernel, and
    with ``blocks`` the row blocks) at this shape: forward (M, H) @ W_hh.T (G, H), backward (M, G) @ W_hh."""
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((G, H)) * 0.1).astype(dtype)
    WT, Wp = np.ascontiguousarray(W.T), packed_weights(W, backward)
    a = rng.standard_normal((M, G if backward else H)).astype(dtype)
    out = np.empty((M, H if backward else G), dtype)
    names = [0, PACKED] + [r for r in CANDIDATES if r < M and blocks]  # the two contenders back to back
    with blas_threads_at_most(1):
        repeat(a, W, WT, out, 0, backward, 1)  # compile (or load) and warm the caches
        t0 = clock()
        repeat(a, W, WT, out, 0, backward, 3)
        n = max(1, min(1000, int(BLOCK_S / max((clock() - t0) / 3, 1e-9))))
        best = dict.fromkeys(names, float("inf"))
        for _ in range(ROUNDS):
            for r in names:
                if 2 * best[0] < best[r] < float("inf"):  # far behind after a round: not timed again
                    continue
                t0 = clock()
                repeat(a, W, Wp if r == PACKED else WT, out, r, backward, n)
                best[r] = min(best[r], (clock() - t0) / n)
    return best


def choose(times: dict) -> int:
    """The fastest candidate of :func:`time_rows`' result; the whole product (0) unless another gains."""
    r = min(times, key=times.get)
    return r if times[r] <= MARGIN * times[0] else 0


@functools.lru_cache(maxsize=None)
def _timings(M: int, H: int, G: int, dtype: str, backward: bool) -> dict:
    small = M * H * G <= SMALL_GEMM  # BLAS's small-matrix kernel: blocks only add calls; 2 candidates, ~10 ms
    return time_rows(M, H, G, np.dtype(dtype), backward, blocks=not small)


def timings(M: int, H: int, G: int, dtype, backward: bool) -> dict:
    """:func:`time_rows`' result for this shape, measured once per process (whatever ``RNNKIT_GEMM_ROWS``)."""
    return _timings(int(M), int(H), int(G), np.dtype(dtype).name, bool(backward))


def step_gemm_rows(M: int, H: int, G: int, dtype, backward: bool) -> int:
    """How the per-step GEMM for M rows, hidden H, G gate columns runs (0: one BLAS call, n: blocks of n rows,
    PACKED: the micro-kernel): ``RNNKIT_GEMM_ROWS`` if set, else one BLAS call for one row (and two rows under
    :data:`MIN_TWO_ROW_MACS`), else measured once per process (:func:`time_rows`)."""
    forced = forced_rows()
    if forced is not None:
        return forced
    if M < STREAMING_ROWS or (M == STREAMING_ROWS and M * H * G < MIN_TWO_ROW_MACS):  # a GEMV; two rows, small
        return 0
    return choose(timings(M, H, G, dtype, backward))
