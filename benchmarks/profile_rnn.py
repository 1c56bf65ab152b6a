"""Where rnnkit's LSTM fwd+bwd time goes: BLAS vs elementwise kernels vs Python overhead.

    .venv/bin/python benchmarks/profile_rnn.py [--threads N] [--vs-torch] [T B I H ...]

Times, in one process, on one thread (``layer.cores = 1``, the per-step GEMMs on one BLAS
thread: the work of one batch shard), (1) the full ``forward`` + ``backward``, (2) the same
GEMMs alone (per-step recurrent GEMMs forward and backward as the compiled loops call them, on the
operands and row blocks rnnkit.engine.gemm_rows chooses,
plus the all-steps GEMMs: input projection, dW_ih, d_x, dW_hh), (3) the same elementwise
work alone (the cell's compiled ``lstm_step`` / ``lstm_step_backward`` per step); the rest is
the loops' and layers' own work and Python overhead.  Medians of alternating repeats.

``--vs-torch`` first times PyTorch's ``nn.LSTM`` fwd+bwd on the same shapes in a worker process
(the benchmark's :class:`rnnkit.bench.sides.Worker`, before rnnkit runs, so the two never share
the cores) and adds: the GEMM FLOPs of one fwd+bwd, the rate rnnkit's GEMMs reach, PyTorch's
whole-LSTM rate, and the "GEMM floor" ratio = (rnnkit's GEMMs alone) / (PyTorch's whole
fwd+bwd).  A floor above 1 means no work outside the GEMMs can make rnnkit as fast.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from numba import njit

import rnnkit
from rnnkit.cells.lstm import lstm_step, lstm_step_backward
from rnnkit.engine.gemm_rows import loop_operands, step_gemm_rows
from rnnkit.engine.step_gemm import times_w, times_wt
from rnnkit.engine.threads import blas_threads_at_most


@njit(nogil=True)
def _gemm_steps(h, W_hh, W_fwd, rows_fwd, hw, d_xw, W_bwd, rows_bwd, dh):
    for _ in range(d_xw.shape[0]):
        times_wt(h, W_hh, W_fwd, hw, rows_fwd)
    for t in range(d_xw.shape[0]):
        times_w(d_xw[t], W_hh, W_bwd, dh, rows_bwd)


@njit(nogil=True)
def _elementwise(xw, hw, c, c2, tc, h, dh, dc, gates, d_xw, ones):
    for t in range(xw.shape[0]):
        g = xw[t].copy()
        lstm_step(g, hw, (), (h, c), (h, c2), (tc,))
    for t in range(xw.shape[0]):
        dh += ones[t]
        lstm_step_backward((dh, dc), gates, (tc,), (h, c), (h, c2), (), d_xw[t], d_xw[t], (dh, c2), ())


def _median_time(fns, repeats=7):
    """Median seconds of each function, measured round-robin."""
    for f in fns:
        f()
    acc = [[] for _ in fns]
    for _ in range(repeats):
        for f, a in zip(fns, acc):
            t0 = time.perf_counter()
            f()
            a.append(time.perf_counter() - t0)
    return [statistics.median(a) for a in acc]


def profile_lstm(T, B, I, H, repeats=7):
    rng = np.random.default_rng(0)
    dt = np.float32
    layer = rnnkit.LSTM(I, H, seed=0)
    layer.cores = 1
    x = rng.standard_normal((T, B, I)).astype(dt)
    ones = np.ones((T, B, H), dt)
    G = 4 * H
    W_ih, W_hh = layer.params["weight_ih_l0"], layer.params["weight_hh_l0"]
    h, hw, dh = np.zeros((B, H), dt), np.empty((B, G), dt), np.empty((B, H), dt)
    xw = rng.standard_normal((T, B, G)).astype(dt) * 0.1
    d_xw = (rng.standard_normal((T, B, G)) * 0.01).astype(dt)  # finite values: garbage could hold NaN/denormals
    c, c2, tc, dc = (np.zeros((B, H), dt) for _ in range(4))
    gates = np.tanh(xw[0])

    def full():
        out, _ = layer.forward(x)
        layer.backward(ones)

    operands = []  # the per-step GEMM as the loops run it (rnnkit.engine.gemm_rows: BLAS, row blocks or packed)
    for backward in (False, True):
        rows = step_gemm_rows(B, H, G, dt, backward)
        [(_, _, rows)], W2 = loop_operands(W_hh, [(0, B, rows)], backward, {})
        operands += [W2, rows]

    def gemm_steps():
        with blas_threads_at_most(1):
            _gemm_steps(h, W_hh, operands[0], operands[1], hw, d_xw, operands[2], operands[3], dh)

    def gemm_all_steps():
        x2, d2 = x.reshape(T * B, I), d_xw.reshape(T * B, G)
        np.dot(x2, W_ih.T)  # xw
        d2.T @ x2  # dW_ih
        np.dot(d2, W_ih)  # d_x
        d2.T @ ones.reshape(T * B, H)  # dW_hh (same shapes as with h_prev)

    def elementwise():
        _elementwise(xw, hw, c, c2, tc, h, dh, dc, gates, d_xw.copy(), ones)

    t_full, t_gs, t_ga, t_el = _median_time([full, gemm_steps, gemm_all_steps, elementwise], repeats)
    return dict(T=T, B=B, I=I, H=H, total_ms=t_full * 1e3, gemm_per_step_ms=t_gs * 1e3,
                gemm_all_steps_ms=t_ga * 1e3, elementwise_ms=t_el * 1e3,
                overhead_ms=(t_full - t_gs - t_ga - t_el) * 1e3)


def lstm_gflop(T, B, I, H) -> float:
    """GEMM FLOPs of one LSTM fwd+bwd: per-step h W_hh^T and d_a W_hh, dW_hh (each 2 T B G H),
    and x W_ih^T, dW_ih, d_x (each 2 T B G I), with G = 4H."""
    return 6 * T * B * 4 * H * (H + I) / 1e9


def torch_fwd_bwd_ms(shapes, torch_threads=2, repeats=7) -> list[float]:
    """PyTorch's nn.LSTM fwd+bwd (float32, loss = sum of outputs) per shape, in its own process."""
    import torch

    from rnnkit.bench.sides import Worker
    from rnnkit.bench.speed import torch_weights

    w = Worker("torch", torch_threads, None)
    try:
        out = []
        for T, B, I, H in shapes:
            x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
            w.setup("grid", "lstm", I, H, torch_weights(torch, "lstm", I, H), x)
            w.run("train", 2, 0)
            out.append(1e3 * statistics.median(w.run("train", 1) for _ in range(repeats)))
        return out
    finally:
        w.close()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("shape", nargs="*", type=int, help="T B I H [T B I H ...] (default: the bench grid)")
    p.add_argument("--threads", type=int, default=None, help="limit BLAS threads for the whole run")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--vs-torch", action="store_true", help="add PyTorch's fwd+bwd and the GEMM floor ratio")
    a = p.parse_args(argv)
    if len(a.shape) % 4:
        p.error(f"shape: expected groups of four integers T B I H, got {len(a.shape)} numbers")
    from rnnkit.bench.speed import GRID

    shapes = [tuple(a.shape[k:k + 4]) for k in range(0, len(a.shape), 4)] or list(GRID)
    torch_ms = torch_fwd_bwd_ms(shapes, repeats=a.repeats) if a.vs_torch else None
    extra = (" GEMM GFLOP | rnnkit GEMMs GFLOP/s | torch fwd+bwd ms | torch GFLOP/s | GEMM floor / torch |"
             if torch_ms else "")
    print("| T | B | I | H | total ms | per-step GEMMs | all-steps GEMMs | elementwise | Python/NumPy overhead |" + extra)
    print("|---|---|---|---|---|---|---|---|---|" + "---|" * extra.count("|"))
    import contextlib

    ctx = contextlib.nullcontext()
    if a.threads:
        from threadpoolctl import threadpool_limits

        ctx = threadpool_limits(limits=a.threads, user_api="blas")
    with ctx:
        for k, s in enumerate(shapes):
            r = profile_lstm(*s, repeats=a.repeats)
            tot = r["total_ms"]
            cells = [f"{r[k]:.1f} ({100 * r[k] / tot:.0f}%)" for k in
                     ("gemm_per_step_ms", "gemm_all_steps_ms", "elementwise_ms", "overhead_ms")]
            if torch_ms:
                gf, gemm_ms = lstm_gflop(*s), r["gemm_per_step_ms"] + r["gemm_all_steps_ms"]
                cells += [f"{gf:.2f}", f"{gf / gemm_ms * 1e3:.0f}", f"{torch_ms[k]:.2f}",
                          f"{gf / torch_ms[k] * 1e3:.0f}", f"**{gemm_ms / torch_ms[k]:.2f}**"]
            print(f"| {r['T']} | {r['B']} | {r['I']} | {r['H']} | {tot:.1f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
