"""The fused log-softmax + cross-entropy pass of softmax_cross_entropy (no mask, weight or smoothing):
against the general path (a mask of ones), in float64 and float32, written over the logits with out=."""
import numpy as np
import pytest

from conftest import assert_close
from rnnkit.nn.losses import softmax_cross_entropy


@pytest.mark.parametrize("scale", [1.0, 80.0])  # 80: exp overflows without the max shift
def test_fused_equals_the_general_path(rng, scale):
    z = rng.standard_normal((7, 3, 13)) * scale
    y = rng.integers(0, 13, (7, 3))
    loss, d = softmax_cross_entropy(z, y)
    want_loss, want_d = softmax_cross_entropy(z, y, mask=np.ones((7, 3), bool))  # the unfused path
    assert abs(loss - want_loss) <= 1e-13 * max(1.0, abs(want_loss)), f"loss {loss} vs {want_loss}"
    assert_close("d_logits", d, want_d, atol=1e-16)
    z32 = z.astype(np.float32)
    loss32, d32 = softmax_cross_entropy(z32, y)
    assert d32.dtype == np.float32
    assert abs(loss32 - want_loss) <= 1e-5 * max(1.0, abs(want_loss)), f"float32 loss {loss32} vs {want_loss}"
    assert_close("float32 d_logits", d32, want_d, atol=1e-7)


def test_out_is_written_in_place(rng):
    z = rng.standard_normal((5, 4, 6))
    y = rng.integers(0, 6, (5, 4))
    want_loss, want_d = softmax_cross_entropy(z.copy(), y)
    loss, d = softmax_cross_entropy(z, y, out=z)
    assert d is z or np.shares_memory(d, z), "d_logits: expected to be written into out"
    assert loss == want_loss
    assert_close("d_logits", d, want_d, atol=0)
