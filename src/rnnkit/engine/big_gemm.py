"""The big GEMMs (all T steps at once) on all the loops' cores: rows split over rnnkit's threads.

A layer's input projection xw = x W_ih^T, its weight gradients dW = (x^T d)^T and its d_x = d W
are one GEMM each over all T * B rows.  :func:`dot` splits the output's rows into one block per
core (:func:`rnnkit.engine.threads.usable_cores`) and runs the blocks side by side on the loops'
threads (:func:`rnnkit.engine.threads.run_jobs`; NumPy releases the GIL inside BLAS), with BLAS on
one thread in each.  Why not BLAS's own threads: OpenBLAS's idle worker threads spin for a while
after each threaded call, and those spinning threads take the cores the time loops' batch shards
run on next (measured, 2-core Intel Xeon, issue 19: two LSTM shards (100, 16, 64, 128) side by side
took 2.2x one shard's time after threaded BLAS calls, 1.05x without; the char-LM training step was
1.08-1.14x faster with every BLAS call on one thread).  Each block is an ordinary BLAS call, so every
element is computed as by one ``np.dot`` of its rows: the same value whatever the split (float64
to 1e-13, tested).  Which products are split (:func:`splits`): from :data:`MIN_SPLIT` multiply-adds always; from
:data:`MIN_TRY_SPLIT` where this machine runs them faster so (:func:`split_pays`, timed once per process and shape:
a thread hand-off costs 28 us on one 2-core machine and 50-90 us on another).
"""
from __future__ import annotations

import functools
import time

import numpy as np

from rnnkit.engine import gemm_rows
from rnnkit.engine.blas_call import gemm_into, unit_strides
from rnnkit.engine.step_gemm import PACKED, pack, packed_gemm, packed_shape
from rnnkit.engine.threads import blas_threads, blas_threads_at_most, run_jobs, usable_cores
from rnnkit.kernels import jit

MIN_SPLIT = 1 << 25
"""Multiply-adds (M N K) from which a product is always split (32M).  Measured on the 2-core Intel Xeon, one
BLAS thread against two blocks on rnnkit's threads: (640 x 128) @ (128 x 128) 151 vs 193 us (the
hand-off alone is 28 us), (640 x 256) @ (256 x 256) 559 vs 427, (3200 x 128) @ (128 x 512) 3106 vs 1855.
Below it, from :data:`MIN_TRY_SPLIT`, the machine decides (:func:`split_pays`); below that a product is one BLAS
call on the threads BLAS has (one while the trainer trains)."""
MIN_TRY_SPLIT = 1 << 24
"""Multiply-adds (16M) from which a product below :data:`MIN_SPLIT` is split where that is measured faster here
(:func:`split_pays`).  The break-even depends on the CPU: on the 2-core Intel Xeon (above) splitting lost at
(640 x 128) @ (128 x 128), 10M; on the 2-core AMD EPYC of issue 19 (session 16; a hand-off 50-90 us; one
thread against split, min of 300 calls) it gained at (3200 x 256) @ (256 x 32), 26M, 577 vs 344 us, and at
(800 x 128) @ (128 x 256), 26M, 522 vs 317, barely at 10-13M ((640 x 128) @ (128 x 128) 218 vs 186), and lost
below 8M ((1600 x 64) @ (64 x 64) 140 vs 167).  Between 8M and 16M the measured choice flipped from one process
to the next (dW_hh of the RNN at (200, 16, 32, 64), 13M), so those stay on one thread."""
SPLIT_MARGIN = 0.9
"""A product below :data:`MIN_SPLIT` is split only if that takes at most this share of one thread's time."""
MIN_ROWS = 16
"""Output rows per block at least (BLAS's kernels work on blocks of rows)."""
MIN_ONE_THREAD = 1 << 18
"""Multiply-adds (256K) from which a product that is not split runs with BLAS held to one thread: OpenBLAS threads
a GEMM from 4 x 65536 multiply-adds (its GEMM_MULTITHREAD_THRESHOLD x SMP_THRESHOLD_MIN), and BLAS's threads then
get in the loops' way in both directions.  After a threaded call they spin on the cores the loops' shards run on
next (measured, 2-core Intel Xeon, issue 19: LSTM (200, 16, 32, 64) inference, its (3200 x 32) @ (32 x 256)
projection on BLAS's two threads, then two 8-row shards: the main thread's shard took 1.93 ms, the other's 0.95);
and while the loops run, BLAS is held to one thread, so its idle threads fall asleep and the next threaded call
waits for them to wake (measured, 2-core AMD EPYC, session 16: RNN (64, 16, 32, 64) fwd+BPTT, the (1024 x 64) @
(64 x 32) d_x and the dW_ih product, 2.1M multiply-adds each, 3-4 ms a call instead of 40-100 us; was 4M here).
Setting the thread count costs a few microseconds."""
MIN_MEASURED = 1 << 22
"""Multiply-adds (4M) from which a thin product may run on the micro-kernel (:func:`dot`) and :func:`add_t` times its
two ways (:func:`add_t_way`); smaller ones: one BLAS call, straight into the output."""


