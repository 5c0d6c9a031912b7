"""Leave samples out of the training split: ``data.exclude`` (``selfsup pretrain --exclude FILE.csv``).

The file is a CSV with a header and an ``id`` column of sample ids, as the sources name their
samples (``source.sample_id(i)``: the index in the dataset's training split for arrays and
built-ins, the file path for image folders); ``selfsup scan`` writes such a file. When the file
has a ``flagged`` column, only the rows flagged ``1`` (or ``true``/``yes``) are left out, so a
scan's ``scan.csv`` can be passed as it is; otherwise every listed id is. Every problem is one
:class:`~selfsup.errors.DataError` line naming the file, the row and the fix.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from selfsup.data.base import SampleSource
from selfsup.errors import DataError

ID_COLUMN = "id"
FLAG_COLUMN = "flagged"
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no", ""}


def read_excluded_ids(path: str | Path) -> list[str]:
    """The ids to leave out, in file order: the ``flagged`` rows, or every row without that column."""
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise DataError(f"exclude file {path} {what}; pass a CSV with an '{ID_COLUMN}' column (selfsup scan writes one)")
    try:
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
    except (UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"exclude file {path} is not a readable CSV ({error}); pass the scan.csv that selfsup scan wrote") from None
    if not rows:
        raise DataError(f"exclude file {path} is empty; it needs a header with an '{ID_COLUMN}' column")
    header = [name.strip() for name in rows[0]]
    if ID_COLUMN not in header:
        raise DataError(
            f"exclude file {path} has no '{ID_COLUMN}' column (columns: {', '.join(header) or 'none'}); "
            f"name the column of sample ids '{ID_COLUMN}'"
        )
    id_at = header.index(ID_COLUMN)
    flag_at = header.index(FLAG_COLUMN) if FLAG_COLUMN in header else None
    ids: list[str] = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        if len(row) <= max(id_at, flag_at or 0):
            raise DataError(f"exclude file {path}, line {line}: {len(row)} value(s) where the header has {len(header)}")
        if flag_at is not None:
            flag = row[flag_at].strip().lower()
            if flag not in _TRUE | _FALSE:
                raise DataError(f"exclude file {path}, line {line}: flagged is {row[flag_at]!r}; write 1 or 0")
            if flag not in _TRUE:
                continue
        ids.append(row[id_at].strip())
    return ids


def exclude_samples(source: SampleSource, path: str | Path, data_name: str | None = None) -> SampleSource:
    """``source`` without the samples :func:`read_excluded_ids` lists (a subset, in order)."""
    ids = read_excluded_ids(path)
    position = {source.sample_id(i): i for i in range(len(source))}
    unknown = [i for i in ids if i not in position]
    if unknown:
        where = data_name or source.name
        raise DataError(
            f"exclude file {path}: sample id {unknown[0]!r} is not in the training split of {where} "
            f"({len(unknown)} such id(s); ids are sample indices in the dataset, or file paths for image folders); "
            "was the file made from other data?"
        )
    drop = {position[i] for i in ids}
    if len(drop) >= len(source):
        raise DataError(f"exclude file {path} leaves out all {len(source)} training samples; nothing would be left to train on")
    keep = torch.tensor([i for i in range(len(source)) if i not in drop], dtype=torch.int64)
    return source.subset(keep)
