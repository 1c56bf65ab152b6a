"""What a :class:`rnnkit.models.readout.Readout` will allocate, from its sizes alone (the forecast and
long-lag tasks' ``model_plan``)."""
from __future__ import annotations

import numpy as np

from rnnkit.engine.memory import estimate_rnn_bytes, rnn_param_shapes
from rnnkit.engine.layer_types import default_bias, make_cell
from rnnkit.models.readout import check_cell
from rnnkit.train.task import ModelPlan


def readout_plan(cell: str, input_size: int, hidden: int, output_size: int, layers: int, T: int, B: int,
                 **options) -> ModelPlan:
    """What a float32 :class:`Readout` will allocate (rnnkit.train.task.ModelPlan), from its sizes alone:
    its parameters, and the buffers of a forward + backward over T steps of B sequences
    (``options``: the cell variant, rnnkit.engine.layer_types.CELL_OPTIONS)."""
    bias, obj = default_bias(check_cell(cell)), make_cell(cell, hidden, **options)
    est = estimate_rnn_bytes(input_size, hidden, layers, T=T, B=B, cell=obj, itemsize=4, bias=bias)
    shapes = {**rnn_param_shapes(input_size, hidden, layers, 1, obj, bias=bias, prefix="rnn."),
              "head.weight": (output_size, obj.field_sizes(hidden)["h"]), "head.bias": (output_size,)}
    act = est.activations + 4 * T * B * (input_size + 2 * output_size)  # the input, y and dy
    return ModelPlan(shapes, np.float32, act, est.init, sizes={"hidden": hidden, "layers": layers})
