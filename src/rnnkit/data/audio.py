"""Reading speech audio: any WAV/FLAC soundfile reads (PCM 16/24/32 bit, float), mixed down to
mono, resampled to the model's rate with ``scipy.signal.resample_poly``.

``read_audio(path, rate) -> (samples (N,) float64 in [-1, 1], resampled_from or None)``;
``change_speed(x, factor)``: Kaldi's speed perturbation (tempo and pitch together) for training copies.
A missing, corrupt, empty or non-audio file raises :class:`AudioError` (a UserError) naming it.
"""
from __future__ import annotations

import math
import os
from fractions import Fraction

import numpy as np

from rnnkit.errors import UserError


#: sample rates a file may declare (Hz): telephone 8 kHz and below, studio 384 kHz and below
MIN_RATE, MAX_RATE = 1000, 384000


class AudioError(UserError):
    """A file that cannot be used as audio (missing, corrupt, empty, not audio)."""


def read_audio(path, rate: int | None = None):
    """Samples of ``path`` as mono float64 at ``rate`` (None: the file's own rate).

    Returns ``(x, from_rate)``: ``from_rate`` is the file's rate when it was resampled, else None.
    Stereo (any channel count) is the mean of the channels.
    """
    import soundfile as sf  # a runtime dependency of the ASR task only

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioError(f"{path}: no such audio file")
    try:
        x, sr = sf.read(path, dtype="float64", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError / TypeError for non-audio
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise AudioError(f"{path}: not a readable audio file ({reason})") from None
    if x.shape[0] == 0:
        raise AudioError(f"{path}: empty audio file (0 samples)")
    if not MIN_RATE <= sr <= MAX_RATE:  # a corrupt header: resampling from it would need gigabytes
        raise AudioError(f"{path}: sample rate {sr} Hz, expected {MIN_RATE}..{MAX_RATE} Hz (a corrupt header?)")
    x = x.mean(axis=1)
    if not np.isfinite(x).all():
        raise AudioError(f"{path}: audio holds NaN or inf samples")
    if rate is None or rate == sr:
        return x, None
    return resample(x, sr, rate), sr


def resample(x: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """``x`` at ``from_rate`` -> ``to_rate`` by polyphase filtering (scipy's resample_poly, up/down
    reduced by their gcd)."""
    from scipy.signal import resample_poly

    g = math.gcd(int(from_rate), int(to_rate))
    return resample_poly(x, int(to_rate) // g, int(from_rate) // g)


def change_speed(x: np.ndarray, factor: float) -> np.ndarray:
    """``x`` played ``factor`` times as fast, at the same rate (Kaldi's and ESPnet's speed perturbation:
    tempo and pitch change together): resampled by 1 / factor, the ratio as a fraction with a
    denominator of at most 100 (0.9 -> up 10, down 9: 10/9 as many samples)."""
    from scipy.signal import resample_poly

    ratio = Fraction(factor).limit_denominator(100)
    if ratio == 1:
        return x
    return resample_poly(x, ratio.denominator, ratio.numerator)
