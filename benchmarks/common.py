"""What the benchmark scripts share (run them from the repository root: ``python benchmarks/X.py``)."""

from __future__ import annotations

import json
import statistics
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def code_version() -> str:
    """The checkout's commit, with ``+changes`` when src/ differs from it (for a results row)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def kept_notes(path: Path) -> str:
    """The hand-written notes of a results file: from its line starting with "Notes" to the end ("" if none)."""
    old = path.read_text() if path.exists() else ""
    return old[old.index("\nNotes") + 1:] if "\nNotes" in old else ""


def load_rows(path: Path) -> list[dict]:
    """A benchmark's finished rows (one JSON object per line; none when the file is missing)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def save_rows(path: Path, rows: list[dict]) -> None:
    """All rows, written to a temporary file then moved over ``path`` (a kill leaves the old file whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
    tmp.replace(path)


def mean_std(values: list[float | None]) -> tuple[float, float] | None:
    """Mean and sample std of the values present (std 0 for one value); None when none is."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return statistics.mean(present), (statistics.stdev(present) if len(present) > 1 else 0.0)


def cell(values: list[float | None], scale: float = 100.0, digits: int = 1) -> str:
    """A table cell: ``mean ± std`` of the values present (scaled), the value alone for one, ``–`` for none."""
    s = mean_std(values)
    if s is None:
        return "–"
    if len([v for v in values if v is not None]) < 2:
        return f"{s[0] * scale:.{digits}f}"
    return f"{s[0] * scale:.{digits}f} ± {s[1] * scale:.{digits}f}"


def runnable(method: str, modality: str) -> str | None:
    """Why ``method`` cannot run on ``modality`` data in this checkout (None: it can)."""
    from selfsup.backbones.base import BACKBONES
    from selfsup.data.modalities import get_modality
    from selfsup.methods import METHODS as REGISTERED

    if method not in REGISTERED:
        return "not registered yet"
    cls = REGISTERED.get(method)
    if cls.modalities is not None and modality not in cls.modalities:
        return f"does not take {modality} data (modalities: {', '.join(sorted(cls.modalities))})"
    if "tokens" in cls.requires:
        token = get_modality(modality).token_backbone(None)
        if token is None or token[0] not in BACKBONES:
            return f"needs the {token[0] if token else 'token'} backbone, not registered yet"
    return None
