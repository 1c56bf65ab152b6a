"""Speech recognition: manifests, decoding (greedy, prefix beam vs brute force, LM fusion), the
acoustic model's gradient through CTC, streaming = offline, training, checkpoint and bit-exact
resume on the vendored FSDD subset (tests/fixtures/fsdd, CC BY-SA 4.0, see its NOTICE.md)."""
import itertools
import json
import pathlib

import numpy as np
import pytest

from conftest import assert_close, fd_rel_error
from rnnkit.errors import UserError
from rnnkit.data.manifest import read_manifest
from rnnkit.models.asr import ASRModel, ASRModelConfig
from rnnkit.models.ctc_decode import greedy, prefix_beam_search
from rnnkit.nn.ctc import ctc_loss
from rnnkit.nn.losses import log_softmax
from rnnkit.tasks.asr import ASRTask, ASRTaskConfig
from rnnkit.tasks.asr_data import normalise_text
from rnnkit.tasks.asr_stream import stream
from rnnkit.train import TrainConfig, Trainer

FSDD = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "fsdd"
WAV = FSDD / "recordings" / "3_jackson_0.wav"
TINY = {"fsdd": str(FSDD), "connected": 12, "hidden": 12, "layers": 1, "batch": 4}


# ---------------------------------------------------------------- manifests and text
def test_manifests_tsv_and_jsonl(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "m.tsv").write_text("x.wav\tHello, World!\n\n../y.wav\tsecond\textra\n")
    rows = read_manifest(tmp_path / "a" / "m.tsv")
    assert [r.audio for r in rows] == [str(tmp_path / "a" / "x.wav"), str(tmp_path / "y.wav")]
    assert [r.text for r in rows] == ["Hello, World!", "second"]
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio_filepath": "/abs/z.wav", "text": "z", "duration": 1.0})
                                      + "\n")
    assert read_manifest(tmp_path / "m.jsonl")[0].audio == "/abs/z.wav"
    assert normalise_text("  Hello, World!  It's 42 ") == "hello world it's 42"


@pytest.mark.parametrize("content, match", [
    ("a.wav\tone\nno-tab-here\n", r"m:2: expected 'path<TAB>transcript'"),
    ('{"audio_filepath": "a.wav", "text": "x"}\n{"text": "y"}\n', r"m:2: expected a string 'audio_filepath'"),
    ('{"audio_filepath": "a.wav", "text": "x"}\n{bad json\n', r"m:2: not valid JSON .*expected a JSON object per line"),
    ('{"audio_filepath": "a.wav", "text": "x"}\n[1]\n', r"m:2: expected a JSON object per line, got a list"),
    ("\n\n", "holds no utterance"),
])
def test_bad_manifest_rows_name_file_and_line(tmp_path, content, match):
    p = tmp_path / "m"
    p.write_text(content)
    with pytest.raises(UserError, match=match) as e:
        read_manifest(p)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- decoding
def _labelling_probs(lp):
    """Brute force: p(l) for every labelling l, summing every path of (T, C) probabilities."""
    T, C = lp.shape
    out = {}
    for path in itertools.product(range(C), repeat=T):
        lab = tuple(c for k, c in enumerate(path) if c != 0 and (k == 0 or path[k - 1] != c))
        out[lab] = np.logaddexp(out.get(lab, -np.inf), sum(lp[t, c] for t, c in enumerate(path)))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_prefix_beam_search_finds_the_most_probable_labelling(seed):
    lp = log_softmax(np.random.default_rng(seed).standard_normal((5, 3)) * 2)
    probs = _labelling_probs(lp)
    best = max(probs, key=probs.get)
    assert tuple(prefix_beam_search(lp, beam=64, prune=1e9)) == best
    # and the labelling's probability is CTC's: exp(-nll)
    if best:
        nll, _ = ctc_loss(lp[:, None], np.array([best]), np.array([5]), np.array([len(best)]), reduction="sum")
        assert abs(-nll - probs[best]) < 1e-10


def test_greedy_merges_repeats_and_drops_blanks():
    lp = np.log(np.eye(4)[[1, 1, 0, 1, 2, 2, 0, 0, 3]] * 0.97 + 0.01)
    assert greedy(lp) == [1, 1, 2, 3]
    assert prefix_beam_search(lp, beam=1) == [1, 1, 2, 3]


class _FavourLM:
    """A toy LM that gives class ``fav`` log-prob 0 and the others -5."""

    def __init__(self, C, fav):
        self.lp = np.full(C, -5.0)
        self.lp[fav] = 0.0

    def start(self):
        return 0

    def log_probs(self, state):
        return self.lp

    def advance(self, state, c):
        return state + 1


def test_shallow_fusion_moves_an_ambiguous_frame():
    lp = np.log(np.array([[0.1, 0.46, 0.44]]))  # acoustically "1" barely beats "2"
    assert prefix_beam_search(lp, beam=4) == [1]
    assert prefix_beam_search(lp, beam=4, lm=_FavourLM(3, 2), lm_weight=0.0) == [1]
    assert prefix_beam_search(lp, beam=4, lm=_FavourLM(3, 2), lm_weight=0.5) == [2]


# ---------------------------------------------------------------- the acoustic model through CTC
@pytest.mark.slow
@pytest.mark.parametrize("cell, bidirectional", [("lstm", True), ("gru", True), ("rnn", False)])
def test_model_gradient_through_ctc_is_exact(rng, cell, bidirectional):
    m = ASRModel(ASRModelConfig(input_size=3, num_classes=4, hidden_size=4, num_layers=2, cell=cell,
                                bidirectional=bidirectional, dtype="float64"), seed=1)
    x = rng.standard_normal((7, 2, 3))
    lengths, targets, tl = np.array([7, 5]), np.array([[1, 2, 2], [3, 1, 0]]), np.array([3, 2])

    def loss(backward=False):
        lp = m.forward(x, lengths)
        value, d = ctc_loss(lp, targets, lengths, tl)
        if backward:
            m.backward(d)
        return value

    m.zero_grad()
    loss(backward=True)
    for name in ("head.weight", "encoder.weight_hh_l0", "encoder.bias_ih_l1"):
        p, g = m.params[name], m.grads[name].copy()
        num = np.zeros_like(p)
        for k in np.ndindex(p.shape):
            old = p[k]
            p[k] = old + 1e-5
            up = loss()
            p[k] = old - 1e-5
            num[k] = (up - loss()) / 2e-5
            p[k] = old
        assert fd_rel_error(g, num) < 1e-6, f"{name}: gradient vs finite differences"


# ---------------------------------------------------------------- the task on the vendored digits
@pytest.fixture(scope="module")
def tiny_task():
    pytest.importorskip("soundfile")
    return ASRTask(ASRTaskConfig(**TINY))


def test_task_reads_the_official_split(tiny_task):
    t = tiny_task
    assert t.alphabet == " 0123456789"
    # 40 files: index 0 test, 5 val, 10 and 11 train; plus connected sequences of each split's own files
    assert t.sizes == {"train": 20 + 12, "val": 10 + 1, "test": 10 + 1}
    test = t.data["test"]
    assert all(n.endswith("_0.wav") for n, iso in zip(test.names, test.isolated) if iso)
    assert t.model.config.input_size == 40 * 3


def test_speed_perturbation_adds_training_copies_only():
    t = ASRTask(ASRTaskConfig(**TINY, speed_perturb="0.9,1.0,1.1"))
    # the 20 training files also at 0.9x and 1.1x speed, before the 12 connected sequences are drawn; val and test
    # as they are
    assert t.sizes == {"train": 3 * 20 + 12, "val": 10 + 1, "test": 10 + 1}
    train = t.data["train"]
    plain = {n: f.shape[0] for n, f, iso in zip(train.names, train.feats, train.isolated) if iso and "@" not in n}
    for s in (0.9, 1.1):
        copies = {n: f.shape[0] for n, f in zip(train.names, train.feats) if n.endswith(f"@{s:g}x")}
        assert len(copies) == 20, f"train: {len(copies)} recordings at {s}x speed, expected 20"
        for n, frames in copies.items():  # 1/s as long, give or take a frame of rounding
            want = plain[n.split(" @")[0]] / s
            assert abs(frames - want) <= 2, f"train feats {n}: {frames} frames, expected ~{want:.1f}"
    assert not any("@" in n for s in ("val", "test") for n in t.data[s].names), "val/test: speed-perturbed copies"


