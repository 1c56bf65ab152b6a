"""``rnnkit sweep SPEC`` and ``rnnkit bench longlag --engine ray`` on a local Ray (started once here;
the commands use the running Ray).  The best trial's checkpoint evaluates, through ``rnnkit eval``
and in float64 through the task, to the metric the sweep reported."""
import csv
import json
import re

import numpy as np
import pytest

from rnnkit.cli import main

WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex".split()
SPEC = """\
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


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.tune")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def test_sweep_through_the_cli_and_the_best_checkpoint_evaluates_to_its_metric(local_ray, tmp_path, capsys,
                                                                                monkeypatch):
    from rnnkit.tasks.charlm import CharLM

    (tmp_path / "t.txt").write_text(" ".join(np.random.default_rng(0).choice(WORDS, 140)), encoding="utf-8")
    (tmp_path / "s.toml").write_text(SPEC.format(text="t.txt"))  # relative to where rnnkit sweep runs
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
    (tmp_path / "bad.toml").write_text(SPEC.format(text="t.txt").replace("hidden = 8", "hiden = 8"))
    assert main(["sweep", "bad.toml", "--out", "sw2"]) == 2
    assert "bad.toml: [fixed].hiden: not a setting of task 'charlm'" in capsys.readouterr().err
    (tmp_path / "bad2.toml").write_text(SPEC.format(text="t.txt").replace('task = "charlm"', 'task = "nope"'))
    assert main(["sweep", "bad2.toml"]) == 2
    assert "bad2.toml: task: expected one of charlm, " in capsys.readouterr().err
    assert main(["sweep", "s.toml", "--out", "sw"]) == 2, "results are never overwritten"
    assert "already holds a sweep's results" in capsys.readouterr().err


def test_bench_longlag_on_ray_gives_the_local_table(local_ray, tmp_path, capsys):
    flags = ["bench", "longlag", "--tasks", "adding,copy", "--T", "12", "--cells", "lstm,gru", "--seeds", "2",
             "--budget", "40", "--eval-every", "20", "--batch", "10", "--hidden", "4"]
    assert main([*flags, "--out", str(tmp_path / "local.md"), "--log", str(tmp_path / "local.jsonl")]) == 0
    assert main([*flags, "--engine", "ray", "--out", str(tmp_path / "ray.md"), "--log", str(tmp_path / "ray.jsonl")]) == 0
    local, remote = (tmp_path / "local.md").read_text(), (tmp_path / "ray.md").read_text()
    assert local.count("\n| ") == 1 + 4, "one row per (task, T, cell)"
    assert remote == local, f"ray table:\n{remote}\nlocal table:\n{local}"

    def records(name):
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (tmp_path / name).read_text().splitlines()]

    assert records("ray.jsonl") == records("local.jsonl"), "the evaluations, in the same order"
