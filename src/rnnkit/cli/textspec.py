"""What ``rnnkit train seq2seq`` / ``classify`` and ``translate`` / ``classify`` share: the spec base
of the token-sequence tasks (configs of rnnkit.tasks.textdata.TextTaskConfig) and reading input lines."""
from __future__ import annotations

import os
import sys

from rnnkit.data.lines import decode_utf8, read_lines
from rnnkit.engine.layer_types import cell_label
from rnnkit.cli.options import add_field_flag, flag_fields
from rnnkit.cli.train import TaskSpec, stopped_line
from rnnkit.train import load_task


class TextSpec(TaskSpec):
    """A token-sequence task: flags in the sections corpus, tokens, model; one evaluation line
    ``step N  train L  val <metrics_line>``; at the end the test split (:meth:`test_report`).
    A subclass gives ``metrics_line(m)`` (an evaluate() dict as text), ``test_report`` and
    ``show_split`` (what ``rnnkit eval`` prints)."""

    groups = ("corpus", "tokens", "model")

    def metrics_line(self, m: dict) -> str:
        raise NotImplementedError

    def report_eval(self, task, trainer, rec) -> None:
        report_val(trainer, rec, self.metrics_line)

    def finish(self, task, trainer, res, args) -> None:
        print(stopped_line(res) + self.speed(trainer, res))
        if res.losses:
            self.test_report(task, trainer)
        print(f"checkpoint: {res.checkpoint}")

    def speed(self, trainer, res) -> str:
        """What follows the "stopped at" line (default nothing)."""
        return ""

    def test_report(self, task, trainer) -> None:
        """Print the test split's metrics after training (and write any plot into ``trainer.out_dir``)."""

    def evaluate(self, task, args, path) -> None:
        self.show_split(task, self.eval_split(task, args))

    def show_split(self, task, split: str) -> None:
        raise NotImplementedError


def load_best(task, trainer) -> str | None:
    """Load ``trainer``'s best checkpoint (by the task's ``best_metric``) into ``task.model`` and return its path,
    or None (no best checkpoint written: the model stays at the last step), for a test report after training."""
    best = trainer.best_path
    if not (best and os.path.exists(best)):
        return None
    task.model.load_params(load_task(best, type(task)).model.params)
    return best


def add_group_flags(p, config, group: str):
    """The argument group ``group`` (returned, for a spec's own flags of that section) with the flags of
    the fields of ``config``'s class declared in it (rnnkit.cli.options), for a spec that lays out its
    flags by hand; ``config``: an instance (its class's defaults are shown)."""
    g = p.add_argument_group(group)
    for f, name in flag_fields(type(config)):
        if name == group:
            add_field_flag(g, f, type(config))
    return g


def report_val(trainer, rec: dict, metrics_line) -> None:
    """One evaluation line of a text task: ``step N  train L  val <metrics_line of the val_* fields>``."""
    from tqdm import tqdm

    m = {k[4:]: v for k, v in rec.items() if k.startswith("val_")}
    tqdm.write(f"step {rec['step']:6d}  train {trainer.last_loss:.4f}  val {metrics_line(m)}")


def encoder_label(c) -> str:
    """"bidirectional LSTM 2x64": the encoder of a text task config."""
    return ("bidirectional " if c.bidirectional else "") + f"{cell_label(c)} {c.layers}x{c.hidden}"


def say_plot(what: str, png) -> None:
    """One line on standard error: where the plot of ``what`` went, or that matplotlib is missing."""
    print(f"{what}: {png}" if png else f"{what.split(' (')[0]}: not written (matplotlib is not installed)",
          file=sys.stderr)


def read_input(path) -> list:
    """Lines of ``--input FILE`` or of standard input (UTF-8; a bad byte names the line)."""
    if path:
        return read_lines(path, "--input")
    text = decode_utf8(sys.stdin.buffer.read(), "<stdin>")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [s[:-1] if s.endswith("\r") else s for s in lines]
