import numpy as np
import pytest


def assert_close(name, got, want, atol, rtol=0.0):
    """Compare arrays; the failure message names the tensor and the worst element."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != expected {want.shape}"
    err = np.abs(got - want)
    tol = atol + rtol * np.abs(want)
    if not (err <= tol).all():
        k = np.unravel_index(np.argmax(err - tol), err.shape)
        pytest.fail(f"{name}: max abs error {err.max():.3e} at {k}: got {got[k]!r}, expected {want[k]!r} (atol {atol})")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
