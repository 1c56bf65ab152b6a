"""The cells floor: one time step forward and backward of each cell, compiled.

:mod:`~rnnkit.cells.protocol` (the cell protocol, states, ``sigmoid``), one module per cell
(:mod:`~rnnkit.cells.rnn`, :mod:`~rnnkit.cells.lstm`, :mod:`~rnnkit.cells.gru`) and per variant
(:mod:`~rnnkit.cells.peephole`, :mod:`~rnnkit.cells.proj`, :mod:`~rnnkit.cells.layernorm`,
:mod:`~rnnkit.cells.gru_reset_before`)."""
from rnnkit.cells.protocol import Cell, HState, LSTMState, sigmoid
from rnnkit.cells.rnn import RNNCell
from rnnkit.cells.lstm import LSTMCell
from rnnkit.cells.gru import GRUCell

__all__ = ["Cell", "HState", "LSTMState", "sigmoid", "RNNCell", "LSTMCell", "GRUCell"]
