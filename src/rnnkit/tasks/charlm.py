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

from ..data.text import (DEFAULT_MAX_CHARS, SPLITS, Vocab, load_text, sha256_text, split_ids,
                         stdlib_corpus)
from ..errors import CheckpointError, UserError
from ..layers import LAYERS as CELLS
from ..layers import LSTMState
from ..losses import log_softmax, softmax_cross_entropy
from ..module import Module
from ..nn import Embedding, Linear



@dataclass(frozen=True)
class CharLMConfig:
    """Model and batching of a char-LM (see the module docstring)."""

    cell: str = "lstm"
    layers: int = 2
    hidden: int = 128
    emb: int = 64
    batch: int = 32
    bptt: int = 100
    seed: int = 0  # initialisation of the weights

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"cell: expected one of {sorted(CELLS)}, got {self.cell!r}")
        for name in ("layers", "hidden", "emb", "batch", "bptt"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed: expected an integer >= 0, got {self.seed!r}")


class CharLMModel(Module):
    """emb -> rnn -> head.  forward(ids (T, B), state) -> (logits (T, B, V), state)."""

    def __init__(self, vocab_size: int, config: CharLMConfig):
        rng = np.random.default_rng(config.seed)
        self.emb = Embedding(vocab_size, config.emb, seed=rng)
        self.rnn = CELLS[config.cell](config.emb, config.hidden, num_layers=config.layers, seed=rng)
        self.head = Linear(config.hidden, vocab_size, seed=rng)

    def forward(self, ids: np.ndarray, state=None):
        h, state = self.rnn(self.emb(ids), state)
        return self.head(h), state

    __call__ = forward

    def backward(self, d_logits: np.ndarray) -> None:
        d_h = self.head.backward(d_logits)  # dL/dh = dL/dz W
        d_e, _ = self.rnn.backward(d_h)  # BPTT within the window; no gradient into the carried state
        self.emb.backward(d_e)  # dL/dE[k] = sum of dL/de_t where x_t = k


def _state_to_carry(state) -> dict:
    if isinstance(state, LSTMState):
        return {"h": state.h.copy(), "c": state.c.copy()}  # detached: copies, no tape
    return {"h": state.copy()}


def _carry_to_state(carry: dict):
    if "h" not in carry:
        return None
    return LSTMState(carry["h"], carry["c"]) if "c" in carry else carry["h"]


class CharLM:
    """A character-level language model with its corpus; implements the Task protocol.

    ``text``: the corpus (None = the default standard-library corpus of
    ``max_chars`` characters).  The vocabulary is every character of the corpus;
    the split is 90/5/5 (train/val/test), contiguous.
    """

    kind = "charlm"
    count_unit = "tokens"

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
        self._splits = split_ids(vocab.encode(text, "text"))
        n_train = len(self._splits["train"])
        B, T = self.config.batch, self.config.bptt
        if (n_train - 1) // B < T:
            raise UserError(f"text: the training split has {n_train} characters, too few for batch {B} x "
                            f"bptt {T} (needs at least {B * T + 1}); use a longer text or smaller --batch/--bptt")

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
            src = self.source.get("source")
            try:
                if src == "stdlib":
                    self.attach_text(stdlib_corpus(self.source["max_chars"]))
                elif src == "file":
                    self.attach_text(load_text(self.source["path"]))
                else:
                    raise UserError("the model was trained on a text given in Python; pass it with attach_text(text)")
            except UserError as e:
                raise UserError(f"the corpus recorded in this model ({src}) cannot be used: {e} "
                                f"(pass the training text again, --text FILE)") from None
        return self._splits

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
        state = None if (carry is None or k == 0) else _carry_to_state(carry)
        starts = np.arange(B) * L + k * T
        idx = starts[None, :] + np.arange(T)[:, None]  # (T, B)
        x, y = ids[idx], ids[idx + 1]
        return (x, y, state), {"window": np.array([k + 1], dtype=np.int64)}

    def loss_and_backward(self, batch, carry):
        x, y, state = batch
        logits, final = self.model(x, state)
        loss, d_logits = softmax_cross_entropy(logits, y)
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
        if len(ids) < 2:
            raise UserError(f"{split}: needs at least 2 characters to evaluate, has {len(ids)}")
        B = min(self.config.batch, len(ids) - 1)
        L = (len(ids) - 1) // B
        X = ids[: B * L].reshape(B, L).T  # (L, B) time-major streams
        Y = ids[1 : B * L + 1].reshape(B, L).T
        total, state = 0.0, None
        for p in range(0, L, self.config.bptt):
            logits, state = self.model(X[p : p + self.config.bptt], state)
            logp = log_softmax(logits.astype(np.float64))
            total -= float(np.take_along_axis(logp, Y[p : p + self.config.bptt, :, None], -1).sum())
        loss = total / (B * L)
        return {"loss": loss, "bpc": loss / math.log(2), "chars": B * L}

    def evaluate_text(self, text: str) -> dict:
        """Loss and bits/char of this model on another text (characters must be in the vocabulary)."""
        return self.evaluate("text", self.vocab.encode(text, "text"))

    def state_arrays(self) -> dict:
        return dict(self.model.params)

    def meta(self) -> dict:
        return {"config": dataclasses.asdict(self.config), "vocab": self.vocab.chars, "corpus": self.source}

    @classmethod
    def from_checkpoint(cls, arrays: dict, meta: dict) -> "CharLM":
        try:
            config = CharLMConfig(**meta["config"])
            vocab = Vocab(meta["vocab"])
            source = dict(meta["corpus"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"charlm checkpoint: bad metadata ({type(e).__name__}: {e})") from None
        lm = cls(config, None, vocab=vocab, source=source)
        try:
            lm.model.load_params(arrays)
        except ValueError as e:
            raise CheckpointError(f"charlm checkpoint: parameters do not fit the config ({e})") from None
        return lm

    # ------------------------------------------------------------------ high level
    def fit(self, steps: int = 1000, out_dir=None, on_eval=None, **train_kwargs):
        """Train with :class:`rnnkit.train.Trainer`; keyword arguments are TrainConfig fields.
        Returns the TrainResult.  ``self.trainer`` keeps the trainer; calling fit again continues
        from its step (optimizer state, rng, carry) up to the new total ``steps``."""
        from ..train import TrainConfig, Trainer

        cfg = TrainConfig(steps=steps, **train_kwargs)
        prev = getattr(self, "trainer", None)
        self.trainer = Trainer(self, cfg, out_dir)
        if prev is not None:  # continue: optimizer state, rng, step and carry
            self.trainer.load_state(*prev.state())
        return self.trainer.fit(on_eval=on_eval)

    def save(self, path) -> None:
        """Save the model (with training state if it was trained in this object)."""
        from ..train import save_task

        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            trainer.save(path)
        else:
            save_task(path, self)

    @classmethod
    def load(cls, path) -> "CharLM":
        from ..train import load_task

        return load_task(path, cls)

    def sample(self, prime: str = "", length: int = 200, temperature: float = 1.0, seed=None) -> str:
        """Generate ``length`` characters after ``prime`` (returned without the prime).

        Streams one character at a time with ``rnn.step``; next char ~ softmax(z / temperature).
        An empty prime starts from a newline (or the first vocabulary character).
        """
        if not isinstance(length, int) or length < 0:
            raise UserError(f"--length: expected an integer >= 0, got {length!r}")
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
            raise UserError(f"--temperature: expected a number > 0, got {temperature!r}")
        if not prime:
            prime = "\n" if "\n" in self.vocab.chars else self.vocab.chars[0]
        ids = self.vocab.encode(prime, "--prime")
        rng = np.random.default_rng(seed)
        E = self.model.emb.params["weight"]
        W, b = self.model.head.params["weight"], self.model.head.params["bias"]
        state, out = None, []
        for i in ids[:-1]:
            _, state = self.model.rnn.step(E[i : i + 1], state)
        cur = int(ids[-1])
        for _ in range(length):
            h, state = self.model.rnn.step(E[cur : cur + 1], state)
            z = (h[0] @ W.T + b).astype(np.float64) / temperature
            p = np.exp(z - z.max())
            cdf = np.cumsum(p)
            cur = int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(cdf) - 1))
            out.append(cur)
        return self.vocab.decode(out)