MICRO_MAX_K = 64
"""Inner dimensions up to which :func:`dot` runs on rnnkit's micro-kernel (:mod:`rnnkit.engine.step_gemm`, b packed
once per call) instead of BLAS: OpenBLAS uses the cores poorly on such thin products.  Measured, one thread
(2-core Intel Xeon, issue 19): (1600 x 32) @ (32 x 256) 150 us against 198, (1600 x 64) @ (64 x 512) 646 against
750; at K = 128 the two were even ((1600 x 128) @ (128 x 1024) 2,553 against 2,615)."""


def _micro(a, b, out) -> bool:
    """Whether a @ b into ``out`` runs on the micro-kernel: thin (K <= MICRO_MAX_K), one float dtype, unit
    column strides in a and out, and the micro-kernel faster than BLAS on this machine (:func:`micro_pays`)."""
    K = a.shape[1]
    return (0 < K <= MICRO_MAX_K and a.dtype == b.dtype == out.dtype and a.dtype in (np.float32, np.float64)
            and a.strides[1] == a.itemsize and out.strides[1] == out.itemsize and micro_pays(a.dtype.name))


def micro_pays(dtype: str) -> bool:
    """Whether the micro-kernel beats BLAS on a thin product here: ``RNNKIT_GEMM_ROWS`` if set (``packed``: yes,
    anything else: no), else (256 x 64) @ (64 x 512) timed both ways once per process and dtype, one thread
    (:func:`rnnkit.engine.gemm_rows.time_rows`, about 10 ms; a CPU without 64-byte vectors may lose)."""
    forced = gemm_rows.forced_rows()
    return forced == PACKED if forced is not None else _measured_pays(dtype)


@functools.lru_cache(maxsize=None)
def _measured_pays(dtype: str) -> bool:
    times = gemm_rows.time_rows(256, MICRO_MAX_K, 512, np.dtype(dtype), backward=False, blocks=False)
    return gemm_rows.choose(times) == PACKED


def _one_thread(a, b, out, n_madds: int):
    """a @ b into ``out`` (None: new) in one BLAS call, on one BLAS thread from :data:`MIN_ONE_THREAD`."""
    if n_madds < MIN_ONE_THREAD:
        return np.dot(a, b, out=out)
    with blas_threads_at_most(1):
        return np.dot(a, b, out=out)


@jit
def gemm(a, b, out):
    """out = a @ b through the BLAS the compiled loops call (scipy's: numba's ``np.dot``), not NumPy's own
    copy of OpenBLAS: two OpenBLAS copies keep two pools of threads, and one's idle threads spin while the
    other computes (measured: LSTM (35, 20, 650, 650) fwd+BPTT 1.5x slower with the big GEMMs on NumPy's)."""
    np.dot(a, b, out)


