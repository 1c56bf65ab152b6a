"""Exceptions shared by the training system and the command line.

``UserError`` marks a mistake the user can fix (a bad file, a bad argument);
the CLI prints it as one line ``rnnkit: error: ...`` and exits with code 2,
without a traceback.  Every error a user can cause derives from ``UserError``:
``CheckpointError`` (a checkpoint that is missing, truncated, corrupt, edited by hand or of
another model kind) is a ``UserError`` and, for code that catches it so, a ``ValueError``;
the other classes below refine these for the reliability guarantees (docs/reliability.md).
OS errors a user can fix (full disk, read-only, permission) become ``OutputError`` in one
place, :func:`rnnkit.atomic.output_error`.
"""
from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input; the message names the problem."""


class CheckpointError(UserError, ValueError):
    """A checkpoint file that cannot be used (missing, truncated, corrupt, edited, wrong kind)."""


class SettingError(UserError, ValueError):
    """A bad value of an rnnkit setting given outside the arguments (``RNNKIT_PLAN``, ``RNNKIT_GEMM_ROWS``,
    ``layer.strategy``); the message names the setting and what it expected."""


class TrainingDiverged(UserError):
    """Training produced a non-finite loss or gradient; the last good checkpoint is kept."""


class NonFiniteError(TrainingDiverged):
    """A named tensor holds NaN or inf (``tensor``: its name; ``index``: the first bad element)."""

    def __init__(self, message: str, tensor: str = "", index: tuple = ()):
        super().__init__(message)
        self.tensor, self.index = tensor, index


class OutputError(UserError):
    """A file or output directory cannot be written: disk full, quota, read-only, permission,
    a path that is a file or under /proc.  ``errno`` is the OS error number, if any."""

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno


class OutDirLocked(OutputError):
    """Another live process holds the output directory's lock (``pid``: the holder, or None)."""

    def __init__(self, message: str, pid: int | None = None):
        super().__init__(message)
        self.pid = pid


class InsufficientMemory(UserError):
    """A model or run would need more memory than this machine has (``needed``, ``available`` bytes)."""

    def __init__(self, message: str, needed: int = 0, available: int = 0):
        super().__init__(message)
        self.needed, self.available = needed, available


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGINT, SIGTERM, SIGHUP) arrived.  ``signum``; ``exit_code`` is what a
    shell reports for a process killed by it (128 + signum: 130, 143, 129).  A subclass of
    KeyboardInterrupt, so code that handles Ctrl-C handles the others the same way."""

    def __init__(self, signum: int):
        import signal

        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        try:
            self.signame = signal.Signals(self.signum).name
        except ValueError:
            self.signame = f"signal {self.signum}"
        super().__init__(f"{self.signame} received (exit code {self.exit_code})")


def format_bytes(n: int) -> str:
    """``1536`` -> ``'1.5 KiB'``; exact bytes below 1 KiB."""
    n = int(n)
    if n < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        n /= 1024.0
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover
