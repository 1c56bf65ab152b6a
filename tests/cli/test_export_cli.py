"""``rnnkit export CKPT --onnx FILE``: onnxruntime's outputs equal rnnkit's (float32, 1e-5).

char-LM: along a text that ``rnnkit sample`` wrote, the exported model's next-character
distributions equal rnnkit's streaming ones (feed the sampled text through both), and a batch of
streams of different lengths equals ``model.forward``; forecaster: normalised windows -> forecasts.
"""
import json

import numpy as np
import pytest

from rnnkit.cli import main

WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex".split()


def _session(path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _softmax(z):
    z = np.asarray(z, dtype=np.float64)
    p = np.exp(z - z.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "gru_lbr0"])
def test_charlm_export_equals_rnnkit_along_sampled_text(tmp_path, capsys, cell):
    """(gru_lbr0: ``--linear-before-reset 0``, kept by the checkpoint, written as the node's attribute.)"""
    from rnnkit.tasks.charlm import CharLM

    text = tmp_path / "t.txt"
    text.write_text(" ".join(np.random.default_rng(1).choice(WORDS, 150)), encoding="utf-8")
    out = tmp_path / "lm"
    cell_flags = ["--cell", "gru", "--linear-before-reset", "0"] if cell == "gru_lbr0" else ["--cell", cell]
    assert main(["train", "charlm", "--text", str(text), *cell_flags, "--layers", "2", "--hidden", "12",
                 "--emb", "6", "--batch", "4", "--bptt", "10", "--steps", "30", "--lr", "0.02", "--eval-every",
                 "30", "--no-progress", "--out", str(out)]) == 0
    ckpt, onnx_file = out / "last.safetensors", tmp_path / "lm.onnx"
    capsys.readouterr()
    assert main(["sample", str(ckpt), "--seed", "3", "--length", "80", "--prime", "the "]) == 0
    sampled = capsys.readouterr().out.rstrip("\n")
    assert main(["export", str(ckpt), "--onnx", str(onnx_file)]) == 0
    assert f"onnx: {onnx_file}" in capsys.readouterr().out
    sess = _session(onnx_file)
    lm = CharLM.load(ckpt)
    model = __import__("onnx").load(str(onnx_file))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["rnnkit.kind"] == "charlm" and json.loads(meta["rnnkit.vocab"]) == lm.vocab.chars, "metadata"
    if cell.startswith("gru"):
        lbr = cell == "gru"
        assert lm.config.linear_before_reset is lbr and lm.model.rnn.linear_before_reset is lbr, "checkpoint flag"
        for node in (n for n in model.graph.node if n.op_type == "GRU"):
            assert {a.name: a.i for a in node.attribute}["linear_before_reset"] == lbr, f"{node.name} attribute"

    ids = lm.vocab.encode(sampled, "sampled")
    L, H = lm.model.rnn.num_layers, lm.model.rnn.hidden_size
    feeds = {"ids": ids[:, None].astype(np.int64), "lengths": np.array([len(ids)], np.int32),
             "h0": np.zeros((L, 1, H), np.float32)}
    if cell == "lstm":
        feeds["c0"] = np.zeros((L, 1, H), np.float32)
    got = _softmax(sess.run(["output"], feeds)[0][:, 0])  # (T, V): next-character distributions
    want = _softmax([lm.model.next_logits(h) for h, _ in lm.model.stream(ids)])
    assert got.shape == want.shape == (len(ids), len(lm.vocab))
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0,
                               err_msg=f"{cell}: next-character distributions along the sampled text")
    assert want.max(-1).mean() > 1.5 / len(lm.vocab), "the model learned nothing: a weak comparison"

    # a batch of 3 streams with different lengths: the valid steps equal rnnkit's forward of each stream
    T, lens = 20, np.array([20, 13, 7])
    batch = np.stack([ids[s:s + T] for s in (0, 21, 42)], axis=1)
    feeds = {**feeds, "ids": batch.astype(np.int64), "lengths": lens.astype(np.int32),
             **{k: np.zeros((L, 3, H), np.float32) for k in feeds if k in ("h0", "c0")}}
    outs = sess.run(None, feeds)
    for b, n in enumerate(lens):
        logits, state = lm.model(batch[:n, b:b + 1])
        np.testing.assert_allclose(outs[0][:n, b], logits[:, 0], atol=1e-5, rtol=0,
                                   err_msg=f"{cell}: logits, stream {b}")
        h_n = state.h if cell == "lstm" else state
        np.testing.assert_allclose(outs[1][:, b], h_n[:, 0], atol=1e-5, rtol=0, err_msg=f"{cell}: h_n, stream {b}")


