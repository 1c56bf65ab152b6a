"""One writer per output directory: an advisory fcntl lock, and checks of the out path.

``with OutDirLock(out_dir): ...`` holds an exclusive ``flock`` on the file
``<out_dir>/.rnnkit.lock`` for the whole block and writes the holder's pid into
it.  A second holder -- another process, or another ``OutDirLock`` in the same
process -- gets :class:`~rnnkit.errors.OutDirLocked` in one line naming the
directory and the holder's pid.  The kernel drops an flock when its process
dies, however it dies (kill -9 included), so a lock file left by a dead process
does not block: the next run takes it over.  On release the holder deletes the
lock file while still holding the lock; an acquirer that locked a file that was
meanwhile deleted or replaced notices (inode differs) and retries.

The lock is advisory: it keeps rnnkit runs apart, not other programs.  flock
works on local file systems; on NFS, Linux emulates it with POSIX locks, which
keep processes apart but not two locks taken in one process.

``prepare_out_dir(path)`` creates the directory and turns the usual mistakes
-- a path that is a file, a path under /proc or /sys, a read-only or
unwritable location -- into one-line :class:`~rnnkit.errors.OutputError` exceptions.
``with claim_out_dir(path) as lock:`` does both and removes stray temporary
files of killed writers: what a run should do before writing into ``--out``.
"""
from __future__ import annotations

import contextlib
import errno as _errno
import fcntl
import os
import tempfile

from rnnkit.errors import OutDirLocked, OutputError
from rnnkit.atomic import output_error, remove_stray_temps

LOCK_NAME = ".rnnkit.lock"
_VIRTUAL = ("/proc", "/sys", "/dev")


def _read_pid(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class OutDirLock:
    """Exclusive advisory lock of an output directory (see the module docstring).

    ``OutDirLock(directory, what="--out")``; ``acquire()`` / ``release()`` or a
    ``with`` block.  ``what`` names the directory in error messages.
    """

    def __init__(self, directory, what: str = "--out"):
        self.directory = os.path.abspath(os.fspath(directory))
        self.path = os.path.join(self.directory, LOCK_NAME)
        self.what = what
        self._fd: int | None = None
        self.removed: list[str] = []  # stray temp files removed by claim_out_dir

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "OutDirLock":
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: this OutDirLock is already held")
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except OSError as e:
                raise OutputError(f"{self.what} {self.directory!r}: cannot create the lock file {LOCK_NAME} "
                                  f"({e.strerror})", e.errno) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                pid = _read_pid(self.path)
                holder = f"process {pid}" if pid is not None else "another process (pid not yet written)"
                raise OutDirLocked(f"{self.what} {self.directory!r} is in use by {holder}, which holds "
                                   f"{LOCK_NAME}; one run per output directory: wait for it, stop it, or choose "
                                   f"another directory", pid=pid) from None
            except BaseException:
                os.close(fd)
                raise
            try:  # the file we locked must still be the one at self.path (a releasing holder unlinks it)
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        pid = f"{os.getpid()}\n".encode("ascii")
        try:  # all or nothing, like every write (a full disk: one line, no lock file left)
            os.ftruncate(fd, 0)
            if os.write(fd, pid) != len(pid):
                raise OSError(_errno.ENOSPC, os.strerror(_errno.ENOSPC))
        except BaseException as e:
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # still locked by us: no other holder can be using it
            os.close(fd)
            if isinstance(e, OSError):
                err = output_error(self.path, e, len(pid))
                raise (err if err is not e else OutputError(
                    f"{self.what} {self.directory!r}: cannot write the lock file {LOCK_NAME} ({e.strerror})",
                    e.errno)) from None
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)  # while still locked: see the module docstring
        finally:
            os.close(fd)  # drops the flock

    def __enter__(self) -> "OutDirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"OutDirLock({self.directory!r}, held={self.held})"


def prepare_out_dir(path, what: str = "--out") -> str:
    """Create the output directory ``path`` if needed and check it is a writable directory.

    Returns its absolute path.  Raises OutputError (one line naming ``what`` and the
    path) when it is a file, lies under /proc, /sys or /dev, cannot be created, or
    cannot be written (read-only file system, permission, full disk).
    """
    if path is None or os.fspath(path) == "":
        raise OutputError(f"{what}: expected a directory path, got an empty one")
    path = os.path.abspath(os.fspath(path))
    real = os.path.realpath(path)
    for v in _VIRTUAL:
        if real == v or real.startswith(v + os.sep):
            raise OutputError(f"{what} {path!r}: is under {v}, a virtual file system; choose a directory on disk")
    if os.path.islink(path) and not os.path.exists(path):
        raise OutputError(f"{what} {path!r}: is a dangling symbolic link (to {os.readlink(path)!r}); create "
                          f"its target, remove the link or choose another {what}")
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f"{what} {path!r}: is a file, expected a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"{what} {path!r}: a part of the path is a file, expected directories") from None
    except OSError as e:
        raise OutputError(f"{what} {path!r}: cannot create the directory ({e.strerror})", e.errno) from None
    try:  # a real write tells read-only mounts, permissions and full disks apart from mode bits
        fd, probe = tempfile.mkstemp(prefix=".rnnkit-probe.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        reason = {_errno.EROFS: "is on a read-only file system", _errno.EACCES: "is not writable (permission denied)",
                  _errno.EPERM: "is not writable (operation not permitted)", _errno.ENOSPC: "is on a full disk",
                  _errno.EDQUOT: "is over its disk quota"}.get(e.errno, f"cannot be written ({e.strerror})")
        raise OutputError(f"{what} {path!r}: {reason}; choose a writable directory", e.errno) from None
    return path


@contextlib.contextmanager
def claim_out_dir(path, what: str = "--out", targets=None):
    """Everything a run does before writing into its output directory, for the whole ``with`` block:
    :func:`prepare_out_dir`, then :class:`OutDirLock`, then
    :func:`~rnnkit.atomic.remove_stray_temps` (safe now: no other writer can be live).
    Yields the lock; ``lock.directory`` is the absolute path, ``lock.removed`` the temp files removed."""
    with OutDirLock(prepare_out_dir(path, what), what) as lock:
        lock.removed = remove_stray_temps(lock.directory, targets)
        yield lock
