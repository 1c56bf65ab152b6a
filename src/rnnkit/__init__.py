"""rnnkit: recurrent neural networks (Elman RNN, LSTM, GRU) on NumPy with hand-written BPTT."""
from .cells import GRUCell, HState, LSTMCell, LSTMState, RNNCell
from .io.onnx_export import compose_onnx, save_onnx, to_onnx
from .io.onnx_import import from_onnx
from .io.torch_interop import from_torch, to_torch
from .layers import GRU, LSTM, RNN, LayerBusyError, Recurrent
from .losses import bce_with_logits, log_softmax, mse, softmax, softmax_cross_entropy
from .module import Module
from .nn import Embedding, Linear, Sigmoid
from ._version import __version__

__all__ = [
    "RNN", "LSTM", "GRU", "Recurrent", "LayerBusyError", "RNNCell", "LSTMCell", "GRUCell", "HState", "LSTMState",
    "Embedding", "Linear", "Sigmoid", "Module", "softmax", "log_softmax", "softmax_cross_entropy",
    "bce_with_logits", "mse", "from_torch", "to_torch", "to_onnx", "from_onnx", "compose_onnx", "save_onnx",
]
