"""Exceptions shared by the training system and the command line.

``UserError`` marks a mistake the user can fix (a bad file, a bad argument);
the CLI prints it as one line ``rnnkit: error: ...`` and exits with code 2,
without a traceback.  ``CheckpointError`` is a ``ValueError`` raised for a
checkpoint that is missing, truncated, corrupt, edited by hand or of another
model kind; the CLI treats it like a ``UserError``.
"""
from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input; the message names the problem."""


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used (missing, truncated, corrupt, edited, wrong kind)."""


class TrainingDiverged(UserError):
    """Training produced a non-finite loss or gradient; the last good checkpoint is kept."""
