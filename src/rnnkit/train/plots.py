"""Every plot of rnnkit (PNG, matplotlib's Agg canvas, no pyplot state).  Each function returns the
PNG path, or None when matplotlib is not installed (the caller prints one line instead); files
are written atomically (:func:`rnnkit.atomic.write_bytes_atomic`: temp file, fsync, rename;
the mode follows the umask).

* :func:`plot_loss`        train and validation loss from a metrics.jsonl (every ``rnnkit train``)
* :func:`plot_runs`        several runs' validation (solid) and training (dashed) curves in one figure
* :func:`plot_forecast`    truth vs a forecaster's and the naive forecasts, and their errors
* :func:`plot_gradflow`    ||dL/dh_t|| vs distance from the loss, per cell (``rnnkit gradflow``)
* :func:`plot_saturation`  gate saturation scatter (``rnnkit inspect --gates``)
* :func:`plot_attention`   attention weights, source x target (``rnnkit translate --attention-plot``)
* :func:`plot_confusion`   confusion matrix of a classifier (``rnnkit train classify``)
"""
from __future__ import annotations

import io
import os

import numpy as np

from rnnkit.io.outputs import write_output
from rnnkit.train.log import read_metrics


def _figure(**kw):
    """A matplotlib Figure on an Agg canvas, or None without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(**kw)
    FigureCanvasAgg(fig)
    return fig


def displayable(texts) -> list[str]:
    """``texts`` with every character the plot font has no glyph for written as its escape
    (``\\u0d9a``): labels in any script, no matplotlib "Glyph missing" warnings."""
    from matplotlib import font_manager, ft2font

    charmap = ft2font.FT2Font(font_manager.findfont(font_manager.FontProperties())).get_charmap()
    return ["".join(c if ord(c) in charmap or c in "\n\t" else c.encode("unicode_escape").decode("ascii")
                    for c in str(t)) for t in texts]


def _save(fig, png_path, dpi=None) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", **({"dpi": dpi} if dpi else {}))
    write_output(png_path, buf.getbuffer(), "png", what="plot")
    return os.fspath(png_path)


def plot_loss(log_path, png_path, title: str = "Training loss", ylabel: str = "loss (nats/char)"):
    """Train (mean over each log interval) and validation loss from a metrics.jsonl file."""
    fig = _figure(figsize=(7, 4.5), dpi=110)
    if fig is None:
        return None
    recs = read_metrics(log_path)
    train = [(r["step"], r["loss"]) for r in recs if "loss" in r and "event" not in r and isinstance(r["loss"], float)]
    val = [(r["step"], r["val_loss"]) for r in recs if "val_loss" in r]
    ax = fig.add_subplot()
    if train:
        ax.plot(*zip(*train), label="train (mean over log interval)", color="tab:blue", lw=1)
    if val:
        ax.plot(*zip(*val), "o-", label="validation", color="tab:orange", ms=3)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if train or val:
        ax.legend()
    else:  # e.g. --steps 0: an empty plot that says so (and no matplotlib warning about the legend)
        ax.text(0.5, 0.5, "no steps logged yet", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return _save(fig, png_path)


def plot_runs(runs: dict, png_path, title: str, xlabel: str = "optimizer step",
              ylabel: str = "loss (nats/char)", ymax: float | None = None):
    """Compare runs: ``runs`` maps a label to ``(train, val)``, each a list of (step, loss);
    validation solid, training dashed, one colour per run.  None without matplotlib."""
    fig = _figure(figsize=(8, 5), dpi=110)
    if fig is None:
        return None
    ax = fig.add_subplot()
    for k, (label, (train, val)) in enumerate(runs.items()):
        if val:
            ax.plot(*zip(*val), "-", color=f"C{k}", lw=1.6, label=f"{label}: val")
        if train:
            ax.plot(*zip(*train), "--", color=f"C{k}", lw=0.9, alpha=0.8, label=f"{label}: train")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ymax is not None:
        ax.set_ylim(top=ymax)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if runs:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, png_path)


def plot_forecast(X: np.ndarray, Y: np.ndarray, P: np.ndarray, png_path, title: str, ylabel: str = "value"):
    """Windows X (M, W), targets Y (M, K) and the model's forecasts P (M, K), original units:
    truth vs the model's K-step-ahead and the naive last-value forecasts (top), errors (bottom)."""
    fig = _figure(figsize=(9, 6), dpi=110)
    if fig is None:
        return None
    K = Y.shape[1]
    t = np.arange(len(Y))  # time of the first target of each window
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    truth = np.concatenate([Y[:, 0], Y[-1, 1:]])  # values at times 0 .. len(Y) + K - 2
    top.plot(np.arange(len(truth)), truth, color="black", lw=1.5, label="truth")
    top.plot(t + K - 1, P[:, -1], color="tab:blue", lw=1, label=f"model, {K} step{'s' * (K > 1)} ahead")
    top.plot(t + K - 1, X[:, -1], color="tab:gray", lw=1, ls="--", label=f"naive (last value), {K} ahead")
    top.set_ylabel(ylabel)
    top.set_title(title)
    top.legend(loc="upper right", fontsize=8)
    for k, color in ((0, "tab:blue"), (K - 1, "tab:green"))[: 1 + (K > 1)]:
        bottom.plot(t + k, P[:, k] - Y[:, k], color=color, lw=1, label=f"model error, {k + 1} ahead")
    bottom.plot(t, X[:, -1] - Y[:, 0], color="tab:gray", lw=1, ls="--", label="naive error, 1 ahead")
    bottom.axhline(0, color="black", lw=0.5)
    bottom.set_xlabel("time step")
    bottom.set_ylabel("forecast - truth")
    bottom.legend(loc="upper right", fontsize=8)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, png_path)


