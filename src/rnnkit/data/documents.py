"""Documents with summaries: JSON lines with named fields, or two line-aligned files.

JSON lines (``read_jsonl``): one JSON object per line; ``src_field`` holds the document,
``tgt_field`` the summary trained on, ``ref_fields`` (optional) the human references an
evaluation scores against (DialogSum's test split: ``summary1,summary2,summary3``).  A row
without ``tgt_field`` but with reference fields trains on its first reference.  A row with
none of the reference fields (or without ``ref_fields``) has its summary as its one reference
(DialogSum's dev split); one with some of them must have all.  Blank lines are skipped.

Two files (``read_two_files``): rnnkit.data.pairs.read_parallel's layout, one reference each.

Bad input raises ``UserError`` with one line ``FILE:LINE: problem``: not JSON, not an object,
a missing field (naming the fields the row has), a field that is not a string, or an empty
document or summary (``empty="skip"`` drops those rows and counts them in ``skipped``).

Lead baseline (``lead``): the first sentence of a document, the summarisation floor.  A
sentence ends at a newline, or at ., ! or ? followed by white space (not after the common
titles Mr. Mrs. Ms. Dr. St.).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from rnnkit.data.lines import json_object, read_lines, where
from rnnkit.data.pairs import ParallelText, check_empty_policy, read_parallel
from rnnkit.errors import UserError

_SENTENCE_END = re.compile(r"\n|(?<!\bMr)(?<!\bMrs)(?<!\bMs)(?<!\bDr)(?<!\bSt)[.!?](?=\s)")


@dataclass(frozen=True)
class Documents(ParallelText):
    """ParallelText of documents (``src``) and summaries (``tgt``) with ``refs``: one tuple of
    reference strings per document (``(tgt,)`` when there are no reference fields)."""

    refs: tuple = ()

    def __post_init__(self):
        super().__post_init__()
        if len(self.refs) != len(self.src):
            raise ValueError(f"refs: expected one tuple per document ({len(self.src)}), got {len(self.refs)}")


def parse_fields(text: str | None) -> tuple:
    """``"a,b,c"`` -> ("a", "b", "c"); None or "" -> ()."""
    if not text:
        return ()
    fields = tuple(f.strip() for f in text.split(","))
    if not all(fields):
        raise ValueError(f"ref_fields: expected comma-separated field names, got {text!r}")
    return fields


def _field(row: dict, name: str, at: str, what: str):
    if name not in row:
        raise UserError(f"{at}: no field {name!r} ({what}); the row has {', '.join(map(repr, row)) or 'no fields'}")
    v = row[name]
    if not isinstance(v, str):
        raise UserError(f"{at}: field {name!r} ({what}): expected a string, got {type(v).__name__}")
    return v


def read_jsonl(path, src_field: str, tgt_field: str, ref_fields=(), empty: str = "error") -> Documents:
    """JSON lines -> Documents (see the module docstring)."""
    check_empty_policy(empty)
    src, tgt, refs, lines, skipped = [], [], [], [], []
    for k, row in enumerate(read_lines(path, "data file"), start=1):
        if not row.strip():
            continue
        at = where(path, k)
        obj = json_object(row, at)
        doc = _field(obj, src_field, at, "--src-field")
        have = [f for f in ref_fields if f in obj]
        rs = tuple(_field(obj, f, at, "--ref-fields") for f in ref_fields) if have else ()
        summary = _field(obj, tgt_field, at, "--tgt-field") if tgt_field in obj or not rs else rs[0]
        side = "document" if not doc.strip() else "summary" if not summary.strip() else None
        if side is not None:
            if empty == "error":
                raise UserError(f"{at}: empty {side} (every row needs both; remove the row or skip empty rows)")
            skipped.append(k)
            continue
        src.append(doc)
        tgt.append(summary)
        refs.append(tuple(r for r in rs if r.strip()) or (summary,))
        lines.append(k)
    if not src:
        raise UserError(f"{os.fspath(path)}: no documents (skipped {len(skipped)} rows with an empty side)")
    return Documents(tuple(src), tuple(tgt), tuple(lines), tuple(skipped), os.fspath(path), tuple(refs))


def read_two_files(src_path, tgt_path, empty: str = "error") -> Documents:
    """Two line-aligned files (documents, summaries) -> Documents with one reference each."""
    p = read_parallel(src_path, tgt_path, empty)
    return Documents(p.src, p.tgt, p.line, p.skipped, p.origin, tuple((t,) for t in p.tgt))


def subset(d: Documents, idx, origin: str) -> Documents:
    """The documents ``idx`` (in that order) of ``d``."""
    take = lambda seq: tuple(seq[i] for i in idx)  # noqa: E731
    return Documents(take(d.src), take(d.tgt), take(d.line), d.skipped, origin, take(d.refs))


def lead(text: str) -> str:
    """The first sentence of ``text`` (module docstring), stripped."""
    text = text.strip()
    m = _SENTENCE_END.search(text)
    return (text[: m.end()] if m else text).strip()
