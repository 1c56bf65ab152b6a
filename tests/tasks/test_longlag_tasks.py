"""Long-lag generators (adding problem, copy task) and their task classes."""
import math
import os

import numpy as np
import pytest

from rnnkit.data.longlag import adding_batch, adding_correct, copy_batch, copy_baseline, one_hot


@pytest.mark.parametrize("T", [11, 20, 50, 100])
def test_adding_layout_matches_hochreiter_schmidhuber(T):
    b = adding_batch(np.random.default_rng(T), T, 3000, dtype=np.float64)
    x, L, y, pos = b
    B = len(L)
    assert x.shape == (L.max(), B, 2) and L.dtype == np.int64
    assert L.min() == T and L.max() == T + T // 10  # both ends of the length range occur
    rows = np.arange(B)
    valid = np.arange(x.shape[0])[:, None] < L[None, :]
    vals, marks = x[..., 0], x[..., 1]
    assert np.all(x[~valid] == 0)  # padding
    assert np.all(np.abs(vals[valid]) <= 1) and vals[valid].std() > 0.5  # U[-1,1]: std 0.577
    # exactly two markers equal to 1, at the recorded positions, distinct
    assert np.all((marks == 1).sum(axis=0) == 2)
    assert np.all(marks[pos[:, 0], rows] == 1) and np.all(marks[pos[:, 1], rows] == 1)
    assert np.all(pos[:, 0] != pos[:, 1])
    assert pos[:, 0].min() == 0 and pos[:, 0].max() == 9
    assert pos[:, 1].min() == 0 and pos[:, 1].max() == T // 2 - 2
    # the other markers: -1 at the first (unless marked) and last pair, 0 elsewhere
    first_marked = (pos == 0).any(axis=1)
    assert np.all(marks[0, ~first_marked] == -1)
    assert np.all(marks[L - 1, rows] == -1)
    other = valid.copy()
    other[0] = False
    other[L - 1, rows] = False
    other[pos[:, 0], rows] = False
    other[pos[:, 1], rows] = False
    assert np.all(marks[other] == 0)
    # a marked first pair has value 0 (the paper's rule); target formula
    assert first_marked.any() and np.all(vals[0, first_marked] == 0)
    assert np.array_equal(y, 0.5 + (vals[pos[:, 0], rows] + vals[pos[:, 1], rows]) / 4)
    assert 0 <= y.min() and y.max() <= 1


def test_adding_second_marker_uniform_and_reproducible():
    a = adding_batch(np.random.default_rng(7), 20, 20000)
    b = adding_batch(np.random.default_rng(7), 20, 20000)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    counts = np.bincount(a.positions[:, 1], minlength=9)
    assert len(counts) == 9  # positions 0..T/2-2 = 0..8
    assert counts.min() > 0.85 * counts.mean() and counts.max() < 1.15 * counts.mean()


def test_adding_correct_threshold():
    t = np.array([0.5, 0.5, 0.5])
    assert adding_correct(np.array([0.539, 0.461, 0.541]), t).tolist() == [True, True, False]
    with pytest.raises(ValueError, match="expected shape"):
        adding_correct(np.zeros(2), t)


def test_adding_rejects_bad_arguments():
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        adding_batch(0, 20, 4)
    with pytest.raises(ValueError, match="T: expected an integer >= 11"):
        adding_batch(np.random.default_rng(0), 10, 4)


