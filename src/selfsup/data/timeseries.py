"""Time series: the UCR/UEA datasets that ship with ``aeon``, ``.ts`` / ``.csv`` / ``.tsv`` files and arrays.

Every loader returns a :class:`DatasetSplits` of :class:`ArrayDataset` with ``modality="timeseries"``
and ``x`` float32 ``[N, C, T]`` (univariate series have ``C = 1``). NaN marks a missing value.
Series of unequal length are padded AT THE END with NaN to the longest series of the train and
test splits together, so both splits share one ``T``; :func:`observed_mask` gives the
``[N, T]`` mask of observed timestamps back, :func:`fill_missing` replaces the NaNs. Infinite
values, series with no observed timestamp and ragged (unpadded) arrays are a :class:`DataError`
that names the file, line or index and the fix.

Values are not normalised here: the run's encoder standardises each channel with the train
split's NaN-aware mean and standard deviation, the protocol of TS2Vec (Yue et al., 2022,
"TS2Vec: Towards Universal Representation of Time Series", arXiv 2106.10466).

Sources (see :func:`load_series` for the file formats):

- ``load_ucr("GunPoint")``: seven datasets of the UCR archive (Dau et al., 2019, "The UCR Time
  Series Archive", arXiv 1810.07758) and the UEA archive (Bagnall et al., 2018, "The UEA
  multivariate time series classification archive, 2018", arXiv 1811.00075) that ship inside the
  ``aeon`` package (Middlehurst et al., 2024, "aeon: a Python toolkit for learning from time
  series", arXiv 2406.14231), read with aeon's own ``.ts`` reader from its package folder with
  their official train/test splits. Nothing is downloaded. Needs ``pip install "selfsup[timeseries]"``.
- ``.ts`` files (the UCR/UEA format, read with aeon), ``.csv`` and ``.tsv`` files (read here, no
  aeon needed), ``.npy`` / ``.npz`` arrays of series.

Labels become ``0..K-1`` in the sorted order of the class values (numerically when every class
value is a number), and ``class_names`` keeps the original values as strings.
"""

from __future__ import annotations

import csv
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from selfsup.data.base import ArrayDataset, DatasetSplits
from selfsup.data.files import _open_arrays
from selfsup.errors import ConfigError, DataError

MODALITY = "timeseries"

#: The UCR/UEA datasets that ship inside ``aeon`` (name -> archive), each with official train/test files.
SHIPPED_DATASETS: dict[str, str] = {
    "GunPoint": "UCR",
    "ItalyPowerDemand": "UCR",
    "ArrowHead": "UCR",
    "OSULeaf": "UCR",
    "ACSF1": "UCR",
    "BasicMotions": "UEA",
    "JapaneseVowels": "UEA",
}

#: File suffixes read as series by :func:`load_series` (``.npy``/``.npz`` only through ``series:PATH``).
SERIES_FILE_EXTENSIONS: tuple[str, ...] = (".ts", ".csv", ".tsv")
SERIES_ARRAY_EXTENSIONS: tuple[str, ...] = (".npy", ".npz")

INSTALL_HINT = 'pip install "selfsup[timeseries]"'  # brings aeon, which reads .ts files
LABEL_HEADERS: tuple[str, ...] = ("label", "class", "target", "y")  # CSV header names of the label column
_MISSING_CELLS = frozenset({"", "nan", "?", "na", "null"})  # CSV/TSV cells read as a missing value
_SERIES_FORMS = (
    "a .ts file (UCR/UEA format), a .csv file (one series per row; a header column named "
    f"{'/'.join(LABEL_HEADERS)} holds labels), a .tsv file (UCR archive layout: label first, "
    "no header), or a .npy/.npz array [N, T] or [N, C, T] (npz keys x/y or x_train/y_train/x_test/y_test)"
)


# ----------------------------------------------------------------------------------------------
# Missing values
# ----------------------------------------------------------------------------------------------


def observed_mask(x: torch.Tensor) -> torch.Tensor:
    """Observed timestamps: ``x`` ``[N, C, T]`` (or one series ``[C, T]``) -> bool ``[N, T]`` (``[T]``).

    A timestamp is observed (True) when every channel has a value there; NaN in any channel
    (a missing value, or the padding after a shorter series) makes it False.
    """
    if x.dim() < 2:
        raise DataError(f"observed_mask expects series [N, C, T] or [C, T], got shape {tuple(x.shape)}")
    return ~torch.isnan(x).any(dim=-2)


