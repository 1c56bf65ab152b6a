"""Import from ONNX: a chain of standard ``LSTM`` / ``GRU`` / ``RNN`` nodes -> an rnnkit layer.

``from_onnx(model_or_path)`` reads graphs as :func:`rnnkit.to_onnx` writes them and single
standard nodes as other exporters write them (the onnx package's node test cases,
``torch.onnx.export`` of ``nn.LSTM``):

* every recurrent node is one layer of the stack, all of one operator, in graph order;
  W, R and B are constants (initializers or Constant nodes); ``sequence_lens``,
  ``initial_h`` / ``initial_c`` are run-time inputs (the layer's ``lengths`` and ``state``);
* the data path is checked exactly: the first node's X is the graph input, directly
  or through a Transpose (1, 0, 2) (then the layer is ``batch_first``); node k+1's X is node
  k's Y (T, D, B, H) turned into (T, B, D*H) by Transpose (0, 2, 1, 3) + Reshape (0, 0, -1),
  or by Squeeze(1) when D = 1.  ``layout=1`` nodes ((B, T, .) tensors) are read too;
* the state plumbing (Split/Slice/Gather of h0 and Concat of the Y_h) and the output
  reshaping may use only the shape operators in :data:`SHAPE_OPS`.

Anything else raises :class:`OnnxImportError`, one line naming the operator or attribute
and the value: other operators, ``clip``, activations other than the defaults (RNN: Tanh or
Relu; LSTM: Sigmoid, Tanh, Tanh; GRU: Sigmoid, Tanh), ``input_forget=1``,
``direction="reverse"``, GRU ``linear_before_reset`` other than 0 or 1.  An LSTM's
peepholes (a constant P) give ``rnnkit.LSTM(peephole=True)`` (in every node, or in none); a GRU
node with ``linear_before_reset=1`` gives PyTorch's ``rnnkit.GRU``, with ``linear_before_reset=0``
(ONNX's default) ``rnnkit.GRU(linear_before_reset=False)`` (the same in every node).
"""
from __future__ import annotations

import os

import numpy as np

from rnnkit.errors import UserError
from rnnkit.engine.layer_types import RNN
from rnnkit.io.onnx_export import ONNX_OPS, onnx_module, permute_gates

SHAPE_OPS = {"Identity", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice", "Constant",
             "Shape", "Expand"}
"""Operators allowed besides the recurrent nodes (they only move data around)."""

DEFAULT_ACTIVATIONS = {"LSTM": ("Sigmoid", "Tanh", "Tanh"), "GRU": ("Sigmoid", "Tanh"), "RNN": ("Tanh",)}
N_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
LAYER_BY_OP = {op: (cls, perm) for cls, (op, perm) in ONNX_OPS.items()}


class OnnxImportError(UserError, ValueError):
    """An ONNX model that from_onnx cannot turn into an rnnkit layer; the message names why."""


def _load(model_or_path):
    onnx = onnx_module()
    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path
    if not isinstance(model_or_path, (str, os.PathLike)):
        raise TypeError(f"from_onnx: expected an onnx.ModelProto or a path, got {type(model_or_path).__name__}")
    path = os.fspath(model_or_path)
    try:
        return onnx.load(path)
    except FileNotFoundError:
        raise OnnxImportError(f"onnx file {path!r}: not found") from None
    except IsADirectoryError:
        raise OnnxImportError(f"onnx file {path!r}: is a directory, expected a .onnx file") from None
    except Exception as e:  # protobuf's DecodeError and friends
        raise OnnxImportError(f"onnx file {path!r}: not a readable ONNX model ({type(e).__name__})") from None


