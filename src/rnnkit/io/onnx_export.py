"""Export to ONNX: recurrent layers as the standard ``LSTM`` / ``GRU`` / ``RNN`` operators.

``to_onnx(layer)`` writes one ONNX node per layer of the stack (opset :data:`OPSET`, which
onnxruntime 1.32 runs for all three operators), with ``sequence_lens`` and initial and final
states.  The graph (time-major; with ``batch_first`` the input and output are (B, T, .)):

    input    (T, B, I)          float        [Transpose (1, 0, 2) first with batch_first]
    lengths  (B,)               int32        ONNX ``sequence_lens`` (PyTorch packed semantics)
    h0 [c0]  (L*D, B, H)        float        optional (zeros: an initializer of the same name, expanded
                                             to the batch); split per layer: rows l*D .. l*D + D-1
    layer l: LSTM/GRU/RNN  X (T, B, In) -> Y (T, D, B, H), Y_h [Y_c] (D, B, H)
             Y -> Transpose (0, 2, 1, 3) -> Reshape (0, 0, -1) -> (T, B, D*H), the next X
    output   (T, B, D*H)                     [Transpose (2, 0, 1, 3) instead with batch_first]
    h_n [c_n] (L*D, B, H)                    Concat of the Y_h [Y_c] over layers

Weights are a copy with the gate blocks reordered (:data:`ONNX_OPS`): ONNX's W (D, G*H, In),
R (D, G*H, H) stack the directions; B (D, 2*G*H) is [b_ih, b_hh]; a peephole LSTM's
``weight_p`` (3H,) per direction is already ONNX's P row [p_i, p_o, p_f]; the GRU is written with
``linear_before_reset=1`` (PyTorch's: r * (h W_hn^T + b_hn)), ``GRU(linear_before_reset=False)``
with ``linear_before_reset=0`` (ONNX's default: (r * h) W_hn^T + b_hn).

The pieces models are made of (:func:`embedding_nodes`, :func:`linear_nodes`,
:func:`recurrent_nodes`) add nodes to an :class:`OnnxGraph`; :func:`compose_onnx`
chains embedding -> recurrent layer -> Linear head.  onnx is optional
(``pip install 'rnnkit[onnx]'``) and imported only when a function here runs.
"""
from __future__ import annotations

import numpy as np

from rnnkit.engine.layer_types import GRU, LSTM, RNN
from rnnkit.engine.recurrent import Recurrent
from rnnkit.nn.blocks import Embedding, Linear
from rnnkit.io.outputs import write_output

OPSET = 17
"""The default ONNX opset: LSTM/GRU/RNN-14 (with ``layout``), Split/Squeeze-13 (sizes as inputs)."""

ONNX_OPS = {LSTM: ("LSTM", (0, 3, 1, 2)), GRU: ("GRU", (1, 0, 2)), RNN: ("RNN", (0,))}
"""rnnkit layer class -> (ONNX operator, gate permutation): ONNX block k is PyTorch block perm[k].
LSTM: PyTorch (i, f, g, o) -> ONNX (i, o, f, c); GRU: (r, z, n) -> (z, r, h); RNN: one block."""


def onnx_module():
    """Import onnx, or raise an ImportError saying how to install it."""
    try:
        import onnx
    except ImportError as e:
        raise ImportError("ONNX interop needs onnx: pip install 'rnnkit[onnx]'") from e
    return onnx


def permute_gates(w: np.ndarray, perm, hidden_size: int) -> np.ndarray:
    """Reorder the gate blocks (rows of H) of ``w`` (G*H, ...) or (G*H,): block k of the result is block perm[k]."""
    blocks = w.reshape((len(perm), hidden_size) + w.shape[1:])
    return np.ascontiguousarray(blocks[list(perm)].reshape(w.shape))


