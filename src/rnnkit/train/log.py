"""metrics.jsonl: one JSON record per line (events, training-loss windows, evaluations)."""
from __future__ import annotations

import json
import math
import os
import tempfile


def append_record(path, record: dict) -> None:
    """Append one record (non-finite floats written as strings: JSON has no NaN)."""
    clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in record.items()}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(clean) + "\n")


def trim_after(path, step: int) -> None:
    """Drop the records of steps after ``step`` (a resumed run redoes them).  Atomic: the file is
    replaced (temporary file in the same directory + os.replace), so a crash keeps the old log."""
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
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(keep)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_metrics(log_path) -> list[dict]:
    """The records of a metrics.jsonl file."""
    with open(log_path, encoding="utf-8") as f:
        return [json.loads(ln) for ln in f if ln.strip()]
