"""rnnkit: recurrent neural networks (Elman RNN, LSTM, GRU) on NumPy with hand-written BPTT."""
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.protocol import HState, LSTMState
from rnnkit.cells.lstm import LSTMCell
from rnnkit.cells.rnn import RNNCell
from rnnkit.io.onnx_export import compose_onnx, save_onnx, to_onnx
from rnnkit.io.onnx_import import from_onnx
from rnnkit.io.torch_interop import from_torch, to_torch
from rnnkit.engine.layer_types import GRU, LSTM, RNN, LayerNormLSTM
from rnnkit.engine.recurrent import LayerBusyError, Recurrent
from rnnkit.nn.ctc import ctc_loss
from rnnkit.nn.losses import bce_with_logits, log_softmax, mse, softmax, softmax_cross_entropy
from rnnkit.module import Module
from rnnkit.nn.blocks import Embedding, Linear, Sigmoid
from rnnkit.engine import threads  # rnnkit.threads.use_cores(n): the public thread setting
from rnnkit._version import __version__

__all__ = [
    "RNN", "LSTM", "GRU", "LayerNormLSTM", "Recurrent", "LayerBusyError", "RNNCell", "LSTMCell", "GRUCell", "HState",
    "LSTMState",
    "Embedding", "Linear", "Sigmoid", "Module", "softmax", "log_softmax", "softmax_cross_entropy", "ctc_loss",
    "bce_with_logits", "mse", "from_torch", "to_torch", "to_onnx", "from_onnx", "compose_onnx", "save_onnx",
]
