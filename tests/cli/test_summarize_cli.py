"""rnnkit train summarize / summarize / eval on a generated corpus: ROUGE beside the lead,
truncation reported, one summary a line, attention plot with p_gen, bit-exact resume, one-line errors."""
import json
import re

import numpy as np
import pytest
from conftest import one_line_error

from rnnkit.cli import main
from rnnkit.io.checkpoint import load_checkpoint


@pytest.fixture
def corpus(summary_corpus):
    return summary_corpus


TINY = ["--hidden", "8", "--emb", "8", "--batch", "8", "--no-progress", "--beam", "2"]


def _train(corpus, out, *extra):
    return main(["train", "summarize", "--data", str(corpus / "train.jsonl"), "--val-data", str(corpus / "val.jsonl"),
                 "--test-data", str(corpus / "test.jsonl"), "--src-field", "text", "--tgt-field", "summary",
                 "--ref-fields", "r1,r2,r3", *TINY, "--out", str(out), *extra])


# ---------------------------------------------------------------- commands
@pytest.mark.slow
def test_train_summarize_eval_and_summarize(corpus, tmp_path, capsys):
    pytest.importorskip("rouge_score")
    out = tmp_path / "run"
    assert _train(corpus, out, "--steps", "8", "--eval-every", "4", "--max-src-len", "12") == 0
    stdout = capsys.readouterr().out
    assert re.search(r"train/val/test 60/6/6 documents", stdout), stdout
    assert re.search(r"truncated to 12 tokens: \d+ train, \d+ val, \d+ test documents", stdout), stdout
    assert re.search(r"ROUGE ROUGE-1 [\d.]+ ROUGE-2 [\d.]+ ROUGE-L [\d.]+  \(F1, mean over references\)", stdout)
    assert re.search(r"lead  ROUGE-1 [\d.]+ ROUGE-2 [\d.]+ ROUGE-L [\d.]+  \(first sentence", stdout)
    assert re.search(r"\(F1, max over references\)", stdout)
    assert (out / "loss.png").exists() or "not plotted" in stdout
    # the test report is the best checkpoint's, the one of the lowest val loss
    best = re.search(r"test split of the best checkpoint \((.+best\.safetensors), val loss ([\d.]+)\):", stdout)
    assert best, stdout
    val = [r["val_loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "val_loss" in r]
    assert len(val) == 2 and float(best.group(2)) == pytest.approx(min(val), abs=5e-5), (best.group(2), val)
    assert main(["eval", best.group(1), "--split", "test"]) == 0
    first_rouge = re.compile(r"ROUGE ROUGE-1 .*")
    assert first_rouge.search(stdout[best.end():]).group() == first_rouge.search(capsys.readouterr().out).group()
    ck = str(out / "last.safetensors")
    assert main(["eval", ck, "--split", "test"]) == 0
    ev = capsys.readouterr().out
    assert re.search(r"test split: 6 documents \(beam 2.*\nROUGE ROUGE-1 [\d.]+ ROUGE-2 [\d.]+ ROUGE-L [\d.]+", ev), ev
    (tmp_path / "in.txt").write_text("zqnew went out. the man bought bread.\n\nthe woman went home.\n")
    assert main(["summarize", ck, "--input", str(tmp_path / "in.txt"), "--beam", "1"]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[3] == ""  # one summary a line, '' for an empty document
    (tmp_path / "in.jsonl").write_text(json.dumps({"doc": "zqnew went out."}) + "\n")
    assert main(["summarize", ck, "--input", str(tmp_path / "in.jsonl"), "--src-field", "doc",
                 "--attention-plot", str(tmp_path / "a.png")]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 1
    try:
        import matplotlib  # noqa: F401
        assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    except ImportError:
        assert "not written" in captured.err
    rc = main(["summarize", ck, "--input", str(tmp_path / "in.txt"), "--src-field", "doc"])
    one_line_error(capsys, rc, r"in\.txt:1: not valid JSON")


@pytest.mark.slow
def test_resume_is_bit_exact(corpus, tmp_path):
    pytest.importorskip("rouge_score")
    assert _train(corpus, tmp_path / "a", "--steps", "6", "--eval-every", "0", "--val-beam", "1") == 0
    assert _train(corpus, tmp_path / "b", "--steps", "3", "--eval-every", "0", "--val-beam", "1") == 0
    assert main(["train", "summarize", "--resume", str(tmp_path / "b" / "last.safetensors"), "--steps", "6",
                 "--no-progress"]) == 0
    a, _ = load_checkpoint(tmp_path / "a" / "last.safetensors")
    b, _ = load_checkpoint(tmp_path / "b" / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_bad_corpus_and_flags_are_one_line(corpus, tmp_path, capsys):
    (tmp_path / "bad.jsonl").write_text('{"text": "a b", "summary": "a"}\n{"text": "a b"}\n')
    rc = main(["train", "summarize", "--data", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "r")])
    one_line_error(capsys, rc, r"bad\.jsonl:2: no field 'summary' \(--tgt-field\)")
    rc = main(["train", "summarize", "--out", str(tmp_path / "r")])
    one_line_error(capsys, rc, r"--data FILE\.jsonl or --src/--tgt")
    rc = main(["train", "summarize", "--data", str(corpus / "train.jsonl"), "--ref-fields", "a,,b",
               "--out", str(tmp_path / "r")])
    one_line_error(capsys, rc, r"ref_fields: expected comma-separated field names")
