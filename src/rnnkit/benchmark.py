"""``rnnkit bench``: rnnkit against PyTorch's CPU ``nn.RNN/LSTM/GRU``, measured side by side.

Suite ``speed`` (the default) measures, for each cell and grid point (T, B, I, H), float32:

* fwd+bwd: one forward and BPTT with loss = sum of outputs.  PyTorch: autograd with
  ``x.requires_grad = True`` (rnnkit always returns d_x, so both sides do the same work);
  rnnkit: ``forward`` then ``backward(ones)``.  Parameter gradients accumulate on both sides.
* inference forward: PyTorch under ``torch.inference_mode()``; rnnkit ``forward``.
* cached activations: the bytes a forward keeps for its backward.  PyTorch: the unique
  storages autograd saves (``torch.autograd.graph.saved_tensors_hooks``); rnnkit: the unique
  base arrays reachable from the layer's tape.  Parameters and the input x are excluded on
  both sides.
* streaming: one step at a time, B = 1: ``layer.step`` vs calling the torch module on a
  (1, 1, I) input with the carried state (inference mode).
* char-LM training step: Embedding(100, 64) -> 2-layer LSTM(128) -> Linear(128, 100) ->
  softmax cross-entropy, batch 32, bptt 100, Adam, state carried between steps.  tokens/s.

Every comparison alternates A B A B after warm-up and reports medians, so drift on a shared
machine hits both sides alike; the ratio rnnkit/PyTorch (of times) is the number to read.
Each library runs in its own worker process (:class:`Worker`), so neither pays for the
other's idle spinning threads; ``--same-process --gap 0`` times both in one process as rounds 1-2 did
(there each library's idle threads slow the other down, see docs/performance.md).
Before timing, each grid point checks that both libraries compute the same outputs and
gradients (float32 tolerances), so the timings compare the same computation.

Results: a markdown table on stdout (and ``--markdown FILE``) and a JSON file in ``--out-dir``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np

SUITES = ("speed", "longlag")  # longlag: rnnkit.diagnostics.longlag_bench
GRID = ((100, 32, 64, 128), (50, 64, 128, 256), (200, 16, 32, 64), (35, 20, 650, 650),
        (100, 1, 16, 32), (64, 128, 256, 512))
QUICK_GRID = ((100, 32, 64, 128), (35, 20, 650, 650))
CELLS = ("lstm", "gru", "rnn")
STREAM_H = (32, 128)


@dataclass(frozen=True)
class BenchConfig:
    """Settings of ``rnnkit bench speed`` (CLI flags map onto these fields)."""

    quick: bool = False  # LSTM on two grid points, fewer repeats
    cells: tuple = CELLS
    repeats: int = 9  # timed A/B pairs per measurement (medians reported)
    torch_threads: int = 2
    blas_threads: int | None = None  # None: numpy's BLAS default; else limited for the whole run
    out_dir: str = "bench/results"
    markdown: str | None = None  # also write the markdown tables here
    seed: int = 0
    sections: tuple = ("grid", "stream", "charlm")
    isolate: bool = True  # each library times in its own worker process (see Worker)
    gap: float = 0.15  # seconds of rest before each timed block (see alternate_sides)


# ----------------------------------------------------------------------------- memory
def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def tape_bytes(obj, exclude=()) -> int:
    """Bytes of the unique base arrays reachable from ``obj`` (tuples, lists, dicts, arrays)."""
    skip = {id(_root(a)) for a in exclude}
    seen, total, stack = set(), 0, [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, np.ndarray):
            r = _root(o)
            if id(r) not in seen and id(r) not in skip:
                seen.add(id(r))
                total += r.nbytes
        elif isinstance(o, (tuple, list)):
            stack.extend(o)
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif hasattr(o, "__dict__") and not isinstance(o, type):
            stack.extend(vars(o).values())
    return total


def torch_saved_bytes(torch, fn, exclude=()) -> int:
    """Bytes of the unique storages autograd saves while ``fn()`` runs."""
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    saved = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in skip:
            saved[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return int(sum(saved.values()))


# ----------------------------------------------------------------------------- helpers
def _import_torch():
    try:
        import torch
    except ImportError as e:
        from .errors import UserError

        raise UserError("bench: PyTorch is needed for the comparison (pip install 'rnnkit[torch]')") from e
    return torch


def check_same(torch, kind, tm, layer, x_np) -> float:
    """Max abs difference between the two libraries' outputs and gradients (float32)."""
    x = torch.from_numpy(x_np.copy()).requires_grad_(True)
    out, _ = tm(x)
    out.sum().backward()
    layer.zero_grad()
    out_k, _ = layer.forward(x_np)
    dx_k, _ = layer.backward(np.ones_like(out_k))
    diffs = [np.abs(out.detach().numpy() - out_k).max(), np.abs(x.grad.numpy() - dx_k).max()]
    for name, p in tm.named_parameters():
        diffs.append(np.abs(p.grad.numpy() - layer.grads[name]).max() / max(1.0, np.abs(p.grad.numpy()).max()))
        p.grad = None
    layer.zero_grad()
    return _require_close(f"rnnkit and torch on {kind}", float(max(diffs)))


