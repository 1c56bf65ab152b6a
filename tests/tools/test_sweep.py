"""rnnkit.sweep (spec, tune, grid): the TOML spec (validation, one-line errors) and real runs on a local Ray; ``rnnkit sweep`` and
``rnnkit bench longlag --engine ray`` through the command line on the same Ray."""
import csv
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.errors import UserError
from rnnkit.sweep.grid import run_grid
from rnnkit.sweep.spec import load_spec, parse_spec
from rnnkit.sweep.tune import run_sweep

HERE = Path(__file__).resolve().parents[1]  # tests/
sys.path.insert(0, str(HERE))
import sweep_trainables  # noqa: E402

EXAMPLE = """\
task = "charlm"
num_trials = 4
metric = "val_loss"
mode = "min"
seed = 3

[fixed]
steps = 300

[space]
lr = { loguniform = [1e-4, 1e-2] }
clip = { uniform = [0.5, 5.0] }
layers = { randint = [1, 3] }
hidden = { choice = [64, 128] }
cell = { grid = ["lstm", "gru"] }

[asha]
max_t = 10
grace_period = 2
reduction_factor = 2
"""


def test_example_spec_parses(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text(EXAMPLE)
    s = load_spec(p)
    assert (s.task, s.num_trials, s.metric, s.mode, s.seed, s.fixed) == ("charlm", 4, "val_loss", "min", 3,
                                                                       {"steps": 300})
    assert [(q.name, q.kind, q.args) for q in s.space] == [
        ("lr", "loguniform", (1e-4, 1e-2)), ("clip", "uniform", (0.5, 5.0)), ("layers", "randint", (1, 3)),
        ("hidden", "choice", (64, 128)), ("cell", "grid", ("lstm", "gru"))]
    assert s.grid_size == 2 and (s.asha.max_t, s.asha.grace_period, s.asha.reduction_factor) == (10, 2, 2.0)
    s.check_keys({"steps", "lr", "clip", "layers", "hidden", "cell"})
    with pytest.raises(UserError, match=r"s.toml: \[space\].clip: not a setting of task 'charlm'"):
        s.check_keys({"steps", "lr", "layers", "hidden", "cell"})


def test_the_docs_example_is_a_valid_spec():
    import tomllib

    text = (HERE.parent / "docs" / "scaling.md").read_text(encoding="utf-8")
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    s = parse_spec(tomllib.loads(block), source="docs/scaling.md")
    assert s.num_trials == 8 and s.grid_size == 2 and s.asha.max_t == 10


def _spec(**change):
    d = {"task": "t", "num_trials": 2, "metric": "val_loss", "space": {"lr": {"uniform": [0.1, 0.2]}}}
    for k, v in change.items():
        if v is None:
            d.pop(k)
        else:
            d[k] = v
    return d


@pytest.mark.parametrize("change, message", [
    ({"task": None}, "f.toml: task: missing"),
    ({"num_trials": 0}, "f.toml: num_trials: expected an integer >= 1, got 0"),
    ({"mode": "lowest"}, "f.toml: mode: expected 'min' or 'max', got 'lowest'"),
    ({"trials": 3}, "f.toml: trials: unknown key"),
    ({"space": {"lr": {"normal": [0, 1]}}}, r"f.toml: \[space\].lr: expected a table with one of choice"),
    ({"space": {"lr": 0.1}}, r"f.toml: \[space\].lr: expected a table with one of"),
    ({"space": {"lr": {"loguniform": [0, 1]}}}, r"f.toml: \[space\].lr.loguniform: expected 0 < low < high"),
    ({"space": {"lr": {"uniform": [2, 1]}}}, r"f.toml: \[space\].lr.uniform: expected low < high, got \[2, 1\]"),
    ({"space": {"n": {"randint": [1.5, 3]}}}, r"f.toml: \[space\].n.randint: expected integers low <= high"),
    ({"space": {"n": {"choice": []}}}, r"f.toml: \[space\].n.choice: expected a non-empty list"),
    ({"fixed": {"lr": 1.0}}, r"f.toml: \[space\].lr: also set in \[fixed\]"),
    ({"space": {"c": {"grid": ["a", "b", "c"]}}}, "f.toml: num_trials: expected a multiple of the grid's size "
                                                  r"\(3 combinations"),
    ({"asha": {"max_t": 0}}, r"f.toml: \[asha\].max_t: expected an integer >= 1, got 0"),
    ({"asha": {"max_t": 4, "grace_period": 5}}, r"f.toml: \[asha\].grace_period: expected an integer in 1..max_t"),
    ({"asha": {"max_t": 4, "reduction_factor": 1}}, r"f.toml: \[asha\].reduction_factor: expected a number > 1"),
    ({"asha": {"max_t": 4, "brackets": 2}}, r"f.toml: \[asha\].brackets: unknown key"),
])
def test_bad_spec_is_a_one_line_error_naming_file_and_key(change, message):
    with pytest.raises(UserError, match=message) as e:
        parse_spec(_spec(**change), source="f.toml")
    assert "\n" not in str(e.value)


def test_bad_files(tmp_path):
    with pytest.raises(UserError, match="sweep spec '.*nope.toml': file not found"):
        load_spec(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("task = \n")
    with pytest.raises(UserError, match=r"bad.toml: not valid TOML \(.*line 1"):
        load_spec(bad)


@pytest.mark.slow
def test_spec_maps_onto_ray_tune():
    pytest.importorskip("ray.tune")
    s = parse_spec({"task": "t", "num_trials": 2, "metric": "val_loss", "mode": "max", "fixed": {"steps": 5},
                    "space": {"n": {"randint": [1, 3]}, "lr": {"loguniform": [1e-4, 1e-2]},
                              "c": {"choice": ["a", "b"]}},
                    "asha": {"max_t": 8, "grace_period": 2, "reduction_factor": 3}})
    space = s.param_space()
    assert space["steps"] == 5
    assert set(space["n"].sample(size=300)) == {1, 2, 3}, "randint [1, 3] must include both ends"
    lr = space["lr"].sample(size=300)
    assert 1e-4 <= min(lr) and max(lr) < 1e-2
    assert set(space["c"].sample(size=100)) == {"a", "b"}
    asha = s.asha.to_tune(s.metric, s.mode)
    assert (asha._max_t, asha._reduction_factor, asha._metric, asha._mode) == (8, 3.0, "val_loss", "max")


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.tune")
    ray.cloudpickle.register_pickle_by_value(sweep_trainables)  # Ray's workers cannot import tests/
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_tiny_sweep_on_local_ray(local_ray, tmp_path):
    spec = parse_spec({"task": "regress", "num_trials": 4, "metric": "val_loss", "mode": "min", "seed": 0,
                       "fixed": {"steps": 9, "eval_every": 3, "out": str(tmp_path / "trials")},
                       "space": {"lr": {"loguniform": [1e-3, 1e-1]}, "hidden": {"grid": [3, 6]}}},
                      source="tiny.toml")
    res = run_sweep(spec, sweep_trainables.fit, storage=tmp_path / "ray", out_dir=tmp_path / "out")
    assert len(res.rows) == 4, res.rows
    assert all(r["status"] == "ok" and r["reports"] == 3 for r in res.rows), res.rows
    values = [r["val_loss"] for r in res.rows]
    assert res.best["val_loss"] == min(values) and all(math.isfinite(v) for v in values)
    assert sorted(r["hidden"] for r in res.rows) == [3, 3, 6, 6] and len({r["lr"] for r in res.rows}) == 4
    # the best trial's checkpoint evaluates to the reported metric
    again = sweep_trainables.evaluate_checkpoint(res.best["checkpoint"])
    assert abs(again - res.best["val_loss"]) <= 1e-12 * abs(again), (again, res.best)
    with open(res.files["csv"], newline="") as f:
        table = list(csv.DictReader(f))
    assert [float(r["val_loss"]) for r in table] == values
    md = Path(res.files["md"]).read_text()
    assert md.count("\n| ") == 5 and f"Best: trial {res.best['trial']}" in md
    best = json.loads(Path(res.files["best"]).read_text())
    assert best["config"] == {**spec.fixed, "lr": res.best["lr"], "hidden": res.best["hidden"]}
    assert best["checkpoint"] == res.best["checkpoint"] and best["value"] == res.best["val_loss"]


@pytest.mark.slow
def test_run_grid_ray_equals_local(local_ray):
    cells = [(3, 0), (3, 1), (5, 0), (5, 1)]
    local = run_grid(cells, sweep_trainables.grid_cell, engine="local")
    remote = run_grid(cells, sweep_trainables.grid_cell, engine="ray")
    assert remote == local, f"ray {remote} != local {local}"
    assert len(set(local)) == 4
    with pytest.raises(UserError, match="engine: expected 'local' or 'ray', got 'dask'"):
        run_grid(cells, sweep_trainables.grid_cell, engine="dask")


# ---------------------------------------------------------------- through the command line
# rnnkit sweep SPEC and rnnkit bench longlag --engine ray on the same local Ray; the best trial's
# checkpoint evaluates (rnnkit eval, and in float64 through the task) to the metric the sweep reported.
CLI_WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex".split()
CLI_SPEC = """\
task = "charlm"
num_trials = 4
metric = "val_loss"
mode = "min"
seed = 2

[fixed]
text = "{text}"
steps = 16
eval_every = 8
hidden = 8
emb = 4
batch = 4
bptt = 8
dtype = "float64"

[space]
lr = {{ loguniform = [1e-3, 3e-2] }}
cell = {{ grid = ["lstm", "gru"] }}
"""


@pytest.mark.slow
def test_sweep_through_the_cli_and_the_best_checkpoint_evaluates_to_its_metric(local_ray, tmp_path, capsys,
                                                                                monkeypatch):
    from rnnkit.tasks.charlm import CharLM

    (tmp_path / "t.txt").write_text(" ".join(np.random.default_rng(0).choice(CLI_WORDS, 140)), encoding="utf-8")
    (tmp_path / "s.toml").write_text(CLI_SPEC.format(text="t.txt"))  # relative to where rnnkit sweep runs
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "s.toml", "--out", "sw"]) == 0
    text = capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / "sw" / "results.csv")))
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows), rows
    assert sorted(r["cell"] for r in rows) == ["gru", "gru", "lstm", "lstm"], "the grid key"
    assert all(r["reports"] == "2" for r in rows), "a report at every evaluation (steps 8 and 16)"
    best = json.loads((tmp_path / "sw" / "best.json").read_text())
    assert best["value"] == min(float(r["val_loss"]) for r in rows) and "| trial | lr | cell |" in text
    assert best["config"]["cell"] in ("lstm", "gru") and best["config"]["steps"] == 16
    assert len(list((tmp_path / "sw" / "runs").iterdir())) == 4, "each trial's run directory"

    capsys.readouterr()
    assert main(["eval", best["checkpoint"]]) == 0
    printed = float(re.search(r"loss ([\d.]+) nats/char", capsys.readouterr().out).group(1))
    assert abs(printed - best["value"]) < 6e-5, f"rnnkit eval printed {printed}, the sweep reported {best['value']}"
    lm = CharLM.load(best["checkpoint"])
    assert lm.config.cell == best["config"]["cell"] and lm.model.emb.params["weight"].dtype == np.float64
    val = lm.evaluate("val")["loss"]
    assert abs(val - best["value"]) <= 1e-12 * abs(val), f"val loss of the best checkpoint {val} != {best['value']}"

    # bad specs: one line naming the file and key, before Ray runs anything
    (tmp_path / "bad.toml").write_text(CLI_SPEC.format(text="t.txt").replace("hidden = 8", "hiden = 8"))
    assert main(["sweep", "bad.toml", "--out", "sw2"]) == 2
    assert "bad.toml: [fixed].hiden: not a setting of task 'charlm'" in capsys.readouterr().err
    (tmp_path / "bad2.toml").write_text(CLI_SPEC.format(text="t.txt").replace('task = "charlm"', 'task = "nope"'))
    assert main(["sweep", "bad2.toml"]) == 2
    assert "bad2.toml: task: expected one of charlm, " in capsys.readouterr().err
    assert main(["sweep", "s.toml", "--out", "sw"]) == 2, "results are never overwritten"
    assert "holds an earlier run's" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_longlag_on_ray_gives_the_local_table(local_ray, tmp_path, capsys):
    flags = ["bench", "longlag", "--tasks", "adding,copy", "--T", "12", "--cells", "lstm,gru", "--seeds", "2",
             "--budget", "40", "--eval-every", "20", "--batch", "10", "--hidden", "4"]
    assert main([*flags, "--out", str(tmp_path / "local.md"), "--log", str(tmp_path / "local.jsonl")]) == 0
    assert main([*flags, "--engine", "ray", "--out", str(tmp_path / "ray.md"),
                 "--log", str(tmp_path / "ray.jsonl")]) == 0
    local, remote = (tmp_path / "local.md").read_text(), (tmp_path / "ray.md").read_text()
    assert local.count("\n| ") == 1 + 4, "one row per (task, T, cell)"
    assert remote == local, f"ray table:\n{remote}\nlocal table:\n{local}"

    def records(name):
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (tmp_path / name).read_text().splitlines()]

    assert records("ray.jsonl") == records("local.jsonl"), "the evaluations, in the same order"


@pytest.mark.slow
def test_sweep_keys_become_the_task_flags():
    from rnnkit.cli import TASK_SPECS
    from rnnkit.cli.sweep import flags, task_parser

    spec = next(s for s in TASK_SPECS if s.name == "classify")
    _, actions = task_parser(spec)
    assert {"lr", "hidden", "pooling", "bidirectional", "nesterov", "steps"} <= set(actions)
    assert not {"out", "resume", "help"} & set(actions), "run-level flags are the sweep's own"
    got = flags({"bidirectional": False, "nesterov": True, "lr": 0.01, "progress": False, "pooling": "max"}, actions)
    assert got == ["--no-bidirectional", "--lr", "0.01", "--nesterov", "--pooling", "max", "--no-progress"]
    assert flags({"bidirectional": True, "nesterov": False, "progress": True}, actions) == ["--bidirectional"]
    with pytest.raises(UserError, match=r"nesterov: a switch \(--nesterov\); expected true or false, got 'yes'"):
        flags({"nesterov": "yes"}, actions)
