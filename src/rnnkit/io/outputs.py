"""The one rule for every file a command writes (docs/reliability.md, "Never lose a saved file").

* A file goes through the atomic writer (:func:`rnnkit.atomic.write_bytes_atomic`):
  :func:`write_output` checks the target, then writes.
* It never replaces a file the command read (the same inode, or the same resolved path:
  ``reads``), nor an existing file of another kind (:func:`file_kind`: a checkpoint is not
  replaced by an ONNX model, a PNG or an HTML page; a text file by none of them), nor a
  directory, a dangling symbolic link or anything under /proc, /sys or /dev
  (:func:`check_output`, also called by a command before its work, so it fails early).
* An output directory holding any artifact of an earlier run (checkpoints, metrics, plots,
  pages, tables: :func:`earlier_artifacts`) is refused unless the run continues it
  (``--resume``) or replaces it (``--overwrite``): :func:`refuse_earlier_run`, which names
  what is there.

Every refusal is an :class:`~rnnkit.errors.OutputError` (a UserError): one line naming the flag
(``what``) and the path.
"""
from __future__ import annotations

import fnmatch
import os

from rnnkit.errors import OutputError
from rnnkit.atomic import is_writer_temp, write_bytes_atomic

#: what an earlier run leaves in its directory (the lock and the writer's temp files are not artifacts)
ARTIFACTS = ("*.safetensors", "metrics.jsonl", "*.png", "*.html", "*.csv", "*.json", "*.md", "*.onnx",
             "runs", "ray")
#: kinds by file name extension (text formats carry no magic bytes)
_EXT_KINDS = {".safetensors": "safetensors", ".onnx": "onnx", ".png": "png", ".html": "html", ".htm": "html",
              ".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".md": "markdown"}
_VIRTUAL = ("/proc", "/sys", "/dev")


def file_kind(path) -> str | None:
    """The kind of the existing file ``path``: "safetensors", "png", "html", "onnx" by content, else
    by its extension ("csv", "json", ...), else "text" or "binary"; None for an empty file."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return "unreadable"
    if not head:
        return None
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 1 << 40:
        return "safetensors"
    start = head.lstrip().lower()
    if start.startswith((b"<!doctype html", b"<html")):
        return "html"
    ext = _EXT_KINDS.get(os.path.splitext(os.fspath(path))[1].lower())
    if ext == "onnx" and head[:1] == b"\x08":  # ModelProto field 1 (ir_version), a varint
        return "onnx"
    if ext is not None and ext not in ("safetensors", "png", "html", "onnx"):
        return ext
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "binary"


def _same_file(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path, kind: str, reads=(), what: str = "output") -> str:
    """Check that ``path`` may be written with a file of ``kind`` by a command that read ``reads``
    (paths; None entries ignored).  Returns ``os.fspath(path)``; OutputError otherwise."""
    if path is None or os.fspath(path) == "":
        raise OutputError(f"{what}: expected a file path, got an empty one")
    path = os.fspath(path)
    real = os.path.realpath(path)
    for v in _VIRTUAL:
        if real == v or real.startswith(v + os.sep):
            raise OutputError(f"{what} {path!r}: is under {v}, a virtual file system; choose a file on disk")
    if path.endswith(os.sep) or os.path.isdir(path):
        raise OutputError(f"{what} {path!r}: is a directory, expected a file name")
    if os.path.islink(path) and not os.path.exists(path):
        raise OutputError(f"{what} {path!r}: is a dangling symbolic link (to {os.readlink(path)!r}); "
                          f"remove it or choose another file")
    for r in reads:
        if r is not None and os.path.exists(os.fspath(r)) and _same_file(path, os.fspath(r)):
            raise OutputError(f"{what} {path!r}: is the input {os.fspath(r)!r} of this command; "
                              f"writing it would replace it: choose another file")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise OutputError(f"{what} {path!r}: a part of the path, {parent!r}, is a file, expected directories")
    if os.path.exists(path):
        if not os.path.isfile(path):
            raise OutputError(f"{what} {path!r}: exists and is not a regular file")
        old = file_kind(path)
        if old is not None and old != kind:
            raise OutputError(f"{what} {path!r}: holds a file of kind {old}, not {kind}; it is not replaced: "
                              f"remove it or choose another file")
    return path


def write_output(path, data, kind: str, reads=(), what: str = "output") -> None:
    """:func:`check_output`, then :func:`rnnkit.atomic.write_bytes_atomic` (``data``: bytes-like,
    or str written as UTF-8)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    write_bytes_atomic(check_output(path, kind, reads, what), data)


def earlier_artifacts(directory) -> list[str]:
    """The names in ``directory`` that an earlier run wrote (:data:`ARTIFACTS`), sorted."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(n for n in names if not is_writer_temp(n) and any(fnmatch.fnmatch(n, p) for p in ARTIFACTS))


def refuse_earlier_run(directory, resume: bool = False, overwrite: bool = False, what: str = "--out",
                       hint: str = "") -> list[str]:
    """OutputError naming the artifacts of an earlier run in ``directory`` unless ``resume`` or
    ``overwrite``; returns them (to remove, with ``overwrite``).  ``hint``: how to continue instead."""
    found = earlier_artifacts(directory)
    if found and not (resume or overwrite):
        shown = ", ".join(found[:6]) + (f" and {len(found) - 6} more" if len(found) > 6 else "")
        raise OutputError(f"{what} {os.fspath(directory)}: holds an earlier run's {shown}; "
                          f"{hint + ', ' if hint else ''}add --overwrite to replace them, or choose another {what}")
    return found
