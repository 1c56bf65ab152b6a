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

Model plans (rnnkit.train.task.ModelPlan, ``model_plan(meta)`` of both tasks): :class:`PlanParts`
adds up the parameter shapes (PyTorch's names, those of the built modules) and the float32
buffers of one training step of T x B tokens from the sizes in the metadata alone; the recurrent
layers through :func:`rnnkit.engine.memory.estimate_rnn_bytes`.  A size a new run cannot know before
reading its corpus counts as its smallest: a vocabulary as its 4 specials (:func:`vocab_size`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnkit.data.batching import bucket_batches
from rnnkit.data.tokenize import SPACE_PATTERN, BpeTokenizer, CharTokenizer, WordTokenizer
from rnnkit.data.vocab import SPECIALS
from rnnkit.errors import UserError
from rnnkit.engine.memory import estimate_rnn_bytes, rnn_param_shapes
from rnnkit.engine.layer_types import LAYERS, CellVariant, config_cell, default_bias, make_cell
from rnnkit.train.task import ModelPlan
from rnnkit.checks.fields import check_options, option
from rnnkit.checks.rules import NONNEG_INT, POSITIVE_INT

TOKENS = ("char", "word", "space", "bpe")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TextTaskConfig(CellVariant):
    """Tokens, encoder and batch: the fields the seq2seq and classify configs share (``hidden`` per
    direction, ``emb`` the embedding size, ``batch`` examples per step, ``seed`` the weights' and
    the splits' seed; the cell variant: CellVariant's ``peephole``, ``proj_size``)."""

    tokens: str = option("char", "char, word (regex, punctuation split), space (pre-tokenised text) or bpe",
                         choices=TOKENS, group="tokens")
    lower: bool = option(False, "lower-case the text first", group="tokens")
    bpe_vocab: int = option(2000, "BPE pieces (per side; > 256, default {default})", rule=POSITIVE_INT, group="tokens")
    min_freq: int = option(1, "rarer tokens become <unk>", rule=POSITIVE_INT, group="tokens")
    cell: str = option("lstm", choices=sorted(LAYERS), group="model")
    layers: int = option(1, "recurrent layers", rule=POSITIVE_INT, group="model")
    hidden: int = option(64, "hidden size per direction", rule=POSITIVE_INT, group="model")
    emb: int = option(32, "embedding size", rule=POSITIVE_INT, group="model")
    bidirectional: bool = option(True, "bidirectional encoder (default: yes)", group="model")
    batch: int = option(64, "examples per step", rule=POSITIVE_INT, group="model")
    seed: int = option(0, rule=NONNEG_INT, flag=False)

    def __post_init__(self):
        check_options(self)
        config_cell(self, self.hidden)  # the variants fit the cell and the sizes
        if self.tokens == "bpe" and self.bpe_vocab <= 256:
            raise ValueError(f"bpe_vocab: expected an integer > 256 (256 byte symbols + merges), got {self.bpe_vocab}")


def reload_corpus(recorded: str, load, hint: str = ""):
    """``load()`` again from the corpus a model recorded (a task rebuilt from a checkpoint reads its data
    lazily); a UserError becomes one line naming that corpus (``hint``: what the user can do instead)."""
    try:
        return load()
    except UserError as e:
        raise UserError(f"the corpus recorded in this model ({recorded}) cannot be used: {e}{hint}") from None


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


def vocab_size(meta: dict, key: str) -> int:
    """Ids of the vocabulary ``meta[key]`` (a TokenVocab.to_dict(): the specials + its tokens); a new
    run's vocabulary, not read yet, counts as the specials alone."""
    v = meta.get(key)
    return len(SPECIALS) if v is None else len(SPECIALS) + len(v["tokens"])


class PlanParts:
    """Parameter shapes and float32 step buffers (elements) of a model, added module by module."""

    def __init__(self, B: int):
        self.B, self.shapes, self.act, self.init = B, {}, 0, 0

    def embedding(self, name: str, V: int, E: int, T: int) -> None:
        """Embedding(V, E) (drawn in float64) over T x B ids: its output and gradient."""
        self.shapes[f"{name}.weight"] = (V, E)
        self.init = max(self.init, 8 * V * E)
        self.act += 2 * T * self.B * E

    def recurrent(self, name: str, cell: str, I: int, H: int, L: int, T: int, D: int = 1, **options):
        """A ``LAYERS[cell](..., **options)`` stack (rnnkit.engine.recurrent) over T steps of B sequences
        (rnnkit.engine.memory); returns its cell's ``field_sizes(H)`` (the width of h and c)."""
        obj, bias = make_cell(cell, H, **options), default_bias(cell)
        self.shapes.update(rnn_param_shapes(I, H, L, D, obj, bias=bias, prefix=f"{name}."))
        est = estimate_rnn_bytes(I, H, L, T=T, B=self.B, directions=D, cell=obj, itemsize=4, bias=bias)
        self.act += est.activations // 4
        self.init = max(self.init, est.init)
        return obj.field_sizes(H)

    def linear(self, name: str, I: int, O: int, rows: int, bias: bool = True) -> None:
        """Linear(I, O) over ``rows`` rows: its output and the input gradient."""
        self.shapes[f"{name}.weight"] = (O, I)
        if bias:
            self.shapes[f"{name}.bias"] = (O,)
        self.act += rows * (O + I)

    def score(self, name: str, kind: str, Hq: int, Hk: int, A: int | None, T: int, S: int) -> None:
        """An attention score of rnnkit.models.attention (dot, general, additive) of T queries over S keys."""
        if kind == "general":
            self.linear(f"{name}.linear", Hk, Hq, S * self.B, bias=False)
        elif kind == "additive":
            A = A or Hq
            self.linear(f"{name}.query_proj", Hq, A, T * self.B, bias=False)
            self.linear(f"{name}.key_proj", Hk, A, S * self.B)
            self.linear(f"{name}.v", A, 1, T * S * self.B, bias=False)
            self.act += 2 * T * S * self.B * A  # the tanh of every (query, key) pair and its gradient
        self.act += 3 * T * S * self.B  # scores, weights, their gradient

    def plan(self, **sizes) -> ModelPlan:
        return ModelPlan(self.shapes, np.float32, 4 * self.act, self.init, sizes=sizes)


class TextTask:
    """Members the seq2seq and classify tasks share.  A subclass has ``kind``, ``model``, a ``data``
    property ({"train", "val", "test"} -> its split data) and ``__init__(config, prepared=...)``."""

    def _split(self, split: str):
        if split not in SPLITS:
            raise UserError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
        return self.data[split]

    def state_arrays(self) -> dict:
        return dict(self.model.params)
