"""Length filters, length-bucketed batches and padded time-major id arrays.

Pipeline for a parallel corpus of N token-id sequences per side:

    keep, report = filter_lengths(src_len, tgt_len, max_src=50, max_tgt=50)
    print(report)            # "kept 8,950 of 9,000 pairs; dropped 50: 40 source longer than 50 ..."
    for idx in bucket_batches(src_len[keep], batch_size=64, rng=rng):
        batch = seq2seq_batch([src[keep[i]] for i in idx], [tgt[keep[i]] for i in idx])

Lengths count tokens without <bos>/<eos>.  Arrays are time-major like the
layers: ids (T, B), lengths (B,), padded with <pad> = 0 after each sequence.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from rnnkit.data.vocab import BOS, EOS, PAD


@dataclass(frozen=True)
class FilterReport:
    """How many pairs a length filter kept and dropped, by reason.

    A dropped pair is counted once, under the first reason that applies, in
    this order: empty source, empty target, source too long, target too long.
    """

    total: int
    kept: int
    empty_src: int
    empty_tgt: int
    long_src: int
    long_tgt: int
    max_src: int | None
    max_tgt: int | None

    @property
    def dropped(self) -> int:
        return self.total - self.kept

    def __str__(self) -> str:
        s = f"kept {self.kept:,} of {self.total:,} pairs"
        if not self.dropped:
            return s
        parts = [f"{self.empty_src:,} empty source", f"{self.empty_tgt:,} empty target"]
        if self.max_src is not None:
            parts.append(f"{self.long_src:,} source longer than {self.max_src} tokens")
        if self.max_tgt is not None:
            parts.append(f"{self.long_tgt:,} target longer than {self.max_tgt} tokens")
        return f"{s}; dropped {self.dropped:,}: " + ", ".join(parts)


def _lengths(name: str, a) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
        raise ValueError(f"{name}: expected a 1-d array of integer lengths, got shape {a.shape} dtype {a.dtype}")
    if a.size and a.min() < 0:
        raise ValueError(f"{name}: lengths must be >= 0, got {int(a.min())}")
    return a.astype(np.int64)


def _limit(name: str, v):
    if v is not None and (not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1):
        raise ValueError(f"{name}: expected a positive integer or None, got {v!r}")
    return v


def filter_lengths(src_len, tgt_len, max_src: int | None = None, max_tgt: int | None = None):
    """Drop pairs with an empty side or a side over its limit (None = no limit).

    src_len, tgt_len: (N,) token counts.  Returns (keep, report): ``keep`` the
    (K,) int64 indices of the kept pairs in their original order, ``report`` a FilterReport.
    """
    s, t = _lengths("src_len", src_len), _lengths("tgt_len", tgt_len)
    if s.shape != t.shape:
        raise ValueError(f"src_len, tgt_len: expected the same number of pairs, got {s.size} and {t.size}")
    max_src, max_tgt = _limit("max_src", max_src), _limit("max_tgt", max_tgt)
    empty_s = s == 0
    empty_t = (t == 0) & ~empty_s
    left = ~(empty_s | empty_t)
    long_s = left & (s > max_src) if max_src is not None else np.zeros_like(left)
    left &= ~long_s
    long_t = left & (t > max_tgt) if max_tgt is not None else np.zeros_like(left)
    left &= ~long_t
    keep = np.flatnonzero(left)
    report = FilterReport(int(s.size), int(keep.size), int(empty_s.sum()), int(empty_t.sum()),
                          int(long_s.sum()), int(long_t.sum()), max_src, max_tgt)
    return keep, report


def bucket_batches(lengths, batch_size: int, rng: np.random.Generator | None = None, pool: int = 50):
    """Split examples 0..N-1 into batches of similar length; every index appears exactly once.

    Training (``rng`` given): shuffle the examples, cut them into pools of
    ``pool * batch_size``, sort each pool by length (stable), cut each pool
    into batches of ``batch_size`` (the last batch of a pool may be smaller),
    then shuffle the order of all batches.  Evaluation (``rng=None``): sort
    all examples by length (stable, so ties keep their order) and cut.

    lengths: (N,) sort keys, e.g. source lengths.  Returns a list of int64 index arrays.
    """
    n = _lengths("lengths", lengths)
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    if not isinstance(pool, (int, np.integer)) or isinstance(pool, bool) or pool < 1:
        raise ValueError(f"pool: expected a positive integer (batches per sorting pool), got {pool!r}")
    if rng is None:
        order = np.argsort(n, kind="stable")
        return [order[k:k + batch_size] for k in range(0, n.size, batch_size)]
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator or None, got {type(rng).__name__}")
    perm = rng.permutation(n.size)
    batches = []
    size = pool * batch_size
    for p in range(0, n.size, size):
        chunk = perm[p:p + size]
        chunk = chunk[np.argsort(n[chunk], kind="stable")]
        batches.extend(chunk[k:k + batch_size] for k in range(0, chunk.size, batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def pad_time_major(seqs, pad: int = PAD):
    """List of B non-empty 1-d id arrays -> (ids (T, B) int64 padded with ``pad``, lengths (B,) int64),
    T = max length."""
    if not len(seqs):
        raise ValueError("seqs: expected at least one sequence, got none")
    lengths = np.array([len(q) for q in seqs], dtype=np.int64)
    if lengths.min() < 1:
        raise ValueError(f"seqs[{int(np.argmin(lengths))}]: empty sequence; filter empty sequences first")
    ids = np.full((int(lengths.max()), len(seqs)), pad, dtype=np.int64)
    for b, q in enumerate(seqs):
        ids[: lengths[b], b] = q
    return ids, lengths


class Seq2SeqBatch(NamedTuple):
    """One padded batch for teacher forcing (time-major, <pad> = 0 after each sequence).

    src (S, B), src_lengths (B,): the source ids;
    tgt_in (T, B): <bos> y_1 .. y_n, the decoder input;
    tgt_out (T, B): y_1 .. y_n <eos>, the targets;
    tgt_mask (T, B) bool: True on the n + 1 real target positions;
    tgt_lengths (B,): n + 1;  T = max n + 1.
    """

    src: np.ndarray
    src_lengths: np.ndarray
    tgt_in: np.ndarray
    tgt_out: np.ndarray
    tgt_mask: np.ndarray
    tgt_lengths: np.ndarray


def seq2seq_batch(src_seqs, tgt_seqs) -> Seq2SeqBatch:
    """B source and B target id sequences (without specials, non-empty) -> Seq2SeqBatch."""
    if len(src_seqs) != len(tgt_seqs):
        raise ValueError(f"src_seqs, tgt_seqs: expected the same batch size, got {len(src_seqs)} and {len(tgt_seqs)}")
    src, src_lengths = pad_time_major(src_seqs)
    tgt_in, tgt_lengths = pad_time_major([np.concatenate(([BOS], np.asarray(y, np.int64))) for y in tgt_seqs])
    tgt_out, _ = pad_time_major([np.concatenate((np.asarray(y, np.int64), [EOS])) for y in tgt_seqs])
    tgt_mask = np.arange(tgt_in.shape[0])[:, None] < tgt_lengths[None, :]
    return Seq2SeqBatch(src, src_lengths, tgt_in, tgt_out, tgt_mask, tgt_lengths)
