"""Summarisation data and metrics: documents (JSON lines, two files, bad rows), the lead,
extended ids, ROUGE via rouge-score (mean and max over references), the repetition rate."""

import numpy as np
import pytest

from rnnkit.data.documents import lead, read_jsonl, read_two_files
from rnnkit.data.oov import extend_ids, extended_tokens
from rnnkit.data.vocab import TokenVocab
from rnnkit.errors import UserError
from rnnkit.tasks.rouge import has_repeat, repetition_rate, rouge


@pytest.fixture
def corpus(summary_corpus):
    return summary_corpus


# ---------------------------------------------------------------- data
def test_jsonl_fields_references_and_two_files(corpus, tmp_path):
    d = read_jsonl(corpus / "test.jsonl", "text", "summary", ("r1", "r2", "r3"))
    assert len(d) == 6 and d.refs[0] == (d.tgt[0], "zq2x0 bought bread .", "someone went out .")
    d = read_jsonl(corpus / "val.jsonl", "text", "summary", ("r1", "r2", "r3"))  # no reference fields: the summary
    assert d.refs[2] == (d.tgt[2],)
    (tmp_path / "s.txt").write_text("doc one\ndoc two\n")
    (tmp_path / "t.txt").write_text("one\ntwo\n")
    d = read_two_files(tmp_path / "s.txt", tmp_path / "t.txt")
    assert d.src == ("doc one", "doc two") and d.refs == (("one",), ("two",))


@pytest.mark.parametrize("row, pattern", [
    ('{"text": "a b", "summary": "a"}\n{"text": "a b"\n', r"x\.jsonl:2: not valid JSON"),
    ('{"text": "a b", "summary": "a"}\n[1, 2]\n', r"x\.jsonl:2: expected a JSON object"),
    ('{"text": "a b", "summary": "a"}\n{"body": "a b", "summary": "a"}\n',
     r"x\.jsonl:2: no field 'text' \(--src-field\); the row has 'body', 'summary'"),
    ('{"text": "a b", "summary": 3}\n', r"x\.jsonl:1: field 'summary' \(--tgt-field\): expected a string, got int"),
    ('{"text": "a b", "summary": "a"}\n{"text": " ", "summary": "a"}\n', r"x\.jsonl:2: empty document"),
    ('{"text": "a b", "summary": "a", "r1": "a"}\n', r"x\.jsonl:1: no field 'r2' \(--ref-fields\)"),
])
def test_bad_rows_are_one_line_naming_file_and_line(tmp_path, row, pattern):
    (tmp_path / "x.jsonl").write_text(row)
    with pytest.raises(UserError, match=pattern):
        read_jsonl(tmp_path / "x.jsonl", "text", "summary", ("r1", "r2"))


def test_skip_empty_counts_the_rows(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"text": "a", "summary": "b"}\n\n{"text": "", "summary": "b"}\n')
    d = read_jsonl(tmp_path / "x.jsonl", "text", "summary", empty="skip")
    assert d.src == ("a",) and d.skipped == (3,)


@pytest.mark.parametrize("text, first", [
    ("#Person1#: Hi, Mr. Smith. I'm Doctor Hawkins.\n#Person2#: Hello.", "#Person1#: Hi, Mr. Smith."),
    ("One line only", "One line only"),
    ("What? No! Yes.", "What?"),
    ("a\nb", "a"),
    ("Version 2.5 is out. Get it.", "Version 2.5 is out."),
])
def test_lead_is_the_first_sentence(text, first):
    assert lead(text) == first


def test_extended_ids_copy_source_oovs_only():
    v = TokenVocab.build([["the", "cat"]])
    src, tgt, oovs = extend_ids(v, ["the", "zorg", "cat", "zorg", "blip"], ["zorg", "the", "blip", "nope"])
    V = len(v)
    assert oovs == ["zorg", "blip"]
    assert src.tolist() == [v.id("the"), V, v.id("cat"), V, V + 1]
    assert tgt.tolist() == [V, v.id("the"), V + 1, v.UNK]  # "nope" is not in the source: <unk>
    assert extended_tokens(v, [V + 1, v.id("cat"), V, v.EOS, V], oovs) == ["blip", "cat", "zorg"]


# ---------------------------------------------------------------- metrics
@pytest.mark.slow  # importing rouge_score (nltk) takes seconds
def test_rouge_mean_and_max_over_references_follow_rouge_score():
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    sc = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    hyps = ["the cats were running home", "a dog barked"]
    refs = [("the cat runs home", "cats ran to the house"), ("the dog barked loudly", "a dog barks")]
    r = rouge(hyps, refs)
    for t in ("rouge1", "rouge2", "rougeL"):
        per = [[sc.score(x, h)[t].fmeasure for x in rs] for h, rs in zip(hyps, refs)]
        assert r["mean"][t] == pytest.approx(100 * np.mean([np.mean(p) for p in per]), abs=1e-12)
        assert r["max"][t] == pytest.approx(100 * np.mean([max(p) for p in per]), abs=1e-12)
        assert r["max"][t] == pytest.approx(100 * np.mean([sc.score_multi(rs, h)[t].fmeasure
                                                           for h, rs in zip(hyps, refs)]), abs=1e-12)
    assert r["max"]["rouge1"] > r["mean"]["rouge1"]  # stemming: "cats"/"cat", "runs"/"running" match


def test_repetition_rate_counts_summaries_with_a_repeated_trigram():
    assert has_repeat([1, 2, 3, 9, 1, 2, 3]) and not has_repeat([1, 2, 3, 1, 2, 4])
    assert repetition_rate([[1, 2, 3, 1, 2, 3], [1, 2, 3], [5, 5, 5, 5]]) == pytest.approx(2 / 3)


@pytest.mark.parametrize("flags", [{}, {"copy": False, "coverage": False, "bidirectional": False},
                                   {"cell": "lstm", "proj_size": 3, "coverage": False}])
def test_model_plan_names_the_models_parameters(corpus, flags):
    from rnnkit.tasks.summarize import SummarizeTask, SummarizeTaskConfig

    c = SummarizeTaskConfig(data=str(corpus / "train.jsonl"), hidden=6, emb=5, vocab=50, **flags)
    task = SummarizeTask(c)
    plan = SummarizeTask.model_plan(task.meta())
    assert plan.shapes == {k: v.shape for k, v in task.model.params.items()}, flags