def fill_missing(x: torch.Tensor, value: float = 0.0) -> torch.Tensor:
    """``x`` (any shape, e.g. ``[N, C, T]``) with every NaN replaced by ``value``; a new tensor."""
    return x.masked_fill(torch.isnan(x), value)


def pad_series(series: Sequence[Any], length: int | None = None, where: str = "series") -> np.ndarray:
    """Stack series of unequal length into float32 ``[N, C, T]``, padded at the end with NaN.

    Args:
        series: ``N`` arrays, each ``[C, T_i]`` (or ``[T_i]`` for a univariate series), all with the same ``C``.
        length: ``T`` of the result (at least the longest ``T_i``); default the longest ``T_i``.
        where: what the series are, for error messages.
    """
    arrays: list[np.ndarray] = []
    for i, s in enumerate(series):
        a = s.detach().cpu().numpy() if isinstance(s, torch.Tensor) else np.asarray(s)
        if a.dtype == object or a.dtype.kind not in "biuf":
            raise DataError(f"{where}: series {i} has dtype {a.dtype}; every series must be numeric")
        if a.ndim == 1:
            a = a[None, :]
        if a.ndim != 2:
            raise DataError(f"{where}: series {i} has shape {tuple(a.shape)}; each series must be [C, T] or [T]")
        arrays.append(a)
    if not arrays:
        raise DataError(f"{where} holds no series")
    channels = {a.shape[0] for a in arrays}
    if len(channels) > 1:
        first = next(i for i, a in enumerate(arrays) if a.shape[0] != arrays[0].shape[0])
        raise DataError(
            f"{where}: series 0 has {arrays[0].shape[0]} channel(s) but series {first} has {arrays[first].shape[0]}; "
            f"every series must have the same channels"
        )
    longest = max(a.shape[1] for a in arrays)
    T = longest if length is None else length
    if T < longest:
        raise DataError(f"{where}: cannot pad to length {T}, the longest series has {longest} timestamps")
    out = np.full((len(arrays), arrays[0].shape[0], T), np.nan, dtype=np.float32)
    for i, a in enumerate(arrays):
        out[i, :, : a.shape[1]] = a
    return out


# ----------------------------------------------------------------------------------------------
# Validation and labels, shared by every loader
# ----------------------------------------------------------------------------------------------


def _check_series(x: np.ndarray, where: str, row_name: Callable[[int], str] | None = None) -> torch.Tensor:
    """Validate float ``[N, C, T]``: no inf, every series observed at least once; returns a float32 tensor."""
    name = row_name or (lambda i: f"series {i} (index {i})")
    if x.ndim != 3:
        raise DataError(f"{where} has shape {tuple(x.shape)}; series must be [N, T] or [N, C, T]")
    N, C, T = x.shape
    if N == 0 or C == 0 or T == 0:
        raise DataError(f"{where} holds no data (shape [N, C, T] = {tuple(x.shape)})")
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(x, dtype=np.float32)
    infinite = np.isinf(out)
    if infinite.any():
        i, c, t = (int(v) for v in np.argwhere(infinite)[0])
        big = " (or a value too large for float32)" if np.isfinite(x[i, c, t]) else ""
        raise DataError(
            f"{where}: {name(i)} has an infinite value{big} at channel {c}, timestamp {t} "
            f"({int(infinite.reshape(N, -1).any(axis=1).sum())} series affected); replace it with a finite "
            f"value, or with NaN to mark it missing"
        )
    observed = ~np.isnan(out).any(axis=1)  # [N, T]
    empty = np.flatnonzero(~observed.any(axis=1))
    if len(empty):
        i = int(empty[0])
        channel_all_nan = np.flatnonzero(np.isnan(out[i]).all(axis=1))
        why = "every value is NaN" if len(channel_all_nan) == C else (
            f"channel {int(channel_all_nan[0])} is all NaN" if len(channel_all_nan)
            else "no timestamp has a value in every channel"
        )
        raise DataError(
            f"{where}: {name(i)} has no observed timestamp ({why}; {len(empty)} such series); "
            f"remove it or fill its missing values"
        )
    return torch.from_numpy(out)


def _sort_key(values: Iterable[str]) -> Callable[[str], Any]:
    """Numeric order when every value is a number, else string order."""
    try:
        for v in values:
            float(v)
    except ValueError:
        return lambda v: v
    return lambda v: float(v)


def _canonical(value: Any) -> str:
    """A label as a string: ``3`` for 3, 3.0 and "3.0"; other strings unchanged (stripped)."""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if math.isfinite(number) and number == int(number) else text


