"""The layer grid (fwd+BPTT and inference) and the streaming step, through the public API only.

Float32, wall time (``time.perf_counter``), the default thread settings of the rnnkit imported.
The grid points are the issue's: (T, B, I, H) = (100, 32, 64, 128), (50, 64, 128, 256),
(35, 20, 650, 650), (64, 128, 256, 512); fwd+BPTT is forward, then backward of loss = sum(out).
Only the public layer API is used, so the same file times any commit (729b67f included).
"""
import numpy as np

import rnnkit

GRID = ["(100, 32, 64, 128)", "(50, 64, 128, 256)", "(35, 20, 650, 650)", "(64, 128, 256, 512)"]
CELLS = ["lstm", "gru", "rnn"]
LAYERS = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


def _shape(text: str) -> tuple:
    return tuple(int(v) for v in text.strip("()").split(","))


class _GridPoints:
    """The grid's parameters and timing settings, and one layer with its input at a point (no benchmark itself)."""

    params = (CELLS, GRID)
    param_names = ["cell", "T_B_I_H"]
    number = 1
    repeat = (3, 10, 10.0)
    warmup_time = 0.0
    timeout = 600

    def make_layer(self, cell, shape):
        T, B, I, H = _shape(shape)
        self.layer = getattr(rnnkit, LAYERS[cell])(I, H, seed=0)
        self.x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
        self.d_out = np.ones((T, B, H), np.float32)


class Grid(_GridPoints):
    """One layer at each grid point; ``time_fwd_bptt`` and ``time_inference`` per (cell, shape)."""

    def setup(self, cell, shape):
        self.make_layer(cell, shape)
        for _ in range(2):  # compile (or load the cache), plan, allocate the buffers
            self.time_fwd_bptt(cell, shape)
            self.time_inference(cell, shape)

    def time_fwd_bptt(self, cell, shape):
        self.layer.forward(self.x)
        self.layer.backward(self.d_out)

    def time_inference(self, cell, shape):
        self.layer.forward(self.x)


class GridNoTape(_GridPoints):
    """Inference without a tape (``forward(x, need_backward=False)``: what unit shards serve) at each grid point;
    skipped on commits before ``need_backward``."""

    def setup(self, cell, shape):
        self.make_layer(cell, shape)
        try:
            for _ in range(2):  # compile (or load the cache), measure the choices, allocate the buffers
                self.time_inference_no_tape(cell, shape)
        except TypeError:  # asv skips a benchmark whose setup raises NotImplementedError
            raise NotImplementedError("forward(..., need_backward=False) is newer than this commit")

    def time_inference_no_tape(self, cell, shape):
        self.layer.forward(self.x, need_backward=False)


class Streaming:
    """``layer.step`` at B = 1, I = H, 100 steps with the state carried (time per 100 steps)."""

    params = (CELLS, [32, 128])
    param_names = ["cell", "H"]
    repeat = (3, 20, 5.0)

    def setup(self, cell, H):
        self.layer = getattr(rnnkit, LAYERS[cell])(H, H, seed=0)
        self.xs = np.random.default_rng(0).standard_normal((100, 1, H)).astype(np.float32)
        self.time_step(cell, H)

    def time_step(self, cell, H):
        state = None
        for x in self.xs:
            _, state = self.layer.step(x, state)
