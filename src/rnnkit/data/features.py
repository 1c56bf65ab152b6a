"""Speech features in NumPy: Kaldi-style log-mel filterbanks, CMVN, SpecAugment, frame stacking.

``log_mel(x, rate, n_mels)``: with win = 25 ms and hop = 10 ms in samples (rate 16 kHz: 400 and
160), n_fft the power of two >= win:

    y[n] = x[n] - 0.97 x[n-1]   (y[0] = x[0])                         pre-emphasis
    frame t = y[t hop : t hop + win] * hann(win)   (periodic),  T = 1 + (N - win) // hop  (Kaldi's snip-edges)
    P[t, k] = |rfft(frame t, n_fft)[k]|^2                             power spectrum, k = 0..n_fft/2
    M[t, m] = sum_k P[t, k] W[m, k]                                   W: mel_filters (HTK mel scale, no norm)
    F[t, m] = log(max(M[t, m], 1e-10))

``mel_filters`` are librosa's ``filters.mel(htk=True, norm=None)`` triangles (in Hz between
mel-spaced edges); tests/test_audio_features.py checks F against librosa's mel filters and STFT
to 1e-9 (float64).  Kaldi's own pipeline differs in its defaults (povey window, dither, per-frame
DC removal, triangles in the mel domain); this keeps its framing, pre-emphasis and log energy.
A recording shorter than one window is zero-padded to one frame.
"""
from __future__ import annotations

import functools

import numpy as np

PREEMPHASIS = 0.97
LOG_FLOOR = 1e-10


def frame_sizes(rate: int, win_ms: float = 25.0, hop_ms: float = 10.0) -> tuple[int, int, int]:
    """(win, hop, n_fft) in samples."""
    win, hop = int(round(rate * win_ms / 1000)), int(round(rate * hop_ms / 1000))
    return win, hop, 1 << (win - 1).bit_length()


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=16)
def mel_filters(rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters: filter m rises from edge m to m+1 and falls to
    m+2, the n_mels + 2 edges equally spaced on the HTK mel scale from fmin to fmax (rate / 2)."""
    fmax = rate / 2.0 if fmax is None else fmax
    fft_hz = np.linspace(0.0, rate / 2.0, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    W = np.maximum(0.0, np.minimum(lower, upper))
    W.setflags(write=False)  # cached: shared by every call
    return W


def preemphasize(x: np.ndarray, previous: float | None = None) -> np.ndarray:
    """y[n] = x[n] - 0.97 x[n-1]; y[0] = x[0], or x[0] - 0.97 ``previous`` (the sample before x, streaming)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.empty_like(x)
    y[:1] = x[:1] if previous is None else x[:1] - PREEMPHASIS * previous
    y[1:] = x[1:] - PREEMPHASIS * x[:-1]
    return y


def log_mel_frames(y: np.ndarray, rate: int, n_mels: int = 80) -> np.ndarray:
    """(T, n_mels) log-mel energies of pre-emphasised samples ``y``, T = 1 + (N - win) // hop (0 if N < win)."""
    win, hop, n_fft = frame_sizes(rate)
    if y.size < win:
        return np.zeros((0, n_mels))
    frames = np.lib.stride_tricks.sliding_window_view(y, win)[::hop]
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win) / win)  # periodic Hann
    spec = np.fft.rfft(frames * window, n=n_fft, axis=1)
    power = spec.real ** 2 + spec.imag ** 2
    return np.log(np.maximum(power @ mel_filters(rate, n_fft, n_mels).T, LOG_FLOOR))


def log_mel(x: np.ndarray, rate: int, n_mels: int = 80) -> np.ndarray:
    """(T, n_mels) float64 log-mel energies of mono samples ``x`` (see the module docstring)."""
    y = preemphasize(x)
    win = frame_sizes(rate)[0]
    if y.size < win:
        y = np.pad(y, (0, win - y.size))
    return log_mel_frames(y, rate, n_mels)


def cmvn_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (F,) over every frame of a list of (T_i, F) arrays."""
    n = sum(f.shape[0] for f in features)
    mean = sum(f.sum(axis=0) for f in features) / n
    var = sum(((f - mean) ** 2).sum(axis=0) for f in features) / n
    return mean, np.sqrt(np.maximum(var, 1e-12))


def apply_cmvn(f: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return (f - mean) / std


def spec_augment(f: np.ndarray, rng: np.random.Generator, freq_masks: int = 2, freq_width: int = 10,
                 time_masks: int = 2, time_width: int = 20, max_time_fraction: float = 0.2) -> np.ndarray:
    """A copy of ``f`` (T, F) with ``freq_masks`` bands of 0..freq_width bins and ``time_masks`` runs
    of 0..min(time_width, max_time_fraction T) frames set to 0 (the mean after CMVN); training only."""
    f = f.copy()
    T, F = f.shape
    for _ in range(freq_masks):
        w = int(rng.integers(0, min(freq_width, F) + 1))
        s = int(rng.integers(0, F - w + 1))
        f[:, s:s + w] = 0.0
    cap = min(time_width, int(max_time_fraction * T))
    for _ in range(time_masks):
        w = int(rng.integers(0, cap + 1))
        s = int(rng.integers(0, T - w + 1))
        f[s:s + w] = 0.0
    return f


def stack_frames(f: np.ndarray, k: int) -> np.ndarray:
    """(T, F) -> (ceil(T / k), k F): k consecutive frames side by side, one row per k frames (the
    recurrence then runs T / k steps).  The last row is padded with copies of the last frame."""
    if k == 1:
        return f
    T, F = f.shape
    pad = (-T) % k
    if pad:
        f = np.concatenate([f, np.repeat(f[-1:], pad, axis=0)])
    return f.reshape(-1, k * F)


def pad_frames(feats: list) -> tuple[np.ndarray, np.ndarray]:
    """A list of (T_i, F) arrays -> time-major (max T_i, B, F) zero-padded, lengths (B,) int64."""
    lengths = np.array([f.shape[0] for f in feats], dtype=np.int64)
    out = np.zeros((int(lengths.max()), len(feats), feats[0].shape[1]), dtype=feats[0].dtype)
    for b, f in enumerate(feats):
        out[:f.shape[0], b] = f
    return out, lengths