def _encode_labels(
    train: Sequence[Any] | None, test: Sequence[Any] | None, where_train: str, where_test: str = "",
    has_test: bool = False,
) -> tuple[torch.Tensor | None, torch.Tensor | None, list[str] | None]:
    """Labels of the train (and test) split as int64 ``0..K-1`` in sorted class order, plus the class names."""
    if train is None:
        if test is not None:
            raise DataError(f"{where_test} has labels but {where_train} has none; give labels for both or neither")
        return None, None, None
    if test is None and has_test:
        raise DataError(f"{where_train} has labels but {where_test} has none; give labels for both or neither")
    train_s = [_canonical(v) for v in train]
    classes = set(train_s)
    names = sorted(classes, key=_sort_key(classes))
    index = {n: i for i, n in enumerate(names)}
    y_train = torch.tensor([index[v] for v in train_s], dtype=torch.int64)
    if test is None:
        return y_train, None, names
    test_s = [_canonical(v) for v in test]
    unknown = sorted(set(test_s) - set(index))
    if unknown:
        raise DataError(
            f"{where_test} has label(s) {', '.join(unknown[:10])} that never occur in {where_train}; "
            f"train and test must use the same classes"
        )
    return y_train, torch.tensor([index[v] for v in test_s], dtype=torch.int64), names


def _splits(
    name: str, train_x: np.ndarray, test_x: np.ndarray | None, train_y: Sequence[Any] | None,
    test_y: Sequence[Any] | None, where_train: str, where_test: str,
    row_names: tuple[Callable[[int], str] | None, Callable[[int], str] | None] = (None, None),
) -> DatasetSplits:
    """Pad both splits to one length, validate them, encode labels; ``[N, C, T]`` float arrays in."""
    if test_x is not None:
        if test_x.shape[1] != train_x.shape[1]:
            raise DataError(
                f"{where_train} has {train_x.shape[1]} channel(s) but {where_test} has {test_x.shape[1]}; "
                f"train and test series must have the same channels"
            )
        T = max(train_x.shape[2], test_x.shape[2])  # one length for both splits: pad the shorter at the end
        train_x, test_x = (_pad_to(a, T) for a in (train_x, test_x))
    x_train = _check_series(train_x, where_train, row_names[0])
    x_test = None if test_x is None else _check_series(test_x, where_test, row_names[1])
    y_train, y_test, class_names = _encode_labels(train_y, test_y, where_train, where_test, has_test=test_x is not None)
    train = ArrayDataset(x=x_train, y=y_train, name=name, modality=MODALITY, class_names=class_names)
    test = None if x_test is None else ArrayDataset(
        x=x_test, y=y_test, name=name, modality=MODALITY, class_names=None if class_names is None else list(class_names)
    )
    return DatasetSplits(train=train, test=test)


def _pad_to(x: np.ndarray, T: int) -> np.ndarray:
    if x.shape[2] == T:
        return x
    out = np.full(x.shape[:2] + (T,), np.nan, dtype=np.float32)
    out[:, :, : x.shape[2]] = x
    return out


def series_dataset(
    x: Any, y: Any = None, name: str = "series", class_names: list[str] | None = None,
) -> ArrayDataset:
    """Validate series held in memory and wrap them as an :class:`ArrayDataset` (``modality="timeseries"``).

    Args:
        x: ``[N, T]`` or ``[N, C, T]`` numbers (NumPy array, tensor or nested lists), NaN = missing.
            Series of unequal length must be padded at the end with NaN first (:func:`pad_series`).
        y: optional labels ``[N]`` (any values; mapped to ``0..K-1`` in sorted order unless
            ``class_names`` is given, in which case ``y`` must already be ``0..K-1`` integers).
    """
    if isinstance(x, torch.Tensor):
        arr = x.detach().cpu().numpy()
    else:
        try:
            arr = np.asarray(x)
        except ValueError as err:  # numpy >= 1.24 refuses ragged nested lists
            raise DataError(
                f"{name} is ragged (series of unequal length: {err}); pad every series at the end with NaN to the "
                f"longest one, e.g. with selfsup.data.timeseries.pad_series(list_of_series)"
            ) from err
    if arr.dtype == object:
        raise DataError(
            f"{name} is a ragged (object) array; pad every series at the end with NaN to the longest one, "
            f"e.g. with selfsup.data.timeseries.pad_series(list_of_series)"
        )
    arr = _as_3d(arr, name)
    xt = _check_series(arr, name)
    if y is None:
        return ArrayDataset(x=xt, y=None, name=name, modality=MODALITY, class_names=class_names)
    labels = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if labels.ndim != 1 or len(labels) != len(xt):
        raise DataError(f"{name}: labels have shape {tuple(labels.shape)}; expected one label per series, [{len(xt)}]")
    if class_names is not None:
        if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= len(class_names):
            raise DataError(f"{name}: with class_names given, labels must be integers in 0..{len(class_names) - 1}")
        return ArrayDataset(x=xt, y=torch.as_tensor(labels, dtype=torch.int64), name=name, modality=MODALITY,
                            class_names=list(class_names))
    y_enc, _, names = _encode_labels(list(labels), None, name)
    return ArrayDataset(x=xt, y=y_enc, name=name, modality=MODALITY, class_names=names)


