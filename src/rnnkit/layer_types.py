"""The recurrent layers by kind: each chooses the cell that :class:`rnnkit.layers.Recurrent` runs.

``RNN`` (Elman, tanh or relu), ``LSTM`` (with ``peephole=True`` or ``proj_size=P`` its variants),
``GRU`` (with ``linear_before_reset=False`` ONNX's default GRU) and ``LayerNormLSTM``;
:data:`LAYERS` names them for task configs and the command line.
"""
from __future__ import annotations

import functools

import numpy as np

from .cells import GRUCell, LSTMCell, RNNCell
from .cells_gru_reset_before import GRUResetBeforeCell
from .cells_layernorm import LayerNormLSTMCell
from .cells_peephole import PeepholeLSTMCell
from .cells_proj import ProjLSTMCell
from .layers import Recurrent
from .validate import check_choice


class RNN(Recurrent):
    """Elman RNN, h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh); ``nonlinearity='relu'`` optional."""

    cell_class = RNNCell

    def __init__(self, input_size, hidden_size, num_layers=1, bidirectional=False, dtype=np.float32,
                 seed=None, nonlinearity: str = "tanh", **kwargs):
        super().__init__(input_size, hidden_size, num_layers, bidirectional, dtype, seed,
                         nonlinearity=nonlinearity, **kwargs)

    @property
    def nonlinearity(self) -> str:
        """"tanh" or "relu" (the cell's)."""
        return self.cell.nonlinearity


class LSTM(Recurrent):
    """LSTM with forget, input and output gates and cell state (PyTorch gate order i, f, g, o).

    ``peephole=True``: diagonal peepholes (:mod:`rnnkit.cells_peephole`, own ``weight_p_l{k}``
    (3H,) laid out as ONNX's P); ``proj_size=P`` (0 < P < H): h = (o * tanh(c)) @ W_hr.T as
    ``torch.nn.LSTM(proj_size=P)`` (:mod:`rnnkit.cells_proj`, own ``weight_hr_l{k}`` (P, H)).
    """

    cell_class = LSTMCell

    def __init__(self, input_size, hidden_size, num_layers=1, bidirectional=False, dtype=np.float32,
                 seed=None, peephole: bool = False, proj_size: int = 0, **kwargs):
        super().__init__(input_size, hidden_size, num_layers, bidirectional, dtype, seed,
                         peephole=peephole, proj_size=proj_size, **kwargs)

    def _make_cell(self, hidden_size: int, peephole: bool = False, proj_size: int = 0):
        if not isinstance(proj_size, (int, np.integer)) or isinstance(proj_size, bool) or not 0 <= proj_size:
            raise ValueError(f"proj_size: expected an integer >= 0, got {proj_size!r}")
        if proj_size and peephole:
            raise ValueError("peephole: peepholes with proj_size > 0 are not supported")
        if proj_size and proj_size >= hidden_size:
            raise ValueError(f"proj_size: must be smaller than hidden_size ({hidden_size}), got {proj_size}")
        if proj_size:
            return ProjLSTMCell(proj_size)
        return PeepholeLSTMCell() if peephole else LSTMCell()

    @property
    def peephole(self) -> bool:
        return isinstance(self.cell, PeepholeLSTMCell)

    @property
    def proj_size(self) -> int:
        """0, or the width of h (torch's ``proj_size``)."""
        return getattr(self.cell, "proj_size", 0)


class LayerNormLSTM(Recurrent):
    """Layer-normalised LSTM (:mod:`rnnkit.cells_layernorm`: LayerNorm on both projections and on c),
    with the layer contract of :class:`LSTM`; ``bias=False`` by default (the LayerNorm betas are
    the biases, as in PyTorch's custom_lstms.py LayerNormLSTMCell)."""

    cell_class = LayerNormLSTMCell

    def __init__(self, input_size, hidden_size, num_layers=1, bidirectional=False, dtype=np.float32,
                 seed=None, bias: bool = False, **kwargs):
        super().__init__(input_size, hidden_size, num_layers, bidirectional, dtype, seed, bias=bias, **kwargs)


class GRU(Recurrent):
    """GRU (gates r, z, n), by default in PyTorch's formulation, n = tanh(xn + r * (h W_hn^T + b_hn))
    (ONNX ``linear_before_reset=1``).  ``linear_before_reset=False``: n = tanh(xn + (r * h) W_hn^T + b_hn),
    ONNX's default and Keras's ``reset_after=False`` (:mod:`rnnkit.cells_gru_reset_before`); the same
    parameters (names, shapes, r, z, n blocks)."""

    cell_class = GRUCell

    def __init__(self, input_size, hidden_size, num_layers=1, bidirectional=False, dtype=np.float32,
                 seed=None, linear_before_reset: bool = True, **kwargs):
        super().__init__(input_size, hidden_size, num_layers, bidirectional, dtype, seed,
                         linear_before_reset=linear_before_reset, **kwargs)

    def _make_cell(self, hidden_size: int, linear_before_reset: bool = True):
        if not isinstance(linear_before_reset, (bool, np.bool_, int, np.integer)) or linear_before_reset not in (0, 1):
            raise ValueError(f"linear_before_reset: expected True or False, got {linear_before_reset!r}")
        return GRUCell() if linear_before_reset else GRUResetBeforeCell()

    @property
    def linear_before_reset(self) -> bool:
        """True: PyTorch's GRU (r multiplies h W_hn^T + b_hn); False: r multiplies h before W_hn."""
        return not isinstance(self.cell, GRUResetBeforeCell)


LAYERS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
"""Layer class by cell name (the names the CLI and task configs take)."""


def layer_class(cell: str, linear_before_reset: bool = True):
    """The layer class that a task config's ``cell`` names (:data:`LAYERS`), with the GRU's
    ``linear_before_reset=False`` bound when asked for; one-line ValueErrors for bad values."""
    check_choice("cell", cell, sorted(LAYERS))
    if not isinstance(linear_before_reset, bool):
        raise ValueError(f"linear_before_reset: expected True or False, got {linear_before_reset!r}")
    if linear_before_reset:
        return LAYERS[cell]
    if cell != "gru":
        raise ValueError(f"linear_before_reset: False is the GRU's only, got cell {cell!r}")
    return functools.partial(GRU, linear_before_reset=False)
