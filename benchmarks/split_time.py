"""One big GEMM on one thread against split over the cores (rnnkit.engine.big_gemm), microseconds, min and median of
300 calls: the figures behind big_gemm.MIN_TRY_SPLIT.  usage: PYTHONPATH=<src> python benchmarks/split_time.py
(issue 19, session 16; OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset in the command, as every benchmark)."""
import statistics
import time

import numpy as np

from rnnkit.engine import big_gemm

SHAPES = [(160, 128, 128), (640, 128, 128), (1600, 64, 64), (3200, 32, 128), (800, 128, 256), (3200, 256, 32)]


def timed(f, n=300):
    f()
    f()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return round(1e6 * min(ts), 1), round(1e6 * statistics.median(ts), 1)


rng = np.random.default_rng(0)
for M, K, N in SHAPES:
    a, b = rng.standard_normal((M, K)).astype(np.float32), rng.standard_normal((K, N)).astype(np.float32)
    out = np.empty((M, N), np.float32)
    one = timed(lambda: big_gemm.dot(a, b, out, cores=1))
    split = timed(lambda: big_gemm._dot(a, b, out, 2, True))
    print(f"({M} x {K}) @ ({K} x {N}), {M * K * N / 1e6:.1f}M multiply-adds: one thread {one}, split {split} us")
