"""Parallel corpora (source/target sentence pairs) from two line-aligned files or one TSV file.

Two layouts are read:

* two files, line ``k`` of the source file translating line ``k`` of the target
  file (the OpenNMT / Multi30k layout: ``src-train.txt`` + ``tgt-train.txt``);
* one tab-separated file, one pair per line: ``source<TAB>target[<TAB>anything]``
  (the Tatoeba / Anki layout; columns after the second, such as Anki's
  attribution, are ignored).

Both must be UTF-8.  Bad input raises ``UserError`` with one line naming the
file and the line: unequal line counts, an empty (or all-whitespace) side, a
TSV row without a tab, non-UTF-8 bytes (with the byte offset).  Real corpora
sometimes carry a few empty lines (ende-toy's line 5); ``empty="skip"`` drops
those pairs instead and reports how many in ``ParallelText.skipped``.
Text is kept as read, apart from the line end: tokenisation comes later.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from rnnkit.errors import UserError
from rnnkit.data.lines import read_lines, where

EMPTY_POLICIES = ("error", "skip")


@dataclass(frozen=True)
class ParallelText:
    """Aligned sentence pairs.

    src, tgt: tuples of N strings (``src[k]`` translates to ``tgt[k]``);
    line: (N,) the 1-based line number each pair came from (for messages);
    skipped: line numbers of pairs dropped for an empty side (``empty="skip"``);
    origin: the file name(s), for reports.
    """

    src: tuple
    tgt: tuple
    line: tuple
    skipped: tuple = ()
    origin: str = ""

    def __len__(self) -> int:
        return len(self.src)

    def __post_init__(self):
        if not len(self.src) == len(self.tgt) == len(self.line):
            raise ValueError(f"src, tgt, line: expected equal lengths, got {len(self.src)}, {len(self.tgt)}, "
                             f"{len(self.line)}")


def check_empty_policy(empty: str):
    if empty not in EMPTY_POLICIES:
        raise ValueError(f"empty: expected one of {EMPTY_POLICIES}, got {empty!r}")


def _collect(rows, empty: str, origin: str, unit: str) -> ParallelText:
    """rows: iterable of (line, src, tgt, src_path, tgt_path) -> ParallelText, applying the empty policy."""
    src, tgt, lines, skipped = [], [], [], []
    for k, s, t, ps, pt in rows:
        side = "source" if not s.strip() else "target" if not t.strip() else None
        if side is not None:
            if empty == "error":
                at = where(ps if side == "source" else pt, k)
                raise UserError(f"{at}: empty {side} {unit} (every pair needs a sentence on both sides; "
                                f"remove the pair or skip empty pairs)")
            skipped.append(k)
            continue
        src.append(s)
        tgt.append(t)
        lines.append(k)
    if not src:
        raise UserError(f"{origin}: no sentence pairs (all {len(skipped)} pairs had an empty side)")
    return ParallelText(tuple(src), tuple(tgt), tuple(lines), tuple(skipped), origin)


def read_parallel(src_path, tgt_path, empty: str = "error") -> ParallelText:
    """Two line-aligned UTF-8 files -> ParallelText.

    Raises UserError for a missing/empty/non-UTF-8 file, unequal line counts
    (naming the first line that has no partner) or an empty line.
    """
    check_empty_policy(empty)
    src_lines = read_lines(src_path, "source file")
    tgt_lines = read_lines(tgt_path, "target file")
    ns, nt = len(src_lines), len(tgt_lines)
    if ns != nt:
        short, n = (src_path, ns) if ns < nt else (tgt_path, nt)
        longer = tgt_path if ns < nt else src_path
        raise UserError(f"{where(longer, n + 1)}: no partner line in {os.fspath(short)!r}: source has {ns} lines, "
                        f"target has {nt} (the two files must be line-aligned)")
    origin = f"{os.fspath(src_path)} + {os.fspath(tgt_path)}"
    rows = ((k + 1, s, t, src_path, tgt_path) for k, (s, t) in enumerate(zip(src_lines, tgt_lines)))
    return _collect(rows, empty, origin, "line")


def read_tsv_pairs(path, empty: str = "error") -> ParallelText:
    """One UTF-8 file of ``source<TAB>target[<TAB>ignored...]`` rows -> ParallelText.

    Raises UserError for a missing/empty/non-UTF-8 file, a row without a tab or
    an empty source or target column.
    """
    check_empty_policy(empty)
    rows = []
    for k, row in enumerate(read_lines(path, "pairs file"), start=1):
        cols = row.split("\t")
        if len(cols) < 2:
            if empty == "skip" and not row.strip():
                cols = ["", ""]
            else:
                raise UserError(f"{where(path, k)}: no tab in this row; expected source<TAB>target, got "
                                f"{_clip(row)!r}")
        rows.append((k, cols[0], cols[1], path, path))
    return _collect(rows, empty, os.fspath(path), "column")


def _clip(s: str, n: int = 40) -> str:
    return s if len(s) <= n else s[:n] + "..."