def _as_3d(arr: np.ndarray, where: str) -> np.ndarray:
    """``[N, T]`` -> ``[N, 1, T]``; ``[N, C, T]`` unchanged; numeric check."""
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{where} has dtype {arr.dtype}; series must be numbers (float or integer), NaN for missing")
    if arr.ndim == 2:
        return arr[:, None, :]
    if arr.ndim == 3:
        return arr
    hint = " (one series: save it as [1, T])" if arr.ndim == 1 else ""
    raise DataError(f"{where} has shape {tuple(arr.shape)}; series must be [N, T] (univariate) or [N, C, T]{hint}")


# ----------------------------------------------------------------------------------------------
# aeon's shipped UCR/UEA datasets
# ----------------------------------------------------------------------------------------------


def list_timeseries_datasets() -> list[str]:
    """Specs of the shipped time-series datasets, e.g. ``"ucr:GunPoint"`` (``uea:`` for the multivariate ones)."""
    return [f"{archive.lower()}:{name}" for name, archive in SHIPPED_DATASETS.items()]


def _aeon_datasets() -> Any:
    try:
        import aeon.datasets as aeon_datasets
    except ImportError as err:
        raise ConfigError(
            f"reading UCR/UEA .ts data needs the aeon package, which is not installed ({err}); "
            f"install it with: {INSTALL_HINT}"
        ) from err
    return aeon_datasets


def _shipped_names_text() -> str:
    return ", ".join(SHIPPED_DATASETS)


def load_ucr(name: str) -> DatasetSplits:
    """One of aeon's shipped UCR/UEA datasets by name, with its official train/test split.

    ``name`` is one of :data:`SHIPPED_DATASETS` (any case): GunPoint ``[50 | 150, 1, 150]``, 2
    classes; ItalyPowerDemand ``[67 | 1029, 1, 24]``; ArrowHead ``[36 | 175, 1, 251]``; OSULeaf
    ``[200 | 242, 1, 427]``; ACSF1 ``[100 | 100, 1, 1460]``; BasicMotions ``[40 | 40, 6, 100]``;
    JapaneseVowels ``[270 | 370, 12, 29]`` (lengths 7..29, NaN-padded at the end). Read from
    ``aeon/datasets/data/<Name>/<Name>_TRAIN.ts`` and ``_TEST.ts`` inside the installed package;
    nothing is downloaded. Any other UCR/UEA dataset can be loaded from its ``.ts`` files with
    :func:`load_ts` (``--data PATH/Name_TRAIN.ts``).
    """
    key = name.strip()
    matches = [n for n in SHIPPED_DATASETS if n.lower() == key.lower()]
    if not matches:
        import difflib

        close = difflib.get_close_matches(key.lower(), [n.lower() for n in SHIPPED_DATASETS], n=1)
        hint = ""
        if close:
            hint = f" Did you mean {next(n for n in SHIPPED_DATASETS if n.lower() == close[0])!r}?"
        raise ConfigError(
            f"unknown UCR/UEA dataset {key!r}.{hint} The datasets shipped with aeon (no download) are: "
            f"{_shipped_names_text()}. Any other UCR/UEA dataset can be loaded from its .ts files: "
            f"--data PATH/<Name>_TRAIN.ts (the _TEST.ts file beside it becomes the test split)"
        )
    canonical = matches[0]
    folder = Path(_aeon_datasets().__file__).parent / "data" / canonical
    train_file = folder / f"{canonical}_TRAIN.ts"
    if not train_file.is_file() or not (folder / f"{canonical}_TEST.ts").is_file():
        raise DataError(
            f"{folder} lacks {canonical}_TRAIN.ts / {canonical}_TEST.ts; the installed aeon does not ship "
            f"{canonical}. Reinstall aeon ({INSTALL_HINT}), or load the dataset from its .ts files with a path"
        )
    splits = load_ts(train_file)
    for part in (splits.train, splits.test):
        if part is not None:
            part.name = canonical
    return splits


# ----------------------------------------------------------------------------------------------
# Train/test sibling files
# ----------------------------------------------------------------------------------------------


