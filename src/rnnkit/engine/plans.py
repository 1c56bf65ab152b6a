"""Execution plans chosen by measurement, cached on disk per machine (like FFTW's wisdom).

A plan is how one layer's compiled loops use the cores (:class:`rnnkit.engine.threads.ThreadPlan`).
The candidates (:func:`candidates`), on ``cores`` cores with D directions and batch B:

* ``one_thread``:   everything on the calling thread, BLAS on one thread;
* ``blas_threads``: one recurrence at a time, its per-step GEMM on BLAS's own threads;
* ``batch_shards``: the batch split into min(cores // D, B) row shards, shards and directions side by
  side on threads, one BLAS thread each;
* ``heuristic``:    the fixed rules of :func:`rnnkit.engine.threads.plan` (the pre-planning default).

The first time a layer runs a new :class:`PlanKey` (cell, T rounded up to a power of two, B, I, H,
layers, directions, dtype, cores), :meth:`Planner.plan` times every distinct candidate on a copy
of the layer (same weights, its own gradients and buffers): forward + backward over at most
``MEASURE_STEPS`` steps, round-robin, for at most ``BUDGET_S`` seconds after a warm-up call each (those on BLAS's
threads after the others: :func:`timing_phases`), and keeps the fastest (the smallest time of its rounds) where it
gains :data:`MARGIN` over ``heuristic``.  The choice is kept in memory and in
``$XDG_CACHE_HOME/rnnkit/plans.json`` (``~/.cache`` by default; written atomically), under a
machine key of the CPU model and the BLAS kernel, so the next process reuses it.  A plan measured
while the 1-minute load average exceeds the cores is used by this process only, not cached: other
jobs' threads decide such timings (measured: a 2-core machine at load 8-10 ranked the candidates
differently from one minute to the next).  The first planning of a process says so once on stderr.

Measuring is opt-in: ``RNNKIT_PLAN=measure`` (see :data:`MEASURE`; without it a layer runs
the ``heuristic`` plan).  Forcing: ``RNNKIT_PLAN=<candidate>`` in the environment, or
``layer.strategy = "<candidate>"`` (the layer's wins).  Every plan computes the same numbers: the
per-row arithmetic does not depend on the plan, except the order in which shards' cell-parameter
gradients are summed (float64: equal to 1e-13, tested).
"""
from __future__ import annotations

import copy
import functools
import json
import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np

from rnnkit.engine.gemm_rows import step_gemm_rows
from rnnkit.engine.threads import ThreadPlan, available_cores, loop_blas, plan as heuristic_plan
from rnnkit.atomic import write_bytes_atomic
from rnnkit.errors import SettingError
from rnnkit.engine.step_gemm import PACKED

STRATEGIES = ("one_thread", "blas_threads", "batch_shards", "heuristic")
"""The plans a layer can be forced to (``RNNKIT_PLAN`` or ``layer.strategy``)."""
MEASURE = "measure"
"""``RNNKIT_PLAN=measure``: choose by measurement (opt-in).  Unset, a layer runs the ``heuristic`` plan: a
quiet-machine A/B against the fixed rules (benchmarks/ab_public_grid.sh) found the measured choice slower
at some grid points (LSTM (100, 32, 64, 128) 1.6-1.7x, (64, 128, 256, 512) 1.1-1.2x), because a few
timed calls of a copy of the layer mispredict the real run."""
MEASURE_STEPS = 64
"""Time steps of each timed forward + backward (the per-step cost decides; T is longer)."""
BUDGET_S = 0.5
"""Seconds of timed rounds per new key after one warm-up call per candidate (the rounds stop when it is
spent; every candidate is timed at least once).  On a quiet 2-core machine a whole planning, warm-ups
included, stays under about 1 s at the largest grid point (64, 128, 256, 512)."""
MARGIN = 0.9
"""Another strategy replaces ``heuristic`` only if it took at most this share of its time: a few timed calls of a
copy of the layer are noisy, and a wrong switch costs more than a missed gain of a few per cent."""
MAX_ROUNDS = 9
MIN_BLOCK_S = 2e-3
"""A timed block repeats the call until it lasts about this long (tiny layers: the clock's resolution)."""
CACHE_VERSION = 1


def check_strategy(name, what: str = "strategy"):
    """``name`` if it is None or one of :data:`STRATEGIES`, else a one-line error naming ``what``
    (:class:`rnnkit.errors.SettingError`, a ValueError: the command line prints it and exits 2)."""
    if name is not None and name not in STRATEGIES:
        raise SettingError(f"{what}: expected one of {', '.join(STRATEGIES)} or None, got {name!r}")
    return name


