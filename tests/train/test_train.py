"""Trainer: bit-identical resume (char-LM with carried state), divergence, early stopping, Ctrl-C, logs."""
import dataclasses
import json
import math
import os
import signal

import numpy as np
import pytest

from rnnkit import threads
from rnnkit.errors import CheckpointError, TrainingDiverged
from rnnkit.io.checkpoint import load_checkpoint
from rnnkit.nn.losses import mse
from rnnkit.nn.blocks import Linear
from rnnkit.tasks.charlm import CharLM, CharLMConfig
from rnnkit.train import Trainer, TrainConfig, read_metrics, save_task


def tiny_text(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    words = ["the ", "cat ", "sat ", "on ", "a ", "mat. ", "dog ", "ran\n"]
    return "".join(words[i] for i in rng.integers(0, len(words), n))[:n]


TINY = CharLMConfig(cell="lstm", layers=2, hidden=8, emb=4, batch=3, bptt=7, seed=1)


@pytest.mark.parametrize("cell,opt", [("lstm", dict(optimizer="adam", schedule="cosine", warmup=3)),
                                      ("gru", dict(optimizer="sgd", lr=0.5, momentum=0.9, nesterov=True))])
def test_resume_is_bit_identical(tmp_path, cell, opt):
    text = tiny_text()
    cfg = dataclasses.replace(TINY, cell=cell)
    # windows per epoch: L = (1349 - 1)//3 = 449 -> 64 windows; 2N = 80 steps crosses an epoch wrap
    N = 40
    base = dict(eval_every=15, progress=False, clip=1.0, seed=5, **opt)
    straight = CharLM(cfg, text)
    r = Trainer(straight, TrainConfig(steps=2 * N, **base)).fit()
    assert r.step == 2 * N and len(r.losses) == 2 * N

    first = CharLM(cfg, text)
    ra = Trainer(first, TrainConfig(steps=2 * N, **base), out_dir=tmp_path)
    res_a = ra.fit(until=N)  # stop halfway; the schedule stays that of 2N steps
    assert res_a.step == N and res_a.stop_reason == "until"
    del first, ra
    resumed = Trainer.resume(tmp_path / "last.safetensors", CharLM,
                             config=TrainConfig(steps=2 * N, **base))
    resumed.task.attach_text(text)
    res_b = resumed.fit()
    assert res_a.losses + res_b.losses == r.losses  # exact equality at every step
    for k, p in straight.model.params.items():
        assert np.array_equal(p, resumed.task.model.params[k]), k
    assert r.losses[-1] < r.losses[0]


class Regression:
    """A tiny i.i.d. Task: y = x . w_true, Linear model, MSE.  Knobs to inject NaN / SIGINT / val losses."""

    kind = "toy"
    count_unit = "seqs"

    def __init__(self, nan_at=None, sigint_at=None, val_losses=None, signum=signal.SIGINT):
        self.config = CharLMConfig()  # any frozen dataclass
        self.model = Linear(3, 1, dtype=np.float64, seed=0)
        self.w = np.array([[1.0, -2.0, 0.5]])
        self.calls, self.nan_at, self.sigint_at, self.val_losses = 0, nan_at, sigint_at, val_losses
        self.signum = signum

    def train_batch(self, rng, carry):
        x = rng.standard_normal((16, 3))
        return (x, x @ self.w.T), None

    def loss_and_backward(self, batch, carry):
        self.calls += 1
        x, y = batch
        loss, d = mse(self.model(x), y)
        self.model.backward(d)
        if self.calls == self.sigint_at:
            os.kill(os.getpid(), self.signum)
        if self.calls == self.nan_at:
            loss = float("nan")
        return loss, None, len(x)

    def evaluate(self, split="val"):
        if self.val_losses is not None:
            return {"loss": self.val_losses.pop(0)}
        x = np.random.default_rng(123).standard_normal((64, 3))
        return {"loss": mse(self.model(x), x @ self.w.T)[0]}

    def state_arrays(self):
        return dict(self.model.params)

    def meta(self):
        return {}

    @classmethod
    def from_checkpoint(cls, arrays, meta):
        t = cls()
        t.model.load_params(arrays)
        return t


def test_iid_task_learns_and_logs(tmp_path):
    task = Regression()
    r = Trainer(task, TrainConfig(steps=60, lr=0.05, eval_every=20, log_every=10, progress=False),
                out_dir=tmp_path).fit()
    assert r.stop_reason == "steps" and r.evals[-1]["val_loss"] < 1e-2 * r.evals[0]["val_loss"]
    recs = read_metrics(tmp_path / "metrics.jsonl")
    steps = [x for x in recs if "loss" in x and "event" not in x]
    assert [x["step"] for x in steps] == [10, 20, 30, 40, 50, 60]
    assert set(steps[0]) == {"step", "loss", "lr", "grad_norm", "seqs_per_s", "elapsed_s"}
    assert all(a["elapsed_s"] <= b["elapsed_s"] for a, b in zip(steps, steps[1:]))
    assert [x["step"] for x in recs if "val_loss" in x] == [20, 40, 60]
    assert steps[0]["loss"] == pytest.approx(np.mean(r.losses[:10]))
    _, meta = load_checkpoint(tmp_path / "last.safetensors", kind="toy")
    assert meta["train"]["step"] == 60 and os.path.exists(tmp_path / "best.safetensors")


def test_nonfinite_loss_stops_and_keeps_last_checkpoint(tmp_path):
    task = Regression(nan_at=25)
    tr = Trainer(task, TrainConfig(steps=50, eval_every=10, progress=False), out_dir=tmp_path)
    with pytest.raises(TrainingDiverged, match=r"non-finite loss \(nan\) at step 25.*last good checkpoint kept"):
        tr.fit()
    _, meta = load_checkpoint(tmp_path / "last.safetensors")
    assert meta["train"]["step"] == 20
    assert tr.step == 24  # the bad step was not applied
    assert read_metrics(tmp_path / "metrics.jsonl")[-1]["event"] == "diverged"


def test_early_stopping():
    task = Regression(val_losses=[1.0, 0.5, 0.6, 0.55, 0.7, 0.1])
    r = Trainer(task, TrainConfig(steps=100, eval_every=5, patience=3, progress=False)).fit()
    assert r.stop_reason == "early stopping" and r.step == 25 and r.best_val == 0.5


def test_on_eval_can_stop():
    seen = []
    r = Trainer(Regression(), TrainConfig(steps=100, eval_every=5, progress=False)).fit(
        on_eval=lambda tr, rec: seen.append(rec["step"]) or rec["step"] >= 15)
    assert r.stop_reason == "on_eval" and r.step == 15 and seen == [5, 10, 15]


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_stop_signal_saves_and_resumes(tmp_path, sig, code):
    """Ctrl-C, SIGTERM (kill, timeout, docker stop) and SIGHUP (a closed terminal) alike: the current
    step finishes, last.safetensors is written at it, the exit code is the shell's; resume is exact."""
    task = Regression(sigint_at=7, signum=sig)
    tr = Trainer(task, TrainConfig(steps=30, eval_every=0, progress=False), out_dir=tmp_path)
    before = signal.getsignal(sig)
    r = tr.fit()
    assert r.stop_reason == "interrupted" and r.step == 7 and r.exit_code == tr.exit_code == code
    assert signal.getsignal(sig) is before and read_metrics(tmp_path / "metrics.jsonl")[-1]["signal"] == \
        signal.Signals(sig).name
    _, meta = load_checkpoint(tmp_path / "last.safetensors")
    assert meta["train"]["step"] == 7
    again = Trainer.resume(tmp_path / "last.safetensors", Regression, out_dir=tmp_path)
    r2 = again.fit()
    assert r2.step == 30
    straight = Trainer(Regression(), TrainConfig(steps=30, eval_every=0, progress=False)).fit()
    assert r.losses + r2.losses == straight.losses  # rng state restored: same batches
    steps = [x["step"] for x in read_metrics(tmp_path / "metrics.jsonl") if x.get("event") == "resume"]
    assert steps == [7]


def test_time_limit_and_model_only_checkpoint(tmp_path):
    task = Regression()
    r = Trainer(task, TrainConfig(steps=10**9, time_limit=0.3, progress=False, eval_every=0),
                tmp_path / "run").fit()
    assert r.stop_reason == "time limit" and 0 < r.step < 10**9
    # stopped between evaluations: evaluated (and logged) where it stopped
    assert [e["step"] for e in r.evals] == [r.step]
    assert r.evals[0]["val_loss"] == task.evaluate("val")["loss"]
    logged = [m for m in read_metrics(tmp_path / "run" / "metrics.jsonl") if "val_loss" in m]
    assert [m["step"] for m in logged] == [r.step]
    save_task(tmp_path / "m.safetensors", Regression())
    with pytest.raises(CheckpointError, match="model only"):
        Trainer.resume(tmp_path / "m.safetensors", Regression)
    with pytest.raises(CheckpointError, match="holds a 'toy' model, expected a 'charlm'"):
        Trainer.resume(tmp_path / "m.safetensors", CharLM)


def test_train_config_validation():
    with pytest.raises(ValueError, match="optimizer: expected one of"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="steps: expected an integer >= 0, got -1"):
        TrainConfig(steps=-1)


def test_nesterov_without_momentum_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"--nesterov .*needs --momentum > 0"):
        TrainConfig(optimizer="sgd", nesterov=True)
    TrainConfig(optimizer="sgd", nesterov=True, momentum=0.9)
    from rnnkit.cli import main

    for task in (["charlm", "--max-chars", "20000"], ["forecast"]):
        rc = main(["train", *task, "--optimizer", "sgd", "--nesterov", "--steps", "1", "--no-progress",
                   "--out", str(tmp_path / task[0])])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("rnnkit: error: nesterov: --nesterov") and "--momentum" in err, err
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / task[0]).exists()


