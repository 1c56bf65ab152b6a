"""Sequence-to-sequence task: an encoder-decoder with attention (rnnkit.models.encdec) on a parallel corpus.

Corpus (``Seq2SeqTaskConfig``): two line-aligned files ``src``/``tgt`` (+ optional
``val_src``/``val_tgt``, ``test_src``/``test_tgt``), or one ``pairs`` TSV file
(rnnkit.data.pairs); a split without files is carved out of the training pairs (5 % each,
at least one pair, drawn with the seed).  With no files: the dates corpus (rnnkit.data.dates,
``dates`` training pairs, 500 val and 2,000 test pairs on held-out days).

Tokens: ``tokens`` (rnnkit.tasks.textdata: char / word / space / bpe), one tokeniser and one
vocabulary (rnnkit.data.vocab, ``min_freq``) per side, learnt on the training pairs only and
saved in the checkpoint.  Training pairs with a side longer than ``max_src_len`` /
``max_tgt_len`` tokens (0 = no limit) or empty after tokenisation are dropped
(``filter_report``); val and test pairs are all kept.

Training: teacher forcing on length-bucketed batches of ``batch`` pairs, the mean masked
cross-entropy per target token (<eos> included) with optional label smoothing.

Evaluation (``evaluate(split)``): ``loss`` (nats per target token, no smoothing),
``perplexity`` = exp(loss), then greedy decoding of every source: ``exact_match`` (the share of
hypotheses equal to the reference) and ``bleu`` (corpus BLEU by sacreBLEU).  Both compare
strings after the same round trip: reference = detokenize(tokenize(normalised target)),
hypothesis = detokenize(decoded tokens).  BLEU uses sacreBLEU's standard ``13a`` tokenisation
of these detokenised strings (not ``none``): with ``none`` the score would depend on this
model's own tokeniser (a character model's line would be one "word"), with ``13a`` char, word
and BPE models are scored on the same words, the WMT convention.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from rnnkit.data.batching import filter_lengths, seq2seq_batch
from rnnkit.data.dates import dates_corpus
from rnnkit.data.pairs import ParallelText, read_parallel, read_tsv_pairs
from rnnkit.data.tokenize import tokenizer_from_dict
from rnnkit.data.vocab import BOS, EOS, TokenVocab
from rnnkit.models.decoding import beam_search, greedy_decode
from rnnkit.models.encdec import EncoderDecoder, Seq2SeqConfig
from rnnkit.errors import UserError
from rnnkit.engine.layer_types import config_options
from rnnkit.train import TrainConfig, restore
from rnnkit.checks.fields import option
from rnnkit.checks.rules import NONNEG_INT, NONNEG_NUMBER, POSITIVE_INT
from rnnkit.tasks.textdata import (PlanParts, TextTask, TextTaskConfig, build_tokenizer, in_batches, next_batch,
                                   normalise, reload_corpus, vocab_size)

SCORES = ("dot", "general", "additive")
BLEU_TOKENIZE = "13a"
EVAL_BATCH = 256
_FILE = {"metavar": "FILE", "path": True, "group": "corpus"}


@dataclass(frozen=True)
class Seq2SeqTaskConfig(TextTaskConfig):
    """Corpus, tokens, model and batch of a seq2seq run (see the module docstring and TextTaskConfig)."""

    src: str | None = option(None, "training sources, one sentence per line", **_FILE)
    tgt: str | None = option(None, "training targets, line-aligned with --src", **_FILE)
    pairs: str | None = option(None, "training pairs source<TAB>target (extra columns ignored)", **_FILE)
    val_src: str | None = option(None, "val sources (default: 5 %% of the training pairs)", **_FILE)
    val_tgt: str | None = option(None, "val targets (default: 5 %% of the training pairs)", **_FILE)
    test_src: str | None = option(None, "test sources (default: 5 %% of the training pairs)", **_FILE)
    test_tgt: str | None = option(None, "test targets (default: 5 %% of the training pairs)", **_FILE)
    skip_empty: bool = option(False, "drop pairs with an empty side (default: an empty line is an error)",
                              group="corpus")
    dates: int = option(50_000, "training pairs of the default dates corpus", rule=POSITIVE_INT, group="corpus")
    max_src_len: int = option(0, "drop training pairs whose source has more tokens, 0 = no limit", rule=NONNEG_INT,
                              group="tokens")
    max_tgt_len: int = option(0, "drop training pairs whose target has more tokens, 0 = no limit", rule=NONNEG_INT,
                              group="tokens")
    score: str = option("general", "attention score", choices=SCORES, group="model")
    label_smoothing: float = option(0.0, "in [0, 1)", rule=NONNEG_NUMBER, group="model")

    def __post_init__(self):
        super().__post_init__()
        if self.label_smoothing >= 1:
            raise ValueError(f"label_smoothing: expected a number in [0, 1), got {self.label_smoothing!r}")
        for a, b in (("src", "tgt"), ("val_src", "val_tgt"), ("test_src", "test_tgt")):
            if (getattr(self, a) is None) != (getattr(self, b) is None):
                have, miss = (a, b) if getattr(self, a) is not None else (b, a)
                raise ValueError(f"{miss}: --{have.replace('_', '-')} needs --{miss.replace('_', '-')} "
                                 "(the two sides of a parallel corpus)")
        if self.pairs is not None and self.src is not None:
            raise ValueError("pairs: give either --pairs FILE or --src/--tgt FILES, not both")
        if self.src is None and self.pairs is None and (self.val_src or self.test_src):
            raise ValueError("val_src: --val-src/--test-src need a training corpus (--src/--tgt or --pairs)")

    @property
    def corpus(self) -> str:
        if self.pairs:
            return self.pairs
        return f"{self.src} + {self.tgt}" if self.src else f"dates ({self.dates:,} training pairs)"


def read_corpus(c: Seq2SeqTaskConfig) -> dict:
    """{"train", "val", "test"} -> ParallelText, as described in the module docstring."""
    if c.src is None and c.pairs is None:
        return dates_corpus(n_train=c.dates, n_val=500, n_test=2_000, seed=c.seed)
    empty = "skip" if c.skip_empty else "error"
    train = read_tsv_pairs(c.pairs, empty) if c.pairs else read_parallel(c.src, c.tgt, empty)
    out = {"val": read_parallel(c.val_src, c.val_tgt, empty) if c.val_src else None,
           "test": read_parallel(c.test_src, c.test_tgt, empty) if c.test_src else None}
    return hold_out(train, out, c.seed, _subset, "give --val-src/--val-tgt and --test-src/--test-tgt")


def hold_out(train, out: dict, seed: int, subset, hint: str) -> dict:
    """``out`` with its None splits ("val", "test") carved out of ``train`` (5 % each, at least one
    item, drawn with ``seed``) and "train" the rest; ``subset(train, indices, split)`` takes items."""
    missing = [s for s in ("val", "test") if out[s] is None]
    n = len(train)
    cut = {s: max(1, round(0.05 * n)) for s in missing}
    if n - sum(cut.values()) < 1:
        raise UserError(f"{train.origin}: {n} pairs, too few to hold out {' and '.join(missing)} pairs ({hint})")
    perm = np.random.default_rng([seed, 12]).permutation(n)
    start = 0
    for s in missing:
        out[s] = subset(train, np.sort(perm[start:start + cut[s]]), s)
        start += cut[s]
    out["train"] = subset(train, np.sort(perm[start:]), "train") if missing else train
    return out


def _subset(p: ParallelText, idx, split: str) -> ParallelText:
    take = lambda seq: tuple(seq[i] for i in idx)  # noqa: E731
    return ParallelText(take(p.src), take(p.tgt), take(p.line), p.skipped, f"{p.origin} ({split} part)")


@dataclass
class SplitData:
    """One split, tokenised: id sequences (without specials) and the reference strings."""

    src_ids: list
    tgt_ids: list
    refs: list
    src_len: np.ndarray


class PairTask(TextTask):
    """What the tasks on (source, target) id sequences share (seq2seq, summarize): the ``data`` property
    read again from ``corpus_reader(config)`` when needed, length-bucketed training batches and the
    teacher-forced loss of a split.  Their split data has ``src_ids``, ``tgt_ids`` and ``src_len``;
    ``_set_corpus(corpus)`` fills ``_data``."""

    corpus_reader = None  # staticmethod(config) -> {"train", "val", "test"} corpus

    @property
    def data(self) -> dict:
        """{"train", "val", "test"} -> split data; read again from the recorded corpus when needed."""
        if self._data is None:
            self._set_corpus(reload_corpus(self.config.corpus, lambda: type(self).corpus_reader(self.config)))
        return self._data

    def train_batch(self, rng, carry):
        d = self.data["train"]
        idx, carry = next_batch(d.src_len, self.config.batch, rng, carry)
        return seq2seq_batch([d.src_ids[i] for i in idx], [d.tgt_ids[i] for i in idx]), carry

    def token_loss(self, split: str, batch: int = EVAL_BATCH) -> float:
        """The model's loss (no label smoothing, no gradients) over the target tokens of ``split``."""
        d = self._split(split)
        total, tokens = 0.0, 0
        for idx in in_batches(d.src_len, batch):
            b = seq2seq_batch([d.src_ids[i] for i in idx], [d.tgt_ids[i] for i in idx])
            n = int(b.tgt_mask.sum())
            total += n * self.model.loss(b.src, b.src_lengths, b.tgt_in, b.tgt_out, b.tgt_mask, backward=False)
            tokens += n
        return total / tokens


