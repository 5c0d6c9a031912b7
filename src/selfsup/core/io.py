"""Atomic file writing: the one helper every run-directory file goes through.

A file is written to a temporary sibling (unique per process, so two ranks or two runs never
share it) and renamed over the target, so a crash leaves either the old file or the new one,
never a half-written file, and a failed write leaves no temporary file behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


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
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