class _Graph:
    """Name lookups over one ONNX graph: constants, producers, graph inputs."""

    def __init__(self, onnx, graph):
        self.onnx, self.graph = onnx, graph
        self.consts = {t.name: self._array(t) for t in graph.initializer}
        self.nodes = list(graph.node)
        self.producer = {}  # tensor name -> index of the node that writes it
        for i, node in enumerate(self.nodes):
            for out in node.output:
                self.producer[out] = i
            if node.op_type == "Constant":
                if len(node.output) != 1:
                    raise OnnxImportError(f"{_where(node)}: a Constant with {len(node.output)} outputs, expected 1")
                self.consts[node.output[0]] = self._constant_value(node)
        self.inputs = [i.name for i in graph.input if i.name not in self.consts]

    def _array(self, tensor):
        """A TensorProto as an array; a malformed one (wrong byte count, unknown type) is an error."""
        try:
            return self.onnx.numpy_helper.to_array(tensor)
        except Exception as e:  # onnx raises ValueError, TypeError, KeyError... for broken tensors
            raise OnnxImportError(f"tensor {tensor.name!r}: malformed ({type(e).__name__}: {str(e)[:80]})") from None

    def _constant_value(self, node):
        for a in node.attribute:
            if a.name == "value":
                return self._array(a.t)
            if a.name in ("value_ints", "value_int", "value_floats", "value_float"):
                return np.asarray(self.onnx.helper.get_attribute_value(a))
        if not node.attribute:
            raise OnnxImportError(f"{_where(node)}: a Constant without a value")
        raise OnnxImportError(f"{_where(node)}: attribute {node.attribute[0].name} is not supported")

    def attrs(self, node) -> dict:
        """name -> value of the node's attributes (one of an undefined type left out)."""
        out = {}
        for a in node.attribute:
            try:
                v = self.onnx.helper.get_attribute_value(a)
            except Exception as e:  # onnx raises ValueError and others for a malformed attribute
                raise OnnxImportError(f"{_where(node)}: attribute {a.name!r} is malformed ({type(e).__name__})") \
                    from None
            if v is not None:
                out[a.name] = v
        return out

    def const(self, node, k: int, what: str):
        """The constant array at input k of ``node`` (None if omitted)."""
        if len(node.input) <= k or not node.input[k]:
            return None
        name = node.input[k]
        if name not in self.consts:
            raise OnnxImportError(f"{_where(node)}: input {what} ({name!r}) must be a constant "
                                  f"(initializer or Constant), got a run-time tensor")
        return self.consts[name]


def _where(node) -> str:
    return f"{node.op_type} node {node.name or '(unnamed)'!r}"


def _int_list(v, where: str, what: str) -> list:
    """``v`` (a list, an array, a number) as a list of ints, or an error naming ``what``."""
    try:
        return [int(x) for x in np.atleast_1d(np.asarray(v))]
    except (TypeError, ValueError, OverflowError):
        raise OnnxImportError(f"{where}: {what}={v!r} is not a list of integers") from None


def _text(v):
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def _check_attrs(g: _Graph, node) -> dict:
    """The node's attributes, or an error naming the first unsupported one."""
    op, where = node.op_type, _where(node)
    a = g.attrs(node)
    direction = _text(a.get("direction", b"forward"))
    if direction not in ("forward", "bidirectional"):
        raise OnnxImportError(f"{where}: attribute direction={direction!r} is not supported "
                              f"(forward or bidirectional)")
    D = 2 if direction == "bidirectional" else 1
    if "clip" in a:
        raise OnnxImportError(f"{where}: attribute clip={a['clip']} is not supported (no cell clipping in rnnkit)")
    for name in ("activation_alpha", "activation_beta"):
        if a.get(name):
            raise OnnxImportError(f"{where}: attribute {name}={list(a[name])} is not supported")
    acts = tuple(_text(s) for s in a.get("activations", ()))
    nonlinearity = "tanh"
    if acts:
        default = DEFAULT_ACTIVATIONS[op]
        if op == "RNN" and acts in (("Relu",) * D, ("Tanh",) * D):
            nonlinearity = acts[0].lower()
        elif acts != default * D:
            want = "Tanh or Relu (the same for both directions)" if op == "RNN" else ", ".join(default)
            raise OnnxImportError(f"{where}: attribute activations={list(acts)} is not supported (expected {want})")
    if op == "LSTM" and a.get("input_forget", 0):
        raise OnnxImportError(f"{where}: attribute input_forget={a['input_forget']} is not supported (0 only)")
    lbr = a.get("linear_before_reset", 0) if op == "GRU" else None
    if lbr not in (None, 0, 1):
        raise OnnxImportError(f"{where}: attribute linear_before_reset={lbr} is not supported (0 or 1)")
    layout = a.get("layout", 0)
    if layout not in (0, 1):
        raise OnnxImportError(f"{where}: attribute layout={layout} is not supported (0 or 1)")
    return dict(D=D, layout=layout, nonlinearity=nonlinearity, hidden_size=a.get("hidden_size"), lbr=lbr)


