"""Issue 20, "every error is one line, even under MPI": full disks (a real tiny tmpfs where the
tests run as root, else skipped; a simulated short write everywhere), broken logs, MPI, sweep
specs; and the silent results: the resumed log, TSV headers, ONNX states.  Each test names the
item of the issue it covers; each failed on a480676."""
import contextlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.io.checkpoint import load_checkpoint
from test_reliability_cli import one_line_error, train

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import mpi_worker  # noqa: E402  (tests/mpi_worker.py: its launch helper)

PAGE = 4096


@pytest.fixture
def tiny_fs(tmp_path):
    """A 64 KiB tmpfs (root only) and ``fill(free_pages)``: a filler file leaving that many pages."""
    if os.geteuid() != 0:
        pytest.skip("a real full disk needs a tmpfs mount (root)")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)]).returncode:
        pytest.skip("cannot mount a tmpfs here")

    def fill(free_pages: int):
        filler = mnt / ".filler"
        st = os.statvfs(mnt)
        filler.write_bytes(b"\0" * ((st.f_bavail - free_pages) * st.f_frsize))
        return mnt

    try:
        yield fill
    finally:
        subprocess.run(["umount", str(mnt)])


def _complete_records(path):
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), f"metrics.jsonl: a partial last record {raw[-60:]!r}"
    return [json.loads(ln) for ln in raw.decode("utf-8").splitlines()]


# ---------------------------------------------------------------- 5-6. full disks
def test_5_disk_full_while_appending_metrics_is_one_line_and_no_partial_record(tiny_fs, text_file, capsys):
    out = tiny_fs(2) / "run"  # one page for the lock file, one for metrics.jsonl: full after ~25 records
    rc = train(text_file, out, "--steps", "400", "--log-every", "1", "--eval-every", "0")
    one_line_error(capsys, rc, r"cannot write .*metrics.jsonl': disk full \(ENOSPC\)")
    recs = _complete_records(out / "metrics.jsonl")
    assert len(recs) > 5 and recs[0]["event"] == "start"


