"""A recurrent layer with a linear read-out: the model behind the forecast and long-lag tasks.

    h_t = Recurrent(x_t, h_{t-1})            RNN, LSTM or GRU (rnnkit.engine.recurrent)
    y   = W h_L + b                          ``last``:  read at each sequence's last valid step L
    y_t = W h_t + b                          ``every``: read at every step

The seed's output o_t = sigma(W_o h_t + b_o) is ``sigmoid(last(x))``; the
adding task adds the sigmoid itself (rnnkit.nn.blocks.Sigmoid has no parameters).
Parameter names: ``rnn.*`` (PyTorch's names) and ``head.weight`` / ``head.bias``.
"""
from __future__ import annotations

import numpy as np

from rnnkit.engine.layer_types import LAYERS, cell_options
from rnnkit.engine.recurrent import as_rng
from rnnkit.module import Module
from rnnkit.nn.blocks import Linear

CELLS = LAYERS


def check_cell(cell: str) -> str:
    if cell not in CELLS:
        raise ValueError(f"cell: expected one of {', '.join(CELLS)}, got {cell!r}")
    return cell


class Readout(Module):
    """Recurrent layer (time-major input (T, B, I)) + Linear(Hh, K) (Hh: the width of h).

    ``options``: the cell variant (``peephole=True``, ``proj_size=P``: rnnkit.engine.layer_types.CELL_OPTIONS).

    ``forget_bias`` sets the LSTM forget-gate / GRU update-gate bias (see
    rnnkit.engine.recurrent.Recurrent); the Elman RNN has no such gate and ignores it.
    """

    def __init__(self, cell: str, input_size: int, hidden: int, output_size: int, layers: int = 1,
                 forget_bias: float | None = None, seed=None, dtype=np.float32, **options):
        rng = as_rng(seed)
        self.cell_name = check_cell(cell)
        fb = forget_bias if CELLS[cell].cell_class.forget_gate is not None else None  # a cell without one ignores it
        self.rnn = CELLS[cell](input_size, hidden, num_layers=layers, forget_bias=fb, seed=rng, dtype=dtype,
                               **cell_options(cell, **options))
        self.head = Linear(self.rnn.h_size, output_size, seed=rng, dtype=dtype)
        self._last = None

    def _has_c(self) -> bool:
        return len(self.rnn.cell.State._fields) > 1  # (h, c): the LSTM

    def _final_h(self, state):
        return state.h[-1] if self._has_c() else state[-1]

    def last(self, x: np.ndarray, lengths=None) -> np.ndarray:
        """x (T, B, I) -> y (B, K) from h at each row's last valid step (``lengths`` (B,) or None)."""
        out, state = self.rnn(x, lengths=lengths)
        self._last = (out.shape, state)
        return self.head(self._final_h(state))

    def backward_last(self, dy: np.ndarray) -> None:
        """Gradients of the loss w.r.t. ``last``'s output (B, K) -> parameter grads (added)."""
        if self._last is None:
            raise RuntimeError("backward_last: called before last() or twice for one forward")
        out_shape, state = self._last
        self._last = None
        dh = self.head.backward(dy)  # (B, H)
        lstm = self._has_c()
        d_h_all = np.zeros_like(state.h if lstm else state)  # (layers, B, H)
        d_h_all[-1] = dh  # y reads the last layer's final h (the head gives c no gradient)
        d_state = (d_h_all, None) if lstm else d_h_all
        self.rnn.backward(np.zeros(out_shape, dtype=dh.dtype), d_state)

    def release(self) -> None:
        """Drop the tapes of the last forward (after inference, to free memory)."""
        self._last = None
        self.rnn.release()
        self.head.release()

    def every(self, x: np.ndarray) -> np.ndarray:
        """x (T, B, I) -> y (T, B, K), read at every step."""
        out, _ = self.rnn(x)
        return self.head(out)

    def backward_every(self, dy: np.ndarray) -> None:
        """dy (T, B, K) -> parameter grads (added)."""
        self.rnn.backward(self.head.backward(dy))
