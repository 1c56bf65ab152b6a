"""A recurrent layer's public state format: validated, split per (layer, direction), joined back.

The public state of :class:`rnnkit.engine.recurrent.Recurrent` is PyTorch's: h of shape
(num_layers*D, B, Hh), or ``LSTMState(h, c)`` for the LSTMs (c: (L*D, B, H)); index l*D + d is
layer l, direction d.  Inside, each (layer, direction) has the cell's state tuple of (B, width)
arrays (widths: ``cell.field_sizes``).  :class:`StateFormat` converts between the two, for the
state given to forward/step and for the gradient given to backward.
"""
from __future__ import annotations

import numpy as np

from rnnkit.cells.protocol import LSTMState
from rnnkit.checks.arrays import check_array


class StateFormat:
    """The state-handling part of :class:`rnnkit.engine.recurrent.Recurrent` (which sets ``cell``,
    ``hidden_size``, ``h_size``, ``state_widths``, ``num_layers``, ``num_directions`` and ``dtype``)."""

    def _is_lstm(self) -> bool:
        return self.cell.State is LSTMState

    def _state_fields(self, state, B: int, name: str = "state", finite: bool = True) -> tuple:
        """Public state -> validated (num_layers*D, B, width) array per state field (zeros for None).
        ``finite=False``: shapes and dtypes only (``step`` checks finiteness inside its compiled call)."""
        LD = self.num_layers * self.num_directions
        if state is None:
            return tuple(np.zeros((LD, B, w), dtype=self.dtype) for w in self.state_widths)
        if self._is_lstm():
            if not isinstance(state, tuple) or len(state) != 2:
                raise TypeError(f"{name}: LSTM state must be a tuple (h, c), got {type(state).__name__}")
            for f, w, a in zip(self.cell.State._fields, self.state_widths, state):
                check_array(f"{name}.{f}", a, (LD, B, w), self.dtype, finite)
            return tuple(state)
        return (check_array(name, state, (LD, B, self.h_size), self.dtype, finite),)

    def _split_state(self, state, B: int, name: str = "state") -> list:
        """Public state -> list over (layer, direction) of the cell's state tuples."""
        parts = self._state_fields(state, B, name)
        return [self.cell.State(*(a[k] for a in parts)) for k in range(len(parts[0]))]

    def _split_d_state(self, d_state, B: int) -> list:
        """``backward``'s d_state (None, h, or (dh, dc) where either may be None: zeros) -> list over
        (layer, direction) of the cell's state tuples."""
        if d_state is not None and self._is_lstm():
            if not isinstance(d_state, tuple) or len(d_state) != 2:
                raise TypeError(f"d_state: LSTM d_state must be a tuple (dh, dc), got {type(d_state).__name__}")
            zeros = self._state_fields(None, B)
            d_state = tuple(z if a is None else a for z, a in zip(zeros, d_state))
        return self._split_state(d_state, B, "d_state")

    def _join_state(self, states: list):
        """List over (layer, direction) of the cell's state tuples -> the public state."""
        stacked = []  # (L*D, B, H) per state field; np.stack's overhead matters for step()
        for f in range(len(states[0])):
            a = np.empty((len(states),) + states[0][f].shape, dtype=states[0][f].dtype)
            for k, s in enumerate(states):
                a[k] = s[f]
            stacked.append(a)
        return self._public_state(stacked)

    def _public_state(self, fields):
        """(L*D, B, H) array per state field -> the public state: h, or LSTMState(h, c)."""
        return LSTMState(*fields) if self._is_lstm() else fields[0]
