"""``rnnkit gradflow`` and ``rnnkit inspect`` (rnnkit.diagnostics)."""
from __future__ import annotations

import os

from rnnkit.diagnostics.activations import charlm_activations, charlm_gate_saturation
from rnnkit.diagnostics.gates import write_saturation
from rnnkit.diagnostics.gradflow_experiment import GradFlowConfig, run_gradflow, write_gradflow_csv
from rnnkit.diagnostics.inspect_page import build_page
from rnnkit.errors import UserError
from rnnkit.io.outputs import check_output, refuse_earlier_run, write_output
from rnnkit.engine.layer_types import LAYERS
from rnnkit.train.plots import plot_gradflow, plot_saturation
from rnnkit.tasks.charlm import CharLM
from rnnkit.cli.args import forget_bias_arg, nonneg_int, positive_float
from rnnkit.cli.train import claimed


def gradflow_main(args) -> int:
    cfg = GradFlowConfig(cells=tuple(c.strip() for c in args.cell.split(",") if c.strip()), T=args.T,
                         steps=args.steps, batch=args.batch, measure_batch=args.measure_batch,
                         hidden=args.hidden, lr=args.lr, forget_bias=args.forget_bias, seed=args.seed,
                         out_dir=args.out_dir)
    # one writer; a file, /proc or read-only path is one line
    with claimed(cfg.out_dir, "--out-dir", ("gradflow.csv", "gradflow.png")):
        refuse_earlier_run(cfg.out_dir, overwrite=args.overwrite, what="--out-dir")  # before the run
        rows = run_gradflow(cfg)
        csv_path, png_path = os.path.join(cfg.out_dir, "gradflow.csv"), os.path.join(cfg.out_dir, "gradflow.png")
        write_gradflow_csv(rows, csv_path)
        if plot_gradflow(rows, png_path, cfg.T):
            print(f"wrote {png_path} and {csv_path}")
        else:
            print(f"wrote {csv_path} (no {png_path}: matplotlib is not installed)")
    return 0


def gates_prefix(prefix: str) -> str:
    """``--gates PREFIX``: a directory (or a name ending in /) means PREFIX/gates, never hidden files."""
    return os.path.join(prefix, "gates") if prefix.endswith(os.sep) or os.path.isdir(prefix) else prefix


def inspect_main(args) -> int:
    reads = [args.checkpoint, args.text]
    check_output(args.out, "html", reads, what="--out")  # before any work: never over an input or another kind
    gates = gates_prefix(args.gates) if args.gates else None
    for ext, kind in ((".png", "png"), (".csv", "csv"), (".json", "json")) if gates else ():
        check_output(gates + ext, kind, reads, what="--gates")
    try:
        with open(args.text, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise UserError(f"--text: cannot read {args.text!r}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"--text {args.text!r}: not UTF-8 text (byte {raw[e.start]:#04x} at offset {e.start}); "
                        f"convert it, e.g. iconv -f latin1 -t utf-8") from None
    if args.max_chars < 1:
        raise UserError(f"--max-chars: expected an integer >= 1, got {args.max_chars}")
    text = text[: args.max_chars]
    if not text:
        raise UserError(f"--text: {args.text!r} is empty")
    lm = CharLM.load(args.checkpoint)
    layer = args.layer - 1
    acts = charlm_activations(lm, text, layer, args.what)
    H = acts.shape[1]  # units of the field shown (h may be projected)
    if not 0 <= args.cell < H:
        raise UserError(f"--cell: expected a unit in 0..{H - 1}, got {args.cell}")
    label = "tanh(c)" if args.what == "c" else "h"
    names = [f"layer {args.layer} {label}[{j}]" for j in range(H)]
    page = build_page(text, acts, names, title=f"{label} of layer {args.layer}: {os.path.basename(args.checkpoint)}",
                      initial=args.cell,
                      subtitle=f"{lm.config.cell.upper()} {lm.config.layers}x{H} char-LM, text {args.text!r}.")
    write_output(args.out, page, "html", reads, what="--out")
    print(f"wrote {args.out} ({len(text)} characters, {H} units, showing unit {args.cell})")
    if args.gates:
        if lm.model.rnn.cell.forget_gate is None:  # the Elman RNN: no gates
            raise UserError("--gates: the checkpoint's cell is rnn, which has no gates")
        sat = charlm_gate_saturation(lm, text)
        write_saturation(sat, gates + ".csv", gates + ".json")
        png = plot_saturation(sat, gates + ".png", title=f"Gate saturation, {lm.config.cell.upper()} char-LM")
        print(f"wrote {gates}.png, .csv, .json" if png else
              f"wrote {gates}.csv, .json (no .png: matplotlib is not installed)")
    return 0


def register(root_subparsers) -> None:
    """Add ``gradflow`` and ``inspect`` to the root command."""
    d = GradFlowConfig()
    p = root_subparsers.add_parser("gradflow", help="gradient norm vs distance from the loss (adding problem)",
                                   description="Per-step ||dL/dh_t|| (and ||dL/dc_t||) from the BPTT pass, "
                                               "at initialisation and after brief training; PNG + CSV.")
    p.add_argument("--cell", default=",".join(d.cells), help=f"comma list of {', '.join(LAYERS)} (default: all)")
    p.add_argument("--T", type=int, default=d.T, help=f"adding-problem lag T (default {d.T})")
    p.add_argument("--steps", type=int, default=d.steps,
                   help=f"training steps between the two measurements (default {d.steps})")
    p.add_argument("--batch", type=int, default=d.batch, help=f"training batch size (default {d.batch})")
    p.add_argument("--measure-batch", type=int, default=d.measure_batch,
                   help=f"sequences in the fixed measurement batch (default {d.measure_batch})")
    p.add_argument("--hidden", type=int, default=d.hidden, help=f"hidden units (default {d.hidden})")
    p.add_argument("--lr", type=positive_float, default=d.lr, help=f"Adam learning rate (default {d.lr})")
    p.add_argument("--forget-bias", type=forget_bias_arg, default=d.forget_bias,
                   help=f"LSTM forget / GRU update gate bias (default {d.forget_bias})")
    p.add_argument("--seed", type=nonneg_int, default=d.seed, help="seed of weights and data (default 0)")
    p.add_argument("--out-dir", default=d.out_dir, help=f"output folder (default {d.out_dir}/)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the files of an earlier run in --out-dir (without it such a directory is refused)")
    p.set_defaults(func=gradflow_main)

    q = root_subparsers.add_parser("inspect", help="HTML page colouring text by a char-LM unit's activation",
                                   description="Colour each character of a text by tanh(c) (or h) of one unit "
                                               "of a char-LM checkpoint; self-contained HTML.")
    q.add_argument("checkpoint", help="char-LM checkpoint (.safetensors)")
    q.add_argument("--text", required=True, help="UTF-8 text file to colour (characters must be in the vocabulary)")
    q.add_argument("--cell", type=int, default=0, help="unit shown first, 0-based (default 0)")
    q.add_argument("--layer", type=int, default=1, help="layer, 1-based (default 1)")
    q.add_argument("--what", default="c", choices=("c", "h"), help="tanh(c) (LSTM) or h (default c)")
    q.add_argument("--out", default="page.html", help="output HTML file (default page.html)")
    q.add_argument("--max-chars", type=int, default=5000, help="use the first this many characters (default 5000)")
    q.add_argument("--gates", default=None, metavar="PREFIX",
                   help="also write gate saturation over the text to PREFIX.png/.csv/.json (LSTM, GRU); "
                        "a directory: DIR/gates.png/.csv/.json")
    q.set_defaults(func=inspect_main)
