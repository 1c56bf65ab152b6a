"""One grid point alone: median ms of 15 calls (after 2) of a float32 layer's forward, public API only (runs on any
rnnkit commit).  usage: point_time.py CELL T B I H   e.g. PYTHONPATH=<src> python point_time.py rnn 35 20 650 650;
alternate two checkouts' runs to A/B one point."""
import statistics, sys, time
import numpy as np
import rnnkit
cell, (T, B, I, H) = sys.argv[1], map(int, sys.argv[2:6])
layer = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU, "rnn": rnnkit.RNN}[cell](I, H, seed=0)
x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
layer.forward(x); layer.forward(x)
ts = []
for _ in range(15):
    t = time.perf_counter(); layer.forward(x); ts.append(time.perf_counter() - t)
print(f"{1e3 * statistics.median(ts):.3f}")
