"""Tokenisers: characters, words (a regex), subwords (byte-level BPE via the ``tokenizers`` library).

Every tokeniser maps a string to a list of token strings and back:

    tok.tokenize("Hello, world!")       # word: ["Hello", ",", "world", "!"]
    tok.detokenize(tokens) -> str
    tok.to_dict() / tokenizer_from_dict(d)   # JSON-able, stored in checkpoint metadata

Round trips (``detokenize(tokenize(s))``):

* ``CharTokenizer``: every character is a token; exact for any string.
* ``WordTokenizer``: tokens are the matches of ``pattern``, by default
  ``WORD_PATTERN = r"\\w+|[^\\w\\s]"`` -- a run of Unicode letters, digits and
  underscores, or one single other non-space character (so punctuation and
  symbols are split off: "don't." -> ["don", "'", "t", "."]).  Whitespace is
  dropped.  Optional lower-casing (``str.lower``) before matching.
  ``SPACE_PATTERN = r"\\S+"`` keeps whitespace-separated tokens as they are
  (for corpora that come tokenised, such as OpenNMT's).  Detokenisation joins
  the tokens with one space, so the documented round trip is
  ``tokenize(detokenize(t)) == t`` for every token list ``t`` that ``tokenize``
  produced, and ``detokenize(tokenize(s)) == s`` exactly when ``s`` already
  had one space between tokens and none elsewhere (and was lower-case, if lowering).
* ``BpeTokenizer``: byte-level BPE (the GPT-2 scheme) trained with Hugging Face
  ``tokenizers`` on the training side only, with a target vocabulary size;
  its pieces mark a leading space as "Ġ" and non-ASCII bytes as printable
  stand-ins.  Decoding uses the library's ByteLevel decoder; the round trip is
  exact for any string (every byte is in the base alphabet, nothing is unknown).
  The trained model is kept as the library's JSON string (``to_str``), so it
  lives in a checkpoint's metadata.  Needs the ``nlp`` extra.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from rnnkit.errors import CheckpointError, UserError

WORD_PATTERN = r"\w+|[^\w\s]"
SPACE_PATTERN = r"\S+"
KINDS = ("char", "word", "bpe")


@dataclass(frozen=True)
class CharTokenizer:
    """One token per character (Unicode code point)."""

    kind = "char"

    def tokenize(self, text: str) -> list[str]:
        return list(text)

    def tokenize_many(self, lines) -> list[list[str]]:
        return [list(s) for s in lines]

    def detokenize(self, tokens) -> str:
        return "".join(tokens)

    def to_dict(self) -> dict:
        return {"kind": self.kind}


@dataclass(frozen=True)
class WordTokenizer:
    """Tokens = ``re.findall(pattern, text)`` (after ``text.lower()`` if ``lower``); see the module docstring."""

    lower: bool = False
    pattern: str = WORD_PATTERN
    kind = "word"
    _regex: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        try:
            regex = re.compile(self.pattern)
        except re.error as e:
            raise ValueError(f"pattern: not a valid regular expression ({e}): {self.pattern!r}") from None
        if regex.match("") is not None:  # findall would return empty tokens
            raise ValueError(f"pattern: must not match the empty string, got {self.pattern!r}")
        object.__setattr__(self, "_regex", regex)

    def tokenize(self, text: str) -> list[str]:
        return self._regex.findall(text.lower() if self.lower else text)

    def tokenize_many(self, lines) -> list[list[str]]:
        return [self.tokenize(s) for s in lines]

    def detokenize(self, tokens) -> str:
        return " ".join(tokens)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "lower": self.lower, "pattern": self.pattern}


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise UserError("BPE tokenisation needs the 'tokenizers' package: pip install 'rnnkit[nlp]'") from None
    return tokenizers


@dataclass(frozen=True)
class BpeTokenizer:
    """Byte-level BPE; ``model_json`` is the trained ``tokenizers.Tokenizer`` as its JSON string.

    Build one with ``BpeTokenizer.train(lines, vocab_size)``; the constructor
    only restores a trained model (from a checkpoint).
    """

    model_json: str
    kind = "bpe"
    _tok: object = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        tk = _tokenizers()
        try:
            tok = tk.Tokenizer.from_str(self.model_json)
        except Exception as e:  # the library raises its own exception types for bad JSON
            raise CheckpointError(f"BPE model: not a valid tokenizers JSON string ({e})") from None
        object.__setattr__(self, "_tok", tok)

    @classmethod
    def train(cls, lines, vocab_size: int, min_frequency: int = 2) -> "BpeTokenizer":
        """Learn merges on ``lines`` (the TRAINING side only) up to ``vocab_size`` pieces.

        The 256 byte symbols are always in the vocabulary, so ``vocab_size``
        must exceed 256; a pair is merged only if it occurs ``min_frequency``
        times.  Deterministic for the same lines and settings.
        """
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size <= 256:
            raise ValueError(f"vocab_size: expected an integer > 256 (256 byte symbols + merges), got {vocab_size!r}")
        if not isinstance(min_frequency, int) or min_frequency < 1:
            raise ValueError(f"min_frequency: expected a positive integer, got {min_frequency!r}")
        tk = _tokenizers()
        tok = tk.Tokenizer(tk.models.BPE())
        tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = tk.decoders.ByteLevel()
        trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                         initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
                                         special_tokens=[])
        tok.train_from_iterator(list(lines), trainer)
        return cls(tok.to_str())

    def tokenize(self, text: str) -> list[str]:
        return self._tok.encode(text).tokens

    def tokenize_many(self, lines) -> list[list[str]]:
        return [e.tokens for e in self._tok.encode_batch(list(lines))]

    def detokenize(self, tokens) -> str:
        return self._tok.decoder.decode(list(tokens))

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def to_dict(self) -> dict:
        return {"kind": self.kind, "model": self.model_json}


def tokenizer_from_dict(d: dict):
    """Inverse of ``to_dict()``; CheckpointError naming the problem for a malformed dict."""
    if not isinstance(d, dict) or d.get("kind") not in KINDS:
        kind = d.get("kind") if isinstance(d, dict) else type(d).__name__
        raise CheckpointError(f"tokenizer: expected a dict with kind in {KINDS}, got {kind!r}")
    try:
        if d["kind"] == "char":
            return CharTokenizer()
        if d["kind"] == "word":
            if not isinstance(d["lower"], bool) or not isinstance(d["pattern"], str):
                raise TypeError("lower must be a bool and pattern a string")
            return WordTokenizer(lower=d["lower"], pattern=d["pattern"])
        if not isinstance(d["model"], str):
            raise TypeError("model must be a JSON string")
        return BpeTokenizer(d["model"])
    except KeyError as e:
        raise CheckpointError(f"tokenizer ({d['kind']}): missing key {e}") from None
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"tokenizer ({d['kind']}): {e}") from None