def _trace_x(g: _Graph, name: str, rec_index: dict, depth: int = 0) -> tuple:
    """Follow the data path back from tensor ``name`` to a graph input or a recurrent node's Y.

    Returns (origin, labels): origin "input" or the index of the recurrent node; labels name
    the axes: ("P", "Q", "I") for the graph input, ("T", "D", "B", "H") / ("B", "T", "D", "H")
    for a Y (layout 0 / 1), with "DH" for merged (D, H) axes.
    """
    if name in g.inputs:
        return "input", ("P", "Q", "I")
    if depth > len(g.nodes):
        raise OnnxImportError(f"tensor {name!r}: the graph has a cycle on the path into a recurrent node's X")
    i = g.producer.get(name)
    if i is None:
        raise OnnxImportError(f"tensor {name!r}: neither a graph input nor produced by a node")
    node = g.nodes[i]
    if node.op_type in LAYER_BY_OP:
        if node.output[0] != name:
            raise OnnxImportError(f"{_where(node)}: a final state feeds the next layer's X, expected its Y")
        k, layout = rec_index[i]
        return k, ("B", "T", "D", "H") if layout else ("T", "D", "B", "H")
    where = f"{_where(node)} on the path into a recurrent node's X"
    if node.op_type not in ("Identity", "Transpose", "Squeeze", "Reshape"):
        raise OnnxImportError(f"{where}: operator {node.op_type} is not supported there")
    if not node.input:
        raise OnnxImportError(f"{where}: no input")
    origin, labels = _trace_x(g, node.input[0], rec_index, depth + 1)
    a = g.attrs(node)
    if node.op_type == "Identity":
        return origin, labels
    if node.op_type == "Transpose":
        perm = _int_list(a.get("perm", range(len(labels))[::-1]), where, "perm")
        if sorted(perm) != list(range(len(labels))):
            raise OnnxImportError(f"{where}: perm={perm} does not match the tensor's {len(labels)} axes")
        return origin, tuple(labels[p] for p in perm)
    if node.op_type == "Squeeze":
        axes = g.const(node, 1, "axes") if len(node.input) > 1 else a.get("axes")
        axes = [x % len(labels) for x in _int_list(axes, where, "axes")] if axes is not None else None
        if axes is None or any(labels[x] != "D" for x in axes):
            raise OnnxImportError(f"{where}: axes={axes} is not supported (only the direction axis of a "
                                  f"unidirectional Y)")
        return origin, tuple(lab for x, lab in enumerate(labels) if x not in axes)
    shape = _int_list(g.const(node, 1, "shape"), where, "shape") if len(node.input) > 1 else []  # Reshape
    if len(labels) == 4 and labels[2:] == ("D", "H") and shape[:2] == [0, 0] and len(shape) == 3 \
            and shape[2] < 0 and not a.get("allowzero", 0):
        return origin, labels[:2] + ("DH",)
    raise OnnxImportError(f"{where}: shape={shape} is not supported (expected [0, 0, -1] merging "
                          f"(directions, hidden) of a Y whose last axes are those)")


def _layer_dims(g: _Graph, node, attrs: dict) -> dict:
    """W, R, B of a node as arrays, checked against each other and hidden_size."""
    where = _where(node)
    W, R, B = g.const(node, 1, "W"), g.const(node, 2, "R"), g.const(node, 3, "B")
    if W is None or R is None:
        raise OnnxImportError(f"{where}: inputs W and R are required")
    G = N_GATES[node.op_type]
    D = attrs["D"]
    if W.ndim != 3 or W.shape[0] != D or W.shape[1] % G:
        raise OnnxImportError(f"{where}: W has shape {W.shape}, expected ({D}, {G}*hidden_size, input_size)")
    H = W.shape[1] // G
    if attrs["hidden_size"] not in (None, H):
        raise OnnxImportError(f"{where}: attribute hidden_size={attrs['hidden_size']} but W has {G}*{H} rows")
    if R.shape != (D, G * H, H):
        raise OnnxImportError(f"{where}: R has shape {R.shape}, expected {(D, G * H, H)}")
    if B is not None and B.shape != (D, 2 * G * H):
        raise OnnxImportError(f"{where}: B has shape {B.shape}, expected {(D, 2 * G * H)}")
    if W.dtype not in (np.float32, np.float64) or R.dtype != W.dtype or (B is not None and B.dtype != W.dtype):
        raise OnnxImportError(f"{where}: weights of dtype {W.dtype.name} (R {R.dtype.name}) are not supported "
                              f"(float32 or float64, all the same)")
    P = g.const(node, 7, "P")
    if P is not None and (P.shape != (D, 3 * H) or P.dtype != W.dtype):
        raise OnnxImportError(f"{where}: P (peepholes) has shape {P.shape} ({P.dtype.name}), expected "
                              f"{(D, 3 * H)} ({W.dtype.name})")
    for s, what in ((5, "initial_h"), (6, "initial_c")):
        if len(node.input) > s and node.input[s] in g.consts and np.any(g.consts[node.input[s]]):
            raise OnnxImportError(f"{where}: input {what} is a nonzero constant; rnnkit layers take the "
                                  f"initial state as an argument")
    return dict(W=W, R=R, B=B, H=H, I=W.shape[2], P=P)


