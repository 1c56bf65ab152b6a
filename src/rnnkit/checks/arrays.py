"""Input validation with messages that name the argument, the expected and the received."""
from __future__ import annotations

import math

import numpy as np

from rnnkit.checks import rules as validate
from rnnkit.errors import NonFiniteError
from rnnkit.kernels import all_finite

SMALL_FINITE_CHECK = 4096
"""Arrays up to this many elements are checked for NaN/inf by one compiled loop
(~0.15 µs; ``np.isfinite(a).all()`` costs ~1 µs of call overhead, which matters for
``step()``); larger ones by NumPy's SIMD ``isfinite``, which is faster per element."""


_COMPILED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _all_finite(a: np.ndarray) -> bool:
    """:func:`rnnkit.kernels.all_finite` on ``a`` as 2-D (a view of one row where a has another rank): numba compiles
    it once per rank, 0.1-0.3 s each in a cold ``rnnkit demo`` (which checked 1-, 2- and 3-D arrays)."""
    return all_finite(a if a.ndim == 2 else a.reshape(1, -1))


def _finite(a: np.ndarray) -> bool:
    if a.size <= SMALL_FINITE_CHECK and a.dtype in _COMPILED_DTYPES:
        return _all_finite(a)
    return bool(np.isfinite(a).all())


def check_array(name: str, a, shape: tuple, dtype=None, finite: bool = True) -> np.ndarray:
    """Check that ``a`` is an ndarray of ``shape`` (None = any size) and ``dtype``.

    Raises TypeError for non-arrays or a wrong dtype, ValueError for a wrong
    rank/size or non-finite values.
    """
    if (type(a) is np.ndarray and a.dtype == dtype
            and (a.shape == shape or (shape[0] is None and a.ndim == len(shape) and a.shape[1:] == shape[1:]))
            and (not finite or (a.size <= SMALL_FINITE_CHECK and dtype in _COMPILED_DTYPES and _all_finite(a)))):
        return a  # the common valid call, in few operations (``step()`` pays this per call)
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(a).__name__}")

    def want():
        return "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"

    got = a.shape
    if len(got) != len(shape):
        raise ValueError(f"{name}: expected {len(shape)}-d array of shape {want()}, got shape {got}")
    for k, s in enumerate(shape):
        if s is not None and s != got[k]:
            raise ValueError(f"{name}: expected shape {want()}, got shape {got} (dim {k} is {got[k]}, expected {s})")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {np.dtype(dtype).name}, got {a.dtype.name}")
    if finite and a.dtype.kind == "f" and not _finite(a):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise ValueError(f"{name}: contains NaN or inf (first at index {tuple(int(i) for i in bad)})")
    return a


def check_lengths(lengths, B: int, T: int) -> np.ndarray:
    """lengths: (B,) integers in 1..T."""
    if isinstance(lengths, (list, tuple)):
        lengths = np.asarray(lengths)
    if not isinstance(lengths, np.ndarray):
        raise TypeError(f"lengths: expected a numpy array of integers, got {type(lengths).__name__}")
    if lengths.dtype.kind not in "iu":
        raise TypeError(f"lengths: expected an integer array, got dtype {lengths.dtype.name}")
    if lengths.shape != (B,):
        raise ValueError(f"lengths: expected shape ({B},) (one length per batch row), got shape {lengths.shape}")
    if B and (lengths.min() < 1 or lengths.max() > T):
        bad = int(np.flatnonzero((lengths < 1) | (lengths > T))[0])
        raise ValueError(f"lengths: every length must be in 1..{T} (T), got lengths[{bad}] = {int(lengths[bad])}")
    return lengths.astype(np.int64)


def first_nonfinite(named: dict):
    """The first ``(name, index, value)`` in ``named`` (name -> float or float array, in
    iteration order) holding NaN or inf, or None if all are finite.  ``index`` is a tuple
    (``()`` for a scalar).  Non-float arrays (ints, bools) cannot hold NaN and are skipped."""
    for name, a in named.items():
        if isinstance(a, (float, int, np.floating, np.integer)) and not isinstance(a, bool):
            if not math.isfinite(a):
                return name, (), float(a)
            continue
        a = np.asarray(a)
        if a.dtype.kind not in "fc" or _finite(a):
            continue
        k = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        return name, k, a[k].item()
    return None


def check_all_finite(named: dict, what: str = "values") -> None:
    """Raise NonFiniteError naming the first tensor of ``named`` that holds NaN or inf.

    For the trainer before any save: ``check_all_finite({"loss": loss, **grads}, "step 12")``
    and again over the parameters after the update, so a checkpoint never holds inf/NaN.
    ``what`` starts the message (e.g. ``"step 12: parameters after the update"``).
    """
    bad = first_nonfinite(named)
    if bad is not None:
        name, k, v = bad
        at = f" at index {k}" if k else ""
        raise NonFiniteError(f"{what}: {name!r} is not finite ({v}{at})", tensor=name, index=k)


def check_positive(name: str, v) -> None:
    """``v`` is an integer >= 1 (bool excluded); rnnkit.checks.rules's POSITIVE_INT rule."""
    validate.check(name, v, validate.POSITIVE_INT)


def check_choice(name: str, v, choices) -> None:
    """``v`` is one of ``choices`` (named in sorted order); rnnkit.checks.rules.check_choice."""
    validate.check_choice(name, v, sorted(choices))


def check_ids(name: str, ids, vocab: int, batch: int | None = None) -> np.ndarray:
    """(T, B) integer token ids in 0..vocab-1 (B = ``batch`` if given)."""
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer token ids, got dtype {ids.dtype.name}")
    if ids.ndim != 2 or 0 in ids.shape or (batch is not None and ids.shape[1] != batch):
        want = f"(T, {batch})" if batch is not None else "(T, B)"
        raise ValueError(f"{name}: expected a non-empty time-major array of shape {want}, got shape {ids.shape}")
    if ids.min() < 0 or ids.max() >= vocab:
        raise ValueError(f"{name}: ids must be in 0..{vocab - 1}, got range {int(ids.min())}..{int(ids.max())}")
    return ids


def check_fields(config, positive=(), optional=(), choices=None) -> None:
    """Validate a config dataclass: fields in ``positive`` are integers >= 1, those in
    ``optional`` too unless None, and ``choices`` maps field -> its allowed values."""
    for name in positive + tuple(n for n in optional if getattr(config, n) is not None):
        check_positive(name, getattr(config, name))
    for name, allowed in (choices or {}).items():
        check_choice(name, getattr(config, name), allowed)
