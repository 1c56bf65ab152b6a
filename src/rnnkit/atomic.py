"""Atomic file writes: a crash, a kill -9 or a full disk never leaves a half-written file.

``write_bytes_atomic(path, data)`` writes ``data`` to a temporary file in the same
directory (``<name>.XXXXXXXX.tmp``, mkstemp's 8 random characters), fsyncs it,
``os.replace``-s it over ``path`` and fsyncs the directory, so ``path`` holds
either the old or the new content, never a mixture.  The new file's mode
follows the umask (``0o666 & ~umask``, as ``open()`` would give; mkstemp alone
gives 0600).  When the disk is full (ENOSPC), the quota is exceeded (EDQUOT),
the file system is read-only (EROFS) or permission is denied (EACCES, EPERM),
the temporary file is removed, the earlier file is left intact and an
:class:`~rnnkit.errors.OutputError` says so in one line naming the path (for
ENOSPC also the bytes needed and the bytes free).

``atomic_open(path, "w")`` is the same for code that writes through a file
object (JSON lines, ``savefig``): the content is collected in memory and
written by ``write_bytes_atomic`` when the block ends without an exception.

A writer killed between creating and renaming its temporary file leaves it
behind; :func:`remove_stray_temps` deletes such files (only names of this
writer's pattern) and should run when a process starts using a directory
while it holds the directory's lock (:mod:`rnnkit.io.lock`).
"""
from __future__ import annotations

import contextlib
import errno as _errno
import io
import os
import re
import shutil
import stat
import tempfile

from rnnkit.errors import OutputError, format_bytes

TEMP_SUFFIX = ".tmp"
_TEMP_RE = re.compile(r"^(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")  # mkstemp(prefix=name + ".", suffix=".tmp")

_REASONS = {
    _errno.ENOSPC: "disk full (ENOSPC)",
    _errno.EDQUOT: "disk quota exceeded (EDQUOT)",
    _errno.EROFS: "read-only file system (EROFS)",
    _errno.EACCES: "permission denied (EACCES)",
    _errno.EPERM: "operation not permitted (EPERM)",
}


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (/proc/self/status)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # fallback: set and restore (not thread-safe, hence only a fallback)
    os.umask(mask)
    return mask


def output_error(path: str, e: OSError, needed: int | None = None) -> OutputError | OSError:
    """The one-line :class:`OutputError` for an OSError of a kind a user can fix, else ``e`` itself."""
    reason = _REASONS.get(e.errno)
    if reason is None:
        return e
    msg = f"cannot write {path!r}: {reason}"
    if e.errno in (_errno.ENOSPC, _errno.EDQUOT):
        directory = os.path.dirname(os.path.abspath(path))
        try:
            free = shutil.disk_usage(directory).free
            msg += f"; needs {format_bytes(needed)} ({needed} bytes), {format_bytes(free)} free" if needed is not None \
                else f"; {format_bytes(free)} free"
        except OSError:
            if needed is not None:
                msg += f"; needs {format_bytes(needed)} ({needed} bytes)"
        msg += f" on {directory!r}; the earlier file, if any, is unchanged"
    elif e.errno in (_errno.EROFS, _errno.EACCES, _errno.EPERM):
        msg += "; choose a writable directory"
    return OutputError(msg, errno=e.errno)


def _fsync_dir(directory: str) -> None:
    try:  # makes the rename durable; some file systems cannot open or fsync a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def write_bytes_atomic(path, data) -> None:
    """Replace ``path`` with ``data`` (bytes-like) atomically: a temp file in the same directory
    (created if missing), fsync, ``os.replace``, fsync the directory.

    Raises OutputError (disk full, quota, read-only, permission; temp file removed,
    old file intact) or the OSError itself for anything else.
    """
    path = os.fspath(path)
    data = memoryview(data).cast("B")
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=TEMP_SUFFIX, dir=directory)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(e, OSError):
            err = output_error(path, e, needed=len(data))
            if err is not e:
                raise err from None
        raise
    _fsync_dir(directory)


@contextlib.contextmanager
def atomic_open(path, mode: str = "w", encoding: str = "utf-8"):
    """``with atomic_open(p, "w") as f: f.write(...)`` -- ``p`` is replaced when the block
    ends normally (by :func:`write_bytes_atomic`); on an exception it is left untouched.
    ``mode`` is ``"w"`` (text) or ``"wb"`` (bytes)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode: expected 'w' or 'wb', got {mode!r}")
    buf = io.StringIO() if mode == "w" else io.BytesIO()
    yield buf
    data = buf.getvalue()
    write_bytes_atomic(path, data.encode(encoding) if mode == "w" else data)


def is_writer_temp(name: str, targets=None) -> bool:
    """Whether the file name ``name`` is one of :func:`write_bytes_atomic`'s temporary files
    (of a file in ``targets``, a collection of base names, if given)."""
    m = _TEMP_RE.match(name)
    return bool(m) and (targets is None or m.group("target") in targets)


def remove_stray_temps(directory, targets=None) -> list[str]:
    """Delete the temporary files a killed :func:`write_bytes_atomic` left in ``directory``.

    Only regular files (not links, not directories) whose names match the writer's
    pattern ``<target>.XXXXXXXX.tmp`` (and, with ``targets``, whose target is one of those
    base names) are removed.  Call it while holding the directory's lock, so that no live
    writer's temporary file is taken.  Returns the removed paths, sorted.
    """
    directory = os.fspath(directory)
    removed = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not is_writer_temp(entry.name, targets):
            continue
        try:
            if not stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode):
                continue
            os.unlink(entry.path)
            removed.append(entry.path)
        except FileNotFoundError:
            pass
    return sorted(removed)
