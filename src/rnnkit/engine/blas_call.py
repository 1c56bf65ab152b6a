"""BLAS's GEMM called from compiled code on any 2-D views with one unit stride, with beta: C = A B + beta C.

NumPy's ``np.dot`` (and numba's) writes only into a contiguous ``out`` and copies a strided operand, so a weight
gradient formed on two threads needed a fresh partial sum per thread, their sum, and a transposed add into the
gradient (about 1.8 ms per weight at LSTM (35, 20, 650, 650), next to 6.6 ms of GEMM; issue 19, round 6).  Here
each thread adds its block of the product straight into its block of the gradient (beta = 1).

:func:`gemm_into` calls the same BLAS the compiled loops call (scipy's, through numba's ``numba_xxgemm`` helper,
the function numba's own ``np.dot`` and ``pinv`` use: a symbol, not an address, so the caller's disk cache stays
valid), releasing the GIL with the caller (``nogil``).  BLAS is column-major: a row-major C (M, N) is the
column-major C^T, so the call forms C^T = B^T A^T; each operand is passed as stored, "N" if its rows are
contiguous (row-major), "T" if it is a transposed view (its columns contiguous).
"""
from __future__ import annotations

import numpy as np
from numba import types

from rnnkit.kernels import jit

_XXGEMM = types.ExternalFunction("numba_xxgemm", types.intc(
    types.char, types.char, types.char,  # kind ('s', 'd'), transa, transb
    types.intp, types.intp, types.intp,  # m, n, k
    types.voidptr, types.voidptr, types.intp,  # alpha, a, lda
    types.voidptr, types.intp, types.voidptr,  # b, ldb, beta
    types.voidptr, types.intp))  # c, ldc


@jit
def _operand(x):
    """(trans, ld) of a row-major operand view x: "N" with its row stride if its rows are contiguous, else "T"
    with its column stride (a transposed view); ld at least the contiguous dimension's length (BLAS's rule)."""
    s0, s1 = x.strides[0] // x.itemsize, x.strides[1] // x.itemsize
    if s1 == 1 or x.shape[1] <= 1:
        return ord("N"), max(s0, x.shape[1], 1)
    return ord("T"), max(s1, x.shape[0], 1)


@jit
def gemm_into(a, b, c, beta):
    """c = a @ b + beta c (beta 0: c's old values are not read) for a (M, K), b (K, N), c (M, N), one float dtype;
    a and b row-major or transposed views (one unit stride each), c with unit column stride.  Each element in
    BLAS's own order (the same values as ``np.dot`` of the same operands, for beta = 0)."""
    M, K = a.shape
    N = b.shape[1]
    if M == 0 or N == 0:
        return
    if K == 0:  # BLAS would scale c by beta; keep one rule here
        for i in range(M):
            for j in range(N):
                c[i, j] = beta * c[i, j] if beta != 0 else 0
        return
    kind = ord("s") if a.itemsize == 4 else ord("d")  # float32, float64
    scalars = np.empty(2, a.dtype)  # alpha, beta (one array: np.full cost 0.3 s of a cold compile)
    scalars[0], scalars[1] = 1, beta
    alpha_, beta_ = scalars[:1], scalars[1:]
    tb, ldb = _operand(b)  # column-major: C^T (N x M) = B^T (N x K) A^T (K x M)
    ta, lda = _operand(a)
    ldc = max(c.strides[0] // c.itemsize, N, 1)
    _XXGEMM(kind, tb, ta, N, M, K, alpha_.ctypes, b.ctypes, ldb, a.ctypes, lda, beta_.ctypes, c.ctypes, ldc)


def _row_major(x: np.ndarray) -> bool:
    """Rows contiguous and apart (a row-major matrix or a block of one; an empty one is any)."""
    (n0, n1), (s0, s1), i = x.shape, x.strides, x.itemsize
    return x.size == 0 or (s1 == i or n1 <= 1) and (s0 >= max(n1, 1) * i or n0 <= 1)


def unit_strides(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> bool:
    """Whether :func:`gemm_into` takes these operands: one float dtype, a and b row-major or transposed views of
    row-major matrices (blocks too), c row-major (else NumPy's ``np.dot``, which copies, is the way)."""
    if not (a.dtype == b.dtype == c.dtype and a.dtype in (np.float32, np.float64)):
        return False
    return all(_row_major(x) or _row_major(x.T) for x in (a, b)) and _row_major(c)
