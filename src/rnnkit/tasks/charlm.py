"""Character-level language model: Embedding -> multi-layer RNN/LSTM/GRU -> Linear -> softmax.

Model, for ids x_1..x_T (one stream)::

    e_t = E[x_t]                         (emb)        E: (V, emb)
    h_t = RNN(e_t, h_{t-1})              (layers x hidden; LSTM also carries c_t)
    z_t = W h_t + b                      (logits)     W: (V, hidden)
    loss = mean_t -log softmax(z_t)[x_{t+1}]          nats/char;  bits/char = loss / ln 2

Training is stateful truncated BPTT: the training split is cut into ``batch``
parallel streams of length L = (n - 1) // batch (stream b starts at b*L), and
each step takes the next window of ``bptt`` steps from every stream; the
final state of a window is detached (copied, no gradient through it) and is
the initial state of the next.  After the last full window the streams start
over from a zero state.  Evaluation runs the whole split the same way
(windows carried, the last window may be short) and averages over every
predicted character.

The network is :class:`rnnkit.models.charlm.CharLMModel`; evaluation with carried state and
streamed files :mod:`rnnkit.tasks.charlm_eval`; sampling :mod:`rnnkit.models.sampling`.
``CharLM`` is both the high-level object and a :mod:`rnnkit.train` Task::

    lm = CharLM(CharLMConfig(hidden=128), text=open("input.txt").read())
    lm.fit(steps=2000, out_dir="runs/lm")
    print(lm.sample("ROMEO:", length=300, temperature=0.8, seed=0))

``CharLM.load(path)`` reads a checkpoint; ``lm.save(path)`` writes one.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import numpy as np

from rnnkit.data.text import DEFAULT_MAX_CHARS, SPLITS, Vocab, load_text, sha256_text, split_ids, stdlib_corpus
from rnnkit.errors import UserError
from rnnkit.engine.memory import estimate_rnn_bytes, rnn_param_shapes
from rnnkit.engine.dropout import CONFIG_RATES, ConfigRates
from rnnkit.engine.layer_types import LAYERS as CELLS, CellVariant, config_cell, default_bias
from rnnkit.models.charlm import CharLMModel
from rnnkit.models.sampling import sample_ids
from rnnkit.nn.losses import softmax_cross_entropy
from rnnkit.train import ModelPlan, TrainConfig, Trainer, load_task, restore, save_task
from rnnkit.tasks.textdata import reload_corpus
from rnnkit.checks.fields import check_options, option
from rnnkit.checks.rules import NONNEG_INT, POSITIVE_INT
from rnnkit.tasks.charlm_eval import evaluate_file, evaluate_windows, streams

DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class CharLMConfig(CellVariant, ConfigRates):
    """Model and batching of a char-LM (see the module docstring); ConfigRates's dropout rates are the
    regularisers (training only, rnnkit.engine.dropout), with CellVariant's peephole, proj_size."""

    cell: str = option("lstm", choices=sorted(CELLS))
    layers: int = option(2, rule=POSITIVE_INT)
    hidden: int = option(128, "hidden size", rule=POSITIVE_INT)
    emb: int = option(64, "embedding size", rule=POSITIVE_INT)
    batch: int = option(32, "parallel streams", rule=POSITIVE_INT)
    bptt: int = option(100, "window length of truncated BPTT", rule=POSITIVE_INT)
    seed: int = option(0, rule=NONNEG_INT, flag=False)  # initialisation of the weights (the flag --seed)
    dtype: str = option("float32", "parameters and activations", choices=DTYPES)  # "float64": exact comparisons

    def __post_init__(self):
        check_options(self)
        config_cell(self, self.hidden)  # the variants fit the cell and the sizes


REGULARIZERS = CONFIG_RATES
"""The config's dropout rates; in training the masks come from the Trainer's generator."""


