"""Streaming steps, rnnkit alone: microseconds per ``layer.step`` at B = 1 (I = H), 200 steps carrying the state,
median of 25 runs, for the LSTM, GRU and RNN at H = 32, 128, 256; JSON on stdout (PyTorch's weights, for the same
numbers as ``rnnkit bench``).  A/B of two checkouts, alternating processes (issue 19, round 6):

    for r in 1 2 3 4 5; do for s in A B; do env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        PYTHONPATH=$s/src python benchmarks/stream_steps.py > $s.$r.json; done; done
"""
import json
import time

import numpy as np
import torch

from rnnkit.bench.builders import kit_layer
from rnnkit.bench.speed import torch_weights


def step_us(kind: str, H: int, steps: int = 200, runs: int = 25) -> float:
    layer = kit_layer(kind, H, H, 1, torch_weights(torch, kind, H, H, seed=0))
    xs = np.random.default_rng(0).standard_normal((steps, 1, H)).astype(np.float32)

    def run():
        state = None
        for x in xs:
            _, state = layer.step(x, state)

    for _ in range(10):
        run()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return float(np.median(times) / steps * 1e6)


if __name__ == "__main__":
    print(json.dumps({f"{kind} H{H}": step_us(kind, H) for kind in ("lstm", "gru", "rnn") for H in (32, 128, 256)}))
