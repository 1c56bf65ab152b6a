"""A stand-in for an hour-long 16 kHz read-speech corpus, to run the manifest recipe of ``rnnkit train asr``
(4 x 256 BiLSTM, 80 log-mel, batch 16) where no such corpus is at hand: connected spoken digits from FSDD,
resampled to 16 kHz, written as WAV files with TSV manifests (``path<TAB>transcript``, paths relative to the
manifest).  Training utterances come from FSDD's training recordings (index 10-49), val from 5-9, test from
0-4, each 1..``--max-digits`` recordings joined by 50-350 ms gaps (rnnkit.data.digits.connect), so the sizes
and lengths are about those of a small read-speech corpus (AN4: 948 training utterances, about 50 minutes).

Usage (from the repository root)::

    python experiments/digit_manifests.py ../shared/data/fsdd OUT_DIR [--train 950 --val 100 --test 130]
    rnnkit train asr --manifest OUT_DIR/train.tsv --val-manifest OUT_DIR/val.tsv \\
        --test-manifest OUT_DIR/test.tsv --time-limit 3600

It writes only into a new or empty OUT_DIR and prints the hours of audio per split.  Digits are a far smaller
vocabulary than spelled words: the CER this reaches says nothing about a real corpus's; the throughput
(frames/s) and the training curve's shape do.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "src")]

from rnnkit.atomic import write_bytes_atomic  # noqa: E402
from rnnkit.data.audio import read_audio  # noqa: E402
from rnnkit.data.digits import connect, fsdd_recordings  # noqa: E402

RATE = 16000


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("fsdd")
    p.add_argument("out")
    p.add_argument("--train", type=int, default=950)
    p.add_argument("--val", type=int, default=100)
    p.add_argument("--test", type=int, default=130)
    p.add_argument("--max-digits", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    import soundfile as sf

    if os.path.exists(args.out) and os.listdir(args.out):
        sys.exit(f"digit_manifests.py: {args.out} is not empty (this script writes only into a new folder)")
    clips = {"train": ([], []), "val": ([], []), "test": ([], [])}
    for r in fsdd_recordings(args.fsdd):
        x, _ = read_audio(r.path, RATE)
        clips[r.split][0].append(x)
        clips[r.split][1].append(r.digit)
    os.makedirs(os.path.join(args.out, "wav"), exist_ok=True)
    for k, split in enumerate(("train", "val", "test")):
        made = connect(*clips[split], getattr(args, split), np.random.default_rng([args.seed, k]), RATE,
                       max_digits=args.max_digits)
        rows, seconds = [], 0.0
        for n, (x, text) in enumerate(made):
            rel = os.path.join("wav", f"{split}_{n:04d}.wav")
            sf.write(os.path.join(args.out, rel), x, RATE, subtype="PCM_16")
            rows.append(f"{rel}\t{text}\n")
            seconds += x.size / RATE
        write_bytes_atomic(os.path.join(args.out, f"{split}.tsv"), "".join(rows).encode())
        print(f"{split}: {len(rows)} utterances, {seconds / 3600:.2f} h, {seconds / len(rows):.2f} s each")


if __name__ == "__main__":
    main()
