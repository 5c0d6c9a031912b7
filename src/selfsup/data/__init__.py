"""Datasets as sources of samples read on demand (see :mod:`selfsup.data.base`).

Use :func:`load_dataset` with a built-in name (``"digits"``, ``"fashion_mnist"``),
``"folder:PATH"``, ``"arrays:PATH"``, ``"idx:DIR"`` (MNIST-format IDX files), ``"ucr:NAME"`` /
``"uea:NAME"`` (aeon's shipped UCR/UEA datasets), ``"series:PATH"`` or a bare path; it returns a
:class:`DatasetSplits` of sources: image folders are decoded when read (uint8), ``.npy`` files are
memory-mapped, the rest is in memory (images ``[N, C, H, W]`` uint8 or float32 in ``[0, 1]``,
vectors ``[N, D]`` float32, series ``[N, C, T]`` float32 with NaN for missing values, labels
``[N]`` int64 or ``None``). Each source names its modality (:mod:`selfsup.data.modalities`).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch

from selfsup.config import OneOf, Range, build_dataclass
from selfsup.config_checks import coerce_optional
from selfsup.data.base import ArrayDataset, Batch, DatasetSplits, SampleSource
from selfsup.data.builtin import DATASETS
from selfsup.data.exclude import exclude_samples
from selfsup.data.idx import load_idx_folder, parse_idx_spec
from selfsup.data.loader import check_batch, iterate, make_loader, materialize
from selfsup.data.table import TABLE_EXTENSIONS, TableSource, load_table
from selfsup.data.modalities import MODALITIES, Modality, get_modality, list_modalities, register_modality
from selfsup.data.files import ARRAY_EXTENSIONS, IMAGE_EXTENSIONS, load_arrays, load_image_folder
from selfsup.data.timeseries import (
    SERIES_FILE_EXTENSIONS, fill_missing, list_timeseries_datasets, load_series, load_ucr, observed_mask,
)
from selfsup.errors import ConfigError, DataError

try:  # graphs need the [graph] extra (PyTorch Geometric); every other kind of data reads without it
    from selfsup.data.graph_source import load_graph
except ConfigError as _missing:
    _GRAPH_MISSING: str | None = str(_missing)
    load_graph = None  # type: ignore[assignment]
else:
    _GRAPH_MISSING = None

_FORMS = (
    "a directory of images, a .npy/.npz file, 'folder:PATH', 'arrays:PATH' or 'idx:DIR' (MNIST-format files); for time series "
    "'ucr:NAME' (shipped: " + ", ".join(n.split(":", 1)[1] for n in list_timeseries_datasets()) + "), "
    "a .ts/.csv/.tsv file or 'series:PATH' (.npy/.npz [N, T] or [N, C, T]); for tables 'table:PATH' "
    "(.csv/.tsv/.parquet); for graphs 'graph:PATH' (a folder with edges.csv and nodes.csv, an .npz, Planetoid files)"
)


def list_datasets() -> list[str]:
    """Names of the built-in datasets, sorted."""
    return DATASETS.names()


def _looks_like_path(text: str) -> bool:
    suffix = Path(text).suffix.lower()
    return (
        "/" in text or "\\" in text or text.startswith((".", "~"))
        or suffix in ARRAY_EXTENSIONS or suffix in IMAGE_EXTENSIONS or suffix in SERIES_FILE_EXTENSIONS
    )


@dataclass
class DataOptions:
    """Options of the ``data`` component (``--set data.image_size=64``); later modalities add theirs.

    Attributes:
        image_size: image files are resized to this when read: an int (square) or ``[H, W]``
            (default: the most common size in the folder).
        train_subset: use only this many training samples, a fixed random subset (quick
            experiments, benchmarks on a budget); None: all of them.
        exclude: a CSV of sample ids to leave out of the training split (``selfsup pretrain
            --exclude FILE``; a scan's ``scan.csv``: its flagged rows), applied after
            ``train_subset``; stored as an absolute path. See :mod:`selfsup.data.exclude`.
        label, categorical, numeric, ignore, id: tables only (``table:PATH``): the label
            column; columns read as categorical / numeric whatever their values look like;
            columns left out; the column whose values name the samples (left out of the
            features). See :mod:`selfsup.data.table`.
        level, hops, directed, fanout: graphs only (``graph:PATH``): ``"node"`` or ``"graph"``
            for an ``.npz`` that holds both (default: its node-level graph); node level: None
            (every batch is the whole graph) or the subgraph within ``hops`` of the batch's
            nodes; keep the edges' direction (default: undirected, the reverse of every edge
            added); node level: ``[f1, f2, ...]`` neighbours sampled per node at each hop instead
            (GraphSAGE's). See :mod:`selfsup.data.graph_source`.
    """

    image_size: Any = None
    # Tables (table:PATH): the label column, type overrides, columns left out, the id column.
    label: str | None = None
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    id: str | None = None
    # Graphs (graph:PATH): the level of an .npz holding both, k-hop batches, directed edges.
    level: Annotated[str, OneOf("node", "graph")] | None = None
    hops: Annotated[int, Range(ge=1)] | None = None
    directed: bool = False
    fanout: tuple[int, ...] | None = None  # checked by graph_source.check_fanout
    # Pretrain and fit the probes on a fixed random subset of this many training samples (the
    # same for every run: drawn with seed 0, kept in file order); the test split stays whole.
    train_subset: Annotated[int, Range(ge=2)] | None = None
    # Leave the samples a CSV lists (or flags) out of the training split, after train_subset.
    exclude: str | None = None

    def __post_init__(self) -> None:
        coerce_optional(self, "train_subset")
        if self.exclude is not None:  # absolute, so a resume from another folder reads the same file
            self.exclude = str(Path(str(self.exclude)).expanduser().absolute())
        coerce_optional(self, "hops")
        for key in ("label", "id"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                setattr(self, key, str(value))  # a column named 3 in YAML
        for key in ("categorical", "numeric", "ignore"):
            value = getattr(self, key)
            setattr(self, key, tuple(str(v) for v in ([value] if isinstance(value, str) else value)))
        size = self.image_size
        pair = isinstance(size, (list, tuple))
        sides = list(size) if pair else [size]
        whole = all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sides)
        if size is not None and not (whole and len(sides) == (2 if pair else 1)):
            raise ValueError(
                f"image_size must be a whole number >= 1, [height, width] of such numbers, or null; got {size!r}"
            )


def data_options(params: dict[str, Any] | None) -> DataOptions:
    """``params`` of the data component checked against :class:`DataOptions` (unknown keys listed)."""
    return build_dataclass(DataOptions, params or {}, where="data")


def load_dataset(
    spec: str | os.PathLike[str], skip_bad_files: bool = False, options: DataOptions | dict[str, Any] | None = None,
    reference: dict[str, Any] | None = None,
) -> DatasetSplits:
    """Load a dataset from a spec and return its train (and, when there is one, test) split.

    ``spec`` is, in this order of precedence: a built-in name (see :func:`list_datasets`);
    ``"folder:PATH"`` (a directory of images, see :func:`load_image_folder`); ``"arrays:PATH"``
    (a ``.npy``/``.npz`` file, see :func:`load_arrays`); ``"ucr:NAME"`` or ``"uea:NAME"`` (a
    UCR/UEA dataset shipped with aeon, see :func:`list_timeseries_datasets` and
    :func:`~selfsup.data.timeseries.load_ucr`; a path there is read as with ``series:``);
    ``"series:PATH"`` (time series from a ``.npy``/``.npz``/``.ts``/``.csv``/``.tsv`` file, see
    :func:`~selfsup.data.timeseries.load_series`); or a bare path (a directory is read as images,
    a ``.npy``/``.npz`` file as arrays, a ``.ts``/``.csv``/``.tsv`` file as time series). Write
    ``./digits`` to read a local folder that shares a built-in name. ``skip_bad_files`` only
    applies to image folders; ``options`` are the data component's (:class:`DataOptions`).
    ``"table:PATH"`` (or a bare ``.parquet`` path) reads a table (:func:`load_table`);
    ``reference``: the ``data_info`` of a trained run, so its data is read as the run's was
    (a table's schema; ignored by data that has none).
    """
    opts = options if isinstance(options, DataOptions) else data_options(options)
    splits = _load_spec(spec, skip_bad_files, opts, reference)
    if splits.train.modality != "table":
        given = [k for k in ("label", "categorical", "numeric", "ignore", "id") if getattr(opts, k)]
        if given:
            raise ConfigError(
                f"data.{given[0]} applies to tables, and {spec} is {splits.train.modality} data; "
                "read a CSV as a table with --data table:PATH"
            )
    if splits.train.modality != "graph":
        given = [k for k in ("level", "hops", "directed", "fanout") if getattr(opts, k)]
        if given:
            raise ConfigError(
                f"data.{given[0]} applies to graphs, and {spec} is {splits.train.modality} data; "
                "read a graph with --data graph:PATH"
            )
    n = opts.train_subset
    if n is not None and n < len(splits.train):
        chosen = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(0))[:n].sort().values
        splits = DatasetSplits(splits.train.subset(chosen), splits.test, splits.pretrain)
    if opts.exclude is not None:
        splits = dataclasses.replace(splits, train=exclude_samples(splits.train, opts.exclude, str(spec)))
    return splits


def _load_table(path: Path, opts: DataOptions, reference: dict[str, Any] | None) -> DatasetSplits:
    return load_table(
        path, label=opts.label, categorical=opts.categorical, numeric=opts.numeric, ignore=opts.ignore,
        id_column=opts.id, reference=reference if reference and reference.get("kind") == "table" else None,
    )


def _load_spec(
    spec: str | os.PathLike[str], skip_bad_files: bool, opts: DataOptions, reference: dict[str, Any] | None = None,
) -> DatasetSplits:
    if isinstance(spec, os.PathLike):
        if Path(spec).suffix.lower() in (".parquet", ".pq"):
            return _load_table(Path(spec).expanduser(), opts, reference)
        return _load_path(Path(spec).expanduser(), str(spec), skip_bad_files, opts)
    if not isinstance(spec, str):
        raise ConfigError(f"a dataset spec must be a string or a path, got {type(spec).__name__}")
    text = spec.strip()
    if not text:
        raise ConfigError(f"empty dataset spec; give a built-in dataset ({', '.join(list_datasets())}) or {_FORMS}")
    if text in DATASETS:
        return DATASETS.get(text)()

    prefix, sep, rest = text.partition(":")
    if sep and prefix.lower() in ("folder", "arrays"):
        if not rest.strip():
            raise ConfigError(f"dataset spec {spec!r} has no path after '{prefix}:'")
        target = Path(rest.strip()).expanduser()
        return load_image_folder(target, skip_bad_files, opts.image_size) if prefix.lower() == "folder" else load_arrays(target)
    if sep and prefix.lower() == "table":
        if not rest.strip():
            raise ConfigError(f"dataset spec {spec!r} has no path after 'table:'")
        return _load_table(Path(rest.strip()).expanduser(), opts, reference)
    if sep and prefix.lower() == "graph":
        if not rest.strip():
            raise ConfigError(f"dataset spec {spec!r} has no path after 'graph:'")
        if load_graph is None:
            raise ConfigError(_GRAPH_MISSING)
        return load_graph(
            Path(rest.strip()).expanduser(), level=opts.level, hops=opts.hops, undirected=not opts.directed,
            reference=reference if reference and reference.get("kind") == "graph" else None, fanout=opts.fanout,
        )
    if sep and prefix.lower() == "idx":
        return parse_idx_spec(rest)
    if sep and prefix.lower() == "series":
        if not rest.strip():
            raise ConfigError(f"dataset spec {spec!r} has no path after 'series:'")
        return load_series(Path(rest.strip()).expanduser())
    if sep and prefix.lower() in ("ucr", "uea"):
        name = rest.strip()
        if not name:
            shipped = ", ".join(list_timeseries_datasets())
            raise ConfigError(f"dataset spec {spec!r} has no name after '{prefix}:'; shipped datasets: {shipped}")
        if _looks_like_path(name) or Path(name).expanduser().is_dir():
            return load_series(Path(name).expanduser())
        return load_ucr(name)
    if Path(text).suffix.lower() in (".parquet", ".pq"):
        return _load_table(Path(text).expanduser(), opts, reference)
    return _load_path(Path(text).expanduser(), text, skip_bad_files, opts)


def _load_path(path: Path, text: str, skip_bad_files: bool, opts: DataOptions) -> DatasetSplits:
    if path.is_symlink() and not path.exists():
        raise DataError(
            f"{path} is a broken symlink or a symlink loop (it points to {os.readlink(path)}); pass the real path"
        )
    if path.is_dir():
        return load_image_folder(path, skip_bad_files, opts.image_size)
    if path.exists():
        suffix = path.suffix.lower()
        if suffix in ARRAY_EXTENSIONS:
            return load_arrays(path)
        if suffix in SERIES_FILE_EXTENSIONS:
            return load_series(path)
        if suffix in IMAGE_EXTENSIONS:
            raise DataError(f"{path} is a single image; pass the folder that contains the images instead")
        raise DataError(f"{path} is neither a directory of images nor a .npy/.npz/.ts/.csv/.tsv file; pass {_FORMS}")
    if _looks_like_path(text):
        raise DataError(f"{path} does not exist (looked for {path.absolute()}); pass {_FORMS}, or a built-in dataset name")
    names = list_datasets()
    close = difflib.get_close_matches(text.lower(), names, n=1)
    if not close:  # maybe a shipped time-series name without its 'ucr:' prefix
        series = {spec.split(":", 1)[1].lower(): spec for spec in list_timeseries_datasets()}
        close = [series[n] for n in difflib.get_close_matches(text.lower(), list(series), n=1)]
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"unknown dataset {text!r}.{hint} Built-in datasets: {', '.join(names)}; or pass {_FORMS}"
    )


__all__ = [
    "ArrayDataset", "Batch", "SampleSource", "DatasetSplits", "DataOptions", "data_options", "make_loader", "iterate",
    "materialize", "check_batch", "Modality", "MODALITIES", "get_modality", "list_modalities", "register_modality",
    "load_idx_folder", "DATASETS", "load_dataset", "list_datasets", "list_timeseries_datasets",
    "load_image_folder", "load_arrays", "load_series", "load_ucr", "observed_mask", "fill_missing",
    "IMAGE_EXTENSIONS", "load_table", "TableSource", "TABLE_EXTENSIONS",
]
