"""The command line, run in-process with main([...]): train, resume, sample, eval, demo, bad input."""
import os
import subprocess
import sys

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.io.checkpoint import load_checkpoint, save_checkpoint
from conftest import one_line_error as _one_line_error

SMALL = ["--hidden", "12", "--emb", "6", "--batch", "4", "--bptt", "12", "--layers", "1", "--no-progress"]


@pytest.fixture
def trained(tmp_path, text_file, capsys):
    out = tmp_path / "run"
    rc = main(["train", "charlm", "--text", str(text_file), *SMALL, "--steps", "30", "--eval-every", "10",
               "--out", str(out), "--seed", "3"])
    assert rc == 0
    return out, capsys.readouterr().out


def test_train_outputs(trained):
    out, stdout = trained
    assert {"last.safetensors", "best.safetensors", "metrics.jsonl", "loss.png"} <= set(os.listdir(out))
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "step     30" in stdout and "bits/char" in stdout and f"checkpoint: {out}" in stdout
    _, meta = load_checkpoint(out / "last.safetensors", kind="charlm")
    assert meta["train"]["step"] == 30 and meta["task"]["config"]["hidden"] == 12


def test_resume_sample_eval(trained, text_file, capsys):
    out, _ = trained
    ck = str(out / "last.safetensors")
    assert main(["train", "charlm", "--resume", ck, "--steps", "40", "--no-progress"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert load_checkpoint(ck)[1]["train"]["step"] == 40
    assert main(["sample", ck, "--prime", "the ", "--length", "40", "--seed", "1"]) == 0
    s1 = capsys.readouterr().out
    assert main(["sample", ck, "--prime", "the ", "--length", "40", "--seed", "1"]) == 0
    assert capsys.readouterr().out == s1 and s1.startswith("the ") and len(s1) == 45
    assert main(["eval", ck, "--split", "test"]) == 0
    assert "test split" in capsys.readouterr().out
    assert main(["eval", ck, "--text", str(text_file)]) == 0
    assert "bits/char" in capsys.readouterr().out


def test_bad_input(tmp_path, trained, text_file, capsys):
    out, _ = trained
    ck = out / "last.safetensors"
    good = ck.read_bytes()
    rc = main(["train", "charlm", "--text", str(tmp_path / "missing.txt"), *SMALL, "--out", str(tmp_path / "x")])
    _one_line_error(capsys, rc, "file not found")
    (tmp_path / "bin.txt").write_bytes(b"\x00\x01\x02" * 100)
    _one_line_error(capsys, main(["train", "charlm", "--text", str(tmp_path / "bin.txt"), *SMALL,
                                  "--out", str(tmp_path / "y")]), "looks binary")
    _one_line_error(capsys, main(["sample", str(ck), "--prime", "Q"]), "not in the model's vocabulary.*'Q'")
    _one_line_error(capsys, main(["train", "charlm", "--text", str(text_file), *SMALL, "--out", str(out)]),
                    "holds an earlier run.s .*last.safetensors.*continue it with --resume")
    _one_line_error(capsys, main(["train", "charlm", "--resume", str(ck), "--hidden", "99"]),
                    "--hidden 99: differs from the checkpoint's 12")
    _one_line_error(capsys, main(["train", "charlm", "--resume", str(ck), "--optimizer", "sgd", "--steps", "50"]),
                    "optimizer state: expected SGD, got 'Adam'")
    other = tmp_path / "f.safetensors"
    save_checkpoint(other, {"w": np.zeros(2)}, {"kind": "forecast"})
    _one_line_error(capsys, main(["sample", str(other)]), "holds a 'forecast' model, expected a 'charlm'")
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(good[: len(good) // 2])
    _one_line_error(capsys, main(["eval", str(trunc)]), "truncated")
    assert ck.read_bytes() == good  # nothing above touched the good checkpoint
    # a hand-made checkpoint holding NaN is refused before anything is built (divergence in
    # training: test_reliability_cli.py)
    from rnnkit.tasks.charlm import CharLM
    from rnnkit.train import Trainer
    tr = Trainer.resume(ck, CharLM)
    tr.task.model.params["head.bias"][0] = np.nan  # a saved state that produces a NaN loss on the next step
    run = tmp_path / "div"
    tr.out_dir = str(run)
    os.makedirs(run)
    tr.save(run / "last.safetensors")
    before = (run / "last.safetensors").read_bytes()
    rc = main(["train", "charlm", "--resume", str(run / "last.safetensors"), "--text", str(text_file),
               "--steps", "50"])
    _one_line_error(capsys, rc, r"tensor 'task/head.bias' is not finite \(nan at index \(0,\)\); the file holds a "
                    r"diverged model")
    assert (run / "last.safetensors").read_bytes() == before
    assert main(["train", "charlm", "--steps", "x"]) == 2  # argparse usage error
    capsys.readouterr()
    text_file.rename(tmp_path / "moved.txt")  # the corpus recorded in the checkpoint is gone
    _one_line_error(capsys, main(["eval", str(ck)]), r"corpus recorded in this model \(file\) cannot be used: "
                    r"--text: file not found.*pass the training text again")
    assert main(["eval", str(ck), "--text", str(tmp_path / "moved.txt")]) == 0


@pytest.mark.slow
def test_demo_small(tmp_path, capsys, monkeypatch):
    out = tmp_path / "demo"
    rc = main(["demo", "--time-limit", "4", "--max-chars", "30000", "--hidden", "16", "--out", str(out), "--quiet"])
    stdout = capsys.readouterr().out
    assert rc == 0
    assert stdout.count("--- step") >= 2 and "bits/char" in stdout
    assert f"checkpoint: {out / 'last.safetensors'}" in stdout and f"loss curve: {out / 'loss.png'}" in stdout
    # without matplotlib: one clear line instead of the plot
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes the import fail
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    rc = main(["demo", "--time-limit", "1", "--max-chars", "30000", "--hidden", "8", "--out", str(out), "--quiet"])
    assert rc == 0
    assert "loss curve: not plotted (matplotlib is not installed" in capsys.readouterr().out


@pytest.mark.slow
def test_python_m_rnnkit_help():
    r = subprocess.run([sys.executable, "-m", "rnnkit", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "train" in r.stdout and "demo" in r.stdout


@pytest.mark.slow
def test_demo_never_removes_files_it_did_not_write(tmp_path, capsys, monkeypatch):
    # a run directory with metrics.jsonl and a user's file: refused, everything still there
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"event": "start", "step": 0}\n')
    (run / "notes.txt").write_text("mine")
    args = ["demo", "--time-limit", "1", "--max-chars", "30000", "--hidden", "8", "--quiet"]
    _one_line_error(capsys, main([*args, "--out", str(run)]), r"demo --out .*run: not an earlier demo's directory "
                    r"\(holds 'notes.txt'\)")
    assert sorted(os.listdir(run)) == ["metrics.jsonl", "notes.txt"] and (run / "notes.txt").read_text() == "mine"
    # the current directory, or a training run's directory (same file names, no demo marker): refused too
    (run / "notes.txt").unlink()
    (run / "last.safetensors").write_bytes(b"x")
    _one_line_error(capsys, main([*args, "--out", str(run)]), "not an earlier demo's directory")
    assert sorted(os.listdir(run)) == ["last.safetensors", "metrics.jsonl"]
    monkeypatch.chdir(run)
    _one_line_error(capsys, main([*args, "--out", "."]), r"demo --out \.: not an earlier demo's directory")
    assert sorted(os.listdir(run)) == ["last.safetensors", "metrics.jsonl"]
    # a demo's own directory is reused: its files are replaced, a file added later blocks the reuse
    demo = tmp_path / "demo"
    assert main([*args, "--out", str(demo)]) == 0
    assert {"last.safetensors", "metrics.jsonl", ".rnnkit-demo"} <= set(os.listdir(demo))
    assert main([*args, "--out", str(demo)]) == 0
    capsys.readouterr()
    (demo / "keep.txt").write_text("mine")
    _one_line_error(capsys, main([*args, "--out", str(demo)]), r"holds 'keep.txt'")
    assert (demo / "keep.txt").read_text() == "mine" and (demo / "last.safetensors").exists()


@pytest.mark.parametrize("task", [["charlm", "--max-chars", "20000"], ["forecast"], ["adding"], ["copy"]])
def test_negative_seed_is_a_clear_error(task, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", *task, "--seed", "-1", "--no-progress", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "argument --seed: expected an integer >= 0, got '-1'" in err, err
    assert not out.exists()


def test_negative_seed_rejected_by_the_configs():
    from rnnkit.tasks.charlm import CharLMConfig
    from rnnkit.tasks.forecast import ForecastConfig
    from rnnkit.tasks.longlag import AddingConfig, CopyConfig
    from rnnkit.train import TrainConfig

    for cls in (CharLMConfig, ForecastConfig, AddingConfig, CopyConfig, TrainConfig):
        with pytest.raises(ValueError, match=r"seed: expected an integer >= 0, got -1"):
            cls(seed=-1)


def test_every_train_config_field_has_a_validated_flag(tmp_path, capsys):
    import dataclasses

    from rnnkit.cli import build_parser, train_config_from_args
    from rnnkit.train import TrainConfig

    parser = build_parser()
    args = parser.parse_args(["train", "forecast", "--schedule", "step", "--step-size", "7", "--gamma", "0.5",
                              "--min-lr", "1e-4", "--log-every", "3", "--no-progress"])
    cfg = train_config_from_args(args)
    assert (cfg.step_size, cfg.gamma, cfg.min_lr, cfg.log_every, cfg.progress) == (7, 0.5, 1e-4, 3, False)
    for task in ("charlm", "forecast"):
        parsed = vars(parser.parse_args(["train", task]))
        assert {f.name for f in dataclasses.fields(TrainConfig)} <= set(parsed), task
    for flag, bad, msg in (("--step-size", "0", "a positive integer"), ("--gamma", "nan", "a finite number > 0"),
                           ("--gamma", "0", "a finite number > 0"), ("--min-lr", "-1", "a finite number >= 0"),
                           ("--min-lr", "inf", "a finite number >= 0"), ("--log-every", "-1", "an integer >= 0"),
                           ("--ema", "1", "a rate in [0, 1)"), ("--ema", "-0.5", "a rate in [0, 1)")):
        rc = main(["train", "forecast", flag, bad, "--no-progress", "--out", str(tmp_path / "x")])
        err = capsys.readouterr().err
        assert rc == 2 and f"argument {flag}: expected {msg}, got '{bad}'" in err and "Traceback" not in err, err
    for field, bad in (("gamma", float("nan")), ("gamma", 0.0), ("min_lr", -1.0), ("min_lr", float("inf")),
                       ("step_size", 0), ("ema", 1.0)):
        with pytest.raises(ValueError, match=rf"{field}: expected"):
            TrainConfig(**{field: bad})
    assert not (tmp_path / "x").exists()


def test_eval_text_with_split_evaluates_that_split_of_the_file(trained, text_file, capsys):
    """``eval CKPT --text FILE --split S``: the S split of FILE (90/5/5 like training), not the whole file."""
    from rnnkit.data.text import split_ids
    from rnnkit.tasks.charlm import CharLM

    out, _ = trained
    ck = str(out / "last.safetensors")
    lm = CharLM.load(ck)
    text = text_file.read_text()
    for split in ("val", "test"):
        ids = split_ids(lm.vocab.encode(text))[split]
        want = lm.evaluate(split, ids)
        assert main(["eval", ck, "--text", str(text_file), "--split", split]) == 0
        line = capsys.readouterr().out.strip()
        assert line == (f"{text_file} {split} split: {want['chars']} chars, loss {want['loss']:.4f} nats/char = "
                        f"{want['bpc']:.3f} bits/char"), line
    whole = lm.evaluate_text(text)
    assert main(["eval", ck, "--text", str(text_file)]) == 0
    assert capsys.readouterr().out.strip().startswith(f"{text_file}: {whole['chars']} chars, loss {whole['loss']:.4f}")
    assert whole["chars"] > 2 * want["chars"]  # the whole file is not a split of it


def test_each_checkpoint_is_read_once(trained, text_file, capsys, monkeypatch):
    """--resume, eval and sample read the checkpoint's data once (one parse, one validation; before it,
    rnnkit.train.guard reads the header alone to validate sizes and memory before anything is built)."""
    import collections

    import rnnkit.train.guard as state

    out, _ = trained
    ck = str(out / "last.safetensors")
    reads = collections.Counter()
    real = state.load_checkpoint

    def counting(path, *a, **kw):
        reads[os.fspath(path)] += 1
        return real(path, *a, **kw)

    monkeypatch.setattr(state, "load_checkpoint", counting)
    for argv in (["train", "charlm", "--resume", ck, "--steps", "31", "--no-progress"], ["eval", ck, "--split", "test"],
                 ["sample", ck, "--length", "5", "--seed", "1"]):
        reads.clear()
        assert main(argv) == 0
        assert reads == {ck: 1}, f"{argv[0]}: {dict(reads)}"
    capsys.readouterr()
