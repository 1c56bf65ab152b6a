"""Reliability of the io floor: atomic writes (full disk, read-only, umask, stray temp
files), the output-directory lock and the out-dir checks, and the stop-signal helper.
Torch-free; see docs/reliability.md for the guarantees these tests hold."""
import errno
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

import rnnkit
from rnnkit.errors import Interrupted, OutDirLocked, OutputError
import rnnkit.atomic as atomic
from rnnkit.atomic import atomic_open, remove_stray_temps, write_bytes_atomic
from rnnkit.io.checkpoint import load_checkpoint, save_checkpoint
from rnnkit.io.lock import LOCK_NAME, OutDirLock, claim_out_dir, prepare_out_dir
from rnnkit.train.signals import EXIT_CODES, StopSignals

SRC = os.path.dirname(os.path.dirname(os.path.abspath(rnnkit.__file__)))


def _one_line(e) -> str:
    msg = str(e.value if hasattr(e, "value") else e)
    assert "\n" not in msg and msg, f"error message is not one line: {msg!r}"
    return msg


# ---------------------------------------------------------------- atomic writes
def test_write_bytes_atomic_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "a.txt"
    write_bytes_atomic(p, b"one")
    write_bytes_atomic(p, b"two")
    with atomic_open(p, "w") as f:
        f.write("three\n")
    assert p.read_text() == "three\n"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_atomic_open_exception_keeps_old(tmp_path):
    p = tmp_path / "a.txt"
    write_bytes_atomic(p, b"old")
    with pytest.raises(RuntimeError):
        with atomic_open(p, "w") as f:
            f.write("new")
            raise RuntimeError("caller failed mid-way")
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_files_follow_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        write_bytes_atomic(tmp_path / "a.txt", b"x")
        save_checkpoint(tmp_path / "c.safetensors", {"w": np.zeros(2, np.float32)}, {"kind": "t"})
        assert atomic.current_umask() == mask
    finally:
        os.umask(old)
    for name in ("a.txt", "c.safetensors"):
        mode = os.stat(tmp_path / name).st_mode & 0o777
        assert mode == 0o666 & ~mask, f"{name}: mode {oct(mode)}, expected {oct(0o666 & ~mask)} for umask {oct(mask)}"


class _FullDiskFile:
    """The temp file object, with a write() that fails as on a full disk."""

    def __init__(self, f):
        self.f = f

    def write(self, b):
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_enospc_one_line_old_file_intact(tmp_path, monkeypatch, where):
    out, ref = tmp_path / "out", tmp_path / "ref.safetensors"
    p = out / "last.safetensors"
    save_checkpoint(p, {"w": np.arange(3, dtype=np.float32)}, {"kind": "t", "step": 1})
    before = p.read_bytes()
    big, meta2 = {"w": np.zeros(1000, np.float32)}, {"kind": "t", "step": 2}
    save_checkpoint(ref, big, meta2)  # the size the failed write needed
    if where == "fsync":
        def fail(fd):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(atomic.os, "fsync", fail)
    else:
        real_fdopen = os.fdopen
        monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: _FullDiskFile(real_fdopen(fd, mode)))
    with pytest.raises(OutputError) as e:
        save_checkpoint(p, big, meta2)
    monkeypatch.undo()
    msg = _one_line(e)
    assert e.value.errno == errno.ENOSPC
    assert repr(str(p)) in msg and "disk full" in msg, msg
    assert f"({os.path.getsize(ref)} bytes)" in msg, f"needed bytes not named: {msg}"
    assert " free on " in msg, msg
    assert p.read_bytes() == before, "the earlier checkpoint changed"
    assert os.listdir(out) == ["last.safetensors"], "a temp file was left behind"
    assert load_checkpoint(p)[1]["step"] == 1


@pytest.mark.parametrize("code,words", [(errno.EROFS, "read-only file system"), (errno.EACCES, "permission denied"),
                                        (errno.EDQUOT, "quota exceeded")])
