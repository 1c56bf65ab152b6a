"""Gate saturation statistics (Karpathy, Johnson & Fei-Fei 2015, "Visualizing and
Understanding Recurrent Networks", Fig. 3).

For every sigmoid gate unit (LSTM: i, f, o; GRU: r, z) and layer, the fraction of
(valid) time steps at which it is

    left-saturated   gate < 0.1   (nearly closed)
    right-saturated  gate > 0.9   (nearly open)

A forget-gate unit far up the y axis is an integrator (remembers for long); one far
right is reset at almost every step.  Units near the origin are used in their
linear range.  The LSTM's g and GRU's n are tanh candidates, not gates, and are left
out, as in the paper.

Counts come from :meth:`rnnkit.Recurrent.gate_activations` after a forward pass and
honour ``lengths`` (padded steps do not count).
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

import numpy as np

from rnnkit.engine.recurrent import Recurrent
from rnnkit.io.outputs import write_output

LOW, HIGH = 0.1, 0.9



@dataclass(frozen=True)
class GateSaturation:
    """Saturation fractions per (layer, direction), gate and unit.

    gates: gate names, e.g. ("i", "f", "o")
    left:  (L*D, len(gates), H) fraction of valid steps with gate < 0.1
    right: (L*D, len(gates), H) fraction of valid steps with gate > 0.9
    steps: number of (time step, sequence) pairs counted
    num_directions: D (row l*D + d is layer l, direction d)
    """

    gates: tuple
    left: np.ndarray
    right: np.ndarray
    steps: int
    num_directions: int = 1
    low = LOW  # the thresholds (class constants, not fields)
    high = HIGH

    def rows(self) -> list[dict]:
        """One dict per unit: layer, direction, gate, unit, left, right."""
        out = []
        LD, G, H = self.left.shape
        for k in range(LD):
            for gi, g in enumerate(self.gates):
                for j in range(H):
                    out.append(dict(layer=k // self.num_directions, direction=k % self.num_directions,
                                    gate=g, unit=j, left=float(self.left[k, gi, j]),
                                    right=float(self.right[k, gi, j])))
        return out

    def summary(self) -> dict:
        """Means over units per (layer, direction) and gate, plus the step count."""
        LD = self.left.shape[0]
        return {
            "steps": self.steps,
            "thresholds": {"left": LOW, "right": HIGH},
            "layers": [
                {"layer": k // self.num_directions, "direction": k % self.num_directions,
                 "gates": {g: {"mean_left": float(self.left[k, gi].mean()),
                               "mean_right": float(self.right[k, gi].mean())}
                           for gi, g in enumerate(self.gates)}}
                for k in range(LD)
            ],
        }


class SaturationCounter:
    """Accumulates saturation counts over batches for one layer.

    counter.add(gate_activations, lengths=None) after each forward; counter.result().
    """

    def __init__(self, layer: Recurrent):
        cell = layer.cell
        if not cell.sigmoid_gates:
            raise ValueError(f"layer: gate statistics need an LSTM or GRU, got {type(layer).__name__} "
                             f"(an Elman RNN has no gates)")
        self.blocks = {g: cell.gate_names.index(g) for g in cell.sigmoid_gates}  # name -> block index
        self.H = layer.hidden_size
        self.D = layer.num_directions
        LD, G = layer.num_layers * self.D, len(self.blocks)
        self.left = np.zeros((LD, G, self.H), dtype=np.int64)
        self.right = np.zeros((LD, G, self.H), dtype=np.int64)
        self.steps = 0

    def add(self, gate_activations: list, lengths=None) -> None:
        """gate_activations: list over (layer, direction) of (T, B, G*H) (time-major)."""
        if len(gate_activations) != self.left.shape[0]:
            raise ValueError(f"gate_activations: expected {self.left.shape[0]} (layer, direction) arrays, "
                             f"got {len(gate_activations)}")
        T, B = gate_activations[0].shape[:2]
        valid = np.ones((T, B), dtype=bool)
        if lengths is not None:
            lengths = np.asarray(lengths)
            if lengths.shape != (B,):
                raise ValueError(f"lengths: expected shape ({B},), got {lengths.shape}")
            valid = np.arange(T)[:, None] < lengths[None, :]
        for k, a in enumerate(gate_activations):
            for gi, block in enumerate(self.blocks.values()):
                v = a[:, :, block * self.H : (block + 1) * self.H]
                self.left[k, gi] += ((v < LOW) & valid[:, :, None]).sum(axis=(0, 1))
                self.right[k, gi] += ((v > HIGH) & valid[:, :, None]).sum(axis=(0, 1))
        self.steps += int(valid.sum())

    def result(self) -> GateSaturation:
        if self.steps == 0:
            raise ValueError("no steps counted: call add() with at least one batch first")
        return GateSaturation(tuple(self.blocks), self.left / self.steps, self.right / self.steps,
                              self.steps, self.D)


def gate_saturation(layer: Recurrent, batches) -> GateSaturation:
    """Run ``layer.forward`` over ``batches`` (iterable of (x, lengths-or-None)) and count.

    Forward only; no gradients are touched.
    """
    counter = SaturationCounter(layer)
    for x, lengths in batches:
        layer.forward(x, None, lengths)
        counter.add(layer.gate_activations(), lengths)
    return counter.result()


def write_saturation(sat: GateSaturation, csv_path, json_path=None) -> None:
    """Per-unit fractions as CSV (layer, direction, gate, unit, left, right); summary JSON."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["layer", "direction", "gate", "unit", "left", "right"])
    w.writeheader()
    w.writerows(sat.rows())
    write_output(csv_path, buf.getvalue(), "csv", what="--gates")  # atomic; never over another kind of file
    if json_path is not None:
        write_output(json_path, json.dumps(sat.summary(), indent=2), "json", what="--gates")