def test_resume_trims_the_log_atomically(tmp_path, monkeypatch):
    # resuming from an older checkpoint drops the log lines after it; metrics.jsonl is replaced
    # (temporary file + os.replace), never rewritten in place, so a failed trim keeps the old log
    import shutil

    import rnnkit.train as train

    tr = Trainer(Regression(), TrainConfig(steps=20, eval_every=5, log_every=5, progress=False), out_dir=tmp_path)
    tr.fit(until=10)
    shutil.copy(tmp_path / "last.safetensors", tmp_path / "step10.safetensors")
    tr.fit()
    log = tmp_path / "metrics.jsonl"
    before, ino = log.read_text(), os.stat(log).st_ino
    assert max(r["step"] for r in read_metrics(log)) == 20

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(train.os, "replace", fail)
    again = Trainer.resume(tmp_path / "step10.safetensors", Regression, out_dir=tmp_path)
    with pytest.raises(OSError, match="disk full"):
        again.fit()
    assert log.read_text() == before and sorted(os.listdir(tmp_path)) == [
        "best.safetensors", "last.safetensors", "metrics.jsonl", "step10.safetensors"]
    monkeypatch.undo()
    again = Trainer.resume(tmp_path / "step10.safetensors", Regression, out_dir=tmp_path)
    from rnnkit.train.log import trim_after

    trim_after(again.log_path, again.step)  # what fit() does first
    assert os.stat(log).st_ino != ino and max(r["step"] for r in read_metrics(log)) == 10
    assert log.read_text() == "".join(ln for ln in before.splitlines(keepends=True)
                                      if json.loads(ln).get("step", 0) <= 10)
    assert sorted(os.listdir(tmp_path)) == ["best.safetensors", "last.safetensors", "metrics.jsonl",
                                            "step10.safetensors"]


