"""The recurrent layers by kind: each chooses the cell that :class:`rnnkit.engine.recurrent.Recurrent` runs.

``RNN`` (Elman, tanh or relu), ``LSTM`` (with ``peephole=True`` or ``proj_size=P`` its variants),
``GRU`` (with ``linear_before_reset=False`` ONNX's default GRU) and ``LayerNormLSTM``; :data:`LAYERS`
names them for task configs and the command line.
"""
from __future__ import annotations

import dataclasses
import inspect

import numpy as np

from rnnkit.cells.gru import GRUCell
from rnnkit.cells.lstm import LSTMCell
from rnnkit.cells.rnn import RNNCell
from rnnkit.cells.gru_reset_before import GRUResetBeforeCell
from rnnkit.cells.layernorm import LayerNormLSTMCell
from rnnkit.cells.peephole import PeepholeLSTMCell
from rnnkit.cells.proj import ProjLSTMCell
from rnnkit.checks.fields import option
from rnnkit.checks.rules import NONNEG_INT
from rnnkit.engine.recurrent import Recurrent


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

    ``peephole=True``: diagonal peepholes (:mod:`rnnkit.cells.peephole`, own ``weight_p_l{k}``
    (3H,) laid out as ONNX's P); ``proj_size=P`` (0 < P < H): h = (o * tanh(c)) @ W_hr.T as
    ``torch.nn.LSTM(proj_size=P)`` (:mod:`rnnkit.cells.proj`, own ``weight_hr_l{k}`` (P, H)).
    """

    cell_class = LSTMCell

    def __init__(self, input_size, hidden_size, num_layers=1, bidirectional=False, dtype=np.float32,
                 seed=None, peephole: bool = False, proj_size: int = 0, **kwargs):
        super().__init__(input_size, hidden_size, num_layers, bidirectional, dtype, seed,
                         peephole=peephole, proj_size=proj_size, **kwargs)

    @classmethod
    def make_cell(cls, hidden_size: int, peephole: bool = False, proj_size: int = 0):
        if not isinstance(peephole, (bool, np.bool_)):
            raise ValueError(f"peephole: expected True or False, got {peephole!r}")
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
    """Layer-normalised LSTM (:mod:`rnnkit.cells.layernorm`: LayerNorm on both projections and on c),
    with the layer contract of :class:`LSTM`; ``bias=False`` by default (the LayerNorm betas are
    the biases, as in PyTorch's custom_lstms.py LayerNormLSTMCell)."""

    cell_class = LayerNormLSTMCell

    def __init__(self, input_size, hidden_size, num_layers=1, bidirectional=False, dtype=np.float32,
                 seed=None, bias: bool = False, **kwargs):
        super().__init__(input_size, hidden_size, num_layers, bidirectional, dtype, seed, bias=bias, **kwargs)


class GRU(Recurrent):
    """GRU (gates r, z, n), by default in PyTorch's formulation, n = tanh(xn + r * (h W_hn^T + b_hn))
    (ONNX ``linear_before_reset=1``).  ``linear_before_reset=False``: n = tanh(xn + (r * h) W_hn^T + b_hn),
    ONNX's default and Keras's ``reset_after=False`` (:mod:`rnnkit.cells.gru_reset_before`); the same
    parameters (names, shapes, r, z, n blocks)."""

    cell_class = GRUCell

    def __init__(self, input_size, hidden_size, num_layers=1, bidirectional=False, dtype=np.float32,
                 seed=None, linear_before_reset: bool = True, **kwargs):
        super().__init__(input_size, hidden_size, num_layers, bidirectional, dtype, seed,
                         linear_before_reset=linear_before_reset, **kwargs)

    @classmethod
    def make_cell(cls, hidden_size: int, linear_before_reset: bool = True):
        if not isinstance(linear_before_reset, (bool, np.bool_)):
            raise ValueError(f"linear_before_reset: expected True or False, got {linear_before_reset!r}")
        return GRUCell() if linear_before_reset else GRUResetBeforeCell()

    @property
    def linear_before_reset(self) -> bool:
        """True: PyTorch's GRU (r multiplies h W_hn^T + b_hn); False: r multiplies h before W_hn."""
        return not isinstance(self.cell, GRUResetBeforeCell)


LAYERS = {"rnn": RNN, "lstm": LSTM, "gru": GRU, "layernorm_lstm": LayerNormLSTM}
"""Layer class by cell name (the names the CLI and task configs take)."""

@dataclasses.dataclass(frozen=True, kw_only=True)
class CellVariant:
    """The cell-variant fields of a task or model config (a frozen dataclass with a ``cell`` field
    inherits them; keyword-only): LSTM arguments, off by default, recorded in checkpoints.  The
    config's ``__post_init__`` checks them with :func:`config_cell`."""

    # diagonal peepholes (rnnkit.cells.peephole)
    peephole: bool = option(False, "LSTM with diagonal peephole connections (Gers & Schmidhuber 2000)")
    # h projected to this size, 0 < P < hidden (rnnkit.cells.proj); 0: none
    proj_size: int = option(0, "LSTM with h projected to P < --hidden units (torch.nn.LSTM's proj_size; "
                               "default 0: none)", rule=NONNEG_INT, metavar="P")
    # the GRU's; False: ONNX's default GRU, (r * h) W_hn^T (rnnkit.cells.gru_reset_before)
    linear_before_reset: bool = option(True, "GRU: 1 = PyTorch's GRU, 0 = ONNX's default GRU, (r * h) W_hn^T "
                                             "(default 1)", metavar="0|1")


CELL_DEFAULTS = {f.name: f.default for f in dataclasses.fields(CellVariant)}
"""The cell variants a config records beside its ``cell`` (layer arguments), each with its default
(= the plain cell)."""
CELL_OPTIONS = tuple(CELL_DEFAULTS)


def cell_options(cell: str, **options) -> dict:
    """The layer keyword arguments of the variant ``options`` (CELL_OPTIONS: value; the default =
    the plain cell, not passed) given with ``cell`` (a LAYERS name); ValueError naming the option
    when the cell's layer class does not take it (derived from its signature, e.g. ``proj_size``
    for a GRU)."""
    if cell not in LAYERS:
        raise ValueError(f"cell: expected one of {', '.join(LAYERS)}, got {cell!r}")
    takes = inspect.signature(LAYERS[cell]).parameters
    given = {k: v for k, v in options.items() if v != CELL_DEFAULTS[k]}
    for name in given:
        if name not in takes:
            which = [c for c, cls in LAYERS.items() if name in inspect.signature(cls).parameters]
            raise ValueError(f"{name}: only for cell {' or '.join(which)}, got cell {cell!r}")
    return given


def make_cell(cell: str, hidden_size: int, **options):
    """The cell a ``LAYERS[cell](..., hidden_size, **options)`` layer runs, without building the layer
    (for sizes: rnnkit.engine.memory); ValueError for options the cell does not take or a bad combination."""
    return LAYERS[cell].make_cell(int(hidden_size), **cell_options(cell, **options))



def default_bias(cell: str) -> bool:
    """Whether a ``LAYERS[cell]`` layer has biases by default (from its signature: the LayerNorm LSTM
    has none, its LayerNorm betas are the biases)."""
    p = inspect.signature(LAYERS[cell]).parameters.get("bias") or inspect.signature(Recurrent).parameters["bias"]
    return p.default


def config_options(config) -> dict:
    """The layer keyword arguments of a task config's variant fields (its CELL_OPTIONS; absent = the
    default), checked against its ``cell`` (:func:`cell_options`)."""
    return cell_options(config.cell, **{n: getattr(config, n, d) for n, d in CELL_DEFAULTS.items()})


def config_cell(config, hidden_size: int):
    """The cell of a task config's recurrent layers (``cell`` + variant fields, :func:`make_cell`): every
    check of the variants before anything is built (ValueError naming the field)."""
    return make_cell(config.cell, hidden_size, **{n: getattr(config, n, d) for n, d in CELL_DEFAULTS.items()})


def cell_label(config) -> str:
    """The cell of a task config for people: "LSTM", "LSTM (peephole)", "LSTM (proj 16)", "LAYERNORM_LSTM",
    "GRU (linear_before_reset=False)"."""
    opts = config_options(config)
    words = [n if v is True else f"{n}={v}" if isinstance(v, bool) else f"{n.split('_')[0]} {v}"
             for n, v in opts.items()]
    return config.cell.upper() + (f" ({', '.join(words)})" if words else "")