def test_other_write_errors_one_line(tmp_path, monkeypatch, code, words):
    p = tmp_path / "m.json"
    write_bytes_atomic(p, b"{}")

    def fail(*a, **k):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(atomic.tempfile, "mkstemp", fail)
    with pytest.raises(OutputError) as e:
        write_bytes_atomic(p, b"{1}")
    monkeypatch.undo()
    msg = _one_line(e)
    assert words in msg and repr(str(p)) in msg and e.value.errno == code
    assert p.read_text() == "{}"


def test_unrelated_oserror_passes_through(tmp_path, monkeypatch):
    def fail(*a, **k):
        raise OSError(errno.EIO, "I/O error")
    monkeypatch.setattr(atomic.tempfile, "mkstemp", fail)
    with pytest.raises(OSError) as e:
        write_bytes_atomic(tmp_path / "x", b"y")
    assert not isinstance(e.value, OutputError) and e.value.errno == errno.EIO


def test_remove_stray_temps_only_the_writers_own(tmp_path):
    keep = ["last.safetensors", "notes.tmp", "last.safetensors.tmp", "a.ABCDEFGH.tmp", "x.abcdefg.tmp",
            "loss.png", "metrics.jsonl"]
    stray = ["last.safetensors.k2j_9xq1.tmp", "metrics.jsonl.abcdefgh.tmp"]
    for n in keep + stray:
        (tmp_path / n).write_text("x")
    (tmp_path / "dir.abcdefgh.tmp").mkdir()  # not a regular file
    os.symlink(tmp_path / "loss.png", tmp_path / "link.abcdefgh.tmp")  # a link, not ours
    removed = remove_stray_temps(tmp_path)
    assert removed == sorted(str(tmp_path / n) for n in stray)
    assert sorted(os.listdir(tmp_path)) == sorted(keep + ["dir.abcdefgh.tmp", "link.abcdefgh.tmp"])
    (tmp_path / "best.safetensors.aaaaaaaa.tmp").write_text("x")
    (tmp_path / "other.bin.aaaaaaaa.tmp").write_text("x")
    assert remove_stray_temps(tmp_path, targets={"best.safetensors"}) == \
        [str(tmp_path / "best.safetensors.aaaaaaaa.tmp")]
    assert (tmp_path / "other.bin.aaaaaaaa.tmp").exists()
    assert remove_stray_temps(tmp_path / "missing") == []


@pytest.mark.slow
def test_stray_temp_from_a_killed_writer_is_removed(tmp_path):
    """A writer killed (SIGKILL) after creating its temp file: the next start removes it."""
    code = ("import sys, os, signal; import rnnkit.atomic as atomic; "
            "os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL); "
            "atomic.write_bytes_atomic(sys.argv[1], b'x' * 1000)")
    target = tmp_path / "last.safetensors"
    target.write_bytes(b"old")
    r = subprocess.run([sys.executable, "-c", code, str(target)], env={**os.environ, "PYTHONPATH": SRC}, timeout=60)
    assert r.returncode == -signal.SIGKILL
    left = sorted(os.listdir(tmp_path))
    assert len(left) == 2 and left[0] == "last.safetensors" and atomic.is_writer_temp(left[1]), left
    assert target.read_bytes() == b"old"
    assert len(remove_stray_temps(tmp_path)) == 1 and os.listdir(tmp_path) == ["last.safetensors"]


# ---------------------------------------------------------------- output-directory lock
_HOLDER = ("import sys; from rnnkit.io.lock import OutDirLock\n"
           "with OutDirLock(sys.argv[1]):\n    print('locked', flush=True); sys.stdin.read()")


