"""Univariate time series for forecasting: Mackey-Glass, CSV columns, windows, splits, scaling.

Pipeline: a 1-d series ``s`` (N,) -> chronological split into train / val / test
segments -> normalisation statistics from the train segment only -> windows
``(s[p-W : p], s[p : p+K])`` (input window of W values, the next K values as
targets) for every target start ``p`` whose K targets lie inside one segment.
A window's inputs may reach back into the previous segment (the model sees the
past, never the future of its split), so no target value is shared between splits.
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from rnnkit.errors import UserError


# ----------------------------------------------------------------------------- Mackey-Glass
def mackey_glass(n: int, tau: float = 17.0, beta: float = 0.2, gamma: float = 0.1, power: float = 10.0,
                 x0: float = 1.2, dt: float = 0.1, sample_every: float = 1.0, discard: int = 500) -> np.ndarray:
    """The Mackey-Glass delay differential equation, sampled every ``sample_every`` time units.

        dx/dt = beta * x(t - tau) / (1 + x(t - tau)^power) - gamma * x(t)

    Integrated with the classical 4th-order Runge-Kutta method with step ``dt``
    (0.1 time units, so tau/dt = 170 steps of history); the delayed term at the
    half step is the mean of its two neighbouring grid values.  History
    x(t) = x0 for t <= 0.  The first ``discard`` samples (the transient) are
    dropped.  Deterministic: no randomness.  With tau = 17 the series is chaotic,
    with values in about [0.42, 1.32] (0.418 to 1.318 for the default 3000 samples).

    Returns (n,) float64.
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n: expected a positive integer, got {n!r}")
    for name, v in (("tau", tau), ("dt", dt), ("sample_every", sample_every)):
        if not v > 0:
            raise ValueError(f"{name}: expected a positive number, got {v!r}")
    lag = int(round(tau / dt))
    stride = int(round(sample_every / dt))
    if not math.isclose(lag * dt, tau) or not math.isclose(stride * dt, sample_every):
        raise ValueError(f"dt: expected a step dividing tau ({tau}) and sample_every ({sample_every}), got {dt}")
    steps = (n + discard) * stride
    x = np.empty(lag + steps + 1)
    x[: lag + 1] = x0

    def f(xt, xd):
        return beta * xd / (1.0 + xd**power) - gamma * xt

    for k in range(lag, lag + steps):
        d0, d1 = x[k - lag], x[k - lag + 1]
        dm = 0.5 * (d0 + d1)
        xk = x[k]
        k1 = f(xk, d0)
        k2 = f(xk + 0.5 * dt * k1, dm)
        k3 = f(xk + 0.5 * dt * k2, dm)
        k4 = f(xk + dt * k3, d1)
        x[k + 1] = xk + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x[lag::stride][discard : discard + n].copy()


