"""Buffers of the compiled loops: kept between calls (:func:`reuse_empty`), the contiguous transpose of
W_hh (:func:`transposed`), and the size-0 arrays that stand for "none" (:func:`absent`)."""
from __future__ import annotations

import functools

import numpy as np


def reuse_empty(workspace: dict | None, key: str, shape: tuple, dtype) -> np.ndarray:
    """``np.empty(shape, dtype)``, kept in ``workspace`` (if given) and handed out again next call.

    Why: a fresh multi-MB array is mapped page by page on first write, and the loops write
    it one step at a time, so every call pays a page fault per 4 KiB inside the time loop
    (measured: ~20-30% of an LSTM fwd+bwd at T=100, B=32, H=128).  Only for buffers that
    never leave the layer (the caller must not return them or views of them).
    """
    if workspace is None:
        return np.empty(shape, dtype=dtype)
    a = workspace.get(key)
    if a is None or a.shape != shape or a.dtype != dtype:
        a = workspace[key] = np.empty(shape, dtype=dtype)
    return a


def transposed(W: np.ndarray, workspace: dict | None) -> np.ndarray:
    """A contiguous copy of W.T (made per call: W changes in place between calls)."""
    WT = reuse_empty(workspace, "W_hhT", W.shape[::-1], W.dtype)
    np.copyto(WT, W.T)
    return WT


@functools.lru_cache(maxsize=None)
def absent(dtype, ndim: int) -> np.ndarray:
    """A size-0 array standing for "none" (no bias, no mask, no record) in the compiled loops."""
    return np.empty((0,) * ndim, dtype=dtype)  # writable like the real ones: one compiled type
