"""Data-parallel training over MPI: one Communicator, one Allreduce per step.

Launch ``mpiexec -n N python ...`` (or ``mpiexec -n N rnnkit train ...``): every rank
runs the same program on its shard of each global batch.  A plain run (no ``mpiexec``)
gets :meth:`Communicator.single` and never imports mpi4py.

The convention
--------------
The loss is a mean over the *global* batch's counted elements (sequences, or tokens)::

    L = (1 / N) sum_r n_r L_r            N = sum_r n_r

where rank r holds n_r of the elements and L_r is the mean over its own (what a task's
``loss_and_backward`` returns, with gradients dL_r/dW).  So each rank's loss weight is its
share n_r / N, and the global gradient is dL/dW = (1 / N) sum_r n_r dL_r/dW.
:meth:`Communicator.allreduce_grads` computes exactly that with ONE ``Allreduce(SUM)`` per
step over a preallocated flat buffer (views per parameter, in ``sorted(grads)`` order)::

    buf = [n_r dL_r/dW_1, ..., n_r dL_r/dW_k, n_r L_r, n_r, stop_r]    --SUM-->    divide by N

so N ranks x B/N elements give the gradient and loss of one rank x B (to rounding: the
sums are grouped per rank).  The summed ``stop`` slot is the agreement flag: every rank
learns in the same Allreduce that some rank hit a non-finite loss, an error or a signal,
and all stop together.  Clip and step *after* the Allreduce: every rank then holds the
same gradient and applies the same update, so the parameters stay identical (rank 0's are
broadcast once at the start, :meth:`Communicator.broadcast_params`).

Resume
------
Every rank loads the same checkpoint (so the optimizer state and rng agree).  A carried
per-stream state (the char-LM's detached ``h``, ``c``) lives on the rank that owns those
streams; :meth:`Communicator.gather_shards` assembles the whole batch's state for rank 0 to
checkpoint, and a resumed run slices its own ``shard`` of it, with any number of ranks.
Decisions that depend on wall time or signals (time limit, Ctrl-C) differ between ranks:
pass them as ``stop`` to the step's Allreduce or use :meth:`Communicator.agree`.

Failure
-------
A rank that dies (killed, ``os._exit``) makes MPICH's ``mpiexec`` kill the other ranks
and exit non-zero ("BAD TERMINATION"); nobody hangs.  A Python exception that is *not*
caught would hang the job (that rank waits in ``MPI_Finalize``, the others in the next
Allreduce), so the program runs inside :meth:`Communicator.guard`, which turns an
exception on any rank into one line on stderr and ``MPI_Abort``.  Only rank 0
(``comm.is_root``) writes checkpoints, metrics and the progress bar; checkpoint writes
are atomic (:mod:`rnnkit.atomic`), so a job killed mid-run keeps its last checkpoint.
``MPIEXEC_TIMEOUT=<seconds>`` makes MPICH end a job that runs longer than that.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass

import numpy as np

from rnnkit.errors import UserError
from rnnkit.engine.threads import available_cores, shared_cores

# Environment variables set for each process by an MPI launcher (MPICH/Hydra, Intel MPI,
# Open MPI, PMIx).  Only these decide whether mpi4py is imported at all.
SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")
RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")
ABORT_GRACE_S = 0.5  # guard(): seconds between printing an error and MPI_Abort (so mpiexec relays it)


@dataclass
class CommStats:
    """Counters for the Trainer's report: Allreduce calls, seconds spent in them, bytes reduced.

    The seconds include waiting for the slowest rank (load imbalance shows up here too)."""

    allreduce_calls: int = 0
    allreduce_seconds: float = 0.0
    allreduce_bytes: int = 0

    def share(self, step_seconds: float) -> float:
        """Fraction of ``step_seconds`` (wall time of the same steps) spent in the Allreduce."""
        return self.allreduce_seconds / step_seconds if step_seconds > 0 else 0.0


@dataclass(frozen=True)
class Reduced:
    """What one step's Allreduce agreed on: global mean loss, global count, whether any rank stops."""

    loss: float
    count: float
    stop: bool


