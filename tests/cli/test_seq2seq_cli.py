"""rnnkit train seq2seq / translate / eval through main([...]): tiny corpora, a few steps."""
import re

import numpy as np
import pytest
from conftest import one_line_error as _one_line_error

from rnnkit.cli import main
from rnnkit.io.checkpoint import load_checkpoint
from rnnkit.tasks.seq2seq import Seq2SeqTask, Seq2SeqTaskConfig
from rnnkit.train import TrainConfig, Trainer, load_task

TINY = ["--hidden", "12", "--emb", "8", "--batch", "8", "--no-progress", "--eval-every", "5"]
WORDS = ["red", "green", "blue", "cat", "dog", "sun", "moon", "tree", "fish", "bird"]


def _pairs(n=60, seed=0):
    """Word sequences and their reversals: a task the model can start to learn in a few steps."""
    rng = np.random.default_rng(seed)
    src = [" ".join(WORDS[i] for i in rng.integers(0, len(WORDS), rng.integers(2, 6))) for _ in range(n)]
    return src, [" ".join(reversed(s.split())) for s in src]


@pytest.fixture
def files(tmp_path):
    src, tgt = _pairs()
    (tmp_path / "src.txt").write_text("\n".join(src) + "\n")
    (tmp_path / "tgt.txt").write_text("\n".join(tgt) + "\n")
    (tmp_path / "pairs.tsv").write_text("".join(f"{s}\t{t}\tCC-BY attribution\n" for s, t in zip(src, tgt)))
    return tmp_path


def _number(pattern, text):
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in {text!r}"
    return float(m.group(1))


