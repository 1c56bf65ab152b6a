"""Thread policy of the compiled time loops: batch shards and directions side by side.

The compiled loops release the GIL, so Python threads run them in parallel.  Two kinds of
parallelism oneDNN does not use:

* the two directions of a bidirectional layer are independent recurrences: side by side;
* the batch rows of one direction are independent recurrences too: split into shards, each
  a whole sequence on its own thread, with one BLAS thread each.  A shard's per-step GEMM
  has fewer rows; this pays when the rows stay enough to use the weights well
  (``MIN_SHARD_ROWS``), or when the recurrent weights are small enough (``SMALL_W_HH``)
  that the per-step elementwise work and the call overheads dominate.

Measured on a 2-core machine with issue 9's prototype (fwd+bwd time ratios to PyTorch, one
shard -> two): (T, B, I, H) = (200, 16, 32, 64) 1.38 -> 0.74, (100, 32, 64, 128) 1.85 -> 1.28,
(64, 128, 256, 512) 1.04 -> 0.90, while at (35, 20, 650, 650) one shard whose GEMM runs on two
BLAS threads was better.

How many cores: ONE setting per run, :func:`use_cores` (a context, scoped like threadpoolctl's
limits, inherited by nothing but the calling thread's code), set by the upper floors: the trainer
(``--blas-threads N``: N cores), an MPI rank that shares its node (:func:`shared_cores`), a Ray
trial or grid cell (1 core unless the spec says more).  Without one, the loops may use the cores
this process may run on.  ``layer.cores`` (None by default) lowers it for one layer; a nested
``use_cores`` never raises an outer one.  With one core, everything (BLAS included) runs on the
calling thread.

With one job (one direction, no shards), the loop's BLAS runs on one thread when the per-step
GEMM is small (``SMALL_STEP_GEMM``), else on all the cores rnnkit may use.  :func:`run_jobs` sets
BLAS to the plan's count for the block (raising or lowering it) and restores it after: the one
setting of rnnkit's threads is :func:`use_cores` (``--blas-threads``), not a threadpoolctl limit
around the call.  The trainer keeps BLAS itself on one thread: rnnkit's threads split the big
GEMMs (:mod:`rnnkit.engine.big_gemm`), so BLAS's idle threads never spin on the loops' cores.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

SMALL_STEP_GEMM = 1 << 20
"""Multiply-adds of the per-step GEMM (B x H times H x G) up to which a single loop runs its
BLAS on one thread: handing such a small GEMM to two threads costs more than it saves at
every step (measured with ``benchmarks/rnnkit_alone.py --small-step-gemm N``)."""
MIN_SHARD_ROWS = 32
"""Rows per shard from which sharding pays whatever the weights' size."""
SMALL_W_HH = 1 << 20
"""Bytes of W_hh up to which shards of at least ``MIN_SMALL_ROWS`` rows pay."""
MIN_SMALL_ROWS = 4
BIG_W_HH = 1 << 21
"""Bytes of W_hh (2 MB) from which shards of :data:`MIN_BIG_W_ROWS` rows pay when their per-step GEMM runs on the
micro-kernel (W_hh packed once, where one BLAS call repacks it at every step).  Measured, 2-core AMD EPYC, session
16, LSTM, fwd+BPTT / inference, one recurrence (BLAS on both cores) -> two shards: (35, 12, 650, 650) 70 -> 50 /
30 -> 17 ms (6-row shards), (35, 4, 650, 650) 27 -> 21.5 / 11.8 -> 8.5, (50, 4, 512, 512) 22.1 -> 17.7 / 9.5 ->
6.6, (50, 6, 512, 512) 32.6 -> 27.0 / 13.9 -> 9.8; with W_hh 1 MB ((50, 2, 256, 256): one-row shards) no gain, and
one-row shards (a GEMV each, all of W_hh per row) lost at (50, 2, 512, 512): 12.6 -> 16.7 / 4.7 -> 5.2."""
MIN_BIG_W_ROWS = 2
MIN_PACKED_ROWS = 8
"""Rows per shard (one full tile) from which shards pay when their per-step GEMM runs on rnnkit's micro-kernel
(``shard_gemm_packed``): measured, LSTM (35, 20, 650, 650) fwd+BPTT 80 ms in two 10-row shards against 95-102
ms in one recurrence with BLAS on 2 threads (2-core Intel Xeon, issue 19)."""


