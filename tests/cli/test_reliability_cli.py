"""Reliability through the command line, where a user meets it (docs/reliability.md): divergence,
stop signals, one writer per --out, bad checkpoints and sizes, small splits and files.  Tiny
trainings of a few steps; torch-free."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import rnnkit
from rnnkit.cli import main
from rnnkit.io.checkpoint import load_checkpoint, save_checkpoint
from rnnkit.io.lock import LOCK_NAME
from conftest import one_line_error

SRC = os.path.dirname(os.path.dirname(os.path.abspath(rnnkit.__file__)))
SMALL = ["--hidden", "12", "--emb", "6", "--batch", "4", "--bptt", "12", "--layers", "1", "--no-progress"]


def train(text_file, out, *extra):
    return main(["train", "charlm", "--text", str(text_file), *SMALL, "--out", str(out), *extra])


def step_of(path) -> int:
    return load_checkpoint(path)[1]["train"]["step"]


def arrays_of(path) -> dict:
    return {k: v for k, v in load_checkpoint(path)[0].items() if k.startswith(("task/", "optim/", "carry/"))}


# ---------------------------------------------------------------- divergence
def test_divergence_keeps_the_last_finite_checkpoint(tmp_path, text_file, capsys):
    """The issue's case: --lr 1e37 --checkpoint-every 1.  Step 1 is finite (huge weights); a later
    step k's loss or gradient is not (which, and which step, depends on how far the log-softmax and the
    float32 activations' rounding stay finite): rejected, exit 2, last.safetensors is step k - 1's and
    evaluates cleanly."""
    out = tmp_path / "D"
    rc = train(text_file, out, "--steps", "20", "--lr", "1e37", "--checkpoint-every", "1", "--eval-every", "0")
    line = one_line_error(capsys, rc, r"non-finite (loss \((inf|nan)\)|gradient '[\w.]+' \((-?inf|nan) at index .*\)) "
                                      r"at step (\d+); training stopped \(last good checkpoint kept at .*last.safetensors\)")
    k = int(re.search(r"at step (\d+);", line).group(1))
    ck = out / "last.safetensors"
    assert k >= 2 and step_of(ck) == k - 1 and all(np.isfinite(a).all() for a in arrays_of(ck).values())
    assert main(["eval", str(ck)]) == 0
    assert "val split" in capsys.readouterr().out
    # --steps 1: the one step is finite, so the run ends normally
    assert train(text_file, tmp_path / "D1", "--steps", "1", "--lr", "1e37") == 0
    capsys.readouterr()


def test_update_to_inf_is_rejected_before_any_save(tmp_path, text_file, capsys):
    """A finite loss and gradient whose update overflows the float32 weights: the step is rejected after
    the update and before any save, whether the run is new (no checkpoint) or resumed (kept)."""
    rc = train(text_file, tmp_path / "new", "--steps", "1", "--lr", "1e39")
    one_line_error(capsys, rc, r"non-finite parameter '[\w.]+' after the update \((-?inf|nan) at index .*\) at step 1; "
                               r"training stopped \(no checkpoint written\)")
    assert not (tmp_path / "new" / "last.safetensors").exists()
    out = tmp_path / "run"
    assert train(text_file, out, "--steps", "3") == 0
    ck = out / "last.safetensors"
    before = ck.read_bytes()
    capsys.readouterr()
    rc = main(["train", "charlm", "--resume", str(ck), "--steps", "6", "--lr", "1e39", "--checkpoint-every", "1"])
    one_line_error(capsys, rc, r"after the update .* at step 4; training stopped \(last good checkpoint kept")
    assert ck.read_bytes() == before
    assert main(["eval", str(ck)]) == 0


# ---------------------------------------------------------------- stop signals
def _start_training(text_file, out):
    env = dict(os.environ, PYTHONPATH=SRC)
    cmd = [sys.executable, "-m", "rnnkit", "train", "charlm", "--text", str(text_file), *SMALL, "--steps", "100000",
           "--eval-every", "0", "--log-every", "1", "--out", str(out)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_steps(proc, log, n=3, timeout=60):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if log.exists() and sum('"loss"' in ln for ln in log.read_text().splitlines()) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    pytest.fail("training did not log steps in time")


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_stop_signal_saves_exits_nonzero_and_resume_is_bit_identical(tmp_path, text_file, capsys, sig, code):
    out = tmp_path / "run"
    proc = _start_training(text_file, out)
    try:
        _wait_for_steps(proc, out / "metrics.jsonl")
        # meanwhile a second run on the same --out is refused, naming the directory and the holder's pid
        rc = train(text_file, out, "--steps", "2")
        one_line_error(capsys, rc, rf"--out '{re.escape(str(out))}' is in use by process {proc.pid}, which holds "
                                   rf"{re.escape(LOCK_NAME)}")
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and "interrupted: resume with" in stdout, (stdout, stderr)
    ck = out / "last.safetensors"
    k = step_of(ck)
    assert k >= 3 and not (out / LOCK_NAME).exists()
    # resume to k + 3 steps == 3 + k steps straight, bit for bit (parameters, optimizer state, carry)
    assert main(["train", "charlm", "--resume", str(ck), "--steps", str(k + 3), "--no-progress"]) == 0
    straight = tmp_path / "straight"
    assert train(text_file, straight, "--steps", str(k + 3), "--eval-every", "0") == 0
    capsys.readouterr()
    a, b = arrays_of(ck), arrays_of(straight / "last.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name]), f"{name}: resumed after {signal.Signals(sig).name} differs"


# ---------------------------------------------------------------- one writer per --out
def test_stale_lock_and_stray_temps_do_not_block(tmp_path, text_file, capsys):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / LOCK_NAME).write_text(dead.stdout)  # the lock file of a process that died (kill -9)
    stray = out / "last.safetensors.a1b2c3d4.tmp"  # a writer killed mid-write
    stray.write_bytes(b"half")
    assert train(text_file, out, "--steps", "2") == 0
    assert not stray.exists() and not (out / LOCK_NAME).exists()
    capsys.readouterr()


def test_out_that_cannot_be_written_is_one_line(tmp_path, text_file, capsys, monkeypatch):
    import errno

    import rnnkit.io.lock as lock

    def read_only(*a, **kw):  # the tests run as root: a read-only mount is simulated at the probe write
        raise OSError(errno.EROFS, "Read-only file system")
    with monkeypatch.context() as m:
        m.setattr(lock.tempfile, "mkstemp", read_only)
        one_line_error(capsys, train(text_file, tmp_path / "ro", "--steps", "1"),
                       r"--out '.*ro': is on a read-only file system; choose a writable directory")
    (tmp_path / "file").write_text("x")
    one_line_error(capsys, train(text_file, tmp_path / "file", "--steps", "1"), r"is a file, expected a directory")
    one_line_error(capsys, train(text_file, "/proc/rnnkit-test", "--steps", "1"), r"is under /proc")
    one_line_error(capsys, main(["demo", "--out", str(tmp_path / "file"), "--time-limit", "1"]),
                   r"demo --out .*: is a file")


# ---------------------------------------------------------------- checkpoints and sizes
def _edited(src, dst, edit_arrays=None, edit_meta=None):
    """A hand-made checkpoint: ``src`` edited, saved with a valid digest (only validation can catch it)."""
    arrays, meta = load_checkpoint(src)
    if edit_arrays:
        edit_arrays(arrays)
    if edit_meta:
        edit_meta(meta)
    save_checkpoint(dst, arrays, meta)
    return dst


def _float64(a):
    a["task/rnn.weight_hh_l0"] = a["task/rnn.weight_hh_l0"].astype(np.float64)


def _step(m):
    m["train"]["step"] = -5


def _hidden(m):
    m["task"]["config"]["hidden"] = 100000


@pytest.mark.parametrize("case,edit_arrays,edit_meta,match", [
    ("float64", _float64, None, r"tensor 'task/rnn.weight_hh_l0' is float64, the model is float32"),
    ("step", None, _step, r"training step = -5, expected an integer >= 0"),
    ("hidden", None, _hidden, r"tensor 'task/[\w.]+' has shape \([\d, ]+\), the model its metadata describes "
                              r"has \(.*\b[14]00000\b.*\)"),
])
def test_hand_made_checkpoints_are_refused_before_building(tmp_path, text_file, capsys, case, edit_arrays, edit_meta,
                                                           match):
    """On every command that loads one (eval, sample, train --resume): one line naming the file and the
    tensor, exit 2, before the model is built (hidden 100000 would allocate hundreds of GiB)."""
    assert train(text_file, tmp_path / "run", "--steps", "2") == 0
    capsys.readouterr()
    ck = str(_edited(tmp_path / "run" / "last.safetensors", tmp_path / f"{case}.safetensors", edit_arrays, edit_meta))
    commands = [["eval", ck], ["sample", ck, "--length", "5"], ["train", "charlm", "--resume", ck, "--steps", "4"]]
    for cmd in commands[2:] if case == "step" else commands:  # a step matters to a resume only
        line = one_line_error(capsys, main(cmd), match)
        assert line.startswith(f"rnnkit: error: checkpoint {ck!r}: "), line


def test_forecast_checkpoint_validated_too(tmp_path, capsys):
    """The one loading path serves every task: `rnnkit forecast` and `eval` of a forecast checkpoint."""
    out = tmp_path / "f"
    assert main(["train", "forecast", "--steps", "2", "--hidden", "4", "--series-length", "400", "--out", str(out),
                 "--no-progress"]) == 0
    capsys.readouterr()
    bad = str(_edited(out / "forecast.safetensors", tmp_path / "bad.safetensors", edit_meta=_hidden))
    (tmp_path / "s.csv").write_text("v\n" + "\n".join(str(i % 7) for i in range(100)) + "\n")
    for cmd in (["eval", bad], ["forecast", bad, "--csv", str(tmp_path / "s.csv"), "--column", "v"]):
        one_line_error(capsys, main(cmd), r"tensor 'task/[\w.]+' has shape \([\d, ]+\), the model its metadata "
                                          r"describes has \(.*\b[14]00000\b.*\)")


def test_missing_optimizer_state_refuses_resume_unless_reset(tmp_path, text_file, capsys):
    assert train(text_file, tmp_path / "run", "--steps", "3") == 0
    capsys.readouterr()

    def drop_moments(a):
        for k in [k for k in a if k.startswith("optim/")]:
            del a[k]
    ck = str(_edited(tmp_path / "run" / "last.safetensors", tmp_path / "run" / "noopt.safetensors", drop_moments))
    one_line_error(capsys, main(["train", "charlm", "--resume", ck, "--steps", "5"]),
                   r"optimizer state missing: .*pass --reset-optimizer to resume with a fresh optimizer state")
    assert main(["train", "charlm", "--resume", ck, "--steps", "5", "--reset-optimizer", "--no-progress"]) == 0
    assert "optimizer state reset (--reset-optimizer)" in capsys.readouterr().out
    assert step_of(tmp_path / "run" / "last.safetensors") == 5
    one_line_error(capsys, train(text_file, tmp_path / "new", "--reset-optimizer"),
                   r"--reset-optimizer: only with --resume")


@pytest.mark.parametrize("task", [["charlm", "--max-chars", "20000", "--hidden", "100000"],
                                  ["forecast", "--hidden", "100000"], ["adding", "--hidden", "100000"]])
def test_model_larger_than_memory_refused_before_allocating(tmp_path, capsys, task):
    out = tmp_path / "run"
    line = one_line_error(capsys, main(["train", *task, "--out", str(out)]),
                          rf"train {task[0]}: this model needs about [\d.]+ (GiB|TiB) \(\d+ bytes\), more than the "
                          r"[\d.]+ GiB of physical memory of this machine")
    assert not out.exists(), line  # refused before anything was written


# ---------------------------------------------------------------- forecast data and summary
def test_csv_value_out_of_float32_range_is_one_line(tmp_path, capsys):
    csv = tmp_path / "big.csv"
    values = [str(np.sin(i / 5)) for i in range(300)]
    values[150] = "1e300"
    csv.write_text("v\n" + "\n".join(values) + "\n")
    pattern = r"big.csv: line 152: value '1e300' in column 'v' is out of range: expected \|value\| <= 3.4e\+38"
    one_line_error(capsys, main(["train", "forecast", "--csv", str(csv), "--column", "v", "--steps", "2",
                                 "--out", str(tmp_path / "f"), "--no-progress"]), pattern)
    out = tmp_path / "mg"
    assert main(["train", "forecast", "--steps", "2", "--hidden", "4", "--series-length", "400", "--out", str(out),
                 "--no-progress"]) == 0
    capsys.readouterr()
    one_line_error(capsys, main(["forecast", str(out / "forecast.safetensors"), "--csv", str(csv), "--column", "v"]),
                   pattern)
    values[150] = "1e38"  # in range, but far outside the training data once normalised
    csv.write_text("v\n" + "\n".join(values) + "\n")
    one_line_error(capsys, main(["forecast", str(out / "forecast.safetensors"), "--csv", str(csv), "--column", "v"]),
                   r"values too far from the training data \(mean .*\): normalised they exceed float32")


def test_forecast_summary_says_above_when_the_model_is_worse(tmp_path, capsys):
    from rnnkit.cli.forecast import compare_to_naive
    assert main(["train", "forecast", "--steps", "1", "--hidden", "4", "--series-length", "400", "--out",
                 str(tmp_path / "mg"), "--no-progress"]) == 0  # one step: far worse than the last value
    out = capsys.readouterr().out
    assert re.search(r"horizon 1: model RMSE [\d.]+x above the naive baseline \(the model is worse\)", out), out
    assert compare_to_naive(0.1, 0.5) == "model RMSE 5.0x below the naive baseline"
    assert compare_to_naive(0.6, 0.1) == "model RMSE 6.0x above the naive baseline (the model is worse)"


# ---------------------------------------------------------------- data refused before training
@pytest.mark.parametrize("text,match", [
    ("ab" * 18 + "abc", r"text: the val split has 1 character\(s\), too few to evaluate \(needs at least 2"),
    ("a" * 5000, r"text: has only one distinct character \('a'\); a language model needs at least 2"),
])
def test_small_split_and_one_character_vocabulary_refused_before_training(tmp_path, capsys, text, match):
    p = tmp_path / "t.txt"
    p.write_text(text)
    out = tmp_path / "run"
    one_line_error(capsys, main(["train", "charlm", "--text", str(p), "--batch", "1", "--bptt", "2", "--hidden", "4",
                                 "--emb", "2", "--layers", "1", "--out", str(out), "--no-progress"]), match)
    assert not out.exists()  # nothing trained, nothing written


def test_steps_0_plots_without_a_warning(tmp_path, text_file, capsys, recwarn):
    pytest.importorskip("matplotlib")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning (matplotlib's legend one) fails the run
        assert train(text_file, tmp_path / "run", "--steps", "0") == 0
    captured = capsys.readouterr()
    assert "Warning" not in captured.err and (tmp_path / "run" / "loss.png").read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------- eval --text streams
def test_eval_text_streams_in_chunks_with_the_same_numbers(tmp_path, text_file, capsys):
    """``rnnkit eval --text`` reads the file in chunks (TextFile): exactly the numbers of the in-memory
    evaluation, for the whole file and each split, multi-byte characters across chunk boundaries."""
    from rnnkit.data.textfile import TextFile
    from rnnkit.tasks.charlm import CharLM

    text = "".join(f"é{w}ü€ " for w in text_file.read_text().split())  # 1-, 2- and 3-byte characters
    p = tmp_path / "u.txt"
    p.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))  # with a BOM, skipped
    assert train(p, tmp_path / "run", "--steps", "2") == 0
    ck = str(tmp_path / "run" / "last.safetensors")
    lm = CharLM.load(ck)
    for split in (None, "train", "val", "test"):
        assert lm.evaluate_file(p, split) == lm.evaluate_text(text, split), split
    f = TextFile(p, chunk_bytes=7)  # boundaries inside characters: readers still start at the right one
    assert len(f) == len(text) and all(f.reader(k).read(50) == text[k : k + 50] for k in (0, 1, 5, 333, len(text) - 3))
    capsys.readouterr()
    assert main(["eval", ck, "--text", str(p), "--split", "val"]) == 0
    ev = lm.evaluate_text(text, "val")
    assert f"val split: {ev['chars']} chars, loss {ev['loss']:.4f}" in capsys.readouterr().out
    # the whole file is checked before the evaluation starts: one line, nothing evaluated
    p.write_text(text + "Q", encoding="utf-8")
    one_line_error(capsys, main(["eval", ck, "--text", str(p)]), r"1 character\(s\) not in the model's vocabulary.*'Q'")
    p.write_bytes(text.encode("utf-8")[:-2])  # cut inside the last character (the € before the final space)
    one_line_error(capsys, main(["eval", ck, "--text", str(p)]), r"is not valid UTF-8 \(byte at offset \d+\)")


@pytest.mark.slow
def test_files_follow_the_umask(tmp_path, text_file, capsys):
    """Checkpoints, the trimmed metrics.jsonl and loss.png: 0o666 & ~umask (mkstemp alone gives 0600)."""
    import shutil
    out = tmp_path / "run"
    old = os.umask(0o027)
    try:
        assert train(text_file, out, "--steps", "2") == 0
        shutil.copy(out / "last.safetensors", out / "step2.safetensors")
        assert main(["train", "charlm", "--resume", str(out / "last.safetensors"), "--steps", "4",
                     "--no-progress"]) == 0
        # resuming the older checkpoint rewrites (trims) metrics.jsonl
        assert main(["train", "charlm", "--resume", str(out / "step2.safetensors"), "--steps", "3",
                     "--no-progress"]) == 0
    finally:
        os.umask(old)
    capsys.readouterr()
    names = ["last.safetensors", "best.safetensors", "metrics.jsonl"]
    if (out / "loss.png").exists():
        names.append("loss.png")
    modes = {n: oct(os.stat(out / n).st_mode & 0o777) for n in names}
    assert set(modes.values()) == {oct(0o640)}, modes
    assert max(json.loads(ln)["step"] for ln in (out / "metrics.jsonl").read_text().splitlines()) == 3


def test_a_partial_last_metrics_line_of_a_killed_run_does_not_break_the_resume(tmp_path, text_file, capsys):
    out = tmp_path / "run"
    assert train(text_file, out, "--steps", "2", "--log-every", "1") == 0
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 3, "loss": 2.')  # kill -9 in the middle of an append
    assert main(["train", "charlm", "--resume", str(out / "last.safetensors"), "--steps", "3", "--no-progress"]) == 0
    capsys.readouterr()
    from rnnkit.train import read_metrics
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r and "event" not in r] == [1, 2, 3]


def test_out_of_memory_without_a_plan_is_one_line(tmp_path, capsys):
    """A task without model_plan whose model does not fit: numpy's MemoryError becomes one line, exit 2
    (simulated: allocating for real would strain the shared machine)."""
    from rnnkit.cli import TASK_SPECS
    from rnnkit.cli.longlag import AddingSpec

    class Huge(AddingSpec):
        def new_task(self, config, args):
            raise MemoryError("Unable to allocate 298. GiB for an array with shape (400000, 100000)")

    specs = [Huge() if spec.name == "adding" else spec for spec in TASK_SPECS]
    one_line_error(capsys, main(["train", "adding", "--out", str(tmp_path / "run")], specs=specs),
                   r"out of memory: Unable to allocate 298. GiB .*; use smaller sizes")
    assert not (tmp_path / "run").exists()
