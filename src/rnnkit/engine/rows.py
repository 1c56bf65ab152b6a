"""An input given as rows of a table, x[t, b] = table[ids[t, b]], and its projection done on the table.

An embedding followed by a recurrent layer: the first layer's input projection

    xw[t, b] = table[ids[t, b]] @ W_ih^T + b_ih          (T, B, G),  table (V, I), W_ih (G, I)

is row ids[t, b] of the projected table P = table @ W_ih^T + b_ih (V, G).  When V < T*B, forming
P (V*I*G multiply-adds) and gathering its rows costs less than the (T*B)*I*G GEMM; the gradient
goes the same way back (:func:`table_grads`):

    dP[v]   = sum of d_xw[t, b] over (t, b) with ids[t, b] = v      (a scatter-add, T*B*G adds)
    dW_ih  += dP^T table                                             (G, I): V*G*I
    d_table = dP W_ih                                                (V, I): V*G*I
    db_ih  += sum_v dP[v]

instead of two (T*B)*G*I GEMMs.  :class:`rnnkit.engine.recurrent.Recurrent` takes a :class:`Rows` as its
input ``x`` (``rnnkit.nn.blocks.Embedding.lookup`` makes one) and returns d_table as its d_x.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rnnkit.checks.arrays import check_array
from rnnkit.engine import big_gemm
from rnnkit.kernels import copy_row, jit


class Rows(NamedTuple):
    """x = table[ids], not formed: table (V, I); ids (T, B) integers in 0..V-1 ((B, T) with batch_first)."""

    table: np.ndarray
    ids: np.ndarray

    def materialise(self) -> np.ndarray:
        """x itself, (*ids.shape, I), C-contiguous."""
        return self.table[self.ids]


def check_rows(rows: Rows, input_size: int, dtype, batch_first: bool) -> Rows:
    """``rows`` checked (table (V, input_size) of ``dtype``, ids 2-d integers in 0..V-1), time-major."""
    table = check_array("x.table", rows.table, (None, input_size), dtype)
    ids = np.asarray(rows.ids)
    if ids.dtype.kind not in "iu" or ids.ndim != 2:
        raise TypeError(f"x.ids: expected a 2-d array of integer ids, got {ids.ndim}-d {ids.dtype.name}")
    V = table.shape[0]
    if ids.size and (ids.min() < 0 or ids.max() >= V):
        raise ValueError(f"x.ids: every id must be in 0..{V - 1}, got range {int(ids.min())}..{int(ids.max())}")
    return Rows(table, np.ascontiguousarray(ids.T if batch_first else ids))


def projects_on_table(rows: Rows) -> bool:
    """Whether the projection of ``rows`` is cheaper on the table: V < T*B."""
    return rows.table.shape[0] < rows.ids.size


@jit
def gather_rows(P, ids, out):
    """out[t, b] = P[ids[t, b]]: P (V, G), ids (T, B), out (T, B, G)."""
    for t in range(ids.shape[0]):
        for b in range(ids.shape[1]):
            copy_row(out[t, b], P[ids[t, b]])


@jit
def scatter_add_rows(d, ids, out):
    """out[ids[t, b]] += d[t, b] for every (t, b), in (t, b) order: d (T, B, G), out (V, G)."""
    for t in range(ids.shape[0]):
        for b in range(ids.shape[1]):
            row = out[ids[t, b]]
            src = d[t, b]
            for j in range(row.shape[0]):
                row[j] += src[j]


def scatter(rows: Rows, d: np.ndarray) -> np.ndarray:
    """(V, width): row v the sum of d[t, b] (d: (T, B, width)) over (t, b) with ids[t, b] = v."""
    out = np.zeros((rows.table.shape[0], d.shape[-1]), d.dtype)
    scatter_add_rows(np.ascontiguousarray(d), rows.ids, out)
    return out


def table_grads(rows: Rows, d_xw: np.ndarray, W_ih: np.ndarray, need_dx: bool = True, blas: int = 1):
    """(dP (V, G), dW_ih (G, I), d_table (V, I) or None) of xw = P[ids], P = table @ W_ih^T + b.

    d_xw: (T, B, G).  d_table is None without ``need_dx``."""
    dP = scatter(rows, d_xw)
    dW_ih = big_gemm.dot_t(rows.table, dP, blas)  # oriented as the unfused path's (x^T d_xw)^T
    return dP, dW_ih, (big_gemm.dot(dP, W_ih, blas=blas) if need_dx else None)
