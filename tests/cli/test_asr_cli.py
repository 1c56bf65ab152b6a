"""``rnnkit train asr``, ``rnnkit eval`` of an asr checkpoint, ``rnnkit transcribe`` (files, manifest,
beam + char-LM fusion, --stream) and their one-line errors, on the vendored FSDD subset."""
import pathlib

import pytest

from rnnkit.cli import main
from rnnkit.io.checkpoint import load_checkpoint

FSDD = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "fsdd"
REC = FSDD / "recordings"
TINY = ["--fsdd", str(FSDD), "--connected", "8", "--hidden", "8", "--layers", "1", "--batch", "4",
        "--steps", "4", "--eval-every", "2", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    pytest.importorskip("soundfile")
    pytest.importorskip("jiwer")
    out = tmp_path_factory.mktemp("asr")
    assert main(["train", "asr", *TINY, "--out", str(out / "bi")]) == 0
    assert main(["train", "asr", *TINY, "--no-bidirectional", "--out", str(out / "uni")]) == 0
    return out


@pytest.mark.slow
def test_train_prints_recipe_and_eval_prints_cer_wer(trained, capsys):
    assert main(["eval", str(trained / "bi" / "last.safetensors"), "--split", "test"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(ln.startswith("CER ") and ln.endswith(" %") for ln in lines), out
    assert any(ln.startswith("WER ") and ln.endswith(" %") for ln in lines), out
    worst = lines[lines.index("five worst utterances (CER, reference -> hypothesis):") + 1:]
    assert len(worst) == 5


@pytest.mark.slow
def test_transcribe_files_manifest_beam_and_stream(trained, tmp_path, capsys):
    ckpt = str(trained / "bi" / "last.safetensors")
    files = [str(REC / "3_jackson_0.wav"), str(REC / "7_jackson_5.wav")]
    manifest = tmp_path / "m.tsv"
    manifest.write_text(f"{files[0]}\tthree\n")
    assert main(["transcribe", ckpt, *files, "--manifest", str(manifest)]) == 0
    greedy = capsys.readouterr().out.splitlines()
    assert len(greedy) == 3 and greedy[0] == greedy[2]
    assert main(["transcribe", ckpt, *files, "--beam", "1"]) == 0
    assert capsys.readouterr().out.splitlines() == greedy[:2]
    assert main(["transcribe", str(trained / "uni" / "last.safetensors"), files[0], "--stream"]) == 0
    cap = capsys.readouterr()
    assert len(cap.out.splitlines()) == 1 and "real-time factor" in cap.err


@pytest.mark.slow
def test_fusion_with_a_charlm_checkpoint(trained, tmp_path, capsys):
    text = tmp_path / "digits.txt"
    text.write_text("\n".join(" ".join("0123456789"[(i * 7 + j) % 10] for j in range(1 + i % 5)) for i in range(300)))
    lm = tmp_path / "lm"
    assert main(["train", "charlm", "--text", str(text), "--steps", "3", "--hidden", "8", "--emb", "4",
                 "--batch", "4", "--bptt", "16", "--no-progress", "--out", str(lm)]) == 0
    capsys.readouterr()
    assert main(["transcribe", str(trained / "bi" / "last.safetensors"), str(REC / "3_jackson_0.wav"), "--beam", "4",
                 "--lm", str(lm / "last.safetensors"), "--lm-weight", "0.5", "--bonus", "0.5"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("make, match", [
    (lambda d: d / "missing.wav", "no such audio file"),
    (lambda d: (d / "x.wav").write_bytes(b"RIFF not really") and d / "x.wav", "not a readable audio file"),
])
def test_bad_audio_is_one_line_exit_2(trained, tmp_path, capsys, make, match):
    path = make(tmp_path)
    assert main(["transcribe", str(trained / "bi" / "last.safetensors"), str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: ") and match in err and str(path) in err and err.count("\n") == 1


@pytest.mark.slow
def test_stream_needs_a_unidirectional_model(trained, capsys):
    assert main(["transcribe", str(trained / "bi" / "last.safetensors"), str(REC / "3_jackson_0.wav"),
                 "--stream"]) == 2
    assert "--no-bidirectional" in capsys.readouterr().err


@pytest.mark.parametrize("speeds", ["0.9,x", "0.1", "1.0,,1.1", "inf"])
def test_bad_speed_perturb_is_one_line_exit_2(tmp_path, capsys, speeds):
    assert main(["train", "asr", "--speed-perturb", speeds, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--speed-perturb" in err and "speeds in [0.5, 2]" in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_bad_manifest_row_in_training(tmp_path, capsys):
    m = tmp_path / "train.tsv"
    m.write_text(f"{REC / '3_jackson_0.wav'}\tthree\n{REC / 'nope.wav'}\tfour\n")
    assert main(["train", "asr", "--manifest", str(m), "--steps", "1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{m}:2:" in err and "nope.wav" in err and "--skip-bad-audio" in err and err.count("\n") == 1


@pytest.mark.slow
def test_export_onnx_equals_the_model(trained, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    import numpy as np
    import soundfile as sf

    from rnnkit.nn.losses import log_softmax
    from rnnkit.tasks.asr import ASRTask
    from rnnkit.train import load_task

    ckpt = trained / "bi" / "last.safetensors"
    assert main(["export", str(ckpt), "--onnx", str(tmp_path / "m.onnx")]) == 0
    task = load_task(ckpt, ASRTask)
    x, _ = sf.read(REC / "3_jackson_0.wav", dtype="float64")
    feats, lengths = task.prepare([x, x[: x.size // 2]])
    task.model.eval()
    want = task.model.forward(feats, lengths)
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
    names = {i.name for i in sess.get_inputs()}
    c = task.config
    zeros = np.zeros((c.layers * 2, 2, c.hidden), dtype=np.float32)  # (L*D, B, H) initial state
    feed = {"input": feats, "lengths": lengths.astype(np.int32), "h0": zeros, "c0": zeros}
    got = sess.run(["output"], {k: v for k, v in feed.items() if k in names})[0]
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(log_softmax(got[:n, b]), want[:n, b], atol=1e-5, err_msg="onnx log-probs")


@pytest.mark.slow
def test_manifest_run_resamples_and_carves_splits(tmp_path, capsys):
    pytest.importorskip("soundfile")
    words = "zero one two three four five six seven eight nine".split()
    rows = [f"recordings/{p.name}\t{words[int(p.name[0])].upper()}!" for p in sorted(REC.glob("*.wav"))]
    manifest = tmp_path / "train.tsv"
    manifest.write_text("\n".join(f"{REC.parent}/{r}" for r in rows) + "\n")
    assert main(["train", "asr", "--manifest", str(manifest), "--layers", "1", "--hidden", "8", "--n-mels", "20",
                 "--steps", "2", "--eval-every", "2", "--no-progress", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "resampled 40 files from 8000 Hz to 16000 Hz" in out
    assert "train/val/test 36/2/2 utterances" in out and "alphabet 'efghinorstuvwxz' + blank" in out
    assert "evaluated as the moving average of the parameters (--ema 0.998)" in out  # the manifest recipe's
    _, meta = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert meta["train"]["average"] == {"decay": 0.998, "n": 2, "averaged_in": True}
    assert main(["eval", str(tmp_path / "run" / "last.safetensors"), "--split", "test"]) == 0
    assert "CER " in capsys.readouterr().out


@pytest.mark.slow
def test_skip_bad_audio_counts_the_skipped_files(tmp_path, capsys):
    pytest.importorskip("soundfile")
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    rows = [f"{p}\t{p.name[0]}" for p in sorted(REC.glob("*_1[01].wav"))] + ["bad.wav\tseven"]
    m = tmp_path / "train.tsv"
    m.write_text("\n".join(rows) + "\n")
    assert main(["train", "asr", "--manifest", str(m), "--skip-bad-audio", "--rate", "8000", "--layers", "1",
                 "--hidden", "8", "--steps", "1", "--no-progress", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "skipped 1 unreadable audio file (--skip-bad-audio)" in out and "train/val/test 18/1/1" in out
