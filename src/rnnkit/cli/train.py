"""``rnnkit train TASK``: one generic handler, driven by a small per-task :class:`TaskSpec`.

The handler (:func:`train_handler`) is the only place that knows the rules every training run
follows: the output directory is claimed for the whole command (one writer: a second run on it
is refused naming the holder's pid; stray temp files removed; a file, /proc or read-only path is
one line); a new run refuses an ``--out`` holding a checkpoint and a model larger than the
machine's memory (before building it); ``--resume CKPT`` reads the checkpoint once, validated
before anything is built (``--reset-optimizer`` accepts a missing or mismatched optimizer
state), continues in its directory (or ``--out``), takes the model settings from it and refuses
a model flag that differs; SIGINT/SIGTERM/SIGHUP save and end with "interrupted: resume with
..." and exit code 130/143/129; the loss curve is plotted once at the end.  A spec says what
differs between tasks: its flags, how to build the task, its training defaults, what to print.
``rnnkit eval CKPT`` finds the spec by the checkpoint's kind (:func:`eval_handler`).

Adding a task (e.g. ``asr``): the config is a frozen dataclass whose fields carry their flag,
declared once with :func:`rnnkit.checks.fields.option` (help, rule or choices, group, metavar,
``path=True`` for a file: recorded absolute); its ``__post_init__`` calls ``check_options(self)``.
The spec then needs only the class attributes; flags come from the config (rnnkit.cli.options)::

    @dataclass(frozen=True)
    class AsrConfig(CellVariant):
        audio: str | None = option(None, "directory of .wav files", metavar="DIR", path=True, group="corpus")
        hidden: int = option(128, "hidden size", rule=POSITIVE_INT, group="model")
        seed: int = option(0, rule=NONNEG_INT, flag=False)       # set by the training flag --seed

    class AsrSpec(TaskSpec):        # a token-sequence task: rnnkit.cli.textspec.TextSpec
        name, task_class, config_class = "asr", AsrTask, AsrConfig
        help = "speech recognition"
        groups = ("corpus", "model")                             # the --help sections, in order
        plot_title, plot_ylabel = "asr ({cell} {c.layers}x{c.hidden})", "CTC loss"

Override a hook only where the task differs: ``add_flags`` (flags that are not config fields:
add them, then ``super().add_flags(p)``), ``new_config``, ``new_task``, ``attach`` (a resumed
task's data), ``describe``, ``report_eval``, ``fit``, ``finish``, ``evaluate`` (``eval_split``
refuses ``--text`` with ``text_hint``).  The task's ``from_checkpoint`` is one call of
:func:`rnnkit.train.restore`.  Register the spec in ``rnnkit.cli.TASK_SPECS``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os

import numpy as np

from rnnkit.io.distributed import Communicator
from rnnkit.errors import UserError
from rnnkit.io.checkpoint import read_header
from rnnkit.io.lock import claim_out_dir
from rnnkit.io.outputs import refuse_earlier_run
from rnnkit.engine.layer_types import cell_label
from rnnkit.engine.threads import free_cores
from rnnkit.train.plots import plot_loss
from rnnkit.train import TrainConfig, Trainer, check_model_fits, metrics_of, read_checkpoint
from rnnkit.train.state import saved_train_config, task_from
from rnnkit.cli.args import nonneg_float, nonneg_int, positive_float, positive_int, rate
from rnnkit.cli.options import add_config_flags, given_fields

NOT_PLOTTED = "loss curve: not plotted (matplotlib is not installed; pip install 'rnnkit[plot]')"


def add_train_args(p, defaults: TrainConfig | None = None, notes: dict | None = None) -> None:
    """Add a flag for every TrainConfig field to a ``train TASK`` parser (help shows ``defaults``;
    ``notes``: field -> the text of a default that is not a number, e.g. one scaled with the corpus)."""
    d = defaults or TrainConfig()
    n = notes or {}
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=nonneg_int, help=f"total optimizer steps (default {n.get('steps', d.steps)})")
    g.add_argument("--lr", type=nonneg_float, help=f"learning rate (default {d.lr})")
    g.add_argument("--optimizer", choices=["adam", "adamw", "sgd"], help=f"(default {d.optimizer})")
    g.add_argument("--momentum", type=nonneg_float, help="SGD momentum (default 0)")
    g.add_argument("--nesterov", action="store_const", const=True, help="SGD Nesterov momentum")
    g.add_argument("--weight-decay", dest="weight_decay", type=nonneg_float, help="(default 0)")
    g.add_argument("--clip", type=nonneg_float, help=f"global gradient-norm clip, 0 = off (default {d.clip})")
    g.add_argument("--schedule", choices=["constant", "step", "cosine"], help=f"lr schedule (default {d.schedule})")
    g.add_argument("--warmup", type=nonneg_int, help="linear warm-up steps (default 0)")
    g.add_argument("--step-size", dest="step_size", type=positive_int,
                   help=f"--schedule step: multiply the lr by --gamma every N steps (default {d.step_size})")
    g.add_argument("--gamma", type=positive_float, help=f"--schedule step: lr decay factor (default {d.gamma})")
    g.add_argument("--min-lr", dest="min_lr", type=nonneg_float,
                   help=f"--schedule cosine: final learning rate (default {d.min_lr})")
    g.add_argument("--eval-every", dest="eval_every", type=nonneg_int,
                   help="evaluate on the val split every N steps, 0 = only at the end "
                        f"(default {n.get('eval_every', d.eval_every)})")
    g.add_argument("--checkpoint-every", dest="checkpoint_every", type=nonneg_int,
                   help="also checkpoint every N steps (default: at every evaluation)")
    g.add_argument("--log-every", dest="log_every", type=nonneg_int,
                   help=f"log the mean training loss every N steps, 0 = never (default {d.log_every})")
    g.add_argument("--patience", type=nonneg_int,
                   help=f"early stopping after N evaluations without a new best, 0 = off (default {d.patience})")
    g.add_argument("--ema", type=rate,
                   help="keep an exponential moving average of the parameters with this decay (e.g. 0.999): "
                        f"evaluations, checkpoints and the trained model are the average; 0 = off (default {d.ema})")
    g.add_argument("--seed", type=nonneg_int, help=f"seed for initialisation and batches (default {d.seed})")
    g.add_argument("--time-limit", dest="time_limit", type=nonneg_float,
                   help="stop (and checkpoint) after this many seconds of training, 0 = off (default 0)")
    g.add_argument("--blas-threads", dest="blas_threads", type=nonneg_int,
                   help="BLAS threads and cores of the loops while training, 0 = every core (default: the "
                        "cores free when the run starts: the machine's cores less its load average, at least 1)")
    g.add_argument("--no-progress", dest="progress", action="store_const", const=False, help="no progress bar")
    add_run_args(g)


def add_run_args(p, out_help: str = "output directory for checkpoints, metrics.jsonl and loss.png",
                 resume_help: str = "continue training from a checkpoint (last.safetensors)") -> None:
    """``--out``, ``--resume`` and ``--reset-optimizer`` (every ``train TASK``)."""
    p.add_argument("--out", help=out_help)
    p.add_argument("--resume", metavar="CKPT", help=resume_help)
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in an --out that holds an earlier run's files, replacing them "
                        "(without it such an --out is refused)")
    p.add_argument("--reset-optimizer", dest="reset_optimizer", action="store_true",
                   help="with --resume: start with a fresh optimizer state (needed when the checkpoint has none "
                        "or one that does not fit; the run then no longer continues exactly)")


def train_config_from_args(args, base=None):
    """TrainConfig from parsed flags: every TrainConfig field whose flag was given overrides ``base``."""
    base = base or TrainConfig()
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if getattr(args, f.name, None) is not None}
    if hasattr(args, "blas_threads") and args.blas_threads is None:  # a setting of this run, not of the model
        given["blas_threads"] = free_cores()
    try:
        return dataclasses.replace(base, **given)
    except ValueError as e:
        raise UserError(str(e)) from None


def refuse_model_changes(config, given: dict) -> None:
    """On ``--resume`` the model and data settings come from the checkpoint: ``given`` maps the
    ``config`` fields whose flags were given on the command line to their values; one that differs
    from the checkpoint's ``config`` is a UserError naming the flag (``--field-name``)."""
    for name, v in given.items():
        old = getattr(config, name)
        if v != old:
            raise UserError(f"--{name.replace('_', '-')} {v}: differs from the checkpoint's {old}; "
                            "model settings come from the checkpoint when resuming")


