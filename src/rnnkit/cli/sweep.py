"""``rnnkit sweep SPEC``: a hyper-parameter sweep of any ``rnnkit train TASK`` on Ray Tune.

Each trial is one ``rnnkit train TASK`` run through the generic handler (the Trainer), with the
spec's ``[fixed]`` flags and the trial's sampled ``[space]`` values as its flags: every key is the
name of a flag of that task (a TrainConfig field such as ``lr``, ``clip``, ``steps``, or a task
config field such as ``hidden``, ``cell``), so any task, built-in or added, sweeps the same way.
At every evaluation the trial reports the evaluation record (``val_loss``, ``val_bpc``, ...)
with the checkpoint of that step.  The result (:func:`rnnkit.sweep.tune.run_sweep`): ``results.md``,
``results.csv`` and ``best.json`` (the best configuration and its checkpoint) in ``--out``.

    DIR/results.md, results.csv, best.json     the table and the best trial
    DIR/runs/<trial>/                          each trial's run (metrics.jsonl, train.log, checkpoints)
    DIR/ray/                                   Ray Tune's storage (the reported checkpoints)
"""
from __future__ import annotations

import argparse
import contextlib
import os
import tempfile

from rnnkit.errors import UserError
from rnnkit.io.outputs import refuse_earlier_run
from rnnkit.sweep.spec import load_spec
from rnnkit.sweep.tune import run_sweep
from rnnkit.cli.args import positive_int
from rnnkit.cli.train import add_task_parser, claimed, train_config_from_args

SKIPPED = ("help", "out", "resume", "reset_optimizer", "overwrite")


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are a UserError (a trial's flags are checked where it runs)."""

    def error(self, message):
        raise UserError(f"{self.prog}: {message}")


class _Reporting:
    """A task spec that also reports every evaluation record, with its checkpoint, to the sweep."""

    def __init__(self, spec, report):
        self._spec, self._report = spec, report

    def __getattr__(self, name):
        return getattr(self._spec, name)

    def report_eval(self, task, trainer, record) -> None:
        self._report(record, trainer.last_path)  # written before on_eval (rnnkit.train.Trainer)


def task_parser(spec, report=None) -> tuple[argparse.ArgumentParser, dict]:
    """(parser of ``rnnkit train NAME`` for ``spec``, sweepable key -> its argparse action)."""
    p = _Parser(prog="rnnkit train")
    sub = p.add_subparsers(dest="task")
    add_task_parser(sub, spec if report is None else _Reporting(spec, report))
    task_p = sub.choices[spec.name]
    return p, {a.dest: a for a in task_p._actions if a.option_strings and a.dest not in SKIPPED}


def flags(config: dict, actions: dict) -> list[str]:
    """``{"lr": 0.01, "nesterov": True, "hidden": 64}`` -> ``["--lr", "0.01", "--nesterov", "--hidden", "64"]``."""
    out = []
    for key, value in sorted(config.items()):
        action = actions[key]
        if action.nargs == 0:  # a switch
            if value not in (True, False):
                raise UserError(f"{key}: a switch ({action.option_strings[0]}); expected true or false, got {value!r}")
            if isinstance(action, argparse.BooleanOptionalAction):  # --x / --no-x
                out.append(action.option_strings[0 if value else 1])
            elif value == action.const:  # store_const: the flag sets this value; the other is the default
                out.append(action.option_strings[0])
        else:
            out += [action.option_strings[0], str(value)]
    return out


class TaskTrainable:
    """``trainable(config, report)`` of :func:`rnnkit.sweep.tune.run_sweep`: one ``rnnkit train TASK`` run
    with the trial's flags, in a new directory under ``runs``, relative paths taken from ``cwd``."""

    def __init__(self, spec, cwd: str, runs: str):
        self.spec, self.cwd, self.runs = spec, cwd, runs

    def __call__(self, config: dict, report) -> None:
        parser, actions = task_parser(self.spec, report)
        os.makedirs(self.runs, exist_ok=True)
        out = tempfile.mkdtemp(prefix="trial-", dir=self.runs)
        args = parser.parse_args([self.spec.name, *flags(config, actions), "--out", out, "--no-progress"])
        with contextlib.chdir(self.cwd), open(os.path.join(out, "train.log"), "w") as log, \
                contextlib.redirect_stdout(log):
            print(f"rnnkit train {self.spec.name} {' '.join(flags(config, actions))} --out {out}", flush=True)
            args.func(args)


def check_fixed(task, spec) -> None:
    """Before Ray starts: the spec's keys are flags of the task; its ``[fixed]`` flags, alone and with
    each ``[space]`` value a trial can get (every choice and grid value, a range's low end and a
    randint's both ends), parse and make a valid task and training config.  UserError naming the
    spec, the table and the key."""
    parser, actions = task_parser(task)
    spec.check_keys(actions)
    trials = [("[fixed]", {})] + [(f"[space].{p.name}", {p.name: v}) for p in spec.space
                                  for v in (p.args if p.kind in ("choice", "grid") else
                                            p.args if p.kind == "randint" else p.args[:1])]
    for where, extra in trials:
        try:
            args = parser.parse_args([task.name] + flags({**spec.fixed, **extra}, actions))
            task.new_config(args)
            train_config_from_args(args, task.train_defaults)
        except (UserError, ValueError) as e:
            raise UserError(f"{spec.source}: {where}: {e}") from None


def _sweep(specs, args) -> int:
    spec = load_spec(args.spec)
    task = next((s for s in specs if s.name == spec.task), None)
    if task is None:
        raise UserError(f"{spec.source}: task: expected one of {', '.join(s.name for s in specs)}, got {spec.task!r}")
    check_fixed(task, spec)
    out = os.path.abspath(args.out or os.path.join("sweeps", os.path.splitext(os.path.basename(args.spec))[0]))
    with claimed(out):
        refuse_earlier_run(out)  # an earlier sweep's tables, runs or Ray storage (rnnkit.io.outputs)
        res = run_sweep(spec, TaskTrainable(task, os.getcwd(), os.path.join(out, "runs")), cpus=args.cpus,
                        address=args.address, storage=os.path.join(out, "ray"), name="sweep", out_dir=out)
    with open(res.files["md"], encoding="utf-8") as f:
        print(f.read().rstrip("\n"))
    print(f"table: {res.files['md']}, {res.files['csv']}; best: {res.files['best']}")
    return 0


def register(root, specs) -> None:
    """``rnnkit sweep``."""
    p = root.add_parser("sweep", help="hyper-parameter sweep of a task on Ray Tune (a TOML spec)",
                        description="Run the trials of a TOML sweep spec (docs/scaling.md) through Ray Tune: each "
                                    "trial is an 'rnnkit train TASK' run; prints the table and the best trial.")
    p.add_argument("spec", metavar="SPEC", help="TOML file: task, num_trials, metric, mode, [fixed], [space], [asha]")
    p.add_argument("--cpus", type=positive_int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--address", default=None, help="join a running Ray cluster ('auto' or host:port)")
    p.add_argument("--out", default=None, help="results directory (default sweeps/<SPEC name>)")
    p.set_defaults(func=lambda a: _sweep(specs, a))
