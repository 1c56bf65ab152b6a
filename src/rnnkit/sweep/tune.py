"""Hyper-parameter sweeps on Ray Tune: one trial per sampled config, a results table and the best trial.

:func:`run_sweep` runs ``trainable(config, report)`` once per trial of a
:class:`rnnkit.sweep.spec.SweepSpec` through ``ray.tune.Tuner`` (``config`` = fixed flags + the
sampled values; ``report(metrics, checkpoint_path)`` at every evaluation); the result is a table
of every trial (``results.md``, ``results.csv``, written atomically) and the best trial with its
checkpoint (``best.json``).
"""
from __future__ import annotations

import csv
import io
import json
import math
import numbers
import os
import shutil
import tempfile
from dataclasses import dataclass

from rnnkit.engine.threads import use_cores
from rnnkit.errors import UserError
from rnnkit.io.outputs import write_output
from rnnkit.sweep.session import ray_session
from rnnkit.sweep.spec import SweepSpec


@dataclass(frozen=True)
class SweepResult:
    """Every trial's row (dicts, the table's columns) and the best row; ``files`` written."""

    rows: list
    best: dict
    files: dict


def _reporter(tune):
    """The ``report(metrics, checkpoint_path=None)`` a trainable calls, inside a Ray trial."""

    def report(metrics: dict, checkpoint_path=None) -> None:
        clean = {}
        for k, v in dict(metrics).items():
            if not isinstance(k, str) or not isinstance(v, numbers.Real) or isinstance(v, bool):
                raise TypeError(f"report: metrics must map names to numbers, got {k!r}: {v!r}")
            clean[k] = float(v)
        if checkpoint_path is None:
            tune.report(clean)
            return
        with tempfile.TemporaryDirectory() as d:  # Ray copies the directory into the trial's storage
            shutil.copy2(checkpoint_path, os.path.join(d, os.path.basename(checkpoint_path)))
            tune.report(clean, checkpoint=tune.Checkpoint.from_directory(d))

    return report


def _trial_fn(trainable, cores: int = 1):
    """Ray's trial function: ``trainable`` with the loops on at most ``cores`` cores."""
    def trial(config):
        from ray import tune

        with use_cores(cores):
            trainable(dict(config), _reporter(tune))

    return trial


def _checkpoint_file(ckpt) -> str | None:
    if ckpt is None:
        return None
    files = sorted(os.listdir(ckpt.path))
    return os.path.join(ckpt.path, files[0]) if len(files) == 1 else ckpt.path


def _row(spec: SweepSpec, index: int, result) -> dict:
    config = result.config or {}
    row = {"trial": index, **{p.name: config.get(p.name) for p in spec.space}}
    df = result.metrics_dataframe
    values = [] if df is None or spec.metric not in df else [float(v) for v in df[spec.metric]]
    finite = [(v, i) for i, v in enumerate(values) if math.isfinite(v)]
    if finite:
        best, at = (min if spec.mode == "min" else max)(finite)
        row.update({spec.metric: best, "at_report": at + 1})
    else:
        row.update({spec.metric: math.nan, "at_report": 0})
    row["reports"] = len(values)
    ckpt = result.get_best_checkpoint(spec.metric, spec.mode) if finite and result.best_checkpoints else None
    row["checkpoint"] = _checkpoint_file(ckpt)
    row["status"] = "ok" if result.error is None else f"error: {str(result.error).strip().splitlines()[-1]}"
    return row


def run_sweep(spec: SweepSpec, trainable, cpus: int | None = None, address: str | None = None,
              storage=None, name: str = "sweep", out_dir=None, cpus_per_trial: int | None = None) -> SweepResult:
    """Run the sweep on Ray Tune; write ``results.md``, ``results.csv``, ``best.json`` to ``out_dir``
    (default: the experiment's directory ``storage/name``).

    ``trainable(config: dict, report)`` trains one trial and calls ``report(metrics, checkpoint_path)``
    at every evaluation (metrics: name -> number, holding ``spec.metric``; checkpoint_path: a file
    it wrote, or None).  A row per trial holds its sampled values, its best ``spec.metric`` over its
    reports and that report's checkpoint (a copy in Ray's storage).  Each trial gets
    ``cpus_per_trial`` cores (default: the spec's, 1): Ray's CPU resource and the loops' threads.
    """
    cores = spec.cpus_per_trial if cpus_per_trial is None else cpus_per_trial
    storage = os.path.abspath(os.fspath(storage if storage is not None else os.path.join(os.getcwd(), "sweeps")))
    with ray_session(cpus, address):
        from ray import tune
        from ray.tune.search.basic_variant import BasicVariantGenerator

        tune_config = tune.TuneConfig(
            metric=spec.metric, mode=spec.mode, num_samples=spec.num_trials // spec.grid_size,
            reuse_actors=True,
            scheduler=spec.asha.to_tune(spec.metric, spec.mode) if spec.asha else None,
            search_alg=BasicVariantGenerator(random_state=spec.seed) if spec.seed is not None else None)
        run_config = tune.RunConfig(
            name=name, storage_path=storage, verbose=0,
            checkpoint_config=tune.CheckpointConfig(checkpoint_score_attribute=spec.metric,
                                                    checkpoint_score_order=spec.mode))
        trial = tune.with_resources(_trial_fn(trainable, cores), {"cpu": cores})
        grid = tune.Tuner(trial, param_space=spec.param_space(), tune_config=tune_config,
                          run_config=run_config).fit()
        results = sorted(grid, key=lambda r: r.path or "")  # trial directories are numbered in creation order
        rows = [_row(spec, i, r) for i, r in enumerate(results)]
    ok = [r for r in rows if math.isfinite(r[spec.metric])]
    if not ok:
        raise UserError(f"{spec.source}: no trial reported a finite {spec.metric!r}; first trial: "
                        f"{rows[0]['status'] if rows else 'none ran'}")
    best = (min if spec.mode == "min" else max)(ok, key=lambda r: r[spec.metric])
    out = os.fspath(out_dir) if out_dir is not None else os.path.join(storage, name)
    files = write_tables(rows, best, spec, out)
    return SweepResult(rows, best, files)


def _fmt(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def write_tables(rows: list, best: dict, spec: SweepSpec, out_dir) -> dict:
    """results.md (markdown), results.csv and best.json in ``out_dir``, each written atomically."""
    cols = list(rows[0])
    md = [f"# Sweep {spec.source}: task {spec.task}, {spec.mode} {spec.metric}, {len(rows)} trials", "",
          "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in rows]
    md += ["", f"Best: trial {best['trial']}, {spec.metric} = {_fmt(best[spec.metric])}, "
               f"checkpoint {best['checkpoint']}", ""]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    config = {**spec.fixed, **{p.name: best[p.name] for p in spec.space}}
    best_json = {"task": spec.task, "metric": spec.metric, "mode": spec.mode, "value": best[spec.metric],
                 "trial": best["trial"], "config": config, "checkpoint": best["checkpoint"]}
    files = {"md": os.path.join(out_dir, "results.md"), "csv": os.path.join(out_dir, "results.csv"),
             "best": os.path.join(out_dir, "best.json")}
    write_output(files["md"], "\n".join(md).encode("utf-8"), "markdown", what="--out")
    write_output(files["csv"], buf.getvalue().encode("utf-8"), "csv", what="--out")
    write_output(files["best"], (json.dumps(best_json, indent=2) + "\n").encode("utf-8"), "json", what="--out")
    return files
