import numpy as np
import pytest

import rnnkit


def assert_close(name, got, want, atol, rtol=0.0):
    """Compare arrays; the failure message names the tensor and the worst element."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != expected {want.shape}"
    err = np.abs(got - want)
    tol = atol + rtol * np.abs(want)
    if not (err <= tol).all():
        k = np.unravel_index(np.argmax(err - tol), err.shape)
        pytest.fail(f"{name}: max abs error {err.max():.3e} at {k}: got {got[k]!r}, expected {want[k]!r} (atol {atol})")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


#: the cell kinds every test iterates over, and rnnkit's layer class of each (one table for all tests)
CELLS = ("rnn", "lstm", "gru")
LAYERS = {"rnn": rnnkit.RNN, "lstm": rnnkit.LSTM, "gru": rnnkit.GRU}


def needs_torch():
    """PyTorch, the test oracle; skips the calling test where it is not installed (per test, never per file)."""
    return pytest.importorskip("torch")


def torch_layer_classes(torch) -> dict:
    """PyTorch's layer class of each cell kind ("rnn_relu": nn.RNN with nonlinearity="relu")."""
    return {"rnn": torch.nn.RNN, "rnn_relu": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


@pytest.fixture
def text_file(tmp_path):
    """A small corpus for char-LM command-line tests: 800 random words of 8 (t.txt in tmp_path)."""
    rng = np.random.default_rng(0)
    words = ["the ", "cat ", "sat ", "on ", "a ", "mat. ", "dog ", "ran\n"]
    p = tmp_path / "t.txt"
    p.write_text("".join(words[i] for i in rng.integers(0, len(words), 800)))
    return p
