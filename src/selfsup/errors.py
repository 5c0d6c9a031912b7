"""User-facing errors.

A :class:`SelfsupError` is raised for problems the user can fix (a wrong name, a missing file,
a bad shape). The CLI prints its message without a traceback and exits with ``exit_code``.
Messages say what was wrong, where, and what to do.
"""

from __future__ import annotations


class SelfsupError(Exception):
    """An error caused by the user's input or configuration."""

    exit_code: int = 2


class DataError(SelfsupError):
    """Input data is missing, unreadable or malformed."""


class ConfigError(SelfsupError):
    """A configuration value, name or override is invalid."""


class NonFiniteLossError(SelfsupError):
    """Training produced a NaN or infinite loss; raised after the last good checkpoint is kept."""

    exit_code = 3


class CollapseError(SelfsupError):
    """The collapse alarm stopped a run (``train.stop_on_collapse``); the checkpoint is kept."""

    exit_code = 4


class StorageError(SelfsupError):
    """A file could not be written (a full disk, a read-only folder); what was there is kept."""

    exit_code = 5


class RunLockedError(SelfsupError):
    """Another live process holds the run directory (training it, or evaluating it)."""

    exit_code = 6


class RunInterrupted(SelfsupError):
    """SIGINT or SIGTERM stopped a run; the exit code is 128 + the signal's number (130, 143)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + int(signum)
