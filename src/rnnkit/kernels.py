"""Compiled scalar and elementwise primitives that the cells' step functions are built from.

* ``tanh_(x)``, ``sigmoid_(x)``: the activations, chosen by the type of ``x`` when numba
  compiles the caller.  float64: exact libm ``math.tanh`` (PyTorch-equal to 1e-10).
  float32: Eigen's rational approximation of tanh (``generic_fast_tanh_float``: clamp to
  +-7.905, odd 13th-degree numerator over even 6th-degree denominator), each Horner step one
  fused multiply-add (``llvm.fma``), written as LLVM code by :func:`_tanh_ir` (numba has no
  SVML here, so ``math.tanh`` is a scalar libm call, 5-7x slower); max abs error <= 5e-7
  (tested over a dense float32 grid).  sigma(x) = tanh(x/2)/2 + 1/2 in both (halving is exact).
* ``sigmoid_of_sum``, ``tanh_of_sum``, ``tanh_of``: out <- act(x + w) or act(x) over a row.  float32
  rows run in vectors of :data:`WIDE` or :data:`NARROW` floats, then of 4, 2 and 1 (:data:`TAIL`), with the
  same operations lane by lane as ``tanh_``/``sigmoid_``: the same bits wherever an element falls.
* ``add_bias``, ``add_biases``: a bias added to every row of a projection.
* ``all_finite``: the NaN/inf check of small inputs.
* :func:`stable_jit`: the compiler of the cells' step functions (the time loops of
  :mod:`rnnkit.engine.scan` are compiled around them, cached on disk).

No fastmath: results are IEEE in the order written (the float32 activations' fused multiply-adds
are written out as such).  Constants are typed like the
arrays (``x.dtype.type(0.5)``): a float64 literal would promote every float32 product.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

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


def _float32_constant(ty, value: float):
    """``value`` rounded to float32, as an LLVM constant of ``ty`` (float, or a vector of floats: every lane)."""
    scalar = ir.Constant(ir.FloatType(), float(np.float32(value)))
    return ir.Constant(ty, [scalar] * ty.count) if isinstance(ty, ir.VectorType) else scalar


def _fma(builder, a, b, c):
    """a b + c rounded once (``llvm.fma``) on float32 scalars or vectors."""
    ty = a.type
    name = f"llvm.fma.v{ty.count}f32" if isinstance(ty, ir.VectorType) else "llvm.fma.f32"
    fn = builder.module.globals.get(name) or ir.Function(builder.module, ir.FunctionType(ty, [ty] * 3), name)
    return builder.call(fn, [a, b, c])


def _tanh_ir(builder, x):
    """The float32 tanh of ``x`` (a float or a vector of floats, lane by lane: the same operations, so the same
    bits either way): x clamped to +-TANH_CLAMP (NaN passes), x p(x^2) / q(x^2) with Horner's steps as fused
    multiply-adds."""
    k = functools.partial(_float32_constant, x.type)
    x = builder.select(builder.fcmp_ordered("<", x, k(-TANH_CLAMP)), k(-TANH_CLAMP), x)
    x = builder.select(builder.fcmp_ordered(">", x, k(TANH_CLAMP)), k(TANH_CLAMP), x)
    x2 = builder.fmul(x, x)
    p13, *rest = reversed(_TANH_P)
    p = k(p13)
    for coefficient in rest:  # p11, p9, ..., p1
        p = _fma(builder, x2, p, k(coefficient))
    q6, *rest = reversed(_TANH_Q)
    q = k(q6)
    for coefficient in rest:  # q4, q2, q0
        q = _fma(builder, x2, q, k(coefficient))
    return builder.fdiv(builder.fmul(x, p), q)


def _sigmoid_ir(builder, x):
    """sigma(x) = 1/2 tanh(x/2) + 1/2 (one fused multiply-add) on float32 scalars or vectors."""
    half = _float32_constant(x.type, 0.5)
    return _fma(builder, half, _tanh_ir(builder, builder.fmul(half, x)), half)


ACTIVATIONS_IR = {"tanh": _tanh_ir, "sigmoid": _sigmoid_ir}


def _scalar_intrinsic(name: str):
    @intrinsic
    def activation(typingctx, x):
        if x != types.float32:
            return None
        return types.float32(types.float32), lambda context, builder, sig, args: ACTIVATIONS_IR[name](builder, args[0])

    return activation


_tanh32, _sigmoid32 = _scalar_intrinsic("tanh"), _scalar_intrinsic("sigmoid")


def tanh_(x):
    """tanh(x): exact for float64, Eigen's rational approximation for float32 (see module doc)."""
    return math.tanh(x)


