"""Streaming transcription with a unidirectional ASR model, chunk by chunk through the layer's
``step`` API (rnnkit.engine.recurrent.Recurrent.step).

Each chunk of samples is pre-emphasised (carrying the last sample of the previous chunk), the
complete 25 ms frames it finishes are turned into log-mel features (the same numbers as the
whole-file features), normalised, stacked ``stack`` at a time, and each stacked frame is one
model step; greedy CTC decoding extends the text as frames arrive.  At the end the frames left
over are stacked with copies of the last one, as ``stack_frames`` pads.  A recording shorter than
one window yields no frame.
"""
from __future__ import annotations

import time

import numpy as np

from rnnkit.data.features import apply_cmvn, frame_sizes, log_mel_frames, preemphasize, stack_frames
from rnnkit.engine.threads import blas_threads_at_most


class StreamDecoder:
    """Feed chunks of samples with :meth:`push`; :attr:`text` is the greedy transcript so far."""

    def __init__(self, task):
        self.task, c = task, task.config
        if c.bidirectional:
            from rnnkit.errors import UserError

            raise UserError("--stream needs a unidirectional model (train it with --no-bidirectional)")
        self.win, self.hop, _ = frame_sizes(c.rate)
        self.y = np.zeros(0)  # pre-emphasised samples not yet consumed by a complete frame
        self.last_sample = None
        self.pending = []  # normalised frames waiting for a full stack
        self.state, self.prev, self.ids = None, 0, []

    @property
    def text(self) -> str:
        return "".join(self.task.alphabet[i - 1] for i in self.ids)

    def push(self, chunk: np.ndarray) -> None:
        t = self.task
        if chunk.size == 0:
            return
        self.y = np.concatenate([self.y, preemphasize(chunk, self.last_sample)])
        self.last_sample = float(chunk[-1])
        with blas_threads_at_most(1):
            frames = log_mel_frames(self.y, t.config.rate, t.config.n_mels)
        if frames.shape[0]:
            self.y = self.y[frames.shape[0] * self.hop:]
            self.pending.extend(apply_cmvn(frames, t.mean, t.std).astype(np.float32))
        k = t.config.stack
        while len(self.pending) >= k:
            self._step(np.concatenate(self.pending[:k]))
            del self.pending[:k]

    def finish(self) -> str:
        if self.pending:
            self._step(stack_frames(np.stack(self.pending), self.task.config.stack)[0])
            self.pending = []
        return self.text

    def _step(self, x: np.ndarray) -> None:
        lp, self.state = self.task.model.step(x[None, :], self.state)
        best = int(np.argmax(lp[0]))
        if best != 0 and best != self.prev:
            self.ids.append(best)
        self.prev = best


def stream(task, samples: np.ndarray, chunk_s: float = 0.2, on_partial=None) -> dict:
    """Transcribe ``samples`` chunk by chunk; ``on_partial(text, seconds_of_audio)`` after each chunk
    that changed the text.  Returns text, per-chunk latencies (s), audio seconds, real-time factor."""
    rate = task.config.rate
    n = max(1, int(round(chunk_s * rate)))
    dec = StreamDecoder(task)
    task.model.eval()
    latencies, shown = [], ""
    start = time.perf_counter()
    for i in range(0, samples.size, n):
        t0 = time.perf_counter()
        dec.push(samples[i:i + n])
        latencies.append(time.perf_counter() - t0)
        if on_partial is not None and dec.text != shown:
            shown = dec.text
            on_partial(shown, min(i + n, samples.size) / rate)
    text = dec.finish()
    total = time.perf_counter() - start
    audio = samples.size / rate
    return {"text": text, "latencies": latencies, "audio_s": audio, "seconds": total, "rtf": total / max(audio, 1e-9)}