def _require_close(what: str, err: float, tol: float = 1e-3) -> float:
    """``err`` if below ``tol`` (float32 agreement); else stop the benchmark: it would time different work."""
    if not err < tol:
        raise RuntimeError(f"bench: {what} disagree (max difference {err:.3g})")
    return err


# ----------------------------------------------------------------------------- the two sides
# Each comparison is timed through two "sides" that expose named callables: ``run(name, n)``
# returns seconds per call of ``n`` calls after one untimed call (which wakes the side's
# threads after it sat idle while the other side ran).  The builders below make the callables
# of one library from plain numpy weights and data, so both sides get the same numbers.


def _torch_cls(torch, kind):
    """torch.nn.LSTM/GRU/RNN for a cell name."""
    from .io.torch_interop import torch_classes
    from .tasks.readout import CELLS

    return torch_classes(torch)[CELLS[kind]]


def _torch_module(torch, kind, I, H, layers, weights):
    tm = _torch_cls(torch, kind)(I, H, num_layers=layers)
    tm.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
    return tm


def _kit_layer(kind, I, H, layers, weights):
    from .tasks.readout import CELLS

    layer = CELLS[kind](I, H, layers, seed=0)
    layer.load_params(weights)
    return layer


def _grid_fns(lib, kind, I, H, weights, x_np):
    """{"train": fwd+bwd with loss = sum of outputs, "infer": forward only} for one library."""
    T, B, _ = x_np.shape
    if lib == "torch":
        import torch

        tm = _torch_module(torch, kind, I, H, 1, weights)
        x = torch.from_numpy(x_np.copy()).requires_grad_(True)

        def train():
            out, _ = tm(x)
            out.sum().backward()

        def infer():
            with torch.inference_mode():
                tm(x)

        return {"train": train, "infer": infer}
    layer = _kit_layer(kind, I, H, 1, weights)
    ones = np.ones((T, B, H), dtype=np.float32)

    def kit_train():
        layer.forward(x_np)
        layer.backward(ones)

    return {"train": kit_train, "infer": lambda: layer.forward(x_np)}


def _stream_fns(lib, kind, I, H, weights, xs):
    """{"stream": len(xs) single steps at B = 1, state carried} for one library."""
    if lib == "torch":
        import torch

        tm = _torch_module(torch, kind, I, H, 1, weights)
        xs_t = torch.from_numpy(xs.copy())[:, None]  # (steps, 1, 1, I)

        def torch_stream():
            st = None
            with torch.inference_mode():
                for x in xs_t:
                    y, st = tm(x, st)

        return {"stream": torch_stream}
    layer = _kit_layer(kind, I, H, 1, weights)

    def kit_stream():
        st = None
        for x in xs:
            y, st = layer.step(x, st)

    return {"stream": kit_stream}


