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


# ----------------------------------------------------------------------------- timing
def _calibrate(fn, min_time: float) -> int:
    """How many calls make one measurement last at least ``min_time`` seconds."""
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    return max(1, math.ceil(min_time / max(dt, 1e-7)))


def alternate(fa, fb, repeats: int, warmup: int = 2, min_time: float = 0.02) -> tuple[float, float]:
    """Median seconds per call of ``fa`` and ``fb``, measured A B A B after warm-up."""
    for _ in range(warmup):
        fa()
        fb()
    na, nb = _calibrate(fa, min_time), _calibrate(fb, min_time)
    ta, tb = [], []
    for _ in range(repeats):
        for fn, n, acc in ((fa, na, ta), (fb, nb, tb)):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            acc.append((time.perf_counter() - t0) / n)
    return statistics.median(ta), statistics.median(tb)


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


def _make_pair(torch, kind: str, I: int, H: int, num_layers: int = 1, seed: int = 0):
    from .io.torch_interop import from_torch

    torch.manual_seed(seed)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind]
    tm = cls(I, H, num_layers=num_layers)
    return tm, from_torch(tm, dtype=np.float32)


def _state_tuple(kind, s):
    return tuple(s) if kind == "lstm" else (s,)


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
    err = float(max(diffs))
    if not err < 1e-3:
        raise RuntimeError(f"bench: rnnkit and torch disagree on {kind} (max difference {err:.3g})")
    return err


# ----------------------------------------------------------------------------- sections
def bench_grid_point(torch, kind, T, B, I, H, repeats, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    tm, layer = _make_pair(torch, kind, I, H, seed=seed)
    x_np = rng.standard_normal((T, B, I)).astype(np.float32)
    err = check_same(torch, kind, tm, layer, x_np)
    x = torch.from_numpy(x_np.copy()).requires_grad_(True)
    ones = np.ones((T, B, H), dtype=np.float32)
    params = list(tm.parameters())

    def torch_train():
        out, _ = tm(x)
        out.sum().backward()

    def kit_train():
        out, _ = layer.forward(x_np)
        layer.backward(ones)

    def torch_infer():
        with torch.inference_mode():
            tm(x)

    def kit_infer():
        layer.forward(x_np)

    t_tr, k_tr = alternate(torch_train, kit_train, repeats)
    t_in, k_in = alternate(torch_infer, kit_infer, repeats)
    t_mem = torch_saved_bytes(torch, lambda: tm(x)[0].sum(), exclude=params + [x])
    layer.forward(x_np)
    k_mem = tape_bytes(layer._tape, exclude=list(layer.params.values()) + [x_np])
    layer._tape = None
    return dict(cell=kind, T=T, B=B, I=I, H=H, max_abs_diff=err,
                torch_fwd_bwd_ms=t_tr * 1e3, rnnkit_fwd_bwd_ms=k_tr * 1e3, fwd_bwd_ratio=k_tr / t_tr,
                torch_infer_ms=t_in * 1e3, rnnkit_infer_ms=k_in * 1e3, infer_ratio=k_in / t_in,
                torch_cache_mb=t_mem / 2**20, rnnkit_cache_mb=k_mem / 2**20,
                cache_ratio=k_mem / t_mem if t_mem else float("nan"))


def bench_stream(torch, kind, H, repeats, steps=200, seed=0) -> dict:
    I = H
    rng = np.random.default_rng(seed)
    tm, layer = _make_pair(torch, kind, I, H, seed=seed)
    xs = rng.standard_normal((steps, 1, I)).astype(np.float32)
    xs_t = torch.from_numpy(xs.copy())[:, None]  # (steps, 1, 1, I)

    def torch_stream():
        st = None
        with torch.inference_mode():
            for k in range(steps):
                y, st = tm(xs_t[k], st)

    def kit_stream():
        st = None
        for k in range(steps):
            y, st = layer.step(xs[k], st)

    # same numbers first
    with torch.inference_mode():
        ref, _ = tm(torch.from_numpy(xs.copy()))
    st, ys = None, []
    for k in range(steps):
        y, st = layer.step(xs[k], st)
        ys.append(y)
    err = float(np.abs(ref.numpy()[:, 0] - np.concatenate(ys)).max())
    if not err < 1e-3:
        raise RuntimeError(f"bench: rnnkit step and torch disagree on {kind} (max difference {err:.3g})")
    t, k = alternate(torch_stream, kit_stream, repeats)
    return dict(cell=kind, H=H, I=I, B=1, max_abs_diff=err, torch_step_us=t / steps * 1e6,
                rnnkit_step_us=k / steps * 1e6, step_ratio=k / t)


def _kit_adam(model, lr):
    try:
        from .optim import Adam

        return Adam(model.params, model.grads, lr=lr)
    except ImportError:  # rnnkit.optim not present: a minimal Adam with torch's defaults
        return _MiniAdam(model.params, model.grads, lr)


class _MiniAdam:
    def __init__(self, params, grads, lr, b1=0.9, b2=0.999, eps=1e-8):
        self.p, self.g, self.lr, self.b1, self.b2, self.eps, self.t = params, grads, lr, b1, b2, eps, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self):
        self.t += 1
        c1, c2 = 1 - self.b1**self.t, 1 - self.b2**self.t
        for k, p in self.p.items():
            g, m, v = self.g[k], self.m[k], self.v[k]
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            p -= self.lr / c1 * m / (np.sqrt(v / c2) + self.eps)


