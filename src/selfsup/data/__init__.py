"""Datasets: built-in ones, folders of images and ``.npy``/``.npz`` files, all as in-memory tensors.

Use :func:`load_dataset` with a built-in name (``"digits"``), ``"folder:PATH"``, ``"arrays:PATH"``
or a bare path; it returns a :class:`DatasetSplits` of :class:`ArrayDataset` (images
``[N, C, H, W]`` float32 in ``[0, 1]``, vectors ``[N, D]`` float32, labels ``[N]`` int64 or ``None``).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from selfsup.data.base import ArrayDataset, DatasetSplits
from selfsup.data.builtin import DATASETS
from selfsup.data.files import ARRAY_EXTENSIONS, IMAGE_EXTENSIONS, load_arrays, load_image_folder
from selfsup.errors import ConfigError, DataError

_FORMS = "a directory of images, a .npy/.npz file, 'folder:PATH' or 'arrays:PATH'"


def list_datasets() -> list[str]:
    """Names of the built-in datasets, sorted."""
    return DATASETS.names()


def _looks_like_path(text: str) -> bool:
    suffix = Path(text).suffix.lower()
    return (
        "/" in text or "\\" in text or text.startswith((".", "~"))
        or suffix in ARRAY_EXTENSIONS or suffix in IMAGE_EXTENSIONS
    )


def load_dataset(spec: str | os.PathLike[str], skip_bad_files: bool = False) -> DatasetSplits:
    """Load a dataset from a spec and return its train (and, when there is one, test) split.

    ``spec`` is, in this order of precedence: a built-in name (see :func:`list_datasets`);
    ``"folder:PATH"`` (a directory of images, see :func:`load_image_folder`); ``"arrays:PATH"``
    (a ``.npy``/``.npz`` file, see :func:`load_arrays`); or a bare path (a directory is read as
    images, a ``.npy``/``.npz`` file as arrays). Write ``./digits`` to read a local folder that
    shares a built-in name. ``skip_bad_files`` only applies to image folders.
    """
    if isinstance(spec, os.PathLike):
        return _load_path(Path(spec).expanduser(), str(spec), skip_bad_files)
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
        return load_image_folder(target, skip_bad_files) if prefix.lower() == "folder" else load_arrays(target)
    return _load_path(Path(text).expanduser(), text, skip_bad_files)


def _load_path(path: Path, text: str, skip_bad_files: bool) -> DatasetSplits:
    if path.is_dir():
        return load_image_folder(path, skip_bad_files)
    if path.exists():
        suffix = path.suffix.lower()
        if suffix in ARRAY_EXTENSIONS:
            return load_arrays(path)
        if suffix in IMAGE_EXTENSIONS:
            raise DataError(f"{path} is a single image; pass the folder that contains the images instead")
        raise DataError(f"{path} is neither a directory of images nor a .npy/.npz file; pass {_FORMS}")
    if _looks_like_path(text):
        raise DataError(f"{path} does not exist (looked for {path.absolute()}); pass {_FORMS}, or a built-in dataset name")
    names = list_datasets()
    close = difflib.get_close_matches(text.lower(), names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"unknown dataset {text!r}.{hint} Built-in datasets: {', '.join(names)}; or pass {_FORMS}"
    )


__all__ = [
    "ArrayDataset", "DatasetSplits", "DATASETS", "load_dataset", "list_datasets",
    "load_image_folder", "load_arrays", "IMAGE_EXTENSIONS",
]