def _charlm_fns(lib, spec, weights, ids, tgt):
    """{"step": one training step of the char-LM (forward, loss, backward, Adam)} for one library."""
    V, E, H, layers, lr = spec["V"], spec["E"], spec["H"], spec["layers"], spec["lr"]
    if lib == "torch":
        import torch

        nn = torch.nn

        class TorchLM(nn.Module):
            def __init__(self):
                super().__init__()
                self.emb, self.rnn, self.head = nn.Embedding(V, E), nn.LSTM(E, H, layers), nn.Linear(H, V)

            def forward(self, ids, st):
                h, st = self.rnn(self.emb(ids), st)
                return self.head(h), st

        tlm = TorchLM()
        tlm.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
        ids_t, tgt_t = torch.from_numpy(ids), torch.from_numpy(tgt).reshape(-1)
        topt = torch.optim.Adam(tlm.parameters(), lr=lr)
        carry = [None]

        def torch_step():
            topt.zero_grad()
            logits, st = tlm(ids_t, carry[0])
            loss = nn.functional.cross_entropy(logits.reshape(-1, V), tgt_t)
            loss.backward()
            topt.step()
            carry[0] = tuple(s.detach() for s in st)
            return loss.item()

        return {"step": torch_step}
    from .losses import softmax_cross_entropy
    from .optim import Adam
    from .tasks.charlm import CharLMConfig, CharLMModel

    klm = CharLMModel(V, CharLMConfig(cell="lstm", layers=layers, hidden=H, emb=E))  # the char-LM task's model
    klm.load_params(weights)
    kopt = Adam(klm.params, klm.grads, lr=lr)
    carry = [None]

    def kit_step():
        klm.zero_grad()
        logits, st = klm(ids, carry[0])
        loss, d_logits = softmax_cross_entropy(logits, tgt)
        klm.backward(d_logits)
        kopt.step()
        carry[0] = st
        return loss

    return {"step": kit_step}


_BUILDERS = {"grid": _grid_fns, "stream": _stream_fns, "charlm": _charlm_fns}


def _run_timed(fn, n: int, warm: int = 1) -> float:
    for _ in range(warm):
        fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


class InProcess:
    """A side run in this process (both libraries share it: their idle threads interfere)."""

    def __init__(self, lib: str):
        self.lib, self.fns = lib, {}

    def setup(self, builder: str, *args) -> None:
        self.fns = _BUILDERS[builder](self.lib, *args)

    def call(self, name: str):
        return self.fns[name]()

    def run(self, name: str, n: int, warm: int = 1) -> float:
        return _run_timed(self.fns[name], n, warm)

    def close(self) -> None:
        self.fns = {}


def _worker_main(conn, lib: str, torch_threads: int, blas_threads: int | None) -> None:
    """Loop of a side's process: build callables on request, time them, report back."""
    if lib == "torch":
        import torch

        torch.set_num_threads(torch_threads)
    if blas_threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=blas_threads, user_api="blas")
    side = InProcess(lib)
    while True:
        op, *args = conn.recv()
        if op == "stop":
            break
        try:
            conn.send(("ok", getattr(side, op)(*args)))
        except Exception as e:  # noqa: BLE001 - reported to the parent, which raises it
            conn.send(("error", f"{type(e).__name__}: {e}"))


class Worker:
    """A side run in its own process (``multiprocessing`` spawn), so only its own library's
    threads are alive in it.  Why: PyTorch's OpenMP threads and OpenBLAS's threads spin for a
    while after each call; in one process the side that runs second pays for the other's
    spinning threads on these 2-core machines (measured: PyTorch's LSTM inference at T=100,
    B=32, H=128 took 3.77 ms timed in one process with rnnkit, 1.81 ms in its own worker with
    the default rest; bench/results/quick-*.md, docs/performance.md).
    While one worker runs, the other waits in ``recv`` and its threads go back to sleep."""

    def __init__(self, lib: str, torch_threads: int, blas_threads: int | None):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.lib = lib
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, lib, torch_threads, blas_threads), daemon=True)
        self.proc.start()
        child.close()

    def _ask(self, *msg):
        self.conn.send(msg)
        status, value = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"bench: the {self.lib} worker failed: {value}")
        return value

    def setup(self, builder: str, *args) -> None:
        self._ask("setup", builder, *args)

    def call(self, name: str):
        return self._ask("call", name)

    def run(self, name: str, n: int, warm: int = 1) -> float:
        return self._ask("run", name, n, warm)

    def close(self) -> None:
        if self.proc.is_alive():
            self.conn.send(("stop",))
            self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.kill()


def make_sides(isolate: bool, torch_threads: int, blas_threads: int | None):
    """(torch side, rnnkit side): worker processes if ``isolate`` else this process."""
    if isolate:
        return Worker("torch", torch_threads, blas_threads), Worker("rnnkit", torch_threads, blas_threads)
    return InProcess("torch"), InProcess("rnnkit")


