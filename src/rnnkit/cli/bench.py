"""``rnnkit bench [speed|longlag]``: flags and handler of the benchmarks in :mod:`rnnkit.bench`."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from rnnkit.bench import speed
from rnnkit.bench.longlag import CELL_NAMES, LongLagBenchConfig, run_bench, table
from rnnkit.bench.plans import gemm_block_rows, gemm_blocks_markdown, plan_rows, plans_markdown
from rnnkit.bench.speed import CELLS, GRID, QUICK_GRID, SUITES, BenchConfig, run_speed, write_results
from rnnkit.errors import UserError
from rnnkit.io.outputs import check_output, write_output
from rnnkit.cli.args import comma_list, nonneg_float, positive_int
from rnnkit.cli.train import claimed


def _handler(args) -> int:
    if args.suite == "longlag":
        return longlag_main(args)
    cells = comma_list(args.cells, CELLS, "--cells")
    if args.plans:  # rnnkit alone, no torch: the plan of each grid point and every candidate's time
        which, grid = (("lstm",) if args.quick else cells), (QUICK_GRID if args.quick else GRID)
        print(plans_markdown(plan_rows(which, grid)))
        print()
        print(gemm_blocks_markdown(gemm_block_rows(which, grid)))
        return 0
    sections = comma_list(args.sections, BenchConfig.sections, "--sections")
    if args.gap > 10:
        raise UserError(f"bench: --gap must be between 0 and 10 seconds, got {args.gap}")
    cfg = BenchConfig(quick=args.quick, cells=cells, repeats=args.repeats, torch_threads=args.torch_threads,
                      blas_threads=args.blas_threads, isolate=not args.same_process, gap=args.gap,
                      out_dir=args.out_dir, markdown=args.markdown, seed=args.seed, sections=sections)
    with claimed(cfg.out_dir, "--out-dir"):  # one bench per results directory (two at once distort the timings)
        res = run_speed(cfg, log=lambda s: print(s, file=sys.stderr, flush=True))
        path, md = write_results(res, cfg)
    print(md)
    print(f"results: {path}", file=sys.stderr)
    return 0


def add_arguments(p) -> None:
    p.add_argument("suite", nargs="?", default="speed", choices=SUITES,
                   help="speed (default): rnnkit vs PyTorch; longlag: adding/copy tasks vs H&S 1997")
    p.add_argument("--quick", action="store_true", help="LSTM on two grid points, 3 repeats")
    p.add_argument("--plans", action="store_true",
                   help="print the thread plan chosen for each grid point and every candidate's time (measured "
                        "now and cached; rnnkit alone), then exit")
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
    p.add_argument("--out-dir", default=BenchConfig.out_dir, help="where the JSON results go (default runs/bench)")
    p.add_argument("--markdown", default=None, help="also write the markdown tables to this file")
    p.add_argument("--seed", type=int, default=BenchConfig.seed)


def register(root_subparsers) -> None:
    """Add ``rnnkit bench [suite]`` to the CLI."""
    p = root_subparsers.add_parser("bench", help="benchmarks: speed vs PyTorch (needs torch), long-lag tasks",
                                   description=speed.__doc__.split("\n\n")[0])
    add_arguments(p)
    add_longlag_args(p.add_argument_group("longlag suite (rnnkit bench longlag; --cells as above)"),
                     cells_flag=False)
    p.set_defaults(func=_handler)


def main(argv=None) -> int:
    """Entry point of benchmarks/bench_rnn.py (same flags as ``rnnkit bench``)."""
    p = argparse.ArgumentParser(prog="bench_rnn.py", description=speed.__doc__.split("\n\n")[0])
    add_arguments(p)
    try:
        return _handler(p.parse_args(argv))
    except UserError as e:
        print(f"bench_rnn.py: error: {e}", file=sys.stderr)
        return 2


# ----------------------------------------------------------------------------- longlag suite
def _ints(s: str) -> tuple:
    try:
        return tuple(int(v) for v in s.split(",") if v.strip())
    except ValueError:
        raise UserError(f"expected a comma list of integers, got {s!r}") from None


def _names(s: str) -> tuple:
    return tuple(v.strip() for v in s.split(",") if v.strip())


def add_longlag_args(parser, cells_flag: bool = True) -> None:
    """Flags of ``rnnkit bench longlag`` (fields of :class:`LongLagBenchConfig`).

    ``cells_flag=False`` leaves out ``--cells`` for a parser that already has it
    (``rnnkit bench`` shares it with the speed suite); None then means the default.
    """
    d = LongLagBenchConfig()
    parser.add_argument("--tasks", default=",".join(d.tasks), help="comma list of adding, copy (default: both)")
    parser.add_argument("--T", default=",".join(map(str, d.T)), help="comma list of lags T (default: 50,100,200)")
    if cells_flag:
        parser.add_argument("--cells", default=None, help=f"comma list of {', '.join(CELL_NAMES)} (default: all)")
    parser.add_argument("--seeds", type=int, default=d.seeds, help=f"seeds per setting (default {d.seeds})")
    parser.add_argument("--budget", type=int, default=d.budget,
                        help=f"training sequences per run (default {d.budget:,}: minutes on a CPU; "
                             "H&S needed 74,000 at T=100)")
    parser.add_argument("--eval-every", type=int, default=d.eval_every,
                        help=f"test every this many training sequences (default {d.eval_every:,})")
    parser.add_argument("--hidden", type=int, default=None, help="hidden units (default: task's, adding 32, copy 64)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: task's, 20)")
    parser.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: task's)")
    parser.add_argument("--forget-bias", type=float, default=None,
                        help="LSTM forget / GRU update gate bias (default: task's, adding +3, copy +1)")
    parser.add_argument("--clip", type=float, default=None, help="gradient-norm clip (default: task's, 1)")
    parser.add_argument("--out", default=None, help="also write the markdown table to this file")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local (default): the runs one after the other here; ray: one Ray task per run "
                             "(same table)")
    parser.add_argument("--cpus", type=positive_int, default=None, help="--engine ray: CPUs of the local Ray")
    parser.add_argument("--address", default=None, help="--engine ray: join a running Ray cluster")
    parser.add_argument("--log", default=None, help="write every evaluation as JSON lines to this file")


def longlag_main(args) -> int:
    """Handler of ``rnnkit bench longlag``: runs, prints the markdown table, returns 0."""
    cells = _names(args.cells) if args.cells else LongLagBenchConfig.cells
    cfg = LongLagBenchConfig(tasks=_names(args.tasks), T=_ints(args.T), cells=cells,
                             seeds=args.seeds, budget=args.budget, eval_every=args.eval_every,
                             hidden=args.hidden, batch=args.batch, lr=args.lr, forget_bias=args.forget_bias,
                             clip=args.clip)
    if args.log:  # appended to: never a file of another kind (a checkpoint given by mistake)
        check_output(args.log, "jsonl", what="--log")
    if args.out:
        check_output(args.out, "markdown" if args.out.endswith(".md") else "text", what="--out")
    log_file = open(args.log, "a") if args.log else None

    def log(rec):
        brief = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in rec.items()}
        print(json.dumps(brief), file=sys.stderr, flush=True)
        if log_file:
            log_file.write(json.dumps(rec) + "\n")
            log_file.flush()

    try:
        results = run_bench(cfg, log, engine=args.engine, cpus=args.cpus, address=args.address)
    finally:
        if log_file:
            log_file.close()
    text = table(results, cfg)
    command = "rnnkit bench longlag " + " ".join(
        f"--{k.replace('_', '-')} {','.join(map(str, v)) if isinstance(v, tuple) else v}"
        for k, v in dataclasses.asdict(cfg).items() if v is not None)
    text = f"`{command}`\n\n{text}\n"
    print(text)
    if args.out:
        write_output(args.out, text, "markdown" if args.out.endswith(".md") else "text", what="--out")
    return 0
