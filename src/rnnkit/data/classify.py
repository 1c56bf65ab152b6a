"""Labelled text for sequence classification: TSV or one-file-per-class readers, the default corpus, splits.

Layouts:

* ``label<TAB>text`` per line (a TSV file; the text is everything after the
  first tab, so it may itself contain tabs).  Header rule: a first row whose label
  column is literally ``label`` (``label<TAB>text``, as pandas and spreadsheets
  write it) is a header and skipped; ``label`` on any later row is an error, so
  a header never becomes a class;
* a directory with one UTF-8 file per class, one example per line, the file
  name without its extension being the label (``names/Arabic.txt``, ... -- the
  layout of the PyTorch names-by-language tutorial).  Hidden files are ignored.

Bad input raises ``UserError`` naming the file and the line (a row without a
tab, an empty label or text, non-UTF-8 bytes, an empty file); empty lines are
an error unless ``empty="skip"``.

Default corpus (no download, real text): lines of the Python standard
library's own source (found at run time as for the char-LM, ``data.text``),
labelled by the top-level package they come from, for ``STDLIB_PACKAGES``.
A line is stripped of surrounding whitespace; lines shorter than
``min_chars`` are skipped, duplicates within a package kept once, and lines
that occur in more than one package dropped (they carry no label).  From each
package ``per_class`` lines (or all it has, if fewer) are drawn without
replacement with the seed.  ``stratified_split`` then splits every class in
the same proportions.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

from rnnkit.errors import UserError
from rnnkit.data.lines import read_lines, where
from rnnkit.data.pairs import check_empty_policy
from rnnkit.data.text import stdlib_sources

STDLIB_PACKAGES = ("asyncio", "email", "http", "importlib", "json", "logging", "multiprocessing", "unittest",
                   "urllib", "xml")


@dataclass(frozen=True)
class LabelledText:
    """texts, labels: N strings each; source: N "FILE:LINE" strings (for messages); origin: for reports."""

    texts: tuple
    labels: tuple
    source: tuple
    origin: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def classes(self) -> tuple:
        """The distinct labels, sorted."""
        return tuple(sorted(set(self.labels)))

    def label_ids(self, classes=None) -> np.ndarray:
        """(N,) int64 index of each label in ``classes`` (default: this data's own classes).

        A label outside ``classes`` (e.g. in a test file) raises UserError naming its line.
        """
        classes = self.classes if classes is None else tuple(classes)
        index = {c: i for i, c in enumerate(classes)}
        for lab, src in zip(self.labels, self.source):
            if lab not in index:
                raise UserError(f"{src}: label {lab!r} is not one of the {len(classes)} training classes")
        return np.array([index[lab] for lab in self.labels], dtype=np.int64)


#: a first TSV row with this label is a header (see the module docstring)
HEADER_LABEL = "label"


def read_labelled_tsv(path, empty: str = "error") -> LabelledText:
    """A ``label<TAB>text`` file -> LabelledText (see the module docstring)."""
    check_empty_policy(empty)
    texts, labels, source = [], [], []
    for k, row in enumerate(read_lines(path, "data file"), start=1):
        if not row.strip():
            if empty == "skip":
                continue
            raise UserError(f"{where(path, k)}: empty line; expected label<TAB>text")
        if "\t" not in row:
            raise UserError(f"{where(path, k)}: no tab in this row; expected label<TAB>text, got {row[:40]!r}")
        label, text = row.split("\t", 1)
        if label.strip() == HEADER_LABEL:
            if k == 1:
                continue  # the header row (see the module docstring)
            raise UserError(f"{where(path, k)}: label {HEADER_LABEL!r} is reserved for a header in the first row")
        if not label.strip():
            raise UserError(f"{where(path, k)}: empty label before the tab")
        if not text.strip():
            raise UserError(f"{where(path, k)}: empty text after the tab (label {label!r})")
        texts.append(text)
        labels.append(label.strip())
        source.append(where(path, k))
    if not texts:
        raise UserError(f"data file {os.fspath(path)!r}: no examples")
    return LabelledText(tuple(texts), tuple(labels), tuple(source), os.fspath(path))


def read_class_dir(path, empty: str = "error") -> LabelledText:
    """A directory of one file per class (stem = label, one example per line) -> LabelledText."""
    check_empty_policy(empty)
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise UserError(f"data directory not found: {path!r}")
    files = sorted(fn for fn in os.listdir(path)
                   if not fn.startswith(".") and os.path.isfile(os.path.join(path, fn)))
    if not files:
        raise UserError(f"data directory {path!r} holds no files; expected one file per class")
    labels_seen = {}
    texts, labels, source = [], [], []
    for fn in files:
        label = PurePath(fn).stem
        if label in labels_seen:
            raise UserError(f"data directory {path!r}: files {labels_seen[label]!r} and {fn!r} "
                            f"both give label {label!r}")
        labels_seen[label] = fn
        full = os.path.join(path, fn)
        for k, line in enumerate(read_lines(full, "class file"), start=1):
            if not line.strip():
                if empty == "skip":
                    continue
                raise UserError(f"{where(full, k)}: empty line; expected one example of class {label!r} per line")
            texts.append(line)
            labels.append(label)
            source.append(where(full, k))
    return LabelledText(tuple(texts), tuple(labels), tuple(source), path)


def read_labelled(path, empty: str = "error") -> LabelledText:
    """``read_class_dir`` for a directory, else ``read_labelled_tsv``."""
    return read_class_dir(path, empty) if os.path.isdir(path) else read_labelled_tsv(path, empty)


def stdlib_lines(packages=STDLIB_PACKAGES, per_class: int = 700, min_chars: int = 12, seed: int = 0) -> LabelledText:
    """The default corpus: standard-library source lines labelled by package (see the module docstring)."""
    packages = tuple(packages)
    if len(set(packages)) < 2:
        raise ValueError(f"packages: expected at least two distinct packages, got {packages!r}")
    for name, v in (("per_class", per_class), ("min_chars", min_chars)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    first = {p: {} for p in packages}  # package -> line -> "file:line" of its first occurrence
    for rel, text in stdlib_sources():
        parts = PurePath(rel).parts
        if len(parts) < 2 or parts[0] not in first:
            continue
        seen = first[parts[0]]
        for k, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if len(line) >= min_chars and line not in seen:
                seen[line] = f"{rel}:{k}"
    owners = {}
    for p in packages:
        for line in first[p]:
            owners[line] = owners.get(line, 0) + 1
    rng = np.random.default_rng(seed)
    texts, labels, source = [], [], []
    for p in packages:
        lines = sorted(line for line in first[p] if owners[line] == 1)
        if not lines:
            raise UserError(f"default classification corpus: no lines of package {p!r} in this Python's standard "
                            f"library; pass --data")
        pick = np.sort(rng.choice(len(lines), min(per_class, len(lines)), replace=False))
        texts.extend(lines[i] for i in pick)
        labels.extend([p] * pick.size)
        source.extend(first[p][lines[i]] for i in pick)
    return LabelledText(tuple(texts), tuple(labels), tuple(source), f"stdlib:{','.join(packages)}")


def stratified_split(labels, rng: np.random.Generator, fractions=(0.8, 0.1, 0.1)) -> dict:
    """{"train", "val", "test"} -> sorted int64 indices; each class split in ``fractions`` (rounded).

    Every index lands in exactly one split; a class's val and test shares are
    ``round(n * fraction)`` of its n examples, the rest is train.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions: expected three non-negative numbers summing to 1, got {tuple(fractions)}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    labels = np.asarray(labels)
    out = {"train": [], "val": [], "test": []}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val, n_test = round(idx.size * fractions[1]), round(idx.size * fractions[2])
        out["test"].append(idx[:n_test])
        out["val"].append(idx[n_test:n_test + n_val])
        out["train"].append(idx[n_test + n_val:])
    return {k: np.sort(np.concatenate(v)).astype(np.int64) for k, v in out.items()}
