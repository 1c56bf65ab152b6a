"""rnnkit train classify / classify / eval through main([...]): tiny corpora, a few steps."""
import re

import numpy as np
import pytest
from conftest import one_line_error as _one_line_error

from rnnkit.cli import main
from rnnkit.io.checkpoint import load_checkpoint
from rnnkit.tasks.classify import ClassifyTask
from rnnkit.train import load_task

TINY = ["--hidden", "8", "--emb", "6", "--batch", "8", "--no-progress", "--eval-every", "5"]
STEMS = {"vowels": "aeiou", "digits": "0123456789", "symbols": "+-*/=<>"}


def _examples(n=40, seed=0):
    """Three classes told apart by their characters."""
    rng = np.random.default_rng(seed)
    return [(label, "".join(rng.choice(list(chars), rng.integers(3, 9))))
            for label, chars in STEMS.items() for _ in range(n)]


@pytest.fixture
def tsv(tmp_path):
    p = tmp_path / "data.tsv"
    p.write_text("".join(f"{label}\t{text}\n" for label, text in _examples()))
    return p


@pytest.fixture
def class_dir(tmp_path):
    d = tmp_path / "names"
    d.mkdir()
    for label in STEMS:
        (d / f"{label}.txt").write_text("".join(f"{t}\n" for lab, t in _examples() if lab == label))
    (d / ".hidden").write_text("ignored\n")
    return d


def test_tsv_train_resume_classify_eval(tsv, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    assert main(["train", "classify", "--data", str(tsv), *TINY, "--steps", "10", "--out", str(out),
                 "--pooling", "mean", "--class-weights", "balanced"]) == 0
    stdout = capsys.readouterr().out
    assert "3 classes, train/val/test 96/12/12" in stdout and "mean pooling" in stdout
    assert re.search(r"test split: 12 examples; loss \d\.\d+  accuracy \d+\.\d+ %", stdout), stdout
    assert "confusion matrix (rows: true class" in stdout
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ck = str(out / "last.safetensors")
    assert main(["train", "classify", "--resume", ck, "--steps", "14", "--no-progress"]) == 0
    assert load_checkpoint(ck)[1]["train"]["step"] == 14
    capsys.readouterr()

    inp = tmp_path / "in.txt"
    inp.write_text("aeio\n1234\n")
    assert main(["classify", ck, "--input", str(inp), "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    task = load_task(ck, ClassifyTask)
    labels, probs = task.top_k(["aeio", "1234"], 2)
    assert lines == ["  ".join(f"{c} {q:.3f}" for c, q in zip(labels[i], probs[i])) for i in range(2)]
    assert all(len(re.findall(r"(\w+) (0\.\d{3}|1\.000)", ln)) == 2 for ln in lines), lines

    assert main(["eval", ck, "--split", "test"]) == 0
    printed = float(re.search(r"accuracy (\d+\.\d+) %", capsys.readouterr().out).group(1))
    assert printed == pytest.approx(100 * task.evaluate("test")["accuracy"], abs=0.005)


def test_class_dir_learns_and_beats_the_majority(class_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "classify", "--data", str(class_dir), "--hidden", "16", "--emb", "8", "--batch", "16",
                 "--no-progress", "--eval-every", "0", "--steps", "60", "--lr", "0.02", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "training examples per class: digits 32, symbols 32, vowels 32" in stdout
    task = load_task(out / "last.safetensors", ClassifyTask)
    m = task.evaluate("test")
    assert m["accuracy"] >= 0.9 and m["majority"] == pytest.approx(1 / 3), m


@pytest.mark.parametrize("content, pattern", [
    (b"a\tx\nno tab\n", r"data\.tsv:2: no tab in this row"),
    (b"a\tx\nb\t\xff\n", r"data\.tsv:2: not valid UTF-8"),
    (b"a\tx\n\nb\ty\n", r"data\.tsv:2: empty line"),
    (b"a\tx\na\ty\n", r"needs at least two classes"),
])
def test_bad_data_is_one_line(tmp_path, capsys, content, pattern):
    p = tmp_path / "data.tsv"
    p.write_bytes(content)
    rc = main(["train", "classify", "--data", str(p), "--out", str(tmp_path / "run"), "--no-progress"])
    _one_line_error(capsys, rc, pattern)


def test_eval_of_another_kind_and_bad_input(tsv, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "classify", "--data", str(tsv), *TINY, "--steps", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    bad = tmp_path / "in.txt"
    bad.write_bytes(b"ok\n\xfe\n")
    rc = main(["classify", str(out / "last.safetensors"), "--input", str(bad)])
    _one_line_error(capsys, rc, r"in\.txt:2: not valid UTF-8")
    rc = main(["translate", str(out / "last.safetensors"), "--input", str(tsv)])
    _one_line_error(capsys, rc, r"classify")


def test_val_and_test_files_are_the_splits(tsv, tmp_path, capsys):
    """--val-data/--test-data: the given files are the val/test splits as they are; a missing one is 10 %
    of each training class; the default split is unchanged; a label outside the training classes is one line."""
    val, test = tmp_path / "val.tsv", tmp_path / "test.tsv"
    val.write_text("".join(f"{lab}\t{t}\n" for lab, t in _examples(3, seed=1)))
    test.write_text("".join(f"{lab}\t{t}\n" for lab, t in _examples(5, seed=2)))
    args = ["train", "classify", "--data", str(tsv), *TINY, "--steps", "2"]
    assert main([*args, "--val-data", str(val), "--test-data", str(test), "--out", str(tmp_path / "a")]) == 0
    assert "3 classes, train/val/test 120/9/15" in capsys.readouterr().out
    task = load_task(str(tmp_path / "a" / "last.safetensors"), ClassifyTask)
    assert task.evaluate("test")["examples"] == 15 and task.evaluate("val")["examples"] == 9
    assert main([*args, "--test-data", str(test), "--out", str(tmp_path / "b")]) == 0
    assert "train/val/test 108/12/15" in capsys.readouterr().out
    test.write_text("vowels\taei\nplanets\tmars\n")
    rc = main([*args, "--test-data", str(test), "--out", str(tmp_path / "c")])
    _one_line_error(capsys, rc, r"test\.tsv:2: label 'planets' is not one of the 3 training classes")
