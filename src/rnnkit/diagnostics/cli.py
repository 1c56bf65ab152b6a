"""Command line of the diagnostics: ``rnnkit gradflow`` and ``rnnkit inspect``.

``rnnkit gradflow --cell rnn,lstm,gru --T 200``
    For each cell: an adding-problem model (rnnkit.tasks.longlag.AddingTask),
    gradient norms ||dL/dh_t|| (and ||dL/dc_t||) vs distance from the loss on a
    fixed batch, at initialisation and after ``--steps`` Adam steps; writes
    ``gradflow.png`` and ``gradflow.csv`` into ``--out-dir``.

``rnnkit inspect CKPT --text FILE --cell N [--layer L] [--what c|h] [--out page.html]``
    A self-contained HTML page colouring FILE's characters by tanh(c) (or h)
    of unit N of layer L of a char-LM checkpoint, with a unit browser and the
    most interpretable units; ``--gates PREFIX`` also writes gate saturation
    statistics (PREFIX.png/.csv/.json) over the same text.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from ..layers import LAYERS

# ----------------------------------------------------------------------------- gradflow


@dataclass(frozen=True)
class GradFlowConfig:
    """Settings of ``rnnkit gradflow`` (one flag per field)."""

    cells: tuple = tuple(LAYERS)
    T: int = 200
    steps: int = 200
    batch: int = 20
    measure_batch: int = 64
    hidden: int = 32
    lr: float = 3e-3
    forget_bias: float | None = 3.0
    seed: int = 0
    out_dir: str = "runs/gradflow"

    def __post_init__(self):
        for c in self.cells:
            if c not in LAYERS:
                raise UserError(f"--cell: expected a comma list of rnn, lstm, gru, got {c!r}")
        if not self.cells:
            raise UserError("--cell: expected at least one of rnn, lstm, gru")
        if self.T < 11:
            raise UserError(f"--T: expected an integer >= 11 (adding problem), got {self.T}")
        for name in ("steps", "batch", "measure_batch", "hidden"):
            if getattr(self, name) < (0 if name == "steps" else 1):
                raise UserError(f"--{name.replace('_', '-')}: expected a positive integer, got {getattr(self, name)}")
        if not self.lr > 0:
            raise UserError(f"--lr: expected a number > 0, got {self.lr}")


def adding_flow(task, batch):
    """Gradient flow of an AddingTask's model on one AddingBatch (loss read at each row's last step).

    The same loss and gradients as ``task.loss_and_backward(batch)`` (added into
    ``task.model.grads``; zero them afterwards if this was only a measurement).
    """
    from ..cells import sigmoid
    from ..losses import mse
    from .gradflow import gradient_flow

    model = task.model
    rows = np.arange(batch.x.shape[1])
    last = batch.lengths - 1

    def loss_fn(out):
        h_last = out[last, rows]  # (B, H): out_t = h_t at each row's last valid step
        o = sigmoid(model.head(h_last))[:, 0]
        loss, do = mse(o, batch.target)
        d_out = np.zeros_like(out)
        d_out[last, rows] = model.head.backward((do * o * (1.0 - o))[:, None])  # sigma' = o(1-o)
        return loss, d_out

    return gradient_flow(model.rnn, batch.x, loss_fn, lengths=batch.lengths)


def run_gradflow(cfg: GradFlowConfig, progress=print) -> list[dict]:
    """Measure, train, measure for every cell; returns CSV rows (see :func:`write_gradflow_csv`)."""
    from ..data.longlag import adding_batch
    from ..optim import Adam, clip_grad_norm
    from ..tasks.longlag import AddingConfig, AddingTask

    rows = []
    for cell in cfg.cells:
        task = AddingTask(AddingConfig(T=cfg.T, cell=cell, hidden=cfg.hidden, batch=cfg.batch, lr=cfg.lr,
                                       forget_bias=cfg.forget_bias, seed=cfg.seed))
        probe = adding_batch(np.random.default_rng([cfg.seed, 7]), cfg.T, cfg.measure_batch)
        rng = np.random.default_rng([cfg.seed, 3])
        opt = Adam(task.model.params, task.model.grads, lr=cfg.lr)
        for stage in ("init", "trained"):
            if stage == "trained":
                for _ in range(cfg.steps):
                    b, _ = task.train_batch(rng, None)
                    task.model.zero_grad()
                    task.loss_and_backward(b, None)
                    clip_grad_norm(task.model.grads, task.config.clip)
                    opt.step()
            flow = adding_flow(task, probe)
            task.model.zero_grad()
            fields = ("h", "c") if flow.c_sq is not None else ("h",)
            for field in fields:
                norms = flow.by_distance(field)
                for k in range(norms.shape[0]):
                    for dist in range(int(flow.lengths.min())):
                        rows.append(dict(cell=cell, stage=stage, sequences=0 if stage == "init" else cfg.steps * cfg.batch,
                                         layer=k, state=field, distance=dist, norm=float(norms[k, dist]),
                                         loss=flow.loss))
            progress(f"gradflow: {cell} {stage}: loss {flow.loss:.4f}, ||dL/dh|| at distance 0: "
                     f"{flow.by_distance('h')[0, 0]:.3e}, at {int(flow.lengths.min()) - 1}: "
                     f"{flow.by_distance('h')[0, int(flow.lengths.min()) - 1]:.3e}")
    return rows


def write_gradflow_csv(rows: list[dict], path) -> None:
    """Columns: cell, stage (init|trained), sequences, layer, state (h|c), distance, norm, loss."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def plot_gradflow(rows: list[dict], path, T: int) -> None:
    """Two panels (initialisation, after training): log ||dL/dh_t|| vs distance, one line per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    for ax, stage in zip(axes, ("init", "trained")):
        sel = [r for r in rows if r["stage"] == stage and r["layer"] == 0]
        seqs = max((r["sequences"] for r in sel), default=0)
        for cell in dict.fromkeys(r["cell"] for r in sel):
            for field, style in (("h", "-"), ("c", "--")):
                pts = [(r["distance"], r["norm"]) for r in sel if r["cell"] == cell and r["state"] == field]
                if not pts:
                    continue
                d, n = (np.array(v, dtype=np.float64) for v in zip(*pts))
                label = f"{cell.upper()} ‖∂L/∂h_t‖" if field == "h" else f"{cell.upper()} ‖∂L/∂c_t‖"
                zero = n == 0  # underflowed to exactly 0 in the model's float32 BPTT
                if zero.any():
                    k = int(np.argmax(zero))
                    label += f" (exactly 0 from distance {int(d[k])})"
                ax.semilogy(d, np.where(zero, np.nan, n), style, color=colours[cell], label=label, lw=1.6)
                if zero.any() and k > 0:
                    ax.plot([d[k - 1]], [n[k - 1]], "x", color=colours[cell], ms=8)
        ax.set_title("at initialisation" if stage == "init" else f"after training on {seqs:,} sequences")
        ax.set_xlabel("distance from the loss, T_b − 1 − t (time steps)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("gradient norm (Frobenius over batch × units; log scale)")
    fig.suptitle(f"Gradient flow through time, adding problem T = {T} (loss at the last step)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def gradflow_main(args) -> int:
    cfg = GradFlowConfig(cells=tuple(c.strip() for c in args.cell.split(",") if c.strip()), T=args.T,
                         steps=args.steps, batch=args.batch, measure_batch=args.measure_batch,
                         hidden=args.hidden, lr=args.lr, forget_bias=args.forget_bias, seed=args.seed,
                         out_dir=args.out_dir)
    os.makedirs(cfg.out_dir, exist_ok=True)
    rows = run_gradflow(cfg)
    csv_path, png_path = os.path.join(cfg.out_dir, "gradflow.csv"), os.path.join(cfg.out_dir, "gradflow.png")
    write_gradflow_csv(rows, csv_path)
    plot_gradflow(rows, png_path, cfg.T)
    print(f"wrote {png_path} and {csv_path}")
    return 0


# ----------------------------------------------------------------------------- inspect


def charlm_activations(lm, text: str, layer: int, what: str) -> np.ndarray:
    """(N, H) tanh(c_t) (``what='c'``, LSTM) or h_t of ``layer`` (0-based) after each character.

    Streams the text through ``rnn.step`` from a zero state, one character at a time.
    """
    rnn = lm.model.rnn
    is_lstm = "c" in rnn.cell.State._fields
    if what not in ("c", "h"):
        raise UserError(f"--what: expected c or h, got {what!r}")
    if what == "c" and not is_lstm:
        raise UserError(f"--what c: the checkpoint's cell is {lm.config.cell}, which has no cell state; use --what h")
    if not 0 <= layer < rnn.num_layers:
        raise UserError(f"--layer: expected 1..{rnn.num_layers} (the model has {rnn.num_layers} layers), "
                        f"got {layer + 1}")
    ids = lm.vocab.encode(text, "--text")
    E = lm.model.emb.params["weight"]
    out = np.empty((len(ids), rnn.hidden_size))
    state = None
    for k, i in enumerate(ids):
        _, state = rnn.step(E[i : i + 1], state)
        if is_lstm:
            out[k] = np.tanh(state.c[layer, 0]) if what == "c" else state.h[layer, 0]
        else:
            out[k] = state[layer, 0]
    return out


def charlm_gate_saturation(lm, text: str):
    """Gate saturation of a char-LM over ``text`` (one sequence)."""
    from .gates import gate_saturation

    ids = lm.vocab.encode(text, "--text")
    rnn = lm.model.rnn
    sat = gate_saturation(rnn, [(lm.model.emb.params["weight"][ids][:, None, :], None)])
    rnn.release()  # inference only: free the tape and buffers
    return sat


def inspect_main(args) -> int:
    from ..tasks.charlm import CharLM
    from .inspect_page import build_page

    try:
        with open(args.text, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise UserError(f"--text: cannot read {args.text!r}: {e.strerror}") from None
    if args.max_chars < 1:
        raise UserError(f"--max-chars: expected an integer >= 1, got {args.max_chars}")
    text = text[: args.max_chars]
    if not text:
        raise UserError(f"--text: {args.text!r} is empty")
    lm = CharLM.load(args.checkpoint)
    H = lm.model.rnn.hidden_size
    if not 0 <= args.cell < H:
        raise UserError(f"--cell: expected a unit in 0..{H - 1}, got {args.cell}")
    layer = args.layer - 1
    acts = charlm_activations(lm, text, layer, args.what)
    label = "tanh(c)" if args.what == "c" else "h"
    names = [f"layer {args.layer} {label}[{j}]" for j in range(H)]
    page = build_page(text, acts, names, title=f"{label} of layer {args.layer}: {os.path.basename(args.checkpoint)}",
                      initial=args.cell,
                      subtitle=f"{lm.config.cell.upper()} {lm.config.layers}x{H} char-LM, text {args.text!r}.")
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({len(text)} characters, {H} units, showing unit {args.cell})")
    if args.gates:
        from .gates import plot_saturation, write_saturation

        if lm.config.cell == "rnn":
            raise UserError("--gates: the checkpoint's cell is rnn, which has no gates")
        sat = charlm_gate_saturation(lm, text)
        write_saturation(sat, args.gates + ".csv", args.gates + ".json")
        plot_saturation(sat, args.gates + ".png", title=f"Gate saturation, {lm.config.cell.upper()} char-LM")
        print(f"wrote {args.gates}.png, .csv, .json")
    return 0


# ----------------------------------------------------------------------------- registration


def register_cli(root_subparsers, train_subparsers=None) -> None:
    """Add ``gradflow`` and ``inspect`` to the root command."""
    from ..cli import nonneg_int, positive_float
    from ..tasks.longlag import forget_bias_arg

    d = GradFlowConfig()
    p = root_subparsers.add_parser("gradflow", help="gradient norm vs distance from the loss (adding problem)",
                                   description="Per-step ||dL/dh_t|| (and ||dL/dc_t||) from the BPTT pass, "
                                               "at initialisation and after brief training; PNG + CSV.")
    p.add_argument("--cell", default=",".join(d.cells), help="comma list of rnn, lstm, gru (default: all)")
    p.add_argument("--T", type=int, default=d.T, help=f"adding-problem lag T (default {d.T})")
    p.add_argument("--steps", type=int, default=d.steps, help=f"training steps between the two measurements (default {d.steps})")
    p.add_argument("--batch", type=int, default=d.batch, help=f"training batch size (default {d.batch})")
    p.add_argument("--measure-batch", type=int, default=d.measure_batch,
                   help=f"sequences in the fixed measurement batch (default {d.measure_batch})")
    p.add_argument("--hidden", type=int, default=d.hidden, help=f"hidden units (default {d.hidden})")
    p.add_argument("--lr", type=positive_float, default=d.lr, help=f"Adam learning rate (default {d.lr})")
    p.add_argument("--forget-bias", type=forget_bias_arg, default=d.forget_bias,
                   help=f"LSTM forget / GRU update gate bias (default {d.forget_bias})")
    p.add_argument("--seed", type=nonneg_int, default=d.seed, help="seed of weights and data (default 0)")
    p.add_argument("--out-dir", default=d.out_dir, help=f"output folder (default {d.out_dir}/)")
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
                   help="also write gate saturation over the text to PREFIX.png/.csv/.json (LSTM, GRU)")
    q.set_defaults(func=inspect_main)