def from_onnx(model_or_path):
    """Build the rnnkit layer (RNN, LSTM or GRU) that an ONNX graph of recurrent nodes computes.

    ``model_or_path``: an ``onnx.ModelProto`` or a path to a .onnx file.  The layer's dtype
    is the weights' (float32 or float64); ``bias=False`` when the nodes have no B.
    """
    onnx = onnx_module()
    model = _load(model_or_path)
    g = _Graph(onnx, model.graph)
    rec = []
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            raise OnnxImportError(f"operator {node.domain}.{node.op_type} ({_where(node)}) is not supported")
        if node.op_type in LAYER_BY_OP:
            if not node.input or not node.input[0]:
                raise OnnxImportError(f"{_where(node)}: input X is required")
            rec.append(node)
        elif node.op_type not in SHAPE_OPS:
            raise OnnxImportError(f"operator {node.op_type} ({_where(node)}) is not supported: from_onnx reads "
                                  f"a chain of LSTM, GRU or RNN nodes")
    if not rec:
        raise OnnxImportError("the graph has no LSTM, GRU or RNN node")
    op = rec[0].op_type
    for node in rec:
        if node.op_type != op:
            raise OnnxImportError(f"operator {node.op_type} ({_where(node)}) after {op}: an rnnkit layer has "
                                  f"one kind of cell")
    attrs = [_check_attrs(g, node) for node in rec]
    rec_at = [i for i, node in enumerate(g.nodes) if node.op_type in LAYER_BY_OP]
    rec_index = {i: (k, a["layout"]) for k, (i, a) in enumerate(zip(rec_at, attrs))}
    dims = [_layer_dims(g, node, a) for node, a in zip(rec, attrs)]
    first = dict(D=attrs[0]["D"], nonlinearity=attrs[0]["nonlinearity"], H=dims[0]["H"],
                 linear_before_reset=attrs[0]["lbr"], bias=dims[0]["B"] is not None, dtype=dims[0]["W"].dtype,
                 peephole=dims[0]["P"] is not None)
    seq_lens = {node.input[4] if len(node.input) > 4 else "" for node in rec}
    batch_first = False
    for k, (node, a, dm) in enumerate(zip(rec, attrs, dims)):
        where = f"{_where(node)} (layer {k})"
        here = dict(D=a["D"], nonlinearity=a["nonlinearity"], H=dm["H"], linear_before_reset=a["lbr"],
                    bias=dm["B"] is not None, dtype=dm["W"].dtype, peephole=dm["P"] is not None)
        for key, v in here.items():
            if v != first[key]:
                raise OnnxImportError(f"{where}: {key} {v} differs from layer 0's {first[key]}")
        origin, labels = _trace_x(g, node.input[0], rec_index)
        want_tb = ("B", "T") if a["layout"] else ("T", "B")
        if k == 0:
            if origin != "input" or labels[2] != "I" or set(labels[:2]) != {"P", "Q"}:
                raise OnnxImportError(f"{where}: X must be the graph input (3-d), directly or transposed (1, 0, 2)")
            batch_first = (labels[0] == "P") == bool(a["layout"])
        else:
            D = first["D"]
            if origin != k - 1 or labels not in (want_tb + ("DH",),) + ((want_tb + ("H",),) if D == 1 else ()):
                raise OnnxImportError(f"{where}: X must be layer {k - 1}'s Y reshaped to (T, B, D*H); got axes "
                                      f"{labels} from {origin!r}")
            if dm["I"] != D * first["H"]:
                raise OnnxImportError(f"{where}: input size {dm['I']} != {D}*{first['H']}")
    if len(seq_lens) > 1:
        raise OnnxImportError(f"sequence_lens: the nodes take different tensors {sorted(seq_lens, key=repr)}")
    cls, perm = LAYER_BY_OP[op]
    kwargs = dict(num_layers=len(rec), bidirectional=first["D"] == 2, dtype=first["dtype"],
                  batch_first=batch_first, bias=first["bias"], seed=0)
    if cls is RNN:
        kwargs["nonlinearity"] = first["nonlinearity"]
    if first["peephole"]:
        kwargs["peephole"] = True
    if first["linear_before_reset"] == 0:
        kwargs["linear_before_reset"] = False
    layer = cls(dims[0]["I"], first["H"], **kwargs)
    inverse = np.argsort(perm)  # PyTorch block k is ONNX block inverse[k]
    params, H = {}, first["H"]
    for k, dm in enumerate(dims):
        for d in range(first["D"]):
            s = f"_l{k}" + ("_reverse" if d else "")
            params["weight_ih" + s] = permute_gates(dm["W"][d], inverse, H)
            params["weight_hh" + s] = permute_gates(dm["R"][d], inverse, H)
            if first["bias"]:
                b_ih, b_hh = np.split(dm["B"][d], 2)
                params["bias_ih" + s] = permute_gates(b_ih, inverse, H)
                params["bias_hh" + s] = permute_gates(b_hh, inverse, H)
            if first["peephole"]:
                params["weight_p" + s] = dm["P"][d]
    layer.load_params(params)
    return layer
