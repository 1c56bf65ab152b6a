"""The sweep spec: a TOML file read and validated into a frozen :class:`SweepSpec`.

The format (read with :func:`load_spec`; runs with :func:`rnnkit.sweep.tune.run_sweep`)::

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

Every problem is a one-line :class:`rnnkit.errors.UserError` naming the file and the key.
"""
from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field

from rnnkit.errors import UserError

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
