"""``rnnkit bench --plans``: the plan :mod:`rnnkit.engine.plans` chooses for each grid point, and every
candidate's time, measured now (and cached, replacing what was there).

One table row per (cell, T, B, I, H): the chosen strategy, the milliseconds of one forward + backward
over min(T, MEASURE_STEPS) steps with each candidate, and the seconds the planning took.  Float32, one
layer, the cores this process may use (or ``use_cores``).
"""
from __future__ import annotations

import time

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
