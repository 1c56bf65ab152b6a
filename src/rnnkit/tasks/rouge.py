"""Summary metrics: ROUGE-1/2/L F1 through Google's ``rouge-score`` (stemming on) over several
references, and the repetition rate.

With R references per document, each hypothesis is scored against each reference
(``RougeScorer.score``, F-measure); ``mean`` averages the R scores, ``max`` takes the best one
(``RougeScorer.score_multi``'s convention), then both are averaged over the documents and given
in points (x 100).  With one reference the two are equal.

Repetition: the share of summaries that contain some word trigram twice (the tokens the model
produced), See et al. 2017's measure of the problem coverage addresses.
"""
from __future__ import annotations

import numpy as np

from rnnkit.errors import UserError

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
LABELS = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L"}


def scorer():
    """rouge_score's RougeScorer for ROUGE-1/2/L with the Porter stemmer; a UserError without the package."""
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise UserError("ROUGE needs Google's rouge-score package: pip install 'rnnkit[summarize]' "
                        "(or pip install rouge-score)") from None
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge(hyps, refs) -> dict:
    """hyps: N strings; refs: N tuples of reference strings -> {"mean": {type: F1 points}, "max": {...}}."""
    if len(hyps) != len(refs) or not len(hyps):
        raise ValueError(f"hyps, refs: expected the same non-zero number of documents, got {len(hyps)} and {len(refs)}")
    sc = scorer()
    per = np.zeros((2, len(hyps), len(ROUGE_TYPES)))  # mean, max
    for n, (h, rs) in enumerate(zip(hyps, refs)):
        f = np.array([[s[t].fmeasure for t in ROUGE_TYPES] for s in (sc.score(r, h) for r in rs)])  # (R, 3)
        per[0, n], per[1, n] = f.mean(axis=0), f.max(axis=0)
    avg = 100.0 * per.mean(axis=1)
    return {agg: dict(zip(ROUGE_TYPES, map(float, avg[k]))) for k, agg in enumerate(("mean", "max"))}


def rouge_line(scores: dict) -> str:
    """``ROUGE-1 x ROUGE-2 y ROUGE-L z`` of one {type: points} dict."""
    return " ".join(f"{LABELS[t]} {scores[t]:.2f}" for t in ROUGE_TYPES)


def has_repeat(tokens, n: int = 3) -> bool:
    """True if some n-gram of ``tokens`` occurs twice."""
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) != len(set(grams))


def repetition_rate(token_lists, n: int = 3) -> float:
    """The share (0..1) of token sequences with a repeated n-gram."""
    return float(np.mean([has_repeat(list(t), n) for t in token_lists])) if len(token_lists) else 0.0
