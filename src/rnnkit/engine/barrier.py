"""A spinning barrier for compiled loops that run side by side (the unit shards of :mod:`rnnkit.engine.unit_shards`).

Threads of one compiled forward loop meet once a step: no shard may start step t + 1 (whose GEMM reads every
shard's part of h_t) before all have written their part of h_t.  A Python or futex barrier costs tens of
microseconds here (a thread hand-off on the 2-core VM of issue 19: about 90 us), more than a small step takes,
so the threads spin on shared counters, read and written with atomic operations (LLVM's ``atomicrmw`` and
atomic loads, written by numba intrinsics: numba has no atomics on the CPU).  A thread that has spun
``SPINS_BEFORE_YIELD`` times gives its core away (``sched_yield``) at every further try, so that a
machine with more threads than cores still makes progress.

The state is one int64 array of ``SIZE`` elements, zero at the start (:func:`new_barrier`): the number of
threads arrived in the current round at index 0, the round number at index ``GENERATION`` (another cache
line).  :func:`wait` is the classic centralised barrier: read the round, arrive; the last thread to arrive
resets the count and advances the round; the others spin until the round changes (or the barrier is aborted,
:func:`abort`: a thread that fails never arrives).
"""
from __future__ import annotations

import platform

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from rnnkit.kernels import jit

X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
GENERATION = 8
"""Index of the round counter: 64 bytes after the arrival count (its own cache line)."""
ABORTED = 15
"""Index of the abort flag (:func:`abort`): non-zero, every wait returns at once."""
SIZE = 16
SPINS_BEFORE_YIELD = 2_000
"""Spins (each with a ``pause``) before a waiting thread starts yielding its core: tens of microseconds."""


def new_barrier() -> np.ndarray:
    """A barrier's state: SIZE zeros (int64)."""
    return np.zeros(SIZE, np.int64)


def _int64_vector(arr) -> bool:
    """Whether numba type ``arr`` is what the atomics take: a 1-D int64 array."""
    return isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.ndim == 1


def _pointer(context, builder, arr_type, arr, index):
    array = context.make_array(arr_type)(context, builder, arr)
    return cgutils.get_item_pointer(context, builder, arr_type, array, [index])


@intrinsic
def atomic_add(typingctx, arr, index, value):
    """arr[index] += value atomically (sequentially consistent); returns the old value.  arr: int64 1-D."""
    if not _int64_vector(arr):
        return None
    sig = types.int64(arr, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        ptr = _pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.atomic_rmw("add", ptr, args[2], "seq_cst")

    return sig, codegen


@intrinsic
def atomic_load(typingctx, arr, index):
    """arr[index], read atomically (acquire): never hoisted out of a loop.  arr: int64 1-D."""
    if not _int64_vector(arr):
        return None
    sig = types.int64(arr, types.intp)

    def codegen(context, builder, signature, args):
        ptr = _pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return sig, codegen


@intrinsic
def atomic_store(typingctx, arr, index, value):
    """arr[index] = value atomically (release).  arr: int64 1-D."""
    if not _int64_vector(arr):
        return None
    sig = types.void(arr, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        ptr = _pointer(context, builder, signature.args[0], args[0], args[1])
        builder.store_atomic(args[2], ptr, "release", 8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def pause_or_yield(typingctx, give_up_core):
    """A spin-wait hint (x86 ``pause``; nothing elsewhere), or with ``give_up_core`` a call of ``sched_yield``."""
    if not isinstance(give_up_core, types.Boolean):
        return None
    sig = types.void(types.boolean)

    def codegen(context, builder, signature, args):
        module = builder.module
        yield_fn = module.globals.get("sched_yield") or ir.Function(module, ir.FunctionType(ir.IntType(32), []),
                                                                    "sched_yield")
        with builder.if_else(builder.trunc(args[0], ir.IntType(1))) as (then, otherwise):
            with then:
                builder.call(yield_fn, [])
            with otherwise:
                if X86:
                    pause = module.globals.get("llvm.x86.sse2.pause") or ir.Function(
                        module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
                    builder.call(pause, [])
        return context.get_dummy_value()

    return sig, codegen


@jit
def wait(bar, n_threads):
    """Block until ``n_threads`` threads have called ``wait`` on ``bar`` in this round (see the module doc)."""
    if n_threads <= 1:
        return
    round_ = atomic_load(bar, GENERATION)
    if atomic_add(bar, 0, 1) == n_threads - 1:  # the last to arrive opens the next round
        atomic_store(bar, 0, 0)
        atomic_add(bar, GENERATION, 1)
        return
    spins = 0
    while atomic_load(bar, GENERATION) == round_ and atomic_load(bar, ABORTED) == 0:
        spins += 1
        pause_or_yield(spins > SPINS_BEFORE_YIELD)


@jit
def abort(bar):
    """Release every thread waiting at ``bar``, now and in every later round: for a thread that failed before it
    could arrive (its partners then finish their loops on whatever they have, and its error is raised)."""
    atomic_store(bar, ABORTED, 1)
