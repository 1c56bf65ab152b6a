import json
import os
import re

# Deterministic tests: the layers run the fixed thread rules, never a plan measured on this machine
# (rnnkit.engine.plans; its own tests unset this).  Subprocesses of the tests inherit it.
os.environ["RNNKIT_PLAN"] = "heuristic"

import numpy as np  # noqa: E402
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


def fd_rel_error(a, n):
    """Norm-wise relative error ||a - n|| / max(||a|| + ||n||, 1e-12)."""
    return np.linalg.norm(a - n) / max(np.linalg.norm(a) + np.linalg.norm(n), 1e-12)


def numeric_grad(f, arr, eps=1e-6):
    """Central differences of scalar f() w.r.t. every element of arr (perturbed in place)."""
    g = np.zeros_like(arr)
    for k in np.ndindex(arr.shape):
        old = arr[k]
        arr[k] = old + eps
        fp = f()
        arr[k] = old - eps
        fm = f()
        arr[k] = old
        g[k] = (fp - fm) / (2 * eps)
    return g


def assert_step_equals_forward(layer, x, atol):
    """Streaming ``layer.step`` over x (T, B, I) gives forward's outputs and final state; returns the state."""
    out, final = layer.forward(x)
    state = None
    for t in range(x.shape[0]):
        y, state = layer.step(x[t], state)
        assert_close(f"step y t={t}", y, out[t], atol=atol)
    for f, got, want in zip(("h", "c"), tuple(state) if isinstance(state, tuple) else (state,),
                            tuple(final) if isinstance(final, tuple) else (final,)):
        assert_close(f"step final {f}", got, want, atol=atol)
    return state


def check_layer_gradients(layer, x, state, lengths=None, forward_kw=dict, eps=1e-6, tol=1e-6, label=""):
    """Every gradient of ``layer.backward`` (each parameter, d_x, each initial-state field) equals
    central finite differences of L = sum(out * R) + sum over state fields of sum(s_n * R_f).

    float64 layer; ``state``: array or LSTMState (perturbed in place); ``forward_kw()`` gives the
    forward's extra arguments at every call (e.g. a fresh ``rng`` with a fixed seed: fixed masks).
    """
    r = np.random.default_rng(99)
    fields = tuple(state) if isinstance(state, tuple) else (state,)
    out, final = layer.forward(x, state, lengths=lengths, **forward_kw())
    R = r.standard_normal(out.shape)
    finals = tuple(final) if isinstance(final, tuple) else (final,)
    Rs = [r.standard_normal(f.shape) for f in finals]

    def loss():
        out, final = layer.forward(x, state, lengths=lengths, **forward_kw())
        finals = tuple(final) if isinstance(final, tuple) else (final,)
        return (out * R).sum() + sum((f * Rf).sum() for f, Rf in zip(finals, Rs))

    layer.zero_grad()
    loss()
    d_state = type(final)(*Rs) if isinstance(final, tuple) else Rs[0]
    d_x, d_s0 = layer.backward(R, d_state)
    d_s0 = tuple(d_s0) if isinstance(d_s0, tuple) else (d_s0,)
    checks = {"d_x": (d_x, x)}
    for k, (g, s) in enumerate(zip(d_s0, fields)):
        checks[f"d_state0[{k}]"] = (g, s)
    grads = layer.grads
    for name, p in layer.params.items():
        checks[f"grad {name}"] = (grads[name].copy(), p)
    for name, (analytic, arr) in checks.items():
        num = numeric_grad(loss, arr, eps)
        err = fd_rel_error(analytic, num)
        assert err <= tol, f"{name}: relative error {err:.2e} vs finite differences ({label})"
        assert np.abs(analytic).max() > 0 or np.abs(num).max() < 1e-9, f"{name}: gradient is all zero ({label})"
    if lengths is not None:  # padded inputs get exactly zero gradient
        for b, n in enumerate(lengths):
            assert np.all(d_x[n:, b] == 0), f"d_x: nonzero gradient in padding of row {b} ({label})"
    return checks


def check_fd(loss, checks, what):
    """Analytic vs central differences; an absolute floor for gradients too small for FD's noise."""
    for name, (analytic, arr) in checks.items():
        num = numeric_grad(loss, arr)
        err = fd_rel_error(analytic, num)
        assert err <= 1e-6 or np.abs(analytic - num).max() <= 1e-9, \
            f"{name}: relative error {err:.2e} vs finite differences ({what})"
        assert np.abs(analytic).max() > 0 or np.abs(num).max() < 1e-9, f"{name}: gradient is all zero ({what})"


def one_line_error(capsys, rc, pattern) -> str:
    """rc 2, stderr one line ``rnnkit: error: ...`` matching ``pattern``, no traceback."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("rnnkit: error: "), (rc, err)
    assert "Traceback" not in err and re.search(pattern, lines[0]), lines[0]
    return lines[0]


SUMMARY_WORDS = "the a man woman went to shop bought some bread milk and then home later".split()


def summary_docs(n, seed, refs=False):
    """Documents that name a made-up person (an OOV of any vocabulary) and summaries that copy the name."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        name = f"zq{seed}x{k}"
        body = " ".join(rng.choice(SUMMARY_WORDS, rng.integers(8, 30)))
        row = {"text": f"{name} went out. {body}.", "summary": f"{name} went to the shop ."}
        if refs:
            row.update(r1=row["summary"], r2=f"{name} bought bread .", r3="someone went out .")
        rows.append(row)
    return rows


@pytest.fixture
def summary_corpus(tmp_path):
    """train/val/test.jsonl in tmp_path: 60/6/6 generated documents (fields text, summary; test also r1..r3)."""
    for name, n, seed, refs in (("train", 60, 0, False), ("val", 6, 1, False), ("test", 6, 2, True)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in summary_docs(n, seed, refs)))
    return tmp_path
