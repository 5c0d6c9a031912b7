"""The run's CSV log, ``RUN_DIR/logs/metrics.csv``: append-only across sessions.

Lightning's CSVLogger rewrites its file from the rows of the current session (a resume loses
the rows written before it). This log only adds rows: each session (a start or a resume) has
its own ``session`` number, so the steps an interrupted session ran after its last checkpoint
stay in the file, told apart from the resumed session's rows by that column. The header grows
when a session logs a new column (the file is then rewritten atomically with every old row).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from selfsup.core.io import write_atomic

LOG_FILE = "logs/metrics.csv"


class AppendingCSVLogger(Logger):
    """Rows ``session, step, <metric>...`` appended to ``RUN_DIR/logs/metrics.csv``.

    Rows are buffered and written every ``flush_every`` rows, at every checkpoint and at the
    end, so a crash loses at most the rows since the last of these.
    """

    def __init__(self, run_dir: str | Path, flush_every: int = 50) -> None:
        super().__init__()
        self.path = Path(run_dir) / LOG_FILE
        self.flush_every = flush_every
        self._rows: list[dict[str, Any]] = []
        self._session: int | None = None

    @property
    def name(self) -> str:
        return "logs"

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return str(self.path.parent.parent)

    @property
    def log_dir(self) -> str:
        return str(self.path.parent)

    @property
    def session(self) -> int:
        """This session's number: one more than the highest in the file (1 for a new run)."""
        if self._session is None:
            sessions = [int(row["session"]) for row in self._read()[1] if str(row.get("session", "")).isdigit()]
            self._session = max(sessions, default=0) + 1
        return self._session

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass  # the run's config.yaml holds them

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        row = {"session": self.session, "step": step}
        row.update({k: float(v) if hasattr(v, "item") else v for k, v in metrics.items()})
        self._rows.append(row)
        if len(self._rows) >= self.flush_every:
            self.save()

    @rank_zero_only
    def save(self) -> None:
        if not self._rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header = self._header()
        new_keys = [key for row in self._rows for key in row if key not in header]
        if not new_keys and header:
            with open(self.path, "a", newline="") as handle:
                csv.DictWriter(handle, header).writerows(self._rows)
        else:  # a new column: rewrite every old row under the longer header, atomically
            header, old_rows = self._read()
            header = header + list(dict.fromkeys(new_keys))
            text = io.StringIO()
            writer = csv.DictWriter(text, header)
            writer.writeheader()
            writer.writerows(old_rows + self._rows)
            write_atomic(self.path, text.getvalue())
        self._rows = []

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()

    def _header(self) -> list[str]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as handle:
            return next(csv.reader(handle), [])

    def _read(self) -> tuple[list[str], list[dict[str, Any]]]:
        if not self.path.is_file():
            return [], []
        with open(self.path, newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            return list(reader.fieldnames or []), rows
