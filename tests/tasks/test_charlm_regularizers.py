"""Char-LM with the regularisers: config rates reach the layers, training draws its masks from the
Trainer's generator (reproducibly), evaluation and sampling run without them, checkpoints record
them, and the command line exposes them (flags from the spec's config fields, one-line errors)."""
import dataclasses

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.io.checkpoint import load_checkpoint
from rnnkit.tasks.charlm import REGULARIZERS, CharLM, CharLMConfig

RATES = dict(dropout=0.3, input_dropout=0.2, recurrent_dropout=0.25, weight_dropout=0.2, emb_dropout=0.1)
CFG = CharLMConfig(cell="lstm", layers=2, hidden=12, emb=6, batch=4, bptt=9, seed=3, **RATES)


def tiny_text(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    words = ["the ", "cat ", "sat ", "on ", "a ", "mat. ", "dog ", "ran\n"]
    return "".join(words[i] for i in rng.integers(0, len(words), n))[:n]


def test_rates_reach_the_model_and_are_checked():
    lm = CharLM(CFG, tiny_text())
    rnn = lm.model.rnn
    assert (rnn.rates.dropout, rnn.rates.input_dropout, rnn.rates.recurrent_dropout, rnn.rates.weight_dropout) == \
        (0.3, 0.2, 0.25, 0.2)
    assert lm.model.emb.dropout == 0.1
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match=rf"^weight_dropout: expected a rate in \[0, 1\), got {bad}$"):
            dataclasses.replace(CFG, weight_dropout=bad)


def test_training_steps_use_masks_from_the_trainer_rng_and_evaluation_none():
    text = tiny_text()
    lm = CharLM(CFG, text)
    plain = CharLM(dataclasses.replace(CFG, **{n: 0.0 for n in REGULARIZERS}), text)
    assert all(np.array_equal(v, plain.model.params[k]) for k, v in lm.model.params.items()), "same init"
    ev = lm.evaluate("val")
    assert ev == plain.evaluate("val") == lm.evaluate("val"), "evaluation runs without dropout"

    def step(task, seed):
        task.model.zero_grad()
        batch, carry = task.train_batch(np.random.default_rng(seed), None)
        loss, _, _ = task.loss_and_backward(batch, carry)
        return loss, {k: g.copy() for k, g in task.model.grads.items()}

    (l1, g1), (l2, g2), (l3, _), (l0, _) = step(lm, 5), step(lm, 5), step(lm, 6), step(plain, 5)
    assert l1 == l2 and all(np.array_equal(g1[k], g2[k]) for k in g1), "masks come from the generator"
    assert l1 != l3 and l1 != l0, "the masks change the training loss"
    assert lm.evaluate("val") == ev, "evaluation after training steps: still no dropout"
    assert lm.sample("the ", 30, seed=1) == plain.sample("the ", 30, seed=1), "sampling runs without dropout"


def test_cli_exposes_the_rates_and_checkpoints_record_them(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text(tiny_text(800))
    out = tmp_path / "run"
    small = ["--hidden", "12", "--emb", "6", "--batch", "4", "--bptt", "12", "--layers", "2", "--no-progress"]
    rc = main(["train", "charlm", "--text", str(text), *small, "--steps", "6", "--eval-every", "3", "--out", str(out),
               "--dropout", "0.3", "--recurrent-dropout", "0.25", "--input-dropout", "0.2", "--weight-dropout", "0.2",
               "--emb-dropout", "0.1"])
    stdout = capsys.readouterr().out
    assert rc == 0
    assert "dropout 0.3, input dropout 0.2, recurrent dropout 0.25, weight dropout 0.2, emb dropout 0.1" in stdout
    _, meta = load_checkpoint(out / "last.safetensors", kind="charlm")
    assert {k: meta["task"]["config"][k] for k in RATES} == RATES
    ck = str(out / "last.safetensors")
    assert main(["sample", ck, "--prime", "the ", "--length", "20", "--seed", "1"]) == 0
    assert main(["eval", ck, "--split", "val"]) == 0
    capsys.readouterr()
    rc = main(["train", "charlm", "--text", str(text), *small, "--recurrent-dropout", "1.5",
               "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "--recurrent-dropout: expected a rate in [0, 1), got '1.5'" in err and "Traceback" not in err
    rc = main(["train", "charlm", "--resume", ck, "--steps", "8", "--dropout", "0.5", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "--dropout 0.5: differs from the checkpoint's 0.3" in err


def test_mpi_ranks_draw_their_own_masks_from_the_shared_seed():
    from rnnkit.io.distributed import Communicator, _Rank  # rank and size only, no collectives

    lm = CharLM(dataclasses.replace(CFG, batch=4), tiny_text())
    batch, _ = lm.train_batch(np.random.default_rng(0), None)
    seed = batch[3]
    parts = [lm.shard_batch(batch, Communicator(_Rank(r, 2))) for r in range(2)]
    assert [p[3] for p in parts] == [seed + [0], seed + [1]], "each rank: its own mask generator"
    assert [p[0].shape[1] for p in parts] == [2, 2]
    plain = dataclasses.replace(CFG, **{n: 0.0 for n in REGULARIZERS})
    assert CharLM(plain, tiny_text()).train_batch(np.random.default_rng(0), None)[0][3] is None


@pytest.mark.slow
def test_resume_with_dropout_continues_bit_identically(tmp_path, capsys):
    """A run with every dropout kind, stopped and resumed (--steps 3, then --resume --steps 6), ends
    with the same parameters and optimizer state as 6 steps straight: the masks of steps 4–6 are
    the same draws (docs/training.md continues its results runs this way)."""
    text = tmp_path / "t.txt"
    text.write_text(tiny_text(800))
    flags = ["--text", str(text), "--hidden", "12", "--emb", "6", "--batch", "4", "--bptt", "12", "--layers", "2",
             "--eval-every", "3", "--no-progress", "--dtype", "float64",
             *[a for k, v in RATES.items() for a in (f"--{k.replace('_', '-')}", str(v))]]
    assert main(["train", "charlm", *flags, "--steps", "6", "--out", str(tmp_path / "straight")]) == 0
    assert main(["train", "charlm", *flags, "--steps", "3", "--out", str(tmp_path / "split")]) == 0
    ck = str(tmp_path / "split" / "last.safetensors")
    assert main(["train", "charlm", *flags, "--steps", "6", "--resume", ck, "--out", str(tmp_path / "split")]) == 0
    capsys.readouterr()
    a, _ = load_checkpoint(tmp_path / "straight" / "last.safetensors", kind="charlm")
    b, _ = load_checkpoint(ck, kind="charlm")
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), f"{k} differs between 6 straight steps and 3 + resume 3"
