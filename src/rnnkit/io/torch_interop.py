"""Weights to and from ``torch.nn.RNN/LSTM/GRU``.

rnnkit uses PyTorch's parameter names and layouts, so conversion is a copy: the LSTM's
``proj_size`` and ``weight_hr_l{k}`` and the ``dropout`` between layers travel both ways.
rnnkit-only features (peepholes, LayerNormLSTM, the GRU's ``linear_before_reset=False``,
variational/weight dropout) have no ``torch.nn`` equivalent and are refused by :func:`to_torch`.
torch is an optional dependency (``pip install rnnkit[torch]``), imported here only.
"""
from __future__ import annotations

import numpy as np

from rnnkit.engine.layer_types import GRU, LSTM, RNN
from rnnkit.engine.recurrent import Recurrent


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
    first = next(module.parameters())
    dtype = np.dtype(dtype or str(first.dtype).replace("torch.", ""))
    kwargs = dict(
        num_layers=module.num_layers, bidirectional=module.bidirectional, dtype=dtype,
        batch_first=module.batch_first, bias=module.bias, seed=0, dropout=float(module.dropout),
    )
    if getattr(module, "proj_size", 0):
        kwargs["proj_size"] = module.proj_size
    if cls is RNN:
        kwargs["nonlinearity"] = module.nonlinearity
    layer = cls(module.input_size, module.hidden_size, **kwargs)
    layer.load_params({k: v.detach().cpu().numpy() for k, v in module.named_parameters()})
    return layer.train(module.training)  # the mode too: dropout acts in training only, in both


def to_torch(layer: Recurrent):
    """Build a ``torch.nn`` module with the same weights as an rnnkit layer."""
    torch = _torch()
    cls = torch_classes(torch).get(type(layer))
    if cls is None:
        raise TypeError(f"to_torch: expected rnnkit.RNN, LSTM or GRU, got {type(layer).__name__}")
    if getattr(layer, "peephole", False):
        raise ValueError("to_torch: torch.nn.LSTM has no peepholes (layer built with peephole=True)")
    if not getattr(layer, "linear_before_reset", True):
        raise ValueError("to_torch: torch.nn.GRU has r * (W_hn h + b_hn) only (layer built with "
                         "linear_before_reset=False; export it with to_onnx instead)")
    for name in ("input_dropout", "recurrent_dropout", "weight_dropout"):
        if getattr(layer.rates, name):
            raise ValueError(f"to_torch: torch.nn.{cls.__name__} has no {name} (the layer's is "
                             f"{getattr(layer.rates, name)})")
    kwargs = dict(
        num_layers=layer.num_layers, bidirectional=layer.bidirectional,
        batch_first=layer.batch_first, bias=layer.bias,
        dtype=getattr(torch, layer.dtype.name), dropout=layer.dropout,
    )
    if getattr(layer, "proj_size", 0):
        kwargs["proj_size"] = layer.proj_size
    if cls is torch.nn.RNN:
        kwargs["nonlinearity"] = layer.nonlinearity
    module = cls(layer.input_size, layer.hidden_size, **kwargs)
    params = layer.params  # a fresh dict per access: take it once
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.from_numpy(np.ascontiguousarray(params[name])))
    return module.train(layer.training)
