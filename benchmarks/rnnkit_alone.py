"""rnnkit timed alone (no PyTorch in the process): fwd+bwd, inference, streaming step.

    .venv/bin/python benchmarks/rnnkit_alone.py [--cells lstm,gru,rnn] [--small-step-gemm N] [T B I H ...]
    PYTHONPATH=<other checkout>/src .venv/bin/python benchmarks/rnnkit_alone.py ...   # another commit's code

For changes to rnnkit itself, where the question is "did this make rnnkit faster", not the
ratio to PyTorch (that is ``benchmarks/bench_rnn.py``).  ``--small-step-gemm`` overrides
``rnnkit.engine.threads.SMALL_STEP_GEMM`` (the per-step GEMM size up to which the time loops run BLAS
single-threaded) for the whole run; ``--check-threads`` also reports whether the layer's
outputs are bit-identical with the per-step GEMMs on 1 and on 2 BLAS threads.
Medians of back-to-back calls, float32, one layer.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import rnnkit

try:
    from rnnkit.engine import threads
except ImportError:  # a commit from before the engine/ folder
    from rnnkit import threads

STEP_H = (32, 128)


def median_ms(fn, repeats: int) -> float:
    fn()
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(ts)


def layer_of(kind, I, H):
    return {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU, "rnn": rnnkit.RNN}[kind](I, H, seed=0)


def time_shape(kind, T, B, I, H, repeats):
    layer = layer_of(kind, I, H)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    ones = np.ones((T, B, H), np.float32)

    def fwd_bwd():
        layer.forward(x)
        layer.backward(ones)

    return median_ms(fwd_bwd, repeats), median_ms(lambda: layer.forward(x), repeats)


def outputs_same_on_1_and_2_threads(kind, T, B, I, H) -> bool:
    layer = layer_of(kind, I, H)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    saved = threads.SMALL_STEP_GEMM
    try:
        threads.SMALL_STEP_GEMM = 1 << 62  # every per-step GEMM on one thread
        one = layer.forward(x)[0].copy()
        threads.SMALL_STEP_GEMM = 0  # every per-step GEMM on numpy's BLAS threads
        two = layer.forward(x)[0].copy()
    finally:
        threads.SMALL_STEP_GEMM = saved
    return bool(np.array_equal(one, two))


def time_step(kind, H, steps=200, repeats=7) -> float:
    layer = layer_of(kind, H, H)
    xs = np.random.default_rng(0).standard_normal((steps, 1, H)).astype(np.float32)

    def stream():
        st = None
        for x in xs:
            _, st = layer.step(x, st)

    return 1e3 * median_ms(stream, repeats) / steps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("shape", nargs="*", type=int, help="T B I H [T B I H ...] (default: the bench grid)")
    p.add_argument("--cells", default="lstm,gru,rnn")
    p.add_argument("--small-step-gemm", type=int, default=None, help="override threads.SMALL_STEP_GEMM")
    p.add_argument("--check-threads", action="store_true", help="report bit-identity of 1 vs 2 BLAS threads")
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args(argv)
    if len(a.shape) % 4:
        p.error(f"shape: expected groups of four integers T B I H, got {len(a.shape)} numbers")
    from rnnkit.bench.speed import GRID

    if a.small_step_gemm is not None:
        threads.SMALL_STEP_GEMM = a.small_step_gemm
    shapes = [tuple(a.shape[k:k + 4]) for k in range(0, len(a.shape), 4)] or list(GRID)
    import sys

    print(f"`{' '.join(sys.argv)}`: rnnkit from {rnnkit.__file__}; SMALL_STEP_GEMM = {threads.SMALL_STEP_GEMM}")
    extra = " same outputs on 1 and 2 BLAS threads |" if a.check_threads else ""
    print("| cell | T | B | I | H | per-step GEMM MACs | fwd+bwd ms | inference ms |" + extra)
    print("|---|---|---|---|---|---|---|---|" + ("---|" if extra else ""))
    for kind in a.cells.split(","):
        G = {"lstm": 4, "gru": 3, "rnn": 1}[kind]
        for T, B, I, H in shapes:
            fb, inf = time_shape(kind, T, B, I, H, a.repeats)
            row = f"| {kind} | {T} | {B} | {I} | {H} | {B * G * H * H / 1e6:.2f}M | {fb:.2f} | {inf:.2f} |"
            if a.check_threads:
                row += f" {outputs_same_on_1_and_2_threads(kind, T, B, I, H)} |"
            print(row)
    print()
    print("| streaming step (B=1, I=H) | H | µs/step |")
    print("|---|---|---|")
    for kind in a.cells.split(","):
        for H in STEP_H:
            print(f"| {kind} | {H} | {time_step(kind, H):.2f} |")


if __name__ == "__main__":
    main()
