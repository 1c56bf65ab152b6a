"""Multi-step time-series forecasting: ``Forecaster``, a Task (its command line: rnnkit.cli.forecast).

Model (:class:`rnnkit.models.readout.Readout`): the last ``window`` values,
normalised with train-split statistics, go through an RNN/LSTM/GRU (input size 1);
a Linear(H, K) on the final hidden state gives the next K values:

    z_t = (x_t - mean) / std,   h = Recurrent(z_{t-W+1..t}),   y = W_o h + b_o  (K,)
    loss = MSE(y, z_{t+1..t+K}) (normalised units)

Reported metrics (``evaluate``) are in the series' original units: RMSE and MAE
over all windows and horizons, RMSE at horizon 1 and K, next to the naive
last-value forecast (x_{t+k} = x_t).  Data: :mod:`rnnkit.data.series`
(chronological 70/15/15 split; default series Mackey-Glass tau=17).

Three lines::

    f = Forecaster(ForecastConfig(horizon=5))        # Mackey-Glass; or Forecaster(config, series)
    f.fit(steps=3000); print(f.evaluate("test"))
    f.save("mg.safetensors"); Forecaster.load("mg.safetensors").predict(recent_values)
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import numpy as np

from rnnkit.data.series import (
    Normalizer, load_csv_column, mackey_glass, naive_forecast, rmse_mae, split_bounds, split_windows,
)
from rnnkit.errors import UserError
from rnnkit.engine.layer_types import CellVariant, config_cell, config_options
from rnnkit.nn.losses import mse
from rnnkit.train import Trainer, TrainConfig, load_task, metrics_of, read_checkpoint, restore, save_task
from rnnkit.train.state import unprefixed
from rnnkit.checks.fields import check_options, option
from rnnkit.checks.rules import NONNEG_INT, POSITIVE_INT
from rnnkit.models.readout import CELLS, Readout
from rnnkit.tasks.readout import readout_plan

SPLIT_FRACTIONS = (0.7, 0.15, 0.15)


@dataclass(frozen=True)
class ForecastConfig(CellVariant):
    """Model and data settings of a Forecaster (training settings: :data:`FORECAST_TRAIN`).

    ``csv``/``column`` name the data source (None: Mackey-Glass with
    ``series_length`` samples); they are recorded, the series itself is passed in.
    ``seed`` fixes the initial weights (and, through fit, the batch order).
    """

    csv: str | None = option(None, "CSV file with a header row (default: the Mackey-Glass series, generated)")
    column: str | None = option(None, "numeric column of --csv to forecast")
    horizon: int = option(1, "K: number of future steps forecast at once", rule=POSITIVE_INT)
    window: int = option(32, "W: past values the model reads", rule=POSITIVE_INT)
    cell: str = option("lstm", "recurrent cell", choices=CELLS)  # (and CellVariant's peephole, proj_size)
    hidden: int = option(32, "hidden units", rule=POSITIVE_INT)
    layers: int = option(1, "stacked recurrent layers", rule=POSITIVE_INT)
    batch: int = option(32, "windows per optimizer step", rule=POSITIVE_INT)
    seed: int = option(0, rule=NONNEG_INT, flag=False)
    series_length: int = option(3000, "Mackey-Glass samples when no --csv", rule=POSITIVE_INT)

    def __post_init__(self):
        check_options(self)
        config_cell(self, self.hidden)  # the variants fit the cell and the sizes


#: default training of ``rnnkit train forecast`` / ``Forecaster.fit``: Adam 3e-3 with cosine decay, clip 1
FORECAST_TRAIN = TrainConfig(steps=3000, lr=3e-3, clip=1.0, schedule="cosine", eval_every=250, log_every=50)


def default_series(config: ForecastConfig) -> np.ndarray:
    """The series named by the config: the CSV column, or Mackey-Glass."""
    if config.csv is None:
        return mackey_glass(config.series_length)
    if config.column is None:
        raise UserError("--column is required with --csv (the name of the numeric column to forecast)")
    return load_csv_column(config.csv, config.column)


class Forecaster:
    """A Trainer task forecasting the next ``horizon`` values from the last ``window`` ones.

    ``Forecaster(config, series=None)``: series (N,) in original units (default:
    :func:`default_series`).  A Forecaster loaded from a checkpoint has no data
    (``attach`` gives it some); it can ``predict`` at once.
    """

    kind = "forecast"
    count_unit = "seqs"
    config_class = ForecastConfig
    train_defaults = FORECAST_TRAIN

    def __init__(self, config: ForecastConfig | None = None, series: np.ndarray | None = None,
                 normalizer: Normalizer | None = None):
        config = ForecastConfig() if config is None else config
        if not isinstance(config, ForecastConfig):
            raise TypeError(f"config: expected ForecastConfig, got {type(config).__name__}")
        self.config = c = config
        self.model = Readout(c.cell, 1, c.hidden, c.horizon, layers=c.layers, seed=np.random.default_rng([c.seed, 1]),
                             **config_options(c))
        self.normalizer = normalizer
        self.splits = None
        if series is not None or normalizer is None:
            self.attach(default_series(c) if series is None else series)

    def attach(self, series: np.ndarray, name: str = "series") -> None:
        """Use ``series`` (N,) for training/evaluation: split, windows, normalisation.

        The normalisation statistics come from its train segment, unless the
        Forecaster already has them (loaded from a checkpoint)."""
        c = self.config
        series = np.asarray(series, dtype=np.float64)
        self.splits = split_windows(series, c.window, c.horizon, SPLIT_FRACTIONS, name=name)
        if self.normalizer is None:
            a, b = split_bounds(len(series), SPLIT_FRACTIONS)["train"]
            self.normalizer = Normalizer.fit(series[a:b])
        self.series = series

    def _require_data(self):
        if self.splits is None:
            raise UserError("this Forecaster has no data: call attach(series) first")
        return self.splits

    # ------------------------------------------------------------------ model I/O
    def normalised(self, values: np.ndarray) -> np.ndarray:
        """``values`` (any shape, original units) normalised, as float32.  Values too far from the
        training data for float32 once normalised are a UserError (one line)."""
        with np.errstate(over="ignore"):
            z = self.normalizer.transform(values).astype(np.float32)
        if not np.isfinite(z).all():
            n, v = self.normalizer, np.asarray(values)
            raise UserError(f"values too far from the training data (mean {n.mean:.6g}, std {n.std:.6g}): normalised "
                            f"they exceed float32, the model's precision (e.g. {v.flat[np.argmax(np.abs(v))]:.6g})")
        return z

    def _inputs(self, X: np.ndarray) -> np.ndarray:
        """Windows (M, W) original units -> model input (W, M, 1) float32, normalised."""
        return np.ascontiguousarray(self.normalised(X).T[:, :, None])

    def predict_windows(self, X: np.ndarray) -> np.ndarray:
        """Windows (M, W) of past values -> forecasts (M, K), original units."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.config.window:
            raise ValueError(f"X: expected windows of shape (M, {self.config.window}), got {X.shape}")
        out = []
        for s in range(0, len(X), 4096):  # bounded memory for long series
            out.append(self.model.last(self._inputs(X[s : s + 4096])))
            self.model.release()
        y = np.concatenate(out) if out else np.empty((0, self.config.horizon), np.float32)
        return self.normalizer.inverse(y)

    def predict(self, history) -> np.ndarray:
        """The next K values after ``history`` (1-d, at least ``window`` values; the last W are used)."""
        h = np.asarray(history, dtype=np.float64)
        if h.ndim != 1 or len(h) < self.config.window:
            raise UserError(f"history: expected at least window = {self.config.window} values, "
                            f"got {h.shape[0] if h.ndim == 1 else h.shape}")
        if not np.isfinite(h[-self.config.window:]).all():
            raise UserError("history: the last window contains NaN or inf")
        return self.predict_windows(h[None, -self.config.window:])[0]

    # ------------------------------------------------------------------ Task protocol
    def train_batch(self, rng: np.random.Generator, carry=None):
        """``batch`` windows drawn uniformly (with replacement) from the train split; no carry."""
        tr = self._require_data()["train"]
        idx = rng.integers(0, len(tr.X), size=self.config.batch)
        return (self._inputs(tr.X[idx]), self.normalizer.transform(tr.Y[idx]).astype(np.float32)), None

    def onnx_parts(self) -> dict:
        """``rnnkit export --onnx``: normalised windows (W, B, 1) -> the recurrent stack -> head on the last
        step: normalised forecasts (B, K); z = (x - mean) / std with the metadata's statistics."""
        n = self.normalizer
        return {"recurrent": self.model.rnn, "head": self.model.head, "readout": "last",
                "metadata": {"normalizer_mean": n.mean, "normalizer_std": n.std,
                             "input": "normalised values z = (x - mean) / std, time-major (window, B, 1)",
                             "output": "normalised forecasts (B, horizon): x = z * std + mean"}}

    def shard_batch(self, batch, comm):
        """This MPI rank's windows ``comm.shard(B)`` of a global batch (rnnkit.train.data_parallel)."""
        x, y = batch
        part = comm.shard(len(y))
        return x[:, part], y[part]

    def loss_and_backward(self, batch, carry=None):
        x, y = batch
        pred = self.model.last(x)
        loss, d = mse(pred, y)
        self.model.backward_last(d)
        return loss, None, y.shape[0]

    def evaluate(self, split: str = "val") -> dict[str, float]:
        """loss (normalised MSE) and, in original units, rmse/mae (all horizons), rmse_h1, rmse_hK,
        and the same for the naive last-value forecast."""
        splits = self._require_data()
        if split not in splits:
            raise ValueError(f"split: expected one of {', '.join(splits)}, got {split!r}")
        X, Y = splits[split]
        P = self.predict_windows(X)
        N = naive_forecast(X, self.config.horizon)
        loss = float(np.mean((self.normalizer.transform(P) - self.normalizer.transform(Y)) ** 2))
        out = {"loss": loss, "windows": float(len(X))}
        for name, pred in (("", P), ("naive_", N)):
            r, m = rmse_mae(pred, Y)
            out.update({f"{name}rmse": float(np.sqrt(np.mean(r**2))), f"{name}mae": float(m.mean()),
                        f"{name}rmse_h1": float(r[0]), f"{name}rmse_hK": float(r[-1])})
        return out

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.model.params.items()}

    def meta(self) -> dict:
        return {"kind": self.kind, "config": dataclasses.asdict(self.config),
                "normalizer": dataclasses.asdict(self.normalizer)}

    @classmethod
    def model_plan(cls, meta: dict):
        """The model's parameters and training buffers from ``meta["config"]`` alone (rnnkit.train.task)."""
        c = ForecastConfig(**meta["config"])
        return readout_plan(c.cell, 1, c.hidden, c.horizon, c.layers, T=c.window, B=max(c.batch, 4096),
                            **config_options(c))

    @classmethod
    def from_checkpoint(cls, arrays: dict, meta: dict) -> "Forecaster":
        return restore(cls, arrays, meta, lambda m: cls(ForecastConfig(**m["config"]), normalizer=Normalizer(
            float(m["normalizer"]["mean"]), float(m["normalizer"]["std"]))))

    # ------------------------------------------------------------------ high level
    def fit(self, steps: int = FORECAST_TRAIN.steps, out_dir=None, on_eval=None, trainer: Trainer | None = None,
            best_checkpoint=None, **train_kwargs):
        """Train; keep the parameters with the best val loss.  Returns the Trainer's TrainResult.

        Training settings: :data:`FORECAST_TRAIN` with ``steps``, ``seed=config.seed``
        and any other TrainConfig field given as keyword (``lr=``, ``progress=False``...).
        ``on_eval(trainer, record)`` after every evaluation (rnnkit.train.task).  ``trainer`` (from
        ``Trainer.resume``) continues a saved run instead; when no evaluation of this call
        beats the run's best val loss so far, the best parameters are read back from the
        trainer's ``best.safetensors`` (or ``best_checkpoint``, e.g. the one next to the
        resumed checkpoint), provided it records that best val loss.
        """
        self._require_data()
        if trainer is None:
            try:
                cfg = dataclasses.replace(FORECAST_TRAIN, **{"steps": steps, "seed": self.config.seed, **train_kwargs})
            except ValueError as e:
                raise UserError(str(e)) from None
            trainer = Trainer(self, cfg, out_dir)
        self.trainer = trainer
        best = {"loss": trainer.best_val, "params": None}

        def hook(tr, rec):
            loss = metrics_of(rec)["loss"]
            if loss < best["loss"]:  # the Trainer's rule for a new best (and best.safetensors)
                best.update(loss=loss, params=self.state_arrays())
            return on_eval(tr, rec) if on_eval is not None else None

        result = trainer.fit(hook)
        if best["params"] is not None:
            self.model.load_params(best["params"])
        elif math.isfinite(trainer.best_val):  # the best is from before this call (e.g. --resume)
            self._load_best(trainer.best_val, trainer.best_path, best_checkpoint)
        return result

    def _load_best(self, best_val: float, *paths) -> bool:
        """Load the parameters of the first checkpoint in ``paths`` whose training state records
        ``best_val`` as its best val loss (a best.safetensors written at that evaluation)."""
        for p in paths:
            if p is None or not os.path.exists(p):
                continue
            arrays, meta = read_checkpoint(p, type(self))
            saved = meta.get("train", {}).get("best_val") if isinstance(meta.get("train"), dict) else None
            if saved is not None and float(saved) == best_val:
                self.model.load_params(unprefixed(arrays, "task"))
                return True
        return False

    def save(self, path) -> None:
        """Model + config + normalisation statistics (safetensors + JSON, atomic)."""
        save_task(path, self)

    @classmethod
    def load(cls, path) -> "Forecaster":
        return load_task(path, cls)
