"""Multi-step time-series forecasting: ``Forecaster`` (a Trainer task) and its CLI.

Model (:class:`rnnkit.tasks.readout.Readout`): the last ``window`` values,
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
    f.fit(); print(f.evaluate("test"))
    f.save("mg.safetensors"); Forecaster.load("mg.safetensors").predict(recent_values)
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

import numpy as np

from ..data.series import (
    Normalizer, load_csv_column, mackey_glass, naive_forecast, rmse_mae, split_bounds, split_windows,
)
from ..errors import CheckpointError, UserError
from ..losses import mse
from ..train import Trainer, TrainConfig, load_task, save_task
from .readout import Readout, check_cell

SPLIT_FRACTIONS = (0.7, 0.15, 0.15)


def _pos_int(name, v):
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name}: expected a positive integer, got {v!r}")


@dataclass(frozen=True)
class ForecastConfig:
    """Model, data and training settings of a Forecaster.

    ``csv``/``column`` name the data source (None: Mackey-Glass with
    ``series_length`` samples); they are recorded, the series itself is passed in.
    """

    window: int = 32
    horizon: int = 1
    cell: str = "lstm"
    hidden: int = 32
    layers: int = 1
    batch: int = 32
    lr: float = 3e-3
    clip: float = 1.0
    steps: int = 3000
    eval_every: int = 250
    seed: int = 0
    series_length: int = 3000
    csv: str | None = None
    column: str | None = None

    def __post_init__(self):
        for name in ("window", "horizon", "hidden", "layers", "batch", "steps", "eval_every", "series_length"):
            _pos_int(name, getattr(self, name))
        check_cell(self.cell)
        for name in ("lr", "clip"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a positive number, got {getattr(self, name)!r}")


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
    loss_unit = "MSE (normalised)"

    def __init__(self, config: ForecastConfig | None = None, series: np.ndarray | None = None,
                 normalizer: Normalizer | None = None):
        config = ForecastConfig() if config is None else config
        if not isinstance(config, ForecastConfig):
            raise TypeError(f"config: expected ForecastConfig, got {type(config).__name__}")
        self.config = c = config
        self.model = Readout(c.cell, 1, c.hidden, c.horizon, layers=c.layers, seed=np.random.default_rng([c.seed, 1]))
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
    def _inputs(self, X: np.ndarray) -> np.ndarray:
        """Windows (M, W) original units -> model input (W, M, 1) float32, normalised."""
        return np.ascontiguousarray(self.normalizer.transform(X).T[:, :, None], dtype=np.float32)

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
    def from_checkpoint(cls, arrays: dict, meta: dict) -> "Forecaster":
        if meta.get("kind") != cls.kind:
            raise CheckpointError(f"checkpoint holds a {meta.get('kind')!r} model, expected {cls.kind!r}")
        try:
            config = ForecastConfig(**meta["config"])
            normalizer = Normalizer(float(meta["normalizer"]["mean"]), float(meta["normalizer"]["std"]))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint forecast settings are invalid: {e}") from None
        f = cls(config, normalizer=normalizer)
        try:
            f.model.load_params(arrays)
        except ValueError as e:
            raise CheckpointError(f"checkpoint parameters do not fit the model: {e}") from None
        return f

    # ------------------------------------------------------------------ high level
    def train_config(self, progress: bool = True) -> TrainConfig:
        c = self.config
        return TrainConfig(steps=c.steps, lr=c.lr, optimizer="adam", clip=c.clip, eval_every=c.eval_every,
                           seed=c.seed, progress=progress, log_every=min(50, c.eval_every))

    def fit(self, out_dir=None, progress: bool = True, on_eval=None, trainer: Trainer | None = None):
        """Train for ``config.steps`` Adam steps; keep the parameters with the best val loss.

        ``on_eval(step, metrics)`` after every evaluation.  Returns the Trainer's TrainResult.
        """
        self._require_data()
        trainer = Trainer(self, self.train_config(progress), out_dir) if trainer is None else trainer
        best = {"loss": trainer.best_val, "params": None}

        def hook(tr, rec):
            metrics = {k[len("val_"):]: v for k, v in rec.items() if k.startswith("val_")}
            if metrics["loss"] <= best["loss"]:
                best.update(loss=metrics["loss"], params=self.state_arrays())
            if on_eval is not None:
                on_eval(tr.step, metrics)

        result = trainer.fit(hook)
        if best["params"] is not None:
            self.model.load_params(best["params"])
        return result

    def save(self, path) -> None:
        """Model + config + normalisation statistics (safetensors + JSON, atomic)."""
        save_task(path, self)

    @classmethod
    def load(cls, path) -> "Forecaster":
        return load_task(path, cls)


# ----------------------------------------------------------------------------- plot
def plot_forecast(f: Forecaster, png_path, split: str = "test", max_points: int = 400):
    """PNG of truth vs the model's horizon-1 (and horizon-K) forecasts and the naive one on ``split``.

    Returns the path, or None when matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    X, Y = f.splits[split]
    X, Y = X[:max_points], Y[:max_points]
    P = f.predict_windows(X)
    K = f.config.horizon
    t = np.arange(len(Y))
    fig = Figure(figsize=(9, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(t, Y[:, 0], color="black", lw=1.5, label="truth")
    ax.plot(t, P[:, 0], color="tab:blue", lw=1, label="model, 1 step ahead")
    if K > 1:
        ax.plot(t + K - 1, P[:, -1], color="tab:green", lw=1, label=f"model, {K} steps ahead")
    ax.plot(t, X[:, -1], color="tab:gray", lw=1, ls="--", label="naive (last value)")
    ax.set_xlabel(f"{split} split time step")
    ax.set_ylabel(f.config.column or "value")
    src = os.path.basename(f.config.csv) if f.config.csv else "Mackey-Glass (tau=17)"
    ax.set_title(f"{src}: {f.config.cell.upper()} forecast vs truth")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    tmp = os.fspath(png_path) + ".tmp.png"
    fig.savefig(tmp)
    os.replace(tmp, png_path)
    return os.fspath(png_path)


# ----------------------------------------------------------------------------- command line
_TRAIN_FIELDS = (  # (flag, config field, type, help)
    ("--csv", "csv", str, "CSV file with a header row (default: the Mackey-Glass series)"),
    ("--column", "column", str, "numeric column of --csv to forecast"),
    ("--horizon", "horizon", int, "K: number of future steps forecast at once"),
    ("--window", "window", int, "W: past values the model reads"),
    ("--cell", "cell", str, "recurrent cell: lstm, gru or rnn"),
    ("--hidden", "hidden", int, "hidden units"),
    ("--layers", "layers", int, "stacked recurrent layers"),
    ("--batch", "batch", int, "windows per optimizer step"),
    ("--lr", "lr", float, "Adam learning rate"),
    ("--clip", "clip", float, "gradient-norm clipping threshold"),
    ("--steps", "steps", int, "optimizer steps"),
    ("--eval-every", "eval_every", int, "evaluate on the val split every N steps"),
    ("--seed", "seed", int, "seed of weights and batch order"),
    ("--series-length", "series_length", int, "Mackey-Glass samples when no --csv"),
)


def _report(ev: dict, K: int) -> list[str]:
    ratio = ev["naive_rmse_h1"] / ev["rmse_h1"] if ev["rmse_h1"] > 0 else float("inf")
    lines = [f"{'':>18}{'RMSE':>11}{'MAE':>11}{'RMSE h=1':>11}{f'RMSE h={K}':>11}"]
    for label, p in (("model", ""), ("naive last value", "naive_")):
        lines.append(f"{label:>18}{ev[p + 'rmse']:>11.5f}{ev[p + 'mae']:>11.5f}{ev[p + 'rmse_h1']:>11.5f}"
                     f"{ev[p + 'rmse_hK']:>11.5f}")
    lines.append(f"horizon 1: model RMSE {ratio:.1f}x below the naive baseline")
    return lines


def _train_handler(args) -> int:
    if args.resume:
        trainer = Trainer.resume(args.resume, Forecaster, out_dir=args.out)
        f = trainer.task
        trainer.config = dataclasses.replace(trainer.config, progress=not args.no_progress)
        f.attach(default_series(f.config), name=f.config.csv or "Mackey-Glass series")
        print(f"resuming forecast from {args.resume} at step {trainer.step}")
    else:
        fields = {name: getattr(args, name) for _, name, _, _ in _TRAIN_FIELDS}
        if fields["column"] is not None and fields["csv"] is None:
            raise UserError("--column needs --csv (the file to read the column from)")
        try:
            config = ForecastConfig(**fields)
        except ValueError as e:
            raise UserError(str(e)) from None
        f, trainer = Forecaster(config, default_series(config)), None
    c, s = f.config, f.splits
    src = f"{c.csv} column {c.column!r}" if c.csv else f"Mackey-Glass tau=17 ({c.series_length} samples)"
    print(f"forecast {src}: {len(f.series)} values; windows train/val/test "
          f"{len(s['train'].X)}/{len(s['val'].X)}/{len(s['test'].X)} (W={c.window}, K={c.horizon})")
    print(f"model: {c.cell.upper()} hidden {c.hidden} x{c.layers} -> Linear({c.hidden}, {c.horizon}); "
          f"{f.model.num_params():,} parameters; Adam lr {c.lr}, batch {c.batch}, {c.steps} steps")
    t0 = time.perf_counter()
    result = f.fit(out_dir=args.out, progress=not args.no_progress, trainer=trainer,
                   on_eval=lambda step, m: print(f"step {step:>6}  val loss {m['loss']:.6f}  RMSE {m['rmse']:.5f} "
                                                 f"(naive {m['naive_rmse']:.5f})", flush=True))
    print(f"trained {result.step} steps in {time.perf_counter() - t0:.0f} s ({result.stop_reason}); "
          f"best val loss {result.best_val:.6f}")
    ev = f.evaluate("test")
    print(f"test split ({int(ev['windows'])} windows), original units:")
    print("\n".join(_report(ev, c.horizon)))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "forecast.safetensors")
    f.save(path)
    print(f"model (best val): {path}")
    png = plot_forecast(f, os.path.join(args.out, "forecast.png"))
    print(f"plot: {png}" if png else "plot: matplotlib is not installed, no PNG written (pip install matplotlib)")
    return 0


def _forecast_handler(args) -> int:
    f = Forecaster.load(args.checkpoint)
    column = args.column or f.config.column
    if column is None:
        raise UserError("--column is required (the model was trained on Mackey-Glass, so it names no column)")
    series = load_csv_column(args.csv, column)
    c = f.config
    if len(series) < c.window:
        raise UserError(f"{args.csv}: column {column!r} has {len(series)} values, fewer than the model's "
                        f"window W = {c.window}")
    nxt = f.predict(series)
    print(f"next {c.horizon} value(s) after the last of {len(series)} in {args.csv} column {column!r}:")
    print("  " + "  ".join(f"{v:.6g}" for v in nxt))
    from ..data.series import make_windows
    X, Y = make_windows(series, c.window, c.horizon)
    if len(X):
        r, m = rmse_mae(f.predict_windows(X), Y)
        nr, nm = rmse_mae(naive_forecast(X, c.horizon), Y)
        print(f"backtest on its {len(X)} windows: RMSE {np.sqrt(np.mean(r**2)):.6g} MAE {m.mean():.6g}  "
              f"(naive last value: RMSE {np.sqrt(np.mean(nr**2)):.6g} MAE {nm.mean():.6g})")
    return 0


def register_cli(root_subparsers, train_subparsers) -> None:
    """``rnnkit train forecast`` and ``rnnkit forecast CKPT --csv FILE``."""
    d = ForecastConfig()
    p = train_subparsers.add_parser("forecast", help="multi-step forecasting of a univariate series",
                                    description="Train a recurrent forecaster; reports test RMSE/MAE next to "
                                                "the naive last-value forecast and writes a PNG.")
    for flag, name, typ, h in _TRAIN_FIELDS:
        kw = {"choices": ("lstm", "gru", "rnn")} if name == "cell" else {}
        default = getattr(d, name)
        p.add_argument(flag, dest=name, type=typ, default=default,
                       help=h + ("" if default is None else f" (default {default})"), **kw)
    p.add_argument("--out", default=os.path.join("runs", "forecast"), help="output directory (default %(default)s)")
    p.add_argument("--resume", metavar="CKPT", help="continue a run from its last.safetensors")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train_handler)

    q = root_subparsers.add_parser("forecast", help="forecast the next values of a CSV column with a trained model",
                                   description="Forecast the next K values after the end of a CSV column "
                                               "and backtest the model on all its windows.")
    q.add_argument("checkpoint", metavar="CKPT", help="a forecast.safetensors written by 'rnnkit train forecast'")
    q.add_argument("--csv", required=True, help="CSV file with a header row")
    q.add_argument("--column", help="column to forecast (default: the one the model was trained on)")
    q.set_defaults(func=_forecast_handler)
