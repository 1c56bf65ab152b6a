"""Hyper-parameter sweeps on Ray Tune, and a grid runner for benchmarks (local or Ray).

The sweep spec (TOML, read with :func:`load_spec`)::

    task = "charlm"                  # which task the trainable builds (checked by the caller)
    num_trials = 8                   # total trials (a multiple of the grid's size, if any)
    metric = "val_loss"              # a key every trial reports
    mode = "min"                     # "min" or "max"
    seed = 0                         # optional: the search's random seed (same trials every run)
    cpus_per_trial = 1               # optional: cores each trial may use (Ray's resources and the
                                     # loops' threads, rnnkit.engine.threads.use_cores); 1 by default

    [fixed]                          # flags every trial gets
    steps = 300

    [space]                          # one distribution per key
    lr = { loguniform = [1e-4, 1e-2] }    # log-uniform on [low, high)
    clip = { uniform = [0.5, 5.0] }       # uniform on [low, high)
    layers = { randint = [1, 3] }         # integer in low..high, both included
    hidden = { choice = [64, 128] }       # one of the values, uniformly
    cell = { grid = ["lstm", "gru"] }     # every value (trials = num_trials / grid size per value)

    [asha]                           # optional early stopping (ASHA), over the reports of a trial
    max_t = 10                       # at most this many reports (evaluations) per trial
    grace_period = 1                 # never stop a trial before this many
    reduction_factor = 2             # keep the best 1/reduction_factor at each rung

:func:`run_sweep` runs ``trainable(config, report)`` once per trial through
``ray.tune.Tuner`` (``config`` = fixed flags + the sampled values; ``report(metrics,
checkpoint_path)`` at every evaluation); the result is a table of every trial
(``results.md``, ``results.csv``, written atomically) and the best trial with its
checkpoint (``best.json``).  :func:`run_grid` maps a function over a list of cells, in
this process or as Ray tasks, with the same results in the same order.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import numbers
import os
import shutil
import tempfile
import tomllib
from dataclasses import dataclass, field

from rnnkit.errors import UserError
from rnnkit.io.outputs import write_output
from rnnkit.engine.threads import use_cores

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint", "grid")
TOP_KEYS = ("task", "num_trials", "metric", "mode", "seed", "cpus_per_trial", "fixed", "space", "asha")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class Param:
    """One searched key: ``kind`` in DISTRIBUTIONS and its arguments (values, or low/high)."""

    name: str
    kind: str
    args: tuple

    def to_tune(self):
        from ray import tune

        if self.kind == "choice":
            return tune.choice(list(self.args))
        if self.kind == "grid":
            return tune.grid_search(list(self.args))
        low, high = self.args
        if self.kind == "randint":
            return tune.randint(low, high + 1)  # tune's upper bound is exclusive
        return tune.loguniform(low, high) if self.kind == "loguniform" else tune.uniform(low, high)


@dataclass(frozen=True)
class Asha:
    """ASHA early stopping over a trial's reports (``training_iteration`` = number of reports)."""

    max_t: int
    grace_period: int = 1
    reduction_factor: float = 4.0

    def to_tune(self, metric: str, mode: str):
        from ray.tune.schedulers import ASHAScheduler

        return ASHAScheduler(time_attr="training_iteration", metric=metric, mode=mode, max_t=self.max_t,
                             grace_period=self.grace_period, reduction_factor=self.reduction_factor)


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep (see the module docstring); ``source`` names the file in messages."""

    task: str
    num_trials: int
    metric: str
    mode: str = "min"
    fixed: dict = field(default_factory=dict)
    space: tuple = ()
    asha: Asha | None = None
    seed: int | None = None
    source: str = "<spec>"
    cpus_per_trial: int = 1

    @property
    def grid_size(self) -> int:
        return math.prod(len(p.args) for p in self.space if p.kind == "grid")

    def check_keys(self, allowed) -> None:
        """UserError naming the first [fixed]/[space] key not in ``allowed`` (the task's flags)."""
        allowed = set(allowed)
        for table, keys in (("fixed", list(self.fixed)), ("space", [p.name for p in self.space])):
            for k in keys:
                if k not in allowed:
                    raise UserError(f"{self.source}: [{table}].{k}: not a setting of task {self.task!r}; "
                                    f"expected one of {sorted(allowed)}")

    def param_space(self) -> dict:
        return {**self.fixed, **{p.name: p.to_tune() for p in self.space}}


def load_spec(path) -> SweepSpec:
    """Read and validate a TOML sweep spec; every problem is a one-line UserError naming the file and key."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"sweep spec {path!r}: file not found") from None
    except OSError as e:
        raise UserError(f"sweep spec {path!r}: cannot be read ({e.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid TOML ({e})") from None
    return parse_spec(data, source=path)


def _param(name: str, v, where: str) -> Param:
    if not isinstance(v, dict) or len(v) != 1 or next(iter(v)) not in DISTRIBUTIONS:
        raise UserError(f"{where}: expected a table with one of {', '.join(DISTRIBUTIONS)} "
                        f"(e.g. {name} = {{ choice = [1, 2] }}), got {v!r}")
    kind, args = next(iter(v.items()))
    if kind in ("choice", "grid"):
        if not isinstance(args, list) or not args:
            raise UserError(f"{where}.{kind}: expected a non-empty list of values, got {args!r}")
        return Param(name, kind, tuple(args))
    if not (isinstance(args, list) and len(args) == 2 and all(_is_num(a) for a in args)):
        raise UserError(f"{where}.{kind}: expected [low, high] (two numbers), got {args!r}")
    low, high = args
    if kind == "randint" and not (_is_int(low) and _is_int(high) and low <= high):
        raise UserError(f"{where}.randint: expected integers low <= high, got {args!r}")
    if kind in ("uniform", "loguniform") and not low < high:
        raise UserError(f"{where}.{kind}: expected low < high, got {args!r}")
    if kind == "loguniform" and low <= 0:
        raise UserError(f"{where}.loguniform: expected 0 < low < high, got {args!r}")
    return Param(name, kind, (low, high))


def parse_spec(data: dict, source: str = "<spec>") -> SweepSpec:
    """Validate a spec already parsed from TOML (a dict); see :func:`load_spec`."""
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise UserError(f"{source}: {unknown[0]}: unknown key; expected keys {', '.join(TOP_KEYS)}")
    for key in ("task", "num_trials", "metric"):
        if key not in data:
            raise UserError(f"{source}: {key}: missing (required keys: task, num_trials, metric)")
    for key in ("task", "metric"):
        if not isinstance(data[key], str) or not data[key]:
            raise UserError(f"{source}: {key}: expected a non-empty string, got {data[key]!r}")
    n = data["num_trials"]
    if not _is_int(n) or n < 1:
        raise UserError(f"{source}: num_trials: expected an integer >= 1, got {n!r}")
    mode = data.get("mode", "min")
    if mode not in ("min", "max"):
        raise UserError(f"{source}: mode: expected 'min' or 'max', got {mode!r}")
    seed = data.get("seed")
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise UserError(f"{source}: seed: expected an integer >= 0, got {seed!r}")
    cpus = data.get("cpus_per_trial", 1)
    if not _is_int(cpus) or cpus < 1:
        raise UserError(f"{source}: cpus_per_trial: expected an integer >= 1, got {cpus!r}")
    for table in ("fixed", "space", "asha"):
        if table in data and not isinstance(data[table], dict):
            raise UserError(f"{source}: {table}: expected a table [{table}], got {data[table]!r}")
    fixed, raw_space = dict(data.get("fixed", {})), data.get("space", {})
    space = tuple(_param(k, v, f"{source}: [space].{k}") for k, v in raw_space.items())
    both = sorted(set(fixed) & set(raw_space))
    if both:
        raise UserError(f"{source}: [space].{both[0]}: also set in [fixed]; a key is either fixed or searched")
    asha = None
    if "asha" in data:
        a = data["asha"]
        extra = sorted(set(a) - {"max_t", "grace_period", "reduction_factor"})
        if extra:
            raise UserError(f"{source}: [asha].{extra[0]}: unknown key; expected max_t, grace_period, "
                            f"reduction_factor")
        if not _is_int(a.get("max_t")) or a["max_t"] < 1:
            raise UserError(f"{source}: [asha].max_t: expected an integer >= 1, got {a.get('max_t')!r}")
        grace = a.get("grace_period", 1)
        if not _is_int(grace) or not 1 <= grace <= a["max_t"]:
            raise UserError(f"{source}: [asha].grace_period: expected an integer in 1..max_t ({a['max_t']}), "
                            f"got {grace!r}")
        rf = a.get("reduction_factor", 4)
        if not _is_num(rf) or rf <= 1:
            raise UserError(f"{source}: [asha].reduction_factor: expected a number > 1, got {rf!r}")
        asha = Asha(a["max_t"], grace, float(rf))
    spec = SweepSpec(data["task"], n, data["metric"], mode, fixed, space, asha, seed, source, cpus)
    if n % spec.grid_size:
        raise UserError(f"{source}: num_trials: expected a multiple of the grid's size ({spec.grid_size} "
                        f"combinations of the grid keys), got {n}")
    return spec


@contextlib.contextmanager
def ray_session(cpus: int | None = None, address: str | None = None):
    """Use the running Ray (if this process already called ray.init), else start one and stop it after.

    ``address`` joins a running cluster ("auto" or "host:port"); otherwise a local Ray with
    ``cpus`` CPUs (all by default) and no dashboard."""
    try:
        import ray
    except ImportError:
        raise UserError("Ray is not installed; install the extra: pip install 'rnnkit[tune]'") from None
    if ray.is_initialized():
        yield ray
        return
    if address is not None:
        ray.init(address=address, logging_level="WARNING")
    else:
        ray.init(num_cpus=cpus, include_dashboard=False, logging_level="WARNING")
    try:
        yield ray
    finally:
        ray.shutdown()


# ---------------------------------------------------------------------- running a sweep
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


# ---------------------------------------------------------------------- a grid of independent runs
def _limited(fn, cell, blas_threads: int):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=blas_threads, user_api="blas"), use_cores(blas_threads):
        return fn(cell)


def run_grid(cells, fn, engine: str = "local", cpus: int | None = None, address: str | None = None,
             blas_threads: int = 1) -> list:
    """``[fn(cell) for cell in cells]``, in this process (engine "local") or as one Ray task per cell
    (engine "ray"; ``fn`` and the cells must pickle); same results, same order, each call with
    ``blas_threads`` BLAS threads and as many cores for the loops (so both engines compute with the
    same arithmetic, and Ray's one CPU per task is what it uses)."""
    cells = list(cells)
    if engine == "local":
        return [_limited(fn, c, blas_threads) for c in cells]
    if engine != "ray":
        raise UserError(f"engine: expected 'local' or 'ray', got {engine!r}")
    with ray_session(cpus, address) as ray:
        task = ray.remote(num_cpus=1)(_limited)
        refs = [task.remote(fn, c, blas_threads) for c in cells]
        try:
            return ray.get(refs)
        except ray.exceptions.RayTaskError as e:
            raise e.as_instanceof_cause() from None
