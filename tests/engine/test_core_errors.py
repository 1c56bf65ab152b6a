"""Bad input gets a clear error that names the argument, the expected and the received value."""
import numpy as np
import pytest

import rnnkit


@pytest.fixture
def lstm():
    return rnnkit.LSTM(3, 4, num_layers=2, dtype=np.float64, seed=0)


X = np.zeros((5, 2, 3))


@pytest.mark.parametrize("x,exc,pattern", [
    (np.zeros((5, 3)), ValueError, r"x: expected 3-d array of shape \(\*, \*, 3\), got shape \(5, 3\)"),
    (np.zeros((5, 2, 4)), ValueError, r"x: expected shape \(\*, \*, 3\), got shape \(5, 2, 4\)"),
    (np.zeros((5, 2, 3), np.float32), TypeError, r"x: expected dtype float64, got float32"),
    ([[[0.0] * 3]], TypeError, r"x: expected a numpy array, got list"),
    (np.zeros((0, 2, 3)), ValueError, r"x: needs at least one time step"),
])
def test_bad_x(lstm, x, exc, pattern):
    with pytest.raises(exc, match=pattern):
        lstm.forward(x)


def test_nan_in_x(lstm):
    x = X.copy()
    x[2, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"x: contains NaN or inf \(first at index \(2, 1, 0\)\)"):
        lstm.forward(x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_in_step_input_and_state(dtype):
    """step() checks finiteness inside its compiled call: the error still names the argument and index,
    and the state given is left alone."""
    lstm = rnnkit.LSTM(3, 4, num_layers=2, dtype=dtype, seed=0)
    x, h, c = np.zeros((2, 3), dtype), np.zeros((2, 2, 4), dtype), np.zeros((2, 2, 4), dtype)
    lstm.step(x, (h, c))  # finite: fine
    x[1, 2] = np.inf
    with pytest.raises(ValueError, match=r"x_t: contains NaN or inf \(first at index \(1, 2\)\)"):
        lstm.step(x, (h, c))
    x[1, 2] = 0
    c[1, 0, 3] = np.nan
    with pytest.raises(ValueError, match=r"state.c: contains NaN or inf \(first at index \(1, 0, 3\)\)"):
        lstm.step(x, (h, c))
    assert np.isnan(c[1, 0, 3]) and not h.any(), "state: step must not write into the state it was given"
    gru = rnnkit.GRU(3, 4, dtype=dtype)
    with pytest.raises(ValueError, match=r"state: contains NaN or inf \(first at index \(0, 1, 0\)\)"):
        gru.step(np.zeros((2, 3), dtype), np.array([[[0, 0, 0, 0], [np.nan, 0, 0, 0]]], dtype))


@pytest.mark.parametrize("lengths,exc,pattern", [
    (np.array([5, 0]), ValueError, r"lengths: every length must be in 1..5 \(T\), got lengths\[1\] = 0"),
    (np.array([6, 2]), ValueError, r"lengths\[0\] = 6"),
    (np.array([5.0, 2.0]), TypeError, r"lengths: expected an integer array, got dtype float64"),
    (np.array([5, 2, 1]), ValueError, r"lengths: expected shape \(2,\)"),
])
def test_bad_lengths(lstm, lengths, exc, pattern):
    with pytest.raises(exc, match=pattern):
        lstm.forward(X, lengths=lengths)


def test_bad_state(lstm):
    h = np.zeros((2, 2, 4))
    with pytest.raises(TypeError, match=r"state: LSTM state must be a tuple \(h, c\)"):
        lstm.forward(X, h)
    with pytest.raises(ValueError, match=r"state.c: expected shape \(2, 2, 4\), got shape \(1, 2, 4\)"):
        lstm.forward(X, (h, np.zeros((1, 2, 4))))
    gru = rnnkit.GRU(3, 4, dtype=np.float64)
    with pytest.raises(ValueError, match=r"state: expected shape \(1, 2, 4\), got shape \(1, 3, 4\)"):
        gru.forward(X, np.zeros((1, 3, 4)))


def test_backward_before_forward_and_twice(lstm):
    with pytest.raises(RuntimeError, match="backward called before forward"):
        lstm.backward(np.zeros((5, 2, 4)))
    out, _ = lstm.forward(X)
    lstm.backward(np.ones_like(out))
    with pytest.raises(RuntimeError, match="a second time for the same forward"):
        lstm.backward(np.ones_like(out))


def test_bad_d_out_and_d_state(lstm):
    out, _ = lstm.forward(X)
    with pytest.raises(ValueError, match=r"d_out: expected shape \(5, 2, 4\), got shape \(5, 2, 3\)"):
        lstm.backward(np.zeros((5, 2, 3)))
    with pytest.raises(ValueError, match=r"d_state.h: expected shape \(2, 2, 4\)"):
        lstm.backward(np.zeros((5, 2, 4)), (np.zeros((1, 2, 4)), None))


def test_bad_constructor_args():
    with pytest.raises(ValueError, match="hidden_size: expected a positive integer, got 0"):
        rnnkit.LSTM(3, 0)
    with pytest.raises(TypeError, match="dtype: expected float32 or float64, got float16"):
        rnnkit.GRU(3, 4, dtype=np.float16)
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu'"):
        rnnkit.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="forget_bias: RNN has no forget gate"):
        rnnkit.RNN(3, 4, forget_bias=1.0)
    with pytest.raises(ValueError, match="step: a bidirectional layer"):
        rnnkit.LSTM(3, 4, bidirectional=True).step(np.zeros((1, 3), np.float32))