def test_copy_layout_and_baseline():
    T, B = 7, 500
    ids, tgt = copy_batch(np.random.default_rng(0), T, B)
    assert ids.shape == tgt.shape == (T + 20, B)
    assert ids[:10].min() == 1 and ids[:10].max() == 8
    assert np.all(ids[10 : 10 + T - 1] == 0) and np.all(ids[10 + T - 1] == 9) and np.all(ids[10 + T :] == 0)
    assert np.all(tgt[: T + 10] == 0) and np.array_equal(tgt[T + 10 :], ids[:10])
    assert copy_baseline(100) == pytest.approx(10 * math.log(8) / 120)
    # the baseline is the loss of the memoryless strategy, computed with the real loss function
    from rnnkit.nn.losses import softmax_cross_entropy
    p = np.zeros((T + 20, B, 10))
    p[: T + 10, :, 0] = 1.0
    p[T + 10 :, :, 1:9] = 1 / 8
    logits = np.log(np.maximum(p, 1e-300))
    loss, _ = softmax_cross_entropy(logits, tgt)
    assert loss == pytest.approx(copy_baseline(T), rel=1e-9)
    oh = one_hot(ids, 10)
    assert oh.shape == (T + 20, B, 10) and np.array_equal(oh.argmax(-1), ids) and np.all(oh.sum(-1) == 1)


# ----------------------------------------------------------------------------- task classes
from conftest import needs_torch, torch_layer_classes  # noqa: E402
from rnnkit.tasks.longlag import AddingConfig, AddingTask, CopyConfig, CopyTask  # noqa: E402
from rnnkit.models.readout import Readout  # noqa: E402
from rnnkit.train import load_task, save_task  # noqa: E402


def _torch_model(model: Readout, cell: str):
    torch = needs_torch()
    cls = torch_layer_classes(torch)[cell]
    r, h = model.rnn, model.head
    t_rnn = cls(r.input_size, r.hidden_size, num_layers=r.num_layers)
    t_head = torch.nn.Linear(h.in_features, h.out_features)
    with torch.no_grad():
        for k, p in t_rnn.named_parameters():
            p.copy_(torch.from_numpy(r.params[k]))
        t_head.weight.copy_(torch.from_numpy(h.params["weight"]))
        t_head.bias.copy_(torch.from_numpy(h.params["bias"]))
    return t_rnn, t_head


def _grads(task, t_rnn, t_head):
    ours = task.model.grads
    theirs = {f"rnn.{k}": p.grad for k, p in t_rnn.named_parameters()}
    theirs.update({"head.weight": t_head.weight.grad, "head.bias": t_head.bias.grad})
    assert sorted(ours) == sorted(theirs)
    return ours, theirs


@pytest.mark.parametrize("cell,layers", [("lstm", 1), ("gru", 2), ("rnn", 1)])
def test_adding_task_loss_and_gradients_match_torch(cell, layers):
    torch = needs_torch()
    task = AddingTask(AddingConfig(T=12, cell=cell, hidden=5, layers=layers, batch=6, seed=3))
    batch, carry = task.train_batch(np.random.default_rng(0))
    assert carry is None
    task.model.zero_grad()
    loss, carry, count = task.loss_and_backward(batch)
    assert carry is None and count == 6
    t_rnn, t_head = _torch_model(task.model, cell)
    out, _ = t_rnn(torch.from_numpy(batch.x))  # (T, B, H); read each row at its last valid step
    h_last = out[torch.from_numpy(batch.lengths - 1), torch.arange(6)]
    o = torch.sigmoid(t_head(h_last))[:, 0]
    t_loss = ((o - torch.from_numpy(batch.target)) ** 2).mean()
    t_loss.backward()
    assert loss == pytest.approx(t_loss.item(), rel=1e-5)
    ours, theirs = _grads(task, t_rnn, t_head)
    for k in ours:
        np.testing.assert_allclose(ours[k], theirs[k].numpy(), rtol=1e-4, atol=1e-6, err_msg=k)
    # predict gives the same outputs as the training forward
    np.testing.assert_allclose(task.predict(batch.x, batch.lengths), o.detach().numpy(), rtol=1e-5, atol=1e-7)


