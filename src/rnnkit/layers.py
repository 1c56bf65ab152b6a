"""Recurrent layers: stacking, directions, variable lengths, state handling.

One class, :class:`Recurrent`, composes any cell into a multi-layer,
optionally bidirectional layer with PyTorch's contract; ``RNN``, ``LSTM``
and ``GRU`` only choose the cell.  Parameters use PyTorch's names and
layouts (``weight_ih_l{k}[_reverse]`` of shape (G*H, I), gate blocks in
PyTorch order), so weights move to and from ``torch.nn`` without transposes.
"""
from __future__ import annotations

import numpy as np

from ._checks import check_array, check_lengths
from .cells import GRUCell, LSTMCell, LSTMState, RNNCell
from . import kernels
from .module import Module
from .scan import step_cache, reuse_empty, scan_backward, scan_forward, scan_step

_DTYPES = (np.float32, np.float64)


def as_rng(seed) -> np.random.Generator:
    """``seed`` may be None, an int or a Generator (used as is)."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


class Recurrent(Module):
    """Multi-layer, optionally bidirectional recurrent layer over any cell.

    forward(x, state=None, lengths=None) -> (out, state)
        x:      (T, B, input_size), or (B, T, input_size) with batch_first
        out:    (T, B, D*hidden_size), D = 2 if bidirectional; 0 past each length
        state:  h (num_layers*D, B, H), or LSTMState(h, c) for the LSTM;
                index l*D + d is layer l, direction d (PyTorch's ordering)
    backward(d_out, d_state=None) -> (d_x, d_state0)
        BPTT; adds every parameter gradient into ``grads``.

    Initialisation ``init``:
        "pytorch"     all weights and biases U(-1/sqrt(H), 1/sqrt(H)) (torch's default)
        "orthogonal"  W_hh orthogonal per gate block, W_ih Glorot-uniform per
                      gate block, biases 0 and forget-gate bias 1 (LSTM f; GRU z)
    ``forget_bias`` (LSTM, GRU) overrides the forget-gate bias after either init:
    b_ih[f] = forget_bias, b_hh[f] = 0.
    """

    cell_class: type = None

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dtype=np.float32,
        seed=None,
        batch_first: bool = False,
        bias: bool = True,
        init: str = "pytorch",
        forget_bias: float | None = None,
        **cell_kwargs,
    ):
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        if np.dtype(dtype) not in [np.dtype(d) for d in _DTYPES]:
            raise TypeError(f"dtype: expected float32 or float64, got {np.dtype(dtype).name}")
        if init not in ("pytorch", "orthogonal"):
            raise ValueError(f"init: expected 'pytorch' or 'orthogonal', got {init!r}")
        if forget_bias is not None and not np.isfinite(forget_bias):
            raise ValueError(f"forget_bias: expected a finite number or None, got {forget_bias!r}")
        self.cell = self.cell_class(**cell_kwargs)
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.bidirectional = bool(bidirectional)
        self.num_directions = 2 if bidirectional else 1
        self.dtype = np.dtype(dtype)
        self.batch_first = bool(batch_first)
        self.bias = bool(bias)
        self.init = init
        self.forget_bias = forget_bias
        self._params, self._grads = {}, {}
        self._init_params(as_rng(seed))
        self._weight_names = [  # per (layer, direction), index l*D + d: the keys, formatted once
            tuple(n + self._suffix(layer, d) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            for layer in range(self.num_layers) for d in range(self.num_directions)
        ]
        self._step_weights = [  # per layer, forward direction: (W_ih.T, W_hh.T, b_ih, b_hh) views for step()
            (W_ih.T, W_hh.T, b_ih, b_hh) for W_ih, W_hh, b_ih, b_hh in
            (self._weights(layer, 0) for layer in range(self.num_layers))
        ]  # views of the parameter arrays, which are only ever updated in place
        self._tape = None
        self._workspace = [{} for _ in self._weight_names]  # per (layer, direction): scan buffers kept between calls

    # ------------------------------------------------------------------ parameters
    def _suffix(self, layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def _weights(self, layer: int, direction: int):
        """(W_ih, W_hh, b_ih, b_hh) of one layer and direction (biases None without ``bias``)."""
        w_ih, w_hh, b_ih, b_hh = self._weight_names[layer * self.num_directions + direction]
        p = self._params
        return p[w_ih], p[w_hh], p.get(b_ih), p.get(b_hh)

    def _init_params(self, rng: np.random.Generator) -> None:
        H, G, D = self.hidden_size, self.cell.n_gates, self.num_directions
        forget = self.cell.forget_gate  # gate block index, or None
        if self.forget_bias is not None and forget is None:
            raise ValueError(f"forget_bias: {type(self).__name__} has no forget gate")
        for layer in range(self.num_layers):
            I = self.input_size if layer == 0 else H * D
            for d in range(D):
                s = self._suffix(layer, d)
                if self.init == "pytorch":
                    k = 1.0 / np.sqrt(H)
                    W_ih = rng.uniform(-k, k, (G * H, I))
                    W_hh = rng.uniform(-k, k, (G * H, H))
                    b_ih = rng.uniform(-k, k, G * H)
                    b_hh = rng.uniform(-k, k, G * H)
                else:
                    lim = np.sqrt(6.0 / (I + H))
                    W_ih = rng.uniform(-lim, lim, (G * H, I))
                    W_hh = np.concatenate([_orthogonal(rng, H) for _ in range(G)])
                    b_ih, b_hh = np.zeros(G * H), np.zeros(G * H)
                    if forget is not None:
                        b_ih[forget * H : (forget + 1) * H] = 1.0
                if self.forget_bias is not None:
                    b_ih[forget * H : (forget + 1) * H] = self.forget_bias
                    b_hh[forget * H : (forget + 1) * H] = 0.0
                named = {"weight_ih": W_ih, "weight_hh": W_hh}
                if self.bias:
                    named.update(bias_ih=b_ih, bias_hh=b_hh)
                for n, v in named.items():
                    self._params[n + s] = np.ascontiguousarray(v, dtype=self.dtype)
                    self._grads[n + s] = np.zeros_like(self._params[n + s])

    # ------------------------------------------------------------------ state format
    def _is_lstm(self) -> bool:
        return self.cell.State is LSTMState

    def _state_fields(self, state, B: int, name: str = "state") -> tuple:
        """Public state -> validated (num_layers*D, B, H) array per state field (zeros for None)."""
        LD, H = self.num_layers * self.num_directions, self.hidden_size
        if state is None:
            return (np.zeros((LD, B, H), dtype=self.dtype),) * len(self.cell.State._fields)
        if self._is_lstm():
            if not isinstance(state, tuple) or len(state) != 2:
                raise TypeError(f"{name}: LSTM state must be a tuple (h, c), got {type(state).__name__}")
            check_array(f"{name}.h", state[0], (LD, B, H), self.dtype)
            check_array(f"{name}.c", state[1], (LD, B, H), self.dtype)
            return tuple(state)
        return (check_array(name, state, (LD, B, H), self.dtype),)

    def _split_state(self, state, B: int, name: str = "state") -> list:
        """Public state -> list over (layer, direction) of the cell's state tuples."""
        parts = self._state_fields(state, B, name)
        return [self.cell.State(*(a[k] for a in parts)) for k in range(len(parts[0]))]

    def _join_state(self, states: list):
        stacked = []  # (L*D, B, H) per state field; np.stack's overhead matters for step()
        for f in range(len(states[0])):
            a = np.empty((len(states),) + states[0][f].shape, dtype=states[0][f].dtype)
            for k, s in enumerate(states):
                a[k] = s[f]
            stacked.append(a)
        return self._public_state(stacked)

    def _public_state(self, fields):
        """(L*D, B, H) array per state field -> the public state: h, or LSTMState(h, c)."""
        return LSTMState(*fields) if self._is_lstm() else fields[0]

    # ------------------------------------------------------------------ forward / backward
    def forward(self, x, state=None, lengths=None):
        """Run the layer over a batch of sequences; see the class docstring for shapes."""
        check_array("x", x, (None, None, self.input_size), self.dtype)
        if self.batch_first:
            x = x.transpose(1, 0, 2)
        T, B, _ = x.shape
        if T < 1 or B < 1:
            raise ValueError(f"x: needs at least one time step and one batch row, got shape {x.shape}")
        mask = None
        if lengths is not None:
            lengths = check_lengths(lengths, B, T)
            if lengths.min() < T:
                mask = (np.arange(T)[:, None] < lengths[None, :])[:, :, None]
        states0 = self._split_state(state, B)
        D, finals, tapes = self.num_directions, [], []
        layer_in = np.ascontiguousarray(x)
        for layer in range(self.num_layers):
            outs = []
            for d in range(D):
                work = self._workspace[layer * D + d]  # this layer's last tape is dropped: reuse its buffers
                W_ih, W_hh, b_ih, b_hh = self._weights(layer, d)
                xw, b_hh = self._project(layer_in, W_ih, b_ih, b_hh, work)  # (T, B, G*H): all steps in one GEMM
                out, final, tape = scan_forward(
                    self.cell, xw, W_hh, b_hh, states0[layer * D + d], mask, reverse=d == 1, workspace=work
                )
                outs.append(out)
                finals.append(final)
                tapes.append(tape)
            layer_out = outs[0] if D == 1 else np.concatenate(outs, axis=-1)
            tapes.append(layer_in)
            layer_in = layer_out
        self._tape = (tapes, T, B)
        if D == 1 and mask is None:  # out is the tape's state buffer: hand the caller a copy
            layer_in = layer_in.copy()
        out = layer_in.transpose(1, 0, 2) if self.batch_first else layer_in
        return out, self._join_state(finals)

    def _project(self, layer_in, W_ih, b_ih, b_hh, workspace=None):
        """xw = layer_in @ W_ih.T + b_ih for all (t, b) rows in one GEMM: (T, B, I) -> (T, B, G*H).

        Returns (xw, the b_hh left for the loop: see :meth:`_add_input_biases`).  With a
        ``workspace`` (see :func:`scan.reuse_empty`) xw is written into a buffer kept there.
        """
        T, B, I = layer_in.shape
        out = reuse_empty(workspace, "xw", (T * B, W_ih.shape[0]), self.dtype)
        xw = np.dot(layer_in.reshape(T * B, I), W_ih.T, out=out)
        return xw.reshape(T, B, -1), self._add_input_biases(xw, b_ih, b_hh)

    def _add_input_biases(self, xw, b_ih, b_hh):
        """xw += b_ih, and += b_hh too for cells with a = xw + hw (``dhw_is_dxw``: once for all
        steps instead of at every step); returns the b_hh left for the loop (None then)."""
        if b_ih is None:
            return None
        if self.cell.dhw_is_dxw:  # a = xw + hw: b_hh joins xw here, once for all steps
            kernels.add_biases(xw, b_ih, b_hh)
            return None
        kernels.add_bias(xw, b_ih)
        return b_hh

    __call__ = forward

    def backward(self, d_out, d_state=None, record_state_grads: bool = False):
        """BPTT for the last forward.  Returns (d_x, d_state0); gradients are added to ``grads``.

        With ``record_state_grads=True``, ``self.state_grads`` becomes a list over
        (layer, direction) (index l*D + d) of dicts {"h": (T, B, H), "c": ...}
        holding, at every step (0 at padded steps), the total dL/dh_t and, for
        the LSTM, the part of dL/dc_t carried in from step t+1 (add
        dL/dh_t * o_t * (1 - tanh(c_t)^2) for the total; rnnkit.diagnostics.gradflow
        does), taken from this BPTT pass; time-major regardless of batch_first.
        """
        if self._tape is None:
            raise RuntimeError(
                "backward: no forward pass to differentiate (backward called before forward, "
                "or a second time for the same forward)"
            )
        tapes, T, B = self._tape
        H, D = self.hidden_size, self.num_directions
        shape = (B, T, D * H) if self.batch_first else (T, B, D * H)
        check_array("d_out", d_out, shape, self.dtype)
        if self.batch_first:
            d_out = d_out.transpose(1, 0, 2)
        if d_state is None:
            d_finals = self._split_state(None, B, "d_state")
        elif self._is_lstm():
            if not isinstance(d_state, tuple) or len(d_state) != 2:
                raise TypeError(f"d_state: LSTM d_state must be a tuple (dh, dc), got {type(d_state).__name__}")
            zeros = np.zeros((self.num_layers * D, B, H), dtype=self.dtype)
            d_finals = self._split_state(tuple(zeros if a is None else a for a in d_state), B, "d_state")
        else:
            d_finals = self._split_state(d_state, B, "d_state")
        self._tape = None
        d_states0 = [None] * (self.num_layers * D)
        records = [{} if record_state_grads else None for _ in d_states0]
        d_layer_out = d_out
        for layer in range(self.num_layers - 1, -1, -1):
            layer_in = tapes[layer * (D + 1) + D]
            x2 = layer_in.reshape(T * B, -1)
            d_layer_in = None
            for d in range(D):
                n_ih, n_hh, n_bih, n_bhh = self._weight_names[layer * D + d]
                W_ih, W_hh, b_ih, _ = self._weights(layer, d)
                tape = tapes[layer * (D + 1) + d]
                d_dir = d_layer_out if D == 1 else d_layer_out[..., d * H : (d + 1) * H]
                d_xw, dW_hh, db_hh, d_state0 = scan_backward(
                    self.cell, tape, d_dir, d_finals[layer * D + d], W_hh, records[layer * D + d],
                    self._workspace[layer * D + d],
                )
                # xw = layer_in @ W_ih.T + b_ih for all steps: one GEMM each for dW_ih and d_layer_in
                d_xw2 = d_xw.reshape(T * B, -1)
                self._grads[n_ih] += (x2.T @ d_xw2).T  # dW_ih = d_xw^T x, oriented as dW_hh
                self._grads[n_hh] += dW_hh
                if b_ih is not None:
                    self._grads[n_bih] += db_hh if self.cell.dhw_is_dxw else d_xw2.sum(axis=0)
                    self._grads[n_bhh] += db_hh
                d_in = np.dot(d_xw2, W_ih).reshape(layer_in.shape)
                d_layer_in = d_in if d_layer_in is None else d_layer_in + d_in
                d_states0[layer * D + d] = d_state0
            d_layer_out = d_layer_in
        if record_state_grads:
            self.state_grads = records
        d_x = d_layer_out.transpose(1, 0, 2) if self.batch_first else d_layer_out
        return d_x, self._join_state(d_states0)

    def gate_activations(self) -> list:
        """Activated gates of the last forward (before backward consumes it).

        Returns a list over (layer, direction) of arrays (T, B, G*H), blocks in the
        cell's ``gate_names`` order (LSTM i, f, g, o; GRU r, z, n; RNN: h).
        Time-major; rows past a sequence's length hold the values computed there
        (ignore them with the lengths).
        """
        if self._tape is None:
            raise RuntimeError("gate_activations: no forward pass kept (call forward first, before backward)")
        tapes, T, B = self._tape
        D = self.num_directions
        return [
            tapes[layer * (D + 1) + d].gates(self.cell).copy()
            for layer in range(self.num_layers) for d in range(D)
        ]

    def saved_for_backward(self) -> list:
        """Every array the last forward keeps for its backward (its tape, flattened; views of one
        buffer may appear more than once).  Empty before a forward and after backward or release.
        For memory accounting (rnnkit.bench.memory.tape_bytes)."""
        found, stack = [], [self._tape]
        while stack:
            o = stack.pop()
            if isinstance(o, np.ndarray):
                found.append(o)
            elif isinstance(o, (tuple, list)):
                stack.extend(o)
            elif isinstance(o, dict):
                stack.extend(o.values())
        return found

    def release(self) -> None:
        """Free what the layer keeps between calls: the last forward's tape (so ``backward``
        needs a new ``forward``) and the per-layer buffers reused by the time loops.

        For inference-only use, after a forward whose outputs you have copied or no longer
        need: the tape and buffers are O(T * B * G * H) per layer.  The next call allocates
        them again.
        """
        self._tape = None
        self._workspace = [{} for _ in self._weight_names]

    def step(self, x_t, state=None):
        """One time step of inference (streaming).  x_t: (B, input_size) -> (y_t (B, H), state).

        Runs the loop's own :func:`scan_step` once per layer (so streaming and ``forward``
        compute the same numbers), writing each layer's new state straight into the
        returned (num_layers, B, H) arrays: per call only the GEMMs, the cell's kernels
        and the checks of x_t and state.
        """
        if self.bidirectional:
            raise ValueError("step: a bidirectional layer needs the whole sequence; use forward")
        check_array("x_t", x_t, (None, self.input_size), self.dtype)
        prev = [np.ascontiguousarray(a) for a in self._state_fields(state, x_t.shape[0])]
        new = [np.empty_like(a) for a in prev]  # (L, B, H) per field: the returned state
        cell, make_state = self.cell, self.cell.State._make
        h_in = x_t
        for layer, (W_ihT, W_hhT, b_ih, b_hh) in enumerate(self._step_weights):
            xw = np.dot(h_in, W_ihT)
            b_hh = self._add_input_biases(xw, b_ih, b_hh)
            s_new = make_state([a[layer] for a in new])
            scan_step(cell, xw, np.empty_like(xw), W_hhT, b_hh, make_state([a[layer] for a in prev]), s_new,
                      step_cache(cell, xw, s_new))  # one step of the loop
            h_in = s_new.h
        return h_in.copy(), self._public_state(new)  # y: not a view of the state

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"bidirectional={self.bidirectional}, dtype={self.dtype.name})"
        )


def _orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


class RNN(Recurrent):
    """Elman RNN, h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh); ``nonlinearity='relu'`` optional."""

    cell_class = RNNCell

    def __init__(self, input_size, hidden_size, num_layers=1, bidirectional=False, dtype=np.float32,
                 seed=None, nonlinearity: str = "tanh", **kwargs):
        super().__init__(input_size, hidden_size, num_layers, bidirectional, dtype, seed,
                         nonlinearity=nonlinearity, **kwargs)

    @property
    def nonlinearity(self) -> str:
        """"tanh" or "relu" (the cell's)."""
        return self.cell.nonlinearity


class LSTM(Recurrent):
    """LSTM with forget, input and output gates and cell state (PyTorch gate order i, f, g, o)."""

    cell_class = LSTMCell


class GRU(Recurrent):
    """GRU in PyTorch's formulation (r, z, n; b_hn inside the reset product)."""

    cell_class = GRUCell


LAYERS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
"""Layer class by cell name (the names the CLI and task configs take)."""
