"""Forecaster: gradients vs torch, a tiny training run, save/load, prediction API, CSV data, CLI."""
import re

import numpy as np
import pytest

from rnnkit.data.series import make_windows, naive_forecast, rmse_mae
from rnnkit.errors import CheckpointError, UserError
from rnnkit.tasks.forecast import ForecastConfig, Forecaster

TINY = dict(window=8, horizon=3, hidden=8, batch=16, series_length=300)
TRAIN = dict(steps=60, eval_every=30, lr=1e-2, progress=False)


def test_loss_and_gradients_match_torch():
    torch = pytest.importorskip("torch")
    f = Forecaster(ForecastConfig(window=6, horizon=2, hidden=5, batch=4, series_length=200, cell="gru"))
    (x, y), carry = f.train_batch(np.random.default_rng(0))
    assert x.shape == (6, 4, 1) and y.shape == (4, 2) and carry is None
    f.model.zero_grad()
    loss, _, count = f.loss_and_backward((x, y))
    assert count == 4
    r, h = f.model.rnn, f.model.head
    t_rnn, t_head = torch.nn.GRU(1, 5), torch.nn.Linear(5, 2)
    with torch.no_grad():
        for k, p in t_rnn.named_parameters():
            p.copy_(torch.from_numpy(r.params[k]))
        t_head.weight.copy_(torch.from_numpy(h.params["weight"]))
        t_head.bias.copy_(torch.from_numpy(h.params["bias"]))
    t_loss = ((t_head(t_rnn(torch.from_numpy(x))[0][-1]) - torch.from_numpy(y)) ** 2).mean()
    t_loss.backward()
    assert loss == pytest.approx(t_loss.item(), rel=1e-5)
    for k, p in t_rnn.named_parameters():
        np.testing.assert_allclose(f.model.grads[f"rnn.{k}"], p.grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=k)
    np.testing.assert_allclose(f.model.grads["head.weight"], t_head.weight.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_batches_are_normalised_train_windows():
    f = Forecaster(ForecastConfig(**TINY))
    (x, y), _ = f.train_batch(np.random.default_rng(1))
    X, Y = f.splits["train"]
    raw_x = f.normalizer.inverse(x[:, :, 0].T)
    # every drawn window is one of the train windows, targets follow it
    for row_x, row_y in zip(raw_x, f.normalizer.inverse(y)):
        i = np.argmin(np.abs(X - row_x).sum(1))
        np.testing.assert_allclose(X[i], row_x, atol=1e-5)
        np.testing.assert_allclose(Y[i], row_y, atol=1e-5)
    train_vals = f.series[: int(round(0.7 * len(f.series)))]
    assert f.normalizer.mean == pytest.approx(train_vals.mean()) and f.normalizer.std == pytest.approx(train_vals.std())


def test_tiny_training_run_reduces_loss_and_evaluate_is_consistent(tmp_path):
    f = Forecaster(ForecastConfig(**TINY))
    before = f.evaluate("val")["loss"]
    result = f.fit(out_dir=tmp_path, **TRAIN)
    assert result.step == 60 and np.mean(result.losses[-10:]) < 0.5 * np.mean(result.losses[:10])
    after = f.evaluate("val")
    assert after["loss"] < 0.5 * before
    # metrics in original units, recomputed by hand
    X, Y = f.splits["val"]
    r, m = rmse_mae(f.predict_windows(X), Y)
    nr, _ = rmse_mae(naive_forecast(X, 3), Y)
    assert after["rmse_h1"] == pytest.approx(r[0]) and after["rmse_hK"] == pytest.approx(r[2])
    assert after["mae"] == pytest.approx(m.mean()) and after["naive_rmse_h1"] == pytest.approx(nr[0])
    assert (tmp_path / "last.safetensors").exists() and (tmp_path / "metrics.jsonl").exists()


def test_save_load_round_trip_identical_predictions(tmp_path):
    f = Forecaster(ForecastConfig(**TINY))
    f.fit(**{**TRAIN, "steps": 5})
    path = tmp_path / "m.safetensors"
    f.save(path)
    g = Forecaster.load(path)
    assert g.config == f.config and g.normalizer == f.normalizer
    X = f.splits["test"].X
    assert np.array_equal(g.predict_windows(X), f.predict_windows(X))
    assert np.array_equal(g.predict(f.series), f.predict(f.series))
    assert np.array_equal(f.predict(f.series), f.predict_windows(f.series[None, -8:])[0])
    with pytest.raises(UserError, match="no data: call attach"):
        g.evaluate("test")
    g.attach(f.series)
    assert g.evaluate("test") == f.evaluate("test")
    with pytest.raises(UserError, match="at least window = 8 values, got 3"):
        g.predict([1.0, 2.0, 3.0])
    from rnnkit.tasks.longlag import AddingTask
    from rnnkit.train import load_task
    with pytest.raises(CheckpointError, match="forecast"):
        load_task(path, AddingTask)


def test_csv_series_and_too_short(tmp_path):
    t = np.arange(200)
    p = tmp_path / "s.csv"
    p.write_text("t,y\n" + "".join(f"{i},{np.sin(i / 5):.6f}\n" for i in t))
    f = Forecaster(ForecastConfig(**TINY, csv=str(p), column="y"))
    assert len(f.series) == 200 and f.series[3] == pytest.approx(np.sin(0.6), abs=1e-6)
    with pytest.raises(UserError, match="has 10 values, shorter than window \\+ horizon = 8 \\+ 3 = 11"):
        Forecaster(ForecastConfig(**TINY), series=np.arange(10.0))
    with pytest.raises(UserError, match="--column is required with --csv"):
        Forecaster(ForecastConfig(csv=str(p)))


def _csv(path, start, stop, header="t,y", with_t=True):
    rows = "".join((f"{i}," if with_t else "") + f"{np.sin(i / 5):.6f}\n" for i in range(start, stop))
    path.write_text(header + "\n" + rows)
    return path


@pytest.mark.slow
def test_cli_train_forecast_resume_eval_and_forecast_new_data(tmp_path, capsys):
    from rnnkit.cli import main

    p = _csv(tmp_path / "s.csv", 0, 300)
    out = tmp_path / "run"
    args = ["train", "forecast", "--csv", str(p), "--column", "y", "--horizon", "2", "--window", "8",
            "--hidden", "8", "--steps", "40", "--eval-every", "20", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    text = capsys.readouterr().out
    # 40 steps: the model may still be worse than the naive forecast, and the summary says so
    assert "naive last value" in text and "stopped at step 40" in text
    assert re.search(r"model RMSE [\d.]+x (below|above) the naive baseline", text), text
    assert (out / "forecast.safetensors").exists()
    import importlib.util

    if importlib.util.find_spec("matplotlib") is not None:  # the plot is written and named
        assert (out / "forecast.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"forecast plot: {out / 'forecast.png'}" in text and f"loss curve: {out / 'loss.png'}" in text
    else:  # one line says why there is none
        assert not (out / "forecast.png").exists() and "forecast plot: not written (matplotlib is not installed" in text
    # the same --out again is refused (never overwrite a checkpoint); --resume continues to more steps
    assert main(args) == 2 and "holds an earlier run" in capsys.readouterr().err
    assert main(["train", "forecast", "--resume", str(out / "last.safetensors"), "--steps", "60",
                 "--no-progress"]) == 0
    assert "resuming" in (text := capsys.readouterr().out) and "stopped at step 60" in text
    assert main(["eval", str(out / "forecast.safetensors"), "--split", "test"]) == 0
    assert "test split" in capsys.readouterr().out
    # forecast new data: the printed values are the model's predictions
    new = _csv(tmp_path / "new.csv", 300, 320, header="y", with_t=False)
    assert main(["forecast", str(out / "forecast.safetensors"), "--csv", str(new)]) == 0
    text = capsys.readouterr().out
    f = Forecaster.load(out / "forecast.safetensors")
    series = np.array([float(f"{np.sin(i / 5):.6f}") for i in range(300, 320)])
    assert "  ".join(f"{v:.6g}" for v in f.predict(series)) in text
    X, _ = make_windows(series, 8, 2)
    assert f"backtest on its {len(X)} windows" in text


def test_cli_bad_input_one_line_exit_2(tmp_path, capsys):
    from rnnkit.cli import main

    p = tmp_path / "s.csv"
    p.write_text("a,b\n1,2\n")
    out = str(tmp_path / "o")
    assert main(["train", "forecast", "--csv", str(p), "--column", "zz", "--out", out, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: ") and "no column 'zz'; available columns: 'a', 'b'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["train", "forecast", "--csv", str(p), "--column", "b", "--out", out, "--no-progress"]) == 2
    assert "shorter than window + horizon" in capsys.readouterr().err
    assert main(["train", "forecast", "--column", "b", "--out", out, "--no-progress"]) == 2
    assert "--column needs --csv" in capsys.readouterr().err
    assert main(["forecast", str(tmp_path / "missing.safetensors"), "--csv", str(p)]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.slow
def test_resume_without_a_new_best_keeps_the_best_parameters(tmp_path, capsys, monkeypatch):
    # after --resume, evaluations that do not beat the checkpoint's best val loss leave the model
    # (forecast.safetensors) at the best parameters, read back from best.safetensors, not the final ones
    from rnnkit.cli import main
    from rnnkit.io.checkpoint import load_checkpoint

    p = _csv(tmp_path / "s.csv", 0, 300)
    out = tmp_path / "run"
    assert main(["train", "forecast", "--csv", str(p), "--column", "y", "--horizon", "2", "--window", "8",
                 "--hidden", "8", "--steps", "40", "--eval-every", "20", "--out", str(out), "--no-progress"]) == 0
    evaluate = Forecaster.evaluate

    def worse(self, split="val"):  # every later evaluation is worse than the best so far
        ev = evaluate(self, split)
        return {**ev, "loss": ev["loss"] + 10.0}

    monkeypatch.setattr(Forecaster, "evaluate", worse)
    import shutil
    shutil.copy(out / "last.safetensors", out / "step40.safetensors")
    for resume_out in (out, tmp_path / "elsewhere"):  # --out elsewhere: best.safetensors next to the checkpoint
        capsys.readouterr()
        assert main(["train", "forecast", "--resume", str(out / "step40.safetensors"), "--steps", "60",
                     "--out", str(resume_out), "--no-progress"]) == 0
        assert "stopped at step 60" in capsys.readouterr().out
        best = {k[5:]: v for k, v in load_checkpoint(out / "best.safetensors")[0].items() if k.startswith("task/")}
        last = {k[5:]: v for k, v in load_checkpoint(resume_out / "last.safetensors")[0].items()
                if k.startswith("task/")}
        model = {k[5:]: v for k, v in load_checkpoint(resume_out / "forecast.safetensors")[0].items()}
        assert load_checkpoint(resume_out / "last.safetensors")[1]["train"]["step"] == 60
        assert set(model) == set(best) and all(np.array_equal(model[k], best[k]) for k in best)
        assert not all(np.array_equal(model[k], last[k]) for k in last)


def test_forecast_plot_without_matplotlib_says_so(tmp_path, capsys, monkeypatch):
    import sys

    from rnnkit.cli import main

    for mod in ("matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, mod, None)  # makes the import fail
    out = tmp_path / "run"
    assert main(["train", "forecast", "--window", "6", "--hidden", "4", "--series-length", "300", "--steps", "2",
                 "--eval-every", "1", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "forecast plot: not written (matplotlib is not installed" in text and not (out / "forecast.png").exists()
    assert "loss curve: not plotted (matplotlib is not installed" in text and not (out / "loss.png").exists()