@overload(tanh_, inline="always")
def _tanh_impl(x):
    return (lambda x: _tanh32(x)) if x == types.float32 else (lambda x: math.tanh(x))


def sigmoid_(x):
    """sigma(x) = 1/2 + tanh(x/2)/2 with :func:`tanh_` (exact for float64, approximate for float32)."""
    return 0.5 + 0.5 * math.tanh(0.5 * x)


@overload(sigmoid_, inline="always")
def _sigmoid_impl(x):
    return (lambda x: _sigmoid32(x)) if x == types.float32 else (lambda x: 0.5 + 0.5 * math.tanh(0.5 * x))


# ----------------------------------------------------------------------------- activations of rows
def _lanes_intrinsic(name: str, n_lanes: int):
    """dst[j:j+n] = act(x[j:j+n] (+ w[j:j+n])) for float32 C-contiguous 1-D arrays, as one vector of n = n_lanes
    floats (w None: no sum)."""

    @intrinsic
    def lanes(typingctx, dst, x, w, j):
        arrays = (dst, x) if w == types.none else (dst, x, w)
        if not all(isinstance(a, types.Array) and a.dtype == types.float32 and a.ndim == 1 for a in arrays):
            return None

        def codegen(context, builder, sig, args):
            vt = ir.VectorType(ir.FloatType(), n_lanes)

            def at(k):  # a pointer to n_lanes floats of argument k from element j
                data = context.make_array(sig.args[k])(context, builder, args[k]).data
                return builder.bitcast(builder.gep(data, [args[3]]), vt.as_pointer())

            v = builder.load(at(1), align=4)
            if sig.args[2] != types.none:
                v = builder.fadd(v, builder.load(at(2), align=4))
            builder.store(ACTIVATIONS_IR[name](builder, v), at(0), align=4)
            return context.get_dummy_value()

        return types.void(dst, x, w, j), codegen

    return lanes


WIDE, NARROW = 16, 8
"""float32 lanes of the activations' vectors: 64 bytes (an AVX-512 register) in steps of many rows, 32 bytes in
steps of few (:data:`WIDE_ROWS`); LLVM splits them where vectors are narrower.  LLVM's own vectoriser took 32-byte
vectors without fused multiply-adds, and in the time loops it left the fused version scalar: one sigmoid 0.45 ns
an element that way, 0.23 with these 64-byte vectors (2-core Intel Xeon; LSTM inference (100, 32, 64, 128)
3.2-3.3 ms -> 2.7-2.9).  But 64-byte fused multiply-adds lower an Intel core's clock for a while: the streaming
step (B = 1), whose BLAS and Python work runs at that clock, took 5-12 % longer with them (LSTM H = 128: 12.8-13.7
-> 13.9-14.7 us) and none with 32-byte vectors.  The time loops' micro-kernel runs 64-byte vectors anyway."""
WIDE_ROWS = 2
"""Batch rows from which a step's activations run in WIDE vectors (below: NARROW)."""


@rowjit
def wide_step(h):
    """Whether a step whose state h is (B, H) runs its row activations in WIDE vectors: B >= :data:`WIDE_ROWS`."""
    return h.shape[0] >= WIDE_ROWS
