"""Checkpoints written by rnnkit 0.1.0 (tests/fixtures/v0.1.0, one per kind) still load, evaluate
to the numbers 0.1.0 printed, sample the same text and resume.

Made with (in tests/fixtures/v0.1.0, before the upper floors were rebuilt)::

    rnnkit train charlm --text charlm.txt --hidden 8 --emb 4 --batch 4 --bptt 8 --layers 1 --steps 6 \
        --eval-every 3 --no-progress --out charlm --seed 1
    rnnkit train forecast --window 6 --horizon 2 --hidden 6 --batch 8 --series-length 300 --steps 6 \
        --eval-every 3 --no-progress --out forecast --seed 1
    rnnkit train adding --T 12 --hidden 6 --batch 4 --max-sequences 24 --eval-every 12 --no-progress \
        --out adding --seed 1
    rnnkit train copy --T 3 --hidden 6 --batch 4 --max-sequences 24 --eval-every 12 --no-progress \
        --out copy --seed 1
"""
import os
import shutil

import pytest

from rnnkit.cli import main
from rnnkit.io.checkpoint import load_checkpoint

FIX = os.path.join(os.path.dirname(__file__), "..", "fixtures", "v0.1.0")
TEXT = os.path.join(FIX, "charlm.txt")

#: what ``rnnkit eval`` printed with rnnkit 0.1.0
EVAL_0_1_0 = {
    ("charlm", "text"): "charlm.txt: 2996 chars, loss 2.7658 nats/char = 3.990 bits/char",
    ("forecast", "test"): "             model    0.23804    0.20931    0.23835    0.23773",
    ("forecast", "val"): "             model    0.24461    0.19908    0.23031    0.25812",
    ("adding", "test"): "adding T=12, test set: mse 0.04051  correct 387/2560 (15.12%)",
    ("adding", "val"): "adding T=12, val set: mse 0.03953  correct 374/2560 (14.61%)",
    ("copy", "test"): "copy T=3, test set: loss 1.9911 nats (memoryless baseline 0.9041)  recall accuracy 0.00%",
    ("copy", "val"): "copy T=3, val set: loss 1.9930 nats (memoryless baseline 0.9041)  recall accuracy 0.00%",
}


@pytest.mark.parametrize("kind,split", sorted(EVAL_0_1_0))
def test_eval_prints_the_0_1_0_numbers(kind, split, capsys):
    args = ["--text", TEXT] if split == "text" else ["--split", split]
    assert main(["eval", os.path.join(FIX, kind, "last.safetensors"), *args]) == 0
    out = capsys.readouterr().out
    want = EVAL_0_1_0[kind, split]
    assert want.replace("charlm.txt", TEXT) in out, f"eval {kind} {split}: got {out!r}, expected a line {want!r}"


def test_forecast_model_file_and_sample(capsys):
    assert main(["eval", os.path.join(FIX, "forecast", "forecast.safetensors"), "--split", "test"]) == 0
    assert EVAL_0_1_0["forecast", "test"] in capsys.readouterr().out
    assert main(["sample", os.path.join(FIX, "charlm", "last.safetensors"), "--prime", "the ", "--length", "30",
                 "--seed", "2"]) == 0
    assert capsys.readouterr().out == "the acr mo.\nanh.enemtnd.dgsocsen  \n"


@pytest.mark.parametrize("kind", ["charlm", "forecast", "adding", "copy"])
def test_resume(kind, tmp_path, capsys):
    run = tmp_path / kind
    shutil.copytree(os.path.join(FIX, kind), run)
    ck = str(run / "last.safetensors")
    more = {"charlm": ["--steps", "8", "--text", TEXT], "forecast": ["--steps", "8"],
            "adding": ["--max-sequences", "32"], "copy": ["--max-sequences", "32"]}[kind]
    assert main(["train", kind, "--resume", ck, *more, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out, out
    _, meta = load_checkpoint(ck, kind=kind)
    assert meta["train"]["step"] == 8, f"{kind}: resumed to step {meta['train']['step']}, expected 8"
