"""Reliability through the command line, where a user meets it (docs/reliability.md): divergence,
stop signals, one writer per --out, bad checkpoints and sizes, small splits and files.  Tiny
trainings of a few steps; torch-free."""
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

SRC = os.path.dirname(os.path.dirname(os.path.abspath(rnnkit.__file__)))
SMALL = ["--hidden", "12", "--emb", "6", "--batch", "4", "--bptt", "12", "--layers", "1", "--no-progress"]


@pytest.fixture
def text_file(tmp_path):
    rng = np.random.default_rng(0)
    words = ["the ", "cat ", "sat ", "on ", "a ", "mat. ", "dog ", "ran\n"]
    p = tmp_path / "t.txt"
    p.write_text("".join(words[i] for i in rng.integers(0, len(words), 800)))
    return p


def one_line_error(capsys, rc, pattern) -> str:
    """rc 2, stderr one line ``rnnkit: error: ...`` matching ``pattern``, no traceback."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("rnnkit: error: "), (rc, err)
    assert "Traceback" not in err and re.search(pattern, lines[0]), lines[0]
    return lines[0]


def train(text_file, out, *extra):
    return main(["train", "charlm", "--text", str(text_file), *SMALL, "--out", str(out), *extra])


def step_of(path) -> int:
    return load_checkpoint(path)[1]["train"]["step"]


def arrays_of(path) -> dict:
    return {k: v for k, v in load_checkpoint(path)[0].items() if k.startswith(("task/", "optim/", "carry/"))}


# ---------------------------------------------------------------- divergence
def test_divergence_keeps_the_last_finite_checkpoint(tmp_path, text_file, capsys):
    """The issue's case: --lr 1e37 --checkpoint-every 1.  Step 1 is finite (huge weights), step 2's
    loss is not: rejected, exit 2, last.safetensors is step 1's and evaluates cleanly."""
    out = tmp_path / "D"
    rc = train(text_file, out, "--steps", "20", "--lr", "1e37", "--checkpoint-every", "1", "--eval-every", "0")
    one_line_error(capsys, rc, r"non-finite loss \((inf|nan)\) at step 2; training stopped \(last good checkpoint "
                               r"kept at .*last.safetensors\)")
    ck = out / "last.safetensors"
    assert step_of(ck) == 1 and all(np.isfinite(a).all() for a in arrays_of(ck).values())
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


def test_out_that_cannot_be_written_is_one_line(tmp_path, text_file, capsys):
    (tmp_path / "file").write_text("x")
    one_line_error(capsys, train(text_file, tmp_path / "file", "--steps", "1"), r"is a file, expected a directory")
    one_line_error(capsys, train(text_file, "/proc/rnnkit-test", "--steps", "1"), r"is under /proc")
    one_line_error(capsys, main(["demo", "--out", str(tmp_path / "file"), "--time-limit", "1"]),
                   r"demo --out .*: is a file")