def alternate_sides(sa, sb, name: str, repeats: int, warmup: int = 2, min_time: float = 0.02,
                    gap: float = 0.0) -> tuple[float, float]:
    """Median seconds per call of ``name`` on sides ``sa`` and ``sb``, timed A B A B after warm-up.

    Each timed block repeats the call enough times to last ``min_time`` and is preceded by
    ``gap`` seconds of rest and one untimed call.  The rest lets the other side's threads go
    to sleep: OpenBLAS's worker threads keep spinning for a while after a call, and a block
    started earlier shares the 2 cores with them (measured: PyTorch's LSTM inference at
    T=100, B=32, H=128 took 3.65 ms with no rest, 1.81 / 1.79 ms with 0.15 / 0.4 s; rnnkit's
    times did not depend on it; bench/results/quick-isolated-gap*.md).  The untimed call wakes the side's own
    threads, as they would be in a training loop."""
    sa.run(name, warmup, 0)
    sb.run(name, warmup, 0)
    ns = [max(1, math.ceil(min_time / max(s.run(name, 1), 1e-7))) if min_time > 0 else 1 for s in (sa, sb)]
    ta, tb = [], []
    for _ in range(repeats):
        time.sleep(gap)
        ta.append(sa.run(name, ns[0]))
        time.sleep(gap)
        tb.append(sb.run(name, ns[1]))
    return statistics.median(ta), statistics.median(tb)


# ----------------------------------------------------------------------------- sections
def _torch_weights(torch, kind, I, H, layers=1, seed=0) -> dict:
    torch.manual_seed(seed)
    tm = _torch_cls(torch, kind)(I, H, num_layers=layers)
    return {k: v.detach().numpy().copy() for k, v in tm.state_dict().items()}


def bench_grid_point(torch, kind, T, B, I, H, repeats, seed=0, sides=None, gap=0.0) -> dict:
    """fwd+bwd, inference and cache memory at one grid point.  ``sides``: from
    :func:`make_sides` (default: both libraries in this process)."""
    rng = np.random.default_rng(seed)
    weights = _torch_weights(torch, kind, I, H, seed=seed)
    x_np = rng.standard_normal((T, B, I)).astype(np.float32)
    tm, layer = _torch_module(torch, kind, I, H, 1, weights), _kit_layer(kind, I, H, 1, weights)
    err = check_same(torch, kind, tm, layer, x_np)
    ts, ks = sides or (InProcess("torch"), InProcess("rnnkit"))
    for s in (ts, ks):
        s.setup("grid", kind, I, H, weights, x_np)
    t_tr, k_tr = alternate_sides(ts, ks, "train", repeats, gap=gap)
    t_in, k_in = alternate_sides(ts, ks, "infer", repeats, gap=gap)
    x = torch.from_numpy(x_np.copy()).requires_grad_(True)
    t_mem = torch_saved_bytes(torch, lambda: tm(x)[0].sum(), exclude=list(tm.parameters()) + [x])
    layer.forward(x_np)
    k_mem = tape_bytes(layer._tape, exclude=list(layer.params.values()) + [x_np])
    layer.release()
    return dict(cell=kind, T=T, B=B, I=I, H=H, max_abs_diff=err,
                torch_fwd_bwd_ms=t_tr * 1e3, rnnkit_fwd_bwd_ms=k_tr * 1e3, fwd_bwd_ratio=k_tr / t_tr,
                torch_infer_ms=t_in * 1e3, rnnkit_infer_ms=k_in * 1e3, infer_ratio=k_in / t_in,
                torch_cache_mb=t_mem / 2**20, rnnkit_cache_mb=k_mem / 2**20,
                cache_ratio=k_mem / t_mem if t_mem else float("nan"))


def bench_stream(torch, kind, H, repeats, steps=200, seed=0, sides=None, gap=0.0) -> dict:
    I = H
    rng = np.random.default_rng(seed)
    weights = _torch_weights(torch, kind, I, H, seed=seed)
    tm, layer = _torch_module(torch, kind, I, H, 1, weights), _kit_layer(kind, I, H, 1, weights)
    xs = rng.standard_normal((steps, 1, I)).astype(np.float32)
    with torch.inference_mode():  # same numbers first
        ref, _ = tm(torch.from_numpy(xs.copy()))
    st, ys = None, []
    for x in xs:
        y, st = layer.step(x, st)
        ys.append(y)
    err = _require_close(f"rnnkit step and torch on {kind}", float(np.abs(ref.numpy()[:, 0] - np.concatenate(ys)).max()))
    ts, ks = sides or (InProcess("torch"), InProcess("rnnkit"))
    for s in (ts, ks):
        s.setup("stream", kind, I, H, weights, xs)
    t, k = alternate_sides(ts, ks, "stream", repeats, gap=gap)
    return dict(cell=kind, H=H, I=I, B=1, max_abs_diff=err, torch_step_us=t / steps * 1e6,
                rnnkit_step_us=k / steps * 1e6, step_ratio=k / t)