def _sibling_test(path: Path) -> Path | None:
    """``Name_TRAIN.ext`` -> ``Name_TEST.ext`` beside it when that file exists (either case of TRAIN)."""
    match = re.search(r"_(train)$", path.stem, flags=re.IGNORECASE)
    if not match:
        if re.search(r"_test$", path.stem, flags=re.IGNORECASE):
            warnings.warn(
                f"{path} looks like a test split; it is loaded as the training data. Pass the matching "
                f"_TRAIN file to get both splits",
                stacklevel=4,
            )
        return None
    word = match.group(1)
    test_word = "TEST" if word.isupper() else ("test" if word.islower() else "Test")
    candidate = path.with_name(path.stem[: match.start(1)] + test_word + path.suffix)
    return candidate if candidate.is_file() else None


# ----------------------------------------------------------------------------------------------
# .ts files (UCR/UEA format), read with aeon
# ----------------------------------------------------------------------------------------------


def _data_lines(path: Path) -> tuple[int, list[str]] | None:
    """``(line number of @data, lines after it)`` or ``None`` when the file has no ``@data`` line."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for i, line in enumerate(lines):
        if line.strip().lower() == "@data":
            return i + 1, lines[i + 1:]
    return None


def _locate_ts_error(path: Path, message: str) -> tuple[str, bool]:
    """``(", line L", line L is blank)`` for an aeon error message, when the culprit line can be found."""
    found = _data_lines(path)
    if found is None:
        return "", False
    at, lines = found
    index: int | None = None
    case = re.search(r"\bcase (\d+)", message)
    bad = re.search(r"could not convert string to float: '(.*)'", message)
    if case:  # aeon counts the lines after @data from 1
        index = int(case.group(1)) - 1
    elif bad:
        token = bad.group(1)
        index = next((j for j, line in enumerate(lines)
                      if token in [c.strip() for c in re.split(r"[:,]", line.strip().lower())]), None)
    if index is None or index >= len(lines):
        return "", False
    return f", line {at + 1 + index}", not lines[index].strip()


def _read_ts(path: Path) -> tuple[list[np.ndarray] | np.ndarray, np.ndarray | None]:
    """Series and labels of one ``.ts`` file through aeon's reader; errors name the file and line."""
    aeon_datasets = _aeon_datasets()
    if _data_lines(path) is None:
        raise DataError(
            f"{path} has no '@data' line; a .ts file is a header (@problemName, @univariate, @equalLength, "
            f"@classLabel, ...) then '@data' and one series per line (channels separated by ':', values by ',', "
            f"the class label last)"
        )
    try:
        data, y, meta = aeon_datasets.load_from_ts_file(str(path), return_meta_data=True)
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not a UTF-8 text file ({err}); a .ts file is text") from err
    except (OSError, ValueError, IndexError, TypeError) as err:
        message = re.sub(r"^Error loading <[^>]*>\.\s*", "", str(err).strip()) or type(err).__name__
        line, blank = _locate_ts_error(path, message)
        hint = ""
        if blank:
            hint = "; that line is blank: remove it"
        elif "different number of observations" in message or "inhomogeneous" in message:
            hint = "; if the series have unequal lengths, set '@equalLength false' in the header"
        raise DataError(
            f"{path}{line}: not a readable .ts file ({message}){hint}; each line after @data is one series: "
            f"channels separated by ':', values by ',', '?' or NaN for a missing value, the class label last"
        ) from err
    if len(data) == 0:
        raise DataError(f"{path} holds no series after its @data line")
    labels: np.ndarray | None = None
    if meta.get("targetlabel"):
        warnings.warn(f"{path} has regression targets (@targetLabel true); they are ignored, the series are "
                      f"loaded without labels", stacklevel=4)
    elif meta.get("classlabel") and len(y):
        labels = np.asarray(y)
        declared = set(meta.get("class_values") or [])
        undeclared = [i for i, v in enumerate(labels) if declared and str(v).strip() not in declared]
        if undeclared:
            i = undeclared[0]
            at = _data_lines(path)[0]  # type: ignore[index]  # aeon read every line after @data as one series
            raise DataError(
                f"{path}, line {at + 1 + i}: class label {str(labels[i])!r} is not among the values the header "
                f"declares (@classLabel true {' '.join(meta['class_values'])}); fix the label or add it to the header"
            )
    return data, labels