TAIL = (4, 2, 1)
"""Vector widths of a float32 row's last n mod NARROW elements, each at most once: straight-line code.  A loop of
scalars there (LLVM vectorised it again, with its own checks) took a third of the LSTM step's compile: 1.65-1.74 s
-> 1.16-1.28 s without it (issue 19, session 15)."""
_LANES = {(name, n): _lanes_intrinsic(name, n) for name in ACTIVATIONS_IR for n in (WIDE, NARROW) + TAIL}
_SCALAR = {"tanh": tanh_, "sigmoid": sigmoid_}


def _row(name: str, summed: bool):
    """The overload of a row function out <- act(x + w) (summed) or act(x): whole vectors of WIDE floats (if
    ``wide``), then of NARROW, then the rest in vectors of 4, 2 and 1 (:data:`TAIL`; the same bits: the same
    operations); float64 and other layouts one element at a time."""
    wide_lanes, narrow_lanes, scalar = _LANES[name, WIDE], _LANES[name, NARROW], _SCALAR[name]
    lanes4, lanes2, lanes1 = (_LANES[name, n] for n in TAIL)

    def impl(x, w, out, wide):
        arrays = (x, w, out) if summed else (x, out)
        vector = all(isinstance(t, types.Array) and t.dtype == types.float32 and t.layout == "C" for t in arrays)

        @njit(error_model="numpy", inline="always")
        def rest(x, w, out, m):
            for j in range(m, out.shape[0]):
                out[j] = scalar(x[j] + w[j]) if summed else scalar(x[j])

        def vector_row(x, w, out, wide):
            n = out.shape[0]
            m = (n - n % WIDE) * wide  # no branch: numba's inlining of a variable set in one lost track of it
            for j in range(0, m, WIDE):
                wide_lanes(out, x, w, j)
            m8 = n - (n - m) % NARROW
            for j in range(m, m8, NARROW):
                narrow_lanes(out, x, w, j)
            r = n - m8  # < NARROW: its bits 4, 2, 1 (offsets computed, not set in branches, as above)
            if r & 4:
                lanes4(out, x, w, m8)
            if r & 2:
                lanes2(out, x, w, m8 + (r & 4))
            if r & 1:
                lanes1(out, x, w, m8 + (r & 6))

        return vector_row if vector else lambda x, w, out, wide: rest(x, w, out, 0)

    return impl


def sigmoid_of_sum(x, w, out, wide):
    """out <- sigma(x + w) for 1-D x, w, out (out may be x: a gate block xw + hw activated in place); ``wide``:
    :func:`wide_step` of the step."""
    out[:] = 0.5 + 0.5 * np.tanh(0.5 * (x + w))


def tanh_of_sum(x, w, out, wide):
    """out <- tanh(x + w) for 1-D x, w, out (out may be x); ``wide`` as :func:`sigmoid_of_sum`."""
    out[:] = np.tanh(x + w)


def tanh_of(x, w, out, wide):
    """out <- tanh(x) for 1-D x and out (out may be x); w is not read (None); ``wide`` as :func:`sigmoid_of_sum`."""
    out[:] = np.tanh(x)


overload(sigmoid_of_sum, inline="always")(_row("sigmoid", True))
overload(tanh_of_sum, inline="always")(_row("tanh", True))
overload(tanh_of, inline="always")(_row("tanh", False))


# ----------------------------------------------------------------------------- row copies
@rowjit
def copy_row(dst, src):
    """dst[j] = src[j] for 1-D rows of one length.  Not ``dst[:] = src``: numba compiles a slice assignment's
    shape-mismatch error (a formatted message) into every function that has one, about 1.3-2 s of a cold
    compile each (issue 19: a cold ``rnnkit demo``)."""
    for j in range(dst.shape[0]):
        dst[j] = src[j]


@rowjit
def add_row(dst, src):
    """dst[j] += src[j] for 1-D rows of one length (not ``dst += src``, as :func:`copy_row`)."""
    for j in range(dst.shape[0]):
        dst[j] += src[j]


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
