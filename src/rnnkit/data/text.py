"""Text corpora for character-level models: loading, the default corpus, vocabulary, splits.

Default corpus (no ``--text``): the Python standard library's own ``.py``
files, found at run time under ``sysconfig.get_paths()["stdlib"]`` -- no
download, present wherever Python is.  Files are taken in sorted order of
their path relative to that directory, skipping test suites
(``test``/``tests``/``idle_test`` directories), ``site-packages`` /
``dist-packages`` and files that are not valid UTF-8, and concatenated
(each followed by a newline) until ``max_chars`` characters (default
2,000,000; the last file is cut).  The result is deterministic for a given
Python installation; its SHA-256 is stored in checkpoints so a resume or an
eval on another installation is detected.
"""
from __future__ import annotations

import functools
import hashlib
import os
import sysconfig
from dataclasses import dataclass

import numpy as np

from rnnkit.errors import UserError
from rnnkit.data.lines import read_bytes

DEFAULT_MAX_CHARS = 2_000_000
_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
SPLITS = ("train", "val", "test")


def load_text(path) -> str:
    """Read a UTF-8 text file, raising UserError for missing, empty, binary or non-UTF-8 files."""
    path = os.fspath(path)
    data = read_bytes(path, "--text")
    if not data:
        raise UserError(f"--text: file {path!r} is empty")
    nul = data.find(b"\0")
    if nul >= 0:
        raise UserError(f"--text: file {path!r} looks binary (NUL byte at offset {nul}); expected UTF-8 text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"--text: file {path!r} is not valid UTF-8 (byte 0x{data[e.start]:02x} at offset "
                        f"{e.start}); convert it to UTF-8") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text


def stdlib_sources():
    """Yield ``(relative path, text)`` of the standard library's .py files, in sorted path order.

    The selection of the default corpus (see the module docstring): test suites,
    site-packages and files that are not UTF-8, contain NUL or are blank are skipped.
    Raises UserError if the directory holds no such file.
    """
    root = sysconfig.get_paths()["stdlib"]
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for fn in filenames:
            if fn.endswith(".py"):
                files.append(os.path.relpath(os.path.join(dirpath, fn), root))
    files.sort()
    found = False
    for rel in files:
        try:
            with open(os.path.join(root, rel), "rb") as f:
                s = f.read().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if "\0" in s or not s.strip():
            continue
        found = True
        yield rel, s
    if not found:
        raise UserError(f"no .py files found under the standard library directory {root!r}; pass --text FILE")


def stdlib_corpus(max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The default corpus: the standard library's .py files (see the module docstring)."""
    parts, total = [], 0
    for _, s in stdlib_sources():
        s = s + "\n"
        parts.append(s[: max_chars - total])
        total += len(parts[-1])
        if total >= max_chars:
            break
    return "".join(parts)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Vocab:
    """Characters <-> ids.  ``chars`` is the sorted string of distinct characters."""

    chars: str

    @classmethod
    def from_text(cls, text: str) -> "Vocab":
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    @functools.cached_property
    def _table(self) -> dict:
        return {c: i for i, c in enumerate(self.chars)}

    def encode(self, text: str, what: str = "text") -> np.ndarray:
        """str -> int32 ids; characters outside the vocabulary raise UserError naming them."""
        table = self._table
        try:
            return np.fromiter((table[c] for c in text), dtype=np.int32, count=len(text))
        except KeyError:
            bad = sorted(set(text) - set(self.chars))
            shown = ", ".join(repr(c) for c in bad[:10]) + (" ..." if len(bad) > 10 else "")
            raise UserError(f"{what}: {len(bad)} character(s) not in the model's vocabulary of {len(self)}: "
                            f"{shown}") from None

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in np.asarray(ids).reshape(-1))


def split_ranges(n: int, fractions=(0.9, 0.05, 0.05)) -> dict[str, tuple[int, int]]:
    """[start, stop) of the contiguous train/val/test splits of ``n`` items (90/5/5 by default)."""
    n_train = int(n * fractions[0])
    n_val = int(n * fractions[1])
    return {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n)}


def split_ids(ids: np.ndarray, fractions=(0.9, 0.05, 0.05)) -> dict[str, np.ndarray]:
    """Contiguous train/val/test split (first 90 %, next 5 %, last 5 % by default)."""
    return {k: ids[a:b] for k, (a, b) in split_ranges(len(ids), fractions).items()}