def bench_charlm(torch, repeats, V=100, E=64, H=128, layers=2, B=32, T=100, lr=2e-3, seed=0, sides=None,
                 gap=0.0) -> dict:
    spec = dict(V=V, E=E, H=H, layers=layers, lr=lr)
    torch.manual_seed(seed)
    nn = torch.nn
    init = {f"emb.{k}": v for k, v in nn.Embedding(V, E).state_dict().items()}
    init.update({f"rnn.{k}": v for k, v in nn.LSTM(E, H, layers).state_dict().items()})
    init.update({f"head.{k}": v for k, v in nn.Linear(H, V).state_dict().items()})
    weights = {k: v.detach().numpy().copy() for k, v in init.items()}
    rng = np.random.default_rng(seed)
    data = rng.integers(0, V, size=(T + 1, B))  # speed does not depend on the text
    ids, tgt = data[:-1], data[1:]
    ts, ks = sides or (InProcess("torch"), InProcess("rnnkit"))
    for s in (ts, ks):
        s.setup("charlm", spec, weights, ids, tgt)
    l_t, l_k = float(ts.call("step")), float(ks.call("step"))  # the first step: same loss
    if not abs(l_t - l_k) < 1e-3:
        raise RuntimeError(f"bench: charlm first-step losses differ (torch {l_t:.6f}, rnnkit {l_k:.6f})")
    t, k = alternate_sides(ts, ks, "step", repeats, warmup=2, min_time=0.0, gap=gap)
    return dict(V=V, E=E, H=H, layers=layers, B=B, T=T, optimizer="Adam",
                first_loss_torch=l_t, first_loss_rnnkit=l_k,
                torch_tokens_per_s=B * T / t, rnnkit_tokens_per_s=B * T / k, tokens_per_s_ratio=t / k)


# ----------------------------------------------------------------------------- report
def machine_info(torch) -> dict:
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    blas = []
    try:
        from threadpoolctl import threadpool_info

        blas = [{k: d.get(k) for k in ("internal_api", "num_threads", "version", "architecture")}
                for d in threadpool_info()]
    except ImportError:
        pass
    return dict(cpu=model, cpu_count=os.cpu_count(), python=platform.python_version(),
                numpy=np.__version__, torch=torch.__version__, torch_threads=torch.get_num_threads(),
                numpy_blas=blas, loadavg_start=list(os.getloadavg()), OPENBLAS_CORETYPE=os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
                command=" ".join(["rnnkit bench"] + sys.argv[2:]) if "bench" in sys.argv[1:2] else " ".join(sys.argv))


def _load(v):
    return "/".join(f"{x:.1f}" for x in v) if v else "?"


def _r(x):
    return f"{x:.2f}"


