"""Recurrent layers: stacking, directions, variable lengths, streaming.

One class, :class:`Recurrent`, composes any cell into a multi-layer,
optionally bidirectional layer with PyTorch's contract; ``RNN``, ``LSTM``,
``GRU`` and ``LayerNormLSTM`` (:mod:`rnnkit.engine.layer_types`) only choose the
cell.  Parameters use PyTorch's names and layouts (``weight_ih_l{k}[_reverse]``
of shape (G*H, I), gate blocks in PyTorch order), so weights move to and from
``torch.nn`` without transposes.  The state format is :mod:`rnnkit.engine.state`, BPTT
:mod:`rnnkit.engine.backprop`, what forward keeps for it :mod:`rnnkit.engine.tape`.
"""
from __future__ import annotations

import os
import threading

import numpy as np

from rnnkit.engine import big_gemm, dropout as drop, in_loop, unit_shards
import rnnkit.kernels as kernels
from rnnkit.checks.arrays import check_array, check_lengths
from rnnkit.engine.backprop import Backprop
from rnnkit.engine.init import init_weights
from rnnkit.module import Module
from rnnkit.engine.buffers import absent, reuse_empty
from rnnkit.engine.gemm_rows import packed_weights
from rnnkit.engine.scan import InputProjection, cell_args, compiled_loops, scan_forward, split_hh
from rnnkit.engine.rows import Rows, check_rows, gather_rows, projects_on_table
from rnnkit.engine.state import StateFormat
from rnnkit.engine.tape import LayerTape, Tape, TapeReader
from rnnkit.engine import plans as planning
from rnnkit.engine.plans import candidates, check_strategy, forced_strategy
from rnnkit.engine.threads import LayerBusyError, exclusively, loop_cores, run_jobs  # noqa: F401  (re-exported)

_DTYPES = (np.float32, np.float64)