def bench_charlm(torch, repeats, V=100, E=64, H=128, layers=2, B=32, T=100, lr=2e-3, seed=0) -> dict:
    from .layers import LSTM
    from .losses import softmax_cross_entropy
    from .module import Module
    from .nn import Embedding, Linear

    nn = torch.nn
    torch.manual_seed(seed)

    class TorchLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.lstm, self.head = nn.Embedding(V, E), nn.LSTM(E, H, layers), nn.Linear(H, V)

        def forward(self, ids, st):
            h, st = self.lstm(self.emb(ids), st)
            return self.head(h), st

    class KitLM(Module):
        def __init__(self):
            self.emb, self.lstm, self.head = Embedding(V, E, seed=seed), LSTM(E, H, layers, seed=seed), Linear(H, V, seed=seed)

    tlm, klm = TorchLM(), KitLM()
    klm.load_params({k: v.detach().numpy() for k, v in tlm.state_dict().items()})
    rng = np.random.default_rng(seed)
    data = rng.integers(0, V, size=(T + 1, B))  # speed does not depend on the text
    ids, tgt = data[:-1], data[1:]
    ids_t, tgt_t = torch.from_numpy(ids), torch.from_numpy(tgt).reshape(-1)
    topt = torch.optim.Adam(tlm.parameters(), lr=lr)
    kopt = _kit_adam(klm, lr)
    carry = {"t": None, "k": None}

    def torch_step():
        topt.zero_grad()
        logits, st = tlm(ids_t, carry["t"])
        loss = nn.functional.cross_entropy(logits.reshape(-1, V), tgt_t)
        loss.backward()
        topt.step()
        carry["t"] = tuple(s.detach() for s in st)
        return loss.item()

    def kit_step():
        klm.zero_grad()
        h, st = klm.lstm(klm.emb(ids), carry["k"])
        loss, d_logits = softmax_cross_entropy(klm.head(h), tgt)
        d_x, _ = klm.lstm.backward(klm.head.backward(d_logits))
        klm.emb.backward(d_x)
        kopt.step()
        carry["k"] = st
        return loss

    l_t, l_k = torch_step(), kit_step()
    if not abs(l_t - l_k) < 1e-3:
        raise RuntimeError(f"bench: charlm first-step losses differ (torch {l_t:.6f}, rnnkit {l_k:.6f})")
    t, k = alternate(torch_step, kit_step, repeats, warmup=2, min_time=0.0)
    return dict(V=V, E=E, H=H, layers=layers, B=B, T=T, optimizer=type(kopt).__name__,
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
             f"(other jobs share the {m['cpu_count']} CPUs).",
             f"Command: `{m['command']}`.  Ratios are rnnkit/PyTorch times (< 1 means rnnkit is faster), "
             "medians of alternating runs.", ""]
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
                  f"Adam ({r['optimizer']}) | {r['torch_tokens_per_s']:.0f} | {r['rnnkit_tokens_per_s']:.0f} | "
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
    if "grid" in cfg.sections:
        res["grid"] = []
        for kind in cells:
            for T, B, I, H in grid:
                r = bench_grid_point(torch, kind, T, B, I, H, repeats, cfg.seed)
                log(f"{kind} T={T} B={B} I={I} H={H}: fwd+bwd {r['fwd_bwd_ratio']:.2f}x, "
                    f"infer {r['infer_ratio']:.2f}x, cache {r['cache_ratio']:.2f}x")
                res["grid"].append(r)
    if "stream" in cfg.sections:
        res["stream"] = []
        for kind in cells:
            for H in STREAM_H:
                r = bench_stream(torch, kind, H, repeats, steps=100 if cfg.quick else 200, seed=cfg.seed)
                log(f"{kind} stream H={H}: {r['step_ratio']:.2f}x")
                res["stream"].append(r)
    if "charlm" in cfg.sections:
        res["charlm"] = bench_charlm(torch, 5 if cfg.quick else max(cfg.repeats, 7), seed=cfg.seed)
        log(f"charlm: tokens/s ratio {res['charlm']['tokens_per_s_ratio']:.2f}")
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
    if args.repeats < 1:
        from .errors import UserError

        raise UserError(f"bench: --repeats must be >= 1, got {args.repeats}")
    cells = tuple(args.cells.split(",")) if args.cells else CELLS
    bad = [c for c in cells if c not in CELLS]
    if bad:
        from .errors import UserError

        raise UserError(f"bench: --cells expects a comma list of {', '.join(CELLS)}, got {bad[0]!r}")
    sections = tuple(args.sections.split(",")) if args.sections else BenchConfig.sections
    bad = [s for s in sections if s not in BenchConfig.sections]
    if bad:
        from .errors import UserError

        raise UserError(f"bench: --sections expects a comma list of {', '.join(BenchConfig.sections)}, got {bad[0]!r}")
    for flag, v in (("--torch-threads", args.torch_threads), ("--blas-threads", args.blas_threads)):
        if v is not None and v < 1:
            from .errors import UserError

            raise UserError(f"bench: {flag} must be >= 1, got {v}")
    cfg = BenchConfig(quick=args.quick, cells=cells, repeats=args.repeats, torch_threads=args.torch_threads,
                      blas_threads=args.blas_threads,
                      out_dir=args.out_dir, markdown=args.markdown, seed=args.seed, sections=sections)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    if cfg.blas_threads is None:
        res = run_speed(cfg, log=log)
    else:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=cfg.blas_threads, user_api="blas"):
            res = run_speed(cfg, log=log)
    path, md = write_results(res, cfg)
    print(md)
    print(f"results: {path}", file=sys.stderr)
    return 0


def add_arguments(p) -> None:
    p.add_argument("suite", nargs="?", default="speed", choices=SUITES,
                   help="speed (default): rnnkit vs PyTorch; longlag: adding/copy tasks vs H&S 1997")
    p.add_argument("--quick", action="store_true", help="LSTM on two grid points, 3 repeats")
    p.add_argument("--cells", default=None, help="comma list of lstm,gru,rnn (default: all)")
    p.add_argument("--sections", default=None, help="comma list of grid,stream,charlm (default: all)")
    p.add_argument("--repeats", type=int, default=BenchConfig.repeats, help="timed A/B pairs per number")
    p.add_argument("--torch-threads", type=int, default=BenchConfig.torch_threads,
                   help="torch.set_num_threads (default 2)")
    p.add_argument("--blas-threads", type=int, default=None,
                   help="limit numpy's BLAS threads for the whole run (default: BLAS default)")
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

    p = argparse.ArgumentParser(prog="bench_rnn.py", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return _handler(p.parse_args(argv))