@pytest.mark.slow
def test_default_dates_corpus_train_translate_eval(tmp_path, capsys):
    out = tmp_path / "dates"
    assert main(["train", "seq2seq", "--dates", "400", *TINY, "--steps", "10", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "corpus: dates (400 training pairs): train/val/test 400/500/2,000 pairs" in stdout
    assert "step     10" in stdout and "exact match" in stdout and "BLEU" in stdout
    assert "test (2,000 pairs, greedy)" in stdout
    _, meta = load_checkpoint(out / "last.safetensors", kind="seq2seq")
    task = meta["task"]
    assert task["src_tokenizer"] == {"kind": "char"} and "<eos>" in task["tgt_vocab"]["specials"]
    assert set(task["tgt_vocab"]["tokens"]) <= set("0123456789-")


@pytest.mark.slow
def test_src_tgt_files_resume_translate_eval(files, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "seq2seq", "--src", str(files / "src.txt"), "--tgt", str(files / "tgt.txt"), "--tokens", "word"]
    assert main([*args, *TINY, "--steps", "10", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "train/val/test 54/3/3 pairs" in stdout and "kept 54 of 54 pairs" in stdout
    ck = str(out / "last.safetensors")
    assert main(["train", "seq2seq", "--resume", ck, "--steps", "15", "--no-progress"]) == 0
    assert "resuming" in capsys.readouterr().out and load_checkpoint(ck)[1]["train"]["step"] == 15
    # a model flag that differs from the checkpoint is refused
    rc = main(["train", "seq2seq", "--resume", ck, "--hidden", "20", "--steps", "20"])
    _one_line_error(capsys, rc, r"--hidden 20: differs from the checkpoint's 12")

    inp = files / "in.txt"
    inp.write_text("red cat\n\nsun moon tree\n")
    assert main(["translate", ck, "--input", str(inp)]) == 0
    greedy = capsys.readouterr().out.split("\n")[:-1]
    assert len(greedy) == 3 and greedy[1] == ""
    assert main(["translate", ck, "--input", str(inp), "--beam", "3", "--max-len", "6"]) == 0
    beam = capsys.readouterr().out.split("\n")[:-1]
    assert len(beam) == 3 and all(len(s.split()) <= 6 for s in beam)
    task = load_task(ck, Seq2SeqTask)
    assert greedy == task.translate(["red cat", "", "sun moon tree"])[0]
    assert beam == task.translate(["red cat", "", "sun moon tree"], beam=3, max_len=6)[0]

    sacrebleu = pytest.importorskip("sacrebleu")
    assert main(["eval", ck, "--split", "test"]) == 0
    printed = _number(r"BLEU (\d+\.\d+)", capsys.readouterr().out)
    hyps, refs = task.hypotheses("test"), task.data["test"].refs
    assert printed == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize="13a").score, abs=1e-6)


def test_pairs_file_and_attention_plot(files, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    assert main(["train", "seq2seq", "--pairs", str(files / "pairs.tsv"), "--tokens", "space", "--max-src-len", "4",
                 *TINY, "--steps", "5", "--out", str(out), "--score", "additive"]) == 0
    stdout = capsys.readouterr().out
    assert re.search(r"length filter \(train\): kept \d+ of 54 pairs; dropped \d+: .*source longer than 4 tokens",
                     stdout), stdout
    png = tmp_path / "att.png"
    assert main(["translate", str(out / "last.safetensors"), "--input", str(files / "src.txt"),
                 "--attention-plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_takes_the_same_batches(files, tmp_path):
    """Training 6 steps straight and 3 + 3 after resuming gives the same parameters (the batch plan is
    in the checkpoint's carry)."""
    args = ["train", "seq2seq", "--src", str(files / "src.txt"), "--tgt", str(files / "tgt.txt"), "--batch", "4",
            "--hidden", "8", "--emb", "4", "--no-progress", "--eval-every", "0"]
    assert main([*args, "--steps", "6", "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--steps", "3", "--out", str(tmp_path / "b")]) == 0
    assert main(["train", "seq2seq", "--resume", str(tmp_path / "b" / "last.safetensors"), "--steps", "6",
                 "--no-progress"]) == 0
    a, _ = load_checkpoint(tmp_path / "a" / "last.safetensors")
    b, _ = load_checkpoint(tmp_path / "b" / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("case, pattern", [
    ("unequal", r"tgt\.txt:4: no partner line in '.*src\.txt': source has 3 lines, target has 4"),
    ("notab", r"pairs\.tsv:2: no tab in this row"),
    ("utf8", r"src\.txt:2: not valid UTF-8"),
    ("empty", r"src\.txt:2: empty source line"),
])
def test_bad_corpus_is_one_line_naming_file_and_line(tmp_path, capsys, case, pattern):
    src, tgt, pairs = tmp_path / "src.txt", tmp_path / "tgt.txt", tmp_path / "pairs.tsv"
    src.write_bytes({"utf8": b"a b\n\xe9t\xe9\nc\n", "empty": b"a b\n\nc\n"}.get(case, b"a b\nc d\ne\n"))
    tgt.write_text("b a\nd c\ne\n" + ("f\n" if case == "unequal" else ""))
    pairs.write_text("a b\tb a\nno tab here\n")
    corpus = ["--pairs", str(pairs)] if case == "notab" else ["--src", str(src), "--tgt", str(tgt)]
    rc = main(["train", "seq2seq", *corpus, "--out", str(tmp_path / "run"), "--no-progress"])
    _one_line_error(capsys, rc, pattern)


def test_bad_flags_and_input(files, tmp_path, capsys):
    rc = main(["train", "seq2seq", "--src", str(files / "src.txt"), "--out", str(tmp_path / "r")])
    _one_line_error(capsys, rc, r"--src needs --tgt")
    rc = main(["train", "seq2seq", "--score", "dot", "--dates", "50", "--out", str(tmp_path / "r")])
    _one_line_error(capsys, rc, r"score: 'dot' needs encoder outputs of the decoder's size")
    rc = main(["translate", str(tmp_path / "missing.safetensors"), "--input", str(files / "src.txt")])
    assert rc == 2 and "missing.safetensors" in capsys.readouterr().err


@pytest.mark.slow
def test_dates_attention_aligns_the_year():
    """The numbers behind the attention plot: a small model trained here for ~150 steps puts most of
    the attention of the output's year digits on the source's year digits (an even spread would put
    about 4 / source length there; an untrained model gets no date right and is measured on none)."""
    from rnnkit.diagnostics.alignment import year_attention

    task = Seq2SeqTask(Seq2SeqTaskConfig(dates=3000, hidden=16, emb=16, batch=32))
    assert year_attention(task, n=100)["dates"] == 0
    Trainer(task, TrainConfig(steps=150, lr=1e-2, progress=False), eval_split=None).fit()
    r = year_attention(task, n=150)
    assert r["dates"] >= 50, r
    assert r["mass"] > 0.8 and r["mass"] > 2.5 * r["uniform"], r


def test_skip_empty_drops_and_reports_pairs(files, tmp_path, capsys):
    src = (files / "src.txt").read_text().splitlines()
    src[4] = "   "  # an all-whitespace source line, as in ende-toy
    (files / "src.txt").write_text("\n".join(src) + "\n")
    args = ["train", "seq2seq", "--src", str(files / "src.txt"), "--tgt", str(files / "tgt.txt"), "--tokens", "word",
            "--lower", *TINY, "--steps", "2"]
    _one_line_error(capsys, main([*args, "--out", str(tmp_path / "a")]), r"src\.txt:5: empty source line")
    assert main([*args, "--skip-empty", "--out", str(tmp_path / "b")]) == 0
    assert "train/val/test 53/3/3 pairs; skipped 1 pair with an empty side" in capsys.readouterr().out


def test_bpe_model_travels_in_the_checkpoint(files, tmp_path, capsys):
    pytest.importorskip("tokenizers")
    out = tmp_path / "bpe"
    assert main(["train", "seq2seq", "--pairs", str(files / "pairs.tsv"), "--tokens", "bpe", "--bpe-vocab", "300",
                 *TINY, "--steps", "3", "--out", str(out)]) == 0
    capsys.readouterr()
    _, meta = load_checkpoint(out / "last.safetensors", kind="seq2seq")
    assert meta["task"]["src_tokenizer"]["kind"] == "bpe" and '"merges"' in meta["task"]["src_tokenizer"]["model"]
    task = load_task(out / "last.safetensors", Seq2SeqTask)  # no corpus needed to translate
    pieces = task.source_tokens("red cat")
    assert 2 <= len(pieces) <= 7 and task.src_tok.detokenize(pieces) == "red cat", pieces
    assert main(["translate", str(out / "last.safetensors"), "--input", str(files / "src.txt"), "--beam", "2"]) == 0
    assert len(capsys.readouterr().out.split("\n")) == 61
