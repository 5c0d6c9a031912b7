"""A lock on a run directory, so a second process never trains or evaluates a live run.

The lock is an advisory ``flock`` on ``RUN_DIR/.lock``: the kernel releases it when its process
ends, however it ends (``kill -9`` included), so a lock is never left stale. The file holds who
took it (process id, host, command, time), for the message a second process gets. Under
multi-process training only rank 0 takes it (the other ranks are its children).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

from selfsup.errors import RunLockedError

try:  # POSIX; on Windows the lock is not taken (a documented limitation)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"


def is_secondary_rank() -> bool:
    """Whether this process is a non-zero rank of a multi-process launch (torchrun, Lightning, SLURM)."""
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        value = os.environ.get(name)
        if value not in (None, "", "0"):
            return True
    return False


class RunLock:
    """``with RunLock(run_dir, "selfsup pretrain"):`` holds ``run_dir`` for this process.

    Raises :class:`~selfsup.errors.RunLockedError` (one line: who holds it, since when, what to
    do) when another live process holds it. ``run_dir`` must exist.
    """

    def __init__(self, run_dir: str | Path, what: str) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.what = what
        self._handle: int | None = None

    def acquire(self) -> "RunLock":
        if fcntl is None or is_secondary_rank():
            return self
        handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _describe(os.read(handle, 4096))
            os.close(handle)
            raise RunLockedError(
                f"{self.path.parent} is in use by {holder}; wait for it to end, or stop it, before {self.what}"
            ) from None
        os.ftruncate(handle, 0)
        record = {
            "pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv) or self.what,
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.write(handle, json.dumps(record).encode())
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            try:
                os.ftruncate(self._handle, 0)
            finally:
                os.close(self._handle)  # closing releases the flock
                self._handle = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, kind: type | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def _describe(raw: bytes) -> str:
    try:
        record = json.loads(raw.decode())
        return f"process {record['pid']} on {record['host']} ({record['command']}, since {record['since']})"
    except (ValueError, KeyError, UnicodeDecodeError):
        return "another process"
