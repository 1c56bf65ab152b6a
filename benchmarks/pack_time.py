"""The micro-kernel's packing alone, one thread: ms (min / median of 30 calls) to pack W (G, H) float32 as the
backward's operand (W), the forward's (W.T) and a unit shard's gathered half of the gate rows (issue 19, session
15: the forward's W.T packed in blocks transposed in registers).
usage: PYTHONPATH=<src> python benchmarks/pack_time.py [G H]   (default 2600 650, the (35, 20, 650, 650) point)"""
import sys
import time

import numpy as np

from rnnkit.engine.gemm_rows import packed_weights
from rnnkit.engine.unit_shards import gate_rows

G, H = (int(v) for v in sys.argv[1:3]) if len(sys.argv) > 2 else (2600, 650)
W = np.random.default_rng(0).standard_normal((G, H)).astype(np.float32)
workspace = {}
for name, args in (("W (backward)", (W, True, workspace, "b")), ("W.T (forward)", (W, False, workspace, "f")),
                   ("W.T, a unit shard's gathered half", (W, False, workspace, "g", gate_rows(4, G // 4, 0, G // 8)))):
    packed_weights(*args)  # compile (or load) and warm
    ts = []
    for _ in range(30):
        t0 = time.perf_counter()
        packed_weights(*args)
        ts.append(time.perf_counter() - t0)
    ts.sort()
    print(f"{name}: {1e3 * ts[0]:.3f} / {1e3 * ts[15]:.3f} ms")
