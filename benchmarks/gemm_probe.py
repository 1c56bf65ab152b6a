"""The GEMM measurements behind engine/gemm_rows, engine/step_gemm and engine/big_gemm (issue 19, rounds 2-3):
microseconds of the per-step product (whole and in row blocks, one BLAS thread; rnnkit's packed micro-kernel;
and torch.mm when torch is installed),
and of the all-steps products on one BLAS thread, split over rnnkit's threads, and on BLAS's own threads.
Run from the repository root with the OpenBLAS variables unset:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=src python benchmarks/gemm_probe.py
"""
import time

import numpy as np

from rnnkit.engine import big_gemm, gemm_rows
from rnnkit.engine.threads import blas_threads, loop_blas, run_jobs


def best_us(fn, n=50):
    fn()
    best = 1e9
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e6


print("BLAS:", [(c.internal_api, c.version, getattr(c, "architecture", "")) for c in loop_blas()])
print("run_jobs hand-off, two empty jobs: %.1f us" % best_us(lambda: run_jobs([lambda: None, lambda: None], 1), 500))
name = {gemm_rows.PACKED: "packed"}
for M, H, G in [(32, 128, 512), (16, 128, 512), (10, 650, 2600), (20, 650, 2600), (64, 512, 2048)]:
    for backward in (False, True):
        times = gemm_rows.time_rows(M, H, G, np.float32, backward=backward)
        shape = f"({M} x {G}) @ ({G} x {H})" if backward else f"({M} x {H}) @ ({H} x {G})"
        print(f"per-step {shape}, one thread; 0: whole, n: BLAS in n-row blocks, packed: micro-kernel:",
              ", ".join(f"{name.get(r, r)}: {t * 1e6:.1f} us" for r, t in times.items()),
              "-> chosen", name.get(gemm_rows.choose(times), gemm_rows.choose(times)))
try:
    import torch

    torch.set_num_threads(1)
    h, w = torch.randn(32, 128), torch.randn(128, 512)
    print("torch.mm (32 x 128) @ (128 x 512), one thread: %.1f us" % best_us(lambda: torch.mm(h, w), 500))
except ImportError:
    pass
rng = np.random.default_rng(0)
for M, K, N in [(640, 128, 128), (640, 256, 256), (3200, 128, 512), (700, 650, 2600)]:
    a, b = rng.standard_normal((M, K)).astype(np.float32), rng.standard_normal((K, N)).astype(np.float32)
    out = np.empty((M, N), np.float32)
    with blas_threads(1):
        one = best_us(lambda: np.dot(a, b, out=out), 10)
    big_gemm_min, big_gemm.MIN_SPLIT = big_gemm.MIN_SPLIT, 0
    split = best_us(lambda: big_gemm.dot(a, b, out, cores=2), 10)
    big_gemm.MIN_SPLIT = big_gemm_min
    with blas_threads(2):
        two = best_us(lambda: np.dot(a, b, out=out), 10)
    print(f"all-steps ({M} x {K}) @ ({K} x {N}): one thread {one:.0f} us, split over 2 threads {split:.0f} us, "
          f"BLAS's 2 threads {two:.0f} us")