# ----------------------------------------------------------------------------- CSV
def load_csv_column(path, column: str) -> np.ndarray:
    """Read one numeric column of a CSV file with a header row.  Returns (N,) float64.

    Raises UserError naming the file and the problem: missing file, no header,
    no such column (listing the available ones), a missing, non-numeric, non-finite or
    out-of-range value (|value| > float32's maximum; naming the line and the value), or no data rows.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserError(f"CSV file not found: {path}")
    if os.path.isdir(path):
        raise UserError(f"CSV path is a directory, expected a file: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: tolerate a BOM
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or not any(h.strip() for h in header):
                raise UserError(f"{path}: empty CSV file (expected a header row naming the columns)")
            names = [h.strip() for h in header]
            if column not in names:
                raise UserError(f"{path}: no column {column!r}; available columns: {', '.join(map(repr, names))}")
            j = names.index(column)
            values = []
            for row in reader:
                line = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue  # blank line
                cell = row[j].strip() if j < len(row) else ""
                if cell == "":
                    raise UserError(f"{path}: line {line}: missing value in column {column!r}")
                try:
                    v = float(cell)
                except ValueError:
                    raise UserError(f"{path}: line {line}: non-numeric value {cell!r} in column {column!r}") from None
                if not math.isfinite(v):
                    raise UserError(f"{path}: line {line}: non-finite value {cell!r} in column {column!r}")
                if abs(v) > FLOAT32_MAX:
                    raise UserError(f"{path}: line {line}: value {cell!r} in column {column!r} is out of range: "
                                    f"expected |value| <= {FLOAT32_MAX:.3g} (the models compute in float32)")
                values.append(v)
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise UserError(f"{path}: malformed CSV: {e}") from None
    if not values:
        raise UserError(f"{path}: column {column!r} has no data rows")
    return np.asarray(values, dtype=np.float64)


#: the largest magnitude a CSV value may have: the models compute in float32
FLOAT32_MAX = float(np.finfo(np.float32).max)


# ----------------------------------------------------------------------------- scaling
@dataclass(frozen=True)
class Normalizer:
    """z = (x - mean) / std, with statistics taken from the training segment only."""

    mean: float
    std: float

    @classmethod
    def fit(cls, train: np.ndarray) -> "Normalizer":
        train = np.asarray(train, dtype=np.float64)
        std = float(train.std())
        return cls(float(train.mean()), std if std > 0 else 1.0)

    def transform(self, x):
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.std

    def inverse(self, z):
        return np.asarray(z, dtype=np.float64) * self.std + self.mean


# ----------------------------------------------------------------------------- windows and splits
def make_windows(series: np.ndarray, window: int, horizon: int, start: int | None = None,
                 stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All windows whose K targets lie in ``series[start:stop]`` and whose W inputs exist.

    Returns X (M, W) = series[p-W : p] and Y (M, K) = series[p : p+K] for
    p = max(start, W) .. stop - K.  M may be 0.
    """
    series = np.asarray(series)
    N = len(series)
    start = window if start is None else max(start, window)
    stop = N if stop is None else stop
    ps = np.arange(start, stop - horizon + 1)
    if len(ps) == 0:
        return np.empty((0, window), series.dtype), np.empty((0, horizon), series.dtype)
    X = series[ps[:, None] + np.arange(-window, 0)[None, :]]
    Y = series[ps[:, None] + np.arange(horizon)[None, :]]
    return X, Y


class SplitWindows(NamedTuple):
    """Windows of one split, in original units.  X: (M, W), Y: (M, K)."""

    X: np.ndarray
    Y: np.ndarray


def split_bounds(n: int, fractions=(0.7, 0.15, 0.15)) -> dict[str, tuple[int, int]]:
    """Chronological [start, stop) of each segment; fractions sum to 1."""
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or not math.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions: expected three positive numbers summing to 1, got {tuple(fractions)}")
    a = int(round(n * fractions[0]))
    b = int(round(n * (fractions[0] + fractions[1])))
    return {"train": (0, a), "val": (a, b), "test": (b, n)}


def split_windows(series: np.ndarray, window: int, horizon: int, fractions=(0.7, 0.15, 0.15),
                  name: str = "series") -> dict[str, SplitWindows]:
    """Chronological train/val/test windows (see module docstring); every split must have one.

    Raises UserError when the series is too short: each segment needs at least
    ``horizon`` values and the train segment ``window + horizon``.
    """
    for argname, v in (("window", window), ("horizon", horizon)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise UserError(f"{argname}: expected a positive integer, got {v!r}")
    series = np.asarray(series, dtype=np.float64)
    if series.ndim != 1:
        raise UserError(f"{name}: expected a 1-d series, got shape {series.shape}")
    N = len(series)
    if N < window + horizon:
        raise UserError(f"{name} has {N} values, shorter than window + horizon = {window} + {horizon} "
                        f"= {window + horizon}")
    out = {}
    for split, (a, b) in split_bounds(N, fractions).items():
        X, Y = make_windows(series, window, horizon, a, b)
        if len(X) == 0:
            need = math.ceil((window + horizon) / fractions[0]) if split == "train" else math.ceil(
                horizon / min(fractions[1:]))
            raise UserError(f"{name} has {N} values: too short to give the {split} split a window of "
                            f"{window} inputs + {horizon} targets (needs about {max(need, window + horizon)} "
                            f"values with a {'/'.join(str(round(100 * f)) for f in fractions)} split)")
        out[split] = SplitWindows(X, Y)
    return out


def naive_forecast(X: np.ndarray, horizon: int) -> np.ndarray:
    """Last-value baseline: every future step predicted as the last input.  (M, W) -> (M, K)."""
    X = np.asarray(X)
    return np.repeat(X[:, -1:], horizon, axis=1)


def rmse_mae(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-horizon RMSE and MAE over windows: (M, K), (M, K) -> (K,), (K,)."""
    err = np.asarray(pred, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    return np.sqrt((err**2).mean(axis=0)), np.abs(err).mean(axis=0)
