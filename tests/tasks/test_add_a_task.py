"""The worked example of docs/architecture.md ("Add a task") is true: the task below, copied
verbatim into the document (checked here), trains through the Trainer and through the generic
``rnnkit train`` handler, resumes exactly, and evaluates through ``rnnkit eval``."""
import os
import pathlib
import re

from rnnkit.io.checkpoint import load_checkpoint

# --- begin example (docs/architecture.md shows this block verbatim)
import dataclasses
from dataclasses import dataclass

import numpy as np

import rnnkit
from rnnkit.checks.fields import check_options, option
from rnnkit.checks.rules import POSITIVE_INT
from rnnkit.cli import TaskSpec
from rnnkit.nn.losses import mse
from rnnkit.module import Module
from rnnkit.train import TrainConfig, restore


@dataclass(frozen=True)
class SumConfig:
    """Model and data: T numbers drawn from U(-1, 1); predict their mean.  Each field declares its
    check and its flag (``--T``, ``--hidden``, ``--batch``); ``seed`` is set by ``--seed``."""

    T: int = option(6, "sequence length", rule=POSITIVE_INT, group="model")
    hidden: int = option(8, "hidden size", rule=POSITIVE_INT, group="model")
    batch: int = option(16, "sequences per batch", rule=POSITIVE_INT, group="model")
    seed: int = option(0, flag=False)

    def __post_init__(self):
        check_options(self)  # a bad value is one ValueError naming the field


class SumModel(Module):
    """GRU(1, hidden) -> Linear(hidden, 1) on the last step: x (T, B, 1) -> y (B, 1)."""

    def __init__(self, c: SumConfig):
        rng = np.random.default_rng(c.seed)
        self.rnn = rnnkit.GRU(1, c.hidden, seed=rng, dtype=np.float64)
        self.head = rnnkit.Linear(c.hidden, 1, seed=rng, dtype=np.float64)

    def forward(self, x):
        out, _ = self.rnn(x)
        self._out_shape = out.shape
        return self.head(out[-1])

    def backward(self, dy):
        d_out = np.zeros(self._out_shape)
        d_out[-1] = self.head.backward(dy)  # only the last step feeds the head
        self.rnn.backward(d_out)


class SumTask:
    """The Task contract of rnnkit.train.task, nothing else."""

    kind = "sum"
    count_unit = "seqs"

    def __init__(self, config: SumConfig = SumConfig()):
        self.config = config
        self.model = SumModel(config)

    def _draw(self, rng, n):
        x = rng.uniform(-1.0, 1.0, (self.config.T, n, 1))
        return x, x.mean(axis=0)  # (T, n, 1), (n, 1)

    def train_batch(self, rng, carry):
        return self._draw(rng, self.config.batch), None  # i.i.d. batches: no carry

    def loss_and_backward(self, batch, carry):
        x, y = batch
        loss, dy = mse(self.model.forward(x), y)
        self.model.backward(dy)  # gradients are added to model.grads
        return loss, None, len(y)

    def evaluate(self, split="val"):
        x, y = self._draw(np.random.default_rng([self.config.seed, 1 if split == "val" else 2]), 256)
        return {"loss": float(np.mean((self.model.forward(x) - y) ** 2))}

    def state_arrays(self):
        return dict(self.model.params)

    def meta(self):
        return {"config": dataclasses.asdict(self.config)}

    @classmethod
    def from_checkpoint(cls, arrays, meta):  # bad metadata or shapes: one CheckpointError
        return restore(cls, arrays, meta, lambda m: cls(SumConfig(**m["config"])))


class SumSpec(TaskSpec):
    """``rnnkit train sum [--T N] [--hidden N] [--batch N]`` + every training flag."""

    name, task_class, config_class = "sum", SumTask, SumConfig
    help = "predict the mean of a sequence"
    train_defaults = TrainConfig(steps=40, lr=1e-2, eval_every=20)
# --- end example

import pytest  # noqa: E402  (after the example, which the document shows verbatim)

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def test_the_document_shows_this_example_verbatim():
    src = pathlib.Path(__file__).read_text(encoding="utf-8")
    example = src.split("# --- begin example (docs/architecture.md shows this block verbatim)\n")[1]
    example = example.split("# --- end example\n")[0]
    assert example.strip() in DOC.read_text(encoding="utf-8"), "docs/architecture.md: the 'Add a task' code differs"


