"""Compiled helpers of the time loops (:mod:`rnnkit.engine.scan`): the rows of every buffer in a tuple of
buffers (a cell's state fields, its cache fields) at one step, inlined into the loops."""
from __future__ import annotations

from numba.extending import overload, register_jitable


@register_jitable
def _row(a, t, b0, b1):
    return a[t % a.shape[0], b0:b1]


def at(tup, t, b0, b1):
    """(tup[0][t, b0:b1], tup[1][t, b0:b1], ...): step t's rows b0:b1 of each buffer (compiled code only).
    t is taken modulo each buffer's length: a buffer of all steps is indexed by t, one of two steps alternates
    (the state an inference without tape keeps), one of one step is overwritten at every step."""
    raise NotImplementedError("at: compiled code only")


@overload(at, inline="always")
def _at_impl(tup, t, b0, b1):
    return {  # tuples of up to 6 fields (a cell's state or cache)
        0: lambda tup, t, b0, b1: (),
        1: lambda tup, t, b0, b1: (_row(tup[0], t, b0, b1),),
        2: lambda tup, t, b0, b1: (_row(tup[0], t, b0, b1), _row(tup[1], t, b0, b1)),
        3: lambda tup, t, b0, b1: (_row(tup[0], t, b0, b1), _row(tup[1], t, b0, b1), _row(tup[2], t, b0, b1)),
        4: lambda tup, t, b0, b1: (_row(tup[0], t, b0, b1), _row(tup[1], t, b0, b1), _row(tup[2], t, b0, b1),
                                   _row(tup[3], t, b0, b1)),
        5: lambda tup, t, b0, b1: (_row(tup[0], t, b0, b1), _row(tup[1], t, b0, b1), _row(tup[2], t, b0, b1),
                                   _row(tup[3], t, b0, b1), _row(tup[4], t, b0, b1)),
        6: lambda tup, t, b0, b1: (_row(tup[0], t, b0, b1), _row(tup[1], t, b0, b1), _row(tup[2], t, b0, b1),
                                   _row(tup[3], t, b0, b1), _row(tup[4], t, b0, b1), _row(tup[5], t, b0, b1)),
    }[len(tup)]


def rows(tup, b0, b1):
    """(tup[0][b0:b1], tup[1][b0:b1], ...) (compiled code only)."""
    raise NotImplementedError("rows: compiled code only")


@overload(rows, inline="always")
def _rows_impl(tup, b0, b1):
    return {
        0: lambda tup, b0, b1: (),
        1: lambda tup, b0, b1: (tup[0][b0:b1],),
        2: lambda tup, b0, b1: (tup[0][b0:b1], tup[1][b0:b1]),
        3: lambda tup, b0, b1: (tup[0][b0:b1], tup[1][b0:b1], tup[2][b0:b1]),
        4: lambda tup, b0, b1: (tup[0][b0:b1], tup[1][b0:b1], tup[2][b0:b1], tup[3][b0:b1]),
    }[len(tup)]
