"""The benchmark harness measures what it says (no timing assertions here)."""
import json

import numpy as np
import pytest

import rnnkit
from conftest import CELLS
from rnnkit.bench.memory import tape_bytes, torch_saved_bytes
from rnnkit.bench.sides import NATIVE_UNSET, Worker, alternate_pairs, alternate_sides, make_sides, pair_ratios
from rnnkit.bench.speed import BenchConfig, bench_charlm, bench_grid_point, bench_stream, to_markdown


def _torch():
    return pytest.importorskip("torch")


def _tape_bytes(layer, x):
    layer.forward(x)
    return tape_bytes(layer.saved_for_backward(), exclude=list(layer.params.values()) + [x])


def test_tape_bytes_is_the_documented_cache():
    T, B, I, H = 5, 2, 3, 4
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    # LSTM: h and c of every step (T+1, B, H), gates (T, B, 4H) formed over xw, tanh(c) (T, B, H)
    assert _tape_bytes(rnnkit.LSTM(I, H, seed=0), x) == 4 * (2 * (T + 1) * B * H + 4 * T * B * H + T * B * H)
    # GRU: h (T+1, B, H), gates (T, B, 3H), hn (T, B, H)
    assert _tape_bytes(rnnkit.GRU(I, H, seed=0), x) == 4 * ((T + 1) * B * H + 3 * T * B * H + T * B * H)
    # Elman RNN: h only
    assert _tape_bytes(rnnkit.RNN(I, H, seed=0), x) == 4 * (T + 1) * B * H


def test_torch_saved_bytes_sees_autograd_saves():
    torch = _torch()
    a = torch.randn(3, 4, requires_grad=True)
    b = torch.randn(4, 5, requires_grad=True)
    # a @ b saves both operands; excluding b leaves a's 48 bytes
    assert torch_saved_bytes(torch, lambda: (a @ b).sum(), exclude=[b]) == 3 * 4 * 4
    assert torch_saved_bytes(torch, lambda: (a @ b).sum()) == (3 * 4 + 4 * 5) * 4


@pytest.mark.slow
@pytest.mark.parametrize("kind", CELLS)
def test_grid_point_compares_equal_computations(kind):
    torch = _torch()
    r = bench_grid_point(torch, kind, 4, 2, 3, 5, repeats=1)
    assert r["max_abs_diff"] < 1e-5
    T, B, H = 4, 2, 5  # the cache counted is the documented tape (parameters and x excluded)
    tape = {"lstm": 2 * (T + 1) * B * H + 4 * T * B * H + T * B * H,
            "gru": (T + 1) * B * H + 3 * T * B * H + T * B * H, "rnn": (T + 1) * B * H}[kind]
    assert r["rnnkit_cache_mb"] * 2**20 == 4 * tape
    for ratio, kit, ref in (("fwd_bwd_ratio", "rnnkit_fwd_bwd_ms", "torch_fwd_bwd_ms"),
                            ("infer_ratio", "rnnkit_infer_ms", "torch_infer_ms"),
                            ("cache_ratio", "rnnkit_cache_mb", "torch_cache_mb")):
        assert 0 < r[kit] < 1e4 and 0 < r[ref] < 1e4, f"{kit}, {ref}: {r[kit]}, {r[ref]}"
        assert r[ratio] == pytest.approx(r[kit] / r[ref], rel=1e-12), f"{ratio} is not {kit} / {ref}"
    for ratio in ("fwd_bwd_ratio", "infer_ratio"):  # one pair: its ratio, which is the ratio of the medians
        assert r[ratio + "_pairs"] == [pytest.approx(r[ratio], rel=1e-12)], f"{ratio}_pairs"
    res = {"machine": {"cpu": "x", "cpu_count": 2, "numpy": "n", "numpy_blas": [], "torch": "t", "torch_threads": 1,
                       "OPENBLAS_CORETYPE": "(unset)", "command": "c"}, "grid": [r]}
    md = to_markdown(res)
    assert f"| {kind} | 4 | 2 | 3 | 5 |" in md
    json.dumps(res)