def test_forecaster_export_equals_rnnkit(tmp_path, capsys):
    from rnnkit.tasks.forecast import Forecaster
    from rnnkit.train import load_task

    csv = tmp_path / "s.csv"
    csv.write_text("t,y\n" + "".join(f"{i},{np.sin(i / 5) + 0.1 * i:.6f}\n" for i in range(300)))
    out = tmp_path / "fc"
    assert main(["train", "forecast", "--csv", str(csv), "--column", "y", "--window", "12", "--horizon", "3",
                 "--hidden", "8", "--layers", "2", "--steps", "20", "--no-progress", "--out", str(out)]) == 0
    onnx_file = tmp_path / "fc.onnx"
    assert main(["export", str(out / "last.safetensors"), "--onnx", str(onnx_file)]) == 0
    sess = _session(onnx_file)
    fc = load_task(out / "last.safetensors", Forecaster)
    meta = {p.key: json.loads(p.value) for p in __import__("onnx").load(str(onnx_file)).metadata_props
            if p.key != "rnnkit.kind"}
    assert (meta["rnnkit.normalizer_mean"], meta["rnnkit.normalizer_std"]) == (fc.normalizer.mean, fc.normalizer.std)
    X = np.stack([np.sin(np.arange(s, s + 12) / 5) + 0.1 * np.arange(s, s + 12) for s in range(0, 50, 7)])
    x = fc._inputs(X)  # (W, M, 1) normalised
    want = fc.model.last(x)
    fc.model.release()
    M, H = x.shape[1], 8
    feeds = {"input": x, "lengths": np.full(M, 12, np.int32), "h0": np.zeros((2, M, H), np.float32),
             "c0": np.zeros((2, M, H), np.float32)}
    got = sess.run(["output"], feeds)[0]
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0, err_msg="forecaster: normalised forecasts")
    np.testing.assert_allclose(fc.normalizer.inverse(got), fc.predict_windows(X), atol=1e-4, rtol=1e-5,
                               err_msg="forecaster: forecasts in original units")


