"""BPTT of a recurrent layer: from dL/d out (and dL/d final state) to dL/dx, dL/d initial state and
every parameter gradient.

Per layer, top down: the compiled BPTT loops of each direction (:func:`rnnkit.engine.scan.scan_backward`,
side by side on threads, :mod:`rnnkit.engine.threads`), then, over all T steps at once, one GEMM
each for dW_ih = d_xw^T x and d_x = d_xw W_ih (xw = x W_ih^T + b_ih), the bias sums, and the
dropout masks of the forward applied to the gradients (:mod:`rnnkit.engine.dropout`).
"""
from __future__ import annotations

import numpy as np

from rnnkit.checks.arrays import check_array
from rnnkit.engine import big_gemm, dropout as drop
from rnnkit.engine.rows import Rows, scatter, table_grads
from rnnkit.engine.scan import scan_backward
from rnnkit.engine.threads import exclusively, run_jobs
from rnnkit.kernels import sum_rows


class Backprop:
    """The backward part of :class:`rnnkit.engine.recurrent.Recurrent` (which sets ``_tape``, ``_busy``,
    ``_grads``, ``_workspace``, ``_weight_names`` and the sizes, and has ``_weights``, ``_own``,
    ``thread_plan`` and the :class:`rnnkit.engine.state.StateFormat` methods)."""

    def backward(self, d_out, d_state=None, record_state_grads: bool = False, need_dx: bool = True):
        """BPTT for the last forward.  Returns (d_x, d_state0); gradients are added to ``grads``.

        d_out:   (T, B, D*Hh), or (B, T, D*Hh) with batch_first; d_state: like forward's state
        (None: zeros; for the LSTMs either of (dh, dc) may be None).
        d_x: like x; for an x given as :class:`rnnkit.engine.rows.Rows`, dL/d table (V, I) (the
        scatter-add and one small GEMM, :func:`rnnkit.engine.rows.table_grads`).  ``need_dx=False``
        (nothing upstream needs it): d_x is None and its GEMM, d_xw W_ih of the first layer, is skipped.
        With ``record_state_grads=True``, ``self.state_grads`` becomes a list over
        (layer, direction) (index l*D + d) of dicts {"h": (T, B, H), "c": ...}
        holding, at every step (0 at padded steps), the total dL/dh_t and, for
        the LSTM, the part of dL/dc_t carried in from step t+1 (add
        dL/dh_t * o_t * (1 - tanh(c_t)^2) for the total; rnnkit.diagnostics.gradflow
        does), taken from this BPTT pass; time-major regardless of batch_first.
        """
        return exclusively(self._busy, "backward", self._backward, d_out, d_state, record_state_grads, need_dx)

    def _backward(self, d_out, d_state, record_state_grads, need_dx=True):
        if self._tape is None:
            raise RuntimeError(
                "backward: no forward pass to differentiate (backward called before forward, "
                "a second time for the same forward, or after forward(..., need_backward=False))"
            )
        tape = self._tape
        T, B = tape.T, tape.B
        H, D = self.h_size, self.num_directions
        shape = (B, T, D * H) if self.batch_first else (T, B, D * H)
        check_array("d_out", d_out, shape, self.dtype)
        if self.batch_first:
            d_out = d_out.transpose(1, 0, 2)
        d_finals = self._split_d_state(d_state, B)
        self._tape = None
        d_states0 = [None] * (self.num_layers * D)
        records = [{} if record_state_grads else None for _ in d_states0]
        threads = self.thread_plan(B, T)
        d_layer_out = d_out
        masks = tape.masks
        for layer in range(self.num_layers - 1, -1, -1):
            if masks is not None and masks.output[layer] is not None:  # dropout between layers
                d_layer_out = d_layer_out * masks.output[layer]
            used_hh = tape.layers[layer].weights_hh  # W_hh after weight dropout (or ())
            jobs, finishes = [], []
            for d in range(D):
                k = layer * D + d
                d_dir = d_layer_out if D == 1 else d_layer_out[..., d * H : (d + 1) * H]
                js, finish = scan_backward(
                    self.cell, tape.layers[layer].directions[d], d_dir, d_finals[k],
                    used_hh[d] if used_hh else self._weights(layer, d)[1],
                    tape.keep, self._own(k), self._own(k, grads=True), records[k], threads.shards,
                    self._workspace[k],
                )
                jobs += js
                finishes.append(finish)
            run_jobs(jobs, threads.blas_threads, threads.parallel)  # the compiled BPTT loops, side by side
            d_layer_in = None
            for d, finish in enumerate(finishes):
                k = layer * D + d
                grad_hh = self._grads[self._weight_names[k][1]]
                dW_hh = np.zeros_like(grad_hh) if used_hh else grad_hh  # the scan adds dL/dW_hh into it
                d_xw, db_hh, d_states0[k] = finish(threads.blas_threads, dW_hh)
                if used_hh:  # dL/dW_hh through the forward's DropConnect mask on W_hh
                    grad_hh += drop.apply(dW_hh, masks.weight[k])
                d_in = self._input_grads(layer, d, tape.layers[layer].input, d_xw, db_hh, need_dx or layer > 0,
                                         threads.blas_threads)
                d_layer_in = d_in if d_layer_in is None else d_layer_in + d_in
            d_layer_out = d_layer_in if masks is None or d_layer_in is None else drop.apply(d_layer_in,
                                                                                          masks.input[layer])
        if record_state_grads:
            self.state_grads = records
        d_x = d_layer_out
        if tape.rows is not None:  # x = table[ids]: d_x is dL/d table
            if d_x is not None and not isinstance(tape.layers[0].input, Rows):  # the rows were formed
                d_x = scatter(tape.rows, d_x)
        elif self.batch_first and d_x is not None:
            d_x = d_x.transpose(1, 0, 2)
        return d_x, self._join_state(d_states0)

    def _input_grads(self, layer: int, d: int, layer_in, d_xw, db_hh, need_dx=True, blas=1):
        """Add one direction's W_ih and bias gradients into ``grads``; return its d_layer_in
        (None without ``need_dx``).

        layer_in (T, B, I): what met W_ih (or :class:`rnnkit.engine.rows.Rows`: then the gradients go
        through the table, and d_layer_in is dL/d table (V, I)); d_xw (T, B, G): dL/d xw from the loops;
        db_hh (G,): from the scan (which adds dW_hh itself).
        """
        n_ih, _, n_bih, n_bhh = self._weight_names[layer * self.num_directions + d]
        W_ih, _, b_ih, _ = self._weights(layer, d)
        if isinstance(layer_in, Rows):  # xw = P[ids], P = table W_ih^T + b: through dP (V, G)
            d_xw2, dW_ih, d_in = table_grads(layer_in, d_xw, W_ih, need_dx, blas)
            self._grads[n_ih] += dW_ih
        else:  # xw = layer_in @ W_ih.T + b_ih for all steps: one GEMM each for dW_ih and d_layer_in
            d_xw2 = d_xw.reshape(-1, d_xw.shape[-1])
            big_gemm.add_t(self._grads[n_ih], layer_in.reshape(d_xw2.shape[0], -1), d_xw2, blas)  # += d_xw^T x
            d_in = big_gemm.dot(d_xw2, W_ih, blas=blas).reshape(layer_in.shape) if need_dx else None
        if b_ih is not None:
            self._grads[n_bih] += db_hh if self.cell.dhw_is_dxw else sum_rows(d_xw2)
            self._grads[n_bhh] += db_hh
        return d_in