def test_the_task_trains_through_the_trainer(tmp_path):
    from rnnkit.train import Task, Trainer

    task = SumTask()
    assert isinstance(task, Task)  # has every member of the contract
    before = task.evaluate("val")["loss"]
    result = Trainer(task, TrainConfig(steps=60, lr=1e-2, eval_every=20, progress=False), tmp_path).fit()
    after = task.evaluate("val")["loss"]
    # predicting 0 costs E[mean^2] = Var(U(-1, 1)) / T = 1/18; the trained model does better than both
    assert after < min(before, 1 / 18) and [e["step"] for e in result.evals] == [20, 40, 60]
    assert result.best_val == min(e["val_loss"] for e in result.evals)
    assert {"last.safetensors", "best.safetensors", "metrics.jsonl"} <= set(os.listdir(tmp_path))


@pytest.mark.slow
def test_the_task_on_the_command_line_trains_resumes_and_evaluates(tmp_path, capsys):
    from rnnkit.cli import TASK_SPECS, main

    specs = [*TASK_SPECS, SumSpec()]
    straight, split = tmp_path / "straight", tmp_path / "split"
    flags = ["--hidden", "6", "--seed", "3", "--no-progress"]
    assert main(["train", "sum", *flags, "--out", str(straight)], specs=specs) == 0
    text = capsys.readouterr().out
    assert "step     20  loss" in text and "step     40  loss" in text and f"checkpoint: {straight}" in text
    # 20 steps, then --resume to the default 40: the same parameters as 40 steps straight
    assert main(["train", "sum", *flags, "--steps", "20", "--out", str(split)], specs=specs) == 0
    ck = str(split / "last.safetensors")
    assert main(["train", "sum", "--resume", ck, "--steps", "40", "--no-progress"], specs=specs) == 0
    assert f"resuming {ck} at step 20 of 40" in capsys.readouterr().out
    a, meta = load_checkpoint(straight / "last.safetensors", kind="sum")
    b, meta_b = load_checkpoint(ck, kind="sum")
    assert meta["train"]["step"] == meta_b["train"]["step"] == 40 and meta["task"]["config"]["hidden"] == 6
    for k in (k for k in a if k.startswith("task/")):
        assert np.array_equal(a[k], b[k]), f"{k}: resumed run differs from the straight one"
    # a model flag that differs from the checkpoint's is refused
    assert main(["train", "sum", "--resume", ck, "--hidden", "7"], specs=specs) == 2
    assert "--hidden 7: differs from the checkpoint's 6" in capsys.readouterr().err
    # rnnkit eval finds the task by the checkpoint's kind
    assert main(["eval", ck, "--split", "test"], specs=specs) == 0
    got = float(re.search(r"test split: loss (\S+)", capsys.readouterr().out).group(1))
    want = SumTask.from_checkpoint({k[5:]: v for k, v in b.items() if k.startswith("task/")},
                                   meta_b["task"]).evaluate("test")["loss"]
    assert abs(got - want) <= 5e-7 * max(1.0, abs(want)), (got, want)


def test_ctrl_c_ends_with_the_resume_line(tmp_path, capsys):
    """The generic handler: Ctrl-C (SIGINT) during training saves, prints how to resume, plots once,
    and exits 130 (SIGTERM/SIGHUP: test_reliability_cli.py)."""
    import signal

    from rnnkit.cli import TASK_SPECS, main

    class Interrupted(SumSpec):
        def report_eval(self, task, trainer, record):
            os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C at the first evaluation

    out = tmp_path / "run"
    assert main(["train", "sum", "--eval-every", "5", "--out", str(out), "--no-progress"],
                specs=[*TASK_SPECS, Interrupted()]) == 130  # an interrupted run never exits 0
    text = capsys.readouterr().out
    ck = out / "last.safetensors"
    assert f"interrupted: resume with  rnnkit train sum --resume {ck}" in text and text.count("loss curve:") == 1
    assert load_checkpoint(ck, kind="sum")[1]["train"]["step"] == 5  # stopped before the next step, checkpoint kept


def test_the_config_fields_are_the_flags_with_their_help_and_checks(capsys):
    """The spec lists no flag: --T, --hidden and --batch come from SumConfig's option() metadata, with
    their help, default and check (a bad value is one line and exit code 2)."""
    from rnnkit.cli import TASK_SPECS, main

    specs = [*TASK_SPECS, SumSpec()]
    assert main(["train", "sum", "--help"], specs=specs) == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--T T sequence length (default 6)", "--hidden HIDDEN hidden size (default 8)",
                 "--batch BATCH sequences per batch (default 16)"):
        assert flag in text, f"--help lacks {flag!r}: {text}"
    assert "--seed" in text and main(["train", "sum", "--T", "0"], specs=specs) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert len(err) == 1 and "--T" in err[0] and "expected a positive integer, got '0'" in err[0], err