class OnnxGraph:
    """Collects nodes, initializers, inputs and outputs; :meth:`model` makes the ModelProto."""

    def __init__(self, dtype=np.float32):
        self.onnx = onnx_module()
        self.dtype = np.dtype(dtype)
        self.float_type = self.onnx.helper.np_dtype_to_tensor_dtype(self.dtype)
        self.nodes, self.initializers, self.inputs, self.outputs = [], [], [], []
        self._used = set()

    def name(self, base: str) -> str:
        """A tensor name not used before: ``base``, else ``base_1``, ``base_2``, ..."""
        name, k = base, 0
        while name in self._used:
            k += 1
            name = f"{base}_{k}"
        self._used.add(name)
        return name

    def const(self, base: str, array: np.ndarray) -> str:
        """Add an initializer (a copy of ``array``); returns its name."""
        name = self.name(base)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def node(self, op: str, inputs, n_out: int = 1, base: str | None = None, **attrs) -> list[str]:
        """Add a node; ``inputs`` may hold "" for an omitted optional input.  Returns its output names."""
        base = base or op.lower()
        outputs = [self.name(f"{base}_out{k}" if n_out > 1 else base) for k in range(n_out)]
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), outputs, name=self.name(f"{base}_node"),
                                                     **attrs))
        return outputs

    def _value_info(self, name, elem_type, dims):
        return self.onnx.helper.make_tensor_value_info(name, elem_type, list(dims))

    def input(self, name: str, dims, elem_type=None) -> str:
        """A graph input; ``dims`` may hold symbolic names ("T", "B")."""
        self._used.add(name)
        self.inputs.append(self._value_info(name, elem_type or self.float_type, dims))
        return name

    def output(self, tensor: str, name: str, dims, elem_type=None) -> str:
        """Expose ``tensor`` as the graph output ``name`` (through an Identity when the names differ)."""
        if tensor != name:
            self._used.add(name)
            self.nodes.append(self.onnx.helper.make_node("Identity", [tensor], [name], name=self.name(name + "_node")))
        self.outputs.append(self._value_info(name, elem_type or self.float_type, dims))
        return name

    def model(self, graph_name: str = "rnnkit", opset: int = OPSET):
        helper = self.onnx.helper
        graph = helper.make_graph(self.nodes, graph_name, self.inputs, self.outputs, self.initializers)
        opsets = [helper.make_opsetid("", opset)]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="rnnkit",
                                  ir_version=helper.find_min_ir_version_for(opsets))
        self.onnx.checker.check_model(model)
        return model


def _check_layer(layer) -> tuple:
    op = ONNX_OPS.get(type(layer))
    if op is None:
        raise TypeError(f"to_onnx: expected rnnkit.RNN, LSTM or GRU, got {type(layer).__name__}")
    if getattr(layer, "proj_size", 0):
        raise ValueError(f"to_onnx: LSTM with proj_size={layer.proj_size}: the ONNX LSTM operator has no projection")
    return op


