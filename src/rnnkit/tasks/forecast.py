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
    f.fit(steps=3000); print(f.evaluate("test"))
    f.save("mg.safetensors"); Forecaster.load("mg.safetensors").predict(recent_values)
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import numpy as np

from ..data.series import (
    Normalizer, load_csv_column, mackey_glass, naive_forecast, rmse_mae, split_bounds, split_windows,
)
from ..errors import CheckpointError, UserError
from ..layers import LAYERS
from ..losses import mse
from ..train import Trainer, TrainConfig, load_task, save_task
from .readout import Readout, check_cell

SPLIT_FRACTIONS = (0.7, 0.15, 0.15)


def _pos_int(name, v):
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name}: expected a positive integer, got {v!r}")


@dataclass(frozen=True)
class ForecastConfig:
    """Model and data settings of a Forecaster (training settings: :data:`FORECAST_TRAIN`).

    ``csv``/``column`` name the data source (None: Mackey-Glass with
    ``series_length`` samples); they are recorded, the series itself is passed in.
    ``seed`` fixes the initial weights (and, through fit, the batch order).
    """

    window: int = 32
    horizon: int = 1
    cell: str = "lstm"
    hidden: int = 32
    layers: int = 1
    batch: int = 32
    seed: int = 0
    series_length: int = 3000
    csv: str | None = None
    column: str | None = None

    def __post_init__(self):
        for name in ("window", "horizon", "hidden", "layers", "batch", "series_length"):
            _pos_int(name, getattr(self, name))
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed: expected an integer >= 0, got {self.seed!r}")
        check_cell(self.cell)


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
    def fit(self, steps: int = FORECAST_TRAIN.steps, out_dir=None, on_eval=None, trainer: Trainer | None = None,
            best_checkpoint=None, **train_kwargs):
        """Train; keep the parameters with the best val loss.  Returns the Trainer's TrainResult.

        Training settings: :data:`FORECAST_TRAIN` with ``steps``, ``seed=config.seed``
        and any other TrainConfig field given as keyword (``lr=``, ``progress=False``...).
        ``on_eval(step, metrics)`` after every evaluation.  ``trainer`` (from
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
            metrics = {k[len("val_"):]: v for k, v in rec.items() if k.startswith("val_")}
            if metrics["loss"] < best["loss"]:  # the Trainer's rule for a new best (and best.safetensors)
                best.update(loss=metrics["loss"], params=self.state_arrays())
            if on_eval is not None:
                on_eval(tr.step, metrics)

        result = trainer.fit(hook)
        if best["params"] is not None:
            self.model.load_params(best["params"])
        elif math.isfinite(trainer.best_val):  # the best is from before this call (e.g. --resume)
            self._load_best(trainer.best_val, trainer.best_path, best_checkpoint)
        return result

    def _load_best(self, best_val: float, *paths) -> bool:
        """Load the parameters of the first checkpoint in ``paths`` whose training state records
        ``best_val`` as its best val loss (a best.safetensors written at that evaluation)."""
        from ..io.checkpoint import load_checkpoint
        from ..train import _unprefix

        for p in paths:
            if p is None or not os.path.exists(p):
                continue
            arrays, meta = load_checkpoint(p, kind=self.kind)
            saved = meta.get("train", {}).get("best_val") if isinstance(meta.get("train"), dict) else None
            if saved is not None and float(saved) == best_val:
                self.model.load_params(_unprefix(arrays, "task"))
                return True
        return False

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
    t = np.arange(len(Y))  # time of the first target of each window
    fig = Figure(figsize=(9, 6), dpi=110)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    truth = np.concatenate([Y[:, 0], Y[-1, 1:]])  # values at times 0 .. len(Y) + K - 2
    top.plot(np.arange(len(truth)), truth, color="black", lw=1.5, label="truth")
    top.plot(t + K - 1, P[:, -1], color="tab:blue", lw=1, label=f"model, {K} step{'s' * (K > 1)} ahead")
    top.plot(t + K - 1, X[:, -1], color="tab:gray", lw=1, ls="--", label=f"naive (last value), {K} ahead")
    top.set_ylabel(f.config.column or "value")
    src = os.path.basename(f.config.csv) if f.config.csv else "Mackey-Glass (tau=17)"
    top.set_title(f"{src}: {f.config.cell.upper()} forecast vs truth ({split} split)")
    top.legend(loc="upper right", fontsize=8)
    for k, color in ((0, "tab:blue"), (K - 1, "tab:green"))[: 1 + (K > 1)]:
        bottom.plot(t + k, P[:, k] - Y[:, k], color=color, lw=1, label=f"model error, {k + 1} ahead")
    bottom.plot(t, X[:, -1] - Y[:, 0], color="tab:gray", lw=1, ls="--", label="naive error, 1 ahead")
    bottom.axhline(0, color="black", lw=0.5)
    bottom.set_xlabel("time step")
    bottom.set_ylabel("forecast - truth")
    bottom.legend(loc="upper right", fontsize=8)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = os.fspath(png_path) + ".tmp.png"
    fig.savefig(tmp)
    os.replace(tmp, png_path)
    return os.fspath(png_path)


# ----------------------------------------------------------------------------- command line
EVAL_KINDS = ("forecast",)

_MODEL_FLAGS = (  # (flag, ForecastConfig field, help); types come from rnnkit.cli
    ("--csv", "csv", "CSV file with a header row (default: the Mackey-Glass series, generated)"),
    ("--column", "column", "numeric column of --csv to forecast"),
    ("--horizon", "horizon", "K: number of future steps forecast at once"),
    ("--window", "window", "W: past values the model reads"),
    ("--cell", "cell", "recurrent cell"),
    ("--hidden", "hidden", "hidden units"),
    ("--layers", "layers", "stacked recurrent layers"),
    ("--batch", "batch", "windows per optimizer step"),
    ("--series-length", "series_length", "Mackey-Glass samples when no --csv"),
)


def _report(ev: dict, K: int) -> list[str]:
    ratio = ev["naive_rmse_h1"] / ev["rmse_h1"] if ev["rmse_h1"] > 0 else float("inf")
    cols = [("RMSE", "rmse"), ("MAE", "mae")] + ([("RMSE h=1", "rmse_h1"), (f"RMSE h={K}", "rmse_hK")] if K > 1 else [])
    lines = [f"{'':>18}" + "".join(f"{c:>11}" for c, _ in cols)]
    for label, p in (("model", ""), ("naive last value", "naive_")):
        lines.append(f"{label:>18}" + "".join(f"{ev[p + k]:>11.5f}" for _, k in cols))
    lines.append(f"horizon 1: model RMSE {ratio:.1f}x below the naive baseline")
    return lines


def _source(c: ForecastConfig) -> str:
    return f"{c.csv} column {c.column!r}" if c.csv else f"Mackey-Glass tau=17 ({c.series_length} samples)"


def _train_handler(args) -> int:
    from ..cli import refuse_existing_checkpoint, refuse_model_changes, train_config_from_args
    from ..train import plot_metrics

    if args.resume:
        out = args.out or os.path.dirname(os.path.abspath(args.resume))
        trainer = Trainer.resume(args.resume, Forecaster, out_dir=out)
        f = trainer.task
        refuse_model_changes(f.config, {name: getattr(args, name) for _, name, _ in _MODEL_FLAGS
                                        if getattr(args, name) is not None})
        trainer.config = train_config_from_args(args, trainer.config)  # fit() rebuilds schedule and optimizer from it
        f.attach(default_series(f.config), name=_source(f.config))
        print(f"resuming {args.resume} at step {trainer.step} of {trainer.config.steps}")
    else:
        given = {name: getattr(args, name) for _, name, _ in _MODEL_FLAGS if getattr(args, name) is not None}
        if args.seed is not None:
            given["seed"] = args.seed
        if "column" in given and "csv" not in given:
            raise UserError("--column needs --csv (the file to read the column from)")
        try:
            config = ForecastConfig(**given)
        except ValueError as e:
            raise UserError(str(e)) from None
        out = args.out or os.path.join("runs", "forecast")
        refuse_existing_checkpoint(out)
        f = Forecaster(config, default_series(config))
        base = dataclasses.replace(FORECAST_TRAIN, seed=config.seed)
        trainer = Trainer(f, train_config_from_args(args, base), out)
    c, s, tc = f.config, f.splits, trainer.config
    print(f"series: {_source(c)}: {len(f.series)} values; windows train/val/test "
          f"{len(s['train'].X)}/{len(s['val'].X)}/{len(s['test'].X)} (W={c.window}, K={c.horizon})")
    print(f"model: {c.cell.upper()} {c.layers}x{c.hidden} -> Linear({c.hidden}, {c.horizon}), "
          f"{f.model.num_params():,} parameters; {tc.optimizer} lr {tc.lr} ({tc.schedule}), clip {tc.clip}, "
          f"batch {c.batch}, {tc.steps} steps")

    def report(step, m):
        from tqdm import tqdm

        tqdm.write(f"step {step:>6}  val loss {m['loss']:.6f}  RMSE {m['rmse']:.5f} (naive {m['naive_rmse']:.5f})")

    resumed_best = os.path.join(os.path.dirname(os.path.abspath(args.resume)), "best.safetensors") if args.resume else None
    result = f.fit(trainer=trainer, on_eval=report, best_checkpoint=resumed_best)
    print(f"stopped at step {result.step} ({result.stop_reason}) after {result.seconds:.0f} s; "
          f"best val loss {result.best_val:.6f} (normalised MSE)")
    if result.stop_reason == "interrupted":
        print(f"interrupted: resume with  rnnkit train forecast --resume {result.checkpoint}")
    ev = f.evaluate("test")
    print(f"test split ({int(ev['windows'])} windows), original units, model with the best val loss:")
    print("\n".join(_report(ev, c.horizon)))
    path = os.path.join(trainer.out_dir, "forecast.safetensors")
    f.save(path)
    print(f"model: {path}  (training checkpoint: {result.checkpoint})")
    png = plot_forecast(f, os.path.join(trainer.out_dir, "forecast.png"))
    print(f"forecast plot: {png}" if png else "forecast plot: not written (matplotlib is not installed; "
          "pip install matplotlib)")
    got = plot_metrics(trainer.log_path, os.path.join(trainer.out_dir, "loss.png"), title="forecast training",
                       ylabel="MSE (normalised units)")
    if got:
        print(f"loss curve: {got}")
    return 0


def _forecast_handler(args) -> int:
    from ..data.series import make_windows

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
    X, Y = make_windows(series, c.window, c.horizon)
    if len(X):
        r, m = rmse_mae(f.predict_windows(X), Y)
        nr, nm = rmse_mae(naive_forecast(X, c.horizon), Y)
        print(f"backtest on its {len(X)} windows: RMSE {np.sqrt(np.mean(r**2)):.6g} MAE {m.mean():.6g}  "
              f"(naive last value: RMSE {np.sqrt(np.mean(nr**2)):.6g} MAE {nm.mean():.6g})")
    return 0


def eval_checkpoint(path, meta, args) -> int:
    """``rnnkit eval CKPT [--split S]`` for a forecast checkpoint: its own series, re-read or regenerated."""
    if args.text:
        raise UserError("eval --text is for char-LMs; forecast new data with: rnnkit forecast CKPT --csv FILE")
    f = load_task(path, Forecaster)
    f.attach(default_series(f.config), name=_source(f.config))
    ev = f.evaluate(args.split)
    print(f"{_source(f.config)}, {args.split} split ({int(ev['windows'])} windows), original units:")
    print("\n".join(_report(ev, f.config.horizon)))
    return 0


def register_cli(root_subparsers, train_subparsers) -> None:
    """``rnnkit train forecast`` and ``rnnkit forecast CKPT --csv FILE``."""
    from ..cli import add_train_args, positive_int

    d = ForecastConfig()
    p = train_subparsers.add_parser(
        "forecast", help="multi-step forecasting of a univariate series",
        description="Train a recurrent forecaster (chronological 70/15/15 split, statistics from train). "
                    "Reports test RMSE/MAE next to the naive last-value forecast; writes forecast.png.")
    for flag, name, h in _MODEL_FLAGS:
        kw = {"choices": tuple(LAYERS)} if name == "cell" else {}
        typ = str if name in ("csv", "column", "cell") else positive_int
        default = getattr(d, name)
        p.add_argument(flag, dest=name, type=typ, default=None,
                       help=h + ("" if default is None else f" (default {default})"), **kw)
    add_train_args(p, FORECAST_TRAIN)
    p.set_defaults(func=_train_handler)

    q = root_subparsers.add_parser("forecast", help="forecast the next values of a CSV column with a trained model",
                                   description="Forecast the next K values after the end of a CSV column "
                                               "and backtest the model on all its windows.")
    q.add_argument("checkpoint", metavar="CKPT", help="forecast.safetensors (or last.safetensors) of a forecast run")
    q.add_argument("--csv", required=True, help="CSV file with a header row")
    q.add_argument("--column", help="column to forecast (default: the one the model was trained on)")
    q.set_defaults(func=_forecast_handler)
