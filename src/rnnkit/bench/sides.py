"""The two sides of a comparison and how they are timed (A B A B, medians).

Each comparison is timed through two "sides" that expose named callables: ``run(name, n)``
returns seconds per call of ``n`` calls after one untimed call (which wakes the side's
threads after it sat idle while the other side ran).  :mod:`.builders` makes the callables
of one library from plain numpy weights and data, so both sides get the same numbers.
"""
from __future__ import annotations

import math
import statistics
import time

from rnnkit.bench.builders import BUILDERS


def _run_timed(fn, n: int, warm: int = 1) -> float:
    for _ in range(warm):
        fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


class InProcess:
    """A side run in this process (both libraries share it: their idle threads interfere)."""

    def __init__(self, lib: str):
        self.lib, self.fns = lib, {}

    def setup(self, builder: str, *args) -> None:
        self.fns = BUILDERS[builder](self.lib, *args)

    def call(self, name: str):
        return self.fns[name]()

    def run(self, name: str, n: int, warm: int = 1) -> float:
        return _run_timed(self.fns[name], n, warm)

    def close(self) -> None:
        self.fns = {}

    def info(self, peak: bool = False) -> dict:
        """The BLAS libraries this side loaded (threadpoolctl: which kernels they run) and, with
        ``peak``, the measured peak of a large float32 GEMM (numpy's BLAS on every core this process may use:
        left at its threads as they stood, one bench run measured 172 GFLOP/s, one thread's rate, against 336)."""
        import os

        import numpy as np
        import scipy.linalg.cython_blas  # noqa: F401  (the BLAS rnnkit's compiled loops call)
        from threadpoolctl import threadpool_info, threadpool_limits

        from rnnkit.engine.threads import available_cores

        out = {"blas": [{k: d.get(k) for k in ("internal_api", "prefix", "num_threads", "version", "architecture")}
                        for d in threadpool_info()], "env": {k: os.environ.get(k) for k in NATIVE_UNSET}}
        if peak:
            n = 2048
            a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
            c = np.empty_like(a)
            with threadpool_limits(limits=available_cores(), user_api="blas"):
                t0 = time.perf_counter()
                while time.perf_counter() - t0 < 0.5:  # untimed: BLAS starts its threads (the first call ran at
                    np.dot(a, a, out=c)  # about half the rate: 155 against 318 GFLOP/s, 2-core Xeon, issue 19)
                best, t0 = float("inf"), time.perf_counter()
                while time.perf_counter() - t0 < PEAK_S:
                    best = min(best, _run_timed(lambda: np.dot(a, a, out=c), 1, 0))
            out["sgemm_peak_gflops"] = 2 * n**3 / best / 1e9
        return out


PEAK_S = 1.5
"""Seconds of timed 2048^3 products behind the peak (the fastest of them, about 17 on 2 cores): the fastest of 5
read 97-131 GFLOP/s in some runs of a 2-core AMD EPYC whose products ran at 190-205 in every other (session 15)."""
NATIVE_UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
"""Variables that force OpenBLAS's kernels; a "native" worker starts with both unset, as on a
user's machine (only the benchmark's workers: never the library, the tests or CI)."""


def _worker_main(conn, lib: str, torch_threads: int, blas_threads: int | None) -> None:
    """Loop of a side's process: build callables on request, time them, report back."""
    if lib == "torch":
        import torch

        torch.set_num_threads(torch_threads)
    if blas_threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=blas_threads, user_api="blas")
    side = InProcess(lib)
    while True:
        op, *args = conn.recv()
        if op == "stop":
            break
        try:
            conn.send(("ok", getattr(side, op)(*args)))
        except Exception as e:  # noqa: BLE001 - reported to the parent, which raises it
            conn.send(("error", f"{type(e).__name__}: {e}"))