def recurrent_nodes(g: OnnxGraph, layer: Recurrent, x: str, lengths: str = "", state=None) -> tuple:
    """Add ``layer`` to ``g``: one ONNX node per layer of the stack.

    x: tensor (T, B, I), or (B, T, I) with ``layer.batch_first``; lengths: int32 (B,) or "";
    state: None, or the name of h0 (L*D, B, H), or (h0, c0) names for the LSTM.
    Returns (out, finals): out (T, B, D*H) (or (B, T, D*H)), finals the names of h_n [, c_n].
    """
    op, perm = _check_layer(layer)
    L, D, H = layer.num_layers, layer.num_directions, layer.hidden_size
    n_state = 2 if op == "LSTM" else 1
    states = [()] * L  # per layer: the initial state names (h, c) or ()
    if state is not None:
        names = (state,) if isinstance(state, str) else tuple(state)
        if len(names) != n_state:
            raise ValueError(f"state: {op} takes {n_state} state tensor name(s), got {len(names)}")
        if L == 1:
            states = [names]
        else:
            sizes = g.const("split_sizes", np.full(L, D, dtype=np.int64))
            per_field = [g.node("Split", [s, sizes], n_out=L, base=f"{s}_split", axis=0) for s in names]
            states = [tuple(f[layer_k] for f in per_field) for layer_k in range(L)]
    attrs = dict(hidden_size=H, direction="bidirectional" if D == 2 else "forward")
    if op == "GRU":
        attrs["linear_before_reset"] = int(layer.linear_before_reset)
    if op == "RNN":
        attrs["activations"] = [layer.nonlinearity.capitalize()] * D
    if layer.batch_first:
        x = g.node("Transpose", [x], base="input_time_major", perm=[1, 0, 2])[0]
    params = layer.params
    finals = [[] for _ in range(n_state)]
    for k in range(L):
        stack = {n: [] for n in ("W", "R", "B", "P")}
        for d in range(D):
            s = f"_l{k}" + ("_reverse" if d else "")
            stack["W"].append(permute_gates(params["weight_ih" + s], perm, H))
            stack["R"].append(permute_gates(params["weight_hh" + s], perm, H))
            if layer.bias:
                stack["B"].append(np.concatenate([permute_gates(params[b + s], perm, H)
                                                  for b in ("bias_ih", "bias_hh")]))
            if "weight_p" + s in params:  # peepholes, laid out as ONNX's P
                stack["P"].append(params["weight_p" + s])
        W, R = g.const(f"W_l{k}", np.stack(stack["W"])), g.const(f"R_l{k}", np.stack(stack["R"]))
        B = g.const(f"B_l{k}", np.stack(stack["B"])) if layer.bias else ""
        h0 = states[k] or ("",) * n_state
        P = [g.const(f"P_l{k}", np.stack(stack["P"]))] if stack["P"] else []
        Y, *Yfinal = g.node(op, [x, W, R, B, lengths, *h0, *P], n_out=1 + n_state, base=f"{op.lower()}_l{k}",
                            **attrs)
        for f, name in zip(finals, Yfinal):
            f.append(name)
        last = k == L - 1
        to_batch_first = last and layer.batch_first
        t = g.node("Transpose", [Y], base=f"y_l{k}_t", perm=[2, 0, 1, 3] if to_batch_first else [0, 2, 1, 3])[0]
        x = g.node("Reshape", [t, g.const("merge_dirs", np.array([0, 0, -1], dtype=np.int64))], base=f"y_l{k}")[0]
    final_names = tuple(f[0] if L == 1 else g.node("Concat", f, base=f"final{n}", axis=0)[0]
                        for n, f in enumerate(finals))
    return x, final_names


def embedding_nodes(g: OnnxGraph, emb: Embedding, ids: str) -> str:
    """Gather(weight, ids): ids int64 (...) -> (..., dim)."""
    if not isinstance(emb, Embedding):
        raise TypeError(f"embedding: expected rnnkit.Embedding, got {type(emb).__name__}")
    return g.node("Gather", [g.const("embedding_weight", emb.params["weight"]), ids], base="embedded", axis=0)[0]


def linear_nodes(g: OnnxGraph, lin: Linear, x: str, base: str = "linear") -> str:
    """y = x @ W.T + b at every leading position: MatMul (with W.T stored) + Add.  (..., in) -> (..., out)."""
    if not isinstance(lin, Linear):
        raise TypeError(f"head: expected rnnkit.Linear, got {type(lin).__name__}")
    p = lin.params
    y = g.node("MatMul", [x, g.const(f"{base}_weight_t", p["weight"].T)], base=f"{base}_matmul")[0]
    if "bias" in p:
        y = g.node("Add", [y, g.const(f"{base}_bias", p["bias"])], base=base)[0]
    return y


READOUTS = ("every", "last", "mean", "max")
"""compose_onnx's read-outs: the head at every step, or on one vector per sequence (pooled)."""


