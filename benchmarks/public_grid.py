"""Public API only (runs on any rnnkit commit): median ms of fwd+BPTT ("fb") and inference ("inf"), float32,
one layer per (cell, T, B, I, H) of the benchmark grid, and inference without a tape ("nt": forward(x,
need_backward=False), where the commit has it); one JSON object on stdout.  Driven by ab_public_grid.sh."""
import json, statistics, sys, time
import numpy as np
import rnnkit
GRID = [(100, 32, 64, 128), (50, 64, 128, 256), (35, 20, 650, 650), (64, 128, 256, 512)]
out = {}
for cell, cls in (("lstm", rnnkit.LSTM), ("gru", rnnkit.GRU), ("rnn", rnnkit.RNN)):
    for (T, B, I, H) in GRID:
        layer = cls(I, H, seed=0)
        x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
        def fb():
            o, _ = layer.forward(x); layer.backward(np.ones_like(o))
        def inf():
            layer.forward(x)
        def nt():
            layer.forward(x, need_backward=False)
        try:
            nt()
            kinds = (("fb", fb), ("inf", inf), ("nt", nt))
        except TypeError:  # a commit before need_backward
            kinds = (("fb", fb), ("inf", inf))
        for name, fn in kinds:
            fn(); fn()
            ts = []
            for _ in range(5):
                t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
            out[f"{cell} {name} {T},{B},{I},{H}"] = 1e3 * statistics.median(ts)
print(json.dumps(out))
