"""Atomic file writes: temp file in the target's directory + fsync + rename.

A crash mid-write leaves the previous file (or none) in place, never a torn one.
"""
from __future__ import annotations

import os
import tempfile


def write_bytes_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path``: a temp file in the same directory, fsync, ``os.replace``, fsync the directory."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