#: what a training run writes in its --out; ``--overwrite`` removes them before a new run starts
RUN_FILES = ("last.safetensors", "best.safetensors", "forecast.safetensors", "metrics.jsonl", "loss.png",
             "forecast.png")


def refuse_existing_checkpoint(out: str, overwrite: bool = False) -> None:
    """A new training run never overwrites what an earlier one left in ``out`` (checkpoints,
    metrics, plots: :func:`rnnkit.io.outputs.refuse_earlier_run`) unless ``overwrite``; then the
    earlier run's :data:`RUN_FILES` are removed first (its metrics.jsonl would be appended to)."""
    last = os.path.join(out, "last.safetensors")
    hint = f"continue it with --resume {last}" if os.path.exists(last) else ""
    refuse_earlier_run(out, overwrite=overwrite, hint=hint)
    if overwrite:
        for name in RUN_FILES:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(out, name))


class TaskSpec:
    """How one task appears on the command line (see the module docstring).  Subclass and set the
    class attributes; override a method only where the task differs from the default.

    ``name``: ``rnnkit train NAME``, the default ``--out runs/NAME`` and the checkpoint kind;
    ``task_class``: follows rnnkit.train.task.Task; ``config_class``: its config dataclass, one flag
    per field (rnnkit.cli.options); ``groups``: the ``--help`` sections of its fields, in order.
    """

    name: str
    task_class: type
    config_class: type
    help: str = ""
    description: str | None = None
    groups: tuple = ()
    plot_title: str = "{kind} training"
    plot_ylabel: str = "loss"
    text_hint: str = ""  # the end of the error of ``rnnkit eval CKPT --text FILE`` (what to use instead)

    @property
    def train_defaults(self) -> TrainConfig:
        """The TrainConfig of a new run before flags: the task class's own ``train_defaults`` (the
        one place a task keeps its training defaults), else TrainConfig()'s."""
        return getattr(self.task_class, "train_defaults", TrainConfig())

    # ------------------------------------------------------------------ flags
    def add_flags(self, p) -> None:
        """Model and data flags: one per config field (rnnkit.cli.options.add_config_flags); a spec
        with flags of its own adds them and calls this."""
        add_config_flags(p, self.config_class, self.groups)

    def add_train_flags(self, p) -> None:
        add_train_args(p, self.train_defaults)

    def given(self, args) -> dict:
        """The config fields whose flags were given (``seed`` from the training flag ``--seed``; paths absolute)."""
        return given_fields(args, self.config_class)

    def checked_on_resume(self, args) -> dict:
        """The flags compared with the checkpoint's config on ``--resume`` (not ``--seed``: a training flag)."""
        return {k: v for k, v in self.given(args).items() if k != "seed"}

    # ------------------------------------------------------------------ building
    def new_config(self, args):
        return self.config_class(**self.given(args))

    def new_task(self, config, args):
        return self.task_class(config)

    def train_config(self, args, base: TrainConfig | None, task) -> TrainConfig:
        """This run's TrainConfig: ``base`` (the checkpoint's on --resume, else ``train_defaults``) + flags."""
        return train_config_from_args(args, base or self.train_defaults)

    def attach(self, task, args) -> None:
        """On ``--resume``: give the loaded task its data again (default: nothing to do)."""

    # ------------------------------------------------------------------ running and reporting
    def resume_line(self, task, trainer, args) -> str:
        return f"resuming {args.resume} at step {trainer.step} of {trainer.config.steps}"

    def describe(self, task, trainer) -> None:
        print(f"model: {task.kind}, {task.model.num_params():,} parameters; {trainer.config.steps} steps")

    def report_eval(self, task, trainer, record: dict) -> None:
        from tqdm import tqdm

        m = metrics_of(record)
        tqdm.write(f"step {record['step']:6d}  " + "  ".join(f"{k} {v:.4g}" for k, v in m.items()))

    def fit(self, task, trainer, on_eval, args):
        return trainer.fit(on_eval=on_eval)

    def finish(self, task, trainer, result, args) -> None:
        print(stopped_line(result))
        print(f"checkpoint: {result.checkpoint}")

    def evaluate(self, task, args, path) -> None:
        """``rnnkit eval CKPT [--split S] [--text FILE]``: print the metrics of ``task``."""
        split = self.eval_split(task, args)
        m = task.evaluate(split)
        print(f"{split} split: " + "  ".join(f"{k} {v:.6g}" for k, v in m.items()))

    def eval_split(self, task, args) -> str:
        """The split ``rnnkit eval`` reports (default val); ``--text`` is a UserError ending with ``text_hint``."""
        if args.text:
            raise UserError(f"eval: --text is not supported for a {task.kind} checkpoint{self.text_hint}")
        return args.split or "val"

    def plot_labels(self, task) -> tuple[str, str]:
        """(title, y-axis label) of loss.png: ``plot_title`` formatted with the task's ``kind``, its config
        ``c`` and ``cell`` (rnnkit.engine.layer_types.cell_label), and ``plot_ylabel``."""
        c = task.config
        return self.plot_title.format(kind=task.kind, c=c, cell=cell_label(c) if hasattr(c, "cell") else ""), \
            self.plot_ylabel


