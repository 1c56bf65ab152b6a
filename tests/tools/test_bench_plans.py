"""``rnnkit bench --plans``: one row per grid point with the chosen plan and every candidate's time (a fake
timer makes the choice deterministic; no timing assertions)."""
from rnnkit.bench.plans import plan_rows, plans_markdown
from rnnkit.engine.plans import STRATEGIES, Planner
from rnnkit.engine.threads import use_cores


def test_plan_rows_name_the_fastest_and_print_every_candidate(tmp_path):
    said = []

    def timer(layer, key, candidates):
        return {name: {"batch_shards": 1e-3}.get(name, 2e-3) for name in candidates}

    planner = Planner(str(tmp_path / "plans.json"), timer=timer, log=said.append, load=lambda: 0.0)
    with use_cores(2):
        rows = plan_rows(["lstm", "gru"], [(10, 8, 3, 4), (5, 1, 2, 3)], planner=planner)
    assert [(r["cell"], r["T"], r["B"]) for r in rows] == [("lstm", 10, 8), ("lstm", 5, 1), ("gru", 10, 8),
                                                          ("gru", 5, 1)]
    assert all(r["plan"] == "batch_shards" and set(r["ms"]) == set(STRATEGIES) for r in rows), rows
    text = plans_markdown(rows)
    assert text.count("| **batch_shards** |") == 4 and all(f"{s} ms" in text for s in STRATEGIES), text
    assert "| lstm | 10 | 8 | 3 | 4 | 2 | **batch_shards** | 2.000 | 2.000 | 1.000 | 2.000 |" in text, text
    assert len(said) == 1, said


def test_bench_plans_flag_is_parsed():
    from rnnkit.cli import build_parser

    assert build_parser().parse_args(["bench", "--plans"]).plans is True
    assert build_parser().parse_args(["bench"]).plans is False


def test_gemm_block_rows_list_each_shard_size_both_directions_and_every_candidate():
    from rnnkit.engine import gemm_rows
    from rnnkit.bench.plans import gemm_block_rows, gemm_blocks_markdown

    with use_cores(2):
        rows = gemm_block_rows(["lstm", "gru"], [(10, 40, 3, 16)])  # heuristic: two shards of 20 rows
    assert [(r["cell"], r["M"], r["direction"]) for r in rows] == [
        ("lstm", 20, "forward"), ("lstm", 20, "backward"), ("gru", 20, "forward"), ("gru", 20, "backward")]
    # 20 x 16 x 64 multiply-adds: a small product, so one BLAS call against the micro-kernel (no blocks)
    assert all(set(r["us"]) == {0, gemm_rows.PACKED} and r["chosen"] in r["us"] for r in rows), rows
    text = gemm_blocks_markdown(rows)
    assert text.count("\n| lstm | 40 | 16 | 20 |") == 2 and "each candidate (rows: us)" in text, text