@pytest.mark.slow
def test_worker_processes_time_the_same_computations():
    """The default harness: each library in its own process, fed the same weights and data."""
    torch = _torch()
    sides = make_sides(True, torch_threads=1, blas_threads=1)
    try:
        assert [s.lib for s in sides] == ["torch", "rnnkit"]
        r = bench_grid_point(torch, "lstm", 3, 2, 3, 4, repeats=1, sides=sides)
        assert r["max_abs_diff"] < 1e-5
        assert r["fwd_bwd_ratio"] == pytest.approx(r["rnnkit_fwd_bwd_ms"] / r["torch_fwd_bwd_ms"], rel=1e-12)
        assert r["infer_ratio"] == pytest.approx(r["rnnkit_infer_ms"] / r["torch_infer_ms"], rel=1e-12)
        s = bench_stream(torch, "gru", 4, repeats=1, steps=3, sides=sides)
        assert s["max_abs_diff"] < 1e-5 and 0 < s["torch_step_us"] < 1e6 and 0 < s["rnnkit_step_us"] < 1e6
        assert s["step_ratio"] == pytest.approx(s["rnnkit_step_us"] / s["torch_step_us"], rel=1e-12)
        # the first training step runs in each worker; the harness compares the two losses
        c = bench_charlm(torch, 1, V=7, E=3, H=4, layers=2, B=2, T=5, sides=sides)
        assert abs(c["first_loss_torch"] - c["first_loss_rnnkit"]) < 1e-5
        assert abs(c["first_loss_torch"] - np.log(7)) < 0.5  # near-uniform predictions at init
        assert c["tokens_per_s_ratio"] == pytest.approx(c["rnnkit_tokens_per_s"] / c["torch_tokens_per_s"], rel=1e-9)
        with pytest.raises(RuntimeError, match="rnnkit worker failed: KeyError"):
            sides[1].run("no such callable", 1)
    finally:
        for s in sides:
            s.close()
    assert not any(s.proc.is_alive() for s in sides)


def test_bench_cli_rejects_bad_flags(capsys):  # before torch is needed
    from rnnkit.cli import main

    assert main(["bench", "--cells", "lstm,foo"]) == 2
    assert "--cells" in capsys.readouterr().err
    assert main(["bench", "--repeats", "0"]) == 2
    assert "--repeats" in capsys.readouterr().err
    assert main(["bench", "--gap", "-1"]) == 2
    assert "--gap" in capsys.readouterr().err
    from rnnkit.cli import build_parser

    args = build_parser().parse_args(["bench"])  # the flags' defaults are BenchConfig's
    d = BenchConfig()
    got = (args.suite, args.repeats, args.torch_threads, args.gap, args.out_dir, args.seed, args.blas_threads)
    assert got == ("speed", d.repeats, d.torch_threads, d.gap, d.out_dir, d.seed, d.blas_threads), got
    assert d.out_dir == "runs/bench", "rnnkit bench writes to runs/bench by default, never into the source tree"


class _FakeSide:
    """A side whose ``run`` returns the next of the given times and records the calls."""

    def __init__(self, name, times, calls):
        self.name, self.times, self.calls = name, list(times), calls

    def run(self, fn, n, warm=1):
        self.calls.append((self.name, n, warm))
        return self.times.pop(0)


def test_alternate_sides_times_a_b_a_b_and_returns_medians():
    calls = []
    # per side: warm-up (n=2, warm 0), one probe call for the block size, then 3 timed blocks
    a = _FakeSide("a", [9.0, 0.004, 3.0, 1.0, 2.0], calls)
    b = _FakeSide("b", [9.0, 0.001, 5.0, 7.0, 6.0], calls)
    ta, tb = alternate_sides(a, b, "f", repeats=3, min_time=0.02, warm_time=0.1)
    assert (ta, tb) == (2.0, 6.0)  # medians of the timed blocks only
    # blocks repeat the call to last min_time: ceil(0.02 / 0.004) = 5 and ceil(0.02 / 0.001) = 20, after
    # untimed calls lasting warm_time: ceil(0.1 / 0.004) = 25 and ceil(0.1 / 0.001) = 100; A B A B
    block = [("a", 5, 25), ("b", 20, 100)]
    assert calls == [("a", 2, 0), ("b", 2, 0), ("a", 1, 1), ("b", 1, 1)] + block * 3


def test_alternate_pairs_returns_each_pair_and_their_ratios():
    calls = []
    a = _FakeSide("a", [9.0, 0.004, 1.0, 2.0, 4.0, 1.0, 2.0], calls)
    b = _FakeSide("b", [9.0, 0.004, 1.0, 3.0, 2.0, 4.0, 5.0], calls)
    ta, tb = alternate_pairs(a, b, "f", repeats=5, min_time=0.02, warm_time=0.1)
    assert (ta, tb) == ([1.0, 2.0, 4.0, 1.0, 2.0], [1.0, 3.0, 2.0, 4.0, 5.0])
    assert pair_ratios(ta, tb) == [1.0, 1.5, 0.5, 4.0, 2.5]


def test_alternate_sides_warms_each_block_at_least_once():
    calls = []
    a = _FakeSide("a", [1.0, 0.5, 0.5], calls)
    b = _FakeSide("b", [1.0, 0.5, 0.5], calls)
    alternate_sides(a, b, "f", repeats=1, min_time=0.0, warm_time=0.0)
    assert calls[-2:] == [("a", 1, 1), ("b", 1, 1)], "a timed block with no warm-up call would time waking threads"


