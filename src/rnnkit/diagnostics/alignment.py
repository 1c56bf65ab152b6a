"""Does a dates model (``rnnkit train seq2seq`` on the default corpus) look where it should?

The numbers behind ``rnnkit translate --attention-plot``: for held-out dates whose source writes
the year with its four digits exactly once ("3 March 1998", "19980303", not "03/03/98"), the
attention rows of the four year digits of a correct output ("1998-03-03") are summed over the
four source positions of the year.  A model that aligns puts most of that mass there; a model
that spreads its attention evenly puts about 4 / (source length) there.

    year_attention(task, split="test", n=300) -> {"mass": mean mass on the year, "uniform":
        mean 4 / source length (the even-spread baseline), "dates": dates measured}
"""
from __future__ import annotations

import numpy as np


def year_attention(task, split: str = "test", n: int = 300) -> dict:
    """See the module docstring; ``task``: a Seq2SeqTask with character tokens on the dates corpus."""
    if task.config.tokens != "char" or task.config.src is not None or task.config.pairs is not None:
        raise ValueError("task: expected a character-level model of the default dates corpus")
    data = task.data[split]
    picked = []
    for k in range(len(data.refs)):
        src = task.src_tok.detokenize(task.src_vocab.decode(data.src_ids[k]))
        year = data.refs[k][:4]
        if src.count(year) == 1:
            picked.append((k, src.index(year)))
        if len(picked) == n:
            break
    hyps = task.decode([data.src_ids[k] for k, _ in picked])
    mass, uniform = [], []
    for (k, at), h in zip(picked, hyps):
        if task._string(h) != data.refs[k]:  # only correct outputs: their first four tokens are the year
            continue
        mass.append(float(h.attention[:4, at:at + 4].sum(axis=1).mean()))
        uniform.append(4.0 / h.attention.shape[1])
    return {"mass": float(np.mean(mass)) if mass else 0.0, "uniform": float(np.mean(uniform)) if uniform else 0.0,
            "dates": len(mass)}
