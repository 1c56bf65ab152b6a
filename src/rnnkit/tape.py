"""What a recurrent layer's forward keeps for its backward: a named structure, per layer and direction.

``Recurrent.tape`` is a :class:`Tape`; its ``layers[k]`` a :class:`LayerTape` (the layer's
input and one :class:`rnnkit.scan.ScanTape` per direction: states, activated gates and caches
of every step).  Outside code (memory accounting, diagnostics) reads it, never writes it;
the next forward overwrites the buffers.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class LayerTape(NamedTuple):
    """What one layer of a forward keeps for the backward: its input and one tape per direction."""

    input: np.ndarray  # (T, B, I_k), time-major
    directions: tuple  # ScanTape per direction (forward, then reverse)


class Tape(NamedTuple):
    """What ``Recurrent.forward`` keeps for ``backward`` (``Recurrent.tape``; read it, never write it)."""

    layers: tuple  # LayerTape per layer
    keep: np.ndarray | None  # (T, B) bool: True at padded steps (t >= length); None without lengths
    T: int
    B: int

    def directions(self) -> list:
        """ScanTape per (layer, direction), index l*D + d (PyTorch's ordering)."""
        return [d for layer in self.layers for d in layer.directions]

    def arrays(self) -> list:
        """Every array reachable from the tape (views of one buffer may appear more than once)."""
        found, stack = [], [self]
        while stack:
            o = stack.pop()
            if isinstance(o, np.ndarray):
                found.append(o)
            elif isinstance(o, tuple):
                stack.extend(o)
        return found
