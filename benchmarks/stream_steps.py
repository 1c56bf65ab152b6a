"""Streaming steps, rnnkit alone: microseconds per ``layer.step`` at B = 1 (I = H), 200 steps carrying the state,
median of 25 runs (:func:`rnnkit_alone.time_step`), for the LSTM, GRU and RNN at H = 32, 128, 256; one JSON object on
stdout.  A/B of two checkouts, alternating processes (issue 19, round 6):

    for r in 1 2 3 4 5; do for s in A B; do env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        PYTHONPATH=$s/src python benchmarks/stream_steps.py > $s.$r.json; done; done
"""
import json

from rnnkit_alone import time_step  # this folder's script, on sys.path when run as a script

if __name__ == "__main__":
    print(json.dumps({f"{kind} H{H}": time_step(kind, H, repeats=25) for kind in ("lstm", "gru", "rnn")
                      for H in (32, 128, 256)}))
