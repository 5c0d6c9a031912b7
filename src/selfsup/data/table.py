"""Tables: CSV, TSV and Parquet files with numeric and categorical columns (``table:PATH``).

A table is read whole into memory (pandas; Parquet through pyarrow, the ``[table]`` extra) and
encoded against a **schema**, the part of a run that says what each column is:

- numeric columns keep their values, ``NaN`` for a missing one;
- categorical columns become their category's index ``0 .. K-1`` in the column's vocabulary (the
  categories seen in the training file, sorted), ``NaN`` for a missing value and for a category
  the vocabulary does not hold (a new row at ``selfsup embed`` time: read as missing, with a
  warning naming the column, never a crash).

So every sample ``x`` is one float32 vector ``[F]`` (F = the feature columns, in file order), and
the table modality (:mod:`selfsup.data.modalities.table`) reads the schema to standardise the
numeric columns and hand the backbone category indices. The schema is a JSON-able dict (the
source's ``data_info``), stored in the run's checkpoint and in ``RUN_DIR/schema.json``; data read
for a trained run is encoded with the run's schema (``reference``), not a new one.

Column types are inferred: a column whose every present value is a number is numeric, any other
is categorical (text, booleans); ``data.numeric`` / ``data.categorical`` override the inference,
``data.ignore`` drops columns, ``data.id`` names the column whose values become the samples' ids,
``data.label`` the class label. Missing values: an empty cell, ``NA``, ``NaN``, ``null`` and
``?`` (the UCI convention). ``Name_TRAIN.csv`` with ``Name_TEST.csv`` beside it gives both splits.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from selfsup.data.base import ArrayDataset, DatasetSplits
from selfsup.data.timeseries import _sibling_test
from selfsup.errors import ConfigError, DataError

TABLE_EXTENSIONS: tuple[str, ...] = (".csv", ".tsv", ".parquet", ".pq")
MISSING_CELLS: tuple[str, ...] = ("", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "?")
SCHEMA_KIND = "table"
NUMERIC, CATEGORICAL = "numeric", "categorical"
# A column with this share of numbers among its present values, but not all, is a numeric column
# with a typo: an error naming the first bad row, rather than a silently categorical column.
MOSTLY_NUMERIC = 0.9


class TableSource(ArrayDataset):
    """An encoded table in memory: ``x [N, F]`` float32 (see the module docstring), labels when
    the table has a label column, the schema as ``data_info``; ``sample_id`` is the id column's
    value when there is one, else ``row N`` (1-based data row of the file)."""

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor | None, name: str, class_names: list[str] | None,
        schema: dict[str, Any], ids: list[str],
    ) -> None:
        super().__init__(x, y, name, "table", class_names)
        self.data_info = schema
        self.ids = ids

    def sample_id(self, index: int) -> str:
        return self.ids[int(index)]


def _read_frame(path: Path) -> Any:
    """The file as a pandas DataFrame of strings (CSV/TSV) or typed columns (Parquet)."""
    try:
        import pandas as pd
    except ImportError:
        raise ConfigError("reading tables needs pandas; install it with pip install 'selfsup[table]'") from None
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            import pyarrow  # noqa: F401  (pandas reads Parquet through it)
        except ImportError:
            raise ConfigError(
                f"reading {path.name} needs pyarrow; install it with pip install 'selfsup[table]'"
            ) from None
        try:
            return pd.read_parquet(path)
        except Exception as error:  # pyarrow raises its own types for a damaged file
            raise DataError(f"{path} is not a readable Parquet file ({str(error).splitlines()[0]})") from None
    sep = "\t" if suffix == ".tsv" else ","
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle, delimiter=sep), [])
        names = [c.strip() for c in header]
        duplicated = sorted({c for c in names if names.count(c) > 1})
        if duplicated:  # pandas would rename the second one silently
            raise DataError(f"{path} has two columns named {duplicated[0]!r}; give every column its own name")
        return pd.read_csv(
            path, sep=sep, dtype=str, keep_default_na=False, na_values=list(MISSING_CELLS), skipinitialspace=True,
            encoding="utf-8-sig",
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty; a table needs a header row and at least 2 data rows") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not a UTF-8 text file ({error}); save it as UTF-8 text") from None
    except pd.errors.ParserError as error:
        raise DataError(f"{path} is not a readable {suffix[1:].upper()} table ({str(error).strip()})") from None


def _as_numbers(values: Any) -> np.ndarray:
    """A column's cells as float64 (NaN where missing or not a number)."""
    import pandas as pd

    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _cells(values: Any) -> list[str | None]:
    """A column's cells as strings (None where missing), the form vocabularies are kept in."""
    out: list[str | None] = []
    for v in values.tolist():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(None)
        elif isinstance(v, float) and v.is_integer():
            out.append(str(int(v)))  # Parquet's 3.0 and a CSV's 3 are one category
        else:
            out.append(str(v).strip())
    return out


