"""Audio reading (soundfile formats, mono mix, resampling, bad files) and the log-mel features
against librosa (the test-only oracle): equal to 1e-9 in float64."""
import numpy as np
import pytest

from conftest import assert_close
from rnnkit.data.audio import AudioError, change_speed, read_audio
from rnnkit.data.features import (apply_cmvn, cmvn_stats, frame_sizes, log_mel, mel_filters, spec_augment,
                                  stack_frames)


def _tone(rate, seconds=0.5, seed=0):
    t = np.arange(int(rate * seconds)) / rate
    noise = np.random.default_rng(seed).standard_normal(t.size)
    return 0.5 * np.sin(2 * np.pi * 440 * t) + 0.05 * noise


@pytest.mark.slow
@pytest.mark.parametrize("rate, n_mels", [(8000, 40), (16000, 80)])
def test_log_mel_equals_librosa(rate, n_mels):
    librosa = pytest.importorskip("librosa")
    x = _tone(rate)
    got = log_mel(x, rate, n_mels)
    win, hop, n_fft = frame_sizes(rate)
    assert (win, hop) == (rate // 40, rate // 100), "frame_sizes: 25 ms / 10 ms"
    y = librosa.effects.preemphasis(x, coef=0.97, zi=0.0)
    off = (n_fft - win) // 2  # librosa centres the win-long window in the n_fft frame
    S = np.abs(librosa.stft(np.concatenate([np.zeros(off), y]), n_fft=n_fft, hop_length=hop, win_length=win,
                            window="hann", center=False)) ** 2
    W = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels, htk=True, norm=None, dtype=np.float64)
    assert_close("mel_filters", mel_filters(rate, n_fft, n_mels), W, 1e-12)
    want = np.log(np.maximum(W @ S, 1e-10)).T
    n = want.shape[0]
    assert got.shape == (1 + (x.size - win) // hop, n_mels) and n >= got.shape[0] - 3
    assert_close("log_mel", got[:n], want, 1e-9)


def test_cmvn_and_stacking(rng):
    feats = [rng.standard_normal((t, 4)) * 3 + 2 for t in (5, 7)]
    mean, std = cmvn_stats(feats)
    z = np.concatenate([apply_cmvn(f, mean, std) for f in feats])
    assert_close("cmvn mean", z.mean(0), np.zeros(4), 1e-12)
    assert_close("cmvn std", z.std(0), np.ones(4), 1e-12)
    s = stack_frames(feats[1], 3)
    assert s.shape == (3, 12)
    assert_close("stacked row 1", s[1], feats[1][3:6].ravel(), 0)
    assert_close("stacked pad", s[2, 4:], np.concatenate([feats[1][6], feats[1][6]]), 0)


def test_spec_augment_masks_only_whole_bands(rng):
    f = np.ones((100, 40))
    g = spec_augment(f, rng, freq_masks=2, freq_width=10, time_masks=2, time_width=20)
    zero = g == 0
    rows, cols = zero.all(1), zero.all(0)
    assert (zero == (rows[:, None] | cols[None, :])).all(), "spec_augment: masks are whole rows / columns"
    assert cols.sum() <= 20 and rows.sum() <= 40 and (f == 1).all()


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT"])
def test_read_formats_mono_mix_and_resample(tmp_path, subtype):
    sf = pytest.importorskip("soundfile")
    x = _tone(16000, 0.2)
    stereo = np.stack([x, 0.5 * x], axis=1)
    p = tmp_path / "a.wav"
    sf.write(p, stereo, 16000, subtype=subtype)
    got, from_rate = read_audio(p, 16000)
    tol = {"PCM_16": 1e-4, "PCM_24": 1e-6, "FLOAT": 1e-7}.get(subtype, 1e-8)
    assert from_rate is None
    assert_close("mono mix", got, 0.75 * x, tol)
    down, from_rate = read_audio(p, 8000)
    assert from_rate == 16000 and down.shape == (x.size // 2,)
    # a 440 Hz tone survives resampling: the spectra's peaks agree
    assert abs(np.argmax(np.abs(np.fft.rfft(down))) / down.size * 8000 - 440) < 10


@pytest.mark.parametrize("content, match", [(b"", "not a readable audio file"),
                                            (b"hello, not audio" * 10, "not a readable audio file"),
                                            (None, "no such audio file")])
def test_bad_files_name_the_file(tmp_path, content, match):
    pytest.importorskip("soundfile")
    p = tmp_path / "bad.wav"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(AudioError, match=match) as e:
        read_audio(p, 8000)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_empty_wav(tmp_path):
    sf = pytest.importorskip("soundfile")
    p = tmp_path / "empty.wav"
    sf.write(p, np.zeros((0, 1)), 8000)
    with pytest.raises(AudioError, match="empty"):
        read_audio(p, 8000)


@pytest.mark.parametrize("factor", [0.9, 1.1, 1.25])
def test_change_speed_moves_tempo_and_pitch_together(factor):
    x = _tone(8000, 1.0)
    y = change_speed(x, factor)
    # factor times as fast: 1 / factor as many samples, and the 440 Hz tone at 440 * factor Hz
    want = x.size / factor
    assert abs(y.size - want) <= 1, f"change_speed: {y.size} samples at {factor}x, expected ~{want}"
    peak = np.argmax(np.abs(np.fft.rfft(y))) / y.size * 8000
    assert abs(peak - 440 * factor) < 5, f"change_speed: tone at {peak} Hz after {factor}x, expected {440 * factor}"
    assert change_speed(x, 1.0) is x