def test_copy_task_loss_and_gradients_match_torch():
    torch = needs_torch()
    task = CopyTask(CopyConfig(T=4, hidden=6, batch=3, seed=1))
    batch, _ = task.train_batch(np.random.default_rng(0))
    task.model.zero_grad()
    loss, _, count = task.loss_and_backward(batch)
    assert count == 3
    t_rnn, t_head = _torch_model(task.model, "lstm")
    x = torch.nn.functional.one_hot(torch.from_numpy(batch.ids), 10).float()
    logits = t_head(t_rnn(x)[0])
    t_loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 10), torch.from_numpy(batch.target).reshape(-1))
    t_loss.backward()
    assert loss == pytest.approx(t_loss.item(), rel=1e-5)
    ours, theirs = _grads(task, t_rnn, t_head)
    for k in ours:
        np.testing.assert_allclose(ours[k], theirs[k].numpy(), rtol=1e-4, atol=1e-6, err_msg=k)


def test_forget_bias_is_applied():
    H = 4
    lstm = AddingTask(AddingConfig(hidden=H, forget_bias=3.0)).model.rnn.params
    assert np.all(lstm["bias_ih_l0"][H : 2 * H] == 3.0) and np.all(lstm["bias_hh_l0"][H : 2 * H] == 0.0)
    AddingTask(AddingConfig(hidden=H, cell="rnn", forget_bias=3.0))  # no forget gate: ignored, no error


def test_config_validation():
    with pytest.raises(ValueError, match="cell: expected one of rnn, lstm, gru, layernorm_lstm, got 'tanh'"):
        AddingConfig(cell="tanh")
    with pytest.raises(ValueError, match="batch: expected a positive integer, got 0"):
        AddingConfig(batch=0)
    with pytest.raises(TypeError, match="config: expected AddingConfig, got CopyConfig"):
        AddingTask(CopyConfig())


def test_evaluation_sets_fixed_and_independent_of_training():
    task = AddingTask(AddingConfig(T=12, hidden=4, seed=5))
    a = task.evaluate("test")
    assert a == AddingTask(AddingConfig(T=12, hidden=4, seed=5)).evaluate("test")
    assert a["correct"] + a["wrong"] == 2560
    val, test = task._eval_set("val"), task._eval_set("test")
    assert not np.array_equal(val.target, test.target)
    ev = CopyTask(CopyConfig(T=3, hidden=4, eval_size=50)).evaluate("val")
    assert ev["baseline"] == pytest.approx(10 * math.log(8) / 23) and 0 <= ev["recall_accuracy"] <= 1


def test_save_load_round_trip(tmp_path):
    for task in (AddingTask(AddingConfig(T=12, hidden=4, seed=2)), CopyTask(CopyConfig(T=3, hidden=4, seed=2))):
        path = tmp_path / f"{task.kind}.safetensors"
        save_task(path, task)
        back = load_task(path, type(task))
        assert back.config == task.config
        if task.kind == "adding":
            b = task._eval_set("val")
            assert np.array_equal(back.predict(b.x, b.lengths), task.predict(b.x, b.lengths))
        else:
            b = task._eval_set("val")
            assert np.array_equal(back.predict(b.ids), task.predict(b.ids))
    from rnnkit.errors import CheckpointError
    with pytest.raises(CheckpointError, match="copy"):
        load_task(tmp_path / "copy.safetensors", AddingTask)


def test_fit_learns_and_stops_when_solved(tmp_path):
    # a real short run: the val MSE falls below the plateau of predicting the mean (1/24)
    task = AddingTask(AddingConfig(T=11, hidden=8, batch=20))
    before = task.evaluate("val")["loss"]
    seen = []
    train = task.train_config(max_sequences=1600, eval_every=800, lr=1e-2)
    res = task.fit(out_dir=tmp_path, train=train, progress=False, on_eval=lambda tr, rec: seen.append((tr.step * 20, rec["val_loss"])))
    assert [n for n, _ in seen] == [800, 1600] and res.sequences == 1600 and res.stop_reason == "max sequences"
    assert seen[-1][1] < min(before, 1 / 24) and res.test["correct"] + res.test["wrong"] == 2560
    assert (tmp_path / "last.safetensors").exists()

    class AlwaysSolved(AddingTask):  # the stop rule: fit ends at the first evaluation that is solved
        def solved(self, metrics):
            return True

    solver = AlwaysSolved(AddingConfig(T=11, hidden=4, batch=10))
    res = solver.fit(train=solver.train_config(max_sequences=10_000, eval_every=100), progress=False)
    assert res.stop_reason == "solved" and res.sequences == 100 and res.steps == 10


@pytest.mark.slow
def test_cli_train_adding_copy_resume_eval(tmp_path, capsys):
    from rnnkit.cli import main

    out = tmp_path / "add"
    args = ["train", "adding", "--T", "11", "--hidden", "4", "--batch", "10", "--max-sequences", "200",
            "--eval-every", "100", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "       100 sequences  val mse" in text and "/2560" in text
    assert "not solved (max sequences) after 200 training sequences (20 steps" in text and "test: mse" in text
    assert main(args) == 2 and "holds an earlier run" in capsys.readouterr().err
    # resume with a larger budget continues from 200 sequences
    import json
    from rnnkit.io.checkpoint import load_checkpoint
    _, meta = load_checkpoint(out / "last.safetensors")
    assert meta["train"]["step"] == 20 and meta["task"]["config"]["T"] == 11
    assert main(["train", "adding", "--resume", str(out / "last.safetensors"), "--no-progress"]) == 0
    assert "resuming adding from" in capsys.readouterr().out
    assert main(["eval", str(out / "last.safetensors"), "--split", "test"]) == 0
    assert "adding T=11, test set: mse" in capsys.readouterr().out
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["event"] == "start"
    assert main(["train", "copy", "--T", "3", "--hidden", "4", "--batch", "5", "--max-sequences", "10",
                 "--eval-every", "10", "--out", str(tmp_path / "copy"), "--no-progress"]) == 0
    assert "memoryless baseline 0.9041" in capsys.readouterr().out  # 10 ln 8 / 23
    assert main(["train", "adding", "--T", "5", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "T: expected an integer >= 11 for the adding problem, got 5" in capsys.readouterr().err


def test_non_finite_lr_and_clip_are_clear_errors(tmp_path, capsys):
    # lr and clip are training settings: the rule (finite, > 0 for Adam with clipping) is the
    # TrainConfig path's (task.train_config) and the CLI's, no longer the task config's
    for name in ("lr", "clip"):
        for bad in (math.inf, math.nan, 0.0, -1.0):
            with pytest.raises(ValueError, match=rf"{name}: expected a finite number > 0, got {bad!r}"):
                AddingTask(AddingConfig(T=11, hidden=2)).train_config(**{name: bad})
            with pytest.raises(ValueError, match=rf"{name}: expected a finite number > 0"):
                CopyTask(CopyConfig(T=2, hidden=2)).train_config(**{name: bad})
        with pytest.raises(TypeError, match=name):
            AddingConfig(**{name: 1.0})  # not a task setting any more
    from rnnkit.cli import main

    for task in ("adding", "copy"):
        for flag, bad in (("--lr", "inf"), ("--clip", "inf"), ("--lr", "nan"), ("--clip", "0")):
            rc = main(["train", task, flag, bad, "--no-progress", "--out", str(tmp_path / task)])
            err = capsys.readouterr().err
            assert rc == 2 and "Traceback" not in err, err
            assert f"argument {flag}: expected a finite number > 0, got '{bad}'" in err, err
    assert not os.listdir(tmp_path)


def test_non_finite_forget_bias_is_a_clear_error(tmp_path, capsys):
    for bad in (math.nan, math.inf, -math.inf):
        for cls in (AddingConfig, CopyConfig):
            with pytest.raises(ValueError, match=rf"forget_bias: expected a finite number or None, got {bad!r}"):
                cls(forget_bias=bad)
    assert AddingConfig(forget_bias=None).forget_bias is None and CopyConfig(forget_bias=-2).forget_bias == -2
    from rnnkit.cli import main

    for task in ("adding", "copy"):
        for bad in ("nan", "inf", "x"):
            rc = main(["train", task, "--forget-bias", bad, "--no-progress", "--out", str(tmp_path / task)])
            err = capsys.readouterr().err
            assert rc == 2 and "Traceback" not in err, err
            assert f"argument --forget-bias: expected a finite number or 'none', got '{bad}'" in err, err
    assert not os.listdir(tmp_path)


def test_solved_run_ends_like_any_run(tmp_path):
    # a solved run stops through Trainer.fit's on_eval rule: its closing code runs (stop event, last checkpoint)
    import json

    from rnnkit.io.checkpoint import load_checkpoint
    import rnnkit.tasks.longlag as longlag

    class AlwaysSolved(AddingTask):
        def solved(self, metrics):
            return True

    solver = AlwaysSolved(AddingConfig(T=11, hidden=4, batch=10))
    res = solver.fit(out_dir=tmp_path, train=solver.train_config(max_sequences=10_000, eval_every=100),
                     progress=False)
    assert res.stop_reason == "solved" and res.solved and res.sequences == 100 and res.steps == 10
    recs = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert recs[-1]["event"] == "stop" and recs[-1]["step"] == 10 and recs[-1]["reason"] == "on_eval"
    assert recs[-2]["step"] == 10 and "val_loss" in recs[-2]
    assert load_checkpoint(tmp_path / "last.safetensors")[1]["train"]["step"] == 10
    assert res.checkpoint == str(tmp_path / "last.safetensors")
    assert not hasattr(longlag, "_Solved")


@pytest.mark.slow
def test_cli_resume_applies_training_flags_and_refuses_model_changes(tmp_path, capsys):
    from rnnkit.cli import main
    from rnnkit.io.checkpoint import load_checkpoint

    out = tmp_path / "add"
    assert main(["train", "adding", "--T", "11", "--hidden", "4", "--batch", "10", "--max-sequences", "100",
                 "--eval-every", "50", "--out", str(out), "--no-progress"]) == 0
    ck = str(out / "last.safetensors")
    capsys.readouterr()
    for flags, msg in ((["--T", "12"], "--T 12: differs from the checkpoint's 11"),
                       (["--hidden", "5"], "--hidden 5: differs from the checkpoint's 4"),
                       (["--batch", "20", "--max-sequences", "300"], "--batch 20: differs from the checkpoint's 10"),
                       (["--cell", "gru"], "--cell gru: differs from the checkpoint's lstm"),
                       (["--forget-bias", "none"], "--forget-bias None: differs from the checkpoint's 3.0"),
                       (["--seed", "1"], "--seed 1: differs from the checkpoint's 0")):
        rc = main(["train", "adding", "--resume", ck, *flags, "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 2 and err.strip() == f"rnnkit: error: {msg}; model settings come from the checkpoint when resuming"
    assert load_checkpoint(ck)[1]["train"]["step"] == 10
    # flags equal to the checkpoint's are fine; training flags are applied and recorded
    assert main(["train", "adding", "--resume", ck, "--T", "11", "--max-sequences", "300", "--lr", "0.005",
                 "--clip", "2", "--eval-every", "100", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "resuming adding from" in text and "after 300 training sequences (30 steps" in text
    assert "       200 sequences  val" in text and "       300 sequences  val" in text and " 150 sequences" not in text
    _, meta = load_checkpoint(ck)
    assert meta["train"]["step"] == 30
    assert meta["task"]["config"]["T"] == 11 and not {"max_sequences", "lr", "clip", "eval_every"} & set(
        meta["task"]["config"])  # training settings live in the TrainConfig only (issue 10)
    assert {k: meta["train"]["config"][k] for k in ("steps", "lr", "clip", "eval_every")} == \
        {"steps": 30, "lr": 0.005, "clip": 2.0, "eval_every": 10}
    # a resume without flags keeps the (new) settings: nothing left to do
    assert main(["train", "adding", "--resume", ck, "--no-progress"]) == 0
    assert "after 300 training sequences (30 steps" in capsys.readouterr().out
    # copy too
    cp = tmp_path / "copy"
    assert main(["train", "copy", "--T", "3", "--hidden", "4", "--batch", "5", "--max-sequences", "10",
                 "--eval-every", "10", "--out", str(cp), "--no-progress"]) == 0
    assert main(["train", "copy", "--resume", str(cp / "last.safetensors"), "--max-sequences", "20",
                 "--no-progress"]) == 0
    assert load_checkpoint(cp / "last.safetensors")[1]["train"]["step"] == 4
    capsys.readouterr()
    rc = main(["train", "copy", "--resume", str(cp / "last.safetensors"), "--T", "4", "--no-progress"])
    assert rc == 2 and "--T 4: differs from the checkpoint's 3" in capsys.readouterr().err


@pytest.mark.slow
def test_training_defaults_come_from_the_tasks_train_config(tmp_path, capsys):
    """Issue 10: the long-lag training defaults are the task's TrainConfig (train_defaults), the budgets
    kept in sequences for any batch; a checkpoint of rnnkit <= 0.2 holding lr etc. in its task
    config resumes with them read into the TrainConfig (they were authoritative there)."""
    import shutil

    from rnnkit.cli import main
    from rnnkit.io.checkpoint import load_checkpoint, save_checkpoint

    t = AddingTask(AddingConfig(T=11, hidden=2))
    assert t.train_config() == AddingTask.train_defaults  # batch 20: 1,000,000 sequences, eval every 10,000
    t10 = AddingTask(AddingConfig(T=11, hidden=2, batch=10, seed=4)).train_config()
    assert (t10.steps, t10.eval_every, t10.log_every, t10.lr, t10.clip, t10.seed) == (100_000, 1_000, 50, 3e-3, 1.0, 4)
    assert CopyTask(CopyConfig(T=2, hidden=2)).train_config().lr == 1e-2
    fixture = os.path.join(os.path.dirname(__file__), "..", "fixtures", "v0.1.0", "adding", "last.safetensors")
    arrays, meta = load_checkpoint(fixture)
    assert meta["task"]["config"]["lr"] == meta["train"]["config"]["lr"] == 0.003
    meta["task"]["config"].update(lr=0.02, max_sequences=40, eval_every=8)  # 0.1.0 resumed with these
    run = tmp_path / "legacy"
    run.mkdir()
    save_checkpoint(run / "last.safetensors", arrays, meta)
    assert main(["train", "adding", "--resume", str(run / "last.safetensors"), "--no-progress"]) == 0
    assert "Adam lr 0.02, clip 1.0" in capsys.readouterr().out
    _, new = load_checkpoint(run / "last.safetensors")
    assert {k: new["train"]["config"][k] for k in ("lr", "steps", "eval_every", "log_every")} == \
        {"lr": 0.02, "steps": 10, "eval_every": 2, "log_every": 2} and new["train"]["step"] == 10
    assert "lr" not in new["task"]["config"]  # rewritten in the new layout
    # a flag still overrides the legacy value; a bad legacy value is one line
    shutil.rmtree(run)
    run.mkdir()
    save_checkpoint(run / "last.safetensors", arrays, meta)
    assert main(["train", "adding", "--resume", str(run / "last.safetensors"), "--lr", "0.001",
                 "--max-sequences", "24", "--no-progress"]) == 0
    assert "Adam lr 0.001" in capsys.readouterr().out
    meta["task"]["config"]["lr"] = -1.0
    save_checkpoint(run / "bad.safetensors", arrays, meta)
    rc = main(["eval", str(run / "bad.safetensors")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "lr: expected a finite number > 0, got -1.0" in err, err