def pool_nodes(g: OnnxGraph, layer: Recurrent, y: str, h_n: str, lengths: str, kind: str, opset: int = OPSET) -> str:
    """One vector (B, D*H) per sequence from the outputs ``y`` (T, B, D*H) ((B, T, D*H) with
    ``batch_first``) and final ``h_n`` (L*D, B, H), as rnnkit.models.classifier pools:

        last   [h_n fwd; h_n bwd] of the top layer (the state at each row's last valid step)
        mean   sum_{t < len} y_t / len          max   max_{t < len} y_t (elementwise)

    ``mean`` and ``max`` mask the steps past each row's ``lengths`` (int32 (B,), required)."""
    L, D, i64 = layer.num_layers, layer.num_directions, np.int64
    if kind == "last":
        top = g.node("Slice", [h_n, g.const("top_start", np.array([L * D - D], i64)),
                               g.const("top_end", np.array([L * D], i64)), g.const("top_axis", np.array([0], i64))],
                     base="h_top")[0]  # (D, B, H)
        t = g.node("Transpose", [top], base="h_top_t", perm=[1, 0, 2])[0]
        return g.node("Reshape", [t, g.const("pool_shape", np.array([0, -1], i64))], base="pooled")[0]
    if kind not in ("mean", "max"):
        raise ValueError(f"pooling: expected one of last, mean, max, got {kind!r}")
    if not lengths:
        raise ValueError(f"readout={kind!r}: needs the lengths input (lengths=True)")
    tax = 1 if layer.batch_first else 0  # the time axis of y
    T = g.node("Gather", [g.node("Shape", [y], base="y_shape")[0], g.const("time_axis", np.array(tax, i64))],
               base="T", axis=0)[0]
    steps = g.node("Range", [g.const("zero", np.array(0, i64)), T, g.const("one", np.array(1, i64))], base="steps")[0]
    lens = g.node("Cast", [lengths], base="lengths_i64", to=g.onnx.TensorProto.INT64)[0]
    step_axis, row_axis = (1, 0) if tax == 0 else (0, 1)  # valid[t, b] = t < lengths[b], in y's layout
    mask = g.node("Less", [g.node("Unsqueeze", [steps, g.const("step_axis", np.array([step_axis], i64))],
                                  base="steps_2d")[0],
                           g.node("Unsqueeze", [lens, g.const("row_axis", np.array([row_axis], i64))],
                                  base="lengths_2d")[0]], base="valid")[0]
    mask = g.node("Unsqueeze", [mask, g.const("axis2", np.array([2], i64))], base="valid3")[0]  # (T, B, 1)
    if kind == "mean":
        masked = g.node("Mul", [y, g.node("Cast", [mask], base="valid_f", to=g.float_type)[0]], base="y_valid")[0]
        total = g.node("ReduceSum", [masked, g.const("time", np.array([tax], i64))], base="y_sum", keepdims=0)[0]
        n = g.node("Cast", [g.node("Unsqueeze", [lengths, g.const("axis_b", np.array([1], i64))], base="n")[0]],
                   base="n_f", to=g.float_type)[0]
        return g.node("Div", [total, n], base="pooled")[0]
    low = g.const("minus_inf", np.array(-np.inf, dtype=g.dtype))
    masked = g.node("Where", [mask, y, low], base="y_valid")[0]
    if opset >= 18:  # ReduceMax-18 takes the axes as an input
        return g.node("ReduceMax", [masked, g.const("time", np.array([tax], i64))], base="pooled", keepdims=0)[0]
    return g.node("ReduceMax", [masked], base="pooled", axes=[tax], keepdims=0)[0]


def optional_state(g: OnnxGraph, name: str, dims: tuple, x: str, batch_axis: int) -> str:
    """An initial state input ``name`` (L*D, B, H) that may be left out: an initializer of the same
    name holds zeros (L*D, 1, H) as its default, expanded to the batch of the graph input ``x``
    (Shape -> Slice -> Concat -> Expand); a fed (L*D, B, H) state passes through unchanged."""
    i64 = np.int64
    g._used.add(name)
    g.inputs.append(g._value_info(name, g.float_type, (dims[0], None, dims[1])))
    g.initializers.append(g.onnx.numpy_helper.from_array(np.zeros((dims[0], 1, dims[1]), g.dtype), name))
    shape = g.node("Shape", [x], base=f"{name}_input_shape")[0]
    batch = g.node("Slice", [shape, g.const(f"{name}_b0", np.array([batch_axis], i64)),
                             g.const(f"{name}_b1", np.array([batch_axis + 1], i64))], base=f"{name}_batch")[0]
    target = g.node("Concat", [g.const(f"{name}_rows", np.array([dims[0]], i64)), batch,
                               g.const(f"{name}_width", np.array([dims[1]], i64))], base=f"{name}_shape", axis=0)[0]
    return g.node("Expand", [name, target], base=f"{name}_expanded")[0]


