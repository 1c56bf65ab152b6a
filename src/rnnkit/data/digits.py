"""The Free Spoken Digit Dataset (FSDD: 8 kHz WAV recordings ``{digit}_{speaker}_{index}.wav``,
CC BY-SA 4.0) as speech corpora for development.

* Official split: recordings with index 0-4 are the test set; here index 5-9 is the validation
  set and 10-49 the training set (the FSDD README calls 5-49 training).
* Isolated digits: one recording, transcript the digit ("7").
* Connected digits (:func:`connect`): 1-7 recordings of one split joined with random gaps of
  low noise, transcript the digits separated by spaces ("3 0 7"); test sequences are built from
  test recordings only.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from rnnkit.errors import UserError

_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
SPLIT_OF_INDEX = (("test", range(0, 5)), ("val", range(5, 10)))


@dataclass(frozen=True)
class Recording:
    path: str
    digit: str
    speaker: str
    index: int

    @property
    def split(self) -> str:
        return next((s for s, r in SPLIT_OF_INDEX if self.index in r), "train")


def fsdd_recordings(folder) -> list[Recording]:
    """Every ``{digit}_{speaker}_{index}.wav`` in ``folder`` or its ``recordings/`` subfolder, sorted."""
    folder = os.fspath(folder)
    sub = os.path.join(folder, "recordings")
    where = sub if os.path.isdir(sub) else folder
    if not os.path.isdir(where):
        raise UserError(f"--fsdd {folder}: no such folder (the Free Spoken Digit Dataset's recordings)")
    recs = [Recording(os.path.join(where, n), m[1], m[2], int(m[3]))
            for n in sorted(os.listdir(where)) if (m := _NAME.match(n))]
    if not recs:
        raise UserError(f"--fsdd {folder}: holds no FSDD recording named DIGIT_SPEAKER_INDEX.wav")
    return recs


def connect(clips: list, digits: list, count: int, rng: np.random.Generator, rate: int, max_digits: int = 7,
            gap_s: tuple = (0.05, 0.35), noise: float = 1e-3) -> list[tuple[np.ndarray, str]]:
    """``count`` connected-digit utterances: each draws 1..max_digits clips (with replacement)
    from ``clips`` (sample arrays at ``rate``) and joins them with gaps of U(gap_s) seconds of
    Gaussian noise of std ``noise`` (also before and after); returns (samples, "d d d")."""
    out = []
    for _ in range(count):
        k = int(rng.integers(1, max_digits + 1))
        pick = rng.integers(0, len(clips), k)
        parts = []
        for j in pick:
            parts.append(noise * rng.standard_normal(int(rng.uniform(*gap_s) * rate)))
            parts.append(clips[j])
        parts.append(noise * rng.standard_normal(int(rng.uniform(*gap_s) * rate)))
        out.append((np.concatenate(parts), " ".join(digits[j] for j in pick)))
    return out