def _state_to_carry(state) -> dict:
    """Detached copies of a state's fields ({"h"} or {"h", "c"}): no tape, checkpointable."""
    fields = getattr(state, "_fields", None)
    if fields:
        return {k: getattr(state, k).copy() for k in fields}
    return {"h": state.copy()}


def _carry_to_state(carry: dict, rnn):
    if "h" not in carry:
        return None
    fields = rnn.cell.State._fields
    return rnn.cell.State(*(carry[k] for k in fields)) if len(fields) > 1 else carry["h"]


class CharLM:
    """A character-level language model with its corpus; implements the Task protocol.

    ``text``: the corpus (None = the default standard-library corpus of
    ``max_chars`` characters).  The vocabulary is every character of the corpus;
    the split is 90/5/5 (train/val/test), contiguous.
    """

    kind = "charlm"
    count_unit = "tokens"
    config_class = CharLMConfig
    train_defaults = TrainConfig(steps=2000, eval_every=200)  # a new ``rnnkit train charlm`` run
    carry_axes = {"h": 1, "c": 1}  # the carried state (layers, B, H): one column per stream (train.parallel)

    def __init__(self, config: CharLMConfig = CharLMConfig(), text: str | None = None, *,
                 max_chars: int = DEFAULT_MAX_CHARS, source: dict | None = None, vocab: Vocab | None = None):
        if not isinstance(config, CharLMConfig):
            raise TypeError(f"config: expected a CharLMConfig, got {type(config).__name__}")
        self.config = config
        self._splits = None
        if text is None and vocab is None:
            text = stdlib_corpus(max_chars)
            source = {"source": "stdlib", "max_chars": max_chars}
        if text is not None:
            if not isinstance(text, str):
                raise TypeError(f"text: expected a str, got {type(text).__name__}")
            if len(text) < 2:
                raise UserError(f"text: expected at least 2 characters, got {len(text)}")
            vocab = vocab or Vocab.from_text(text)
            self.source = dict(source or {"source": "text"}, sha256=sha256_text(text), chars=len(text))
            self._set_text(text, vocab)
        else:
            self.source = dict(source or {"source": "text"})
        self.vocab = vocab
        self.model = CharLMModel(len(vocab), config)

    @classmethod
    def from_file(cls, path, config: CharLMConfig = CharLMConfig()) -> "CharLM":
        return cls(config, load_text(path), source={"source": "file", "path": os.path.abspath(path)})

    # ------------------------------------------------------------------ data
    def _set_text(self, text: str, vocab: Vocab) -> None:
        """Split the corpus; refused before any training: a vocabulary of one character (the loss is
        0 at once, nothing to learn), a val or test split under 2 characters (nothing to evaluate),
        a training split shorter than one batch x bptt window."""
        if len(vocab) < 2:
            raise UserError(f"text: has only one distinct character ({vocab.chars[0]!r}); a language model needs "
                            f"at least 2 (there is nothing to predict)")
        splits = split_ids(vocab.encode(text, "text"))
        for split in ("val", "test"):
            if len(splits[split]) < 2:
                raise UserError(f"text: the {split} split has {len(splits[split])} character(s), too few to evaluate "
                                f"(needs at least 2; the split is 90/5/5 of {len(text)} characters: use a text of "
                                f"at least 40 characters)")
        n_train = len(splits["train"])
        B, T = self.config.batch, self.config.bptt
        if (n_train - 1) // B < T:
            raise UserError(f"text: the training split has {n_train} characters, too few for batch {B} x "
                            f"bptt {T} (needs at least {B * T + 1}); use a longer text or smaller --batch/--bptt")
        self._splits = splits

    def attach_text(self, text: str) -> None:
        """Give a loaded model its corpus again (must be the text it was trained on)."""
        want = self.source.get("sha256")
        if want and sha256_text(text) != want:
            raise UserError(f"text: differs from the corpus this model was trained on "
                            f"({len(text)} chars vs {self.source.get('chars')}; SHA-256 mismatch)")
        self._set_text(text, self.vocab)

    @property
    def splits(self) -> dict:
        """{"train", "val", "test"} -> int32 ids; reloaded from the recorded source when needed."""
        if self._splits is None:
            self.attach_text(reload_corpus(self.source.get("source"), self._recorded_text,
                                           " (pass the training text again, --text FILE)"))
        return self._splits

    def _recorded_text(self) -> str:
        """The training text, read again from the source this model recorded."""
        src = self.source.get("source")
        if src == "stdlib":
            return stdlib_corpus(self.source["max_chars"])
        if src == "file":
            return load_text(self.source["path"])
        raise UserError("the model was trained on a text given in Python; pass it with attach_text(text)")

    # ------------------------------------------------------------------ Task protocol
    def train_batch(self, rng, carry):
        """Next window of every stream.  carry: {"window": int array, "h", ["c"]} or None."""
        ids = self.splits["train"]
        B, T = self.config.batch, self.config.bptt
        L = (len(ids) - 1) // B
        n_windows = L // T
        k = 0 if carry is None else int(carry["window"].reshape(-1)[0])
        if k >= n_windows:
            k = 0
        state = None if (carry is None or k == 0) else _carry_to_state(carry, self.model.rnn)
        starts = np.arange(B) * L + k * T
        idx = starts[None, :] + np.arange(T)[:, None]  # (T, B)
        x, y = ids[idx], ids[idx + 1]
        masks = [int(rng.integers(2**63))] if self.config.regularized else None  # dropout masks' seed
        return (x, y, state, masks), {"window": np.array([k + 1], dtype=np.int64)}

    def shard_batch(self, batch, comm):
        """This MPI rank's streams ``comm.shard(B)`` of a global batch (rnnkit.train.data_parallel); the
        carried state in the batch is already this rank's own (``carry_axes``)."""
        x, y, state, masks = batch
        part = comm.shard(x.shape[1])
        return x[:, part], y[:, part], state, None if masks is None else masks + [comm.rank]  # own masks

    def loss_and_backward(self, batch, carry):
        x, y, state, masks = batch
        self.model.train()
        logits, final = self.model(x, state, rng=None if masks is None else np.random.default_rng(masks))
        loss, d_logits = softmax_cross_entropy(logits, y, out=logits)  # fused; d_logits over the logits
        if not math.isfinite(loss):  # the trainer stops on it; no backward through NaN
            self.model.rnn.release()
            return loss, carry, x.size
        self.model.backward(d_logits)
        return loss, {"window": carry["window"], **_state_to_carry(final)}, x.size

    def evaluate(self, split: str = "val", ids: np.ndarray | None = None) -> dict:
        """Mean loss (nats/char) and bits/char over a split (or the given ids) with carried state."""
        if ids is None:
            if split not in SPLITS:
                raise UserError(f"split: expected one of {list(SPLITS)}, got {split!r}")
            ids = self.splits[split]
        B, L = streams(len(ids), self.config.batch, split)
        X = ids[: B * L].reshape(B, L).T  # (L, B) time-major streams
        Y = ids[1 : B * L + 1].reshape(B, L).T
        T = self.config.bptt
        return evaluate_windows(self.model, ((X[p : p + T], Y[p : p + T]) for p in range(0, L, T)), B * L)

    def evaluate_text(self, text: str, split: str | None = None) -> dict:
        """Loss and bits/char of this model on another text (characters must be in the vocabulary):
        the whole text, or its ``split`` ("train", "val", "test": the 90/5/5 split of training)."""
        ids = self.vocab.encode(text, "text")
        if split is None:
            return self.evaluate("text", ids)
        if split not in SPLITS:
            raise UserError(f"split: expected one of {list(SPLITS)}, got {split!r}")
        return self.evaluate(split, split_ids(ids)[split])

    def evaluate_file(self, path, split: str | None = None, progress: bool = False) -> dict:
        """:meth:`evaluate_text` of a file, streamed (rnnkit.tasks.charlm_eval.evaluate_file)."""
        return evaluate_file(self.model, self.vocab, self.config.batch, self.config.bptt, path, split, progress)

    def state_arrays(self) -> dict:
        return dict(self.model.params)

    def onnx_parts(self) -> dict:
        """``rnnkit export --onnx`` (rnnkit.io.onnx_export.compose_onnx): ids (T, B) -> Embedding -> the
        recurrent stack -> head at every step: logits (T, B, V); the vocabulary (id order) as metadata."""
        m = self.model
        return {"recurrent": m.rnn, "embedding": m.emb, "head": m.head, "readout": "every",
                "metadata": {"vocab": self.vocab.chars}}

    def meta(self) -> dict:
        return {"config": dataclasses.asdict(self.config), "vocab": self.vocab.chars, "corpus": self.source}

    @classmethod
    def model_plan(cls, meta: dict) -> ModelPlan:
        """Parameters and training buffers from ``meta`` alone (rnnkit.train.task): ``meta["config"]``
        and the vocabulary ``meta["vocab"]`` (before a new run reads its text: 1 character, a lower bound)."""
        c = CharLMConfig(**meta["config"])
        V, cell, bias = max(1, len(meta.get("vocab") or "")), config_cell(c, c.hidden), default_bias(c.cell)
        dtype, sizes = np.dtype(c.dtype), (c.emb, c.hidden, c.layers)
        est = estimate_rnn_bytes(*sizes, T=c.bptt, B=c.batch, cell=cell, itemsize=dtype.itemsize, bias=bias)
        shapes = {"emb.weight": (V, c.emb), **rnn_param_shapes(*sizes, 1, cell, bias=bias, prefix="rnn."),
                  "head.weight": (V, cell.field_sizes(c.hidden)["h"]), "head.bias": (V,)}
        act = est.activations + dtype.itemsize * c.bptt * c.batch * (2 * c.emb + 3 * V)  # embedded ids, logits, grads
        return ModelPlan(shapes, dtype.type, act, est.init, sizes={"hidden": c.hidden, "layers": c.layers})

    @classmethod
    def from_checkpoint(cls, arrays: dict, meta: dict) -> "CharLM":
        return restore(cls, arrays, meta, lambda m: cls(CharLMConfig(**m["config"]), None, vocab=Vocab(m["vocab"]),
                                                        source=dict(m["corpus"])))

    # ------------------------------------------------------------------ high level
    def fit(self, steps: int = 1000, out_dir=None, on_eval=None, **train_kwargs):
        """Train with :class:`rnnkit.train.Trainer`; keyword arguments are TrainConfig fields.
        Returns the TrainResult.  ``self.trainer`` keeps the trainer; calling fit again continues
        from its step (optimizer state, rng, carry) up to the new total ``steps``."""
        cfg = TrainConfig(steps=steps, **train_kwargs)
        prev = getattr(self, "trainer", None)
        self.trainer = Trainer(self, cfg, out_dir)
        if prev is not None:  # continue: optimizer state, rng, step and carry
            self.trainer.load_state(*prev.state())
        return self.trainer.fit(on_eval=on_eval)

    def save(self, path) -> None:
        """Save the model (with training state if it was trained in this object)."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            trainer.save(path)
        else:
            save_task(path, self)

    @classmethod
    def load(cls, path) -> "CharLM":
        return load_task(path, cls)

    def sample(self, prime: str = "", length: int = 200, temperature: float = 1.0, seed=None) -> str:
        """Generate ``length`` characters after ``prime`` (returned without the prime); an empty prime
        starts from a newline (or the first vocabulary character).  rnnkit.models.sampling."""
        if not prime:
            prime = "\n" if "\n" in self.vocab.chars else self.vocab.chars[0]
        ids = self.vocab.encode(prime, "--prime")
        return self.vocab.decode(sample_ids(self.model, ids, length, temperature, np.random.default_rng(seed)))