def _check_columns(path: Path, columns: list[str], names: Sequence[str], option: str) -> None:
    unknown = [n for n in names if n not in columns]
    if unknown:
        raise ConfigError(
            f"data.{option} names column {unknown[0]!r}, which {path.name} does not have (columns: {', '.join(columns)})"
        )


def _row(frame_index: int) -> str:
    return f"row {frame_index + 1}"


def infer_schema(
    frame: Any, path: Path, label: str | None, categorical: Sequence[str], numeric: Sequence[str],
    ignore: Sequence[str], id_column: str | None,
) -> dict[str, Any]:
    """The schema of a training table: each feature column's type and, for a categorical one,
    its vocabulary (sorted; numbers in numeric order), plus the label and id columns."""
    columns = [str(c) for c in frame.columns]
    for option, names in (("categorical", categorical), ("numeric", numeric), ("ignore", ignore)):
        _check_columns(path, columns, names, option)
    for option, name in (("label", label), ("id", id_column)):
        if name is not None and name not in columns:
            raise (DataError if option == "label" else ConfigError)(
                f"{option} column {name!r} is not in {path.name} (columns: {', '.join(columns)}); "
                f"name one of them with --set data.{option}=COLUMN"
            )
    both = sorted(set(categorical) & set(numeric))
    if both:
        raise ConfigError(f"column {both[0]!r} is in both data.categorical and data.numeric; keep it in one")
    skipped = set(ignore) | {label, id_column}
    features = [c for c in columns if c not in skipped]
    if not features:
        raise DataError(f"{path} has no feature columns left (label, id and ignored columns removed)")
    entries = []
    for name in features:
        values = frame[name]
        present = values.notna().to_numpy()
        if not present.any():
            raise DataError(
                f"column {name!r} of {path} has no values (every cell is missing); drop it with --set data.ignore=[{name}]"
            )
        numbers = _as_numbers(values)
        parsed = ~np.isnan(numbers) & present
        is_numeric = name in numeric or (name not in categorical and parsed.sum() >= MOSTLY_NUMERIC * present.sum())
        if is_numeric:
            bad = np.flatnonzero(present & ~parsed)
            if len(bad):
                cell = values.iloc[int(bad[0])]
                raise DataError(
                    f"column {name!r} of {path} is numeric, but {_row(int(bad[0]))} holds {cell!r}; fix the value, "
                    f"leave the cell empty for a missing value, or declare the column categorical with "
                    f"--set data.categorical=[{name}]"
                )
            entries.append({"name": name, "type": NUMERIC})
        else:
            cells = {c for c in _cells(values) if c is not None}
            entries.append({"name": name, "type": CATEGORICAL, "categories": _sorted_categories(cells)})
    return {"kind": SCHEMA_KIND, "columns": entries, "label": label, "id": id_column}


def _sorted_categories(cells: set[str]) -> list[str]:
    def key(c: str) -> tuple[int, float, str]:
        try:
            return (0, float(c), c)
        except ValueError:
            return (1, 0.0, c)

    return sorted(cells, key=key)


