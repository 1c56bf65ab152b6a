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

Kernels: the headline tables run in workers started with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
unset (OpenBLAS picks the machine's own kernels, as on a user's machine) and name the kernels
the rnnkit worker loaded (threadpoolctl's internal_api/architecture).  Where the environment
sets either variable, a second set of tables keeps it, labelled "AVX2 forced by this machine's
environment".  Only the benchmark's workers change them; never the library, the tests or CI.
Both tables give, per grid point, the GEMM work done (2 T B G (I + H) flops forward, 3x that
for fwd+bwd; G = gates x H) per second as a percentage of the measured peak of a large float32
GEMM on the same machine (numpy's OpenBLAS, native kernels, its default threads), for both libraries.

Every comparison alternates A B A B after warm-up and reports medians, so drift on a shared
machine hits both sides alike; the ratio rnnkit/PyTorch (of times) is the number to read.
Each library runs in its own worker process (:class:`rnnkit.bench.sides.Worker`), so neither pays for the
other's idle spinning threads; ``--same-process --gap 0`` times both in one process as rounds 1-2 did
(there each library's idle threads slow the other down, see docs/performance.md).
Before timing, each grid point checks that both libraries compute the same outputs and
gradients (float32 tolerances), so the timings compare the same computation.

Results: a markdown table on stdout (and ``--markdown FILE``) and a JSON file in ``--out-dir`` (default
``runs/bench/`` of the working directory; never the source tree).
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np

from rnnkit.errors import UserError
from rnnkit.io.outputs import write_output
from rnnkit.bench.builders import kit_layer, torch_class, torch_module
from rnnkit.bench.memory import tape_bytes, torch_saved_bytes
from rnnkit.bench.sides import NATIVE_UNSET, InProcess, alternate_pairs, make_sides, medians, pair_ratios

SUITES = ("speed", "longlag")  # longlag: rnnkit.bench.longlag
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
    out_dir: str = "runs/bench"
    markdown: str | None = None  # also write the markdown tables here
    seed: int = 0
    sections: tuple = ("grid", "stream", "charlm")
    isolate: bool = True  # each library times in its own worker process (see Worker)
    gap: float = 0.15  # seconds of rest before each timed block (see alternate_pairs)



def _import_torch():
    try:
        import torch
    except ImportError as e:
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


# ----------------------------------------------------------------------------- sections
def torch_weights(torch, kind, I, H, layers=1, seed=0) -> dict:
    torch.manual_seed(seed)
    tm = torch_class(torch, kind)(I, H, num_layers=layers)
    return {k: v.detach().numpy().copy() for k, v in tm.state_dict().items()}


def bench_grid_point(torch, kind, T, B, I, H, repeats, seed=0, sides=None, gap=0.0) -> dict:
    """fwd+bwd, inference and cache memory at one grid point.  ``sides``: from
    :func:`make_sides` (default: both libraries in this process)."""
    rng = np.random.default_rng(seed)
    weights = torch_weights(torch, kind, I, H, seed=seed)
    x_np = rng.standard_normal((T, B, I)).astype(np.float32)
    tm, layer = torch_module(torch, kind, I, H, 1, weights), kit_layer(kind, I, H, 1, weights)
    err = check_same(torch, kind, tm, layer, x_np)
    ts, ks = sides or (InProcess("torch"), InProcess("rnnkit"))
    for s in (ts, ks):
        s.setup("grid", kind, I, H, weights, x_np)
    train, infer = (alternate_pairs(ts, ks, name, repeats, gap=gap) for name in ("train", "infer"))
    (t_tr, k_tr), (t_in, k_in) = medians(train), medians(infer)
    x = torch.from_numpy(x_np.copy()).requires_grad_(True)
    t_mem = torch_saved_bytes(torch, lambda: tm(x)[0].sum(), exclude=list(tm.parameters()) + [x])
    layer.forward(x_np)
    k_mem = tape_bytes(layer.saved_for_backward(), exclude=list(layer.params.values()) + [x_np])
    layer.release()
    flop_fwd = 2.0 * T * B * (layer.cell.n_gates * H) * (I + H)  # the input and recurrent GEMMs
    return dict(cell=kind, T=T, B=B, I=I, H=H, max_abs_diff=err, gflop_fwd=flop_fwd / 1e9,
                gflop_fwd_bwd=3 * flop_fwd / 1e9,
                torch_fwd_bwd_ms=t_tr * 1e3, rnnkit_fwd_bwd_ms=k_tr * 1e3, fwd_bwd_ratio=k_tr / t_tr,
                fwd_bwd_ratio_pairs=pair_ratios(*train),
                torch_infer_ms=t_in * 1e3, rnnkit_infer_ms=k_in * 1e3, infer_ratio=k_in / t_in,
                infer_ratio_pairs=pair_ratios(*infer),
                torch_cache_mb=t_mem / 2**20, rnnkit_cache_mb=k_mem / 2**20,
                cache_ratio=k_mem / t_mem if t_mem else float("nan"))


def bench_stream(torch, kind, H, repeats, steps=200, seed=0, sides=None, gap=0.0) -> dict:
    I = H
    rng = np.random.default_rng(seed)
    weights = torch_weights(torch, kind, I, H, seed=seed)
    tm, layer = torch_module(torch, kind, I, H, 1, weights), kit_layer(kind, I, H, 1, weights)
    xs = rng.standard_normal((steps, 1, I)).astype(np.float32)
    with torch.inference_mode():  # same numbers first
        ref, _ = tm(torch.from_numpy(xs.copy()))
    st, ys = None, []
    for x in xs:
        y, st = layer.step(x, st)
        ys.append(y)
    err = _require_close(f"rnnkit step and torch on {kind}",
                         float(np.abs(ref.numpy()[:, 0] - np.concatenate(ys)).max()))
    ts, ks = sides or (InProcess("torch"), InProcess("rnnkit"))
    for s in (ts, ks):
        s.setup("stream", kind, I, H, weights, xs)
    pairs = alternate_pairs(ts, ks, "stream", repeats, gap=gap)
    t, k = medians(pairs)
    return dict(cell=kind, H=H, I=I, B=1, max_abs_diff=err, torch_step_us=t / steps * 1e6,
                rnnkit_step_us=k / steps * 1e6, step_ratio=k / t, step_ratio_pairs=pair_ratios(*pairs))


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
    pairs = alternate_pairs(ts, ks, "step", repeats, warmup=2, min_time=0.0, gap=gap)
    t, k = medians(pairs)
    return dict(V=V, E=E, H=H, layers=layers, B=B, T=T, optimizer="Adam",
                first_loss_torch=l_t, first_loss_rnnkit=l_k,
                torch_tokens_per_s=B * T / t, rnnkit_tokens_per_s=B * T / k, tokens_per_s_ratio=t / k,
                tokens_per_s_ratio_pairs=pair_ratios(pairs[1], pairs[0]))  # t / k: tokens/s, rnnkit over torch


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
                numpy_blas=blas, loadavg_start=list(os.getloadavg()),
                OPENBLAS_CORETYPE=os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
                command=" ".join(["rnnkit bench"] + sys.argv[2:]) if "bench" in sys.argv[1:2] else " ".join(sys.argv))


def _load(v):
    return "/".join(f"{x:.1f}" for x in v) if v else "?"


def _r(x):
    return f"{x:.2f}"


def _ratio(r: dict, key: str) -> str:
    """The ratio in bold, then the lowest and highest ratio pair by pair where the run recorded them."""
    pairs = r.get(key + "_pairs")
    return f"**{_r(r[key])}**" + (f" ({_r(min(pairs))}-{_r(max(pairs))})" if pairs else "")


def _pct(gflop: float, ms: float, peak) -> str:
    return f"{100 * gflop / (ms / 1e3) / peak:.0f}" if peak else "?"


def _kernels(run: dict) -> str:
    return "; ".join(f"{b['prefix']} {b['version']} {b['architecture']} ({b['num_threads']} threads)"
                     for b in run.get("kernels", {}).get("blas", [])) or "unknown"


def to_markdown(res: dict) -> str:
    m = res["machine"]
    blas = ", ".join(f"{b['internal_api']} {b['version']} {b['architecture']} ({b['num_threads']} threads)"
                     for b in m["numpy_blas"]) or "unknown"
    lines = [f"Machine: {m['cpu']}, {m['cpu_count']} CPUs; numpy {m['numpy']} BLAS: {blas}; "
             f"torch {m['torch']} ({m['torch_threads']} threads); OPENBLAS_CORETYPE={m['OPENBLAS_CORETYPE']}.",
             f"Load average (1/5/15 min) at start {_load(m.get('loadavg_start'))}, "
             f"at end {_load(m.get('loadavg_end'))} "
             f"(other jobs may share the {m['cpu_count']} CPUs).",
             f"Command: `{m['command']}`.  Ratios are rnnkit/PyTorch times (< 1 means rnnkit is faster), "
             "medians of alternating runs (in brackets: the lowest and highest ratio pair by pair, how much one "
             "A/B pair moves from the next here); "
             + ("each library timed in its own worker process." if res.get("config", {}).get("isolate", False)
                else "both libraries timed in one process (--same-process)."), ""]
    peak = res.get("sgemm_peak_gflops")
    if peak:
        lines += [f"Measured peak of a large float32 GEMM (numpy's OpenBLAS, native kernels): {peak:.0f} GFLOP/s.", ""]
    lines += _tables(res, peak)
    forced = res.get("as_set")
    if forced:
        env = ", ".join(f"{k}={v}" for k, v in forced["env"].items())
        lines += [f"### AVX2 forced by this machine's environment ({env})", ""] + _tables(forced, peak)
    return "\n".join(lines)


def _tables(res: dict, peak) -> list:
    lines = []
    if res.get("kernels"):
        lines += [f"Kernels the rnnkit worker ran: {_kernels(res)}.", ""]
    if res.get("grid"):
        lines += ["| cell | T | B | I | H | fwd+bwd torch ms | rnnkit ms | ratio | infer torch ms | rnnkit ms | ratio "
                  "| cache torch MB | rnnkit MB | ratio | % of peak fwd+bwd torch / rnnkit | infer torch / rnnkit |",
                  "|" + "---|" * 16]
        for r in res["grid"]:
            lines.append(f"| {r['cell']} | {r['T']} | {r['B']} | {r['I']} | {r['H']} | {_r(r['torch_fwd_bwd_ms'])} | "
                         f"{_r(r['rnnkit_fwd_bwd_ms'])} | {_ratio(r, 'fwd_bwd_ratio')} | {_r(r['torch_infer_ms'])} | "
                         f"{_r(r['rnnkit_infer_ms'])} | {_ratio(r, 'infer_ratio')} | {_r(r['torch_cache_mb'])} | "
                         f"{_r(r['rnnkit_cache_mb'])} | **{_r(r['cache_ratio'])}** | "
                         f"{_pct(r['gflop_fwd_bwd'], r['torch_fwd_bwd_ms'], peak)} / "
                         f"{_pct(r['gflop_fwd_bwd'], r['rnnkit_fwd_bwd_ms'], peak)} | "
                         f"{_pct(r['gflop_fwd'], r['torch_infer_ms'], peak)} / "
                         f"{_pct(r['gflop_fwd'], r['rnnkit_infer_ms'], peak)} |")
        lines.append("")
    if res.get("stream"):
        lines += ["| streaming step (B=1, I=H) | H | torch µs/step | rnnkit µs/step | ratio |",
                  "|---|---|---|---|---|"]
        for r in res["stream"]:
            lines.append(f"| {r['cell']} | {r['H']} | {_r(r['torch_step_us'])} | {_r(r['rnnkit_step_us'])} | "
                         f"{_ratio(r, 'step_ratio')} |")
        lines.append("")
    if res.get("charlm"):
        r = res["charlm"]
        lines += ["| char-LM training step | torch tokens/s | rnnkit tokens/s | rnnkit/torch tokens/s |",
                  "|---|---|---|---|",
                  f"| emb {r['E']}, {r['layers']}x LSTM {r['H']}, V {r['V']}, batch {r['B']}, bptt {r['T']}, "
                  f"{r['optimizer']} | {r['torch_tokens_per_s']:.0f} | {r['rnnkit_tokens_per_s']:.0f} | "
                  f"{_ratio(r, 'tokens_per_s_ratio')} |", ""]
    return lines


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
    try:
        res.update(_run_sections(cfg, torch, repeats, grid, cells, True, log))
        forced = {k: os.environ[k] for k in NATIVE_UNSET if k in os.environ}
        if forced and cfg.isolate:  # the second set of tables: the environment as set
            log(f"again with the environment as set: {forced}")
            res["as_set"] = dict(env=forced, **_run_sections(cfg, torch, repeats, grid, cells, False, log))
    finally:
        if limit is not None:
            limit.restore_original_limits()
    res["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    res["machine"]["loadavg_end"] = list(os.getloadavg())
    return res


def _run_sections(cfg: BenchConfig, torch, repeats: int, grid, cells, native: bool, log) -> dict:
    """The configured sections with one pair of sides; ``native``: workers without :data:`NATIVE_UNSET`."""
    res = {}
    sides = make_sides(cfg.isolate, cfg.torch_threads, cfg.blas_threads, native)
    try:
        sides[0].info()  # waits for the torch worker's start (its import of torch) to end before the peak is timed
        res["kernels"] = sides[1].info(peak=native)
        if native:
            res["sgemm_peak_gflops"] = res["kernels"].pop("sgemm_peak_gflops")
        log(f"kernels: {_kernels(res)}" + (f"; sgemm peak {res['sgemm_peak_gflops']:.0f} GFLOP/s" if native else ""))
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
    return res


def write_results(res: dict, cfg: BenchConfig) -> tuple[str, str]:
    os.makedirs(cfg.out_dir, exist_ok=True)
    stamp = res["started"].replace(":", "").replace("-", "")
    path = os.path.join(cfg.out_dir, f"speed-{'quick-' if cfg.quick else ''}{stamp}.json")
    write_output(path, json.dumps(res, indent=1), "json", what="--out-dir")
    md = to_markdown(res)
    if cfg.markdown:
        write_output(cfg.markdown, md + "\n", "markdown", what="--markdown")
    return path, md