def dot(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None, cores: int | None = None,
        blas: int = 1) -> np.ndarray:
    """a @ b for 2-D a (M, K), b (K, N), into ``out`` (M, N) C-contiguous if given; the rows in blocks
    on ``cores`` threads (default: :func:`rnnkit.engine.threads.usable_cores`), one BLAS thread each.
    ``blas`` > 1: one BLAS call on that many BLAS threads instead, for a layer whose thread plan gives
    the cores to BLAS (its per-step GEMMs run on BLAS's threads, which then spin: rnnkit's threads would
    meet them).  Any strides (NumPy's ``np.dot`` rules).  A thin product (K <= :data:`MICRO_MAX_K`, from
    :data:`MIN_MEASURED` multiply-adds) runs on rnnkit's micro-kernel instead of BLAS; one that is not split,
    on one BLAS thread from :data:`MIN_ONE_THREAD`."""
    M, K = a.shape
    N = b.shape[1]
    if out is None:
        out = np.empty((M, N), dtype=np.result_type(a, b))
    if blas > 1:
        with blas_threads(blas):
            gemm(a, b, out)
        return out
    n = min(cores or usable_cores(), M // MIN_ROWS)
    return _dot(a, b, out, n, splits(DOT, M, K, N, out.dtype, n))


def _dot(a, b, out, n: int, split: bool):
    """a @ b into ``out``: the rows in ``n`` blocks side by side if ``split``, else on this thread (:func:`dot`)."""
    M, K = a.shape
    N = b.shape[1]
    if M * N * K >= MIN_MEASURED and _micro(a, b, out):  # a thin product: rnnkit's micro-kernel, b packed once
        Bp = np.empty(packed_shape(K, N, a.dtype), a.dtype)
        pack(b, Bp, np.empty(0, np.intp))  # every column

        def block(r0, r1):
            return functools.partial(packed_gemm, a[r0:r1], Bp, out[r0:r1])
    elif split:
        def block(r0, r1):
            return functools.partial(np.dot, a[r0:r1], b, out[r0:r1])
    else:
        return _one_thread(a, b, out, M * N * K)
    if not split:
        block(0, M)()
        return out
    bounds = [M * k // n for k in range(n + 1)]
    jobs = [block(r0, r1) for r0, r1 in zip(bounds[:-1], bounds[1:])]
    run_jobs(jobs, 1)
    return out


def dot_t(a: np.ndarray, b: np.ndarray, blas: int = 1, cores: int | None = None) -> np.ndarray:
    """(a^T b)^T = b^T a, (N, M) for a (R, M), b (R, N): a weight gradient summed over R rows, formed
    as a^T b and returned transposed (OpenBLAS runs this orientation up to 2x faster than b^T a).

    Split over the R rows summed (each thread forms the sum over its block; the blocks' sums are
    then added), not over the output's rows: a block of a^T's rows is a strided operand, and two such
    products side by side ran at one core's speed (measured, (8192, 512) x (8192, 512): 134 GFLOP/s
    against 266 split over R).  ``blas`` > 1: one BLAS call on BLAS's threads, as :func:`dot`."""
    R, M = a.shape
    N = b.shape[1]
    if blas > 1:
        out = np.empty((M, N), dtype=np.result_type(a, b))
        with blas_threads(blas):
            gemm(a.T, b, out)
        return out.T
    n = min(cores or usable_cores(), R // MIN_ROWS)
    return _dot_t(a, b, n, splits(DOT_T, R, M, N, np.result_type(a, b), n))


def _dot_t(a, b, n: int, split: bool):
    """(a^T b)^T: summed over ``n`` blocks of R side by side if ``split``, else on this thread (:func:`dot_t`)."""
    R, M = a.shape
    N = b.shape[1]
    if not split:
        return _one_thread(a.T, b, None, R * M * N).T
    bounds = [R * k // n for k in range(n + 1)]
    sums = [np.empty((M, N), dtype=np.result_type(a, b)) for _ in range(n)]
    blocks = zip(bounds[:-1], bounds[1:], sums)
    run_jobs([functools.partial(np.dot, a[r0:r1].T, b[r0:r1], s) for r0, r1, s in blocks], 1)
    for s in sums[1:]:
        sums[0] += s
    return sums[0].T


INTO, SUM = "into", "sum"
"""The two ways of :func:`add_t`."""
INTO_MARGIN = 0.9
"""INTO must take at most this share of SUM's time, measured alone, to be chosen: where the two were within a few
per cent alone, INTO ran 3-5 % slower inside a training step (GRU (50, 64, 128, 256) fwd+BPTT, 22.3-23.0 ms
against 21.7-22.4 with SUM; issue 19, round 6), and INTO gains 20-30 % where it gains at all."""


def add_t(out: np.ndarray, a: np.ndarray, b: np.ndarray, blas: int = 1, cores: int | None = None,
          how: str | None = None) -> np.ndarray:
    """out += (a^T b)^T = b^T a for a (R, M), b (R, N), out (N, M) with unit column stride: a weight gradient
    summed over R rows, added into the gradient.  Two ways (``how``; default: :func:`add_t_way`, measured):

    * :data:`INTO`: out's rows in one block per core, BLAS adding each block's product straight into it (beta = 1,
      :func:`rnnkit.engine.blas_call.gemm_into`): no partial sums, no transposed add;
    * :data:`SUM`: :func:`dot_t` (the product as a^T b, split over R: partial sums added), then added transposed.

    Which is faster depends on the shape and the CPU (measured on the 2-core Xeon, issue 19, round 6, ms for
    (R, M, N), SUM against INTO: (700, 650, 2600) 9.8 vs 7.6; (1600, 512, 2048) 15.9 vs 11.1; (3200, 512, 2048)
    24.5 vs 23.4; (8192, 256, 2048) 32.5 vs 39.0: the product's orientation decides at large R).
    ``blas`` > 1: one BLAS call on that many BLAS threads, as :func:`dot`."""
    R, M = a.shape
    N = b.shape[1]
    if not unit_strides(b.T, a, out):  # NumPy's rules for any strides
        out += dot_t(a, b, blas, cores)
        return out
    if blas > 1:
        with blas_threads(blas):
            gemm_into(b.T, a, out, 1.0)
        return out
    n = min(cores or usable_cores(), N // MIN_ROWS)
    if (how or add_t_way(R, M, N, a.dtype.name, n)) == SUM:
        out += dot_t(a, b, 1, cores)
        return out
    return _into(out, a, b, n, splits(INTO, R, M, N, out.dtype, n))


def _into(out, a, b, n: int, split: bool):
    """out += b^T a by BLAS (beta = 1): out's rows in ``n`` blocks side by side if ``split`` (:func:`add_t`)."""
    R, M = a.shape
    N = b.shape[1]
    if not split:
        with blas_threads_at_most(1 if R * M * N >= MIN_ONE_THREAD else None):
            gemm_into(b.T, a, out, 1.0)
        return out
    bounds = [N * k // n for k in range(n + 1)]
    run_jobs([functools.partial(gemm_into, b[:, r0:r1].T, a, out[r0:r1], 1.0)
              for r0, r1 in zip(bounds[:-1], bounds[1:])], 1)
    return out


@functools.lru_cache(maxsize=None)
def add_t_way(R: int, M: int, N: int, dtype: str, cores: int, clock=time.perf_counter) -> str:
    """:data:`INTO` or :data:`SUM` for :func:`add_t` at this shape on ``cores`` cores: below
    :data:`MIN_MEASURED` multiply-adds INTO (one small BLAS call, no temporary); above, both timed once per process
    on scratch operands of the shape (the faster of two runs each, after one to warm up: about 3 x 2 products;
    0.4 s at (8192, 512, 2048) on 2 cores); INTO only if it takes at most :data:`INTO_MARGIN` of SUM's time."""
    if R * M * N < MIN_MEASURED:
        return INTO
    a, b, out = np.full((R, M), 0.5, dtype), np.full((R, N), 0.25, dtype), np.zeros((N, M), dtype)  # values: any
    best = fastest({way: functools.partial(add_t, out, a, b, cores=cores, how=way) for way in (INTO, SUM)}, 3, clock)
    return INTO if best[INTO] <= INTO_MARGIN * best[SUM] else SUM


def fastest(runs: dict, reps: int, clock) -> dict:
    """{key: the smallest seconds of one call of ``runs[key]``}: ``reps`` rounds, the calls alternating within a round,
    the first round a warm-up (its calls read the clock once, untimed): how :func:`add_t_way` and :func:`split_pays`
    time their ways."""
    best = dict.fromkeys(runs, float("inf"))
    for rep in range(reps):
        for key, run in runs.items():
            t0 = clock()
            run()
            if rep:
                best[key] = min(best[key], clock() - t0)
    return best


DOT, DOT_T = "dot", "dot_t"
"""With :data:`INTO`: the three split products, by what :func:`split_pays` times."""


def splits(op: str, R: int, M: int, N: int, dtype, n: int) -> bool:
    """Whether product ``op`` (:data:`DOT`: a (R, M) @ b (M, N); :data:`DOT_T`: (a^T b)^T for a (R, M), b (R, N);
    :data:`INTO`: out (N, M) += b^T a, the same a and b) runs in ``n`` blocks side by side: from :data:`MIN_SPLIT`
    multiply-adds always, below :data:`MIN_TRY_SPLIT` never, between them where :func:`split_pays` here."""
    if n <= 1:
        return False
    madds = R * M * N
    if madds >= MIN_SPLIT:
        return True
    return madds >= MIN_TRY_SPLIT and split_pays(op, R, M, N, np.dtype(dtype).name, n)


@functools.lru_cache(maxsize=None)
def split_pays(op: str, R: int, M: int, N: int, dtype: str, n: int, clock=time.perf_counter) -> bool:
    """Whether ``op`` (see :func:`splits`) at this shape takes at most :data:`SPLIT_MARGIN` of one thread's time in
    ``n`` blocks side by side: both timed once per process on scratch operands (the faster of four runs each,
    alternating, after one each to warm up; up to about 5 ms at 32M multiply-adds).  Either way the numbers are
    the same (each output element one BLAS dot product; :func:`dot_t`'s partial sums: float64 to 1e-13)."""
    a = np.full((R, M), 0.5, dtype)  # values: any
    b = np.full((M, N) if op == DOT else (R, N), 0.25, dtype)
    out = np.zeros((R, N) if op == DOT else (N, M), dtype)
    run = {DOT: lambda split: _dot(a, b, out, n, split), DOT_T: lambda split: _dot_t(a, b, n, split),
           INTO: lambda split: _into(out, a, b, n, split)}[op]
    best = fastest({split: functools.partial(run, split) for split in (False, True)}, 5, clock)
    return best[True] <= SPLIT_MARGIN * best[False]