def as_rng(seed) -> np.random.Generator:
    """``seed`` may be None, an int or a Generator (used as is)."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


class Recurrent(StateFormat, Backprop, TapeReader, Module):
    """Multi-layer, optionally bidirectional recurrent layer over any cell.

    forward(x, state=None, lengths=None, rng=None, need_backward=True) -> (out, state)
        x:      (T, B, input_size), or (B, T, input_size) with batch_first; or
                :class:`rnnkit.engine.rows.Rows` (table (V, input_size), ids (T, B)): x = table[ids],
                projected on the table when V < T*B (an embedding's lookup)
        out:    (T, B, D*Hh), D = 2 if bidirectional, Hh = ``h_size`` (hidden_size, or
                proj_size); 0 past each length
        state:  h (num_layers*D, B, Hh), or LSTMState(h, c) for the LSTMs (c: (L*D, B, H));
                index l*D + d is layer l, direction d (PyTorch's ordering)
        rng:    np.random.Generator the dropout masks are drawn from (training mode with a
                rate > 0 only; see :mod:`rnnkit.engine.dropout`)
        need_backward: False for inference (``torch.no_grad()``'s use): the gates, caches and cell states of
                past steps are not kept (the layer holds about one step of them, not T), and backward raises
    backward(d_out, d_state=None, need_dx=True) -> (d_x, d_state0)
        BPTT; adds every parameter gradient into ``grads``.  d_x: like x, or dL/d table
        (V, input_size) for a :class:`rnnkit.engine.rows.Rows` x; None with ``need_dx=False``.

    Initialisation ``init``:
        "pytorch"     all weights and biases U(-1/sqrt(H), 1/sqrt(H)) (torch's default)
        "orthogonal"  W_hh orthogonal per gate block, W_ih Glorot-uniform per
                      gate block, biases 0 and forget-gate bias 1 (LSTM f; GRU z)
    ``forget_bias`` (LSTM, GRU) overrides the forget-gate bias after either init:
    b_ih[f] = forget_bias, b_hh[f] = 0.

    Regularisation (:mod:`rnnkit.engine.dropout`), in training mode only (``train()``/``eval()``):
    ``dropout`` between layers (torch's), ``input_dropout`` and ``recurrent_dropout``
    (variational: one mask per sequence), ``weight_dropout`` (DropConnect on W_hh).
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
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        weight_dropout: float = 0.0,
        strategy: str | None = None,
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
        self.rates = drop.DropoutRates(dropout, input_dropout, recurrent_dropout, weight_dropout)
        self.cell = self.make_cell(int(hidden_size), **cell_kwargs)
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.h_size = self.cell.field_sizes(self.hidden_size)["h"]
        """Width of h and of each direction's output (hidden_size, or an LSTM's proj_size)."""
        self.state_widths = tuple(self.cell.field_sizes(self.hidden_size)[f] for f in self.cell.State._fields)
        """Width of each state field, in the order of ``cell.State`` (h; an LSTM's h, c)."""
        self.num_layers = int(num_layers)
        self.bidirectional = bool(bidirectional)
        self.num_directions = 2 if bidirectional else 1
        self.dtype = np.dtype(dtype)
        self.batch_first = bool(batch_first)
        self.bias = bool(bias)
        self.init = init
        self.forget_bias = forget_bias
        if forget_bias is not None and self.cell.forget_gate is None:
            raise ValueError(f"forget_bias: {type(self).__name__} has no forget gate")
        self._params = {n: np.ascontiguousarray(v, dtype=self.dtype) for n, v in init_weights(
            self.cell, self.input_size, self.hidden_size, self.num_layers, self.num_directions, init, forget_bias,
            self.bias, as_rng(seed), self._suffix).items()}
        self._weight_names = [  # per (layer, direction), index l*D + d: the keys, formatted once
            tuple(n + self._suffix(layer, d) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            for layer in range(self.num_layers) for d in range(self.num_directions)
        ]
        self._own_names = [  # per (layer, direction): the names of the cell's own parameters
            tuple(n + self._suffix(layer, d) for n in self.cell.own_params(self.input_size, self.hidden_size))
            for layer in range(self.num_layers) for d in range(self.num_directions)
        ]
        self._step_args = tuple(self._step_weights(layer) for layer in range(self.num_layers))
        self._fresh_buffers()
        self.strategy = check_strategy(strategy)
        """How the loops use the cores (:mod:`rnnkit.engine.plans`): None (default) measures the candidates
        once per shape and machine (or follows ``RNNKIT_PLAN``); a candidate's name forces it."""
        self.cores = None
        """Cores this layer's loops may use (None: the run's setting, :func:`rnnkit.engine.threads.use_cores`,
        else the machine's; see :mod:`rnnkit.engine.threads`); 1 runs everything on the calling thread."""

    def _fresh_buffers(self) -> None:
        """Own (not shared) gradients, loop buffers, tape, lock and plan memo: for a new layer, and for the
        copy :func:`rnnkit.engine.plans.time_candidates` times (which shares only the parameters)."""
        self._grads = {n: np.zeros_like(v) for n, v in self._params.items()}
        self._tape = None
        self._workspace = [{} for _ in self._weight_names]  # per (layer, direction): scan buffers kept between calls
        self._busy = threading.Lock()
        self._plans = {}  # (T, B, cores, strategy, RNNKIT_PLAN) -> ThreadPlan

    @classmethod
    def make_cell(cls, hidden_size: int, **cell_kwargs):
        """The cell of every layer and direction (``cell_class(**cell_kwargs)``; LSTM chooses a variant)."""
        return cls.cell_class(**cell_kwargs)

    @property
    def dropout(self) -> float:
        """Dropout rate between layers (torch.nn.LSTM's ``dropout``)."""
        return self.rates.dropout

    # ------------------------------------------------------------------ parameters
    def _suffix(self, layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def _weights(self, layer: int, direction: int):
        """(W_ih, W_hh, b_ih, b_hh) of one layer and direction (biases None without ``bias``)."""
        w_ih, w_hh, b_ih, b_hh = self._weight_names[layer * self.num_directions + direction]
        p = self._params
        return p[w_ih], p[w_hh], p.get(b_ih), p.get(b_hh)

    def _own(self, k: int, grads: bool = False) -> tuple:
        """The cell's own parameters (or their gradients) of (layer, direction) index k."""
        d = self._grads if grads else self._params
        return tuple(d[n] for n in self._own_names[k])

    def cell_params(self, k: int) -> tuple:
        """The cell's own parameters of (layer, direction) index k = l*D + d, in the cell's order
        (``cell.own_params``; () for the RNN, LSTM, GRU): the ``p`` its functions take."""
        return self._own(k)

    def _step_weights(self, layer: int) -> tuple:
        """(W_ih, bias of xw, second bias of xw, W_hh, bias of hw, own parameters) for the loops'
        ``step`` (absent biases: size 0), forward direction."""
        W_ih, W_hh, b_ih, b_hh = self._weights(layer, 0)
        own, none = self._own(layer * self.num_directions), absent(self.dtype, 1)
        if b_ih is not None and self.cell.dhw_is_dxw:
            return W_ih, b_ih, b_hh, W_hh, none, own
        W_hh, b_hh, cell_hh = split_hh(self.cell, W_hh, b_hh)  # the loop's rows (all but a cell_hh_blocks cell's)
        return (W_ih, none if b_ih is None else b_ih, none, W_hh, none if b_hh is None else b_hh,
                own + cell_args(cell_hh, None, 0, None))

    # ------------------------------------------------------------------ forward / backward
    def thread_plan(self, B: int, T: int = 1):
        """The :class:`rnnkit.engine.threads.ThreadPlan` a call with batch ``B`` and ``T`` steps runs under, here
        and now: the forced strategy (``strategy``, else ``RNNKIT_PLAN``), else the measured one
        (:mod:`rnnkit.engine.plans`: timed on first use per shape and machine, cached on disk)."""
        cores = loop_cores(self.cores)
        memo = (T, B, cores, self.strategy, os.environ.get("RNNKIT_PLAN"))
        chosen = self._plans.get(memo)
        if chosen is None:
            H = self.hidden_size
            options = candidates(B, H, self.cell.n_gates * H, self.num_directions, self.dtype.itemsize, cores)
            name = forced_strategy(check_strategy(self.strategy))
            chosen = self._plans[memo] = options[name or planning.default_planner().plan(self, T, B, cores, options)]
        return chosen

    def forward(self, x, state=None, lengths=None, rng=None, need_backward: bool = True):
        """Run the layer over a batch of sequences; see the class docstring for shapes."""
        return exclusively(self._busy, "forward", self._forward, x, state, lengths, rng, bool(need_backward))

    def _draw_masks(self, rng, T: int, B: int):
        """This forward's dropout masks (:mod:`rnnkit.engine.dropout`), or None (eval mode, or no rate > 0)."""
        if not (self.training and self.rates.active):
            return None
        sizes = [self.input_size] + [self.num_directions * self.h_size] * (self.num_layers - 1)
        return drop.draw_masks(self.rates, rng, T, B, sizes, self.h_size, self.cell.n_gates * self.hidden_size,
                               self.num_directions, self.dtype)

    def _forward(self, x, state, lengths, rng, need_backward=True):
        if isinstance(x, Rows):  # x = table[ids]: see rnnkit.engine.rows
            x = check_rows(x, self.input_size, self.dtype, self.batch_first)
            T, B = x.ids.shape
        else:
            check_array("x", x, (None, None, self.input_size), self.dtype)
            if self.batch_first:
                x = x.transpose(1, 0, 2)
            T, B, _ = x.shape
        if T < 1 or B < 1:
            raise ValueError(f"x: needs at least one time step and one batch row, got shape {(T, B)}")
        mask = keep = None
        if lengths is not None:
            lengths = check_lengths(lengths, B, T)
            if lengths.min() < T:
                mask = (np.arange(T)[:, None] < lengths[None, :])[:, :, None]
                keep = np.ascontiguousarray(~mask[:, :, 0])
        states0 = self._split_state(state, B)
        masks = self._draw_masks(rng, T, B)
        D, finals, layers = self.num_directions, [], []
        threads = self.thread_plan(B, T)
        layer_in = x if isinstance(x, Rows) else np.ascontiguousarray(x)
        if isinstance(x, Rows) and not (projects_on_table(x) and (masks is None or masks.input[0] is None)):
            layer_in = x.materialise()  # the GEMM on x is cheaper, or x meets an input dropout mask
        for layer in range(self.num_layers):
            tapes, jobs, used_hh = [], [], []
            hand_over = not need_backward and layer == self.num_layers - 1 and D == 1 and mask is None
            if masks is not None:
                layer_in = drop.apply(layer_in, masks.input[layer])
            for d in range(D):
                k = layer * D + d
                work = self._workspace[k]  # this layer's last tape is dropped: reuse its buffers
                W_ih, W_hh, b_ih, b_hh = self._weights(layer, d)
                if masks is not None:
                    W_hh = drop.apply(W_hh, masks.weight[k])
                    used_hh.append(W_hh)
                units, inside = unit_shards.chosen(self.cell, layer_in, W_ih, W_hh, threads.shards if D == 1 and
                                                   threads.parallel else (), need_backward, masks)
                out_key = "units.h" if units else "state.h"  # the buffer the loops write every step's h into
                if hand_over:  # the output is that buffer itself: a fresh one, handed to the caller, not kept
                    work[out_key] = np.empty((T + 1, B, self.h_size), self.dtype)
                if units:  # split over the hidden units, not the batch rows
                    b_x1, b_x2, b_hh = self._input_biases(b_ih, b_hh)
                    tape, js = unit_shards.unit_forward(self.cell, np.ascontiguousarray(layer_in), W_ih, b_x1, b_x2,
                                                        W_hh, b_hh, states0[k], keep, len(threads.shards), inside,
                                                        work)
                    tapes.append(tape)
                    jobs += js
                    continue
                inside = in_loop.chosen(self.cell, layer_in, W_ih, W_hh, threads.shards)  # or all steps at once
                xw, b_hh, proj = self._project(layer_in, W_ih, b_ih, b_hh, work, threads.blas_threads, inside,
                                               need_backward)
                tape, js = scan_forward(self.cell, xw, W_hh, b_hh, states0[k], keep, reverse=d == 1,
                                        p=self._own(k), shards=threads.shards, workspace=work,
                                        h_mask=None if masks is None else masks.recurrent[k], projection=proj,
                                        tape=need_backward)
                tapes.append(tape)
                jobs += js
            run_jobs(jobs, threads.blas_threads, threads.parallel)  # the compiled loops, side by side
            if hand_over:
                del work[out_key]
            outs = [t.h_new() if mask is None else t.h_new() * mask for t in tapes]
            finals += [self.cell.State._make(t.final()) for t in tapes]
            layers.append(LayerTape(layer_in, tuple(tapes), tuple(used_hh)))
            layer_in = outs[0] if D == 1 else np.concatenate(outs, axis=-1)
            if masks is not None and masks.output[layer] is not None:  # dropout between layers
                layer_in = layer_in * masks.output[layer]
        self._tape = None if not need_backward else Tape(tuple(layers), keep, T, B, masks,
                                                         x if isinstance(x, Rows) else None)
        if D == 1 and mask is None and need_backward:  # out is the tape's state buffer: hand the caller a copy
            layer_in = layer_in.copy()
        out = layer_in.transpose(1, 0, 2) if self.batch_first else layer_in
        return out, self._join_state(finals)

    def _project(self, layer_in, W_ih, b_ih, b_hh, workspace=None, blas=1, inside=False, every_step=True):
        """xw = layer_in @ W_ih.T + b_ih for all (t, b) rows in one GEMM: (T, B, I) -> (T, B, G*H).

        Returns (xw, the b_hh left for the loop (see :meth:`_input_biases`), None).  With a
        ``workspace`` (see :func:`scan.reuse_empty`) xw is written into a buffer kept there.
        ``layer_in`` a :class:`rnnkit.engine.rows.Rows`: the table is projected, P = table @ W_ih.T
        + biases (V, G*H), and xw[t, b] = P[ids[t, b]].  ``inside``: the loop forms xw itself
        (:mod:`rnnkit.engine.in_loop`): returns (the empty buffer, b_hh left, the loop's :class:`InputProjection`);
        without ``every_step`` (inference) that buffer holds one step (1, B, G*H), overwritten at every step.
        """
        b_x1, b_x2, b_hh = self._input_biases(b_ih, b_hh)
        if isinstance(layer_in, Rows):
            P = big_gemm.dot(layer_in.table, W_ih.T, blas=blas)
            kernels.add_present_biases(P, b_x1, b_x2)
            T, B = layer_in.ids.shape
            xw = reuse_empty(workspace, "xw", (T * B, W_ih.shape[0]), self.dtype).reshape(T, B, -1)
            gather_rows(P, layer_in.ids, xw)
            return xw, b_hh, None
        T, B, I = layer_in.shape
        rows = T * B if every_step or not inside else B  # without a tape the loop overwrites one step's xw
        out = reuse_empty(workspace, "xw", (rows, W_ih.shape[0]), self.dtype)
        if inside:
            x = np.ascontiguousarray(layer_in)
            proj = InputProjection(x, packed_weights(W_ih, False, workspace, "W_ih_packed"), b_x1, b_x2)
            return out.reshape(-1, B, out.shape[1]), b_hh, proj
        xw = big_gemm.dot(layer_in.reshape(T * B, I), W_ih.T, out=out, blas=blas)  # on all cores
        kernels.add_present_biases(xw, b_x1, b_x2)
        return xw.reshape(T, B, -1), b_hh, None

    def _input_biases(self, b_ih, b_hh):
        """(b_x1, b_x2, b_hh left for the loop): xw gets + b_ih, and + b_hh too for cells with a = xw + hw
        (``dhw_is_dxw``: once per (t, b) row instead of in the loop); absent ones size 0 (b_hh left: None)."""
        none = absent(self.dtype, 1)
        if b_ih is None:
            return none, none, None
        if self.cell.dhw_is_dxw:  # a = xw + hw: b_hh joins xw
            return b_ih, b_hh, None
        return b_ih, none, b_hh

    __call__ = forward

    def step(self, x_t, state=None):
        """One time step of inference (streaming).  x_t: (B, input_size) -> (y_t (B, H), state).

        One compiled call per layer (:func:`rnnkit.engine.scan.step_once`: both projections and the
        cell's compiled step, the same step the sequence loop calls, with the biases added in
        the same order, so streaming and ``forward`` compute the same numbers), writing each
        layer's new state straight into the returned (num_layers, B, H) arrays.
        """
        return exclusively(self._busy, "step", self._step, x_t, state)

    def _step(self, x_t, state):
        if self.bidirectional:
            raise ValueError("step: a bidirectional layer needs the whole sequence; use forward")
        check_array("x_t", x_t, (None, self.input_size), self.dtype, finite=False)  # finite: checked in the call
        B = x_t.shape[0]
        prev = tuple([np.ascontiguousarray(a) for a in self._state_fields(state, B, finite=False)])
        new = tuple([np.empty_like(a) for a in prev])  # (L, B, width) per field: the returned state
        bufs = self._workspace[0].get("step")  # (xw, hw, cache) of the last step, reused for the same B
        if bufs is None or bufs[0].shape[0] != B:
            G, width = self.cell.n_gates * self.hidden_size, self.cell.field_sizes(self.hidden_size)
            G_loop = self._step_args[0][3].shape[0]  # hw: the loop's part of W_hh (split_hh)
            bufs = self._workspace[0]["step"] = (np.empty((B, G), self.dtype), np.empty((B, G_loop), self.dtype),
                                                 tuple(np.empty((B, width[f]), self.dtype)
                                                       for f in self.cell.cache_fields))
        finite = compiled_loops(self.cell.step, self.cell.step_backward).step(np.ascontiguousarray(x_t),
                                                                              self._step_args, prev, new, *bufs)
        if not finite:  # the full checks name the first non-finite element
            check_array("x_t", x_t, (None, self.input_size), self.dtype)
            self._state_fields(state, B)
        return new[0][-1].copy(), self._public_state(new)  # y: not a view of the state

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"bidirectional={self.bidirectional}, dtype={self.dtype.name})"
        )