def forced_strategy(layer_strategy: str | None) -> str | None:
    """The strategy forced by the layer, else by ``RNNKIT_PLAN`` (unset: ``heuristic``); None: measure."""
    if layer_strategy is not None:
        return layer_strategy
    env = os.environ.get("RNNKIT_PLAN", "").strip() or "heuristic"
    if env == MEASURE:
        return None
    return check_strategy(env, "RNNKIT_PLAN")


def candidates(B: int, H: int, G: int, D: int, itemsize: int, cores: int) -> dict:
    """{strategy: ThreadPlan} for a layer with D directions, batch B, hidden H, G gate columns."""
    one = ThreadPlan(((0, B),), False, 1)
    n = max(1, min(cores // D if cores >= D else 1, B))
    bounds = [B * k // n for k in range(n + 1)]
    shards = ThreadPlan(tuple(zip(bounds[:-1], bounds[1:])), True, 1) if cores > 1 and n * D > 1 else one
    return {"one_thread": one,
            "blas_threads": ThreadPlan(((0, B),), False, cores) if cores > 1 else one,
            "batch_shards": shards,
            "heuristic": heuristic_plan(B, H, G, D, itemsize, cores, functools.partial(_gemm_packed, H, G, itemsize))}


def _gemm_packed(H: int, G: int, itemsize: int, rows: int) -> bool:
    """Whether the forward per-step GEMM of ``rows`` rows runs on the micro-kernel (measured once per process)."""
    return step_gemm_rows(rows, H, G, np.float32 if itemsize == 4 else np.float64, False) == PACKED


@dataclass(frozen=True)
class PlanKey:
    """What a plan depends on; T is rounded up to a power of two (the per-step cost decides)."""

    cell: str
    T: int
    B: int
    I: int  # noqa: E741  (the input size, as everywhere)
    H: int
    layers: int
    directions: int
    dtype: str
    cores: int

    @classmethod
    def of(cls, layer, T: int, B: int, cores: int) -> "PlanKey":
        return cls(type(layer.cell).__name__, 1 << max(0, int(T) - 1).bit_length(), int(B), layer.input_size,
                   layer.hidden_size, layer.num_layers, layer.num_directions, layer.dtype.name, int(cores))

    def text(self) -> str:
        return (f"{self.cell} T<={self.T} B={self.B} I={self.I} H={self.H} L={self.layers} D={self.directions} "
                f"{self.dtype} cores={self.cores}")


def machine_key() -> str:
    """The CPU model and the BLAS kernel the loops call (threadpoolctl's internal API, version, architecture)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    blas = sorted({f"{c.internal_api} {c.version} {getattr(c, 'architecture', '')}".strip() for c in loop_blas()})
    return f"{model} | {', '.join(blas) or 'no BLAS found'}"


def cache_path() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "rnnkit", "plans.json")


def time_candidates(layer, key: PlanKey, plans: dict, budget_s: float = BUDGET_S, clock=time.perf_counter) -> dict:
    """{strategy: seconds of one forward + backward over min(T, MEASURE_STEPS) steps} for each distinct
    plan, on a copy of ``layer`` (its parameters shared read-only; its gradients, buffers and tape
    its own; eval mode: no dropout).  Round-robin after one warm-up call each, until ``budget_s`` or
    :data:`MAX_ROUNDS`; each strategy's time is the smallest of its rounds (seconds per call)."""
    probe = copy.copy(layer)
    probe._fresh_buffers()
    probe.training = False
    rng = np.random.default_rng(0)
    T = min(key.T, MEASURE_STEPS)
    x = rng.standard_normal((key.B, T, key.I) if layer.batch_first else (T, key.B, key.I)).astype(layer.dtype)
    distinct = {}
    for name, p in plans.items():  # time each distinct plan once, under its first name
        distinct.setdefault(p, name)
    names = list(distinct.values())

    d_out = None

    def block(name, n: int) -> float:
        nonlocal d_out
        probe.strategy = name
        t0 = clock()
        for _ in range(n):
            out, _ = probe.forward(x)
            d_out = np.ones_like(out) if d_out is None else d_out
            probe.backward(d_out)
        return (clock() - t0) / n

    # BLAS's own threads spin on the cores for a while after a call: a plan timed after one that used them
    # runs on a busy machine (measured, LSTM (100, 32, 64, 128) on 2 cores, session 16: batch shards timed right
    # after blas_threads read 14.1 ms against one_thread's 11.8; alone 8-9).  So plans on one BLAS thread are
    # timed first, round-robin, and those on BLAS's threads after them, the budget shared between the phases.
    phases = timing_phases(plans, names)
    best = dict.fromkeys(names, float("inf"))
    for phase in phases:
        # warm-up: compile or load the loops, allocate the buffers; the estimate sets each block's length
        reps = {name: min(100, max(1, int(MIN_BLOCK_S / max(block(name, 1), 1e-9)))) for name in phase}
        start = clock()
        for _ in range(MAX_ROUNDS if phase else 0):
            for name in phase:
                best[name] = min(best[name], block(name, reps[name]))
            if clock() - start > budget_s / sum(map(bool, phases)):
                break
    return {name: best[distinct[p]] for name, p in plans.items()}


def timing_phases(plans: dict, names: list) -> list:
    """[the strategies among ``names`` whose plan keeps BLAS on one thread, those that give BLAS more]: the order
    :func:`time_candidates` times them in (BLAS's threads spin after a call and would slow whatever came next)."""
    quiet = [n for n in names if (plans[n].blas_threads or 1) <= 1]
    return [quiet, [n for n in names if n not in quiet]]


class Planner:
    """Plans per :class:`PlanKey`, measured once per machine and cached in ``path`` (JSON)."""

    def __init__(self, path: str | None = None, timer=time_candidates, log=None, load=None):
        self.path = path or cache_path()
        self.timer = timer
        self.load = load or (lambda: os.getloadavg()[0])
        self.log = log or (lambda s: print(s, file=sys.stderr, flush=True))
        self._machine = None
        self._chosen = None  # {key text: strategy} of this machine, loaded on first use
        self._told = self._told_busy = False

    def _load(self) -> dict:
        if self._chosen is None:
            self._machine = machine_key()
            self._chosen = {k: v["plan"] for k, v in self._read().get(self._machine, {}).items()
                            if isinstance(v, dict) and v.get("plan") in STRATEGIES}
        return self._chosen

    def _read(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
            return {}
        return data.get("machines", {}) if isinstance(data.get("machines"), dict) else {}

    def _save(self, key: PlanKey, name: str, times: dict) -> None:
        machines = self._read()  # merge with what other processes wrote meanwhile
        entry = {"plan": name, "ms": {k: round(v * 1e3, 4) for k, v in times.items()},
                 "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load": round(self.load(), 2)}
        machines.setdefault(self._machine, {})[key.text()] = entry
        data = {"version": CACHE_VERSION, "machines": machines}
        try:
            write_bytes_atomic(self.path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode("utf-8"))
        except OSError as e:
            self.log(f"rnnkit: plans not cached ({self.path}: {e}); they are measured again next process")

    def lookup(self, key: PlanKey) -> str | None:
        """The cached strategy of ``key`` on this machine, or None."""
        return self._load().get(key.text())

    def measure(self, layer, key: PlanKey, plans: dict) -> tuple[str, dict]:
        """Time the candidates now, cache and return (the fastest strategy, {strategy: seconds})."""
        self._load()
        if not self._told:
            self._told = True
            self.log(f"rnnkit: timing the thread plans of each new layer shape once (about {BUDGET_S:g} s each; "
                     f"cached in {self.path}; RNNKIT_PLAN=heuristic skips it)")
        times = self.timer(layer, key, plans)
        name = min(times, key=lambda n: (times[n], STRATEGIES.index(n)))
        if "heuristic" in times and times[name] > MARGIN * times["heuristic"]:
            name = "heuristic"
        self._chosen[key.text()] = name
        load, cores = self.load(), available_cores()
        if load <= cores:
            self._save(key, name, times)
        elif not self._told_busy:
            self._told_busy = True
            self.log(f"rnnkit: load average {load:.1f} on {cores} cores: plans measured now are used by this "
                     "process only (not cached)")
        return name, times

    def plan(self, layer, T: int, B: int, cores: int, plans: dict) -> str:
        """The strategy for ``layer`` at (T, B) on ``cores`` cores: cached, else measured now."""
        key = PlanKey.of(layer, T, B, cores)
        distinct = set(plans.values())
        if len(distinct) == 1:  # one core, or nothing to choose between
            return "heuristic"
        return self.lookup(key) or self.measure(layer, key, plans)[0]


@functools.lru_cache(maxsize=1)
def default_planner() -> Planner:
    """The process's planner (one in-memory copy of the cache file)."""
    return Planner()