@pytest.mark.slow
def test_export_refuses_what_it_cannot_write(tmp_path, capsys):
    pytest.importorskip("onnx")
    out = tmp_path / "add"
    assert main(["train", "adding", "--T", "11", "--hidden", "4", "--batch", "10", "--max-sequences", "20",
                 "--no-progress", "--out", str(out)]) == 0
    capsys.readouterr()
    ckpt = str(out / "last.safetensors")
    assert main(["export", ckpt, "--onnx", str(tmp_path / "a.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "export: a 'adding' checkpoint cannot be exported to ONNX" in err, err
    assert not (tmp_path / "a.onnx").exists()
    assert main(["export", ckpt]) == 2 and "export: say what to write: --onnx FILE" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.safetensors"), "--onnx", str(tmp_path / "b.onnx")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    text = tmp_path / "t.txt"
    text.write_text(" ".join(np.random.default_rng(1).choice(WORDS, 60)), encoding="utf-8")
    assert main(["train", "charlm", "--text", str(text), "--dtype", "float64", "--hidden", "4", "--emb", "2",
                 "--layers", "1", "--batch", "2", "--bptt", "8", "--steps", "1", "--no-progress",
                 "--out", str(tmp_path / "lm64")]) == 0
    capsys.readouterr()
    assert main(["export", str(tmp_path / "lm64" / "last.safetensors"), "--onnx", str(tmp_path / "c.onnx")]) == 2
    assert "export: this charlm model is float64; ONNX export writes float32 models" in capsys.readouterr().err
    data = tmp_path / "data.tsv"
    data.write_text("".join(f"{k}\t{k * 3}\n" for k in ("ab", "cd") for _ in range(20)))
    assert main(["train", "classify", "--data", str(data), "--pooling", "attention", "--hidden", "4", "--emb", "3",
                 "--steps", "1", "--no-progress", "--out", str(tmp_path / "att")]) == 0
    capsys.readouterr()
    assert main(["export", str(tmp_path / "att" / "last.safetensors"), "--onnx", str(tmp_path / "d.onnx")]) == 2
    assert ("export: a classifier with attention pooling cannot be exported to ONNX (last, mean and max pooling "
            "can)") in capsys.readouterr().err


@pytest.mark.parametrize("pooling, cell, direction", [("last", "lstm", "--bidirectional"),
                                                      ("mean", "gru", "--no-bidirectional"),
                                                      ("max", "rnn", "--bidirectional")])
def test_classifier_export_equals_rnnkit(tmp_path, capsys, pooling, cell, direction):
    from rnnkit.data.batching import pad_time_major
    from rnnkit.tasks.classify import ClassifyTask
    from rnnkit.train import load_task

    rng = np.random.default_rng(0)
    stems = {"vowels": "aeiou", "digits": "0123456789", "symbols": "+-*/=<>"}
    lines = [(k, "".join(rng.choice(list(v), rng.integers(3, 12)))) for k, v in stems.items() for _ in range(30)]
    data = tmp_path / "data.tsv"
    data.write_text("".join(f"{k}\t{t}\n" for k, t in lines))
    out = tmp_path / "cls"
    assert main(["train", "classify", "--data", str(data), "--pooling", pooling, "--cell", cell, direction,
                 "--layers", "2", "--hidden", "6", "--emb", "5", "--batch", "8", "--steps", "12", "--eval-every",
                 "12", "--no-progress", "--out", str(out)]) == 0
    onnx_file = tmp_path / "cls.onnx"
    assert main(["export", str(out / "last.safetensors"), "--onnx", str(onnx_file)]) == 0
    sess = _session(onnx_file)
    task = load_task(out / "last.safetensors", ClassifyTask)
    meta = {p.key: p.value for p in __import__("onnx").load(str(onnx_file)).metadata_props}
    assert json.loads(meta["rnnkit.classes"]) == list(task.classes)
    ids, lengths = pad_time_major(task.encode([t for _, t in lines[::9]]))  # 10 rows of different lengths
    assert len(set(lengths.tolist())) > 3
    want = task.model.forward(ids, lengths)
    enc = task.model.encoder
    zeros = np.zeros((enc.num_layers * enc.num_directions, len(lengths), enc.hidden_size), np.float32)
    feeds = {"ids": ids.astype(np.int64), "lengths": lengths.astype(np.int32), "h0": zeros,
             **({"c0": zeros} if cell == "lstm" else {})}
    got = sess.run(["output"], feeds)[0]
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0, err_msg=f"classifier logits ({pooling} pooling)")


@pytest.mark.parametrize("readout", ["mean", "max", "last"])
def test_compose_pooled_readouts_batch_first(readout):
    """compose_onnx's pooled read-outs on a batch-first bidirectional stack equal numpy's pooling of rnnkit's forward."""
    import rnnkit

    lstm = rnnkit.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True, seed=0)
    head = rnnkit.Linear(8, 2, seed=1)
    sess = _session_of(rnnkit.compose_onnx(lstm, head=head, readout=readout))
    x = np.random.default_rng(2).standard_normal((3, 6, 3)).astype(np.float32)
    lengths = np.array([6, 2, 4])
    y, state = lstm(x, lengths=lengths)  # (B, T, 8), 0 past each length
    valid = (np.arange(6)[None, :] < lengths[:, None])[:, :, None]
    pooled = {"mean": y.sum(1) / lengths[:, None], "max": np.where(valid, y, -np.inf).max(1),
              "last": state.h[-2:].transpose(1, 0, 2).reshape(3, 8)}[readout]
    zeros = np.zeros((4, 3, 4), np.float32)
    got = sess.run(["output"], {"input": x, "lengths": lengths.astype(np.int32), "h0": zeros, "c0": zeros})[0]
    np.testing.assert_allclose(got, head(pooled.astype(np.float32)), atol=1e-5, rtol=0, err_msg=f"{readout} read-out")


def _session_of(model):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
