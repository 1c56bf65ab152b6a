"""One step's products on rnnkit's micro-kernel, timed side by side on two threads as the loops run them: batch
shards (each thread B/2 rows, all the weights) against unit shards (each thread all B rows, its own half of the
gate rows), the recurrent product alone and with the input projection; and one product's GFLOP/s on one thread.
The figures behind docs/performance.md's issue 19 round 5 (items 1 and 4).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=src python benchmarks/step_products.py
"""
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

from rnnkit.engine.gemm_rows import packed_weights
from rnnkit.engine.step_gemm import packed_gemm

POOL = ThreadPoolExecutor(1)
f32 = np.float32
rng = np.random.default_rng(0)


@njit(nogil=True)
def repeat(x, Wi, h, Wh, xw, hw, inside, n):
    for _ in range(n):
        if inside:
            packed_gemm(x, Wi, xw)
        packed_gemm(h, Wh, hw)


def side_by_side(jobs, rounds=7, block=10e-3):
    """Seconds per repetition of jobs(n) run together (the first on this thread): the best of ``rounds``."""
    def run(n):
        js = jobs(n)
        futures = [POOL.submit(j) for j in js[1:]]
        js[0]()
        [fu.result() for fu in futures]
    run(1)
    t = time.perf_counter()
    run(2)
    n = max(1, min(2000, int(block / ((time.perf_counter() - t) / 2))))
    best = 1e9
    for _ in range(rounds):
        t = time.perf_counter()
        run(n)
        best = min(best, (time.perf_counter() - t) / n)
    return best


def packed(rows, cols):
    return packed_weights((rng.standard_normal((rows, cols)) * 0.1).astype(f32), False)


def operands(M, I, H, G, shared):
    """(x, W_ih packed, h, W_hh packed, xw, hw) for one thread: M rows, G gate columns."""
    Wi, Wh = shared if shared else (packed(G, I), packed(G, H))
    return (rng.standard_normal((M, I)).astype(f32), Wi, rng.standard_normal((M, H)).astype(f32), Wh,
            np.empty((M, G), f32), np.empty((M, G), f32))


print("one step, two threads side by side, us: batch shards | unit shards")
for B, I, H, n_gates in [(20, 650, 650, 4), (128, 256, 512, 4), (64, 128, 256, 4), (32, 64, 128, 4)]:
    G = n_gates * H
    shared = (packed(G, I), packed(G, H))
    batch = [operands(B // 2, I, H, G, shared) for _ in range(2)]
    units = [operands(B, I, H, G // 2, None) for _ in range(2)]
    t = {(name, inside): side_by_side(lambda n: [lambda a=a: repeat(*a, inside, n) for a in ops])
         for name, ops in (("batch", batch), ("units", units)) for inside in (False, True)}
    print(f"(B, I, H) = ({B}, {I}, {H}): recurrent alone {t['batch', False] * 1e6:.0f} | {t['units', False] * 1e6:.0f};"
          f" with the input projection {t['batch', True] * 1e6:.0f} | {t['units', True] * 1e6:.0f}")

print("one product (M x K) @ (K x N) on one thread, and two side by side (GFLOP/s in all)")
for M, K, N in [(32, 256, 1024), (32, 128, 1024), (16, 128, 512), (64, 512, 2048)]:
    ops = [operands(M, K, K, N, None) for _ in range(2)]
    alone = side_by_side(lambda n: [lambda: repeat(*ops[0], False, n)])
    both = side_by_side(lambda n: [lambda a=a: repeat(*a, False, n) for a in ops])
    flop = 2 * M * K * N
    print(f"({M} x {K}) @ ({K} x {N}): alone {alone * 1e6:.1f} us ({flop / alone / 1e9:.0f} GFLOP/s), "
          f"side by side {both * 1e6:.1f} us ({2 * flop / both / 1e9:.0f} GFLOP/s)")