def plot_gradflow(rows: list[dict], path, T: int):
    """Rows of rnnkit.diagnostics.gradflow_experiment (cell, stage, layer, state, distance, norm):
    two panels (initialisation, after training), log ||dL/dh_t|| vs distance, one line per cell."""
    fig = _figure(figsize=(12, 4.6))
    if fig is None:
        return None
    cells = dict.fromkeys(r["cell"] for r in rows)  # any cell of the registry; the classic three keep their colours
    colours = {c: {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}.get(c, f"C{4 + k}")
               for k, c in enumerate(cells)}
    axes = fig.subplots(1, 2, sharey=True)
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
    return _save(fig, path, dpi=110)


def plot_saturation(sat, path, title: str = "Gate saturation"):
    """A GateSaturation (rnnkit.diagnostics.gates): scatter, one panel per (layer, direction):
    x = fraction of steps < ``sat.low``, y = fraction > ``sat.high``."""
    LD = sat.left.shape[0]
    fig = _figure(figsize=(4.2 * LD, 4.2))
    if fig is None:
        return None
    axes = fig.subplots(1, LD, squeeze=False)
    colours = {"i": "tab:blue", "f": "tab:green", "o": "tab:red", "r": "tab:purple", "z": "tab:orange"}
    names = {"i": "input gate i", "f": "forget gate f", "o": "output gate o", "r": "reset gate r",
             "z": "update gate z"}
    for k, ax in enumerate(axes[0]):
        for gi, g in enumerate(sat.gates):
            ax.scatter(sat.left[k, gi], sat.right[k, gi], s=14, alpha=0.7, color=colours[g], label=names[g])
        ax.plot([0, 1], [1, 0], color="0.8", lw=0.8, zorder=0)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        d = " (reverse)" if k % sat.num_directions else ""
        ax.set_title(f"layer {k // sat.num_directions + 1}{d}")
        ax.set_xlabel(f"fraction of steps left-saturated (gate < {sat.low})")
        ax.set_ylabel(f"fraction of steps right-saturated (gate > {sat.high})")
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(f"{title} (counted over {sat.steps:,} time steps)")
    fig.tight_layout()
    return _save(fig, path, dpi=110)


def plot_attention(weights: np.ndarray, src_tokens, tgt_tokens, png_path, title: str = "Attention"):
    """Heat map of attention weights (n_tgt, n_src): one row per generated target token (y axis),
    one column per source token (x axis); rows sum to 1."""
    n_tgt, n_src = weights.shape
    fig = _figure(figsize=(min(2 + 0.32 * n_src, 16), min(1.8 + 0.32 * n_tgt, 14)), dpi=110)
    if fig is None:
        return None
    ax = fig.add_subplot()
    im = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(n_src), displayable(repr(t)[1:-1] if t.strip() else "␣" for t in src_tokens), rotation=90,
                  fontsize=8)
    ax.set_yticks(range(n_tgt), displayable(repr(t)[1:-1] if t.strip() else "␣" for t in tgt_tokens), fontsize=8)
    ax.set_xlabel("source token")
    ax.set_ylabel("generated token")
    ax.set_title(displayable([title])[0], fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    fig.tight_layout()
    return _save(fig, png_path)


def plot_confusion(matrix: np.ndarray, classes, png_path, title: str = "Confusion matrix"):
    """Confusion matrix (C, C), rows = true class, columns = predicted class; cells show counts,
    colour is the row-normalised share (recall along the diagonal)."""
    C = len(classes)
    fig = _figure(figsize=(2.5 + 0.55 * C, 2 + 0.5 * C), dpi=110)
    if fig is None:
        return None
    m = np.asarray(matrix, dtype=np.float64)
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    ax = fig.add_subplot()
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(C):
        for j in range(C):
            if m[i, j]:
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black")
    classes = displayable(classes)
    ax.set_xticks(range(C), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(C), classes, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(displayable([title])[0], fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label="share of the true class")
    fig.tight_layout()
    return _save(fig, png_path)