def _start_holder(d):
    p = subprocess.Popen([sys.executable, "-c", _HOLDER, str(d)], env={**os.environ, "PYTHONPATH": SRC},
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


@pytest.mark.slow
def test_lock_held_by_another_process(tmp_path):
    holder = _start_holder(tmp_path)
    try:
        with pytest.raises(OutDirLocked) as e:
            OutDirLock(tmp_path).acquire()
        msg = _one_line(e)
        assert repr(str(tmp_path)) in msg and f"process {holder.pid}" in msg and e.value.pid == holder.pid, msg
    finally:
        holder.stdin.close()  # the holder exits normally and releases
        assert holder.wait(timeout=60) == 0
    assert not (tmp_path / LOCK_NAME).exists(), "a clean release removes the lock file"
    with OutDirLock(tmp_path) as lock:
        assert lock.held and (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())


@pytest.mark.slow
def test_stale_lock_of_a_killed_process_does_not_block(tmp_path):
    holder = _start_holder(tmp_path)
    holder.kill()  # SIGKILL: no clean-up runs, the lock file stays with the dead pid in it
    holder.wait(timeout=60)
    holder.stdin.close()
    holder.stdout.close()
    assert (tmp_path / LOCK_NAME).read_text().strip() == str(holder.pid)
    with OutDirLock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
    assert not (tmp_path / LOCK_NAME).exists()


def test_lock_of_a_missing_directory_is_one_line(tmp_path):
    with pytest.raises(OutputError, match=r"cannot create the lock file \.rnnkit\.lock \(No such file or directory\)"):
        OutDirLock(tmp_path / "missing").acquire()


def test_lock_twice_in_one_process_and_release(tmp_path):
    with OutDirLock(tmp_path, what="--out"):
        with pytest.raises(OutDirLocked, match=f"process {os.getpid()}"):
            with OutDirLock(tmp_path):
                pass
    with OutDirLock(tmp_path):  # released: can be taken again
        pass


def test_lock_contention_between_threads_one_winner(tmp_path):
    wins, errors = [], []
    barrier = threading.Barrier(4)

    def try_lock():
        lock = OutDirLock(tmp_path)
        barrier.wait()
        try:
            lock.acquire()
        except OutDirLocked:
            errors.append(1)
            return
        wins.append(lock)

    ts = [threading.Thread(target=try_lock) for _ in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert len(wins) == 1 and len(errors) == 3
    wins[0].release()


def test_prepare_out_dir_errors(tmp_path, monkeypatch):
    assert prepare_out_dir(tmp_path / "a" / "b") == str(tmp_path / "a" / "b")
    assert os.path.isdir(tmp_path / "a" / "b")
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file, expected a directory") as e:
        prepare_out_dir(tmp_path / "f")
    assert repr(str(tmp_path / "f")) in _one_line(e) and "--out" in str(e.value)
    with pytest.raises(OutputError, match="a part of the path is a file"):
        prepare_out_dir(tmp_path / "f" / "sub")
    with pytest.raises(OutputError, match="under /proc, a virtual file system") as e:
        prepare_out_dir("/proc/self/rnnkit-out")
    _one_line(e)
    with pytest.raises(OutputError, match="expected a directory path"):
        prepare_out_dir("")

    def readonly(*a, **k):  # root ignores mode bits, so a read-only mount is simulated
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr("rnnkit.io.lock.tempfile.mkstemp", readonly)
    with pytest.raises(OutputError, match="is on a read-only file system; choose a writable directory") as e:
        prepare_out_dir(tmp_path / "ro", what="--out")
    assert _one_line(e).startswith(f"--out {str(tmp_path / 'ro')!r}") and e.value.errno == errno.EROFS


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through mode bits")
def test_prepare_out_dir_unwritable_for_real(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="not writable"):
            prepare_out_dir(d)
    finally:
        d.chmod(0o755)


# ---------------------------------------------------------------- stop signals
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_stop_signal_sets_flag_then_raises_and_restores(sig, code):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with StopSignals() as stop:
        assert stop.installed and not stop and stop.exit_code is None
        os.kill(os.getpid(), sig)
        assert stop and stop.signum == sig and stop.exit_code == code == EXIT_CODES[sig]
        with pytest.raises(Interrupted) as e:
            stop.check()
        assert e.value.exit_code == code and e.value.signum == sig
        with pytest.raises(Interrupted) as e:  # a second signal aborts at once
            os.kill(os.getpid(), signal.SIGTERM)
        assert e.value.exit_code == 143 and stop.count == 2 and stop.signum == sig
    assert {s: signal.getsignal(s) for s in before} == before, "old handlers not restored"


def test_stop_signal_raise_first_is_a_keyboard_interrupt():
    with pytest.raises(KeyboardInterrupt) as e:  # code that handles Ctrl-C handles SIGTERM alike
        with StopSignals(raise_first=True):
            os.kill(os.getpid(), signal.SIGTERM)
    assert isinstance(e.value, Interrupted) and e.value.exit_code == 143 and "SIGTERM" in str(e.value)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_stop_signal_no_escalation_and_not_in_threads():
    with StopSignals(escalate=False) as stop:
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signum == signal.SIGHUP and stop.count == 2 and stop.exit_code == 129
    got = []
    t = threading.Thread(target=lambda: got.append(StopSignals().__enter__().installed))
    t.start()
    t.join()
    assert got == [False]


@pytest.mark.slow
def test_sigterm_exit_code_seen_by_the_shell(tmp_path):
    """A process that saves and exits with stop.exit_code reports 143 for SIGTERM, as a shell would."""
    code = ("import os, signal, sys\n"
            "from rnnkit.train.signals import StopSignals\n"
            "from rnnkit.atomic import write_bytes_atomic\n"
            "with StopSignals() as stop:\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    step = 0\n"
            "    while not stop: step += 1\n"
            "write_bytes_atomic(sys.argv[1], str(stop.signum).encode())\n"
            "sys.exit(stop.exit_code)\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "saved")], env={**os.environ, "PYTHONPATH": SRC},
                       timeout=60)
    assert r.returncode == 143 and (tmp_path / "saved").read_text() == str(int(signal.SIGTERM))


def test_claim_out_dir_prepares_locks_and_cleans(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.safetensors.abcd1234.tmp").write_bytes(b"half a checkpoint")
    (out / "last.safetensors").write_bytes(b"kept")
    with claim_out_dir(out) as lock:
        assert lock.held and lock.directory == str(out)
        assert lock.removed == [str(out / "last.safetensors.abcd1234.tmp")]
        assert sorted(os.listdir(out)) == [LOCK_NAME, "last.safetensors"]
        with pytest.raises(OutDirLocked):
            with claim_out_dir(out):
                pass
    assert os.listdir(out) == ["last.safetensors"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        with claim_out_dir(tmp_path / "file"):
            pass


def test_cli_full_disk_during_a_save_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    """Through the CLI: ENOSPC while saving names the file and the space; the earlier checkpoint stays."""
    from rnnkit.cli import main
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat. " * 40)
    out = tmp_path / "run"
    small = ["--hidden", "8", "--emb", "4", "--batch", "2", "--bptt", "8", "--layers", "1", "--no-progress"]
    assert main(["train", "charlm", "--text", str(text), *small, "--steps", "2", "--out", str(out)]) == 0
    ck = out / "last.safetensors"
    before = ck.read_bytes()
    capsys.readouterr()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(atomic.os, "fsync", full)
    rc = main(["train", "charlm", "--resume", str(ck), "--steps", "4", "--no-progress"])
    monkeypatch.undo()
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"rnnkit: error: cannot write {str(ck)!r}: disk full (ENOSPC); needs "), lines[0]
    assert " free on " in lines[0]
    assert ck.read_bytes() == before and load_checkpoint(ck)[1]["train"]["step"] == 2
    assert not [n for n in os.listdir(out) if atomic.is_writer_temp(n)]