def to_markdown(res: dict) -> str:
    m = res["machine"]
    blas = ", ".join(f"{b['internal_api']} {b['version']} {b['architecture']} ({b['num_threads']} threads)"
                     for b in m["numpy_blas"]) or "unknown"
    lines = [f"Machine: {m['cpu']}, {m['cpu_count']} CPUs; numpy {m['numpy']} BLAS: {blas}; "
             f"torch {m['torch']} ({m['torch_threads']} threads); OPENBLAS_CORETYPE={m['OPENBLAS_CORETYPE']}.",
             f"Load average (1/5/15 min) at start {_load(m.get('loadavg_start'))}, at end {_load(m.get('loadavg_end'))} "
             f"(other jobs may share the {m['cpu_count']} CPUs).",
             f"Command: `{m['command']}`.  Ratios are rnnkit/PyTorch times (< 1 means rnnkit is faster), "
             "medians of alternating runs; "
             + ("each library timed in its own worker process." if res.get("config", {}).get("isolate", False)
                else "both libraries timed in one process (--same-process)."), ""]
    if res.get("grid"):
        lines += ["| cell | T | B | I | H | fwd+bwd torch ms | rnnkit ms | ratio | infer torch ms | rnnkit ms | ratio "
                  "| cache torch MB | rnnkit MB | ratio |", "|" + "---|" * 14]
        for r in res["grid"]:
            lines.append(f"| {r['cell']} | {r['T']} | {r['B']} | {r['I']} | {r['H']} | {_r(r['torch_fwd_bwd_ms'])} | "
                         f"{_r(r['rnnkit_fwd_bwd_ms'])} | **{_r(r['fwd_bwd_ratio'])}** | {_r(r['torch_infer_ms'])} | "
                         f"{_r(r['rnnkit_infer_ms'])} | **{_r(r['infer_ratio'])}** | {_r(r['torch_cache_mb'])} | "
                         f"{_r(r['rnnkit_cache_mb'])} | **{_r(r['cache_ratio'])}** |")
        lines.append("")
    if res.get("stream"):
        lines += ["| streaming step (B=1, I=H) | H | torch µs/step | rnnkit µs/step | ratio |", "|---|---|---|---|---|"]
        for r in res["stream"]:
            lines.append(f"| {r['cell']} | {r['H']} | {_r(r['torch_step_us'])} | {_r(r['rnnkit_step_us'])} | "
                         f"**{_r(r['step_ratio'])}** |")
        lines.append("")
    if res.get("charlm"):
        r = res["charlm"]
        lines += ["| char-LM training step | torch tokens/s | rnnkit tokens/s | rnnkit/torch tokens/s |",
                  "|---|---|---|---|",
                  f"| emb {r['E']}, {r['layers']}x LSTM {r['H']}, V {r['V']}, batch {r['B']}, bptt {r['T']}, "
                  f"{r['optimizer']} | {r['torch_tokens_per_s']:.0f} | {r['rnnkit_tokens_per_s']:.0f} | "
                  f"**{_r(r['tokens_per_s_ratio'])}** |", ""]
    return "\n".join(lines)


