"""The Ray session the sweep and grid runners share: the running one, a cluster joined, or a local one."""
from __future__ import annotations

import contextlib

from rnnkit.errors import UserError


@contextlib.contextmanager
def ray_session(cpus: int | None = None, address: str | None = None):
    """Use the running Ray (if this process already called ray.init), else start one and stop it after.

    ``address`` joins a running cluster ("auto" or "host:port"); otherwise a local Ray with
    ``cpus`` CPUs (all by default) and no dashboard."""
    try:
        import ray
    except ImportError:
        raise UserError("Ray is not installed; install the extra: pip install 'rnnkit[tune]'") from None
    if ray.is_initialized():
        yield ray
        return
    if address is not None:
        ray.init(address=address, logging_level="WARNING")
    else:
        ray.init(num_cpus=cpus, include_dashboard=False, logging_level="WARNING")
    try:
        yield ray
    finally:
        ray.shutdown()
