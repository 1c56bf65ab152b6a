"""Sequence classification task: a recurrent classifier (rnnkit.models.classifier) on labelled lines.

Corpus (``ClassifyTaskConfig.data``): a ``label<TAB>text`` file or a directory with one file per
class (rnnkit.data.classify); with none, lines of the Python standard library labelled by their
top-level package (``per_class`` lines per package).  Every class is split 80/10/10 into
train/val/test with the seed (``stratified_split``); ``val_data`` / ``test_data`` (files in the
same layout, as benchmarks ship their splits) are those splits as they are, and a split without a
file is then 10 % of each training class.  Classes are the sorted labels of the training data.

Tokens: ``tokens`` (rnnkit.tasks.textdata), one vocabulary (``min_freq``) learnt on the training
split, saved in the checkpoint; a text longer than ``max_len`` tokens keeps its first ``max_len``
(0 = no limit); a text with no token at all is dropped (counted in ``dropped``).

Loss: cross-entropy, with ``class_weights='balanced'`` weighted by w_c = N / (C n_c) (n_c the
training examples of class c; scikit-learn's "balanced"), torch's ``weight=`` semantics.
Regularisers: the char-LM's dropout rates (rnnkit.engine.dropout.ConfigRates), training only; each
step's masks come from a seed drawn from the Trainer's generator, so a resumed run is bit-identical.

Training length: ``epochs`` passes over the training split unless ``--steps`` is given
(:meth:`ClassifyTask.scaled_train_config`: steps = ceil(epochs N / batch), N training examples; an
evaluation on the val split once per epoch, ceil(N / batch) steps; early stopping after
:data:`PATIENCE` evaluations without a new best).  The best checkpoint is the one of the highest
val accuracy (``best_metric``): the val loss of a classifier often rises (over-confident wrong
answers) while its accuracy still improves.

``evaluate`` reports that same loss, ``accuracy``, ``macro_f1`` and ``majority`` (the accuracy of
always answering the most frequent training class); :meth:`report` adds the confusion matrix
(rows true, columns predicted) and per-class precision, recall, F1 and support.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from rnnkit.models.classifier import POOLINGS, ClassifierConfig, SequenceClassifier
from rnnkit.data.batching import pad_time_major
from rnnkit.data.classify import LabelledText, read_labelled, stdlib_lines, stratified_split
from rnnkit.data.tokenize import tokenizer_from_dict
from rnnkit.data.vocab import TokenVocab
from rnnkit.errors import UserError
from rnnkit.engine.dropout import CONFIG_RATES, ConfigRates
from rnnkit.engine.layer_types import config_options
from rnnkit.train import TrainConfig, restore
from rnnkit.train.data_parallel import shard_time_major
from rnnkit.checks.fields import option
from rnnkit.checks.rules import NONNEG_INT, POSITIVE_INT
from rnnkit.tasks.textdata import (PlanParts, TextTask, TextTaskConfig, build_tokenizer, in_batches, next_batch,
                                   normalise, vocab_size)

CLASS_WEIGHTS = ("none", "balanced")
EVAL_BATCH = 256
EPOCHS = 30  # the default passes over the training split (early stopping usually ends the run first)
PATIENCE = 5  # the default early stopping: evaluations (epochs) without a new best val loss


@dataclass(frozen=True)
class ClassifyTaskConfig(TextTaskConfig, ConfigRates):
    """Corpus, tokens, model and batch of a classification run (see the module docstring and TextTaskConfig)."""

    data: str | None = option(None, "label<TAB>text file, or a directory of one file per class", metavar="FILE|DIR",
                              path=True, group="corpus")
    val_data: str | None = option(None, "val examples, the same layout (default: 10 %% of --data per class)",
                                  metavar="FILE|DIR", path=True, group="corpus")
    test_data: str | None = option(None, "test examples, the same layout (default: 10 %% of --data per class)",
                                   metavar="FILE|DIR", path=True, group="corpus")
    skip_empty: bool = option(False, "skip empty lines (default: an error)", group="corpus")
    per_class: int = option(700, "lines per package of the default corpus", rule=POSITIVE_INT, group="corpus")
    max_len: int = option(200, "keep the first N tokens of a text, 0 = all", rule=NONNEG_INT, group="tokens")
    pooling: str = option("last", choices=POOLINGS, group="model")
    class_weights: str = option("none", "balanced: weight class c by N / (C n_c)", choices=CLASS_WEIGHTS,
                                group="model")
    epochs: int = option(EPOCHS, "passes over the training split when --steps is not given (evaluation once "
                         "per epoch, early stopping after %d epochs without a better val accuracy unless "
                         "--patience)" % PATIENCE, rule=POSITIVE_INT)

    @property
    def corpus(self) -> str:
        return self.data or f"Python standard library lines by package ({self.per_class} per package)"


def read_corpus(c: ClassifyTaskConfig):
    """(LabelledText, file sizes) of the config (see the module docstring): the training data, then the
    examples of ``val_data`` and ``test_data`` if given; sizes {"train", "val", "test"} -> examples read
    from each file (0 for a split without one)."""
    if c.data is None:
        if c.val_data or c.test_data:
            raise UserError("--val-data/--test-data need a training corpus (--data)")
        corpus = stdlib_lines(per_class=c.per_class, seed=c.seed)
        return corpus, {"train": len(corpus), "val": 0, "test": 0}
    empty = "skip" if c.skip_empty else "error"
    parts = {s: read_labelled(f, empty) for s, f in (("train", c.data), ("val", c.val_data), ("test", c.test_data))
             if f}
    sizes = {s: len(parts[s]) if s in parts else 0 for s in ("train", "val", "test")}
    if len(parts) == 1:
        return parts["train"], sizes
    join = LabelledText(*(sum((getattr(p, k) for p in parts.values()), ()) for k in ("texts", "labels", "source")),
                        origin=" + ".join(p.origin for p in parts.values()))
    return join, sizes


def split_corpus(c: ClassifyTaskConfig, corpus, sizes: dict, classes) -> dict:
    """{"train", "val", "test"} -> sorted indices into :func:`read_corpus`'s data: a split with its own file
    takes it whole; a split without one is 10 % of each training class (``stratified_split``, the seed)."""
    labels = corpus.label_ids(classes)  # a val/test label outside the training classes: one line naming it
    n = sizes["train"]
    missing = {s: 0.1 * (sizes[s] == 0) for s in ("val", "test")}
    out = stratified_split(labels[:n], np.random.default_rng([c.seed, 13]),
                           (1.0 - sum(missing.values()), missing["val"], missing["test"]))
    start = n
    for s in ("val", "test"):
        if sizes[s]:
            out[s] = np.arange(start, start + sizes[s], dtype=np.int64)
            start += sizes[s]
    return out


@dataclass
class SplitData:
    ids: list  # token id arrays
    labels: np.ndarray  # (N,) class indices
    lengths: np.ndarray


class ClassifyTask(TextTask):
    """A classification run: corpus, tokeniser, vocabulary, classes, model; implements the Task protocol.

    ``top_k(lines, k)`` -> (classes (N, k), probabilities (N, k)) for new input lines.
    """

    kind = "classify"
    count_unit = "seqs"
    best_metric = ("accuracy", -1)  # rnnkit.train.task: best.safetensors and early stopping by val accuracy
    train_defaults = TrainConfig(steps=1500, eval_every=250, lr=3e-3, patience=PATIENCE)  # steps, eval_every:
    # a fallback; a new ``rnnkit train classify`` scales them with the corpus (scaled_train_config)
    config_class = ClassifyTaskConfig

    def __init__(self, config: ClassifyTaskConfig = ClassifyTaskConfig(), *, prepared: dict | None = None):
        if not isinstance(config, ClassifyTaskConfig):
            raise TypeError(f"config: expected a ClassifyTaskConfig, got {type(config).__name__}")
        self.config = c = config
        self._data, self.dropped = None, 0
        if prepared is None:
            corpus, files = read_corpus(c)
            self.classes = tuple(sorted(set(corpus.labels[: files["train"]])))  # the training classes
            if len(self.classes) < 2:
                raise UserError(f"{c.corpus}: needs at least two classes, found {list(self.classes)}")
            split = split_corpus(c, corpus, files, self.classes)
            train_texts = [normalise(corpus.texts[i], c.lower) for i in split["train"]]
            self.tokenizer = build_tokenizer(c.tokens, train_texts, c.bpe_vocab)
            self.vocab = TokenVocab.build(self.tokenizer.tokenize_many(train_texts), c.min_freq)
            self.sizes = {s: int(v.size) for s, v in split.items()}
            self._set_corpus(corpus, split)
            counts = np.bincount(self._data["train"].labels, minlength=len(self.classes))
            self.class_counts = [int(n) for n in counts]
        else:
            self.classes, self.tokenizer, self.vocab = prepared["classes"], prepared["tokenizer"], prepared["vocab"]
            self.sizes, self.class_counts = prepared["sizes"], prepared["class_counts"]
        counts = np.asarray(self.class_counts, dtype=np.float64)
        self.weights = (None if c.class_weights == "none"
                        else (counts.sum() / (len(counts) * np.maximum(counts, 1))).astype(np.float32))
        self.model = SequenceClassifier(ClassifierConfig(
            vocab_size=len(self.vocab), num_classes=len(self.classes), emb=c.emb, hidden=c.hidden,
            layers=c.layers, cell=c.cell, bidirectional=c.bidirectional, pooling=c.pooling,
            **{n: getattr(c, n) for n in CONFIG_RATES}, **config_options(c)), seed=c.seed)

    def steps_per_epoch(self) -> int:
        """ceil(N / batch): the steps of one pass over the N training examples."""
        return math.ceil(self.sizes["train"] / self.config.batch)

    def scaled_train_config(self, base: TrainConfig | None = None) -> TrainConfig:
        """``base`` (default ``train_defaults``) with steps = ceil(epochs N / batch) and an evaluation
        once per epoch (see the module docstring)."""
        c = self.config
        steps = math.ceil(c.epochs * self.sizes["train"] / c.batch)
        return dataclasses.replace(base or self.train_defaults, steps=steps, eval_every=self.steps_per_epoch())

    # ------------------------------------------------------------------ data
    def encode(self, texts) -> list:
        """Token id arrays of raw texts (normalised, tokenised, cut to max_len; may be empty)."""
        c = self.config
        toks = self.tokenizer.tokenize_many([normalise(t, c.lower) for t in texts])
        return [self.vocab.encode(t[: c.max_len] if c.max_len else t) for t in toks]

    def _set_corpus(self, corpus, split: dict) -> None:
        got = {s: int(v.size) for s, v in split.items()}
        if got != self.sizes:
            raise UserError(f"corpus {self.config.corpus}: has {got} examples per split, this model was trained on "
                            f"{self.sizes} (the data changed)")
        labels = corpus.label_ids(self.classes)
        data, self.dropped = {}, 0
        for s, idx in split.items():
            ids = self.encode([corpus.texts[i] for i in idx])
            keep = [k for k, a in enumerate(ids) if a.size]
            self.dropped += len(ids) - len(keep)
            if not keep:
                raise UserError(f"corpus {self.config.corpus}: no {s} examples with a token")
            data[s] = SplitData([ids[k] for k in keep], labels[idx[keep]],
                                np.array([ids[k].size for k in keep], dtype=np.int64))
        self._data = data

    @property
    def data(self) -> dict:
        if self._data is None:
            c = self.config
            try:
                corpus, files = read_corpus(c)
                got = tuple(sorted(set(corpus.labels[: files["train"]])))
                if got != tuple(self.classes):
                    raise UserError(f"classes {list(got)} differ from the model's {list(self.classes)}")
                self._set_corpus(corpus, split_corpus(c, corpus, files, self.classes))
            except UserError as e:
                raise UserError(f"the corpus recorded in this model ({c.corpus}) cannot be used: {e}") from None
        return self._data

    # ------------------------------------------------------------------ Task protocol
    def train_batch(self, rng, carry):
        d = self.data["train"]
        idx, carry = next_batch(d.lengths, self.config.batch, rng, carry)
        ids, lengths = pad_time_major([d.ids[i] for i in idx])
        masks = [int(rng.integers(2**63))] if self.config.regularized else None  # dropout masks' seed
        return (ids, lengths, d.labels[idx], masks), carry

    def shard_batch(self, batch, comm):
        """This MPI rank's texts of a global batch (the time-major split), with dropout masks of its own."""
        ids, lengths, labels, masks = shard_time_major(batch, comm, f"task {self.kind!r}")
        return ids, lengths, labels, None if masks is None else masks + [comm.rank]

    def loss_and_backward(self, batch, carry):
        ids, lengths, labels, masks = batch
        self.model.train()
        rng = None if masks is None else np.random.default_rng(masks)
        return self.model.loss(ids, lengths, labels, self.weights, backward=True, rng=rng), carry, int(labels.size)

    def predict_proba(self, ids_list: list) -> np.ndarray:
        """(N, C) class probabilities of N non-empty id arrays, in their order."""
        out = np.zeros((len(ids_list), len(self.classes)))
        lengths = np.array([a.size for a in ids_list], dtype=np.int64)
        for idx in in_batches(lengths, EVAL_BATCH):
            out[idx] = self.model.predict_proba(*pad_time_major([ids_list[i] for i in idx]))
        return out

    def evaluate(self, split: str = "val") -> dict:
        """loss (the training objective), accuracy, macro_f1, majority (baseline accuracy), examples."""
        r = self.report(split)
        return {k: r[k] for k in ("loss", "accuracy", "macro_f1", "majority", "examples")}

    def report(self, split: str = "val") -> dict:
        """:meth:`evaluate`'s metrics plus confusion (C, C), precision/recall/f1/support (C,)."""
        d = self._split(split)
        p = self.predict_proba(d.ids)
        y, C = d.labels, len(self.classes)
        nll = -np.log(np.maximum(p[np.arange(y.size), y], 1e-300))
        w = np.ones(C) if self.weights is None else self.weights.astype(np.float64)
        loss = float((w[y] * nll).sum() / w[y].sum())
        pred = p.argmax(axis=1)
        confusion = np.zeros((C, C), dtype=np.int64)
        np.add.at(confusion, (y, pred), 1)
        tp = np.diag(confusion).astype(np.float64)
        precision = np.divide(tp, confusion.sum(0), out=np.zeros(C), where=confusion.sum(0) > 0)
        recall = np.divide(tp, confusion.sum(1), out=np.zeros(C), where=confusion.sum(1) > 0)
        f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(C), where=precision + recall > 0)
        majority = int(np.argmax(self.class_counts))
        return {"loss": loss, "accuracy": float(tp.sum() / y.size), "macro_f1": float(f1.mean()),
                "majority": float(np.mean(y == majority)), "examples": float(y.size), "confusion": confusion,
                "precision": precision, "recall": recall, "f1": f1, "support": confusion.sum(1)}

    def onnx_parts(self) -> dict:
        """``rnnkit export --onnx`` (rnnkit.io.onnx_export.compose_onnx): token ids (T, B) + lengths ->
        Embedding -> the (bidirectional) encoder -> last / mean / max pooling -> logits (B, C); the
        classes, tokenizer and vocabulary as metadata.  Attention pooling has no ONNX form here."""
        m = self.model
        if self.config.pooling not in ("last", "mean", "max"):
            raise UserError(f"export: a classifier with {self.config.pooling} pooling cannot be exported to ONNX "
                            f"(last, mean and max pooling can)")
        return {"recurrent": m.encoder, "embedding": m.embedding, "head": m.out, "readout": self.config.pooling,
                "metadata": {"classes": list(self.classes), "tokenizer": self.tokenizer.to_dict(),
                             "vocab": self.vocab.to_dict()}}

    def meta(self) -> dict:
        return {"config": dataclasses.asdict(self.config), "classes": list(self.classes),
                "tokenizer": self.tokenizer.to_dict(), "vocab": self.vocab.to_dict(), "sizes": self.sizes,
                "class_counts": self.class_counts}

    @classmethod
    def model_plan(cls, meta: dict):
        """The SequenceClassifier's parameters (rnnkit.models.classifier) and the buffers of one training step
        from ``meta`` alone (rnnkit.train.task): B = ``batch`` texts of T = ``max_len`` tokens (no
        limit: 1, a lower bound); the vocabulary and classes from ``meta`` (a new run: the specials, 2)."""
        c = ClassifyTaskConfig(**meta["config"])
        T, D, H = c.max_len or 1, 2 if c.bidirectional else 1, c.hidden
        classes = len(meta["classes"]) if "classes" in meta else 2
        p = PlanParts(c.batch)
        p.embedding("embedding", vocab_size(meta, "vocab"), c.emb, T)
        Hh = p.recurrent("encoder", c.cell, c.emb, H, c.layers, T, D, **config_options(c))["h"]
        if c.pooling == "attention":  # ClassifierConfig's default score: additive
            p.shapes["pool.query"] = (D * Hh,)
            p.score("pool.score", "additive", D * Hh, D * Hh, None, 1, T)
        p.linear("out", D * Hh, classes, c.batch)
        return p.plan(hidden=c.hidden, layers=c.layers, emb=c.emb, batch=c.batch)

    @classmethod
    def from_checkpoint(cls, arrays: dict, meta: dict) -> "ClassifyTask":
        def build(m):
            return cls(ClassifyTaskConfig(**m["config"]), prepared={
                "classes": tuple(str(x) for x in m["classes"]), "tokenizer": tokenizer_from_dict(m["tokenizer"]),
                "vocab": TokenVocab.from_dict(m["vocab"]), "sizes": {k: int(v) for k, v in m["sizes"].items()},
                "class_counts": [int(n) for n in m["class_counts"]]})

        return restore(cls, arrays, meta, build)

    # ------------------------------------------------------------------ inference
    def top_k(self, lines, k: int = 3) -> tuple:
        """(classes (N, k) as label strings or None for a line without tokens, probabilities (N, k))."""
        ids = self.encode(lines)
        live = [i for i, a in enumerate(ids) if a.size]
        k = min(k, len(self.classes))
        labels, probs = [None] * len(ids), np.zeros((len(ids), k))
        if live:
            p = self.predict_proba([ids[i] for i in live])
            order = np.argsort(-p, axis=1, kind="stable")[:, :k]
            for row, i in enumerate(live):
                labels[i] = [self.classes[j] for j in order[row]]
                probs[i] = p[row, order[row]]
        return labels, probs
