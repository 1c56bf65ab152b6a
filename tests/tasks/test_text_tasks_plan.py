"""seq2seq and classify have a model_plan (rnnkit.train.task, issue 11): a new model larger than
memory is refused before it is built, and a checkpoint is checked tensor by tensor against the
model its metadata describes before the task is built; through the command line.  Torch-free."""
import numpy as np
import pytest
from conftest import one_line_error

from rnnkit.cli import main
from rnnkit.io.checkpoint import load_checkpoint, save_checkpoint

TINY = ["--hidden", "6", "--emb", "4", "--batch", "8", "--no-progress"]


def _corpus(tmp_path, task):
    """A tiny corpus: seq2seq pairs (reverse the words), classify lines of three character sets."""
    rng = np.random.default_rng(0)
    if task == "seq2seq":
        words = ["red", "cat", "sun", "moon", "tree", "sky"]
        pairs = [" ".join(rng.choice(words, rng.integers(1, 4))) for _ in range(60)]
        p = tmp_path / "pairs.tsv"
        p.write_text("".join(f"{s}\t{' '.join(s.split()[::-1])}\n" for s in pairs))
        return ["--pairs", str(p)]
    stems = {"vowel": "aeiou", "digit": "0123456789", "cons": "bcdfg"}
    p = tmp_path / "data.tsv"
    p.write_text("".join(f"{lab}\t{''.join(rng.choice(list(ch), rng.integers(3, 9)))}\n"
                         for lab, ch in stems.items() for _ in range(30)))
    return ["--data", str(p)]


@pytest.fixture(scope="module", params=["seq2seq", "classify"])
def run(request, tmp_path_factory):
    """(task, corpus flags, checkpoint) of a 2-step training run."""
    task, tmp = request.param, tmp_path_factory.mktemp(request.param)
    data = _corpus(tmp, task)
    assert main(["train", task, *data, *TINY, "--steps", "2", "--eval-every", "0", "--out", str(tmp / "run")]) == 0
    return task, data, tmp / "run" / "last.safetensors"


@pytest.mark.slow
def test_model_plan_matches_the_model_it_builds(run):
    """Names and shapes from the metadata alone equal the built model's, for every cell, direction,
    score and pooling; the bytes grow with the sizes the plan reads (hidden, batch, T)."""
    from rnnkit.tasks.classify import ClassifyTask, ClassifyTaskConfig
    from rnnkit.tasks.seq2seq import Seq2SeqTask, Seq2SeqTaskConfig

    task, data, ck = run
    arrays, meta = load_checkpoint(ck)
    path = data[1]
    if task == "seq2seq":
        cls = Seq2SeqTask
        variants = [dict(cell="lstm", score="general"), dict(cell="gru", score="additive", layers=2),
                    dict(cell="rnn", score="dot", bidirectional=False)]
        configs = [Seq2SeqTaskConfig(pairs=path, hidden=5, emb=3, batch=4, max_src_len=9, **v) for v in variants]
    else:
        cls = ClassifyTask
        variants = [dict(cell="lstm", pooling="last"), dict(cell="gru", pooling="attention", layers=2),
                    dict(cell="rnn", pooling="max", bidirectional=False)]
        configs = [ClassifyTaskConfig(data=path, hidden=5, emb=3, batch=4, **v) for v in variants]
    for c in configs:
        t = cls(c)
        plan = cls.model_plan(t.meta())
        assert plan.shapes == {k: v.shape for k, v in t.model.params.items()}, c
        assert plan.dtype == np.float32
    plan = cls.model_plan(meta["task"])
    assert plan.shapes == {k[5:]: v.shape for k, v in arrays.items() if k.startswith("task/")}
    base = plan.training_bytes(2)
    for field in ("hidden", "batch"):
        bigger = {**meta["task"], "config": {**meta["task"]["config"], field: 2 * meta["task"]["config"][field]}}
        assert cls.model_plan(bigger).training_bytes(2) > base, field
    assert base > 4 * plan.param_count() * 4  # parameters, gradients, Adam m and v, and activations


def test_hidden_100000_refused_before_allocating(tmp_path, capsys):
    for task in ("seq2seq", "classify"):
        out = tmp_path / task
        data = _corpus(tmp_path, task)
        line = one_line_error(capsys, main(["train", task, *data, "--hidden", "100000", "--out", str(out)]),
                              rf"train {task}: this model needs about [\d.]+ (GiB|TiB) \(\d+ bytes\), more than the "
                              r"[\d.]+ GiB of physical memory of this machine")
        assert not out.exists(), line  # refused before anything was written


def _float64(a):
    a["task/encoder.weight_hh_l0"] = a["task/encoder.weight_hh_l0"].astype(np.float64)


def _step(a, m):
    m["train"]["step"] = -5


def _hidden(a, m):
    m["task"]["config"]["hidden"] = 100000


@pytest.mark.parametrize("case", ["float64", "step", "hidden", "vocab"])
def test_hand_made_checkpoints_are_refused_before_building(run, tmp_path, capsys, case):
    """eval and train --resume: one line naming the file and the tensor, exit 2, before the model is
    built (hidden 100000 would allocate hundreds of GiB); a vocabulary that does not fit its tensors too."""
    task, data, ck = run
    arrays, meta = load_checkpoint(ck)
    if case == "float64":
        _float64(arrays)
        match = r"tensor 'task/encoder.weight_hh_l0' is float64, the model is float32"
    elif case == "step":
        _step(arrays, meta)
        match = r"training step = -5, expected an integer >= 0"
    elif case == "hidden":
        _hidden(arrays, meta)
        match = r"tensor 'task/[\w.]+' has shape \([\d, ]+\), the model its metadata describes has \(.*\b[1-4]00000\b.*\)"
    else:
        vocab = "src_vocab" if task == "seq2seq" else "vocab"
        meta["task"][vocab]["tokens"] += ["zz1", "zz2"]
        match = r"tensor 'task/\w*embedding.weight' has shape \(\d+, 4\), the model its metadata describes has"
    bad = tmp_path / f"{case}.safetensors"
    save_checkpoint(bad, arrays, meta)
    commands = [["eval", str(bad)], ["train", task, "--resume", str(bad), *data, "--steps", "4", "--no-progress"]]
    for cmd in commands[1:] if case == "step" else commands:  # a step matters to a resume only
        line = one_line_error(capsys, main(cmd), match)
        assert line.startswith(f"rnnkit: error: checkpoint {str(bad)!r}: "), line
