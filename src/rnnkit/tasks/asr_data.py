"""The corpora of the speech-recognition task (rnnkit.tasks.asr): manifests or spoken digits,
read once into normalised features per split.

Text normalisation (``normalise_text``, printed by ``rnnkit train asr``): ``TEXT_NORMALISATION``.
The alphabet is the sorted set of characters of the normalised training transcripts; class 0 is
the CTC blank, class k >= 1 the alphabet's (k-1)-th character.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from rnnkit.data.audio import AudioError, change_speed, read_audio
from rnnkit.data.digits import connect, fsdd_recordings
from rnnkit.data.features import apply_cmvn, log_mel
from rnnkit.data.manifest import read_manifest
from rnnkit.errors import UserError

TEXT_NORMALISATION = ("lower-case; every character but a-z, 0-9, apostrophe and space becomes a space; "
                      "runs of spaces become one; ends trimmed")
_OTHER = re.compile(r"[^a-z0-9' ]+")
SPLITS = ("train", "val", "test")


def normalise_text(text: str) -> str:
    return " ".join(_OTHER.sub(" ", text.lower()).split())


@dataclass
class Audio:
    """Raw material of one split: samples, normalised transcripts, names for reports; ``isolated``
    marks single-digit recordings (spoken digits only)."""

    samples: list = field(default_factory=list)
    texts: list = field(default_factory=list)
    names: list = field(default_factory=list)
    isolated: list = field(default_factory=list)


@dataclass
class Split:
    """Features (T_i, F) float32 after CMVN, transcripts, label ids (S_i,), frame counts."""

    feats: list
    texts: list
    names: list
    isolated: np.ndarray
    ids: list
    lengths: np.ndarray


def _count_resampled(notes: dict, from_rate) -> None:
    """notes["resampled"][rate] += 1 for a file read at another rate (printed by ``rnnkit train asr``)."""
    if from_rate is not None:
        counts = notes.setdefault("resampled", {})
        counts[str(from_rate)] = counts.get(str(from_rate), 0) + 1


def read_manifest_audio(path: str, rate: int, skip_bad: bool, notes: dict) -> Audio:
    """The utterances of a manifest at ``rate``; a bad file is a UserError unless ``skip_bad``
    (then counted in notes["skipped"]); resampled files are counted in notes["resampled"]."""
    a = Audio()
    for u in read_manifest(path):
        try:
            x, from_rate = read_audio(u.audio, rate)
        except AudioError as e:
            if not skip_bad:
                raise UserError(f"{u.where}: {e} (--skip-bad-audio skips such files in training)") from None
            notes["skipped"] = notes.get("skipped", 0) + 1
            continue
        _count_resampled(notes, from_rate)
        a.samples.append(x)
        a.texts.append(normalise_text(u.text))
        a.names.append(u.audio)
        a.isolated.append(False)
    return a


def with_speeds(a: Audio, speeds: tuple) -> Audio:
    """``a`` followed by a copy of each utterance at every speed of ``speeds`` but 1 (speed
    perturbation, rnnkit.data.audio.change_speed; names get " @0.9x"), as a new Audio."""
    out = Audio(list(a.samples), list(a.texts), list(a.names), list(a.isolated))
    for s in dict.fromkeys(speeds):  # a speed given twice: one copy
        if s == 1:
            continue
        out.samples += [change_speed(x, s) for x in a.samples]
        out.texts += a.texts
        out.names += [f"{n} @{s:g}x" for n in a.names]
        out.isolated += a.isolated
    return out


def digits_audio(folder: str, rate: int, connected: dict, seed: int, notes: dict, speeds: tuple = (1.0,)) -> dict:
    """Spoken digits per split: every FSDD recording of the split (isolated, official split) plus
    ``connected[split]`` connected sequences of that split's recordings (rnnkit.data.digits); the
    training recordings also at ``speeds`` (with_speeds), before the connected ones are drawn from them."""
    by_split = {s: Audio() for s in SPLITS}
    for r in fsdd_recordings(folder):
        x, from_rate = read_audio(r.path, rate)
        _count_resampled(notes, from_rate)
        a = by_split[r.split]
        a.samples.append(x)
        a.texts.append(r.digit)
        a.names.append(r.path)
        a.isolated.append(True)
    for k, s in enumerate(SPLITS):
        a = by_split[s]
        if not a.samples:
            raise UserError(f"--fsdd {folder}: no {s} recordings (index 0-4 test, 5-9 val, 10-49 train)")
        if s == "train":
            a = by_split[s] = with_speeds(a, speeds)
        made = connect(list(a.samples), list(a.texts), connected[s], np.random.default_rng([seed, 71, k]), rate)
        for n, (x, text) in enumerate(made):
            a.samples.append(x)
            a.texts.append(text)
            a.names.append(f"connected {s} #{n}")
            a.isolated.append(False)
    return by_split


def carve(a: Audio, fraction: float, seed: int, salt: int) -> tuple[Audio, Audio]:
    """(rest, carved): ``fraction`` of ``a`` (at least 1) drawn with the seed, for a split not given."""
    n = len(a.samples)
    if n < 2:
        raise UserError(f"the training manifest holds {n} utterance(s): too few to carve a split out of it")
    pick = np.random.default_rng([seed, salt]).permutation(n)
    k = max(1, int(round(fraction * n)))
    parts = []
    for idx in (np.sort(pick[k:]), np.sort(pick[:k])):
        parts.append(Audio([a.samples[i] for i in idx], [a.texts[i] for i in idx], [a.names[i] for i in idx],
                           [a.isolated[i] for i in idx]))
    return parts[0], parts[1]


def features(a: Audio, rate: int, n_mels: int) -> list:
    return [log_mel(x, rate, n_mels) for x in a.samples]


def to_split(a: Audio, feats: list, mean, std, alphabet: str) -> Split:
    table = {ch: k + 1 for k, ch in enumerate(alphabet)}
    ids = [np.array([table[ch] for ch in t if ch in table], dtype=np.int64) for t in a.texts]
    return Split([apply_cmvn(f, mean, std).astype(np.float32) for f in feats], list(a.texts), list(a.names),
                 np.asarray(a.isolated, dtype=bool), ids, np.array([f.shape[0] for f in feats], dtype=np.int64))