class Worker:
    """A side run in its own process (``multiprocessing`` spawn), so only its own library's
    threads are alive in it.  Why: PyTorch's OpenMP threads and OpenBLAS's threads spin for a
    while after each call; in one process the side that runs second pays for the other's
    spinning threads on these 2-core machines (measured: PyTorch's LSTM inference at T=100,
    B=32, H=128 took 3.77 ms timed in one process with rnnkit, 1.81 ms in its own worker with
    the default rest; benchmarks/results/quick-isolated-gap0.md, docs/performance.md).
    While one worker runs, the other waits in ``recv`` and its threads go back to sleep."""

    def __init__(self, lib: str, torch_threads: int, blas_threads: int | None, native: bool = False):
        import multiprocessing as mp
        import os

        ctx = mp.get_context("spawn")
        self.lib = lib
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, lib, torch_threads, blas_threads), daemon=True)
        saved = {k: os.environ.pop(k) for k in NATIVE_UNSET if native and k in os.environ}
        try:  # a spawned process inherits the environment at start: unset only for it
            self.proc.start()
        finally:
            os.environ.update(saved)
        child.close()

    def _ask(self, *msg):
        self.conn.send(msg)
        status, value = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"bench: the {self.lib} worker failed: {value}")
        return value

    def setup(self, builder: str, *args) -> None:
        self._ask("setup", builder, *args)

    def call(self, name: str):
        return self._ask("call", name)

    def run(self, name: str, n: int, warm: int = 1) -> float:
        return self._ask("run", name, n, warm)

    def info(self, peak: bool = False) -> dict:
        return self._ask("info", peak)

    def close(self) -> None:
        if self.proc.is_alive():
            self.conn.send(("stop",))
            self.proc.join(timeout=10)
        if self.proc.is_alive():  # did not stop in time (a loaded machine): kill, and reap it
            self.proc.kill()
            self.proc.join(timeout=10)


def make_sides(isolate: bool, torch_threads: int, blas_threads: int | None, native: bool = False):
    """(torch side, rnnkit side): worker processes if ``isolate`` (with ``native``: started with
    :data:`NATIVE_UNSET` unset) else this process."""
    if isolate:
        return (Worker("torch", torch_threads, blas_threads, native),
                Worker("rnnkit", torch_threads, blas_threads, native))
    return InProcess("torch"), InProcess("rnnkit")


def alternate_sides(sa, sb, name: str, repeats: int, warmup: int = 2, min_time: float = 0.02,
                    gap: float = 0.0, warm_time: float = 0.1) -> tuple[float, float]:
    """Median seconds per call of ``name`` on sides ``sa`` and ``sb``: the medians of :func:`alternate_pairs`."""
    return medians(alternate_pairs(sa, sb, name, repeats, warmup, min_time, gap, warm_time))


def medians(pairs: tuple) -> tuple[float, float]:
    """(median of A's blocks, median of B's) of :func:`alternate_pairs`' result."""
    return statistics.median(pairs[0]), statistics.median(pairs[1])


def pair_ratios(ta: list, tb: list) -> list:
    """tb[i] / ta[i] for each A/B pair: how far one pair moves from the next on this machine (the tables print
    their lowest and highest beside the ratio of the medians)."""
    return [b / a for a, b in zip(ta, tb)]


def alternate_pairs(sa, sb, name: str, repeats: int, warmup: int = 2, min_time: float = 0.02,
                    gap: float = 0.0, warm_time: float = 0.1) -> tuple[list, list]:
    """Seconds per call of ``name`` on sides ``sa`` and ``sb`` in each of ``repeats`` pairs, timed A B A B after
    warm-up: ([A's blocks], [B's blocks]).

    Each timed block repeats the call enough times to last ``min_time`` and is preceded by
    ``gap`` seconds of rest and untimed calls lasting ``warm_time`` (at least one).  The rest lets
    the other side's threads go to sleep: OpenBLAS's worker threads keep spinning for a while after
    a call, and a block started earlier shares the 2 cores with them (measured: PyTorch's LSTM
    inference at T=100, B=32, H=128 took 3.65 ms with no rest, 1.81 / 1.79 ms with 0.15 / 0.4 s;
    benchmarks/results/quick-isolated-gap0.15.md and quick-isolated-gap0.4.md).  The untimed calls
    bring the side back to the steady state of a training loop: after a rest, a side whose threads
    sleep between calls runs slower for its first tens of milliseconds (measured, 2-core Intel Xeon VM,
    issue 19: rnnkit's LSTM inference at that point on 2 threads took 7.3 8.2 9.9 6.9 5.4 5.3 ... ms
    per call after 0.15 s of rest, 4.8-5.1 ms in a steady loop; PyTorch's spinning OpenMP threads hide
    it: 3.45 vs 3.36 ms); one untimed call after the rest timed rnnkit at 7.9 ms there."""
    sa.run(name, warmup, 0)
    sb.run(name, warmup, 0)
    per_call = [max(s.run(name, 1), 1e-7) for s in (sa, sb)]
    ns = [max(1, math.ceil(min_time / t)) if min_time > 0 else 1 for t in per_call]
    warms = [max(1, math.ceil(warm_time / t)) for t in per_call]
    ta, tb = [], []
    for _ in range(repeats):
        time.sleep(gap)
        ta.append(sa.run(name, ns[0], warms[0]))
        time.sleep(gap)
        tb.append(sb.run(name, ns[1], warms[1]))
    return ta, tb
