"""``rnnkit train forecast``, ``rnnkit forecast CKPT --csv FILE`` and the forecast side of ``rnnkit eval``."""
from __future__ import annotations

import os

import numpy as np

from rnnkit.data.series import load_csv_column, make_windows, naive_forecast, rmse_mae
from rnnkit.errors import UserError
from rnnkit.engine.layer_types import cell_label
from rnnkit.train.plots import plot_forecast
from rnnkit.tasks.forecast import ForecastConfig, Forecaster, default_series
from rnnkit.cli.train import TaskSpec, stopped_line

def compare_to_naive(model_rmse: float, naive_rmse: float) -> str:
    """``"model RMSE 3.2x below the naive baseline"``, or ``"... above ..."`` when the model is worse;
    no ratio when one of them is exact (RMSE 0, e.g. a constant series)."""
    if naive_rmse == 0 or model_rmse == 0:
        if naive_rmse == model_rmse:
            return "model and naive baseline both exact (RMSE 0; a constant series?)"
        if model_rmse == 0:
            return f"model exact (RMSE 0), naive baseline RMSE {naive_rmse:.6g}"
        return f"model RMSE {model_rmse:.6g} above the naive baseline, which is exact (RMSE 0; the model is worse)"
    if model_rmse <= naive_rmse:
        return f"model RMSE {naive_rmse / model_rmse:.1f}x below the naive baseline"
    return f"model RMSE {model_rmse / naive_rmse:.1f}x above the naive baseline (the model is worse)"


def _report(ev: dict, K: int) -> list[str]:
    cols = [("RMSE", "rmse"), ("MAE", "mae")] + ([("RMSE h=1", "rmse_h1"), (f"RMSE h={K}", "rmse_hK")] if K > 1 else [])
    lines = [f"{'':>18}" + "".join(f"{c:>11}" for c, _ in cols)]
    for label, p in (("model", ""), ("naive last value", "naive_")):
        lines.append(f"{label:>18}" + "".join(f"{ev[p + k]:>11.5f}" for _, k in cols))
    lines.append("horizon 1: " + compare_to_naive(ev["rmse_h1"], ev["naive_rmse_h1"]))
    return lines


def _source(c: ForecastConfig) -> str:
    return f"{c.csv} column {c.column!r}" if c.csv else f"Mackey-Glass tau=17 ({c.series_length} samples)"


def forecast_png(f: Forecaster, png_path, split: str = "test", max_points: int = 400):
    """truth vs the model's and the naive forecasts on ``split`` (rnnkit.train.plots.plot_forecast)."""
    X, Y = f.splits[split]
    X, Y = X[:max_points], Y[:max_points]
    src = os.path.basename(f.config.csv) if f.config.csv else "Mackey-Glass (tau=17)"
    return plot_forecast(X, Y, f.predict_windows(X), png_path, ylabel=f.config.column or "value",
                         title=f"{src}: {cell_label(f.config)} forecast vs truth ({split} split)")


class ForecastSpec(TaskSpec):
    name, task_class, config_class = "forecast", Forecaster, ForecastConfig
    help = "multi-step forecasting of a univariate series"
    description = ("Train a recurrent forecaster (chronological 70/15/15 split, statistics from train). "
                   "Reports test RMSE/MAE next to the naive last-value forecast; writes forecast.png.")
    plot_title, plot_ylabel = "forecast training", "MSE (normalised units)"
    text_hint = "; forecast new data with: rnnkit forecast CKPT --csv FILE"

    def new_config(self, args):
        if args.column is not None and args.csv is None:
            raise UserError("--column needs --csv (the file to read the column from)")
        return super().new_config(args)

    def new_task(self, config, args):
        return Forecaster(config, default_series(config))

    def attach(self, f, args) -> None:
        f.attach(default_series(f.config), name=_source(f.config))

    def describe(self, f, trainer) -> None:
        c, s, tc = f.config, f.splits, trainer.config
        print(f"series: {_source(c)}: {len(f.series)} values; windows train/val/test "
              f"{len(s['train'].X)}/{len(s['val'].X)}/{len(s['test'].X)} (W={c.window}, K={c.horizon})")
        print(f"model: {cell_label(c)} {c.layers}x{c.hidden} -> Linear({f.model.rnn.h_size}, {c.horizon}), "
              f"{f.model.num_params():,} parameters; {tc.optimizer} lr {tc.lr} ({tc.schedule}), clip {tc.clip}, "
              f"batch {c.batch}, {tc.steps} steps")

    def report_eval(self, f, trainer, rec) -> None:
        from tqdm import tqdm

        tqdm.write(f"step {rec['step']:>6}  val loss {rec['val_loss']:.6f}  RMSE {rec['val_rmse']:.5f} "
                   f"(naive {rec['val_naive_rmse']:.5f})")

    def fit(self, f, trainer, on_eval, args):
        # the best parameters of a resumed run may be in best.safetensors next to the checkpoint
        resumed_best = (os.path.join(os.path.dirname(os.path.abspath(args.resume)), "best.safetensors")
                        if args.resume else None)
        return f.fit(trainer=trainer, on_eval=on_eval, best_checkpoint=resumed_best)

    def finish(self, f, trainer, result, args) -> None:
        print(f"{stopped_line(result)}; best val loss {result.best_val:.6f} (normalised MSE)")
        ev = f.evaluate("test")
        print(f"test split ({int(ev['windows'])} windows), original units, model with the best val loss:")
        print("\n".join(_report(ev, f.config.horizon)))
        path = os.path.join(trainer.out_dir, "forecast.safetensors")
        f.save(path)
        print(f"model: {path}  (training checkpoint: {result.checkpoint})")
        png = forecast_png(f, os.path.join(trainer.out_dir, "forecast.png"))
        print(f"forecast plot: {png}" if png else "forecast plot: not written (matplotlib is not installed; "
              "pip install matplotlib)")

    def evaluate(self, f, args, path) -> None:
        """The forecaster's own series, re-read or regenerated."""
        split = self.eval_split(f, args)
        f.attach(default_series(f.config), name=_source(f.config))
        ev = f.evaluate(split)
        print(f"{_source(f.config)}, {split} split ({int(ev['windows'])} windows), original units:")
        print("\n".join(_report(ev, f.config.horizon)))


def _forecast_handler(args) -> int:
    f = Forecaster.load(args.checkpoint)
    column = args.column or f.config.column
    if column is None:
        raise UserError("--column is required (the model was trained on Mackey-Glass, so it names no column)")
    series = load_csv_column(args.csv, column)
    f.normalised(series)  # the whole column is checked before anything is printed
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


def register(root) -> None:
    """``rnnkit forecast CKPT --csv FILE``."""
    q = root.add_parser("forecast", help="forecast the next values of a CSV column with a trained model",
                        description="Forecast the next K values after the end of a CSV column "
                                    "and backtest the model on all its windows.")
    q.add_argument("checkpoint", metavar="CKPT", help="forecast.safetensors (or last.safetensors) of a forecast run")
    q.add_argument("--csv", required=True, help="CSV file with a header row")
    q.add_argument("--column", help="column to forecast (default: the one the model was trained on)")
    q.set_defaults(func=_forecast_handler)
