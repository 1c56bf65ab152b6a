"""``rnnkit bench --plans``: the plan :mod:`rnnkit.engine.plans` chooses for each grid point, and every
candidate's time, measured now (and cached, replacing what was there).

One table row per (cell, T, B, I, H): the chosen strategy, the milliseconds of one forward + backward
over min(T, MEASURE_STEPS) steps with each candidate, and the seconds the planning took.  Float32, one
layer, the cores this process may use (or ``use_cores``).  A second table: the row blocks of the per-step
GEMM (:mod:`rnnkit.engine.gemm_rows`: BLAS whole, BLAS in row blocks, or the micro-kernel) for each shard of
the ``heuristic`` plan, forward and backward, with every candidate's microseconds.
"""
from __future__ import annotations

import time

from rnnkit.engine import gemm_rows
from rnnkit.engine.layer_types import LAYERS
from rnnkit.engine.plans import MEASURE_STEPS, STRATEGIES, PlanKey, candidates, default_planner, machine_key
from rnnkit.engine.threads import loop_cores


def plan_rows(cells, grid, planner=None) -> list[dict]:
    """Measure the plan of every (cell, (T, B, I, H)) now; rows for :func:`plans_markdown`."""
    planner = planner or default_planner()
    rows = []
    for cell in cells:
        for T, B, I, H in grid:
            layer = LAYERS[cell](I, H, seed=0)
            cores = loop_cores(layer.cores)
            options = candidates(B, H, layer.cell.n_gates * H, 1, layer.dtype.itemsize, cores)
            t0 = time.perf_counter()
            name, times = planner.measure(layer, PlanKey.of(layer, T, B, cores), options)
            rows.append(dict(cell=cell, T=T, B=B, I=I, H=H, cores=cores, plan=name, seconds=time.perf_counter() - t0,
                             ms={k: v * 1e3 for k, v in times.items()}))
    return rows


def plans_markdown(rows: list[dict]) -> str:
    head = "| cell | T | B | I | H | cores | chosen | " + " | ".join(f"{s} ms" for s in STRATEGIES) + " | planning s |"
    lines = [f"Plans on {machine_key()}; times: one forward + backward over min(T, {MEASURE_STEPS}) steps, "
             "the smallest of the rounds.", "", head, "|" + "---|" * (8 + len(STRATEGIES))]
    for r in rows:
        ms = " | ".join(f"{r['ms'][s]:.3f}" for s in STRATEGIES)
        lines.append(f"| {r['cell']} | {r['T']} | {r['B']} | {r['I']} | {r['H']} | {r['cores']} | **{r['plan']}** | "
                     f"{ms} | {r['seconds']:.2f} |")
    return "\n".join(lines)


def gemm_block_rows(cells, grid) -> list[dict]:
    """The per-step GEMM's row block for each distinct shard size of each (cell, (T, B, I, H)) under the
    ``heuristic`` plan, forward and backward, every candidate timed now (:func:`gemm_rows.time_rows`)."""
    rows = []
    for cell in cells:
        for T, B, I, H in grid:
            layer = LAYERS[cell](I, H, seed=0)
            G = layer.cell.n_gates * H
            G_loop = G // layer.cell.n_gates * (layer.cell.n_gates - layer.cell.cell_hh_blocks)
            plan = candidates(B, H, G, 1, layer.dtype.itemsize, loop_cores(layer.cores))["heuristic"]
            for M in sorted({b1 - b0 for b0, b1 in plan.shards}):
                for backward in (False, True):
                    times = gemm_rows.time_rows(M, H, G_loop, layer.dtype, backward,
                                                blocks=M * H * G_loop > gemm_rows.SMALL_GEMM)  # as measured in a run
                    rows.append(dict(cell=cell, B=B, H=H, M=M, direction="backward" if backward else "forward",
                                     chosen=gemm_rows.choose(times), us={r: t * 1e6 for r, t in times.items()}))
    return rows


def _name(rows: int) -> str:
    return "packed" if rows == gemm_rows.PACKED else str(rows)


def gemm_blocks_markdown(rows: list[dict]) -> str:
    lines = ["Per-step GEMM (0: one BLAS call, n: BLAS in blocks of n rows, packed: rnnkit's micro-kernel), "
             "microseconds per product, BLAS on one thread:", "",
             "| cell | B | H | shard rows | direction | chosen | each candidate (rows: us) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        each = ", ".join(f"{_name(k)}: {v:.1f}" for k, v in r["us"].items())
        lines.append(f"| {r['cell']} | {r['B']} | {r['H']} | {r['M']} | {r['direction']} | **{_name(r['chosen'])}** | "
                     f"{each} |")
    return "\n".join(lines)