def load_ts(path: str | os.PathLike[str]) -> DatasetSplits:
    """A UCR/UEA ``.ts`` file, read with aeon's reader (``pip install "selfsup[timeseries]"``).

    ``Name_TRAIN.ts`` with a ``Name_TEST.ts`` beside it gives both splits; any other file gives a
    train split only. Unequal lengths (``@equalLength false``) are padded at the end with NaN to
    the longest series of both splits; ``?`` and ``NaN`` are missing values. Class labels (the
    value after the last ``:`` of each line) become ``0..K-1``; regression targets are dropped
    with a warning. Returns ``x`` float32 ``[N, C, T]``.
    """
    p = _existing_file(path, (".ts",))
    files = {"train": p}
    test = _sibling_test(p)
    if test is not None:
        files["test"] = test
    read = {split: _read_ts(f) for split, f in files.items()}
    xs = {split: _ts_array(data, files[split]) for split, (data, _) in read.items()}
    return _splits(
        str(p), xs["train"], xs.get("test"), read["train"][1], read["test"][1] if "test" in read else None,
        str(p), str(files.get("test", "")),
    )


def _ts_array(data: list[np.ndarray] | np.ndarray, path: Path) -> np.ndarray:
    if isinstance(data, np.ndarray) and data.ndim == 3:
        return data.astype(np.float32)
    return pad_series(list(data), where=str(path))


