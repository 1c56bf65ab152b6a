"""Issue 20, "never lose a saved file": the one output rule (rnnkit.io.outputs) through the command
line.  Each test names the item of the issue it covers; each failed on a480676.  Tiny runs."""
import os
import re
import warnings

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.io.outputs import check_output, file_kind
from test_reliability_cli import SMALL, one_line_error, train


@pytest.fixture
def charlm_ckpt(tmp_path, text_file, capsys):
    out = tmp_path / "lm"
    assert train(text_file, out, "--steps", "2", "--cell", "lstm") == 0
    capsys.readouterr()
    return out / "last.safetensors"


@pytest.fixture
def seq2seq_ckpt(tmp_path, capsys):
    words = "red green blue cat dog sun".split()
    rng = np.random.default_rng(0)
    src = [" ".join(rng.choice(words, 3)) for _ in range(40)]
    (tmp_path / "pairs.tsv").write_text("".join(f"{s}\t{' '.join(reversed(s.split()))}\n" for s in src))
    out = tmp_path / "s2s"
    assert main(["train", "seq2seq", "--pairs", str(tmp_path / "pairs.tsv"), "--hidden", "8", "--emb", "4",
                 "--batch", "8", "--steps", "1", "--no-progress", "--out", str(out)]) == 0
    capsys.readouterr()
    (tmp_path / "in.txt").write_text("red cat dog\n")
    return out / "last.safetensors"


# ---------------------------------------------------------------- 1. an earlier run's files
@pytest.mark.parametrize("left", ["best.safetensors", "forecast.safetensors", "metrics.jsonl", "loss.png"])
def test_1_an_earlier_runs_files_refuse_a_new_run_unless_overwrite(tmp_path, text_file, capsys, left):
    out = tmp_path / "D"
    assert train(text_file, out, "--steps", "2") == 0
    if left == "forecast.safetensors":  # what a forecast run leaves (a checkpoint all the same)
        os.rename(out / "best.safetensors", out / left)
    for name in os.listdir(out):
        if name != left:
            os.unlink(out / name)
    before = (out / left).read_bytes()
    one_line_error(capsys, train(text_file, out, "--steps", "3"),
                   rf"--out .*D: holds an earlier run's {re.escape(left)}; add --overwrite to replace them")
    assert (out / left).read_bytes() == before and os.listdir(out) == [left]
    assert train(text_file, out, "--steps", "3", "--overwrite") == 0  # explicit: a new run replaces it
    log = (out / "metrics.jsonl").read_text().splitlines()
    assert '"event": "start"' in log[0] and sum('"event": "start"' in ln for ln in log) == 1


def test_1_gradflow_out_dir_of_an_earlier_run_is_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "g"
    out.mkdir()
    (out / "gradflow.png").write_bytes(b"\x89PNG\r\n\x1a\n an earlier plot")
    argv = ["gradflow", "--cell", "rnn", "--T", "12", "--steps", "1", "--batch", "4", "--measure-batch", "4",
            "--hidden", "4", "--out-dir", str(out)]
    one_line_error(capsys, main(argv), r"--out-dir .*g: holds an earlier run's gradflow.png; add --overwrite")
    assert main(argv + ["--overwrite"]) == 0
    assert (out / "gradflow.csv").exists()


def test_1_overwrite_is_for_new_runs_only(tmp_path, text_file, capsys):
    assert train(text_file, tmp_path / "D", "--steps", "2") == 0
    capsys.readouterr()
    one_line_error(capsys, main(["train", "charlm", "--resume", str(tmp_path / "D" / "last.safetensors"),
                                 "--overwrite"]), r"--overwrite: only for a new run")


# ---------------------------------------------------------------- 2-4. output = input, another kind
def test_2_export_never_replaces_its_checkpoint(charlm_ckpt, capsys, tmp_path):
    pytest.importorskip("onnx")
    before = charlm_ckpt.read_bytes()
    one_line_error(capsys, main(["export", str(charlm_ckpt), "--onnx", str(charlm_ckpt)]),
                   r"--onnx .*last.safetensors': is the input .* of this command")
    link = tmp_path / "link.onnx"
    link.symlink_to(charlm_ckpt)  # the same file by another name
    one_line_error(capsys, main(["export", str(charlm_ckpt), "--onnx", str(link)]), r"is the input")
    other = tmp_path / "best-copy.safetensors"
    other.write_bytes(before)  # another checkpoint: a file of another kind
    one_line_error(capsys, main(["export", str(charlm_ckpt), "--onnx", str(other)]),
                   r"holds a file of kind safetensors, not onnx")
    assert charlm_ckpt.read_bytes() == before and other.read_bytes() == before


def test_3_translate_attention_plot_never_replaces_the_checkpoint(seq2seq_ckpt, capsys, tmp_path):
    before = seq2seq_ckpt.read_bytes()
    inp = str(tmp_path / "in.txt")
    one_line_error(capsys, main(["translate", str(seq2seq_ckpt), "--input", inp, "--attention-plot",
                                 str(seq2seq_ckpt)]), r"--attention-plot .*: is the input")
    one_line_error(capsys, main(["translate", str(seq2seq_ckpt), "--input", inp, "--attention-plot", inp]),
                   r"--attention-plot .*in.txt': is the input")
    assert seq2seq_ckpt.read_bytes() == before


