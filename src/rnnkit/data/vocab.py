"""Token vocabularies with special tokens for sequence-to-sequence and classification models.

    ids 0..3 are the specials  <pad>=0, <unk>=1, <bos>=2, <eos>=3;
    ids 4.. are the tokens seen at least ``min_freq`` times in the training
    data, ordered by frequency (most frequent first), ties by the token string
    (Python's code-point order) -- deterministic for the same data.

``encode`` maps unknown tokens to <unk>; ``decode`` maps ids back to tokens,
by default stopping at the first <eos> and dropping <pad>/<bos>.
``to_dict``/``from_dict`` give a JSON-able form for checkpoint metadata.

(The char-LM's ``data.text.Vocab`` is a different, simpler thing: the sorted
characters of one text, no specials -- a language model never sees <unk>.)
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from rnnkit.errors import CheckpointError

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")


@dataclass(frozen=True)
class TokenVocab:
    """``tokens[i]`` is the token of id ``i``; ``tokens[:4] == SPECIALS``."""

    tokens: tuple
    min_freq: int = 1
    PAD: ClassVar[int] = PAD
    UNK: ClassVar[int] = UNK
    BOS: ClassVar[int] = BOS
    EOS: ClassVar[int] = EOS
    _index: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        tokens = tuple(self.tokens)
        if tokens[: len(SPECIALS)] != SPECIALS:
            raise ValueError(f"tokens: must start with the specials {SPECIALS}, got {tokens[:len(SPECIALS)]}")
        index = {t: i for i, t in enumerate(tokens)}
        if len(index) != len(tokens):
            dup = next(t for t in tokens if tokens.count(t) > 1)
            raise ValueError(f"tokens: {dup!r} appears more than once")
        object.__setattr__(self, "tokens", tokens)
        object.__setattr__(self, "_index", index)

    @classmethod
    def build(cls, sequences, min_freq: int = 1, max_size: int | None = None) -> "TokenVocab":
        """Count the tokens of ``sequences`` (an iterable of token lists; the TRAINING side).

        Keeps tokens seen at least ``min_freq`` times, at most ``max_size``
        of them (the most frequent) if given, after the four specials.
        """
        if not isinstance(min_freq, int) or isinstance(min_freq, bool) or min_freq < 1:
            raise ValueError(f"min_freq: expected a positive integer, got {min_freq!r}")
        if max_size is not None and (not isinstance(max_size, int) or max_size < 0):
            raise ValueError(f"max_size: expected a non-negative integer or None, got {max_size!r}")
        counts = Counter()
        for seq in sequences:
            counts.update(seq)
        kept = sorted((t for t, n in counts.items() if n >= min_freq and t not in SPECIALS),
                      key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[:max_size]
        return cls(SPECIALS + tuple(kept), min_freq)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token) -> bool:
        return token in self._index

    def id(self, token: str) -> int:
        """The id of ``token``, <unk> if unknown."""
        return self._index.get(token, UNK)

    def encode(self, tokens, bos: bool = False, eos: bool = False) -> np.ndarray:
        """Token list -> (n [+1 +1],) int64 ids; unknown tokens -> <unk>; optional <bos> / <eos> around."""
        get = self._index.get
        ids = [BOS] if bos else []
        ids.extend(get(t, UNK) for t in tokens)
        if eos:
            ids.append(EOS)
        return np.array(ids, dtype=np.int64)

    def decode(self, ids, strip: bool = True) -> list[str]:
        """Ids -> tokens.  ``strip``: stop at the first <eos>, drop <pad> and <bos>.

        Raises ValueError for an id outside 0..len-1.
        """
        ids = np.asarray(ids).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            bad = int(ids[(ids < 0) | (ids >= len(self))][0])
            raise ValueError(f"ids: expected token ids in 0..{len(self) - 1}, got {bad}")
        out = []
        for i in ids.tolist():
            if strip and i == EOS:
                break
            if strip and i in (PAD, BOS):
                continue
            out.append(self.tokens[i])
        return out

    def to_dict(self) -> dict:
        """JSON-able: {"specials": [...], "tokens": [ordinary tokens in id order], "min_freq": n}."""
        return {"specials": list(SPECIALS), "tokens": list(self.tokens[len(SPECIALS):]), "min_freq": self.min_freq}

    @classmethod
    def from_dict(cls, d) -> "TokenVocab":
        """Inverse of ``to_dict``; CheckpointError naming the problem for a malformed dict."""
        if not isinstance(d, dict):
            raise CheckpointError(f"vocabulary: expected a dict, got {type(d).__name__}")
        for key in ("specials", "tokens", "min_freq"):
            if key not in d:
                raise CheckpointError(f"vocabulary: missing key {key!r}")
        if list(d["specials"]) != list(SPECIALS):
            raise CheckpointError(f"vocabulary: specials must be {list(SPECIALS)}, got {d['specials']!r}")
        if not isinstance(d["tokens"], list) or not all(isinstance(t, str) for t in d["tokens"]):
            raise CheckpointError("vocabulary: tokens must be a list of strings")
        try:
            return cls(SPECIALS + tuple(d["tokens"]), d["min_freq"])
        except ValueError as e:
            raise CheckpointError(f"vocabulary: {e}") from None