def test_bench_longlag_suite_runs_from_the_cli(capsys):
    from rnnkit.cli import main

    assert main(["bench", "longlag", "--tasks", "adding", "--T", "12", "--cells", "lstm", "--seeds", "1",
                 "--budget", "40", "--eval-every", "20"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("`rnnkit bench longlag --tasks adding --T 12 --cells lstm --seeds 1 --budget 40")
    row = [line for line in out.splitlines() if line.startswith("| adding | 12 | lstm |")]
    assert len(row) == 1 and "not solved within 40" in row[0]


@pytest.mark.slow
def test_native_workers_start_without_the_variables_that_force_kernels(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "1048576")
    workers = [Worker("rnnkit", 1, 1, native=True), Worker("rnnkit", 1, 1, native=False)]
    try:
        native, as_set = (w.info() for w in workers)
    finally:
        for w in workers:
            w.close()
    assert native["env"] == {k: None for k in NATIVE_UNSET}
    assert as_set["env"] == {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "1048576"}
    import os
    assert os.environ["OPENBLAS_CORETYPE"] == "Haswell", "the parent's environment was not restored"
    assert any(b["internal_api"] == "openblas" and b["architecture"] for b in native["blas"])
    assert all(b["architecture"] == "Haswell" for b in as_set["blas"] if b["internal_api"] == "openblas")


def test_report_has_peak_fractions_and_the_forced_table():
    r = dict(cell="lstm", T=2, B=1, I=3, H=4, gflop_fwd=0.5, gflop_fwd_bwd=1.5, torch_fwd_bwd_ms=10.0,
             rnnkit_fwd_bwd_ms=15.0, fwd_bwd_ratio=1.5, torch_infer_ms=5.0, rnnkit_infer_ms=2.5, infer_ratio=0.5,
             torch_cache_mb=1.0, rnnkit_cache_mb=0.5, cache_ratio=0.5)
    kernels = {"blas": [{"prefix": "libscipy_openblas", "version": "0.3", "architecture": "SkylakeX", "num_threads": 2}]}
    res = {"machine": {"cpu": "x", "cpu_count": 2, "numpy": "n", "numpy_blas": [], "torch": "t", "torch_threads": 1,
                       "OPENBLAS_CORETYPE": "Haswell", "command": "c"}, "grid": [r], "kernels": kernels,
           "sgemm_peak_gflops": 200.0,
           "as_set": {"env": {"OPENBLAS_CORETYPE": "Haswell"}, "grid": [r], "kernels": kernels}}
    md = to_markdown(res)
    assert "| **1.50** | 5.00 | 2.50 | **0.50** |" in md, "a run without per-pair spreads (older JSON) renders as before"
    r2 = dict(r, fwd_bwd_ratio_pairs=[1.75, 1.25, 1.5], infer_ratio_pairs=[0.5, 0.4, 0.75])
    assert "| **1.50** (1.25-1.75) | 5.00 | 2.50 | **0.50** (0.40-0.75) |" in to_markdown(dict(res, grid=[r2]))
    # fwd+bwd: 1.5 GFLOP in 10 ms = 150 GFLOP/s = 75 % of 200; rnnkit 15 ms: 50 %; inference 50 % / 100 %
    assert md.count("| **0.50** | 75 / 50 | 50 / 100 |") == 2
    assert "### AVX2 forced by this machine's environment (OPENBLAS_CORETYPE=Haswell)" in md
    assert md.count("Kernels the rnnkit worker ran: libscipy_openblas 0.3 SkylakeX (2 threads).") == 2


def test_cell_variants_script_prints_a_ratio_per_variant(capsys):
    """benchmarks/cell_variants.py: one row per cell variant, the plain LSTM's ratio 1.00, ratios = ms / LSTM ms."""
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "cell_variants.py")
    spec = importlib.util.spec_from_file_location("cell_variants", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["--repeats", "1", "3", "2", "3", "4"])
    rows = [r.split("|")[1:-1] for r in capsys.readouterr().out.splitlines() if r.startswith("| 3, 2, 3, 4 |")]
    names = [r[1].strip() for r in rows]
    assert names[:3] == ["LSTM", "LSTM peephole", "LayerNormLSTM"] and len(rows) == 7, names
    assert names[5:] == ["GRU", "GRU linear_before_reset=False"], names
    for col in (2, 4):  # median and minimum: ms, then the ratio to the plain LSTM's
        base = float(rows[0][col])
        assert rows[0][col + 1].strip() == "1.00"
        for r in rows:  # ms printed to 0.01, ratios to 0.01: allow those roundings
            ratio = float(r[col + 1])
            assert abs(ratio - float(r[col]) / base) <= 0.005 + 0.005 * (1 + ratio) / base + 1e-9, r
    with pytest.raises(SystemExit):
        mod.main(["3", "2"])