def test_5_a_short_write_leaves_no_partial_record(tmp_path, text_file, capsys, monkeypatch):
    """Anywhere (no root): the disk fills in the middle of a metrics line (a short write)."""
    real, seen = os.write, []

    def short(fd, data):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}").endswith("metrics.jsonl"):
                seen.append(len(data))
                if len(seen) == 4:
                    return real(fd, bytes(data)[: len(data) // 2])
        return real(fd, data)

    monkeypatch.setattr(os, "write", short)
    rc = train(text_file, tmp_path / "run", "--steps", "20", "--log-every", "1", "--eval-every", "0")
    one_line_error(capsys, rc, r"metrics.jsonl': disk full \(ENOSPC\)")
    assert len(_complete_records(tmp_path / "run" / "metrics.jsonl")) == 3


def test_6_disk_already_full_at_start_is_one_line(tiny_fs, text_file, capsys):
    out = tiny_fs(0) / "run"
    one_line_error(capsys, train(text_file, out, "--steps", "2"), r"\.rnnkit\.lock': disk full \(ENOSPC\)")
    assert not (out / ".rnnkit.lock").exists()


# ---------------------------------------------------------------- 10. a broken log on --resume
def test_10_resume_with_a_non_utf8_torn_or_directory_log(tmp_path, text_file, capsys):
    out = tmp_path / "run"
    assert train(text_file, out, "--steps", "2") == 0
    log = out / "metrics.jsonl"
    good = log.read_bytes()
    log.write_bytes(good + b'{"step": 1, "loss": "\xff\xfe"}\n' + b'{"step": 2, "lo')
    assert main(["train", "charlm", "--resume", str(out / "last.safetensors"), "--steps", "3"]) == 0
    recs = _complete_records(log)
    assert recs[-1]["event"] == "stop" and recs[-1]["step"] == 3
    capsys.readouterr()
    log.unlink()
    log.mkdir()
    one_line_error(capsys, main(["train", "charlm", "--resume", str(out / "last.safetensors"), "--steps", "4"]),
                   r"metrics.jsonl': is a directory")


# ---------------------------------------------------------------- 9. MPI: one line, exit 2
@pytest.mark.slow
@pytest.mark.parametrize("case", ["corrupt", "missing", "empty", "wrong kind", "bad flag"])
def test_9_under_mpiexec_a_bad_resume_is_one_line_from_rank_0(tmp_path, text_file, case):
    ck = tmp_path / "run" / "last.safetensors"
    assert train(text_file, tmp_path / "run", "--steps", "2") == 0
    if case == "corrupt":
        ck.write_bytes(ck.read_bytes()[:-100] + b"x" * 100)
    elif case == "missing":
        ck.unlink()
    elif case == "empty":
        ck.write_bytes(b"")
    elif case == "wrong kind":
        assert main(["train", "forecast", "--steps", "1", "--hidden", "4", "--series-length", "300", "--out",
                     str(tmp_path / "f"), "--no-progress"]) == 0
        ck = tmp_path / "f" / "last.safetensors"
    argv = ["train", "charlm", "--resume", ck, "--no-progress"] + (["--steps", "x"] if case == "bad flag" else [])
    run = mpi_worker.launch(2, "-m", "rnnkit", *argv, timeout=120)
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert run.returncode == 2 and "Traceback" not in run.stderr, (run.returncode, run.stderr)
    assert len(lines) == 1 and lines[0].startswith("rnnkit: error: ") and "rank" not in lines[0], run.stderr


# ---------------------------------------------------------------- 11. sweep specs before Ray
@pytest.mark.parametrize("fixed,pattern", [('steps = "five"', r"argument --steps: expected an integer >= 0, got "
                                                              r"'five'"),
                                           ("lr = -1.0", r"argument --lr: expected a finite number >= 0, got '-1.0'")])
def test_11_bad_fixed_values_are_one_line_before_ray_starts(tmp_path, capsys, monkeypatch, fixed, pattern):
    import rnnkit.cli.sweep as cli_sweep

    monkeypatch.setattr(cli_sweep, "run_sweep", lambda *a, **k: pytest.fail("Ray started"))
    spec = tmp_path / "s.toml"
    spec.write_text(f'task = "charlm"\nnum_trials = 1\nmetric = "val_loss"\nmode = "min"\n[fixed]\n{fixed}\n'
                    '[space]\nhidden = { choice = [8] }\n')
    one_line_error(capsys, main(["sweep", str(spec), "--out", str(tmp_path / "o")]), r"s.toml: \[fixed\]: .*" + pattern)
    spec.write_text('task = "charlm"\nnum_trials = 2\nmetric = "val_loss"\nmode = "min"\n[fixed]\nsteps = 5\n'
                    '[space]\nhidden = { choice = [8, 0] }\n')  # a value a trial would get
    one_line_error(capsys, main(["sweep", str(spec), "--out", str(tmp_path / "o")]),
                   r"s.toml: \[space\].hidden: .*argument --hidden: expected a positive integer, got '0'")


# ---------------------------------------------------------------- 12. the resumed log
class _Killed(BaseException):
    """Stands for kill -9: nothing after it runs (not an Exception, so nothing catches it)."""


def test_12_the_log_after_a_resume_is_bit_identical(tmp_path, text_file, capsys, monkeypatch):
    flags = ["--steps", "12", "--log-every", "4", "--eval-every", "5", "--dtype", "float64"]
    assert train(text_file, tmp_path / "straight", *flags) == 0
    from rnnkit.train.trainer import Trainer

    real = Trainer._eval_and_checkpoint

    def killed_after_step_5(self, *a, **k):
        r = real(self, *a, **k)
        if self.step == 5:
            raise _Killed
        return r

    monkeypatch.setattr(Trainer, "_eval_and_checkpoint", killed_after_step_5)
    with pytest.raises(_Killed):
        train(text_file, tmp_path / "killed", *flags)
    monkeypatch.undo()
    assert main(["train", "charlm", "--resume", str(tmp_path / "killed" / "last.safetensors")]) == 0

    def losses(run):
        return [(r["step"], r["loss"]) for r in _complete_records(tmp_path / run / "metrics.jsonl")
                if "loss" in r and "event" not in r]

    assert losses("killed") == losses("straight") and len(losses("straight")) == 3


# ---------------------------------------------------------------- 13. a TSV header
def test_13_a_tsv_header_never_becomes_a_class(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = [f"{lab}\t{''.join(rng.choice(list(chars), 5))}\n" for lab, chars in (("a", "abc"), ("b", "xyz"))
            for _ in range(30)]
    (tmp_path / "h.tsv").write_text("label\ttext\n" + "".join(rows))
    assert main(["train", "classify", "--data", str(tmp_path / "h.tsv"), "--hidden", "6", "--emb", "4",
                 "--batch", "8", "--steps", "1", "--no-progress", "--out", str(tmp_path / "c")]) == 0
    meta = load_checkpoint(tmp_path / "c" / "last.safetensors")[1]["task"]
    assert sorted(meta["classes"]) == ["a", "b"], meta["classes"]
    capsys.readouterr()
    (tmp_path / "late.tsv").write_text("".join(rows[:3]) + "label\ttext\n" + "".join(rows[3:]))
    one_line_error(capsys, main(["train", "classify", "--data", str(tmp_path / "late.tsv"), "--out",
                                 str(tmp_path / "d"), "--no-progress"]),
                   r"late.tsv:4: label 'label' is reserved for a header in the first row")


# ---------------------------------------------------------------- 15. ONNX states optional
def test_15_exported_onnx_runs_without_states_and_still_takes_them(tmp_path, text_file, capsys):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "lm"
    assert train(text_file, out, "--steps", "1", "--cell", "lstm", "--layers", "2") == 0
    assert main(["export", str(out / "last.safetensors"), "--onnx", str(tmp_path / "m.onnx")]) == 0
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    required = {i.name for i in sess.get_inputs()}
    assert "h0" not in required and "c0" not in required, required
    ids = np.array([[1, 2], [3, 1], [2, 2]], dtype=np.int64)  # (T, B)
    feeds = {"ids": ids, "lengths": np.array([3, 2], np.int32)}
    feeds = {k: v for k, v in feeds.items() if k in required}
    bare = sess.run(None, feeds)
    zeros = np.zeros((2, 2, 12), np.float32)
    fed = sess.run(None, {**feeds, "h0": zeros, "c0": zeros})
    for name, a, b in zip(("output", "h_n", "c_n"), bare, fed):
        np.testing.assert_array_equal(a, b, err_msg=name)
    streamed = sess.run(None, {**feeds, "h0": bare[1], "c0": bare[2]})  # a state carried on: different output
    assert not np.allclose(streamed[0], bare[0]), "output"
