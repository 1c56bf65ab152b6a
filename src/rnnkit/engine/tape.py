"""What a recurrent layer's forward keeps for its backward: a named structure, per layer and direction.

``Recurrent.tape`` is a :class:`Tape`; its ``layers[k]`` a :class:`LayerTape` (the layer's
input, one :class:`ScanTape` per direction: states, activated gates and caches
of every step, and the W_hh each direction used under weight dropout), and the forward's
dropout masks.  Outside code (memory accounting, diagnostics) reads it, never writes it;
the next forward overwrites the buffers.  :class:`TapeReader` gives a layer the public ways
to read it (``tape``, ``gate_activations``, ``saved_for_backward``) and to drop it (``release``).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rnnkit.engine.dropout import Masks


class ScanTape(NamedTuple):
    """What the forward of one layer and direction keeps for its backward.

    states[f] (T+1, B, H) per state field f (h, and c for the LSTM): the state entering step t
    is ``states[f][t + reverse]``, the one leaving it ``states[f][t + 1 - reverse]``.
    gates (T, B, G): the activated gates (None for cells that do not keep them: the Elman RNN).
    cache[k] (T, B, width): the cell's cache fields (widths: ``cell.field_sizes``).
    h_mask: (B, H) recurrent dropout mask on h_prev, or None.
    """

    states: tuple
    gates: np.ndarray | None
    cache: tuple
    reverse: bool
    h_mask: np.ndarray | None = None

    def h_prev(self) -> np.ndarray:
        """(T, B, H): h entering each step t."""
        return self.states[0][1:] if self.reverse else self.states[0][:-1]

    def h_new(self) -> np.ndarray:
        """(T, B, H): h leaving each step t (before masking)."""
        return self.states[0][:-1] if self.reverse else self.states[0][1:]

    def final(self) -> tuple:
        """The state fields after the last step, each (B, width) (a buffer of two steps: the one last written)."""
        T = len(self.states[0]) - 1
        return tuple(s[(0 if self.reverse else T) % len(s)] for s in self.states)

    def gate_values(self) -> np.ndarray:
        """(T, B, G): activated gates of every step (the Elman RNN's only "gate" is h)."""
        return self.h_new() if self.gates is None else self.gates


class LayerTape(NamedTuple):
    """What one layer of a forward keeps for the backward: its input and one tape per direction."""

    input: np.ndarray  # (T, B, I_k), time-major (after input dropout: what met W_ih)
    directions: tuple  # ScanTape per direction (forward, then reverse)
    weights_hh: tuple = ()  # per direction the W_hh the scan used (weight dropout), else ()


class Tape(NamedTuple):
    """What ``Recurrent.forward`` keeps for ``backward`` (``Recurrent.tape``; read it, never write it)."""

    layers: tuple  # LayerTape per layer
    keep: np.ndarray | None  # (T, B) bool: True at padded steps (t >= length); None without lengths
    T: int
    B: int
    masks: Masks | None = None  # the dropout masks of this forward (training only)
    rows: tuple | None = None  # x given as rnnkit.engine.rows.Rows (time-major ids), else None

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


class TapeReader:
    """The tape-reading part of :class:`rnnkit.engine.recurrent.Recurrent` (which sets ``_tape``, ``_workspace``
    and ``_weight_names``)."""

    @property
    def tape(self) -> Tape | None:
        """What the last forward kept for ``backward`` (None after backward or release): per layer its
        input and per direction the states, activated gates and caches of every step
        (:class:`Tape`, :class:`ScanTape`).  For reading (memory accounting,
        diagnostics); the next forward overwrites these buffers."""
        return self._tape

    def gate_activations(self) -> list:
        """Activated gates of the last forward (before backward consumes it).

        Returns a list over (layer, direction) of arrays (T, B, G*H), blocks in the
        cell's ``gate_names`` order (LSTM i, f, g, o; GRU r, z, n; RNN: h).
        Time-major; rows past a sequence's length hold the values computed there
        (ignore them with the lengths).
        """
        if self._tape is None:
            raise RuntimeError("gate_activations: no forward pass kept (call forward first, before backward)")
        return [t.gate_values().copy() for t in self._tape.directions()]

    def saved_for_backward(self) -> list:
        """Every array the last forward keeps for its backward (:meth:`Tape.arrays`; views of one
        buffer may appear more than once).  Empty before a forward and after backward or release.
        For memory accounting (rnnkit.bench.memory.tape_bytes)."""
        return [] if self._tape is None else self._tape.arrays()

    def release(self) -> None:
        """Free what the layer keeps between calls: the last forward's tape (so ``backward``
        needs a new ``forward``) and the per-layer buffers reused by the time loops.

        For inference-only use, after a forward whose outputs you have copied or no longer
        need: the tape and buffers are O(T * B * G * H) per layer.  The next call allocates
        them again.
        """
        self._tape = None
        self._workspace = [{} for _ in self._weight_names]
