"""Compiled scalar and elementwise primitives that the cells' step functions are built from.

* ``tanh_(x)``, ``sigmoid_(x)``: the activations, chosen by the type of ``x`` when numba
  compiles the caller.  float64: exact libm ``math.tanh`` (PyTorch-equal to 1e-10).
  float32: Eigen's rational approximation of tanh (``generic_fast_tanh_float``: clamp to
  +-7.905, odd 13th-degree numerator over even 6th-degree denominator), plain arithmetic
  that LLVM vectorises (numba has no SVML here, so ``math.tanh`` is a scalar libm call,
  5-7x slower); max abs error <= 5e-7 (tested over a dense float32 grid).
  sigma(x) = 1/2 + tanh(x/2)/2 in both (halving is exact).
* ``add_bias``, ``add_biases``: a bias added to every row of a projection.
* ``all_finite``: the NaN/inf check of small inputs.
* :func:`stable_jit`: the compiler of the cells' step functions (the time loops of
  :mod:`rnnkit.engine.scan` are compiled around them, cached on disk).

No fastmath: results are IEEE in the order written.  Constants are typed like the
arrays (``x.dtype.type(0.5)``): a float64 literal would promote every float32 product.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import math

import numpy as np
from numba import njit, types
from numba.extending import overload

@functools.lru_cache(maxsize=None)
def _source_hash(path: str) -> str:
    h = hashlib.sha256()
    for p in sorted({path, __file__}):
        with open(p, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:20]


def _stable(decorator):
    """``decorator`` (an ``njit``), plus a stable name for the compiled function.

    The time loops are compiled around the cells' step functions (closures over them, see
    :func:`rnnkit.engine.scan.compiled_loops`); numba keys a cached closure by the pickled values it
    closes over, and a compiled function pickles with its dispatcher's uuid and those of the
    compiled functions it calls, random per process, so the loops would recompile in every
    run.  The uuid is set here from the function's name and a hash of the source files it
    and this module live in: stable across runs, and new when either file changes (numba's
    cache does not notice changes in called functions itself).
    """

    def apply(py_func):
        d = decorator(py_func)
        d._set_uuid(f"{py_func.__module__}.{py_func.__qualname__}.{_source_hash(inspect.getsourcefile(py_func))}")
        return d

    return apply


jit = _stable(njit(cache=True, nogil=True, error_model="numpy"))
"""numba's default (Python) error model checks every float division for zero, a branch that
keeps LLVM from vectorising a loop; "numpy" gives IEEE inf/nan instead."""
rowjit = _stable(njit(cache=True, nogil=True, error_model="numpy", inline="always"))
"""For per-row loops: 1-D views of one batch row (gate blocks as separate arrays) let LLVM
vectorise the loop; the same loop over 2-D (b, j) indices stays scalar."""
stable_jit = jit
"""The compiler of the cells' step functions (an alias of ``jit``, whose names are stable)."""

TANH_CLAMP = 7.90531110763549805
"""|x| beyond which the float32 tanh returns the clamped value's (which rounds to +-1)."""
_TANH_P = (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
           -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16)  # x^1, x^3, ..., x^13
_TANH_Q = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)  # x^0..x^6


def tanh_(x):
    """tanh(x): exact for float64, Eigen's rational approximation for float32 (see module doc)."""
    return math.tanh(x)


@overload(tanh_, inline="always")
def _tanh_impl(x):
    if x != types.float32:
        return lambda x: math.tanh(x)
    f = np.float32
    c, (p1, p3, p5, p7, p9, p11, p13), (q0, q2, q4, q6) = f(TANH_CLAMP), map(f, _TANH_P), map(f, _TANH_Q)

    def fast_tanh(x):  # x p(x^2) / q(x^2), Horner in x^2
        x = min(max(x, -c), c)
        x2 = x * x
        p = x * (x2 * (x2 * (x2 * (x2 * (x2 * (x2 * p13 + p11) + p9) + p7) + p5) + p3) + p1)
        q = x2 * (x2 * (x2 * q6 + q4) + q2) + q0
        return p / q

    return fast_tanh


def sigmoid_(x):
    """sigma(x) = 1/2 + tanh(x/2)/2 with :func:`tanh_` (exact for float64, approximate for float32)."""
    return 0.5 + 0.5 * math.tanh(0.5 * x)


@overload(sigmoid_, inline="always")
def _sigmoid_impl(x):
    half = np.float32(0.5) if x == types.float32 else 0.5
    return lambda x: half + half * tanh_(half * x)


# ----------------------------------------------------------------------------- biases
@jit
def add_bias(a, b):
    """a[r, k] += b[k] for every row r of a (R, G): a bias added to a projection in place.

    One compiled loop: NumPy's broadcasting ``a += b`` costs ~0.6 µs of call overhead,
    which dominates a streaming step (R = B = 1).
    """
    R, G = a.shape
    for r in range(R):
        for k in range(G):
            a[r, k] += b[k]


@jit
def add_biases(a, b1, b2):
    """a[r, k] = (a[r, k] + b1[k]) + b2[k]: two biases in one call, rounded as two separate adds."""
    R, G = a.shape
    for r in range(R):
        for k in range(G):
            a[r, k] = (a[r, k] + b1[k]) + b2[k]


@jit
def add_present_biases(a, b1, b2):
    """a += b1, then b2 (:func:`add_biases`), each only where present (size > 0; b2 only with b1): the
    input biases a layer adds to its projection xw, before the time loop or inside it, in one order."""
    if b2.shape[0]:
        add_biases(a, b1, b2)
    elif b1.shape[0]:
        add_bias(a, b1)


@jit
def sum_squares(a):
    """The sum of a's squared elements (any shape, float), accumulated in float64 in index order.

    Not ``np.dot(a, a)``: OpenBLAS runs a long dot product on its threads, which then spin on the
    cores rnnkit's own threads need (:mod:`rnnkit.engine.big_gemm`)."""
    s = 0.0
    for v in a.flat:
        s += float(v) * float(v)
    return s


@jit
def sum_rows(a):
    """The sum of a's rows (a (R, C), rows with unit stride), in row order: one pass, vectorised over the columns.
    NumPy's ``a.sum(axis=0)`` took 270 us for (3200, 512) float32 (a bias gradient at (T, B, H) = (100, 32, 128)),
    twice the time of reading a once."""
    out = np.zeros(a.shape[1], a.dtype)
    for r in range(a.shape[0]):
        row = a[r]
        for j in range(row.shape[0]):
            out[j] += row[j]
    return out


# ----------------------------------------------------------------------------- input checks
@jit
def all_finite(a):
    """True if no element of ``a`` (any shape, float) is NaN or +-inf; stops at the first."""
    for v in a.flat:
        if not np.isfinite(v):
            return False
    return True
