"""``rnnkit train adding`` / ``rnnkit train copy`` and their side of ``rnnkit eval``.

Their training flags (``--lr``, ``--clip``, ``--max-sequences``, ``--eval-every``; the budgets
count sequences) set the TrainConfig only, through
:meth:`rnnkit.tasks.longlag._LongLagTask.train_config`; their defaults are the task's
``train_defaults``.  A checkpoint of rnnkit <= 0.2 kept them in its task config: on ``--resume``
they are applied over its saved TrainConfig (``task.legacy_train_fields``), then the flags given.
"""
from __future__ import annotations

import argparse

from rnnkit.errors import UserError
from rnnkit.engine.layer_types import LAYERS
from rnnkit.tasks.longlag import COPY_CRITERION, AddingConfig, AddingTask, CopyConfig, CopyTask
from rnnkit.cli.args import forget_bias_arg, nonneg_int, positive_float, positive_int
from rnnkit.cli.train import TaskSpec, add_run_args

_FLAGS = (  # (flag, config field, type, help): model/data fields, then the training ones (_TRAIN_FIELDS)
    ("--T", "T", positive_int, "minimal sequence length (adding: T..T+T/10) / delay (copy)"),
    ("--cell", "cell", str, "recurrent cell"),
    ("--hidden", "hidden", positive_int, "hidden units"),
    ("--layers", "layers", positive_int, "stacked recurrent layers"),
    ("--batch", "batch", positive_int, "sequences per optimizer step"),
    ("--lr", "lr", positive_float, "Adam learning rate"),
    ("--forget-bias", "forget_bias", forget_bias_arg, "LSTM forget-gate / GRU update-gate bias ('none': init default)"),
    ("--clip", "clip", positive_float, "gradient-norm clipping threshold"),
    ("--max-sequences", "max_sequences", positive_int, "stop after this many training sequences if not solved"),
    ("--eval-every", "eval_every", positive_int, "evaluate on the val set every N training sequences"),
    ("--seed", "seed", nonneg_int, "seed of weights, data and evaluation sets"),
)
#: flags that only steer training (TrainConfig, via task.train_config): ``--resume`` applies them;
#: the others are task config fields and must match the checkpoint
_TRAIN_FIELDS = ("lr", "clip", "max_sequences", "eval_every")


class _LongLagSpec(TaskSpec):
    def add_flags(self, p) -> None:
        max_sequences, eval_every = self.task_class.default_sequences()
        defaults = {**vars(self.config_class()), "lr": self.train_defaults.lr, "clip": self.train_defaults.clip,
                    "max_sequences": max_sequences, "eval_every": eval_every}
        for flag, name, typ, h in _FLAGS:
            kw = {"choices": tuple(LAYERS)} if name == "cell" else {}
            # not given: no attribute (a new run takes the config's default, --resume the checkpoint's value)
            p.add_argument(flag, dest=name, type=typ, default=argparse.SUPPRESS,
                           help=f"{h} (default {defaults[name]})", **kw)

    def add_train_flags(self, p) -> None:
        add_run_args(p, f"directory for checkpoints, metrics.jsonl and loss.png (default runs/{self.name})",
                     "continue a run from its last.safetensors")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

    def given(self, args) -> dict:
        """The task config fields whose flags were given (``--seed`` seeds the TrainConfig too)."""
        return {name: getattr(args, name) for _, name, _, _ in _FLAGS if hasattr(args, name) and
                name not in _TRAIN_FIELDS}

    def checked_on_resume(self, args) -> dict:
        return self.given(args)

    def train_config(self, args, base, task):
        """A new run: the task's defaults + the training flags; ``--resume``: the saved TrainConfig
        (``base``) + a legacy checkpoint's training fields + the training flags."""
        flags = {name: getattr(args, name) for name in _TRAIN_FIELDS if hasattr(args, name)}
        if base is not None:
            flags = {**task.legacy_train_fields, **flags}
        try:
            return task.train_config(base=base, progress=not args.no_progress, **flags)
        except ValueError as e:
            raise UserError(str(e)) from None

    def resume_line(self, task, trainer, args) -> str:
        return f"resuming {task.kind} from {args.resume} at {trainer.step * task.config.batch:,} sequences"

    def describe(self, task, trainer) -> None:
        c, t = task.config, trainer.config
        print(f"{task.kind} T={c.T}: {c.cell.upper()} {c.layers}x{c.hidden}, batch {c.batch}, Adam lr {t.lr}, "
              f"clip {t.clip}, forget bias {c.forget_bias}, seed {c.seed}; {task.model.num_params():,} parameters; "
              f"at most {t.steps * c.batch:,} sequences")

    def report_eval(self, task, trainer, rec) -> None:
        from tqdm import tqdm

        from rnnkit.train import metrics_of

        tqdm.write(f"{trainer.step * task.config.batch:>10,} sequences  val {self.metrics_text(metrics_of(rec))}")

    def fit(self, task, trainer, on_eval, args):
        return task.fit(on_eval=on_eval, trainer=trainer)

    def finish(self, task, trainer, res, args) -> None:
        state = "solved" if res.stop_reason == "solved" else f"not solved ({res.stop_reason})"
        print(f"{state} after {res.sequences:,} training sequences ({res.steps:,} steps, {res.seconds:.0f} s)")
        print(f"test: {self.metrics_text(res.test)}")
        print(f"checkpoint: {res.checkpoint}")

    def evaluate(self, task, args, path) -> None:
        """The fixed evaluation sets regenerate from the seed."""
        if args.text or args.split == "train":
            raise UserError(f"eval: a {task.kind} checkpoint is evaluated on its fixed 'val' or 'test' set "
                            f"(--split val|test), not on {'a file' if args.text else 'a train split'}")
        split = args.split or "val"
        print(f"{task.kind} T={task.config.T}, {split} set: {self.metrics_text(task.evaluate(split))}")


class AddingSpec(_LongLagSpec):
    name, task_class, config_class = "adding", AddingTask, AddingConfig
    help = description = "adding problem (Hochreiter & Schmidhuber 1997, Exp. 4)"
    plot_title, plot_ylabel = "adding T={c.T}", "MSE"

    def metrics_text(self, m: dict) -> str:
        n = int(m["correct"] + m["wrong"])
        return f"mse {m['loss']:.5f}  correct {int(m['correct'])}/{n} ({100 * m['accuracy']:.2f}%)"


class CopySpec(_LongLagSpec):
    name, task_class, config_class = "copy", CopyTask, CopyConfig
    help = "copy memory task (Arjovsky et al. 2016)"
    description = f"{help}; solved when the val {COPY_CRITERION} (recall accuracy is reported as a metric)"
    plot_title, plot_ylabel = "copy T={c.T}", "cross-entropy (nats per output)"

    def metrics_text(self, m: dict) -> str:
        return (f"loss {m['loss']:.4f} nats (memoryless baseline {m['baseline']:.4f})  "
                f"recall accuracy {100 * m['recall_accuracy']:.2f}%")