class Seq2SeqTask(PairTask):
    """A seq2seq run: corpus, tokenisers, vocabularies, model; implements the Task protocol.

    ``translate(lines, beam=1, max_len=None)`` -> (strings, Hypothesis list) for new input.
    """

    kind = "seq2seq"
    count_unit = "tokens"
    train_defaults = TrainConfig(steps=2000, eval_every=250, lr=3e-3)
    config_class = Seq2SeqTaskConfig
    corpus_reader = staticmethod(read_corpus)

    def __init__(self, config: Seq2SeqTaskConfig = Seq2SeqTaskConfig(), *, prepared: dict | None = None):
        if not isinstance(config, Seq2SeqTaskConfig):
            raise TypeError(f"config: expected a Seq2SeqTaskConfig, got {type(config).__name__}")
        self.config = c = config
        self._data, self.filter_report, self.skipped = None, None, 0
        if prepared is None:  # a new run: learn tokenisers and vocabularies on the training pairs
            corpus = read_corpus(c)
            train = corpus["train"]
            src_side = [normalise(s, c.lower) for s in train.src]
            tgt_side = [normalise(t, c.lower) for t in train.tgt]
            self.src_tok = build_tokenizer(c.tokens, src_side, c.bpe_vocab)
            self.tgt_tok = build_tokenizer(c.tokens, tgt_side, c.bpe_vocab)
            src_t, tgt_t = self.src_tok.tokenize_many(src_side), self.tgt_tok.tokenize_many(tgt_side)
            self.src_vocab = TokenVocab.build(src_t, c.min_freq)
            self.tgt_vocab = TokenVocab.build(tgt_t, c.min_freq)
            longest = max(len(t) for t in tgt_t)
            self.decode_len = max(int(1.5 * longest), longest + 10)
            self.sizes = {s: len(p) for s, p in corpus.items()}
            self._set_corpus(corpus)
        else:
            self.src_tok, self.tgt_tok = prepared["src_tok"], prepared["tgt_tok"]
            self.src_vocab, self.tgt_vocab = prepared["src_vocab"], prepared["tgt_vocab"]
            self.decode_len, self.sizes = prepared["decode_len"], prepared["sizes"]
        self.model = EncoderDecoder(Seq2SeqConfig(
            src_vocab=len(self.src_vocab), tgt_vocab=len(self.tgt_vocab), emb=c.emb, hidden=c.hidden,
            layers=c.layers, cell=c.cell, bidirectional=c.bidirectional, score=c.score,
            **config_options(c)), seed=c.seed)

    # ------------------------------------------------------------------ data
    def _set_corpus(self, corpus: dict) -> None:
        c, data = self.config, {}
        got = {s: len(p) for s, p in corpus.items()}
        if got != self.sizes:
            raise UserError(f"corpus {c.corpus}: has {got} pairs per split, this model was trained on {self.sizes} "
                            "(the files changed)")
        for split, p in corpus.items():
            src_t = self.src_tok.tokenize_many([normalise(s, c.lower) for s in p.src])
            tgt_t = self.tgt_tok.tokenize_many([normalise(t, c.lower) for t in p.tgt])
            src_len = np.array([len(t) for t in src_t], dtype=np.int64)
            tgt_len = np.array([len(t) for t in tgt_t], dtype=np.int64)
            limits = (c.max_src_len or None, c.max_tgt_len or None) if split == "train" else (None, None)
            keep, report = filter_lengths(src_len, tgt_len, *limits)
            if split == "train":
                self.filter_report = report
                if not keep.size:
                    raise UserError(f"corpus {c.corpus}: no training pairs left after the length filter ({report})")
            elif not keep.size:
                raise UserError(f"corpus {c.corpus}: no {split} pairs with tokens on both sides")
            data[split] = SplitData([self.src_vocab.encode(src_t[k]) for k in keep],
                                    [self.tgt_vocab.encode(tgt_t[k]) for k in keep],
                                    [self.tgt_tok.detokenize(tgt_t[k]) for k in keep], src_len[keep])
        self.skipped = len(corpus["train"].skipped)
        self._data = data

    # ------------------------------------------------------------------ Task protocol
    def loss_and_backward(self, batch, carry):
        loss = self.model.loss(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_mask,
                               label_smoothing=self.config.label_smoothing, backward=True)
        return loss, carry, int(batch.tgt_mask.sum())

    def evaluate(self, split: str = "val") -> dict:
        """loss (nats/target token), perplexity, exact_match, bleu (if sacreBLEU is installed), pairs."""
        d = self._split(split)
        loss = self.token_loss(split)
        hyps = self.hypotheses(split)
        out = {"loss": loss, "perplexity": math.exp(min(loss, 700.0)),
               "exact_match": float(np.mean([h == r for h, r in zip(hyps, d.refs)])), "pairs": float(len(hyps))}
        bleu = corpus_bleu(hyps, d.refs)
        if bleu is not None:
            out["bleu"] = bleu.score
        return out

    def hypotheses(self, split: str, beam: int = 1) -> list:
        """Decoded strings of every source of ``split`` (greedy for beam 1), in the split's order."""
        d = self._split(split)
        return [self._string(h) for h in self.decode(d.src_ids, beam)]

    def meta(self) -> dict:
        return {"config": dataclasses.asdict(self.config), "src_tokenizer": self.src_tok.to_dict(),
                "tgt_tokenizer": self.tgt_tok.to_dict(), "src_vocab": self.src_vocab.to_dict(),
                "tgt_vocab": self.tgt_vocab.to_dict(), "decode_len": self.decode_len, "sizes": self.sizes}

    @classmethod
    def model_plan(cls, meta: dict):
        """The EncoderDecoder's parameters (rnnkit.models.encdec) and the buffers of one training step from
        ``meta`` alone (rnnkit.train.task): B = ``batch`` pairs of S = ``max_src_len`` source and
        T = ``max_tgt_len`` + 1 target tokens (no limit: 1 source token; the checkpoint's
        ``decode_len`` or 1 target token: a lower bound); vocabularies from ``meta`` (textdata.vocab_size)."""
        c = Seq2SeqTaskConfig(**meta["config"])
        S = c.max_src_len or 1
        T = c.max_tgt_len + 1 if c.max_tgt_len else int(meta.get("decode_len", 1))
        p = encdec_plan(c, S, T, vocab_size(meta, "src_vocab"), vocab_size(meta, "tgt_vocab"), c.score)
        return p.plan(hidden=c.hidden, layers=c.layers, emb=c.emb, batch=c.batch)

    @classmethod
    def from_checkpoint(cls, arrays: dict, meta: dict) -> "Seq2SeqTask":
        def build(m):
            return cls(Seq2SeqTaskConfig(**m["config"]), prepared={
                "src_tok": tokenizer_from_dict(m["src_tokenizer"]), "tgt_tok": tokenizer_from_dict(m["tgt_tokenizer"]),
                "src_vocab": TokenVocab.from_dict(m["src_vocab"]), "tgt_vocab": TokenVocab.from_dict(m["tgt_vocab"]),
                "decode_len": int(m["decode_len"]), "sizes": {k: int(v) for k, v in m["sizes"].items()}})

        return restore(cls, arrays, meta, build)

    # ------------------------------------------------------------------ inference
    def decode(self, src_ids: list, beam: int = 1, max_len: int | None = None, alpha: float = 0.6) -> list:
        """Hypotheses (rnnkit.models.decoding) for id sequences, in their order: greedy for beam 1, else beam search."""
        max_len = self.decode_len if max_len is None else max_len
        out = [None] * len(src_ids)
        lengths = np.array([len(s) for s in src_ids], dtype=np.int64)
        for idx in in_batches(lengths, max(1, EVAL_BATCH // beam)):
            b = seq2seq_batch([src_ids[i] for i in idx], [[EOS]] * len(idx))
            if beam == 1:
                hyps = greedy_decode(self.model, b.src, b.src_lengths, BOS, EOS, max_len)
            else:
                hyps = beam_search(self.model, b.src, b.src_lengths, BOS, EOS, beam, max_len, alpha)
            for i, h in zip(idx, hyps):
                out[i] = h
        return out

    def _string(self, hyp) -> str:
        return self.tgt_tok.detokenize(self.tgt_vocab.decode(hyp.tokens))

    def source_tokens(self, line: str) -> list:
        return self.src_tok.tokenize(normalise(line, self.config.lower))

    def translate(self, lines, beam: int = 1, max_len: int | None = None) -> tuple[list, list]:
        """(output strings, Hypothesis or None per line) for raw input lines; an empty line gives ''."""
        toks = [self.source_tokens(s) for s in lines]
        live = [k for k, t in enumerate(toks) if t]
        hyps = [None] * len(toks)
        for k, h in zip(live, self.decode([self.src_vocab.encode(toks[k]) for k in live], beam, max_len)):
            hyps[k] = h
        return [self._string(h) if h is not None else "" for h in hyps], hyps

    def target_tokens(self, hyp) -> list:
        """The hypothesis's target tokens, with "<eos>" if it finished (one per attention row)."""
        return list(self.tgt_vocab.decode(hyp.tokens, strip=False)) + (["<eos>"] if hyp.finished else [])


def encdec_plan(c, S: int, T: int, V_src: int, V_tgt: int, score: str) -> PlanParts:
    """PlanParts of an EncoderDecoder (rnnkit.models.encdec) of the text config ``c`` for one training step
    of ``c.batch`` pairs of S source and T target tokens (Seq2SeqTask.model_plan)."""
    D, H, E = 2 if c.bidirectional else 1, c.hidden, c.emb
    p = PlanParts(c.batch)
    p.embedding("src_embedding", V_src, E, S)
    width = p.recurrent("encoder", c.cell, E, H, c.layers, S, D, **config_options(c))
    Hh = width["h"]  # H, or proj_size
    p.linear("bridge_h", D * Hh, Hh, c.layers * c.batch)
    if "c" in width:  # the LSTMs' cell state is bridged too
        p.linear("bridge_c", D * width["c"], width["c"], c.layers * c.batch)
    p.embedding("tgt_embedding", V_tgt, E, T)
    p.recurrent("decoder", c.cell, E, H, c.layers, T, **config_options(c))
    p.score("attention.score", score, Hh, D * Hh, None, T, S)
    p.linear("attention.linear_out", D * Hh + Hh, Hh, T * c.batch, bias=False)
    p.linear("out", Hh, V_tgt, 2 * T * c.batch)  # logits, their softmax and gradient
    return p


def corpus_bleu(hyps: list, refs: list):
    """sacreBLEU's corpus BLEU (tokenize='13a', see the module docstring), or None without sacreBLEU."""
    try:
        import sacrebleu
    except ImportError:
        return None
    return sacrebleu.corpus_bleu(list(hyps), [list(refs)], tokenize=BLEU_TOKENIZE)
