"""The cell variants through the command line: ``--cell layernorm_lstm`` (from the LAYERS registry),
``--peephole`` and ``--proj-size P`` (LSTM only) on ``rnnkit train charlm`` / ``forecast``: recorded
in the checkpoint, ``--resume`` continues bit for bit and refuses a change, eval / sample run on the
checkpoint, ``export --onnx`` writes the peephole LSTM and refuses the others in one line."""
import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.io.checkpoint import load_checkpoint
from rnnkit.engine.layer_types import LAYERS

TEXT = "the cat sat on a mat. the dog ran\n" * 12
SMALL = ["--hidden", "6", "--emb", "4", "--layers", "2", "--batch", "2", "--bptt", "5", "--no-progress"]
VARIANTS = {  # flags -> (config fields recorded, the layer's own parameter of layer 0, or None)
    "peephole": (["--cell", "lstm", "--peephole"], {"cell": "lstm", "peephole": True}, "rnn.weight_p_l0"),
    "proj": (["--cell", "lstm", "--proj-size", "3"], {"cell": "lstm", "proj_size": 3}, "rnn.weight_hr_l0"),
    "layernorm": (["--cell", "layernorm_lstm"], {"cell": "layernorm_lstm"}, "rnn.layernorm_c_weight_l0"),
}