def run_speed(cfg: BenchConfig, log=print) -> dict:
    torch = _import_torch()
    torch.set_num_threads(cfg.torch_threads)
    repeats = 3 if cfg.quick else cfg.repeats
    grid = QUICK_GRID if cfg.quick else GRID
    cells = ("lstm",) if cfg.quick else cfg.cells
    res = {"suite": "speed", "config": dataclasses.asdict(cfg), "machine": machine_info(torch),
           "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    limit = None
    if cfg.blas_threads is not None:  # this process too (same-process timing); workers apply it themselves
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(limits=cfg.blas_threads, user_api="blas")
    sides = make_sides(cfg.isolate, cfg.torch_threads, cfg.blas_threads)
    try:
        if "grid" in cfg.sections:
            res["grid"] = []
            for kind in cells:
                for T, B, I, H in grid:
                    r = bench_grid_point(torch, kind, T, B, I, H, repeats, cfg.seed, sides=sides, gap=cfg.gap)
                    log(f"{kind} T={T} B={B} I={I} H={H}: fwd+bwd {r['fwd_bwd_ratio']:.2f}x, "
                        f"infer {r['infer_ratio']:.2f}x, cache {r['cache_ratio']:.2f}x")
                    res["grid"].append(r)
        if "stream" in cfg.sections:
            res["stream"] = []
            for kind in cells:
                for H in STREAM_H:
                    r = bench_stream(torch, kind, H, repeats, steps=100 if cfg.quick else 200, seed=cfg.seed,
                                     sides=sides, gap=cfg.gap)
                    log(f"{kind} stream H={H}: {r['step_ratio']:.2f}x")
                    res["stream"].append(r)
        if "charlm" in cfg.sections:
            res["charlm"] = bench_charlm(torch, 5 if cfg.quick else max(cfg.repeats, 7), seed=cfg.seed, sides=sides,
                                         gap=cfg.gap)
            log(f"charlm: tokens/s ratio {res['charlm']['tokens_per_s_ratio']:.2f}")
    finally:
        for s in sides:
            s.close()
        if limit is not None:
            limit.restore_original_limits()
    res["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    res["machine"]["loadavg_end"] = list(os.getloadavg())
    return res


def write_results(res: dict, cfg: BenchConfig) -> tuple[str, str]:
    os.makedirs(cfg.out_dir, exist_ok=True)
    stamp = res["started"].replace(":", "").replace("-", "")
    path = os.path.join(cfg.out_dir, f"speed-{'quick-' if cfg.quick else ''}{stamp}.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=1)
    os.replace(tmp, path)
    md = to_markdown(res)
    if cfg.markdown:
        with open(cfg.markdown, "w") as f:
            f.write(md + "\n")
    return path, md


# ----------------------------------------------------------------------------- CLI
def _handler(args) -> int:
    if args.suite == "longlag":
        from .diagnostics.longlag_bench import longlag_main

        return longlag_main(args)
    from .errors import UserError

    cells = _comma_list(args.cells, CELLS, "--cells")
    sections = _comma_list(args.sections, BenchConfig.sections, "--sections")
    if args.gap > 10:
        raise UserError(f"bench: --gap must be between 0 and 10 seconds, got {args.gap}")
    cfg = BenchConfig(quick=args.quick, cells=cells, repeats=args.repeats, torch_threads=args.torch_threads,
                      blas_threads=args.blas_threads, isolate=not args.same_process, gap=args.gap,
                      out_dir=args.out_dir, markdown=args.markdown, seed=args.seed, sections=sections)
    res = run_speed(cfg, log=lambda s: print(s, file=sys.stderr, flush=True))
    path, md = write_results(res, cfg)
    print(md)
    print(f"results: {path}", file=sys.stderr)
    return 0


def _comma_list(value, allowed: tuple, flag: str) -> tuple:
    """``--flag a,b`` -> ("a", "b"), each one of ``allowed`` (None: all of them)."""
    if value is None:
        return allowed
    items = tuple(value.split(","))
    bad = [v for v in items if v not in allowed]
    if bad:
        from .errors import UserError

        raise UserError(f"bench: {flag} expects a comma list of {', '.join(allowed)}, got {bad[0]!r}")
    return items


def add_arguments(p) -> None:
    from .cli import nonneg_float, positive_int

    p.add_argument("suite", nargs="?", default="speed", choices=SUITES,
                   help="speed (default): rnnkit vs PyTorch; longlag: adding/copy tasks vs H&S 1997")
    p.add_argument("--quick", action="store_true", help="LSTM on two grid points, 3 repeats")
    p.add_argument("--cells", default=None, help="comma list of lstm,gru,rnn (default: all)")
    p.add_argument("--sections", default=None, help="comma list of grid,stream,charlm (default: all)")
    p.add_argument("--repeats", type=positive_int, default=BenchConfig.repeats, help="timed A/B pairs per number")
    p.add_argument("--torch-threads", type=positive_int, default=BenchConfig.torch_threads,
                   help="torch.set_num_threads (default 2)")
    p.add_argument("--blas-threads", type=positive_int, default=None,
                   help="limit numpy's BLAS threads for the whole run (default: BLAS default)")
    p.add_argument("--same-process", action="store_true",
                   help="time both libraries in this process (default: one worker process each; in one "
                        "process each library's idle threads slow the other down; with --gap 0 as rounds 1-2)")
    p.add_argument("--gap", type=nonneg_float, default=BenchConfig.gap,
                   help="seconds of rest before each timed block (default 0.15; lets the other side's threads sleep)")
    p.add_argument("--out-dir", default=BenchConfig.out_dir, help="where the JSON results go")
    p.add_argument("--markdown", default=None, help="also write the markdown tables to this file")
    p.add_argument("--seed", type=int, default=BenchConfig.seed)


def register_cli(root_subparsers, train_subparsers=None) -> None:
    """Add ``rnnkit bench [suite]`` to the CLI."""
    from .diagnostics.longlag_bench import add_longlag_args

    p = root_subparsers.add_parser("bench", help="benchmarks: speed vs PyTorch (needs torch), long-lag tasks",
                                   description=__doc__.split("\n\n")[0])
    add_arguments(p)
    add_longlag_args(p.add_argument_group("longlag suite (rnnkit bench longlag; --cells as above)"),
                     cells_flag=False)
    p.set_defaults(func=_handler)


def main(argv=None) -> int:
    """Entry point of bench/bench_rnn.py (same flags as ``rnnkit bench``)."""
    import argparse

    from .errors import UserError

    p = argparse.ArgumentParser(prog="bench_rnn.py", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    try:
        return _handler(p.parse_args(argv))
    except UserError as e:
        print(f"bench_rnn.py: error: {e}", file=sys.stderr)
        return 2
