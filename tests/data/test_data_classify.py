"""Classification data: TSV and one-file-per-class readers with file:line errors, the stdlib corpus, stratified splits."""
import collections
import re

import numpy as np
import pytest

from rnnkit.data.classify import (STDLIB_PACKAGES, read_class_dir, read_labelled, read_labelled_tsv, stdlib_lines,
                                  stratified_split)
from rnnkit.errors import UserError


def at(path, line):
    return re.escape(f"{path}:{line}: ")


def test_tsv_reader_and_errors(tmp_path):
    f = tmp_path / "d.tsv"
    f.write_text("pos\tgreat film\tno really\nneg\tdull\n")
    d = read_labelled(f)
    assert d.texts == ("great film\tno really", "dull") and d.labels == ("pos", "neg")
    assert d.classes == ("neg", "pos") and d.label_ids().tolist() == [1, 0]
    assert d.source == (f"{f}:1", f"{f}:2")
    for text, line, msg in [("pos\tok\nneg dull\n", 2, "no tab in this row"),
                            ("pos\tok\n\t dull\n", 2, "empty label"),
                            ("pos\tok\nneg\t \n", 2, "empty text after the tab"),
                            ("pos\tok\n\nneg\tx\n", 2, "empty line")]:
        f.write_text(text)
        with pytest.raises(UserError, match=at(f, line) + msg):
            read_labelled_tsv(f)
    f.write_text("pos\tok\n\nneg\tx\n")
    assert read_labelled_tsv(f, empty="skip").source == (f"{f}:1", f"{f}:3")
    f.write_bytes(b"pos\tok\nneg\t\xff\n")
    with pytest.raises(UserError, match=at(f, 2) + r"not valid UTF-8 \(byte 0xff at byte offset 11"):
        read_labelled_tsv(f)


def test_class_directory_reader_names_layout(tmp_path):
    """The PyTorch names-by-language layout: names/<Language>.txt, one name per line."""
    names = tmp_path / "names"
    names.mkdir()
    (names / "Arabic.txt").write_text("Khoury\nNahas\n")
    (names / "Czech.txt").write_text("Abl\nAdsit\nAjdrna\n")
    (names / ".hidden").write_text("x\n")
    (names / "sub").mkdir()
    d = read_labelled(names)
    assert d.classes == ("Arabic", "Czech") and collections.Counter(d.labels) == {"Arabic": 2, "Czech": 3}
    assert d.texts[2] == "Abl" and d.source[2] == f"{names / 'Czech.txt'}:1"
    test = read_class_dir(names)
    assert test.label_ids(d.classes).tolist() == [0, 0, 1, 1, 1]
    (names / "Greek.txt").write_text("Adamidis\n")
    with pytest.raises(UserError, match=at(names / "Greek.txt", 1) + "label 'Greek' is not one of the 2 training"):
        read_class_dir(names).label_ids(d.classes)
    (names / "Czech.txt").write_text("Abl\n\nAjdrna\n")
    with pytest.raises(UserError, match=at(names / "Czech.txt", 2) + "empty line"):
        read_class_dir(names)
    assert len(read_class_dir(names, empty="skip")) == 5
    (names / "Czech.csv").write_text("x\n")
    with pytest.raises(UserError, match="both give label 'Czech'"):
        read_class_dir(names)
    (names / "Czech.csv").unlink()
    (names / "Arabic.txt").write_bytes("Khoury\nNa\u00efas\n".encode("latin-1"))
    with pytest.raises(UserError, match=at(names / "Arabic.txt", 2) + "not valid UTF-8"):
        read_class_dir(names)
    (names / "Arabic.txt").write_text("")
    with pytest.raises(UserError, match="class file: .*Arabic.txt' is empty"):
        read_class_dir(names)
    with pytest.raises(UserError, match="data directory not found"):
        read_class_dir(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no files"):
        read_class_dir(tmp_path / "empty")


def test_stdlib_corpus_is_real_deterministic_and_unambiguous():
    a = stdlib_lines(per_class=200, seed=3)
    assert a == stdlib_lines(per_class=200, seed=3)
    assert a.texts != stdlib_lines(per_class=200, seed=4).texts
    assert a.classes == tuple(sorted(STDLIB_PACKAGES))
    assert collections.Counter(a.labels) == {p: 200 for p in STDLIB_PACKAGES}
    assert all(len(t) >= 12 and t == t.strip() for t in a.texts)
    owner = {}
    for t, lab in zip(a.texts, a.labels):
        assert owner.setdefault(t, lab) == lab, f"line {t!r} labelled both {owner[t]} and {lab}"
    assert len(owner) == len(a), "duplicate lines within a class"
    for t, lab, src in list(zip(a.texts, a.labels, a.source))[::97]:
        assert src.startswith(lab + "/"), f"{src} is not in package {lab}"
    assert any("import" in t for t in a.texts) and any("def " in t for t in a.texts)
    small = stdlib_lines(packages=("json", "email"), per_class=10_000, min_chars=40)
    counts = collections.Counter(small.labels)
    assert 100 < counts["json"] < 10_000 and counts["email"] > counts["json"], counts


def test_stratified_split():
    labels = np.repeat(np.arange(3), [100, 50, 11])
    s = stratified_split(labels, np.random.default_rng(0))
    assert np.array_equal(np.sort(np.concatenate(list(s.values()))), np.arange(labels.size))
    for c, n in enumerate((100, 50, 11)):
        counts = [int(np.sum(labels[s[k]] == c)) for k in ("train", "val", "test")]
        assert counts == [n - 2 * round(n * 0.1), round(n * 0.1), round(n * 0.1)], (c, counts)
    again = stratified_split(labels, np.random.default_rng(0))
    assert all(np.array_equal(s[k], again[k]) for k in s)
    with pytest.raises(ValueError, match="fractions: expected three non-negative numbers summing to 1"):
        stratified_split(labels, np.random.default_rng(0), (0.5, 0.2, 0.2))
