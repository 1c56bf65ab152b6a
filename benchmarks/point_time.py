"""One grid point alone: median ms of 15 calls (after 2) of a float32 layer, public API only (runs on any rnnkit
commit).  usage: point_time.py CELL T B I H [inf|nt|fb]  (inf, the default: forward with a tape; nt: forward(x,
need_backward=False); fb: forward + backward of sum(out)), e.g. PYTHONPATH=<src> python point_time.py rnn 35 20 650 650;
alternate two checkouts' runs to A/B one point (RNNKIT_UNIT_SHARDS=on|off etc. force a plan for both)."""
import statistics, sys, time
import numpy as np
import rnnkit
cell, (T, B, I, H) = sys.argv[1], map(int, sys.argv[2:6])
kind = sys.argv[6] if len(sys.argv) > 6 else "inf"
layer = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU, "rnn": rnnkit.RNN}[cell](I, H, seed=0)
x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
ones = np.ones((T, B, H), np.float32)
run = {"inf": lambda: layer.forward(x), "nt": lambda: layer.forward(x, need_backward=False),
       "fb": lambda: (layer.forward(x), layer.backward(ones))}[kind]
run(); run()
ts = []
for _ in range(15):
    t = time.perf_counter(); run(); ts.append(time.perf_counter() - t)
print(f"{1e3 * statistics.median(ts):.3f}")