@pytest.mark.slow
def test_training_resumes_bit_exactly(tmp_path, tiny_task):
    cfg = TrainConfig(steps=8, lr=3e-3, eval_every=4, progress=False)
    straight = ASRTask(ASRTaskConfig(**TINY))
    Trainer(straight, cfg, out_dir=tmp_path / "a").fit()
    first = ASRTask(ASRTaskConfig(**TINY))
    Trainer(first, TrainConfig(steps=4, lr=3e-3, eval_every=4, progress=False), out_dir=tmp_path / "b").fit()
    resumed = Trainer.resume(tmp_path / "b" / "last.safetensors", ASRTask, config=cfg, out_dir=tmp_path / "b")
    resumed.fit()  # the corpus is read again from the recorded config
    for k, v in straight.model.params.items():
        assert np.array_equal(v, resumed.task.model.params[k]), f"{k}: 4 + 4 resumed steps != 8 straight"
    m = straight.evaluate("test")
    assert set(m) >= {"loss", "cer", "wer", "accuracy", "cer_connected"} and 0 <= m["accuracy"] <= 1


@pytest.mark.slow
def test_streaming_equals_offline_greedy(tiny_task):
    sf = pytest.importorskip("soundfile")
    t = ASRTask(ASRTaskConfig(**{**TINY, "bidirectional": False}), prepared={
        "alphabet": tiny_task.alphabet, "mean": tiny_task.mean, "std": tiny_task.std, "sizes": tiny_task.sizes,
        "notes": {}})
    rng = np.random.default_rng(0)
    for p in t.model.params.values():  # a random model that emits labels often
        p[...] = rng.standard_normal(p.shape).astype(p.dtype)
    x, _ = sf.read(WAV, dtype="float64")
    x = np.concatenate([x, x[::-1]])
    t.model.eval()
    feats, lengths = t.prepare([x])
    offline = t.model.forward(feats, lengths)
    want = t.decode(offline, lengths)[0]
    partial = []
    for chunk_s in (0.05, 0.13, 1.0):
        r = stream(t, x, chunk_s, on_partial=lambda text, s: partial.append(text))
        assert r["text"] == want, f"streamed text with {chunk_s} s chunks"
        assert len(r["latencies"]) == -(-x.size // int(round(chunk_s * 8000))) and r["rtf"] > 0
    assert want and partial and all(want.startswith(p) for p in partial), "partial texts grow into the text"


@pytest.mark.slow
@pytest.mark.parametrize("bidirectional", [True, False])
def test_model_and_ctc_equal_torch(rng, bidirectional):
    """One step of the acoustic model + CTC against nn.LSTM + nn.CTCLoss with the same weights (float64)."""
    from conftest import needs_torch

    torch = needs_torch()
    m = ASRModel(ASRModelConfig(input_size=6, num_classes=5, hidden_size=7, num_layers=2,
                                bidirectional=bidirectional, dtype="float64"), seed=3)
    x = rng.standard_normal((9, 3, 6))
    lengths, tl = np.array([9, 6, 4]), np.array([4, 2, 1])
    targets = np.array([[1, 2, 2, 4], [3, 3, 0, 0], [4, 0, 0, 0]])
    m.zero_grad()
    lp = m.forward(x, lengths)
    loss, d = ctc_loss(lp, targets, lengths, tl)
    m.backward(d)
    rnn = torch.nn.LSTM(6, 7, 2, bidirectional=bidirectional, dtype=torch.float64)
    head = torch.nn.Linear(m.head.params["weight"].shape[1], 5, dtype=torch.float64)
    with torch.no_grad():
        for name, p in rnn.named_parameters():
            p.copy_(torch.from_numpy(m.encoder.params[name]))
        head.weight.copy_(torch.from_numpy(m.head.params["weight"]))
        head.bias.copy_(torch.from_numpy(m.head.params["bias"]))
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths),
                                                     enforce_sorted=False)
    h, _ = torch.nn.utils.rnn.pad_packed_sequence(rnn(packed)[0], total_length=9)
    t_lp = head(h).log_softmax(-1)
    t_loss = torch.nn.CTCLoss()(t_lp, torch.from_numpy(targets), torch.from_numpy(lengths), torch.from_numpy(tl))
    t_loss.backward()
    assert abs(loss - t_loss.item()) < 1e-10, "loss"
    for b, n in enumerate(lengths):
        assert_close(f"log_probs[:, {b}]", lp[:n, b], t_lp.detach().numpy()[:n, b], 1e-10)
    assert_close("head.weight grad", m.grads["head.weight"], head.weight.grad.numpy(), 1e-10)
    for name, p in rnn.named_parameters():
        assert_close(f"encoder.{name} grad", m.grads[f"encoder.{name}"], p.grad.numpy(), 1e-10)