def test_evaluation_checkpoints_compute_the_state_once(tmp_path, monkeypatch):
    # an improving evaluation writes last and best from one state() call: identical files
    calls = []
    state = Trainer.state
    monkeypatch.setattr(Trainer, "state", lambda self: calls.append(self.step) or state(self))
    tr = Trainer(Regression(val_losses=[3.0, 2.0, 2.5]), TrainConfig(steps=15, eval_every=5, progress=False),
                 out_dir=tmp_path)
    tr.fit()
    assert calls == [5, 10, 15]  # improved at 5 and 10 (last + best), not at 15 (last only)
    assert load_checkpoint(tmp_path / "best.safetensors")[1]["train"]["step"] == 10
    tr.save(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    assert calls[-1] == 15 and len(calls) == 4
    assert _same_checkpoint(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    assert _same_checkpoint(tmp_path / "a.safetensors", tmp_path / "last.safetensors")


def _same_checkpoint(p, q):
    (a, am), (b, bm) = load_checkpoint(p), load_checkpoint(q)
    return am == bm and set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_charlm_save_with_trainer_is_the_training_checkpoint(tmp_path):
    lm = CharLM(TINY, tiny_text())
    lm.fit(steps=4, eval_every=0, progress=False)
    lm.save(tmp_path / "lm.safetensors")
    lm.trainer.save(tmp_path / "tr.safetensors")
    assert _same_checkpoint(tmp_path / "lm.safetensors", tmp_path / "tr.safetensors")
    assert load_checkpoint(tmp_path / "lm.safetensors")[1]["train"]["step"] == 4


@pytest.mark.parametrize("blas_threads", [1, 2, 0])
def test_training_runs_the_loops_on_the_blas_threads_cores(blas_threads):
    seen = []
    cfg = TrainConfig(steps=2, eval_every=1, log_every=0, progress=False, blas_threads=blas_threads)
    Trainer(Regression(), cfg).fit(on_eval=lambda tr, rec: seen.append(threads.usable_cores()))
    expect = min(blas_threads, threads.available_cores()) if blas_threads else threads.available_cores()
    assert seen == [expect, expect], f"cores while training with blas_threads={blas_threads}"
    assert threads.usable_cores() == threads.available_cores(), "the setting outlived the run"
