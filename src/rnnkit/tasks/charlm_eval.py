"""Evaluation of a char-LM with carried state: the mean loss (nats/char) and bits/char over ids
cut into B streams of L predictions, each read in windows of ``bptt`` steps, the state carried
from one window to the next (rnnkit.tasks.charlm).  :func:`evaluate_file` streams a file of any
size: the same numbers as the text in memory, but read in chunks, never held whole."""
from __future__ import annotations

import contextlib
import math

import numpy as np

from rnnkit.data.text import SPLITS, split_ranges
from rnnkit.data.textfile import TextFile
from rnnkit.errors import UserError
from rnnkit.nn.losses import log_softmax


def streams(n: int, batch: int, split: str) -> tuple[int, int]:
    """(B, L): ``n`` characters evaluated as B streams of L predictions (B <= batch)."""
    if n < 2:
        raise UserError(f"{split}: needs at least 2 characters to evaluate, has {n}")
    B = min(batch, n - 1)
    return B, (n - 1) // B


def evaluate_windows(model, windows, count: int) -> dict:
    """Mean loss over windows (x, y) of ids (t, B), the state carried from one to the next."""
    total, state = 0.0, None
    model.eval()  # no dropout in evaluation (training steps switch it back on)
    for x, y in windows:
        logits, state = model(x, state, need_backward=False)
        logp = log_softmax(logits.astype(np.float64))
        # y C-contiguous: the sum's order (and so its last bit) must not depend on where the ids came from
        total -= float(np.take_along_axis(logp, np.ascontiguousarray(y)[:, :, None], -1).sum())
    loss = total / count
    return {"loss": loss, "bpc": loss / math.log(2), "chars": count}


def evaluate_file(model, vocab, batch: int, bptt: int, path, split: str | None = None,
                  progress: bool = False) -> dict:
    """The loss of ``model`` on a file (the whole file, or its 90/5/5 ``split``), read in chunks
    (:class:`rnnkit.data.textfile.TextFile`: checked whole, characters included, before the
    evaluation starts); ``progress``: a tqdm bar on stderr."""
    from tqdm import tqdm

    if split is not None and split not in SPLITS:
        raise UserError(f"split: expected one of {list(SPLITS)}, got {split!r}")
    f = TextFile(path, alphabet=vocab.chars)
    a, b = (0, len(f)) if split is None else split_ranges(len(f))[split]
    B, L = streams(b - a, batch, split or "text")
    with contextlib.ExitStack() as stack:
        readers = [stack.enter_context(f.reader(a + j * L)) for j in range(B)]
        bar = stack.enter_context(tqdm(total=B * L, unit="char", unit_scale=True, disable=not progress,
                                       leave=False, dynamic_ncols=True))
        last = [r.read(1) for r in readers]  # each stream's previous character: the next window's first input

        def windows():
            for p in range(0, L, bptt):
                t = min(bptt, L - p)
                ids = np.empty((t + 1, B), np.int32)
                for j, r in enumerate(readers):
                    s = last[j] + r.read(t)
                    ids[:, j], last[j] = vocab.encode(s), s[-1]
                bar.update(t * B)
                yield ids[:-1], ids[1:]

        return evaluate_windows(model, windows(), B * L)
