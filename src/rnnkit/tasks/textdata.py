"""What the token-sequence tasks (seq2seq, classify) share: the tokeniser choice and the
length-bucketed batch plan that training carries from step to step.

Tokenisers (``TOKENS``, rnnkit.data.tokenize):

    char    one token per character
    word    ``WORD_PATTERN`` (runs of letters/digits/_, punctuation split off)
    space   whitespace-separated tokens as they are (pre-tokenised corpora: OpenNMT, g2p)
    bpe     byte-level BPE trained on the training side (``bpe_vocab`` pieces)

``lower`` lower-cases a text (``str.lower``) before any tokeniser sees it.

Batch plan.  An epoch is :func:`rnnkit.data.batching.bucket_batches` of the training lengths
(shuffled, sorted in pools, batches shuffled) drawn from the Trainer's rng; the plan lives in
the carry ``{"order": (N,) indices, "bounds": (nb + 1,) batch bounds, "next": (1,) batch}``,
so a checkpoint holds it and a resumed run takes exactly the batches the straight run would.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.batching import bucket_batches
from ..data.tokenize import SPACE_PATTERN, BpeTokenizer, CharTokenizer, WordTokenizer
from ..errors import CheckpointError, UserError
from ..layers import LAYERS
from ..validate import NONNEG_INT, POSITIVE_INT, check, check_choice, check_each

TOKENS = ("char", "word", "space", "bpe")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TextTaskConfig:
    """Tokens, encoder and batch: the fields the seq2seq and classify configs share (``hidden`` per
    direction, ``emb`` the embedding size, ``batch`` examples per step, ``seed`` the weights' and
    the splits' seed)."""

    tokens: str = "char"
    lower: bool = False
    bpe_vocab: int = 2000
    min_freq: int = 1
    cell: str = "lstm"
    layers: int = 1
    hidden: int = 64
    emb: int = 32
    bidirectional: bool = True
    batch: int = 64
    seed: int = 0

    def __post_init__(self):
        check_choice("tokens", self.tokens, TOKENS)
        check_choice("cell", self.cell, sorted(LAYERS))
        check_each(self, POSITIVE_INT, "bpe_vocab", "min_freq", "layers", "hidden", "emb", "batch")
        check("seed", self.seed, NONNEG_INT)
        if self.tokens == "bpe" and self.bpe_vocab <= 256:
            raise ValueError(f"bpe_vocab: expected an integer > 256 (256 byte symbols + merges), got {self.bpe_vocab}")


def build_tokenizer(kind: str, lines, bpe_vocab: int = 2000):
    """A tokeniser of ``kind`` (TOKENS); BPE is trained on ``lines`` (the training side only)."""
    if kind == "char":
        return CharTokenizer()
    if kind == "word":
        return WordTokenizer()
    if kind == "space":
        return WordTokenizer(pattern=SPACE_PATTERN)
    if kind == "bpe":
        return BpeTokenizer.train(lines, bpe_vocab)
    raise ValueError(f"tokens: expected one of {', '.join(TOKENS)}, got {kind!r}")


def normalise(text: str, lower: bool) -> str:
    return text.lower() if lower else text


def next_batch(lengths: np.ndarray, batch: int, rng: np.random.Generator, carry: dict | None):
    """Indices of the next training batch and the new carry (see the module docstring)."""
    if carry is None or int(carry["next"][0]) >= len(carry["bounds"]) - 1:
        batches = bucket_batches(lengths, batch, rng)
        carry = {"order": np.concatenate(batches).astype(np.int64),
                 "bounds": np.cumsum([0] + [len(b) for b in batches]).astype(np.int64),
                 "next": np.zeros(1, dtype=np.int64)}
    k = int(carry["next"][0])
    idx = carry["order"][carry["bounds"][k]: carry["bounds"][k + 1]]
    return idx, {**carry, "next": np.array([k + 1], dtype=np.int64)}


def in_batches(lengths: np.ndarray, size: int):
    """Evaluation order: index arrays of at most ``size`` examples of similar length."""
    return bucket_batches(lengths, size, None)


class TextTask:
    """Members the seq2seq and classify tasks share.  A subclass has ``kind``, ``model``, a ``data``
    property ({"train", "val", "test"} -> its split data) and ``__init__(config, prepared=...)``."""

    def _split(self, split: str):
        if split not in SPLITS:
            raise UserError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
        return self.data[split]

    def state_arrays(self) -> dict:
        return dict(self.model.params)

    @classmethod
    def _restore(cls, arrays: dict, meta: dict, read):
        """The task of a checkpoint: ``read(meta)`` -> (config, prepared) may raise KeyError, TypeError,
        ValueError or AttributeError for bad metadata; parameters that do not fit are a CheckpointError."""
        try:
            config, prepared = read(meta)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"{cls.kind} checkpoint: bad metadata ({type(e).__name__}: {e})") from None
        task = cls(config, prepared=prepared)
        try:
            task.model.load_params(arrays)
        except ValueError as e:
            raise CheckpointError(f"{cls.kind} checkpoint: parameters do not fit the config ({e})") from None
        return task
