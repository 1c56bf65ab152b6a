"""Char-LM task: training agrees with a PyTorch loop, eval carries state, sampling, save/load, text errors."""
import dataclasses
import math

import numpy as np
import pytest

from conftest import CELLS, torch_layer_classes
from rnnkit.data.text import Vocab, load_text, split_ids, stdlib_corpus
from rnnkit.errors import UserError
from rnnkit.tasks.charlm import CharLM, CharLMConfig
from rnnkit.train import Trainer, TrainConfig


def tiny_text(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    words = ["the ", "cat ", "sat ", "on ", "a ", "mat. ", "dog ", "ran\n"]
    return "".join(words[i] for i in rng.integers(0, len(words), n))[:n]


CFG = CharLMConfig(cell="lstm", layers=2, hidden=12, emb=6, batch=4, bptt=9, seed=3)


@pytest.mark.parametrize("cell", CELLS)
def test_training_matches_torch_loop(cell):
    """Same init, batching, carried state, Adam and clipping as a torch.nn loop: same loss at every step."""
    torch = pytest.importorskip("torch")
    from torch import nn

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: thread start-up would dominate on a busy 2-core machine
    try:
        _torch_loop(torch, nn, cell)
    finally:
        torch.set_num_threads(threads)


def _torch_loop(torch, nn, cell):

    cfg = dataclasses.replace(CFG, cell=cell)
    text = tiny_text()
    lm = CharLM(cfg, text)
    V = len(lm.vocab)
    emb = nn.Embedding(V, cfg.emb)
    rnn = torch_layer_classes(torch)[cell](cfg.emb, cfg.hidden, num_layers=cfg.layers)
    head = nn.Linear(cfg.hidden, V)
    for mod, prefix in ((emb, "emb."), (rnn, "rnn."), (head, "head.")):
        for name, p in mod.named_parameters():
            p.data = torch.tensor(lm.model.params[prefix + name].copy())
    params = list(emb.parameters()) + list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)
    steps = 25  # train split 2700 chars: L = 674, 74 windows per epoch
    ours = Trainer(lm, TrainConfig(steps=steps, lr=1e-2, clip=0.5, eval_every=0, progress=False)).fit()

    ids = torch.from_numpy(split_ids(Vocab.from_text(text).encode(text))["train"].astype(np.int64))
    B, T = cfg.batch, cfg.bptt
    L = (len(ids) - 1) // B
    state, theirs = None, []
    for k in range(steps):
        idx = torch.arange(B)[None, :] * L + k * T + torch.arange(T)[:, None]
        h, state = rnn(emb(ids[idx]), state)
        state = tuple(s.detach() for s in state) if cell == "lstm" else state.detach()
        loss = nn.functional.cross_entropy(head(h).reshape(-1, V), ids[idx + 1].reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 0.5)
        opt.step()
        theirs.append(float(loss.detach()))
    np.testing.assert_allclose(ours.losses, theirs, rtol=2e-4)
    assert theirs[-1] < theirs[0] - 0.1


def test_evaluate_carries_state_across_windows():
    text = tiny_text()
    a = CharLM(CFG, text)
    b = CharLM(dataclasses.replace(CFG, bptt=200), text)  # one window covers each eval stream (37 steps)
    b.model.load_params(a.model.params)
    ea, eb = a.evaluate("val"), b.evaluate("val")
    assert ea["chars"] == eb["chars"] == 148  # (150 - 1) // 4 * 4
    assert ea["loss"] == pytest.approx(eb["loss"], rel=1e-5)
    assert ea["bpc"] == pytest.approx(ea["loss"] / math.log(2))
    assert abs(ea["loss"] - math.log(len(a.vocab))) < 0.5  # untrained: near uniform
    with pytest.raises(UserError, match="split: expected one of"):
        a.evaluate("dev")


def test_sample_save_load(tmp_path):
    text = tiny_text()
    lm = CharLM(CFG, text)
    lm.fit(steps=40, lr=1e-2, eval_every=0, progress=False)
    s1 = lm.sample("the ", 60, temperature=0.8, seed=7)
    assert len(s1) == 60 and set(s1) <= set(lm.vocab.chars)
    assert lm.sample("the ", 60, temperature=0.8, seed=7) == s1
    assert lm.sample("the ", 60, temperature=0.8, seed=8) != s1
    greedy = lm.sample("the ", 20, temperature=1e-4, seed=1)
    assert lm.sample("the ", 20, temperature=1e-4, seed=2) == greedy
    p = tmp_path / "lm.safetensors"
    lm.save(p)
    back = CharLM.load(p)
    assert back.sample("the ", 60, temperature=0.8, seed=7) == s1
    back.attach_text(text)
    assert back.evaluate("test") == lm.evaluate("test")
    with pytest.raises(UserError, match=r"--prime: 2 character\(s\) not in the model's vocabulary of 15: 'X', 'Z'"):
        lm.sample("the XZ", 5)
    with pytest.raises(UserError, match="temperature"):
        lm.sample("the ", 5, temperature=0)
    with pytest.raises(UserError, match="differs from the corpus"):
        back.attach_text(text[:-1] + "!")


def test_text_errors(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        load_text(tmp_path / "none.txt")
    (tmp_path / "e.txt").write_text("")
    with pytest.raises(UserError, match="is empty"):
        load_text(tmp_path / "e.txt")
    (tmp_path / "b.bin").write_bytes(b"abc\0def")
    with pytest.raises(UserError, match="looks binary \\(NUL byte at offset 3\\)"):
        load_text(tmp_path / "b.bin")
    (tmp_path / "l.txt").write_bytes("caf\u00e9".encode("latin-1"))
    with pytest.raises(UserError, match="not valid UTF-8 \\(byte 0xe9 at offset 3\\)"):
        load_text(tmp_path / "l.txt")
    with pytest.raises(UserError, match="too few for batch 4 x bptt 9"):
        CharLM(CFG, "ab" * 20)


def test_default_corpus_is_deterministic_python():
    a = stdlib_corpus(200_000)
    assert a == stdlib_corpus(200_000) and len(a) == 200_000
    assert "def " in a and "import " in a
    lm = CharLM(CFG, max_chars=50_000)
    assert lm.source["source"] == "stdlib" and lm.source["chars"] == 50_000
    assert len(lm.splits["train"]) == 45_000
