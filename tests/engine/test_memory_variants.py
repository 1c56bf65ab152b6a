"""rnnkit.engine.memory from the cell protocol: the parameter shapes, the tape and the whole training
estimate of every cell and variant (peephole, projected, LayerNorm LSTM, the linear_before_reset=0 GRU) come from the cell's
declared sizes (``field_sizes``, ``own_params``, ``cache_fields``), and match what is allocated."""
import tracemalloc

import numpy as np
import pytest

from rnnkit.bench.memory import tape_bytes
from rnnkit.engine.memory import estimate_rnn_bytes, rnn_param_shapes, tape_elements
from rnnkit.engine.layer_types import LAYERS, default_bias
from rnnkit.nn.optim import Adam

VARIANTS = {"rnn": ("rnn", {}), "gru": ("gru", {}), "lstm": ("lstm", {}), "peephole": ("lstm", {"peephole": True}),
            "proj": ("lstm", {"proj_size": 3}), "layernorm": ("layernorm_lstm", {}),
            "gru_lbr0": ("gru", {"linear_before_reset": False})}


def _layer(variant, I, H, L, D, dtype=np.float64):
    cell, opts = VARIANTS[variant]
    return LAYERS[cell](I, H, num_layers=L, bidirectional=D == 2, dtype=dtype, seed=0, **opts)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_param_shapes_come_from_the_cell(variant):
    for L, D in ((1, 1), (2, 2)):
        layer = _layer(variant, 5, 7, L, D)
        want = {k: v.shape for k, v in layer.params.items()}
        got = rnn_param_shapes(5, 7, L, D, layer.cell, bias=default_bias(VARIANTS[variant][0]))
        assert got == want, f"{variant} L={L} D={D}: shapes {got} != the layer's {want}"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_tape_estimate_is_the_measured_tape(variant):
    """The tape estimate equals the bytes the forward keeps (no lengths); with lengths it is at least
    the bytes kept and within 1.1x of them (the (T, B) bool keep mask is counted as T*B elements)."""
    I, H, T, B = 4, 8, 7, 3
    for L, D in ((1, 1), (2, 1), (2, 2)):
        layer = _layer(variant, I, H, L, D)
        x = np.random.default_rng(0).standard_normal((T, B, I))
        layer.forward(x)
        got = tape_bytes(layer.saved_for_backward(), exclude=list(layer.params.values()) + [x])
        est = 8 * tape_elements(layer.cell, I, H, L, T, B, D)
        assert est == got, f"{variant} L={L} D={D}: estimated tape {est} B, measured {got} B"
        layer.forward(x, lengths=np.array([7, 4, 2]))
        got = tape_bytes(layer.saved_for_backward(), exclude=list(layer.params.values()) + [x])
        est = 8 * tape_elements(layer.cell, I, H, L, T, B, D, lengths=True)
        assert got <= est <= 1.1 * got, f"{variant} L={L} D={D} with lengths: estimated {est} B, measured {got} B"


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["peephole", "proj", "layernorm", "gru_lbr0"])
def test_training_estimate_tracks_the_real_allocation(variant):
    """The whole estimate (parameters, gradients, Adam, activations) is within 0.8x..1.2x of what
    tracemalloc sees for layer + Adam + two forward/backward steps, as for the plain cells."""
    I, H, L, T, B = 8, 64, 2, 60, 16
    cell, _ = VARIANTS[variant]

    def train_twice():
        m = _layer(variant, I, H, L, 1, np.float32)
        opt = Adam(m.params, m.grads)
        x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
        for _ in range(2):
            out, _ = m.forward(x)
            m.backward(np.ones_like(out))
            opt.step()
        return m, opt, x

    m = train_twice()[0]  # compile and warm up first: measure the model only
    tracemalloc.start()
    try:
        keep = train_twice()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    est = estimate_rnn_bytes(I, H, L, T, B, 1, m.cell, 4, optimizer_slots=2, bias=default_bias(cell))
    assert 0.8 <= est.total / peak <= 1.2, f"{variant}: estimate {est.total} B vs traced peak {peak} B ({est.describe()})"
    del keep