def test_4_inspect_out_never_replaces_an_input(charlm_ckpt, text_file, capsys, tmp_path):
    before, text = charlm_ckpt.read_bytes(), text_file.read_bytes()
    one_line_error(capsys, main(["inspect", str(charlm_ckpt), "--text", str(text_file), "--out", str(charlm_ckpt)]),
                   r"--out .*: is the input")
    one_line_error(capsys, main(["inspect", str(charlm_ckpt), "--text", str(text_file), "--out", str(text_file)]),
                   r"--out .*t.txt': is the input")
    notes = tmp_path / "notes.html.bak"
    notes.write_text("my notes\n")
    one_line_error(capsys, main(["inspect", str(charlm_ckpt), "--text", str(text_file), "--out", str(notes)]),
                   r"holds a file of kind text, not html")
    assert charlm_ckpt.read_bytes() == before and text_file.read_bytes() == text


# ---------------------------------------------------------------- 7-8. directories, /proc, read-only, bad text
def test_7_export_and_translate_to_a_directory_or_proc_are_one_line(charlm_ckpt, seq2seq_ckpt, capsys, tmp_path):
    pytest.importorskip("onnx")
    for target, pattern in ((tmp_path, "is a directory"), ("/proc/x.onnx", "is under /proc")):
        one_line_error(capsys, main(["export", str(charlm_ckpt), "--onnx", str(target)]), pattern)
    one_line_error(capsys, main(["translate", str(seq2seq_ckpt), "--input", str(tmp_path / "in.txt"),
                                 "--attention-plot", str(tmp_path)]), "is a directory")


def test_8_inspect_bad_out_gates_and_text_are_one_line(charlm_ckpt, text_file, capsys, tmp_path, monkeypatch):
    base = ["inspect", str(charlm_ckpt), "--text", str(text_file)]
    one_line_error(capsys, main(base + ["--out", str(tmp_path)]), "is a directory")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 au lait".encode("latin-1"))
    one_line_error(capsys, main(["inspect", str(charlm_ckpt), "--text", str(latin), "--out", str(tmp_path / "p.html")]),
                   r"not UTF-8 text \(byte 0xe9 at offset 3\)")
    binary = tmp_path / "b.bin"
    binary.write_bytes(bytes(range(256)))
    one_line_error(capsys, main(["inspect", str(charlm_ckpt), "--text", str(binary), "--out", str(tmp_path / "p.html")]),
                   r"not UTF-8 text")
    ro = tmp_path / "ro"
    ro.mkdir()
    import errno

    import rnnkit.atomic as atomic

    real = atomic.tempfile.mkstemp

    def read_only(*a, dir=None, **k):  # a read-only mount, for a root user too
        if dir is not None and os.path.abspath(dir) == str(ro):
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(atomic.tempfile, "mkstemp", read_only)
    one_line_error(capsys, main(base + ["--out", str(ro / "p.html")]), r"read-only file system \(EROFS\)")
    one_line_error(capsys, main(base + ["--out", str(tmp_path / "p.html"), "--gates", str(ro / "g")]),
                   r"read-only file system \(EROFS\)")
    monkeypatch.undo()
    assert main(base + ["--out", str(tmp_path / "p.html")]) == 0
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []  # the atomic writer, no <out>.tmp left


# ---------------------------------------------------------------- 14. messages
def test_14_argparse_errors_are_one_line_pointing_to_help(capsys):
    for argv, pattern in ((["train", "charlm", "--steps", "five"], r"argument --steps: expected an integer >= 0, "
                           r"got 'five' \(see rnnkit train charlm --help\)"),
                          (["train", "charlm", "--bogus"], r"unrecognized arguments: --bogus \(see rnnkit train "
                                                           r"charlm --help\)")):
        one_line_error(capsys, main(argv), pattern)


def test_14_dangling_symlink_out_is_named(tmp_path, text_file, capsys):
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "gone")
    one_line_error(capsys, train(text_file, link, "--steps", "1"), r"is a dangling symbolic link")


