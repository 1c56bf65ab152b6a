"""metrics.jsonl: one JSON record per line (events, training-loss windows, evaluations).

Records are appended (``open(path, "a")``: the mode follows the umask); a resume that drops
records rewrites the file atomically (:func:`trim_after`)."""
from __future__ import annotations

import json
import math
import os

from rnnkit.io.atomic import write_bytes_atomic


def append_record(path, record: dict) -> None:
    """Append one record (non-finite floats written as strings: JSON has no NaN)."""
    clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in record.items()}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(clean) + "\n")


def trim_after(path, step: int) -> None:
    """Drop the records of steps after ``step`` (a resumed run redoes them).  Atomic
    (:func:`rnnkit.io.atomic.write_bytes_atomic`: temp file, fsync, os.replace; the mode follows
    the umask), so a crash keeps the old log."""
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        lines = [ln for ln in f if ln.strip()]
    keep = []
    for ln in lines:
        try:
            if json.loads(ln).get("step", 0) <= step:
                keep.append(ln)
        except json.JSONDecodeError:
            pass
    if len(keep) == len(lines):
        return
    write_bytes_atomic(path, "".join(keep).encode("utf-8"))


def read_metrics(log_path) -> list[dict]:
    """The records of a metrics.jsonl file.  A last line without its newline that is not valid JSON
    (a process killed in the middle of an append) is skipped; any other bad line is an error."""
    with open(log_path, encoding="utf-8") as f:
        lines = f.readlines()
    out = []
    for k, ln in enumerate(lines):
        if not ln.strip():
            continue
        try:
            out.append(json.loads(ln))
        except json.JSONDecodeError:
            if k == len(lines) - 1 and not ln.endswith("\n"):
                break
            raise
    return out
