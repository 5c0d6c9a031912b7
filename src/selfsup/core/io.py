"""Atomic file writing: the one helper every run-directory file goes through.

A file is written to a temporary sibling (unique per process, so two ranks or two runs never
share it) and renamed over the target, so a crash leaves either the old file or the new one,
never a half-written file, and a failed write leaves no temporary file behind.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Callable

from selfsup.errors import ConfigError, StorageError


def write_atomic(path: str | os.PathLike[str], data: str | bytes | Callable[[Path], None]) -> Path:
    """Write ``data`` to ``path`` atomically and return ``path``.

    ``data`` is text, bytes, or a function that writes the file it is given (for writers that
    want a path, e.g. ``numpy.save`` or ``matplotlib``'s ``savefig``); the temporary file keeps
    ``path``'s suffix so such writers pick the right format.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    tmp = Path(name)
    try:
        if callable(data):
            os.close(fd)
            data(tmp)
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data.encode() if isinstance(data, str) else data)
        # mkstemp makes the file private (0600); give it the mode a plain open() would have.
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in FULL_DISK:
            raise StorageError(f"could not write {path}: {error.strerror} (the disk is full); {path} was left as it was: free some space") from None
        raise
    return path


FULL_DISK = (errno.ENOSPC, errno.EDQUOT)
_UMASK = os.umask(0)
os.umask(_UMASK)


def check_output_dir(path: str | os.PathLike[str], what: str = "output folder", option: str = "-o") -> Path:
    """Check that folder ``path`` exists or can be made, and can be written; returns it.

    One line naming the culprit for: a file where the folder should be, a file above it, a
    folder without write permission. Nothing is created here.
    """
    path = Path(path)
    if os.path.lexists(path) and not path.is_dir():
        problem = "is a broken symlink or a symlink loop" if path.is_symlink() and not path.exists() else "is a file, not a folder"
        raise ConfigError(f"{what} {path} {problem}; choose another {option}")
    existing = path
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{what} {path} cannot be made: {existing} is a file, not a folder; choose another {option}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StorageError(f"cannot write {what} {path}: no write permission in {existing}; choose another {option}")
    return path


def check_output_file(path: str | os.PathLike[str], force: bool = False, what: str = "output file", option: str = "-o") -> Path:
    """Check that file ``path`` can be written: not a folder, its folder writable, and no existing
    file unless ``force`` (nothing a user has is overwritten without asking)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; name a file with {option}")
    if path.exists() and not force:
        raise ConfigError(f"{what} {path} already exists; pass --force to overwrite it, or choose another {option}")
    check_output_dir(path.parent, what=f"the folder of {what} {path}", option=option)
    return path