def encode_table(frame: Any, path: Path, schema: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    """The frame's feature columns as ``x [N, F]`` float32 under ``schema``; returns ``x`` and the
    sample ids. Categories outside a column's vocabulary are read as missing (one warning per column)."""
    columns = [str(c) for c in frame.columns]
    missing = [c["name"] for c in schema["columns"] if c["name"] not in columns]
    if missing:
        raise DataError(
            f"{path} has no column {missing[0]!r}, which the run was trained with (its columns: "
            f"{', '.join(c['name'] for c in schema['columns'])}); give the table every training column"
        )
    x = np.empty((len(frame), len(schema["columns"])), dtype=np.float32)
    for j, column in enumerate(schema["columns"]):
        name = column["name"]
        values = frame[name]
        if column["type"] == NUMERIC:
            numbers = _as_numbers(values)
            bad = np.flatnonzero(values.notna().to_numpy() & np.isnan(numbers))
            if len(bad):
                raise DataError(
                    f"column {name!r} of {path} is numeric, but {_row(int(bad[0]))} holds {values.iloc[int(bad[0])]!r}; "
                    "fix the value or leave the cell empty for a missing value"
                )
            if np.isinf(numbers).any():
                row = int(np.flatnonzero(np.isinf(numbers))[0])
                raise DataError(f"column {name!r} of {path}, {_row(row)}: {numbers[row]} is not a finite number")
            x[:, j] = numbers
        else:
            index = {c: i for i, c in enumerate(column["categories"])}
            cells = _cells(values)
            unseen = sorted({c for c in cells if c is not None and c not in index})
            if unseen:
                warnings.warn(
                    f"column {name!r} of {path} holds {len(unseen)} categor{'y' if len(unseen) == 1 else 'ies'} the "
                    f"run was not trained on ({', '.join(repr(u) for u in unseen[:3])}{', ...' if len(unseen) > 3 else ''}); "
                    "read as missing values",
                    stacklevel=3,
                )
            x[:, j] = [index.get(c, math.nan) if c is not None else math.nan for c in cells]
    id_column = schema.get("id")
    if id_column is not None and id_column in columns:
        ids = [c if c is not None else _row(i) for i, c in enumerate(_cells(frame[id_column]))]
    else:
        ids = [_row(i) for i in range(len(frame))]
    return x, ids


def _labels(frame: Any, path: Path, label: str, classes: list[str] | None) -> tuple[torch.Tensor, list[str]]:
    cells = _cells(frame[label])
    empty = [i for i, c in enumerate(cells) if c is None]
    if empty:
        raise DataError(
            f"{path}, {_row(empty[0])}: the label (column {label!r}) is empty; give every row a label, or drop "
            "those rows"
        )
    names = classes if classes is not None else _sorted_categories(set(cells))  # type: ignore[arg-type]
    index = {c: i for i, c in enumerate(names)}
    unknown = sorted({c for c in cells if c not in index})  # type: ignore[misc]
    if unknown:
        raise DataError(
            f"{path} has label {unknown[0]!r} in column {label!r}, which the training table does not have "
            f"(classes: {', '.join(names[:10])}{', ...' if len(names) > 10 else ''})"
        )
    return torch.tensor([index[c] for c in cells], dtype=torch.int64), list(names)  # type: ignore[index]


def load_table(
    path: str | os.PathLike[str], label: str | None = None, categorical: Sequence[str] = (),
    numeric: Sequence[str] = (), ignore: Sequence[str] = (), id_column: str | None = None,
    reference: dict[str, Any] | None = None,
) -> DatasetSplits:
    """A CSV/TSV/Parquet table as :class:`TableSource` splits (see the module docstring).

    ``reference``: the schema of a trained run; the table is encoded with it (its columns by
    name, its vocabularies) and its label column, unless ``label`` names another. Without it the
    schema is inferred from the training file (``Name_TRAIN.csv``; ``Name_TEST.csv`` beside it is
    the test split, encoded with the same schema).
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{p} does not exist (looked for {p.absolute()}); pass a .csv, .tsv or .parquet table")
    if p.is_dir():
        raise DataError(f"{p} is a directory; pass a .csv, .tsv or .parquet table file")
    if p.suffix.lower() not in TABLE_EXTENSIONS:
        raise DataError(f"{p} is not a .csv, .tsv or .parquet file; pass a table in one of those formats")
    test_path = _sibling_test(p)
    frame = _read_frame(p)
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(frame) < 2:
        raise DataError(
            f"{p} has {len(frame)} data row{'s' if len(frame) != 1 else ''}; self-supervised training needs at least 2 "
            "(one sample per row, below a header row naming the columns)"
        )
    duplicated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if duplicated:
        raise DataError(f"{p} has two columns named {duplicated[0]!r}; give every column its own name")
    if reference is not None:
        schema = dict(reference)
        if label is not None:
            schema["label"] = label
        if schema.get("label") is not None and schema["label"] not in frame.columns:
            schema["label"] = None  # new rows without labels: embedding needs none
    else:
        schema = infer_schema(frame, p, label, categorical, numeric, ignore, id_column)
    x, ids = encode_table(frame, p, schema)
    y, classes = (None, None)
    if schema.get("label") is not None:
        y, classes = _labels(frame, p, schema["label"], schema.get("classes"))
        schema = {**schema, "classes": classes}
    train = TableSource(torch.from_numpy(x), y, str(p), classes, schema, ids)
    test = None
    if test_path is not None:
        test_frame = _read_frame(test_path)
        test_frame.columns = [str(c).strip() for c in test_frame.columns]
        tx, tids = encode_table(test_frame, test_path, schema)
        ty = None
        if schema.get("label") is not None:
            if schema["label"] not in test_frame.columns:
                raise DataError(f"{p} has the label column {schema['label']!r} but {test_path} has none; give labels in both files")
            ty, _ = _labels(test_frame, test_path, schema["label"], classes)
        test = TableSource(torch.from_numpy(tx), ty, str(test_path), classes, schema, tids)
    return DatasetSplits(train=train, test=test)


def categorical_columns(schema: dict[str, Any] | None) -> list[int]:
    """Indices of the schema's categorical columns."""
    if not schema:
        return []
    return [j for j, c in enumerate(schema["columns"]) if c["type"] == CATEGORICAL]


def cardinalities(schema: dict[str, Any] | None, num_features: int) -> list[int]:
    """Per feature column: its number of categories (categorical), 0 (numeric). Without a schema
    every column is numeric."""
    if not schema:
        return [0] * num_features
    return [len(c["categories"]) if c["type"] == CATEGORICAL else 0 for c in schema["columns"]]


__all__ = [
    "TableSource", "TABLE_EXTENSIONS", "load_table", "infer_schema", "encode_table", "categorical_columns",
    "cardinalities", "NUMERIC", "CATEGORICAL",
]