def stopped_line(result) -> str:
    """"stopped at step N (reason) after S s": the first line of every run's summary."""
    return f"stopped at step {result.step} ({result.stop_reason}) after {result.seconds:.0f} s"


def add_task_parser(train_subparsers, spec: TaskSpec) -> None:
    """``rnnkit train NAME``: the spec's flags, its training flags, the generic handler."""
    p = train_subparsers.add_parser(spec.name, help=spec.help, description=spec.description or spec.help)
    spec.add_flags(p)
    spec.add_train_flags(p)
    p.set_defaults(func=lambda args: train_handler(spec, args))


@contextlib.contextmanager
def claimed(out: str, what: str = "--out", targets=None):
    """:func:`rnnkit.io.lock.claim_out_dir` for a whole command (yields the lock; ``targets``: the
    names whose stray temp files may be removed, None: any); a directory it created and left empty
    (a run refused before writing anything) is removed again."""
    created = not os.path.lexists(out)
    try:
        with claim_out_dir(out, what, targets) as lock:
            yield lock
    finally:
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(out)  # only if empty


def _resumed(spec: TaskSpec, args, out: str, comm):
    """(task, trainer) of ``--resume``: the checkpoint read once, validated before building."""
    reset = bool(getattr(args, "reset_optimizer", False))
    arrays, meta = read_checkpoint(args.resume, spec.task_class, training=True, reset_optimizer=reset)
    saved = saved_train_config(meta, args.resume)
    task = task_from(arrays, meta, spec.task_class, args.resume)
    refuse_model_changes(task.config, spec.checked_on_resume(args))
    trainer = Trainer(task, spec.train_config(args, saved, task), out, comm=comm)
    trainer.load_state(arrays, meta, reset_optimizer=reset)
    spec.attach(task, args)
    print(spec.resume_line(task, trainer, args) + ("; optimizer state reset (--reset-optimizer)" if reset else ""))
    return task, trainer


