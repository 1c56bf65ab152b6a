"""Training with a parameter average (--ema): bit-identical resume, evaluations and checkpoints of the average."""
import dataclasses

import numpy as np

from rnnkit.io.checkpoint import load_checkpoint
from rnnkit.tasks.charlm import CharLM
from rnnkit.train import Trainer, TrainConfig, read_metrics

from test_train import TINY, Regression, tiny_text


def test_resume_with_an_average_is_bit_identical(tmp_path):
    text = tiny_text()
    cfg = dataclasses.replace(TINY, cell="gru")
    N = 30
    train = TrainConfig(steps=2 * N, eval_every=12, progress=False, clip=1.0, seed=5, ema=0.9)
    straight = CharLM(cfg, text)
    whole = Trainer(straight, train)
    r = whole.fit()

    first = CharLM(cfg, text)
    res_a = Trainer(first, train, out_dir=tmp_path).fit(until=N)
    resumed = Trainer.resume(tmp_path / "last.safetensors", CharLM, config=train)
    resumed.task.attach_text(text)
    res_b = resumed.fit()
    assert res_a.losses + res_b.losses == r.losses  # the raw parameters went on exactly
    assert [e["val_loss"] for e in res_a.evals + res_b.evals] == [e["val_loss"] for e in r.evals]
    assert whole.average.n == resumed.average.n == 2 * N
    for k, p in straight.model.params.items():  # after training the model is the average, on both sides
        assert np.array_equal(p, resumed.task.model.params[k]), f"average {k}"
        assert np.array_equal(whole.average.other[k], resumed.average.other[k]), f"raw {k}"


def test_evaluations_and_checkpoints_are_the_average(tmp_path):
    task = Regression()
    tr = Trainer(task, TrainConfig(steps=40, lr=0.05, eval_every=10, progress=False, ema=0.8), out_dir=tmp_path)
    r = tr.fit()
    average = tr.average
    assert average.averaged_in and average.n == 40
    params = task.model.params
    raw = average.other
    assert not all(np.array_equal(params[k], raw[k]) for k in params)  # the two differ
    assert r.evals[-1]["val_loss"] == task.evaluate()["loss"]  # the last evaluation was of the average
    arrays, meta = load_checkpoint(tmp_path / "last.safetensors")
    for k in params:
        assert np.array_equal(arrays[f"task/{k}"], params[k]), f"task/{k}: the average"
        assert np.array_equal(arrays[f"average/{k}"], raw[k]), f"average/{k}: the raw parameters"
    assert meta["train"]["average"] == {"decay": 0.8, "n": 40, "averaged_in": True}
    logged = [x["val_loss"] for x in read_metrics(tmp_path / "metrics.jsonl") if "val_loss" in x]
    assert logged == [e["val_loss"] for e in r.evals]

    # the same run without the average ends at the raw parameters: the average changed what was evaluated
    plain = Regression()
    Trainer(plain, TrainConfig(steps=40, lr=0.05, eval_every=10, progress=False)).fit()
    for k in params:
        assert np.array_equal(plain.model.params[k], raw[k]), f"{k}: the optimizer stepped the raw parameters"

    # resumed with --ema 0: the raw parameters back in the model, no more averaging
    back = Trainer.resume(tmp_path / "last.safetensors", Regression,
                          config=TrainConfig(steps=45, lr=0.05, eval_every=10, progress=False))
    assert back.average is None
    for k in params:
        assert np.array_equal(back.task.model.params[k], raw[k]), f"{k} after resuming without --ema"
    back.fit()