# ----------------------------------------------------------------------------------------------
# .csv / .tsv files, read here
# ----------------------------------------------------------------------------------------------


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_table(path: Path, delimiter: str, label_first: bool) -> tuple[np.ndarray, list[str] | None, list[int]]:
    """One series per row; returns ``(x [N, 1, T], labels or None, file line of each row)``."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            rows = [(reader.line_num, row) for row in reader]  # line_num: the file line the row ends on
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not a UTF-8 text file ({err}); save it as UTF-8 text") from err
    except csv.Error as err:
        raise DataError(f"{path} is not a readable delimited text file ({err})") from err
    rows = [(line, [c.strip() for c in row]) for line, row in rows if any(c.strip() for c in row)]  # skip blank lines
    if not rows:
        raise DataError(f"{path} holds no rows; expected one series per row")

    header_line, first = rows[0]
    label_col: int | None = 0 if label_first else None
    columns: list[str] | None = None
    if any(c.lower() not in _MISSING_CELLS and not _is_number(c) for c in first):  # a header row
        columns = first
        rows = rows[1:]
        named = [i for i, c in enumerate(columns) if c.lower() in LABEL_HEADERS]
        if len(named) > 1:
            raise DataError(
                f"{path}, line {header_line}: the header has {len(named)} label columns "
                f"({', '.join(columns[i] for i in named)}); keep one column named {'/'.join(LABEL_HEADERS)}"
            )
        label_col = named[0] if named else None
        if not rows:
            raise DataError(f"{path} has a header but no data rows; expected one series per row")

    def column_name(j: int) -> str:
        return f"column {j + 1}" + (f" ({columns[j]!r})" if columns is not None and j < len(columns) else "")

    labels: list[str] | None = [] if label_col is not None else None
    values: list[list[float]] = []
    for line, row in rows:
        if labels is not None:
            cell = row[label_col] if label_col < len(row) else ""
            if not cell or cell.lower() in _MISSING_CELLS:
                raise DataError(f"{path}, line {line}: the label ({column_name(label_col)}) is empty; "
                                f"give every series a label, or remove the label column")
            labels.append(cell)
        series: list[float] = []
        for j, cell in enumerate(row):
            if j == label_col:
                continue
            if cell.lower() in _MISSING_CELLS:
                series.append(math.nan)
                continue
            try:
                series.append(float(cell))
            except ValueError:
                raise DataError(
                    f"{path}, line {line}, {column_name(j)}: {cell!r} is not a number; values must be numbers "
                    f"(empty, NaN or ? for a missing value)"
                    + ("" if label_first or columns is not None else
                       f"; a label column needs a header row naming it {'/'.join(LABEL_HEADERS)}")
                    + ("" if columns is None else
                       f". If {path.name} is a table (one sample per row, named columns), read it as one with "
                       f"--data table:{path}")
                ) from None
        values.append(series)

    T = max(len(s) for s in values)
    x = np.full((len(values), 1, T), np.nan, dtype=np.float64)
    for i, s in enumerate(values):
        x[i, 0, : len(s)] = s
    observed_columns = np.flatnonzero(~np.isnan(x[:, 0]).all(axis=0))
    if len(observed_columns) and observed_columns[-1] + 1 < T:  # e.g. trailing delimiters on every row
        x = x[:, :, : observed_columns[-1] + 1]
    if labels is None and columns is None and not label_first:
        _warn_if_labels_first(path, x)
    return x, labels, [line for line, _ in rows]


def _warn_if_labels_first(path: Path, x: np.ndarray) -> None:
    """Warn when a header-less CSV's first column looks like class labels (the UCR archive layout)."""
    first, rest = x[:, 0, 0], x[:, 0, 1:]
    if rest.shape[1] == 0 or np.isnan(first).any() or len(first) < 4:
        return
    integer_first = np.all(first == np.round(first))
    few_values = len(np.unique(first)) <= max(2, len(first) // 2)
    rest_finite = rest[np.isfinite(rest)]
    if integer_first and few_values and rest_finite.size and not np.all(rest_finite == np.round(rest_finite)):
        warnings.warn(
            f"{path}: the first column holds a few integer values ({', '.join(str(int(v)) for v in np.unique(first)[:5])}"
            f"{', ...' if len(np.unique(first)) > 5 else ''}) and looks like class labels, but a CSV without a header "
            f"is read as unlabeled values. If it is the label: add a header row (label,t1,t2,...), or save the file "
            f"tab-separated as .tsv (UCR archive layout)",
            stacklevel=4,
        )


def load_series_csv(path: str | os.PathLike[str]) -> DatasetSplits:
    """A ``.csv`` (comma-separated) or ``.tsv`` (tab-separated) file of univariate series, one per row.

    ``.csv``: if the first row has a cell that is not a number, it is a header; the header column
    named ``label``, ``class``, ``target`` or ``y`` (any case) holds the labels and every other
    column is a timestamp, in order. Without such a column (or without a header) the series are
    unlabeled. ``.tsv``: the UCR archive layout, the label in the first column and no header (a
    header row, if present, follows the ``.csv`` rule). Empty cells, ``NaN``, ``NA`` and ``?`` are
    missing values; shorter rows are padded at the end with NaN, and columns that are empty in
    every row at the end are dropped. ``Name_TRAIN.csv`` with ``Name_TEST.csv`` beside it gives
    both splits. Multivariate series need a ``.ts`` file or a ``.npy``/``.npz`` array.
    Returns ``x`` float32 ``[N, 1, T]``.
    """
    p = _existing_file(path, (".csv", ".tsv"))
    tsv = p.suffix.lower() == ".tsv"
    files = {"train": p}
    test = _sibling_test(p)
    if test is not None:
        files["test"] = test
    read = {split: _read_table(f, "\t" if tsv else ",", label_first=tsv) for split, f in files.items()}
    if "test" in read and (read["train"][1] is None) != (read["test"][1] is None):
        have, lack = (files["train"], files["test"]) if read["test"][1] is None else (files["test"], files["train"])
        raise DataError(f"{have} has a label column but {lack} has none; give labels in both files or in neither")

    def row_name(split: str) -> Callable[[int], str]:
        lines = read[split][2]
        return lambda i: f"the series on line {lines[i]} (row {i})"

    return _splits(
        str(p), read["train"][0], read["test"][0] if "test" in read else None,
        read["train"][1], read["test"][1] if "test" in read else None,
        str(p), str(files.get("test", "")),
        row_names=(row_name("train"), row_name("test") if "test" in read else None),
    )


# ----------------------------------------------------------------------------------------------
# .npy / .npz arrays of series
# ----------------------------------------------------------------------------------------------


def _open_series_arrays(path: Path) -> dict[str, np.ndarray]:
    return _open_arrays(
        path,
        object_error="holds an object array (series of unequal length?); pad every series at the end with NaN "
        "to the longest one and save a float array [N, T] or [N, C, T] (selfsup.data.timeseries.pad_series does it)",
        expected=None,
    )


def load_series_arrays(path: str | os.PathLike[str]) -> DatasetSplits:
    """Series from a ``.npy`` or ``.npz`` file: ``[N, T]`` (becomes ``[N, 1, T]``) or ``[N, C, T]``.

    A ``.npz`` holds ``x`` (and optionally labels ``y``), or ``x_train``, ``y_train``, ``x_test``,
    ``y_test`` (labels optional). NaN marks missing values; series of unequal length must already
    be padded at the end with NaN (:func:`pad_series`). Splits of different lengths are padded to
    the longer one. Labels (integers or strings) become ``0..K-1``.
    """
    p = _existing_file(path, SERIES_ARRAY_EXTENSIONS)
    arrays = _open_series_arrays(p)
    if "" in arrays:
        parts: dict[str, tuple[str, str | None]] = {"train": ("", None)}
    elif "x" in arrays:
        if {"x_train", "x_test"} & set(arrays):
            raise DataError(f"{p} has both 'x' and 'x_train'/'x_test'; keep one form")
        parts = {"train": ("x", "y" if "y" in arrays else None)}
    elif "x_train" in arrays:
        parts = {"train": ("x_train", "y_train" if "y_train" in arrays else None)}
        if "x_test" in arrays:
            parts["test"] = ("x_test", "y_test" if "y_test" in arrays else None)
        elif "y_test" in arrays:
            raise DataError(f"{p} has 'y_test' but no 'x_test'; add the test series or drop 'y_test'")
    else:
        found = ", ".join(repr(k) for k in sorted(arrays)) or "none"
        raise DataError(f"{p} has no series under the expected keys (found: {found}); expected x/y or x_train/y_train/x_test/y_test")

    def where(key: str) -> str:
        return str(p) if key == "" else f"{p} (key {key!r})"

    xs: dict[str, np.ndarray] = {}
    ys: dict[str, list[Any] | None] = {}
    for split, (x_key, y_key) in parts.items():
        xs[split] = _as_3d(arrays[x_key], where(x_key))
        ys[split] = None if y_key is None else _label_list(arrays[y_key], xs[split].shape[0], where(y_key), where(x_key))
    test_where = where(parts["test"][0]) if "test" in parts else ""
    if "test" in parts and (ys["train"] is None) != (ys["test"] is None):
        have, lack = ("y_train", "y_test") if ys["test"] is None else ("y_test", "y_train")
        raise DataError(f"{p} has {have!r} but no {lack!r}; give labels for both splits or for neither")
    return _splits(
        str(p), xs["train"], xs.get("test"), ys["train"], ys.get("test"),
        where(parts["train"][0]), test_where,
    )


def _label_list(y: np.ndarray, n: int, where: str, x_where: str) -> list[Any]:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{where} has shape {tuple(y.shape)}; labels must be one value per series, shape [N]")
    if len(y) != n:
        raise DataError(f"{where} has {len(y)} labels but {x_where} has {n} series; they must match")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{where}: label {i} is {y[i]!r}; labels must be integers or strings (class ids)")
        return [int(v) for v in y]
    if y.dtype.kind in "biuUS":
        return [v.decode() if isinstance(v, bytes) else v for v in y.tolist()]
    raise DataError(f"{where} has dtype {y.dtype}; labels must be integers or strings")


# ----------------------------------------------------------------------------------------------
# Entry point by file type
# ----------------------------------------------------------------------------------------------


def _existing_file(path: str | os.PathLike[str], suffixes: tuple[str, ...]) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{p} does not exist (looked for {p.absolute()}); pass {_SERIES_FORMS}")
    if p.is_dir():
        raise DataError(f"{p} is a directory; pass a file: {_SERIES_FORMS}")
    if p.suffix.lower() not in suffixes:
        raise DataError(f"{p} is not a {'/'.join(suffixes)} file; pass {_SERIES_FORMS}")
    return p


def load_series(path: str | os.PathLike[str]) -> DatasetSplits:
    """Series from a file, by its suffix: ``.ts`` (:func:`load_ts`), ``.csv``/``.tsv``
    (:func:`load_series_csv`), ``.npy``/``.npz`` (:func:`load_series_arrays`).

    A directory ``Name/`` holding ``Name_TRAIN.ts`` (or ``.tsv``/``.csv``), as in the unpacked
    UCR/UEA archives, is read from that file. Returns ``x`` float32 ``[N, C, T]``.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        for suffix in SERIES_FILE_EXTENSIONS:
            for stem in (f"{p.name}_TRAIN", f"{p.name}_train"):
                if (p / f"{stem}{suffix}").is_file():
                    return load_series(p / f"{stem}{suffix}")
        raise DataError(f"{p} is a directory without {p.name}_TRAIN.ts/.tsv/.csv; pass a file: {_SERIES_FORMS}")
    suffix = p.suffix.lower()
    if suffix == ".ts":
        return load_ts(p)
    if suffix in (".csv", ".tsv"):
        return load_series_csv(p)
    if suffix in SERIES_ARRAY_EXTENSIONS:
        return load_series_arrays(p)
    if not p.exists():
        raise DataError(f"{p} does not exist (looked for {p.absolute()}); pass {_SERIES_FORMS}")
    raise DataError(f"{p} is not a time-series file; pass {_SERIES_FORMS}")


__all__ = [
    "MODALITY", "SHIPPED_DATASETS", "SERIES_FILE_EXTENSIONS", "INSTALL_HINT", "observed_mask", "fill_missing",
    "pad_series", "series_dataset", "list_timeseries_datasets", "load_ucr", "load_ts", "load_series_csv",
    "load_series_arrays", "load_series",
]