def _train(text, out, *flags):
    return main(["train", "charlm", "--text", str(text), *SMALL, "--eval-every", "0", "--out", str(out), *flags])


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_charlm_variant_trains_resumes_evaluates_and_samples(variant, tmp_path, capsys):
    flags, fields, own = VARIANTS[variant]
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _train(text, straight, *flags, "--steps", "4") == 0
    assert _train(text, split, *flags, "--steps", "2") == 0
    assert main(["train", "charlm", "--resume", str(split / "last.safetensors"), "--steps", "4", "--no-progress"]) == 0
    a, meta = load_checkpoint(straight / "last.safetensors", kind="charlm")
    b, _ = load_checkpoint(split / "last.safetensors", kind="charlm")
    config = meta["task"]["config"]
    assert {k: config[k] for k in fields} == fields, f"{variant}: the variant is recorded in the checkpoint"
    assert f"task/{own}" in a, f"{variant}: the checkpoint holds the cell's own parameter {own}"
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), f"{variant}: {k}: the resumed run differs from the straight one"
    if variant == "proj":
        assert a["task/head.weight"].shape[1] == 3, "the head reads the projected h (proj_size wide)"
    ck = str(straight / "last.safetensors")
    capsys.readouterr()
    assert main(["eval", ck]) == 0
    assert "val split:" in capsys.readouterr().out
    assert main(["sample", ck, "--prime", "the ", "--length", "15", "--seed", "2"]) == 0
    once = capsys.readouterr().out
    assert main(["sample", ck, "--prime", "the ", "--length", "15", "--seed", "2"]) == 0
    assert capsys.readouterr().out == once and len(once) == len("the ") + 15 + 1, "streaming sample, reproducible"
    # the inspect page reads h at its width (the projected LSTM's h: proj_size units)
    assert main(["inspect", ck, "--text", str(text), "--max-chars", "40", "--what", "h",
                 "--out", str(tmp_path / "p.html")]) == 0
    assert f"40 characters, {3 if variant == 'proj' else 6} units" in capsys.readouterr().out
    # a changed variant flag on --resume is refused like any model flag
    change = {"peephole": ["--proj-size", "2"], "proj": ["--proj-size", "2"], "layernorm": ["--cell", "lstm"]}[variant]
    rc = main(["train", "charlm", "--resume", ck, "--steps", "6", *change, "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "differs from the checkpoint's" in err and "\n" not in err.strip(), err


def test_variant_flags_on_another_cell_are_one_line_errors(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    cases = [(["--cell", "gru", "--proj-size", "3"], "proj_size: only for cell lstm, got cell 'gru'"),
             (["--cell", "layernorm_lstm", "--peephole"], "peephole: only for cell lstm, got cell 'layernorm_lstm'"),
             (["--cell", "lstm", "--proj-size", "6"], "proj_size: must be smaller than hidden_size (6), got 6"),
             (["--cell", "lstm", "--proj-size", "2", "--peephole"], "peephole: peepholes with proj_size > 0")]
    for flags, msg in cases:
        rc = _train(text, tmp_path / "x", *flags, "--steps", "1")
        err = capsys.readouterr().err
        assert rc == 2 and msg in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists(), "refused before anything was written"
    rc = main(["train", "forecast", "--cell", "rnn", "--peephole", "--out", str(tmp_path / "f")])
    assert rc == 2 and "peephole: only for cell lstm, got cell 'rnn'" in capsys.readouterr().err


def test_cell_choices_come_from_the_registry(capsys):
    try:
        main(["train", "charlm", "--help"])
    except SystemExit:
        pass
    help_text = capsys.readouterr().out
    for name in LAYERS:
        assert name in help_text, f"--cell does not offer {name}"
    assert "--peephole" in help_text and "--proj-size" in help_text


@pytest.mark.slow
def test_export_writes_the_peephole_lstm_and_refuses_the_others_in_one_line(tmp_path, capsys):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from rnnkit.tasks.charlm import CharLM

    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    for variant, (flags, _, _) in VARIANTS.items():
        out = tmp_path / variant
        assert _train(text, out, *flags, "--steps", "1") == 0
        onnx_path = tmp_path / f"{variant}.onnx"
        capsys.readouterr()
        rc = main(["export", str(out / "last.safetensors"), "--onnx", str(onnx_path)])
        err = capsys.readouterr().err
        if variant != "peephole":
            assert rc == 2 and "cannot be written as ONNX" in err and "Traceback" not in err, err
            assert not onnx_path.exists()
            continue
        assert rc == 0, err
        lm = CharLM.load(out / "last.safetensors")
        ids = lm.vocab.encode("the cat").reshape(-1, 1)
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        feeds = {"ids": ids.astype(np.int64), "lengths": np.array([ids.shape[0]], np.int32)}
        for i in sess.get_inputs():
            if i.name in ("h0", "c0"):
                feeds[i.name] = np.zeros((2, 1, 6), np.float32)
        got = sess.run(["output"], feeds)[0]
        want, _ = lm.model.forward(ids)
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg="logits: ONNX peephole LSTM vs rnnkit")


@pytest.mark.parametrize("flags", [["--cell", "lstm", "--proj-size", "2"], ["--cell", "layernorm_lstm"]])
def test_forecast_variant_trains_and_evaluates(flags, tmp_path, capsys):
    out = tmp_path / "f"
    small = ["--hidden", "4", "--window", "6", "--series-length", "300", "--batch", "8", "--no-progress"]
    assert main(["train", "forecast", *flags, *small, "--steps", "2", "--eval-every", "0", "--out", str(out)]) == 0
    a, meta = load_checkpoint(out / "last.safetensors", kind="forecast")
    assert meta["task"]["config"]["cell"] == flags[1]
    if "--proj-size" in flags:
        assert meta["task"]["config"]["proj_size"] == 2 and a["task/head.weight"].shape == (1, 2)
    capsys.readouterr()
    assert main(["eval", str(out / "last.safetensors")]) == 0
    assert "naive last value" in capsys.readouterr().out


def _text_task_args(task, tmp_path):
    """``rnnkit train classify|seq2seq`` on a tiny corpus (and the inference command's input)."""
    rng = np.random.default_rng(0)
    words = ["red", "blue", "cat", "dog", "sun", "moon"]
    lines = [" ".join(words[i] for i in rng.integers(0, len(words), rng.integers(2, 5))) for _ in range(40)]
    (tmp_path / "in.txt").write_text("red cat\nsun dog moon\n")
    if task == "classify":
        (tmp_path / "d.tsv").write_text("".join(f"{'long' if len(s) > 12 else 'short'}\t{s}\n" for s in lines))
        return ["--data", str(tmp_path / "d.tsv"), "--tokens", "word"], ["classify"]
    (tmp_path / "src.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "tgt.txt").write_text("\n".join(" ".join(reversed(s.split())) for s in lines) + "\n")
    return ["--src", str(tmp_path / "src.txt"), "--tgt", str(tmp_path / "tgt.txt"), "--tokens", "word"], ["translate"]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["classify", "seq2seq"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_text_task_variant_trains_resumes_evaluates_and_infers(task, variant, tmp_path, capsys):
    flags, fields, own = VARIANTS[variant]
    data, infer = _text_task_args(task, tmp_path)
    args = ["train", task, *data, *flags, "--hidden", "6", "--emb", "4", "--batch", "4", "--layers", "2",
            "--no-progress", "--eval-every", "0"]
    straight, split = tmp_path / "a", tmp_path / "b"
    assert main([*args, "--steps", "4", "--out", str(straight)]) == 0
    assert main([*args, "--steps", "2", "--out", str(split)]) == 0
    assert main(["train", task, "--resume", str(split / "last.safetensors"), "--steps", "4", "--no-progress"]) == 0
    a, meta = load_checkpoint(straight / "last.safetensors", kind=task)
    b, _ = load_checkpoint(split / "last.safetensors", kind=task)
    assert {k: meta["task"]["config"][k] for k in fields} == fields
    encoder_own = "task/encoder." + own.split(".", 1)[1]
    assert encoder_own in a, f"{task} {variant}: no {encoder_own} in the checkpoint"
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), f"{task} {variant}: {k}: the resumed run differs from the straight one"
    ck = str(straight / "last.safetensors")
    capsys.readouterr()
    assert main(["eval", ck]) == 0
    assert "val split:" in capsys.readouterr().out
    assert main([*infer, ck, "--input", str(tmp_path / "in.txt")]) == 0
    assert capsys.readouterr().out.count("\n") == 2, "one output line per input line"
