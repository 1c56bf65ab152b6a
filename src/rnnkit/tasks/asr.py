"""Speech recognition with CTC: log-mel features -> recurrent acoustic model -> characters.

Corpus: ``manifest`` (+ ``val_manifest``, ``test_manifest``; a split not given is carved out of
the training manifest, 5 % each, with the seed), or without one the spoken digits of FSDD
(``fsdd``, rnnkit.data.digits: isolated recordings in the official split plus ``connected``
connected-digit sequences for training, a tenth of that for val and test, from each split's
own recordings).  rnnkit.tasks.asr_data reads them; the text normalisation is its
``TEXT_NORMALISATION``.

Features: 25 ms / 10 ms log-mel (``n_mels``, rnnkit.data.features), normalised by the training
set's per-bin mean and std (kept in the checkpoint's metadata, ``cmvn``), SpecAugment in
training (``spec_augment``), ``stack`` frames side by side (the recurrence runs T / stack steps);
``speed_perturb`` adds training copies at other speeds (rnnkit.tasks.asr_data.with_speeds; default none).

Model (rnnkit.models.asr): ``layers`` x ``hidden`` recurrent stack of ``cell`` (bidirectional unless
``bidirectional`` is False: streaming needs a unidirectional one) -> Linear -> blank + alphabet.
Loss: rnnkit.nn.ctc, mean over the batch of nll / target length (torch's "mean"); impossible
alignments count in ``infinite`` and are zeroed.  ``evaluate`` reports that loss, greedy ``cer``
and ``wer`` (jiwer), and for digits the isolated ``accuracy`` and ``cer_connected``.

Defaults: 0 means "by corpus": spoken digits 8 kHz, 40 mels, 3 x 128, batch 32; a manifest 16 kHz,
80 mels, 4 x 256, batch 16 (the recipes of docs/tasks.md); ``stack`` 3 for both.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from rnnkit.checks.fields import check_options, option
from rnnkit.checks.rules import NONNEG_INT, POSITIVE_INT, RATE, SPEEDS
from rnnkit.data.batching import bucket_batches
from rnnkit.data.features import apply_cmvn, cmvn_stats, log_mel, pad_frames, spec_augment, stack_frames
from rnnkit.engine.layer_types import LAYERS, CellVariant, config_options
from rnnkit.engine.threads import blas_threads_at_most
from rnnkit.errors import UserError
from rnnkit.models.asr import ASRModel, ASRModelConfig
from rnnkit.models.ctc_decode import greedy, prefix_beam_search
from rnnkit.nn.ctc import ctc_nll, reduce_ctc
from rnnkit.tasks.asr_data import (SPLITS, carve, digits_audio, features, read_manifest_audio, to_split,
                                   with_speeds)
from rnnkit.tasks.textdata import next_batch
from rnnkit.train import TrainConfig, restore

EVAL_BATCH = 64
AUTO = {"digits": {"rate": 8000, "n_mels": 40, "layers": 3, "hidden": 128, "batch": 32},
        "manifest": {"rate": 16000, "n_mels": 80, "layers": 4, "hidden": 256, "batch": 16}}


_FILE = {"metavar": "FILE", "path": True, "group": "corpus"}


@dataclass(frozen=True)
class ASRTaskConfig(CellVariant):
    """Corpus, features, model and batch of a speech-recognition run (see the module docstring)."""

    manifest: str | None = option(None, "training utterances: TSV path<TAB>transcript or JSON lines (audio_filepath, "
                                        "text); paths relative to the file", **_FILE)
    val_manifest: str | None = option(None, "val utterances (default: 5 %% of the training manifest)", **_FILE)
    test_manifest: str | None = option(None, "test utterances (default: 5 %% of the training manifest)", **_FILE)
    skip_bad_audio: bool = option(False, "skip unreadable audio files (counted) instead of stopping", group="corpus")
    fsdd: str = option("../shared/data/fsdd", "FSDD recordings, used without --manifest", metavar="DIR", path=True,
                       group="corpus")
    connected: int = option(4000, "connected-digit training sequences; val and test get a tenth", rule=NONNEG_INT,
                            group="corpus")
    rate: int = option(0, "sample rate of the model (default: 8000 digits, 16000 manifest)", rule=NONNEG_INT,
                       group="features")
    n_mels: int = option(0, "mel bins (default: 40 digits, 80 manifest)", rule=NONNEG_INT, group="features")
    stack: int = option(3, "frames stacked per recurrent step", rule=POSITIVE_INT, group="features")
    spec_augment: bool = option(True, "SpecAugment masks in training", group="features")
    speed_perturb: str = option("1.0", "training copies at these speeds (Kaldi's speed perturbation), comma-separated, "
                                       "1 = the recording as it is, e.g. 0.9,1.0,1.1", rule=SPEEDS, group="features")
    cell: str = option("lstm", "recurrent cell", choices=sorted(LAYERS), group="model")
    layers: int = option(0, "recurrent layers (default: 3 digits, 4 manifest)", rule=NONNEG_INT, group="model")
    hidden: int = option(0, "hidden size per direction (default: 128 digits, 256 manifest)", rule=NONNEG_INT,
                         group="model")
    bidirectional: bool = option(True, "bidirectional layers (--stream needs --no-bidirectional)", group="model")
    dropout: float = option(0.2, "between layers, training only", rule=RATE, group="model")
    batch: int = option(0, "utterances per step (default: 32 digits, 16 manifest)", rule=NONNEG_INT, group="model")
    seed: int = option(0, rule=NONNEG_INT, flag=False)

    def __post_init__(self):
        check_options(self)

    @property
    def corpus(self) -> str:
        return "manifest" if self.manifest else "digits"

    def resolved(self) -> "ASRTaskConfig":
        """This config with every 0 ("by corpus") replaced by the corpus's default."""
        auto = AUTO[self.corpus]
        return dataclasses.replace(self, **{k: v for k, v in auto.items() if getattr(self, k) == 0})

    @property
    def speeds(self) -> tuple:
        """``speed_perturb`` as numbers."""
        return tuple(float(s) for s in self.speed_perturb.split(","))


