"""Inference time against the sequence length T: a step's cost (the slope) and a call's fixed cost (the intercept),
rnnkit's ``forward(x, need_backward=False)`` and PyTorch's ``inference_mode`` side by side (median of 21 calls at
T = 1, 2, 10, 50, 100, after 3).  The figures behind docs/performance.md's issue 19 round 7 ("measured first").

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=src python benchmarks/inference_vs_T.py lstm 64 128 256
    (CELL B I H; add "torch" for PyTorch's side; RNNKIT_UNIT_SHARDS=on|off forces rnnkit's layout)
"""
import statistics
import sys
import time

import numpy as np

LENGTHS = (1, 2, 10, 50, 100)


def median_ms(fn, calls: int = 21) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def runner(cell: str, I: int, H: int, torch_side: bool):
    """(x -> None) running one inference of a fresh float32 layer (seed 0) of ``cell``."""
    if torch_side:
        import torch
        torch.set_num_threads(2)
        m = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](I, H)

        def run(x):
            with torch.inference_mode():
                m(torch.from_numpy(x))
        return run
    import rnnkit
    layer = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU, "rnn": rnnkit.RNN}[cell](I, H, seed=0)
    return lambda x: layer.forward(x, need_backward=False)


if __name__ == "__main__":
    cell, (B, I, H) = sys.argv[1], map(int, sys.argv[2:5])
    run = runner(cell, I, H, "torch" in sys.argv[5:])
    xs = {T: np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32) for T in LENGTHS}
    ms = {T: median_ms(lambda: run(xs[T])) for T in LENGTHS}
    print(" ".join(f"T={T}: {v:.3f} ms" for T, v in ms.items()))
    slopes = ((ms[50] - ms[10]) / 40 * 1e3, (ms[100] - ms[50]) / 50 * 1e3)
    print("a step (T 10 -> 50): %.1f us; (T 50 -> 100): %.1f us" % slopes)