def test_14_constant_series_has_no_infinite_ratio(tmp_path, capsys):
    csv = tmp_path / "flat.csv"
    csv.write_text("v\n" + "3.5\n" * 300)
    rc = main(["train", "forecast", "--csv", str(csv), "--column", "v", "--steps", "2", "--hidden", "4",
               "--out", str(tmp_path / "f"), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    line = next(ln for ln in out.splitlines() if ln.startswith("horizon 1:"))
    assert "inf" not in line and "RMSE 0" in line, line


def test_14_gates_into_a_directory_writes_named_files(charlm_ckpt, text_file, capsys, tmp_path):
    d = tmp_path / "adir"
    d.mkdir()
    assert main(["inspect", str(charlm_ckpt), "--text", str(text_file), "--out", str(tmp_path / "p.html"),
                 "--gates", str(d) + "/"]) == 0
    names = sorted(os.listdir(d))
    assert not any(n.startswith(".") for n in names) and {"gates.csv", "gates.json"} <= set(names), names


def test_14_unicode_class_names_plot_without_glyph_warnings(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    rows = [f"{lab}\t{''.join(rng.choice(list(chars), 5))}\n" for lab, chars in
            (("ශ්‍රී", "abc"), ("日本", "xyz"), ("ok", "123")) for _ in range(30)]
    (tmp_path / "u.tsv").write_text("".join(rows), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["train", "classify", "--data", str(tmp_path / "u.tsv"), "--hidden", "6", "--emb", "4",
                     "--batch", "8", "--steps", "2", "--no-progress", "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "confusion.png").exists()


def test_14_help_says_zero_is_off(capsys):
    assert main(["train", "charlm", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    for flag in ("--time-limit", "--patience"):
        assert re.search(re.escape(flag) + r" \S+ [^-]*0 = off", help_text), flag


# ---------------------------------------------------------------- the rule itself, and every writer
def test_file_kinds_and_the_rule(tmp_path):
    png, html, text = tmp_path / "a.png", tmp_path / "a.html", tmp_path / "a.txt"
    png.write_bytes(b"\x89PNG\r\n\x1a\n...")
    html.write_text("<!DOCTYPE html><html></html>")
    text.write_text("notes")
    assert (file_kind(png), file_kind(html), file_kind(text)) == ("png", "html", "text")
    assert check_output(png, "png") == str(png)  # the same kind is replaced (an earlier plot)
    from rnnkit.errors import OutputError
    for path, kind in ((png, "html"), (html, "png"), (text, "csv")):
        with pytest.raises(OutputError, match="it is not replaced"):
            check_output(path, kind)


# ---------------------------------------------------------------- every writer calls the rule
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "src", "rnnkit")
#: the only places that may write a file without rnnkit.io.outputs.write_output, and why
RAW_WRITERS = {
    "atomic.py": "the atomic writer itself",
    "io/outputs.py": "the rule, which calls the atomic writer",
    "io/lock.py": "the lock file .rnnkit.lock (os.open; ENOSPC handled)",
    "train/log.py": "metrics.jsonl appends (os.open O_APPEND, all or nothing)",
    "cli/sweep.py": "a trial's train.log, in a directory mkdtemp just made",
    "cli/train.py": "os.devnull for the other MPI ranks' stdout",
    "cli/bench.py": "bench longlag --log, appended after check_output",
    "engine/plans.py": "the thread-plan cache, its own JSON file in the cache directory (atomic)",
}
_RAW = re.compile(r"write_bytes_atomic\(|atomic_open\(|open\([^)]*[\"'][wax]b?[\"']|os\.replace\(|\.savefig\([^b]")


def test_every_writer_goes_through_the_rule():
    found = []
    for folder, _, files in os.walk(SRC):
        for f in files:
            rel = os.path.relpath(os.path.join(folder, f), SRC)
            if f.endswith(".py") and rel not in RAW_WRITERS:
                for k, line in enumerate(open(os.path.join(folder, f), encoding="utf-8"), start=1):
                    if _RAW.search(line.split("#")[0]) and not line.lstrip().startswith(("\"", "'", "``")):
                        found.append(f"{rel}:{k}: {line.strip()}")
    assert not found, "writes around rnnkit.io.outputs.write_output:\n" + "\n".join(found)


def _writers():
    """(name, write(path)) of every library writer: each must refuse a file of another kind."""
    from rnnkit.diagnostics.gradflow_experiment import write_gradflow_csv
    from rnnkit.io.checkpoint import save_checkpoint
    from rnnkit.train.log import trim_after
    from rnnkit.train.plots import plot_confusion

    def onnx_model(p):
        pytest.importorskip("onnx")
        from rnnkit import LSTM
        from rnnkit.io.onnx_export import save_onnx, to_onnx
        save_onnx(to_onnx(LSTM(2, 3)), p)

    return [("save_checkpoint", lambda p: save_checkpoint(p, {"w": np.zeros(2)}, {"kind": "x"})),
            ("save_onnx", onnx_model),
            ("plots", lambda p: plot_confusion(np.eye(2), ["a", "b"], p) or pytest.importorskip("matplotlib")),
            ("gradflow csv", lambda p: write_gradflow_csv([{"cell": "lstm"}], p)),
            ("metrics trim", lambda p: trim_after(p, 0))]


@pytest.mark.parametrize("name,write", _writers(), ids=[n for n, _ in _writers()])
def test_each_library_writer_refuses_a_file_of_another_kind(tmp_path, name, write):
    from rnnkit.errors import OutputError

    target = tmp_path / "precious.txt"
    target.write_text("a user's notes\n")
    with pytest.raises(OutputError, match="it is not replaced"):
        write(str(target))
    assert target.read_text() == "a user's notes\n"