class ASRTask:
    """A speech-recognition run: corpus, features, alphabet, CMVN, model; the Task protocol."""

    kind = "asr"
    count_unit = "tokens"  # feature frames (10 ms each) before stacking
    #: spoken digits: 4,000 steps of 32 utterances, Adam 3e-3 cosine to 1e-4 (docs/tasks.md: how it was chosen)
    train_defaults = TrainConfig(steps=4000, lr=3e-3, schedule="cosine", min_lr=1e-4, eval_every=500, clip=5.0)
    #: a manifest (about an hour of speech): Adam 1e-3, evaluated every 500 steps, run until --time-limit or
    #: --steps, the model a moving average of the parameters (--ema 0.998: test CER 1.19 % against 2.11 % at
    #: 2,000 steps on a 16 kHz stand-in, docs/tasks.md; no real corpus of that kind on this machine)
    manifest_train_defaults = TrainConfig(steps=30000, lr=1e-3, eval_every=500, clip=5.0, ema=0.998)

    def __init__(self, config: ASRTaskConfig = ASRTaskConfig(), *, prepared: dict | None = None):
        self.config = c = config.resolved()
        self.infinite, self._data = 0, None
        if prepared is None:
            self.notes = {}
            audio = self._read_audio()
            with blas_threads_at_most(1):  # (T, n_fft/2) x (n_fft/2, n_mels) products: threads only cost
                feats = {s: features(audio[s], c.rate, c.n_mels) for s in SPLITS}
            self.mean, self.std = cmvn_stats(feats["train"])
            self.alphabet = "".join(sorted(set("".join(audio["train"].texts))))
            if not self.alphabet:
                raise UserError("the training transcripts hold no character after normalisation")
            self._data = {s: to_split(audio[s], feats[s], self.mean, self.std, self.alphabet) for s in SPLITS}
            self.sizes = {s: len(d.texts) for s, d in self._data.items()}
        else:
            self.alphabet, self.mean, self.std = prepared["alphabet"], prepared["mean"], prepared["std"]
            self.sizes, self.notes = prepared["sizes"], prepared["notes"]
        self.model = ASRModel(ASRModelConfig(
            input_size=c.n_mels * c.stack, num_classes=len(self.alphabet) + 1, hidden_size=c.hidden,
            num_layers=c.layers, cell=c.cell, bidirectional=c.bidirectional, dropout=c.dropout,
            **config_options(c)), seed=c.seed)

    # ------------------------------------------------------------------ data
    def _read_audio(self) -> dict:
        c = self.config
        if c.manifest is None:
            n = {"train": c.connected, "val": max(c.connected // 10, 1), "test": max(c.connected // 10, 1)}
            return digits_audio(c.fsdd, c.rate, n, c.seed, self.notes, c.speeds)
        audio = {"train": read_manifest_audio(c.manifest, c.rate, c.skip_bad_audio, self.notes)}
        for s, salt, path in (("val", 1, c.val_manifest), ("test", 2, c.test_manifest)):
            if path:
                audio[s] = read_manifest_audio(path, c.rate, c.skip_bad_audio, self.notes)
            else:
                audio["train"], audio[s] = carve(audio["train"], 0.05, c.seed, salt)
        audio["train"] = with_speeds(audio["train"], c.speeds)
        return audio

    @property
    def data(self) -> dict:
        if self._data is None:
            try:
                fresh = ASRTask(self.config)
            except UserError as e:
                raise UserError(f"the corpus recorded in this model cannot be read again: {e}") from None
            if (fresh.alphabet != self.alphabet or fresh.sizes != self.sizes
                    or not np.array_equal(fresh.mean, self.mean)):
                raise UserError(f"the corpus recorded in this model changed: alphabet {fresh.alphabet!r} and sizes "
                                f"{fresh.sizes}, the model's {self.alphabet!r} and {self.sizes}")
            self._data = fresh._data  # the same features: the same statistics normalised them
        return self._data

    def prepare(self, samples) -> tuple[np.ndarray, np.ndarray]:
        """Samples at the model's rate -> stacked, normalised features (T, B, F) and lengths (B,)."""
        c = self.config
        with blas_threads_at_most(1):
            feats = [stack_frames(apply_cmvn(log_mel(x, c.rate, c.n_mels), self.mean, self.std).astype(np.float32),
                                  c.stack) for x in samples]
        return pad_frames(feats)

    # ------------------------------------------------------------------ Task protocol
    def train_batch(self, rng, carry):
        c, d = self.config, self.data["train"]
        idx, carry = next_batch(d.lengths, c.batch, rng, carry)
        feats = [d.feats[i] for i in idx]
        if c.spec_augment:
            feats = [spec_augment(f, rng, freq_width=max(1, c.n_mels // 8)) for f in feats]
        x, lengths = pad_frames([stack_frames(f, c.stack) for f in feats])
        return (x, lengths, [d.ids[i] for i in idx], int(rng.integers(2 ** 63)), int(d.lengths[idx].sum())), carry

    def _loss(self, x, lengths, ids, rng=None, backward=False):
        targets, tl = _pad_ids(ids)
        lp = self.model.forward(x, lengths, rng=rng)
        nll, d = ctc_nll(lp, targets, lengths, tl)
        loss, d, n_inf = reduce_ctc(nll, d, tl, "mean", zero_infinity=True)
        if backward:
            self.model.backward(d)
        return loss, n_inf, lp

    def loss_and_backward(self, batch, carry):
        x, lengths, ids, seed, frames = batch
        self.model.train()
        loss, n_inf, _ = self._loss(x, lengths, ids, np.random.default_rng(seed), backward=True)
        self.infinite += n_inf
        return loss, carry, frames

    def decode(self, lp, lengths, beam: int = 1, lm=None, lm_weight: float = 0.0, bonus: float = 0.0) -> list:
        """Texts of a batch's log-probabilities (T, B, C): greedy for beam 1 without LM, else prefix beam search."""
        out = []
        for b in range(lp.shape[1]):
            seq = lp[:lengths[b], b]
            ids = (greedy(seq) if beam == 1 and lm is None else
                   prefix_beam_search(seq, beam=beam, lm=lm, lm_weight=lm_weight, bonus=bonus))
            out.append("".join(self.alphabet[i - 1] for i in ids))
        return out

    def hypotheses(self, split: str = "val", **decode) -> tuple[float, list]:
        """(mean CTC loss, hypothesis texts in the split's order) of ``split``."""
        self.model.eval()
        d = self.data[split]
        hyps, total, n = [None] * len(d.texts), 0.0, 0
        for idx in bucket_batches(np.maximum(d.lengths, 1), EVAL_BATCH, None):
            x, lengths = pad_frames([stack_frames(d.feats[i], self.config.stack) for i in idx])
            loss, _, lp = self._loss(x, lengths, [d.ids[i] for i in idx])
            total, n = total + loss * len(idx), n + len(idx)
            for i, h in zip(idx, self.decode(lp, lengths, **decode)):
                hyps[i] = h
        return total / max(n, 1), hyps

    def evaluate(self, split: str = "val", **decode) -> dict:
        """loss, cer, wer (jiwer, corpus level, greedy unless ``decode`` says otherwise), utterances;
        spoken digits also: accuracy of the isolated recordings, cer_connected."""
        import jiwer

        d = self.data[split]
        loss, hyps = self.hypotheses(split, **decode)
        m = {"loss": loss, "cer": float(jiwer.cer(d.texts, hyps)), "wer": float(jiwer.wer(d.texts, hyps)),
             "utterances": float(len(hyps))}
        if d.isolated.any():
            iso = np.flatnonzero(d.isolated)
            m["accuracy"] = float(np.mean([hyps[i] == d.texts[i] for i in iso]))
            con = np.flatnonzero(~d.isolated)
            if con.size:
                m["cer_connected"] = float(jiwer.cer([d.texts[i] for i in con], [hyps[i] for i in con]))
        return m

    def worst(self, split: str, k: int = 5, **decode) -> list:
        """The ``k`` utterances with the highest CER: (cer, name, reference, hypothesis)."""
        import jiwer

        d = self.data[split]
        _, hyps = self.hypotheses(split, **decode)
        rows = [(float(jiwer.cer(r, h)), n, r, h) for r, h, n in zip(d.texts, hyps, d.names)]
        return sorted(rows, key=lambda r: -r[0])[:k]

    def onnx_parts(self) -> dict:
        """``rnnkit export CKPT --onnx FILE``: stacked, normalised features (T, B, stack * n_mels) + lengths
        -> the recurrent stack -> Linear: logits (T, B, blank + alphabet) (the log-softmax and the
        feature pipeline stay outside the graph; the metadata holds what they need)."""
        c = self.config
        return {"recurrent": self.model.encoder, "embedding": None, "head": self.model.head, "readout": "every",
                "metadata": {"alphabet": self.alphabet, "blank": 0, "rate": c.rate, "n_mels": c.n_mels,
                             "stack": c.stack, "cmvn_mean": self.mean.tolist(), "cmvn_std": self.std.tolist()}}

    def state_arrays(self) -> dict:
        return dict(self.model.params)

    def meta(self) -> dict:
        return {"config": dataclasses.asdict(self.config), "alphabet": self.alphabet, "sizes": self.sizes,
                "notes": self.notes, "cmvn": {"mean": self.mean.tolist(), "std": self.std.tolist()}}

    @classmethod
    def from_checkpoint(cls, arrays: dict, meta: dict) -> "ASRTask":
        def build(m):
            return cls(ASRTaskConfig(**m["config"]), prepared={
                "alphabet": str(m["alphabet"]), "mean": np.asarray(m["cmvn"]["mean"], np.float64),
                "std": np.asarray(m["cmvn"]["std"], np.float64), "sizes": {k: int(v) for k, v in m["sizes"].items()},
                "notes": dict(m.get("notes", {}))})

        return restore(cls, arrays, meta, build)

def _pad_ids(ids: list) -> tuple[np.ndarray, np.ndarray]:
    """(B, S) padded label ids (pad 0) and lengths (B,)."""
    tl = np.array([a.size for a in ids], dtype=np.int64)
    out = np.zeros((len(ids), max(int(tl.max(initial=0)), 1)), dtype=np.int64)
    for b, a in enumerate(ids):
        out[b, :a.size] = a
    return out, tl
