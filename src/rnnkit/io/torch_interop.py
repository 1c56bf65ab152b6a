"""Weights to and from ``torch.nn.RNN/LSTM/GRU``.

rnnkit uses PyTorch's parameter names and layouts, so conversion is a copy.
torch is an optional dependency (``pip install rnnkit[torch]``), imported here only.
"""
from __future__ import annotations

import numpy as np

from ..layers import GRU, LSTM, RNN, Recurrent


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - exercised only without torch
        raise ImportError("PyTorch interop needs torch: pip install 'rnnkit[torch]'") from e
    return torch


def torch_classes(torch) -> dict:
    """rnnkit layer class -> the torch.nn class with the same equations and parameter layout."""
    return {LSTM: torch.nn.LSTM, GRU: torch.nn.GRU, RNN: torch.nn.RNN}


def from_torch(module, dtype=None) -> Recurrent:
    """Build an rnnkit layer equal to a ``torch.nn.RNN``, ``LSTM`` or ``GRU``.

    ``dtype`` defaults to the module's floating dtype (float32 or float64).
    """
    torch = _torch()
    cls = {t: k for k, t in torch_classes(torch).items()}.get(type(module))
    if cls is None:
        raise TypeError(f"from_torch: expected torch.nn.RNN, LSTM or GRU, got {type(module).__name__}")
    if getattr(module, "proj_size", 0):
        raise ValueError("from_torch: LSTM with proj_size > 0 is not supported")
    if module.dropout:
        raise ValueError("from_torch: inter-layer dropout is not supported (dropout must be 0)")
    first = next(module.parameters())
    dtype = np.dtype(dtype or str(first.dtype).replace("torch.", ""))
    kwargs = dict(
        num_layers=module.num_layers, bidirectional=module.bidirectional, dtype=dtype,
        batch_first=module.batch_first, bias=module.bias, seed=0,
    )
    if cls is RNN:
        kwargs["nonlinearity"] = module.nonlinearity
    layer = cls(module.input_size, module.hidden_size, **kwargs)
    layer.load_params({k: v.detach().cpu().numpy() for k, v in module.named_parameters()})
    return layer


def to_torch(layer: Recurrent):
    """Build a ``torch.nn`` module with the same weights as an rnnkit layer."""
    torch = _torch()
    cls = torch_classes(torch).get(type(layer))
    if cls is None:
        raise TypeError(f"to_torch: expected rnnkit.RNN, LSTM or GRU, got {type(layer).__name__}")
    kwargs = dict(
        num_layers=layer.num_layers, bidirectional=layer.bidirectional,
        batch_first=layer.batch_first, bias=layer.bias,
        dtype=getattr(torch, layer.dtype.name),
    )
    if cls is torch.nn.RNN:
        kwargs["nonlinearity"] = layer.nonlinearity
    module = cls(layer.input_size, layer.hidden_size, **kwargs)
    params = layer.params  # a fresh dict per access: take it once
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.from_numpy(np.ascontiguousarray(params[name])))
    return module
