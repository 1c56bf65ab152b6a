"""fwd+bwd time of the cell variants (issues 13, 14) relative to the plain LSTM, rnnkit alone.

    PYTHONPATH=src .venv/bin/python benchmarks/cell_variants.py [--repeats N] [T B I H ...]

Every variant runs through the same compiled loop (rnnkit.engine.scan) as the plain LSTM; the GRU with
``linear_before_reset=False`` (its own n-block GEMM inside the step) is timed beside the GRU.  Per grid
point (default: the speed grid's two mid sizes), float32, one layer: the variants are timed
*alternately* (round r times every variant once, in an order rotated by r, r = 1..N), so
that the load of a shared machine hits all of them alike; the report gives each one's median
(and minimum) over the rounds and its ratio to the plain LSTM's median (minimum).  Absolute
times on a shared machine are noise; the ratios measured side by side are what this script is
for.  ``--cores`` (default 1) is the layers' ``cores`` and the BLAS thread limit: one core per
measurement keeps the other sessions' load on the shared machine from hitting a two-thread run
unevenly.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

import rnnkit

MID_GRID = ((100, 32, 64, 128), (50, 64, 128, 256))
"""The middle points of rnnkit.bench.speed.GRID."""


def variants(I, H):
    return {
        "LSTM": lambda: rnnkit.LSTM(I, H, seed=0),
        "LSTM peephole": lambda: rnnkit.LSTM(I, H, seed=0, peephole=True),
        "LayerNormLSTM": lambda: rnnkit.LayerNormLSTM(I, H, seed=0),
        f"LSTM proj_size={H // 2}": lambda: rnnkit.LSTM(I, H, seed=0, proj_size=H // 2),
        "LSTM recurrent+weight dropout 0.25": lambda: rnnkit.LSTM(I, H, seed=0, recurrent_dropout=0.25,
                                                                  weight_dropout=0.25),
        "GRU": lambda: rnnkit.GRU(I, H, seed=0),
        "GRU linear_before_reset=False": lambda: rnnkit.GRU(I, H, seed=0, linear_before_reset=False),
    }


def fwd_bwd(layer, x):
    def run():
        out, _ = layer.forward(x, rng=np.random.default_rng(0))
        layer.backward(np.ones_like(out))
    return run


def bench_point(T, B, I, H, repeats, cores=1):
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    runs = {}
    for name, make in variants(I, H).items():
        layer = make()
        layer.cores = cores
        runs[name] = fwd_bwd(layer, x)
    for run in runs.values():  # compile and warm up
        run()
        run()
    times = {name: [] for name in runs}
    names = list(runs)
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotated: no variant always first
            t0 = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - t0)
    return {name: (1e3 * statistics.median(ts), 1e3 * min(ts)) for name, ts in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--cores", type=int, default=1, help="layer.cores and BLAS threads (default 1)")
    p.add_argument("dims", type=int, nargs="*", help="T B I H [T B I H ...] (default: the mid grid)")
    a = p.parse_args(argv)
    if len(a.dims) % 4:
        p.error(f"dims: expected groups of four numbers T B I H, got {len(a.dims)} numbers")
    grid = [tuple(a.dims[k : k + 4]) for k in range(0, len(a.dims), 4)] or MID_GRID
    print(f"fwd+bwd, float32, 1 layer, {a.cores} core(s), median of {a.repeats} alternating rounds "
          f"(ratio: / plain LSTM)\n")
    print("| T, B, I, H | variant | ms | ratio | min ms | min ratio |")
    print("|---|---|---|---|---|---|")
    for T, B, I, H in grid:
        with threadpool_limits(a.cores):
            med = bench_point(T, B, I, H, a.repeats, a.cores)
        base, base_min = med["LSTM"]
        for name, (ms, ms_min) in med.items():
            print(f"| {T}, {B}, {I}, {H} | {name} | {ms:.2f} | {ms / base:.2f} | {ms_min:.2f} | "
                  f"{ms_min / base_min:.2f} |", flush=True)


if __name__ == "__main__":
    main()