def _new(spec: TaskSpec, args, config, out: str, comm):
    """(task, trainer) of a new run: memory checked before the model is built."""
    if comm.is_root:  # the rank that holds --out's lock; its refusal ends every rank (Communicator.guard)
        refuse_existing_checkpoint(out, bool(getattr(args, "overwrite", False)))
    check_model_fits(spec.task_class, {"config": dataclasses.asdict(config)},  # what model_plan reads of a new run
                     train_config_from_args(args, spec.train_defaults), f"train {spec.name}: this model")
    try:
        task = spec.new_task(config, args)
    except ValueError as e:
        raise UserError(str(e)) from None
    return task, Trainer(task, spec.train_config(args, None, task), out, comm=comm)


def train_handler(spec: TaskSpec, args) -> int:
    """Train a new run or continue one (``--resume``); see the module docstring.  Returns 0, or
    the stop signal's exit code (130, 143, 129) when a signal ended the run (after its checkpoint)."""
    if getattr(args, "overwrite", False) and args.resume:
        raise UserError("--overwrite: only for a new run; --resume continues the checkpoint's run")
    if getattr(args, "reset_optimizer", False) and not args.resume:
        raise UserError("--reset-optimizer: only with --resume CKPT (a new run starts with a fresh optimizer)")
    config = None
    if not args.resume:
        try:
            config = spec.new_config(args)
        except ValueError as e:
            raise UserError(str(e)) from None
    out = args.out or (os.path.dirname(os.path.abspath(args.resume)) if args.resume
                       else os.path.join("runs", spec.name))
    comm = Communicator.from_environment()  # mpiexec -n N: data-parallel; else one process, no MPI
    with contextlib.ExitStack() as stack:
        stack.enter_context(comm.guard())  # several ranks: an error on one ends them all, in one line
        if not comm.is_root:  # rank 0 alone prints, plots and writes (the Trainer: checkpoints, metrics)
            stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
        lock = stack.enter_context(claimed(out)) if comm.is_root else None  # one writer for the whole command
        task, trainer = _resumed(spec, args, out, comm) if args.resume else _new(spec, args, config, out, comm)
        trainer.out_lock = lock
        spec.describe(task, trainer)
        result = spec.fit(task, trainer, lambda tr, record: spec.report_eval(task, tr, record), args)
        spec.finish(task, trainer, result, args)
        if trainer.exit_code:
            print(f"interrupted: resume with  rnnkit train {spec.name} --resume {trainer.last_path}")
        if comm.is_root:
            title, ylabel = spec.plot_labels(task)
            png = plot_loss(trainer.log_path, os.path.join(trainer.out_dir, "loss.png"), title=title, ylabel=ylabel)
            print(f"loss curve: {png}" if png else NOT_PLOTTED)
    return trainer.exit_code


def eval_handler(specs, args) -> int:
    """``rnnkit eval CKPT``: the spec of the checkpoint's kind (from its header) evaluates it; the
    checkpoint is read once, validated against that task's model before it is built."""
    kind = read_header(args.checkpoint)[1].get("kind")
    for spec in specs:
        if spec.name == kind:
            task = task_from(*read_checkpoint(args.checkpoint, spec.task_class), spec.task_class, args.checkpoint)
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a huge model reports inf
                spec.evaluate(task, args, args.checkpoint)
            return 0
    raise UserError(f"eval: no evaluator for checkpoint kind {kind!r} ({args.checkpoint})")
