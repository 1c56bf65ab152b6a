"""The cell variants and the dropout masks on batch shards (threads): the same numbers as one thread."""
import numpy as np
import pytest

import rnnkit
from conftest import assert_close

VARIANTS = {
    "peephole": lambda: rnnkit.LSTM(3, 4, num_layers=2, dtype=np.float64, seed=1, peephole=True),
    "layernorm": lambda: rnnkit.LayerNormLSTM(3, 4, num_layers=2, dtype=np.float64, seed=1, bias=True),
    "proj": lambda: rnnkit.LSTM(3, 4, num_layers=2, dtype=np.float64, seed=1, proj_size=2),
    "gru_lbr0": lambda: rnnkit.GRU(3, 4, num_layers=2, dtype=np.float64, seed=1,
                                   linear_before_reset=False, recurrent_dropout=0.3, weight_dropout=0.3),
    "dropouts": lambda: rnnkit.GRU(3, 4, num_layers=2, dtype=np.float64, seed=1, dropout=0.3, input_dropout=0.3,
                                   recurrent_dropout=0.3, weight_dropout=0.3),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_sharded_equals_one_thread(name):
    x = np.random.default_rng(0).standard_normal((6, 8, 3))
    lengths = np.array([6, 1, 3, 6, 2, 5, 4, 6])
    results = []
    for cores in (1, 2):
        layer = VARIANTS[name]()
        layer.cores = cores
        assert (len(layer.thread_plan(8).shards) > 1) == (cores == 2), "the 2-core plan must shard the batch"
        out, final = layer.forward(x, lengths=lengths, rng=np.random.default_rng(3))
        d_x, _ = layer.backward(np.ones_like(out))
        results.append((out.copy(), d_x, {k: g.copy() for k, g in layer.grads.items()}))
    (o1, dx1, g1), (o2, dx2, g2) = results
    assert_close(f"{name} out", o2, o1, atol=1e-13)
    assert_close(f"{name} d_x", dx2, dx1, atol=1e-13)
    for k in g1:
        assert_close(f"{name} grad {k}", g2[k], g1[k], atol=1e-12)
