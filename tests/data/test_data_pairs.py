"""Parallel corpora: two line-aligned files or one TSV; every bad input names its file and line."""
import re

import pytest

from rnnkit.data.lines import read_lines
from rnnkit.data.pairs import read_parallel, read_tsv_pairs
from rnnkit.errors import UserError


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def at(path, line):
    return re.escape(f"{path}:{line}: ")


def test_two_files_read_aligned(tmp_path):
    s = write(tmp_path / "src.txt", "\ufeffein Haus\r\nzwei Häuser\n")
    t = write(tmp_path / "tgt.txt", "a house\ntwo houses")  # no final newline
    p = read_parallel(s, t)
    assert p.src == ("ein Haus", "zwei Häuser") and p.tgt == ("a house", "two houses")
    assert p.line == (1, 2) and len(p) == 2 and p.skipped == ()


def test_unequal_line_counts_name_the_first_unpartnered_line(tmp_path):
    s = write(tmp_path / "src.txt", "a\nb\nc\n")
    t = write(tmp_path / "tgt.txt", "x\ny\n")
    with pytest.raises(UserError, match=at(s, 3) + ".*source has 3 lines, target has 2"):
        read_parallel(s, t)
    with pytest.raises(UserError, match=at(s, 3) + ".*source has 2 lines, target has 3"):
        read_parallel(t, s)


def test_empty_line_error_or_skip(tmp_path):
    s = write(tmp_path / "src.txt", "a\n  \nc\nd\n")
    t = write(tmp_path / "tgt.txt", "x\ny\nz\n\n")
    with pytest.raises(UserError, match=at(s, 2) + "empty source line"):
        read_parallel(s, t)
    s2 = write(tmp_path / "src2.txt", "a\nb\nc\nd\n")
    with pytest.raises(UserError, match=at(t, 4) + "empty target line"):
        read_parallel(s2, t)
    p = read_parallel(s, t, empty="skip")
    assert p.src == ("a", "c") and p.tgt == ("x", "z") and p.line == (1, 3) and p.skipped == (2, 4)
    with pytest.raises(ValueError, match="empty: expected one of"):
        read_parallel(s, t, empty="drop")


def test_non_utf8_names_line_and_byte_offset(tmp_path):
    s = write(tmp_path / "src.txt", b"ok\ncaf\xe9 au lait\n")
    t = write(tmp_path / "tgt.txt", "x\ny\n")
    with pytest.raises(UserError, match=at(s, 2) + r"not valid UTF-8 \(byte 0xe9 at byte offset 6 of the file, "
                                                   r"byte 3 of the line\)"):
        read_parallel(s, t)
    write(s, b"a\nb\0\n")
    with pytest.raises(UserError, match=at(s, 2) + "NUL byte"):
        read_parallel(s, t)


def test_missing_and_empty_files(tmp_path):
    t = write(tmp_path / "tgt.txt", "x\n")
    with pytest.raises(UserError, match="source file: file not found"):
        read_parallel(tmp_path / "nope.txt", t)
    with pytest.raises(UserError, match="target file: .* is empty"):
        read_parallel(t, write(tmp_path / "e.txt", ""))
    with pytest.raises(UserError, match="is a directory"):
        read_lines(tmp_path)


@pytest.mark.parametrize("content, line, problem", [
    ("Go.\tGeh.\nHi. Hallo!\n", 2, "no tab in this row; expected source<TAB>target, got 'Hi. Hallo!'"),
    ("Go.\tGeh.\nHi.\t \n", 2, "empty target column"),
    ("\tGeh.\n", 1, "empty source column"),
    ("Go.\tGeh.\n\nHi.\tHallo!\n", 2, "no tab"),
    (b"Go.\tGeh\xfc.\n", 1, "not valid UTF-8 (byte 0xfc at byte offset 7"),
])
def test_tsv_errors_name_file_and_line(tmp_path, content, line, problem):
    f = write(tmp_path / "deu.txt", content)
    with pytest.raises(UserError, match=at(f, line) + re.escape(problem)):
        read_tsv_pairs(f)


def test_tsv_pairs(tmp_path):
    f = write(tmp_path / "deu.txt", "Go.\tGeh.\tCC-BY 2.0 (France) Attribution: tatoeba.org\nHi.\tHallo!\n")
    p = read_tsv_pairs(f)
    assert p.src == ("Go.", "Hi.") and p.tgt == ("Geh.", "Hallo!")  # third column ignored
    write(f, "Go.\tGeh.\n\nHi.\tHallo!\n")
    p = read_tsv_pairs(f, empty="skip")
    assert p.src == ("Go.", "Hi.") and p.line == (1, 3) and p.skipped == (2,)
    write(f, "\n \n")
    with pytest.raises(UserError, match="no sentence pairs"):
        read_tsv_pairs(f, empty="skip")


def test_smoke_g2p_and_ende_layouts(tmp_path):
    """Small copies of ../shared/data's g2p/ and ende-toy/ layouts, written here (tests never read shared/)."""
    from rnnkit.data.tokenize import SPACE_PATTERN, WordTokenizer
    from rnnkit.data.vocab import TokenVocab

    g2p = tmp_path / "g2p"
    g2p.mkdir()
    write(g2p / "src-train.txt", "s v u g d j e\nr a s p o l o ž i t i\nu b i t i\n")
    write(g2p / "tgt-train.txt", "s ʋ u ɡ d j e\nr a s p o l o ʒ i t i\nu b i t i\n")
    p = read_parallel(g2p / "src-train.txt", g2p / "tgt-train.txt")
    tok = WordTokenizer(pattern=SPACE_PATTERN)
    tgt = tok.tokenize_many(p.tgt)
    assert tgt[0] == ["s", "ʋ", "u", "ɡ", "d", "j", "e"] and tok.detokenize(tgt[1]) == p.tgt[1]
    ende = tmp_path / "ende-toy"
    ende.mkdir()
    write(ende / "src-train.txt", "It is not acceptable that , with the help of ...\n&quot; Two soldiers came .\n\n")
    write(ende / "tgt-train.txt", "Es geht nicht an , dass über ...\nZwei Soldaten kamen .\nDer Name dieser Seite .\n")
    with pytest.raises(UserError, match=at(ende / "src-train.txt", 3) + "empty source line"):
        read_parallel(ende / "src-train.txt", ende / "tgt-train.txt")
    p = read_parallel(ende / "src-train.txt", ende / "tgt-train.txt", empty="skip")
    assert len(p) == 2 and p.skipped == (3,)
    vocab = TokenVocab.build(tok.tokenize_many(p.tgt))
    assert vocab.decode(vocab.encode(tok.tokenize(p.tgt[1]))) == ["Zwei", "Soldaten", "kamen", "."]
