"""Anomaly sweep: rnnkit/PyTorch at shapes off the benchmark grid, to find a shape where rnnkit falls behind (each
library in its own worker process, native kernels, 3 alternating pairs, 0.15 s rest before each block; ratios
above 1.15 flagged).  usage: PYTHONPATH=<src> python benchmarks/shape_sweep.py [lstm,gru,rnn] [T,B,I,H ...]
(issue 19, session 16)."""
import sys

import torch

from rnnkit.bench.sides import make_sides
from rnnkit.bench.speed import bench_grid_point

SHAPES = [(20, 4, 16, 32), (64, 8, 64, 64), (30, 64, 32, 32), (20, 128, 64, 64), (50, 2, 256, 256),
          (10, 32, 300, 300), (100, 8, 100, 200), (25, 16, 512, 1024), (64, 1, 128, 128), (40, 48, 40, 96),
          (16, 256, 16, 32), (200, 4, 8, 16)]


def line(kind, T, B, I, H, r) -> str:  # noqa: E741  (I: the input size, as everywhere)
    flag = " <<<" if max(r["fwd_bwd_ratio"], r["infer_ratio"]) > 1.15 else ""
    return (f"{kind} {T},{B},{I},{H}: fb {r['torch_fwd_bwd_ms']:.3f} / {r['rnnkit_fwd_bwd_ms']:.3f} ms = "
            f"{r['fwd_bwd_ratio']:.2f}; inf {r['torch_infer_ms']:.3f} / {r['rnnkit_infer_ms']:.3f} = "
            f"{r['infer_ratio']:.2f}{flag}")


def main():
    cells = sys.argv[1].split(",") if len(sys.argv) > 1 else ["lstm", "gru", "rnn"]
    shapes = [tuple(map(int, a.split(","))) for a in sys.argv[2:]] or SHAPES
    sides = make_sides(True, 2, None, native=True)
    try:
        for kind in cells:
            for (T, B, I, H) in shapes:  # noqa: E741
                r = bench_grid_point(torch, kind, T, B, I, H, 3, sides=sides, gap=0.15)
                print(line(kind, T, B, I, H, r), flush=True)
    finally:
        for s in sides:
            s.close()


if __name__ == "__main__":
    main()