# ---------------------------------------------------------------------------- command line
EVAL_KINDS = ("charlm",)


def _model_config(args, base: CharLMConfig) -> CharLMConfig:
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(CharLMConfig)
             if f.name != "seed" and getattr(args, f.name, None) is not None}
    if getattr(args, "seed", None) is not None:
        given["seed"] = args.seed
    return dataclasses.replace(base, **given)


def _train(args) -> int:
    import os

    from ..cli import refuse_existing_checkpoint, refuse_model_changes, train_config_from_args
    from ..train import Trainer, TrainConfig

    if args.resume:
        from ..io.checkpoint import load_checkpoint

        _, meta = load_checkpoint(args.resume, kind="charlm")
        try:
            saved = TrainConfig(**meta["train"]["config"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint {args.resume!r}: no usable training state ({e})") from None
        trainer = Trainer.resume(args.resume, CharLM, config=train_config_from_args(args, saved),
                                 out_dir=args.out or os.path.dirname(os.path.abspath(args.resume)))
        lm = trainer.task
        refuse_model_changes(lm.config, {f.name: getattr(args, f.name) for f in dataclasses.fields(CharLMConfig)
                                         if f.name != "seed" and getattr(args, f.name, None) is not None})
        if args.text:
            lm.attach_text(load_text(args.text))
        print(f"resuming {args.resume} at step {trainer.step} of {trainer.config.steps}")
    else:
        cfg = _model_config(args, CharLMConfig())
        out = args.out or os.path.join("runs", "charlm")
        refuse_existing_checkpoint(out)
        try:
            lm = CharLM.from_file(args.text, cfg) if args.text else CharLM(cfg, max_chars=args.max_chars)
        except ValueError as e:
            raise UserError(str(e)) from None
        trainer = Trainer(lm, train_config_from_args(args, TrainConfig(steps=2000, eval_every=200)), out)
    _describe(lm)
    return _run(trainer, lm)


def _describe(lm: "CharLM") -> None:
    src = lm.source
    what = (f"{src['path']}" if src.get("source") == "file" else
            f"Python standard library .py files (first {src.get('max_chars')} chars)")
    sizes = {k: len(v) for k, v in lm.splits.items()}
    c = lm.config
    print(f"corpus: {what}: {src.get('chars')} chars, vocabulary {len(lm.vocab)}, "
          f"train/val/test {sizes['train']}/{sizes['val']}/{sizes['test']}")
    print(f"model: {c.cell.upper()} {c.layers}x{c.hidden}, embedding {c.emb}, {lm.model.num_params():,} parameters; "
          f"batch {c.batch} x bptt {c.bptt}")


def _run(trainer, lm: "CharLM", on_eval=None) -> int:
    import os

    from tqdm import tqdm

    from ..train import plot_metrics

    def report(tr, rec):
        tqdm.write(f"step {rec['step']:6d}  train {tr.last_loss:.4f}  val {rec['val_loss']:.4f} nats/char "
                   f"= {rec['val_bpc']:.3f} bits/char")
        if on_eval:
            on_eval(tr, rec)

    res = trainer.fit(on_eval=report)
    last = res.evals[-1] if res.evals else None
    if res.losses and (last is None or last["step"] != res.step):  # stopped between evaluations
        ev = lm.evaluate("val")
        last = {"step": res.step, "val_loss": ev["loss"], "val_bpc": ev["bpc"]}
    rate = (len(res.losses) * lm.config.batch * lm.config.bptt) / max(res.seconds, 1e-9)
    print(f"stopped at step {res.step} ({res.stop_reason}) after {res.seconds:.0f} s, {rate:,.0f} tokens/s")
    if last:
        best = f" (best {res.best_val:.4f} at an evaluation)" if math.isfinite(res.best_val) else ""
        print(f"val loss {last['val_loss']:.4f} nats/char = {last['val_bpc']:.3f} bits/char at step {last['step']}{best}")
    print(f"checkpoint: {res.checkpoint}")
    if res.stop_reason == "interrupted":
        print(f"interrupted: resume with  rnnkit train charlm --resume {res.checkpoint}")
    png = os.path.join(trainer.out_dir, "loss.png")
    got = plot_metrics(trainer.log_path, png, title=f"char-LM ({lm.config.cell.upper()} {lm.config.layers}x"
                       f"{lm.config.hidden})", ylabel="cross-entropy (nats/char)")
    print(f"loss curve: {got}" if got else "loss curve: not plotted (matplotlib is not installed; "
          "pip install 'rnnkit[plot]')")
    return 0


def _sample(args) -> int:
    lm = CharLM.load(args.checkpoint)
    print(args.prime + lm.sample(args.prime, args.length, args.temperature, args.seed))
    return 0


def eval_checkpoint(path, meta, args) -> int:
    lm = CharLM.load(path)
    if args.text:
        ev = lm.evaluate_text(load_text(args.text))
        where = args.text
    else:
        ev = lm.evaluate(args.split)
        where = f"{args.split} split"
    print(f"{where}: {ev['chars']} chars, loss {ev['loss']:.4f} nats/char = {ev['bpc']:.3f} bits/char")
    return 0


#: marks a directory written by ``rnnkit demo`` (the next demo may replace its files)
DEMO_MARKER = ".rnnkit-demo"
#: every file ``rnnkit demo`` writes into --out
DEMO_FILES = ("last.safetensors", "best.safetensors", "metrics.jsonl", "loss.png", DEMO_MARKER)


def _is_demo_file(out: str, name: str) -> bool:
    """One of the demo's files, or a temporary file left by an interrupted write of one."""
    own = name in DEMO_FILES or name == "loss.png.tmp.png" or (
        name.endswith(".tmp") and any(name.startswith(f + ".") for f in DEMO_FILES))
    path = os.path.join(out, name)
    return own and (os.path.isfile(path) or os.path.islink(path))


def _prepare_demo_dir(out: str) -> None:
    """Make ``out`` ready for a fresh demo: a new or empty directory, or one an earlier demo wrote,
    whose files (:data:`DEMO_FILES`) are removed.  Never removes a directory or a file the demo does
    not write: a directory holding anything else, or files not marked as the demo's, is refused."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"demo --out {out}: exists and is not a directory")
    names = sorted(os.listdir(out)) if os.path.isdir(out) else []
    if names:
        other = [n for n in names if not _is_demo_file(out, n)]
        if other or DEMO_MARKER not in names:
            shown = ", ".join(repr(n) for n in (other or names)[:3]) + (", ..." if len(other or names) > 3 else "")
            raise UserError(f"demo --out {out}: not an earlier demo's directory (holds {shown}); the demo replaces "
                            f"its own files on every run and touches nothing else, so choose a new or empty --out")
        for n in names:
            os.remove(os.path.join(out, n))
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, DEMO_MARKER), "w", encoding="utf-8") as f:
        f.write("written by rnnkit demo; the next rnnkit demo with this --out replaces the files listed here:\n"
                + "\n".join(DEMO_FILES) + "\n")


def _demo(args) -> int:
    import os
    import time

    from ..train import Trainer, TrainConfig

    out = args.out
    _prepare_demo_dir(out)  # the demo starts fresh: its own earlier files go, nothing else is touched
    print(f"rnnkit demo: a character-level LSTM learns to write Python, {args.time_limit:.0f} s on this CPU.")
    lm = CharLM(CharLMConfig(cell="lstm", layers=1, hidden=args.hidden, emb=32, batch=32, bptt=64, seed=args.seed),
                max_chars=args.max_chars)
    _describe(lm)
    prime = "def "

    def show(step, ev, elapsed):
        s = lm.sample(prime, 160, temperature=0.7, seed=args.seed)
        print(f"\n--- step {step}, {elapsed:.0f} s: val {ev['loss']:.3f} nats/char = {ev['bpc']:.2f} bits/char; "
              f"sample (temperature 0.7):")
        print(prime + s)

    t0 = time.perf_counter()
    show(0, lm.evaluate("val"), 0.0)
    cfg = TrainConfig(steps=20, lr=args.lr, clip=5.0, eval_every=0, seed=args.seed, progress=not args.quiet)
    trainer = Trainer(lm, cfg, out)
    # samples after 20 steps, then at 1/32, 1/16, ..., 1/2 and the whole of the time limit
    targets = [args.time_limit / 2 ** j for j in range(5, -1, -1)]
    for target in [None] + targets:
        if target is not None:
            elapsed = time.perf_counter() - t0
            if elapsed >= target - 0.5:
                continue
            per_step = res.seconds / max(len(res.losses), 1)  # measured in the previous stage
            n = max(1, int(1.5 * (target - elapsed) / per_step))  # the time limit ends the stage
            trainer.config = dataclasses.replace(cfg, steps=trainer.step + n, time_limit=target - elapsed)
        res = trainer.fit()
        ev = ({"loss": res.evals[-1]["val_loss"], "bpc": res.evals[-1]["val_bpc"]} if res.evals
              else lm.evaluate("val"))
        show(trainer.step, ev, time.perf_counter() - t0)
        if res.stop_reason == "interrupted":
            break
    from ..train import plot_metrics

    png = plot_metrics(trainer.log_path, os.path.join(out, "loss.png"), title="rnnkit demo: char-LM on Python code",
                       ylabel="cross-entropy (nats/char)")
    ev = lm.evaluate("val")
    print(f"\nval loss after {trainer.step} steps ({time.perf_counter() - t0:.0f} s): {ev['loss']:.3f} nats/char = "
          f"{ev['bpc']:.2f} bits/char (uniform guessing: {math.log2(len(lm.vocab)):.2f} bits/char)")
    print(f"checkpoint: {trainer.last_path}")
    print(f"loss curve: {png}" if png else "loss curve: not plotted (matplotlib is not installed; "
          "pip install 'rnnkit[plot]')")
    print(f"next: rnnkit sample {trainer.last_path} --prime 'class ' --length 400")
    return 0


def register_cli(root, train_sub) -> None:
    """Add ``train charlm``, ``sample`` and ``demo`` (see rnnkit.cli)."""
    from ..cli import add_train_args, nonneg_float, nonneg_int, positive_int
    from ..train import TrainConfig

    d = CharLMConfig()
    p = train_sub.add_parser("charlm", help="character-level language model",
                             description="Train a character-level language model (truncated BPTT, 90/5/5 split). "
                                         "Without --text the corpus is the Python standard library's .py files.")
    p.add_argument("--text", metavar="FILE", help="UTF-8 text file (default: the Python standard library's .py files)")
    p.add_argument("--max-chars", dest="max_chars", type=positive_int, default=DEFAULT_MAX_CHARS,
                   help=f"size of the default corpus in characters (default {DEFAULT_MAX_CHARS})")
    p.add_argument("--cell", choices=sorted(CELLS), help=f"(default {d.cell})")
    p.add_argument("--layers", type=positive_int, help=f"(default {d.layers})")
    p.add_argument("--hidden", type=positive_int, help=f"hidden size (default {d.hidden})")
    p.add_argument("--emb", type=positive_int, help=f"embedding size (default {d.emb})")
    p.add_argument("--batch", type=positive_int, help=f"parallel streams (default {d.batch})")
    p.add_argument("--bptt", type=positive_int, help=f"window length of truncated BPTT (default {d.bptt})")
    add_train_args(p, TrainConfig(steps=2000, eval_every=200))
    p.set_defaults(func=_train)

    s = root.add_parser("sample", help="generate text from a char-LM checkpoint",
                        description="Generate text from a char-LM checkpoint.")
    s.add_argument("checkpoint", metavar="CKPT")
    s.add_argument("--prime", default="", help="text to start from (default: a newline)")
    s.add_argument("--temperature", type=float, default=1.0, help="softmax temperature > 0 (default 1.0)")
    s.add_argument("--length", type=int, default=500, help="characters to generate (default 500)")
    s.add_argument("--seed", type=nonneg_int, default=None, help="sampling seed (default: random)")
    s.set_defaults(func=_sample)

    m = root.add_parser("demo", help="train a small char-LM on Python's own source for ~2 minutes",
                        description="Train a small LSTM char-LM on the standard library's .py files, printing "
                                    "samples as it learns, then the val bits/char, checkpoint and loss curve.")
    m.add_argument("--time-limit", dest="time_limit", type=nonneg_float, default=120.0, help="seconds (default 120)")
    m.add_argument("--out", default=os.path.join("runs", "demo"), help="output directory (default runs/demo)")
    m.add_argument("--hidden", type=positive_int, default=128, help="LSTM hidden size (default 128)")
    m.add_argument("--lr", type=nonneg_float, default=4e-3, help="Adam learning rate (default 4e-3)")
    m.add_argument("--max-chars", dest="max_chars", type=positive_int, default=1_000_000,
                   help="corpus size in characters (default 1000000)")
    m.add_argument("--seed", type=nonneg_int, default=0, help="seed of weights, batches and samples (default 0)")
    m.add_argument("--quiet", action="store_true", help="no progress bar")
    m.set_defaults(func=_demo)
