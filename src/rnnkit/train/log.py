"""metrics.jsonl: one JSON record per line (events, training-loss windows, evaluations).

Records are appended with one ``os.write`` of the whole line (``O_APPEND``; the mode follows
the umask).  When the write fails (a full disk, a quota, a read-only file system) the file is
cut back to its length before the append, so no partial record stays, and the error is one
line (:class:`~rnnkit.errors.OutputError`).  A resume that drops records rewrites the file
atomically (:func:`trim_after`), dropping with them a torn last line (a process killed in the
middle of an append) and lines that are not UTF-8 JSON.

:class:`LogWindow` is the running sum behind a logged training loss (the mean over the steps
since the last logged one); it is saved in the checkpoint, so a run resumed at a step that is
not a multiple of ``--log-every`` logs the same losses as an uninterrupted one.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

from rnnkit.errors import OutputError
from rnnkit.atomic import output_error
from rnnkit.io.outputs import write_output


def append_record(path, record: dict) -> None:
    """Append one record (non-finite floats written as strings: JSON has no NaN); all or nothing."""
    clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in record.items()}
    data = (json.dumps(clean) + "\n").encode("utf-8")
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as e:
        raise _log_error(path, e, len(data)) from None
    try:
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):  # a short write: the disk filled in the middle of the line
                raise OSError(28, os.strerror(28))
        except OSError as e:
            try:
                os.ftruncate(fd, size)  # no partial record
            except OSError:
                pass
            raise _log_error(path, e, len(data)) from None
    finally:
        os.close(fd)


def _log_error(path: str, e: OSError, needed: int) -> OutputError:
    err = output_error(path, e, needed)
    if err is e:
        return OutputError(f"cannot write {path!r}: {e.strerror or e}", errno=e.errno)
    return err


def _records(path: str) -> list[tuple[bytes, dict]]:
    """(line, record) of every complete UTF-8 JSON line of ``path``; OutputError if unreadable."""
    if os.path.isdir(path):
        raise OutputError(f"{path!r}: is a directory, expected the run's metrics.jsonl file; move it away")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise OutputError(f"{path!r}: cannot read the run's metrics.jsonl ({e.strerror})", errno=e.errno) from None
    out = []
    for ln in raw.splitlines(keepends=True):
        if not ln.endswith(b"\n"):
            continue  # a torn last line
        try:
            rec = json.loads(ln.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue
        if isinstance(rec, dict):
            out.append((ln, rec))
    return out


def trim_after(path, step: int) -> None:
    """Drop the records of steps after ``step`` (a resumed run redoes them), a torn last line and
    lines that are not UTF-8 JSON objects.  Atomic (:func:`rnnkit.io.outputs.write_output`: temp
    file, fsync, os.replace; the mode follows the umask), so a crash keeps the old log."""
    path = os.fspath(path)
    if not os.path.lexists(path):
        return
    records = _records(path)
    keep = [ln for ln, rec in records if not isinstance(rec.get("step", 0), (int, float)) or rec.get("step", 0) <= step]
    with open(path, "rb") as f:
        if b"".join(keep) == f.read():
            return
    write_output(path, b"".join(keep), "jsonl", what="metrics")


def read_metrics(log_path) -> list[dict]:
    """The records of a metrics.jsonl file.  A last line without its newline that is not valid JSON
    (a process killed in the middle of an append) is skipped; any other bad line (not UTF-8, not a
    JSON object) is an OutputError naming the file and the line."""
    path = os.fspath(log_path)
    if os.path.isdir(path):
        raise OutputError(f"{path!r}: is a directory, expected a metrics.jsonl file")
    try:
        with open(path, "rb") as f:
            lines = f.read().splitlines(keepends=True)
    except OSError as e:
        raise OutputError(f"{path!r}: cannot read the metrics ({e.strerror})", errno=e.errno) from None
    out = []
    for k, ln in enumerate(lines):
        if not ln.strip():
            continue
        try:
            rec = json.loads(ln.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            if k == len(lines) - 1 and not ln.endswith(b"\n"):
                break
            raise OutputError(f"{path}:{k + 1}: not a UTF-8 JSON record ({type(e).__name__}); "
                              f"got {ln[:40]!r}") from None
        if not isinstance(rec, dict):
            raise OutputError(f"{path}:{k + 1}: expected a JSON object, got {type(rec).__name__}")
        out.append(rec)
    return out


@dataclass
class LogWindow:
    """The training steps since the last logged loss: ``loss`` (sum), ``steps``, ``count`` (tokens,
    items), ``t0`` (perf_counter at its start; not saved: time does not resume)."""

    loss: float = 0.0
    steps: int = 0
    count: int = 0
    t0: float = 0.0

    def add(self, loss: float, count: int) -> None:
        self.loss, self.steps, self.count = self.loss + loss, self.steps + 1, self.count + count

    def reset(self, t0: float) -> None:
        self.loss, self.steps, self.count, self.t0 = 0.0, 0, 0, t0

    def state(self) -> dict:
        """What a checkpoint keeps (JSON: floats round-trip exactly)."""
        return {"loss": self.loss, "steps": self.steps, "count": int(self.count)}

    def load(self, state: dict | None, t0: float) -> None:
        """Restore :meth:`state` (None: an empty window, e.g. a checkpoint of an older version)."""
        s = state or {}
        self.loss, self.steps, self.count, self.t0 = float(s.get("loss", 0.0)), int(s.get("steps", 0)), \
            int(s.get("count", 0)), t0