def launched_size(environ=None) -> int:
    """Number of ranks the MPI launcher started (1 for a plain run), read from the environment only."""
    env = os.environ if environ is None else environ
    for var in SIZE_VARS:
        v = env.get(var)
        if v is not None:
            try:
                n = int(v)
            except ValueError:
                raise UserError(f"environment variable {var}: expected a number of MPI ranks, got {v!r}") from None
            if n < 1:
                raise UserError(f"environment variable {var}: expected a number of MPI ranks >= 1, got {n}")
            return n
    return 1


def launched_rank(environ=None) -> int:
    """This process's rank as the MPI launcher set it (0 for a plain run or an unreadable value)."""
    env = os.environ if environ is None else environ
    for var in RANK_VARS:
        v = env.get(var)
        if v is not None:
            try:
                return int(v)
            except ValueError:
                return 0
    return 0


class _Rank:
    """Just rank and size, to compute another rank's shard."""

    def __init__(self, rank: int, size: int):
        self._rank, self._size = rank, size

    def Get_rank(self):
        return self._rank

    def Get_size(self):
        return self._size


class Communicator:
    """rank / size / is_root, parameter broadcast, the per-step gradient Allreduce, sharding.

    Build with :meth:`single` (one process, no MPI) or :meth:`from_environment`.
    ``stats`` (:class:`CommStats`) counts the Allreduce time for throughput reports.
    """

    def __init__(self, mpi_comm=None):
        self._comm = mpi_comm
        self.rank = 0 if mpi_comm is None else int(mpi_comm.Get_rank())
        self.size = 1 if mpi_comm is None else int(mpi_comm.Get_size())
        self.stats = CommStats()
        self._buf = None  # the flat Allreduce buffer, allocated on first use
        self._views: dict[str, np.ndarray] = {}
        self._layout = None
        self._on_node = None  # ranks on this node, asked once (ranks_on_node)

    @classmethod
    def single(cls) -> "Communicator":
        """One process: rank 0 of 1; every collective is a no-op; mpi4py is not imported."""
        return cls(None)

    @classmethod
    def from_environment(cls, environ=None) -> "Communicator":
        """COMM_WORLD when launched by mpiexec with more than one rank (MPI env vars set), else single()."""
        size = launched_size(environ)
        if size == 1:
            return cls.single()
        try:
            from mpi4py import MPI
        except ImportError:
            raise UserError(f"launched under MPI with {size} ranks, but mpi4py is not installed; "
                            f"install the extra: pip install 'rnnkit[mpi]'") from None
        return cls(MPI.COMM_WORLD)

    def ranks_on_node(self) -> int:
        """How many ranks of this job run on this rank's node (1 without MPI).  A collective the
        first time (``MPI_Comm_split_type`` SHARED); remembered after."""
        if self._on_node is None:
            if self.size == 1:
                self._on_node = 1
            else:
                node = self._comm.Split_type(self._mpi().COMM_TYPE_SHARED)
                self._on_node = int(node.Get_size())
                node.Free()
        return self._on_node

    def cores(self) -> int:
        """Cores this rank's loops may use: the node's cores shared by its ranks, at least 1
        (:func:`rnnkit.engine.threads.shared_cores`)."""
        return shared_cores(available_cores(), self.ranks_on_node())

    @property
    def is_root(self) -> bool:
        """True on rank 0, the only rank that writes checkpoints, metrics and the progress bar."""
        return self.rank == 0

    def __repr__(self) -> str:
        return f"Communicator(rank={self.rank}, size={self.size})"

    # ------------------------------------------------------------------ sharding
    def shard(self, n_items: int) -> slice:
        """This rank's contiguous slice of ``n_items`` (e.g. the parallel streams of a char-LM batch).

        Balanced: the first ``n_items % size`` ranks get one more.  Every rank must get at
        least one item.
        """
        if not isinstance(n_items, (int, np.integer)) or isinstance(n_items, bool) or n_items < self.size:
            raise UserError(f"batch: expected at least one item per MPI rank ({self.size} ranks), got {n_items!r}")
        base, extra = divmod(int(n_items), self.size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    # ------------------------------------------------------------------ collectives
    def _flat(self, arrays: dict) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
        """(buffer, name -> view, n): the preallocated buffer for this set of arrays plus 3 slots."""
        layout = tuple((k, arrays[k].shape, arrays[k].dtype.str) for k in sorted(arrays))
        if layout != self._layout:
            dtype = np.result_type(*[a.dtype for a in arrays.values()]) if arrays else np.float64
            n = sum(int(np.prod(s)) for _, s, _ in layout)
            buf = np.zeros(n + 3, dtype=dtype)
            views, off = {}, 0
            for k, shape, _ in layout:
                size = int(np.prod(shape))
                views[k] = buf[off:off + size].reshape(shape)
                off += size
            self._buf, self._views, self._layout = buf, views, layout
        return self._buf, self._views, self._buf.size - 3

    def broadcast_params(self, params: dict) -> None:
        """Overwrite every rank's parameters (in place) with rank 0's: one Bcast of one flat buffer."""
        if self.size == 1:
            return
        buf, views, _ = self._flat(params)
        if self.is_root:
            for k, v in views.items():
                v[...] = params[k]
        self._comm.Bcast(buf, root=0)
        if not self.is_root:
            for k, v in views.items():
                params[k][...] = v

    def allreduce_grads(self, grads: dict, loss: float, count, stop: bool = False) -> Reduced:
        """Turn this rank's gradients (of its mean loss over ``count`` elements) into the global ones.

        In place: ``grads[k] <- (1/N) sum_r count_r grads_r[k]``; returns the global mean loss
        ``(1/N) sum_r count_r loss_r``, ``N`` and whether any rank passed ``stop=True`` (or a
        non-finite loss).  One Allreduce(SUM); with one process nothing changes.
        """
        count = float(count)
        if not count > 0:
            raise ValueError(f"count: expected the number of elements the loss is a mean over (> 0), got {count!r}")
        loss = float(loss)
        stop = bool(stop) or not math.isfinite(loss)
        if self.size == 1:
            return Reduced(loss, count, stop)
        buf, views, n = self._flat(grads)
        for k, v in views.items():
            np.multiply(grads[k], count, out=v)  # n_r dL_r/dW
        buf[n:] = (count * loss, count, float(stop))  # a NaN loss stays NaN in the sum
        t0 = time.perf_counter()
        self._comm.Allreduce(self._mpi().IN_PLACE, buf, op=self._mpi().SUM)
        self.stats.allreduce_seconds += time.perf_counter() - t0
        self.stats.allreduce_calls += 1
        self.stats.allreduce_bytes += buf.nbytes
        total = float(buf[n + 1])
        inv = buf.dtype.type(1.0 / total)
        for k, v in views.items():
            np.multiply(v, inv, out=grads[k])
        stopped = float(buf[n + 2]) > 0 or not math.isfinite(float(buf[n]))
        return Reduced(float(buf[n]) / total, total, stopped)

    def agree(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is True on any rank (an Allreduce of a flag; a
        barrier).  For decisions between steps: Ctrl-C, time limit, early stopping."""
        return self.max(1.0 if flag else 0.0) > 0

    def max(self, value: float) -> float:
        """The largest ``value`` over the ranks, on every rank (e.g. the exit code of a stop signal)."""
        return self._reduce(value, "MAX")

    def total(self, value: float) -> float:
        """The sum of ``value`` over the ranks, on every rank (e.g. a batch's items from each rank's shard)."""
        return self._reduce(value, "SUM")

    def _reduce(self, value: float, op: str) -> float:
        if self.size == 1:
            return float(value)
        a = np.array([float(value)])
        self._comm.Allreduce(self._mpi().IN_PLACE, a, op=getattr(self._mpi(), op))
        return float(a[0])

    def gather_shards(self, array: np.ndarray, n_items: int, axis: int = 1) -> np.ndarray:
        """The whole batch from every rank's shard: ``array`` holds this rank's ``shard(n_items)``
        along ``axis``; every rank gets the concatenation in rank order (one Allgatherv).

        For checkpoints: a carried per-stream state (char-LM ``h``, ``c``: (layers, B/N, H)) is
        saved whole by rank 0, and a resumed run (with any number of ranks) slices its shard.
        """
        part = self.shard(n_items)
        a = np.asarray(array)
        if a.ndim == 0 or a.shape[axis] != part.stop - part.start:
            raise ValueError(f"array: expected this rank's {part.stop - part.start} of {n_items} items along "
                             f"axis {axis}, got shape {a.shape}")
        if self.size == 1:
            return a.copy()
        rows = np.ascontiguousarray(np.moveaxis(a, axis, 0))
        per_item = int(np.prod(rows.shape[1:]))
        shards = [Communicator(_Rank(r, self.size)).shard(n_items) for r in range(self.size)]
        counts = [(s.stop - s.start) * per_item for s in shards]
        out = np.empty((n_items,) + rows.shape[1:], dtype=rows.dtype)
        displs = np.cumsum([0] + counts[:-1]).tolist()
        from mpi4py.util.dtlib import from_numpy_dtype

        self._comm.Allgatherv(rows, [out, counts, displs, from_numpy_dtype(rows.dtype)])
        return np.moveaxis(out, 0, axis)

    def in_sync(self, arrays: dict) -> bool:
        """True on every rank if every rank's ``arrays`` equal rank 0's bit for bit (a check, not per step)."""
        if self.size == 1:
            return True
        mine = np.concatenate([np.ascontiguousarray(arrays[k]).reshape(-1) for k in sorted(arrays)])
        root = mine.copy()
        self._comm.Bcast(root, root=0)
        return not self.agree(not np.array_equal(mine, root))

    def _mpi(self):
        from mpi4py import MPI  # only reached with size > 1, where mpi4py is loaded already
        return MPI

    # ------------------------------------------------------------------ failure
    @contextlib.contextmanager
    def guard(self):
        """Run a rank's program: an exception on any rank ends the whole job (no hang).

        With one process exceptions pass through unchanged.  With several, a bug is printed
        with its traceback and one line naming the rank, and the job is aborted (``MPI_Abort``,
        exit code 1).  A user's mistake (UserError, e.g. a bad checkpoint, which every rank
        meets) is printed once: rank 0 prints ``rnnkit: error: ...`` and aborts with exit code
        2; another rank waits for rank 0's abort and prints it only if rank 0 did not (an
        error of its own); mpiexec then stops every rank.
        """
        try:
            yield self
        except BaseException as e:
            if self.size == 1 or isinstance(e, SystemExit) and e.code in (0, None):
                raise
            user = isinstance(e, (UserError, SystemExit))
            if user and self.rank != 0:
                time.sleep(4 * ABORT_GRACE_S)  # rank 0 met it too (as a rule): its abort ends this process
            if user:
                text = f"rnnkit: error: {e}" + (f" (MPI rank {self.rank} of {self.size})" if self.rank else "") + "\n"
            else:  # a bug: keep its traceback
                text = traceback.format_exc() + (f"rnnkit: error on MPI rank {self.rank} of {self.size}: "
                                                 f"{type(e).__name__}: {e}; aborting all ranks\n")
            sys.stderr.write(text)  # one write, then time for the launcher to forward it: MPI_Abort
            sys.stderr.flush()  # kills the processes that relay the ranks' output
            time.sleep(ABORT_GRACE_S)
            if user:  # the one line is said: not MPI's own "Abort(2) on node 0 ..." after it
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())
            self._comm.Abort(2 if user else 1)
            os._exit(2 if user else 1)  # not reached: MPI_Abort ends the process