@dataclass(frozen=True)
class ThreadPlan:
    """How one layer's loops run: ``shards`` batch row ranges per direction, directions side by side
    when ``parallel``, and ``blas_threads`` for the BLAS the loops call (None: leave it)."""

    shards: tuple
    parallel: bool
    blas_threads: int


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def busy_threads(samples: int = 5, gap_s: float = 0.01, read=None, sleep=None) -> float:
    """Runnable threads of other processes now: the median over ``samples`` readings, ``gap_s`` apart, of
    the kernel's count of runnable threads (/proc/loadavg's 4th field) less this reading one.  Not the
    1-minute load average: it still counts a job that ended a minute ago (measured: in alternating
    benchmark runs every rnnkit run saw load ~1 from the run before, and trained on one core, 0.68x).
    Where /proc/loadavg is missing: the 1-minute load average."""
    import statistics
    import time

    read = read or _read_loadavg
    sleep = sleep or time.sleep
    counts = []
    for k in range(samples):
        text = read()
        if text is None:
            return os.getloadavg()[0]
        counts.append(max(0, int(text.split()[3].split("/")[0]) - 1))
        if k + 1 < samples:
            sleep(gap_s)
    return statistics.median(counts)


def _read_loadavg() -> str | None:
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return f.read()
    except OSError:
        return None


def free_cores() -> int:
    """Cores free for this process now: the machine's cores less the runnable threads of other
    processes (:func:`busy_threads`), within 1..:func:`available_cores`.  The command line's
    default thread count (``--blas-threads``): all cores on a quiet machine, one on a busy one
    (measured on a shared 2-core machine at load 10: the char-LM trained 3.3x slower on two
    threads than on one; on a quieter one 1.6x faster; docs/performance.md, issue 19)."""
    n = available_cores()
    try:
        busy = busy_threads()
    except (AttributeError, OSError, ValueError, IndexError):  # no load figures here
        return n
    return max(1, min(n, int((os.cpu_count() or n) - busy + 0.5)))


_CORES = contextvars.ContextVar("rnnkit_cores", default=None)


def usable_cores() -> int:
    """Cores the compiled loops may use here: the innermost :func:`use_cores`, else
    :func:`available_cores`."""
    n = _CORES.get()
    return available_cores() if n is None else n


def loop_cores(layer_cores: int | None) -> int:
    """The cores one layer's loops use: :func:`usable_cores`, lowered by ``layer.cores`` (its own
    setting, which wins over the machine's count but never over an upper floor's :func:`use_cores`)."""
    outer = _CORES.get()
    if layer_cores is None:
        return usable_cores()
    return layer_cores if outer is None else min(layer_cores, outer)


