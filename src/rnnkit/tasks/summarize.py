"""Summarisation task: a pointer-generator with coverage (rnnkit.models.pointer) on documents with summaries.

Corpus (``SummarizeTaskConfig``): JSON lines ``data`` (+ ``val_data``, ``test_data``) with the
fields ``src_field`` (document), ``tgt_field`` (summary) and, for evaluation, ``ref_fields``
(comma-separated; several human references), or the two-file layout ``src``/``tgt`` (+ val_,
test_) of rnnkit.data.documents.  A split without files is 5 % of the training documents
(rnnkit.tasks.seq2seq.hold_out).

Tokens: ``tokens`` (word by default; rnnkit.tasks.textdata), lower-cased by default, one
tokeniser and ONE vocabulary for both sides (copying needs it): the ``vocab`` most frequent
tokens of the training documents and summaries seen ``min_freq`` times.  Sources longer than
``max_src_len`` tokens are truncated to their first ``max_src_len`` (every split: it is the
model's input; ``truncated`` counts them per split), training summaries to ``max_tgt_len``.
Source OOVs get per-document temporary ids (rnnkit.data.oov).

Training: teacher forcing on length-bucketed batches, the loss of rnnkit.models.pointer
(negative log-likelihood per summary token + ``cov_loss_weight`` x the coverage loss).  The best checkpoint is
the one of the lowest val loss, and training stops after ``PATIENCE`` evaluations without a lower one.

Evaluation (``evaluate(split)``): ``loss`` (the training loss, teacher forced), then decoding of
every document (``beam``, length normalisation ``alpha``, ``min_len``, ``no_repeat_ngram``;
greedy with the same blocking during training's val evaluations, ``val_beam``) and ROUGE-1/2/L
F1 against the references (rnnkit.tasks.rouge: mean and max over the references), the lead
baseline (first sentence of the untruncated document) scored the same way, and the repetition
rate (share of summaries with a repeated trigram).  Copied OOVs are written as the source words.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from rnnkit.checks.fields import option
from rnnkit.checks.rules import NONNEG_INT, NONNEG_NUMBER, POSITIVE_INT
from rnnkit.data.batching import seq2seq_batch
from rnnkit.data.documents import Documents, lead, parse_fields, read_jsonl, read_two_files, subset
from rnnkit.data.oov import extend_ids, extended_tokens
from rnnkit.data.tokenize import tokenizer_from_dict
from rnnkit.data.vocab import BOS, EOS, TokenVocab
from rnnkit.engine.layer_types import config_options
from rnnkit.errors import UserError
from rnnkit.models.decoding import beam_search
from rnnkit.models.pointer import PointerConfig, PointerGenerator
from rnnkit.tasks.rouge import repetition_rate, rouge
from rnnkit.tasks.seq2seq import PairTask, encdec_plan, hold_out
from rnnkit.tasks.textdata import TOKENS, TextTaskConfig, build_tokenizer, in_batches, normalise, vocab_size
from rnnkit.train import TrainConfig, restore

EVAL_BATCH = 64
PATIENCE = 6
"""Evaluations (every 500 steps) without a lower val loss before training stops (docs/tasks.md: on a corpus of
two-word summaries the val loss rose from step 3,000 on; the last step, 9,175, scored 3 ROUGE-L points less on
test than the best checkpoint)."""


_FILE = {"metavar": "FILE", "path": True, "group": "corpus"}
_JSONL = {"metavar": "FILE.jsonl", "path": True, "group": "corpus"}
_HELD_OUT = " (default: 5 %% of the training documents)"


@dataclass(frozen=True)
class SummarizeTaskConfig(TextTaskConfig):
    """Corpus, tokens, model and decoding of a summarisation run (see the module docstring)."""

    data: str | None = option(None, "training documents, JSON lines", **_JSONL)
    val_data: str | None = option(None, "val documents, JSON lines" + _HELD_OUT, **_JSONL)
    test_data: str | None = option(None, "test documents, JSON lines" + _HELD_OUT, **_JSONL)
    src_field: str = option("text", "JSON field of the document", group="corpus", metavar="F")
    tgt_field: str = option("summary", "JSON field of the summary trained on", group="corpus", metavar="F")
    ref_fields: str | None = option(None, "JSON fields of the references evaluations score against (default: the "
                                    "summary)", group="corpus", metavar="A,B,C")
    src: str | None = option(None, "training documents, one a line (the two-file layout)", **_FILE)
    tgt: str | None = option(None, "training summaries, line-aligned with --src", **_FILE)
    val_src: str | None = option(None, "val documents" + _HELD_OUT, **_FILE)
    val_tgt: str | None = option(None, "val summaries", **_FILE)
    test_src: str | None = option(None, "test documents" + _HELD_OUT, **_FILE)
    test_tgt: str | None = option(None, "test summaries", **_FILE)
    skip_empty: bool = option(False, "drop rows with an empty document or summary (default: an error)",
                              group="corpus")
    tokens: str = option("word", "char, word (regex, punctuation split), space (pre-tokenised text) or bpe",
                         choices=TOKENS, group="tokens")
    lower: bool = option(True, "lower-case the text first (default: yes)", group="tokens")
    vocab: int = option(8_000, "most frequent tokens kept (shared by documents and summaries)", rule=POSITIVE_INT,
                        group="tokens")
    max_src_len: int = option(400, "truncate documents to their first N tokens", rule=POSITIVE_INT, group="tokens")
    max_tgt_len: int = option(100, "truncate training summaries to N tokens", rule=POSITIVE_INT, group="tokens")
    hidden: int = option(128, "hidden size per direction", rule=POSITIVE_INT, group="model")
    emb: int = option(96, "embedding size", rule=POSITIVE_INT, group="model")
    batch: int = option(16, "documents per step", rule=POSITIVE_INT, group="model")
    copy: bool = option(True, "pointer-generator copy mechanism (default: yes)", group="model")
    coverage: bool = option(True, "coverage in the attention and the coverage loss (default: yes)", group="model")
    cov_loss_weight: float = option(1.0, "lambda of the coverage loss", rule=NONNEG_NUMBER, group="model")
    beam: int = option(4, "beam size of evaluations, 1 = greedy", rule=POSITIVE_INT, group="decoding")
    val_beam: int = option(1, "beam size of the val evaluations during training", rule=POSITIVE_INT,
                           group="decoding")
    alpha: float = option(1.0, "length normalisation: score / length^alpha", rule=NONNEG_NUMBER, group="decoding")
    min_len: int = option(0, "fewest tokens per summary", rule=NONNEG_INT, group="decoding")
    no_repeat_ngram: int = option(3, "block repeating any n-gram, 0 = off", rule=NONNEG_INT, group="decoding")

    def __post_init__(self):
        super().__post_init__()
        parse_fields(self.ref_fields)
        if self.data is None and self.src is None:
            raise ValueError("data: give the training documents: --data FILE.jsonl or --src/--tgt FILES")
        if self.data is not None and self.src is not None:
            raise ValueError("data: give either --data FILE.jsonl or --src/--tgt FILES, not both")
        for a, b in (("src", "tgt"), ("val_src", "val_tgt"), ("test_src", "test_tgt")):
            if (getattr(self, a) is None) != (getattr(self, b) is None):
                have, miss = (a, b) if getattr(self, a) is not None else (b, a)
                raise ValueError(f"{miss}: --{have.replace('_', '-')} needs --{miss.replace('_', '-')}")

    @property
    def corpus(self) -> str:
        return self.data if self.data else f"{self.src} + {self.tgt}"


def read_documents(c: SummarizeTaskConfig) -> dict:
    """{"train", "val", "test"} -> Documents (module docstring)."""
    empty, refs = ("skip" if c.skip_empty else "error"), parse_fields(c.ref_fields)

    def jsonl(path, with_refs=True):
        return read_jsonl(path, c.src_field, c.tgt_field, refs if with_refs else (), empty)

    if c.data:
        train = jsonl(c.data, with_refs=False)
        out = {"val": jsonl(c.val_data) if c.val_data else None, "test": jsonl(c.test_data) if c.test_data else None}
    else:
        train = read_two_files(c.src, c.tgt, empty)
        out = {s: read_two_files(getattr(c, f"{s}_src"), getattr(c, f"{s}_tgt"), empty)
               if getattr(c, f"{s}_src") else None for s in ("val", "test")}
    return hold_out(train, out, c.seed, lambda d, idx, s: subset(d, idx, f"{d.origin} ({s} part)"),
                    "give --val-data and --test-data")


@dataclass
class SplitData:
    """One split: extended ids (rnnkit.data.oov) without specials, OOV words, references, leads."""

    src_ids: list
    tgt_ids: list
    oovs: list
    refs: list
    leads: list
    src_len: np.ndarray
    truncated: int


class SummarizeTask(PairTask):
    """A summarisation run; implements the Task protocol.  ``summarize(documents)`` -> (strings, hypotheses)."""

    kind = "summarize"
    count_unit = "tokens"
    #: early stopping after PATIENCE evaluations without a lower val loss (on DialogSum the time limit stops first)
    train_defaults = TrainConfig(steps=20_000, eval_every=500, lr=1e-3, clip=2.0, patience=PATIENCE)
    config_class = SummarizeTaskConfig
    corpus_reader = staticmethod(read_documents)

    def __init__(self, config: SummarizeTaskConfig, *, prepared: dict | None = None):
        if not isinstance(config, SummarizeTaskConfig):
            raise TypeError(f"config: expected a SummarizeTaskConfig, got {type(config).__name__}")
        self.config = c = config
        self._data = None
        if prepared is None:
            corpus = read_documents(c)
            train = corpus["train"]
            src = [normalise(s, c.lower) for s in train.src]
            tgt = [normalise(t, c.lower) for t in train.tgt]
            self.tok = build_tokenizer(c.tokens, src + tgt, c.bpe_vocab)
            tokens = [t[: c.max_src_len] for t in self.tok.tokenize_many(src)] + self.tok.tokenize_many(tgt)
            self.vocab = TokenVocab.build(tokens, c.min_freq, max_size=c.vocab)
            lengths = sorted(len(t) for t in tokens[len(src):])
            self.decode_len = min(c.max_tgt_len, int(1.5 * lengths[int(0.99 * (len(lengths) - 1))]) + 5)
            self.sizes = {s: len(d) for s, d in corpus.items()}
            self._set_corpus(corpus)
        else:
            self.tok, self.vocab = prepared["tok"], prepared["vocab"]
            self.decode_len, self.sizes = prepared["decode_len"], prepared["sizes"]
        V = len(self.vocab)
        self.model = PointerGenerator(PointerConfig(
            src_vocab=V, tgt_vocab=V, emb=c.emb, hidden=c.hidden, layers=c.layers, cell=c.cell,
            bidirectional=c.bidirectional, copy=c.copy, coverage=c.coverage, cov_loss_weight=c.cov_loss_weight,
            **config_options(c)), seed=c.seed)

    # ------------------------------------------------------------------ data
    def _tokens(self, text: str) -> list:
        return self.tok.tokenize(normalise(text, self.config.lower))

    def encode_document(self, text: str, summary: str = "") -> tuple:
        """(source ids, summary ids, OOV words, truncated?) of one document (module docstring)."""
        c = self.config
        toks = self._tokens(text)
        src, tgt, oovs = extend_ids(self.vocab, toks[: c.max_src_len], self._tokens(summary)[: c.max_tgt_len])
        return src, tgt, oovs, len(toks) > c.max_src_len

    def _set_corpus(self, corpus: dict) -> None:
        got = {s: len(d) for s, d in corpus.items()}
        if got != self.sizes:
            raise UserError(f"corpus {self.config.corpus}: has {got} documents per split, this model was trained "
                            f"on {self.sizes} (the files changed)")
        self._data = {s: self._split_data(d) for s, d in corpus.items()}

    def _split_data(self, d: Documents) -> SplitData:
        enc = [self.encode_document(s, t) for s, t in zip(d.src, d.tgt)]
        for k, e in enumerate(enc):
            if not len(e[0]) or not len(e[1]):
                raise UserError(f"{d.origin}: document of line {d.line[k]}: no tokens in its "
                                f"{'document' if not len(e[0]) else 'summary'} after tokenisation")
        return SplitData([e[0] for e in enc], [e[1] for e in enc], [e[2] for e in enc], list(d.refs),
                         [lead(s) for s in d.src], np.array([len(e[0]) for e in enc], dtype=np.int64),
                         sum(e[3] for e in enc))

    # ------------------------------------------------------------------ Task protocol
    def loss_and_backward(self, batch, carry):
        loss = self.model.loss(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_mask)
        return loss, carry, int(batch.tgt_mask.sum())

    def evaluate(self, split: str = "val", beam: int | None = None, **options) -> dict:
        """loss, ROUGE-1/2/L (mean over references: ``rouge1`` ..; max: ``rouge1_max`` ..), the lead's
        (``lead_rouge1`` ..), ``repetition`` and ``documents``; decoding with ``beam`` (default: val_beam
        for "val", beam otherwise) and ``options`` (:meth:`decode`)."""
        c, d = self.config, self._split(split)
        beam = beam or (c.val_beam if split == "val" else c.beam)
        hyps = self.decode(d.src_ids, beam, **options)
        out = {"loss": self.token_loss(split, EVAL_BATCH), "documents": float(len(hyps))}
        out.update(self.scores([self.string(h, o) for h, o in zip(hyps, d.oovs)], d.refs, d.leads))
        out["repetition"] = repetition_rate([h.tokens for h in hyps])
        return out

    @staticmethod
    def scores(hyps: list, refs: list, leads: list) -> dict:
        """ROUGE of ``hyps`` and of the ``leads`` against ``refs`` as flat evaluate() keys."""
        out = {}
        for prefix, texts in (("", hyps), ("lead_", leads)):
            r = rouge(texts, refs)
            for t, v in r["mean"].items():
                out[f"{prefix}{t}"], out[f"{prefix}{t}_max"] = v, r["max"][t]
        return out

    def meta(self) -> dict:
        return {"config": dataclasses.asdict(self.config), "tokenizer": self.tok.to_dict(),
                "vocab": self.vocab.to_dict(), "decode_len": self.decode_len, "sizes": self.sizes}

    @classmethod
    def model_plan(cls, meta: dict):
        """The PointerGenerator's parameters and one training step's buffers from ``meta`` alone
        (rnnkit.train.task): the encoder-decoder of rnnkit.tasks.seq2seq.encdec_plan (additive score) with
        S = ``max_src_len``, T = ``max_tgt_len`` + 1, V the shared vocabulary (its 4 specials for a new
        run: a lower bound), plus ``w_cov``, ``p_gen`` and the coverage loop's a and cov (T x S x B each)."""
        c = SummarizeTaskConfig(**meta["config"])
        S, T, V = c.max_src_len, c.max_tgt_len + 1, vocab_size(meta, "vocab")
        p = encdec_plan(c, S, T, V, V, "additive")
        Hh, D = getattr(c, "proj_size", 0) or c.hidden, 2 if c.bidirectional else 1  # h's width, directions
        if c.coverage:
            p.shapes["attention.w_cov"] = (Hh,)  # the attention size = the decoder's h width
        if c.copy:
            p.linear("p_gen", D * Hh + Hh + c.emb, 1, T * c.batch)  # on [c_t; s_t; x_t]
        p.act += 2 * T * S * c.batch
        return p.plan(hidden=c.hidden, layers=c.layers, emb=c.emb, batch=c.batch)

    @classmethod
    def from_checkpoint(cls, arrays: dict, meta: dict) -> "SummarizeTask":
        def build(m):
            return cls(SummarizeTaskConfig(**m["config"]), prepared={
                "tok": tokenizer_from_dict(m["tokenizer"]), "vocab": TokenVocab.from_dict(m["vocab"]),
                "decode_len": int(m["decode_len"]), "sizes": {k: int(v) for k, v in m["sizes"].items()}})

        return restore(cls, arrays, meta, build)

    # ------------------------------------------------------------------ inference
    def decode(self, src_ids: list, beam: int = 1, max_len: int | None = None, **options) -> list:
        """Hypotheses (rnnkit.models.decoding) for extended id sequences, in their order; ``options``
        override the config's alpha, min_len, no_repeat_ngram."""
        c = self.config
        opts = {"alpha": c.alpha, "min_len": c.min_len, "no_repeat_ngram": c.no_repeat_ngram, **options}
        max_len = max_len or self.decode_len
        out = [None] * len(src_ids)
        lengths = np.array([len(s) for s in src_ids], dtype=np.int64)
        for idx in in_batches(lengths, max(1, EVAL_BATCH // beam)):
            b = seq2seq_batch([src_ids[i] for i in idx], [[EOS]] * len(idx))
            for i, h in zip(idx, beam_search(self.model, b.src, b.src_lengths, BOS, EOS, beam, max_len, **opts)):
                out[i] = h
        return out

    def output_tokens(self, hyp, oovs) -> list:
        return extended_tokens(self.vocab, hyp.tokens, oovs)

    def string(self, hyp, oovs) -> str:
        """The summary of a hypothesis, copied OOVs written as their source words."""
        return self.tok.detokenize(self.output_tokens(hyp, oovs))

    def summarize(self, documents, beam: int | None = None, max_len: int | None = None, **options):
        """(summaries, [(hypothesis, source tokens, oovs, source ids) or None]) for raw documents; '' for an
        empty one."""
        enc = [self.encode_document(s) for s in documents]
        live = [k for k, e in enumerate(enc) if len(e[0])]
        hyps = self.decode([enc[k][0] for k in live], beam or self.config.beam, max_len, **options)
        out, info = [""] * len(documents), [None] * len(documents)
        for k, h in zip(live, hyps):
            out[k] = self.string(h, enc[k][2])
            info[k] = (h, self._tokens(documents[k])[: self.config.max_src_len], enc[k][2], enc[k][0])
        return out, info

    def p_gen(self, src_ids, hyp):
        """p_gen (n,) at each output token of ``hyp`` (and its <eos>), from the teacher-forced pass over
        its tokens (equal to the decoding steps'); None without copying."""
        if not self.config.copy:
            return None
        tokens = list(hyp.tokens) + ([EOS] if hyp.finished else [])
        tgt_in = np.array([BOS] + tokens[:-1], dtype=np.int64)[:, None]
        out = self.model.forward(np.asarray(src_ids, dtype=np.int64)[:, None], np.array([len(src_ids)]), tgt_in)
        return out["p_gen"][:, 0, 0]
