"""Stop signals as a flag or an exception: SIGINT (Ctrl-C), SIGTERM and SIGHUP.

``timeout``, ``kill``, ``docker stop``, batch schedulers and a closed terminal
stop a process with SIGTERM or SIGHUP; by default Python dies at once and the
work since the last checkpoint is lost.  Inside ``with StopSignals() as stop:``
the first such signal only sets ``stop.signum`` (the loop checks ``stop`` or
calls ``stop.check()`` between steps, saves, and exits with
``stop.exit_code``); a second one raises :class:`~rnnkit.errors.Interrupted`
at once (an impatient user).  With ``escalate=False`` every signal only sets
the flag; with ``raise_first=True`` the first one already raises.

The exit code is what a shell reports for a process killed by the signal,
128 + signum: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP (:data:`EXIT_CODES`).
On leaving the block the previous handlers are restored.  Python delivers
signals to the main thread only, so outside it the helper installs nothing
and the flag stays unset (``installed`` is False).
"""
from __future__ import annotations

import signal
import threading

from rnnkit.errors import Interrupted

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
EXIT_CODES = {int(s): 128 + int(s) for s in STOP_SIGNALS}
"""signal number -> the exit status a shell reports for it (SIGINT 130, SIGTERM 143, SIGHUP 129)."""


def exit_code(signum: int) -> int:
    """128 + signum, the shell's exit status for a process stopped by ``signum``."""
    return 128 + int(signum)


class StopSignals:
    """Context manager turning stop signals into a flag (then an exception); see the module docstring.

    Attributes: ``signum`` (the first signal received, or None), ``exit_code``
    (128 + signum, or None), ``count`` (signals received), ``installed``.
    ``bool(stop)`` is True once a signal arrived.
    """

    def __init__(self, signals=STOP_SIGNALS, raise_first: bool = False, escalate: bool = True):
        self.signals = tuple(int(s) for s in signals)
        self.raise_first, self.escalate = bool(raise_first), bool(escalate)
        self.signum: int | None = None
        self.count = 0
        self.installed = False
        self._old: dict[int, object] = {}

    @property
    def exit_code(self) -> int | None:
        return None if self.signum is None else exit_code(self.signum)

    @property
    def signame(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name

    def __bool__(self) -> bool:
        return self.signum is not None

    def _handler(self, signum, frame) -> None:
        self.count += 1
        if self.signum is None:
            self.signum = int(signum)
        if self.raise_first or (self.escalate and self.count > 1):
            raise Interrupted(signum)

    def check(self) -> None:
        """Raise Interrupted (for the first signal received) if one arrived."""
        if self.signum is not None:
            raise Interrupted(self.signum)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            try:
                for s in self.signals:
                    self._old[s] = signal.signal(s, self._handler)
            except BaseException:
                self._restore()
                raise
            self.installed = True
        return self

    def _restore(self) -> None:
        while self._old:
            s, old = self._old.popitem()
            signal.signal(s, old if old is not None else signal.SIG_DFL)

    def __exit__(self, *exc) -> None:
        self._restore()
        self.installed = False

    def __repr__(self) -> str:
        return f"StopSignals(signum={self.signum}, count={self.count}, installed={self.installed})"
