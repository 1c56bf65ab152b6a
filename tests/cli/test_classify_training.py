"""rnnkit train classify: the dropout flags (reach the model, training only, bit-identical resume) and
the defaults scaled with the corpus (epochs, an evaluation per epoch, early stopping)."""
import math
import re

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.io.checkpoint import load_checkpoint
from rnnkit.tasks.classify import EPOCHS, PATIENCE, ClassifyTask, ClassifyTaskConfig

RATES = dict(dropout=0.3, input_dropout=0.2, recurrent_dropout=0.25, weight_dropout=0.2, emb_dropout=0.1)
RATE_FLAGS = [a for k, v in RATES.items() for a in (f"--{k.replace('_', '-')}", str(v))]
TINY = ["--hidden", "8", "--emb", "6", "--batch", "8", "--no-progress", "--layers", "2"]


@pytest.fixture
def tsv(tmp_path):
    rng = np.random.default_rng(0)
    stems = {"vowels": "aeiou", "digits": "0123456789", "symbols": "+-*/=<>"}
    p = tmp_path / "data.tsv"
    p.write_text("".join(f"{label}\t{''.join(rng.choice(list(chars), rng.integers(3, 9)))}\n"
                         for label, chars in stems.items() for _ in range(40)))
    return p


def test_rates_reach_the_model_and_masks_come_from_the_trainer_rng(tsv):
    task = ClassifyTask(ClassifyTaskConfig(data=str(tsv), hidden=8, emb=6, batch=8, layers=2, **RATES))
    r = task.model.encoder.rates
    assert (r.dropout, r.input_dropout, r.recurrent_dropout, r.weight_dropout) == (0.3, 0.2, 0.25, 0.2)
    assert task.model.embedding.dropout == 0.1
    plain = ClassifyTask(ClassifyTaskConfig(data=str(tsv), hidden=8, emb=6, batch=8, layers=2))
    ev = plain.evaluate("val")
    assert task.evaluate("val") == ev, "evaluation runs without dropout"

    def step(t, seed):
        t.model.zero_grad()
        batch, carry = t.train_batch(np.random.default_rng(seed), None)
        return t.loss_and_backward(batch, carry)[0]

    assert step(task, 5) == step(task, 5), "masks: not from the Trainer's generator"
    assert step(task, 5) != step(plain, 5), "training loss: no dropout applied"
    assert task.evaluate("val") == ev, "evaluation after training steps: dropout left on"


def test_defaults_scale_with_the_corpus(tsv, tmp_path, capsys):
    task = ClassifyTask(ClassifyTaskConfig(data=str(tsv), batch=8, epochs=3))
    t = task.scaled_train_config()
    assert task.sizes["train"] == 96 and task.steps_per_epoch() == 12
    assert (t.steps, t.eval_every, t.patience) == (36, 12, PATIENCE), t
    assert ClassifyTaskConfig().epochs == EPOCHS
    out = tmp_path / "run"
    assert main(["train", "classify", "--data", str(tsv), *TINY, "--epochs", "2", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert ("24 steps (2 epochs of 12 steps), evaluation every 12 steps, early stopping after 5 without a better "
            "val accuracy") in stdout, stdout
    assert re.search(r"stopped at step 24 \(steps\)", stdout), stdout
    assert "test split of the best checkpoint" in stdout
    _, meta = load_checkpoint(out / "last.safetensors")
    assert meta["train"]["step"] == 24
    assert main(["train", "classify", "--data", str(tsv), *TINY, "--steps", "5", "--patience", "0",
                 "--out", str(tmp_path / "given")]) == 0
    assert "5 steps (0.417 epochs of 12 steps), evaluation every 12 steps, no early stopping" in \
        capsys.readouterr().out


@pytest.mark.slow
def test_early_stopping_ends_a_run_that_stops_improving(tsv, tmp_path, capsys):
    """A high learning rate for many epochs: the val loss stops improving and patience ends the run."""
    assert main(["train", "classify", "--data", str(tsv), *TINY, "--epochs", "200", "--lr", "0.05",
                 "--patience", "2", "--out", str(tmp_path / "run")]) == 0
    stdout = capsys.readouterr().out
    m = re.search(r"stopped at step (\d+) \(([^)]*)\)", stdout)
    assert m and int(m.group(1)) < 2400 and m.group(2) == "early stopping", stdout
    best = re.search(r"best checkpoint \(\S+, val accuracy (\d+\.\d+) %\)", stdout)
    accs = [float(a) for a in re.findall(r"val loss \S+  accuracy (\d+\.\d+) %", stdout)]
    assert best and float(best.group(1)) == max(accs), (best, accs)


@pytest.mark.slow
def test_resume_with_dropout_continues_bit_identically(tsv, tmp_path, capsys):
    flags = ["--data", str(tsv), *TINY, *RATE_FLAGS, "--eval-every", "3"]
    assert main(["train", "classify", *flags, "--steps", "6", "--out", str(tmp_path / "straight")]) == 0
    assert main(["train", "classify", *flags, "--steps", "3", "--out", str(tmp_path / "split")]) == 0
    ck = str(tmp_path / "split" / "last.safetensors")
    assert main(["train", "classify", "--resume", ck, "--steps", "6", "--no-progress"]) == 0
    capsys.readouterr()
    a, meta = load_checkpoint(tmp_path / "straight" / "last.safetensors", kind="classify")
    b, _ = load_checkpoint(ck, kind="classify")
    assert {k: meta["task"]["config"][k] for k in RATES} == RATES
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), f"{k} differs between 6 straight steps and 3 + resume 3"
    assert math.isfinite(float(np.sum(a[next(iter(a))])))