def compose_onnx(recurrent: Recurrent, *, embedding: Embedding | None = None, head: Linear | None = None,
                 readout: str = "every", lengths: bool = True, initial_state: bool = True, opset: int = OPSET):
    """A model: [embedding ->] recurrent layer [-> Linear head] as one ONNX graph.

    Inputs:  ``ids`` int64 (T, B) with an embedding, else ``input`` (T, B, I) (batch-major with
             ``batch_first``); ``lengths`` int32 (B,) if ``lengths``; ``h0`` [``c0``] (L*D, B, H)
             if ``initial_state``, optional: zeros when not fed (:func:`optional_state`).
    Outputs: ``output``: with ``readout="every"`` the head at every step (T, B, K) (no head:
             the layer's (T, B, D*H)); with ``readout`` "last", "mean" or "max" the head on one
             vector per sequence (:func:`pool_nodes`), (B, K) (no head: (B, D*H)); "last" of a
             unidirectional layer is its h_n[-1]; then ``h_n`` [``c_n``] (L*D, B, H).
    """
    op, _ = _check_layer(recurrent)
    if readout not in READOUTS:
        raise ValueError(f"readout: expected one of {', '.join(READOUTS)}, got {readout!r}")
    g = OnnxGraph(recurrent.dtype)
    L, D, H = recurrent.num_layers, recurrent.num_directions, recurrent.hidden_size
    seq = ("B", "T") if recurrent.batch_first else ("T", "B")
    if embedding is not None:
        if embedding.embedding_dim != recurrent.input_size:
            raise ValueError(f"embedding: dim {embedding.embedding_dim} != the recurrent layer's input_size "
                             f"{recurrent.input_size}")
        x_in = g.input("ids", seq, elem_type=g.onnx.TensorProto.INT64)
        x = embedding_nodes(g, embedding, x_in)
    else:
        x = x_in = g.input("input", seq + (recurrent.input_size,))
    seq_lens = g.input("lengths", ("B",), elem_type=g.onnx.TensorProto.INT32) if lengths else ""
    state_names = ("h0", "c0") if op == "LSTM" else ("h0",)
    state = tuple(optional_state(g, n, (L * D, H), x_in, seq.index("B")) for n in state_names) \
        if initial_state else None
    y, finals = recurrent_nodes(g, recurrent, x, seq_lens, state)
    if readout != "every":
        y = pool_nodes(g, recurrent, y, finals[0], seq_lens, readout, opset)
    if head is not None:
        if head.in_features != D * H:
            raise ValueError(f"head: in_features {head.in_features} != the recurrent output size {D * H}")
        y = linear_nodes(g, head, y, base="head")
    width = head.out_features if head is not None else D * H
    g.output(y, "output", seq + (width,) if readout == "every" else ("B", width))
    for n, f in zip(("h_n", "c_n"), finals):
        g.output(f, n, (L * D, "B", H))
    return g.model(graph_name=f"rnnkit_{op.lower()}", opset=opset)


def to_onnx(layer: Recurrent, *, lengths: bool = True, initial_state: bool = True, opset: int = OPSET):
    """An ``onnx.ModelProto`` computing ``layer.forward(input, state, lengths)``.

    Inputs ``input`` (T, B, I) ((B, T, I) with ``batch_first``), ``lengths`` int32 (B,) if
    ``lengths``, ``h0`` [``c0``] (L*D, B, H) if ``initial_state``; outputs ``output``
    (T, B, D*H), ``h_n`` [``c_n``] (L*D, B, H).  See the module docstring for the graph.
    """
    return compose_onnx(layer, lengths=lengths, initial_state=initial_state, opset=opset)


def save_onnx(model, path) -> None:
    """Write an ONNX model to ``path`` atomically (temp file + fsync + rename), never over a file of
    another kind (:func:`rnnkit.io.outputs.write_output`)."""
    write_output(path, model.SerializeToString(), "onnx", what="--onnx")