@contextlib.contextmanager
def use_cores(n: int):
    """Let the loops run in this block on at most ``n`` cores (n >= 1; an outer limit is never raised)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"cores: expected an integer >= 1, got {n!r}")
    outer = _CORES.get()
    token = _CORES.set(n if outer is None else min(n, outer))
    try:
        yield
    finally:
        _CORES.reset(token)


def shared_cores(cores_on_node: int, ranks_on_node: int) -> int:
    """Cores of one of ``ranks_on_node`` processes that share ``cores_on_node`` cores (at least 1)."""
    return max(1, cores_on_node // max(1, ranks_on_node))


def plan(B: int, H: int, G: int, D: int, itemsize: int, cores: int, shard_gemm_packed=None) -> ThreadPlan:
    """The thread plan for a layer direction count D with batch B, hidden H, G gate columns, on
    ``cores`` cores (one core: no threads, one BLAS thread).  ``shard_gemm_packed(rows)``: whether a shard
    of that many rows runs its per-step GEMM on the micro-kernel (:mod:`rnnkit.engine.gemm_rows`); such
    shards pay from :data:`MIN_PACKED_ROWS` rows, or from :data:`MIN_BIG_W_ROWS` with W_hh of :data:`BIG_W_HH` bytes."""
    if cores <= 1:
        return ThreadPlan(((0, B),), False, 1)
    per_dir = max(1, cores // D) if cores >= D else 1
    n = 1
    for k in range(per_dir, 1, -1):
        rows = B // k
        if (rows >= MIN_SHARD_ROWS or (rows >= MIN_SMALL_ROWS and G * H * itemsize <= SMALL_W_HH)
                or (rows >= (MIN_BIG_W_ROWS if G * H * itemsize >= BIG_W_HH else MIN_PACKED_ROWS)
                    and shard_gemm_packed is not None and shard_gemm_packed(rows))):
            n = k
            break
    bounds = [B * k // n for k in range(n + 1)]
    shards = tuple(zip(bounds[:-1], bounds[1:]))
    if 1 < n * D <= cores:  # every job on its own core, one BLAS thread each
        return ThreadPlan(shards, True, 1)
    return ThreadPlan(shards, False, 1 if B * G * H <= SMALL_STEP_GEMM else cores)


@functools.lru_cache(maxsize=1)
def loop_blas():
    """The BLAS libraries loaded in this process (scipy's is the one numba's ``np.dot`` calls)."""
    import scipy.linalg.cython_blas  # noqa: F401  (loaded before the scan, or the limit would miss it)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas").lib_controllers


@contextlib.contextmanager
def _blas_set(n: int | None, lower_only: bool):
    """Every loaded BLAS on ``n`` threads for the block (only where that lowers it, if ``lower_only``);
    restored after.  None: leave them."""
    changed = []
    if n is not None:
        for lib in loop_blas():
            old = lib.get_num_threads()
            if old > n or (old != n and not lower_only):
                lib.set_num_threads(n)
                changed.append((lib, old))
    try:
        yield
    finally:
        for lib, old in changed:
            lib.set_num_threads(old)


def blas_threads(n: int | None):
    """Set every loaded BLAS to ``n`` threads for the block, raising or lowering (None: leave them)."""
    return _blas_set(n, lower_only=False)


def blas_threads_at_most(n: int | None):
    """Lower every loaded BLAS to at most ``n`` threads for the block (None: leave them)."""
    return _blas_set(n, lower_only=True)


class LayerBusyError(RuntimeError):
    """A layer was called from a second thread while another call on it was running."""


def exclusively(lock, what: str, fn, *args):
    """``fn(*args)`` holding ``lock`` (a layer's) for the call; a second thread calling meanwhile gets a clear error
    instead of waiting or sharing the layer's buffers.  A function, not a context manager: ``step`` pays it on
    every call (the class with ``__enter__``/``__exit__`` cost 0.36 us, about 4 % of a GRU step at H = 128)."""
    if not lock.acquire(blocking=False):
        raise LayerBusyError(f"{what}: layer is in use by another thread; use one layer per thread")
    try:
        return fn(*args)
    finally:
        lock.release()


@functools.lru_cache(maxsize=None)
def _pool(n: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(n, thread_name_prefix="rnnkit-loop")


def run_jobs(jobs: list, blas: int | None, parallel: bool = True) -> list:
    """Run zero-argument callables (compiled loops that release the GIL), side by side if
    ``parallel`` and there are several, the first on this thread, with BLAS on ``blas`` threads
    (None: as it is); returns their results in order."""
    with blas_threads(blas):
        if len(jobs) == 1 or not parallel:
            return [j() for j in jobs]
        futures = [_pool(len(jobs) - 1).submit(j) for j in jobs[1:]]
        try:
            first = jobs[0]()
        finally:  # never leave a thread writing into buffers the caller is about to read
            wait(futures)
        return [first] + [f.result() for f in futures]


def time_side_by_side(make_jobs, clock, rounds: int = 5, block_s: float = 4e-3) -> float:
    """Seconds per repetition of the jobs ``make_jobs(n)`` (each repeating its work n times) run side by side
    (:func:`run_jobs`): the smallest of ``rounds`` blocks of about ``block_s``, a block's time the longest any job
    took, each timed on its own thread (a thread that wakes late does not count its wait)."""

    def timed(job):
        def run():
            t0 = clock()
            job()
            return clock() - t0
        return run

    run_jobs(make_jobs(1), 1)  # compile (or load) and warm the caches
    n = max(1, min(10000, int(block_s / max(max(run_jobs([timed(j) for j in make_jobs(2)], 1)) / 2, 1e-9))))
    return min(max(run_jobs([timed(j) for j in make_jobs(n)], 1)) for _ in range(rounds)) / n
