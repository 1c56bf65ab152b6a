"""A grid of independent runs (benchmark cells), in this process or as Ray tasks, same results in the same order.

Each call runs with a fixed number of BLAS threads and as many cores for the compiled loops, so both
engines compute with the same arithmetic.
"""
from __future__ import annotations

from rnnkit.engine.threads import use_cores
from rnnkit.errors import UserError
from rnnkit.sweep.session import ray_session


def _limited(fn, cell, blas_threads: int):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=blas_threads, user_api="blas"), use_cores(blas_threads):
        return fn(cell)


def run_grid(cells, fn, engine: str = "local", cpus: int | None = None, address: str | None = None,
             blas_threads: int = 1) -> list:
    """``[fn(cell) for cell in cells]``, in this process (engine "local") or as one Ray task per cell
    (engine "ray"; ``fn`` and the cells must pickle); same results, same order, each call with
    ``blas_threads`` BLAS threads and as many cores for the loops (so both engines compute with the
    same arithmetic, and Ray's one CPU per task is what it uses)."""
    cells = list(cells)
    if engine == "local":
        return [_limited(fn, c, blas_threads) for c in cells]
    if engine != "ray":
        raise UserError(f"engine: expected 'local' or 'ray', got {engine!r}")
    with ray_session(cpus, address) as ray:
        task = ray.remote(num_cpus=1)(_limited)
        refs = [task.remote(fn, c, blas_threads) for c in cells]
        try:
            return ray.get(refs)
        except ray.exceptions.RayTaskError as e:
            raise e.as_instanceof_cause() from None
