"""Initial parameters of a recurrent layer (PyTorch's names and layouts), drawn from a Generator.

``init``:
    "pytorch"     all weights and biases U(-1/sqrt(H), 1/sqrt(H)) (torch's default)
    "orthogonal"  W_hh orthogonal per gate block, W_ih Glorot-uniform per gate block,
                  biases 0 and forget-gate bias 1 (LSTM f; GRU z)
``forget_bias`` overrides the forget-gate bias after either init: b_ih[f] = forget_bias,
b_hh[f] = 0.  Parameters the cell owns come from ``cell.init_own``.
"""
from __future__ import annotations

import numpy as np


def _orthogonal(rng: np.random.Generator, n: int, m: int | None = None) -> np.ndarray:
    """(n, m) with orthonormal columns (m <= n) or rows (m > n); square by default."""
    m = n if m is None else m
    q, r = np.linalg.qr(rng.standard_normal((max(n, m), min(n, m))))
    q = q * np.sign(np.diag(r))
    return q if n >= m else q.T


def init_weights(cell, input_size: int, H: int, num_layers: int, D: int, init: str, forget_bias, bias: bool,
                 rng: np.random.Generator, suffix) -> dict:
    """{name + suffix(layer, direction): float64 array} for every layer and direction, in draw order.

    W_hh is (G*H, Hh) and layer k > 0 takes D*Hh inputs, Hh the width of h (``cell.field_sizes``:
    H, or the projected LSTM's proj_size)."""
    G = cell.n_gates
    Hh = cell.field_sizes(H)["h"]
    forget = cell.forget_gate  # gate block index, or None
    params = {}
    for layer in range(num_layers):
        I = input_size if layer == 0 else Hh * D
        for d in range(D):
            if init == "pytorch":
                k = 1.0 / np.sqrt(H)
                W_ih = rng.uniform(-k, k, (G * H, I))
                W_hh = rng.uniform(-k, k, (G * H, Hh))
                b_ih = rng.uniform(-k, k, G * H)
                b_hh = rng.uniform(-k, k, G * H)
            else:
                lim = np.sqrt(6.0 / (I + H))
                W_ih = rng.uniform(-lim, lim, (G * H, I))
                W_hh = np.concatenate([_orthogonal(rng, H, Hh) for _ in range(G)])
                b_ih, b_hh = np.zeros(G * H), np.zeros(G * H)
                if forget is not None:
                    b_ih[forget * H : (forget + 1) * H] = 1.0
            if forget_bias is not None:
                b_ih[forget * H : (forget + 1) * H] = forget_bias
                b_hh[forget * H : (forget + 1) * H] = 0.0
            named = {"weight_ih": W_ih, "weight_hh": W_hh}
            if bias:
                named.update(bias_ih=b_ih, bias_hh=b_hh)
            for n, shape in cell.own_params(I, H).items():
                named[n] = cell.init_own(n, shape, rng, H)
            params.update({n + suffix(layer, d): v for n, v in named.items()})
    return params
