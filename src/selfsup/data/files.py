"""Loaders for the user's own data: a folder of image files, or a ``.npy`` / ``.npz`` file.

Both return a :class:`DatasetSplits` of in-memory tensors. Every problem the user can fix (a
missing path, an unreadable file, a bad shape, NaN values) is a :class:`DataError` whose message
names the file and says what to do.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfsup.data.base import ArrayDataset, BadSample, DatasetSplits, SampleSource
from selfsup.errors import DataError

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
ARRAY_EXTENSIONS: tuple[str, ...] = (".npy", ".npz")

_ACCEPTED_IMAGES = ", ".join(IMAGE_EXTENSIONS)
_FOLDER_LAYOUTS = (
    "root/train/<class>/*.png and root/test/<class>/*.png, root/<class>/*.png, or root/*.png (unlabeled)"
)
_ARRAY_FORMS = (
    "a .npy file of samples, or a .npz file with arrays 'x' (and optionally 'y'), "
    "or 'x_train', 'y_train', 'x_test', 'y_test' (labels optional)"
)
_SPLIT_DIRS = ("train", "test")


# ----------------------------------------------------------------------------------------------
# Folder of images
# ----------------------------------------------------------------------------------------------


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    """Image files in ``folder`` (and below it when ``recursive``), hidden files skipped, sorted."""
    found: list[Path] = []
    if recursive:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found.extend(Path(dirpath) / f for f in filenames if _is_image(Path(dirpath) / f))
    else:
        found = [p for p in folder.iterdir() if _is_image(p)]
    return sorted(found)


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _check_class_links(folder: Path, class_dirs: list[Path]) -> None:
    """A class folder that is a link back into the data (to the root, or to another class) would
    read the same images again under a second label: one line naming it."""
    root = folder.resolve()
    real = {d: d.resolve() for d in class_dirs}
    for d, target in real.items():
        if target == root or target in root.parents:
            raise DataError(
                f"class folder {d} is a symlink to {target}, which holds the whole dataset: its images would be read "
                "again under the label of that folder; remove the link"
            )
        for other, other_target in real.items():
            if other != d and (target == other_target or other_target in target.parents):
                raise DataError(
                    f"class folders {d} and {other} are the same images (a symlink to {target}): they would be read "
                    "twice under two labels; remove the link"
                )


def _scan_split(folder: Path) -> tuple[list[Path], list[str] | None]:
    """Files of one split and their class folder names; classes are ``None`` for a flat folder."""
    loose = _images_in(folder, recursive=False)
    _check_class_links(folder, _subdirs(folder))
    per_class = {d.name: _images_in(d, recursive=True) for d in _subdirs(folder)}
    per_class = {name: files for name, files in per_class.items() if files}  # empty folders ignored
    if per_class and loose:
        examples = ", ".join(p.name for p in loose[:3])
        raise DataError(
            f"{folder} has both class folders ({', '.join(sorted(per_class)[:5])}) and loose image files "
            f"({examples}{', ...' if len(loose) > 3 else ''}); move the loose images into a class folder "
            f"or remove them. Accepted layouts: {_FOLDER_LAYOUTS}"
        )
    if not per_class:
        return loose, None
    files: list[Path] = []
    classes: list[str] = []
    for name in sorted(per_class):
        files.extend(per_class[name])
        classes.extend([name] * len(per_class[name]))
    return files, classes


_GRAY_MODES = {"1", "L", "LA", "La"}
_WIDE_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}  # 16-bit and float images: kept as float32
# Folders up to this many files have every header checked when they are opened (an unreadable
# file is reported before training starts); larger folders have this many, evenly spaced, checked
# and the rest are checked when a worker decodes them.
HEADER_SCAN_LIMIT = 10_000


def _why_unreadable(err: Exception) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(err, UnidentifiedImageError):
        return "cannot identify image file"
    text = str(err).strip()
    return text or type(err).__name__


def _header(path: Path) -> tuple[tuple[int, int], str]:
    """``((height, width), mode)`` read from the file's header only (no pixel decoding)."""
    from PIL import Image

    with Image.open(path) as img:
        return (img.height, img.width), img.mode


def decode_image(path: Path, channels: int, size: tuple[int, int], wide: bool) -> np.ndarray:
    """One image file as ``[C, H, W]``: uint8, or float32 in ``[0, 1]`` when ``wide`` (16-bit / float
    sources), with ``channels`` channels (gray repeated to RGB; colour converted to gray) and
    resized to ``size`` = ``(H, W)`` (bilinear) when it differs."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        mode = img.mode
        if wide:
            if mode in _WIDE_MODES:
                arr = np.asarray(img, dtype=np.float32)
                arr = np.clip(np.nan_to_num(arr) / (1.0 if mode == "F" else 65535.0), 0.0, 1.0)[..., None]
            else:
                arr = np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0
                arr = arr if arr.ndim == 3 else arr[..., None]
            if arr.shape[:2] != size:
                arr = np.stack([np.asarray(Image.fromarray(arr[..., c]).resize((size[1], size[0]), Image.Resampling.BILINEAR))
                                for c in range(arr.shape[-1])], axis=-1)
        else:
            img = img.convert("L" if channels == 1 else "RGB")
            if (img.height, img.width) != size:
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
            arr = arr if arr.ndim == 3 else arr[..., None]
    if arr.shape[-1] != channels:
        arr = np.repeat(arr, channels, axis=-1)
    return np.array(arr.transpose(2, 0, 1), order="C")  # a writable copy (PIL's buffer is read-only)


class ImageFolderSource(SampleSource):
    """Image files read on demand: each DataLoader worker decodes its own files.

    Samples are ``[C, H, W]`` uint8 (float32 in ``[0, 1]`` when the folder holds 16-bit or float
    images), all of one channel count and one size, so they stack into batches.

    Args:
        files: the image files, in a fixed order (a sample's index is its position here).
        labels: ``[N]`` class indices, or ``None``.
        channels: 1 (every checked image is grayscale) or 3.
        size: ``(H, W)`` every image is resized to when it differs.
        wide: decode to float32 (16-bit or float images present) instead of uint8.
    """

    def __init__(
        self, files: list[Path], labels: torch.Tensor | None, name: str, class_names: list[str] | None,
        channels: int, size: tuple[int, int], wide: bool,
    ) -> None:
        # The paths as one numpy array of bytes, not a list of Path objects: DataLoader workers
        # share it without copying (a Python list's reference counts would be written to, and
        # each worker would end up with its own copy of every page).
        self._paths = np.array([os.fsencode(p) for p in files])
        self.labels = labels
        self.name = name
        self.modality = "image"
        self.class_names = class_names
        self.channels, self.size, self.wide = channels, size, wide

    def __len__(self) -> int:
        return len(self._paths)

    @property
    def files(self) -> list[Path]:
        """The image files, in sample order."""
        return [Path(os.fsdecode(p)) for p in self._paths]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (self.channels, *self.size)

    def sample_id(self, index: int) -> str:
        return os.fsdecode(self._paths[index])

    def __getitem__(self, index: int) -> dict[str, Any] | BadSample:
        path = Path(os.fsdecode(self._paths[index]))
        try:
            x = torch.from_numpy(decode_image(path, self.channels, self.size, self.wide))
        except MemoryError:
            raise
        except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... for broken files
            return BadSample(str(path), _why_unreadable(err))
        sample: dict[str, Any] = {"x": x, "index": torch.tensor(index)}
        if self.labels is not None:
            sample["y"] = self.labels[index]
        return sample

    def subset(self, indices: Any) -> "ImageFolderSource":
        index = torch.as_tensor(indices, dtype=torch.int64)
        return ImageFolderSource(
            [Path(os.fsdecode(p)) for p in self._paths[index.numpy()]], None if self.labels is None else self.labels[index],
            self.name, self.class_names, self.channels, self.size, self.wide,
        )

    @property
    def x(self) -> torch.Tensor:
        """Every image decoded into one tensor ``[N, C, H, W]`` (small folders and tests only)."""
        samples = [self[i] for i in range(len(self))]
        bad = [s for s in samples if isinstance(s, BadSample)]
        if bad:
            raise DataError(f"{bad[0].sample_id} is not a readable image ({bad[0].reason}); remove it or pass skip_bad_files=True")
        return torch.stack([s["x"] for s in samples])  # type: ignore[index]


def _check_headers(
    files: list[Path], skip_bad_files: bool, root: Path,
) -> tuple[list[int], Counter, set[str]]:
    """Read the headers of ``files`` (all of them up to :data:`HEADER_SCAN_LIMIT`, else an evenly
    spaced sample); returns the indices that are readable, the sizes seen and the modes seen."""
    if len(files) <= HEADER_SCAN_LIMIT:
        checked = list(range(len(files)))
    else:
        checked = sorted(set(np.linspace(0, len(files) - 1, HEADER_SCAN_LIMIT).astype(int).tolist()))
    sizes: Counter = Counter()
    modes: set[str] = set()
    bad: dict[int, str] = {}
    for i in checked:
        try:
            size, mode = _header(files[i])
        except MemoryError:
            raise
        except Exception as err:
            reason = _why_unreadable(err)
            if not skip_bad_files:
                raise DataError(
                    f"{files[i]} is not a readable image ({reason}); remove it or pass skip_bad_files=True"
                ) from err
            bad[i] = f"{files[i]} ({reason})"
            continue
        sizes[size] += 1
        modes.add(mode)
    if bad:
        listed = "; ".join(list(bad.values())[:20]) + (f"; and {len(bad) - 20} more" if len(bad) > 20 else "")
        warnings.warn(f"skipped {len(bad)} unreadable image file(s) in {root}: {listed}", stacklevel=3)
    kept = [i for i in range(len(files)) if i not in bad]
    return kept, sizes, modes


def _image_size(value: Any, sizes: Counter, root: Path, total: int) -> tuple[int, int]:
    """``data.image_size`` (an int or ``[H, W]``), else the most common size (warned when several)."""
    if value is not None:
        size = (int(value), int(value)) if isinstance(value, (int, float)) else tuple(int(v) for v in value)
        if len(size) != 2 or min(size) < 1:
            raise DataError(f"data.image_size must be a positive int or [height, width]; got {value!r}")
        return size  # type: ignore[return-value]
    target: tuple[int, int] = sizes.most_common(1)[0][0]
    if len(sizes) > 1:
        others = sum(n for s, n in sizes.items() if s != target)
        warnings.warn(
            f"images in {root} have {len(sizes)} different sizes; {others} of {sum(sizes.values())} checked "
            f"(of {total}) are resized to {target[0]}x{target[1]} (the most common size, height x width) with "
            f"bilinear interpolation when read; set data.image_size to choose the size",
            stacklevel=3,
        )
    return target


def load_image_folder(
    path: str | os.PathLike[str], skip_bad_files: bool = False, image_size: Any = None,
) -> DatasetSplits:
    """Open a directory of image files as sources read on demand (see :class:`ImageFolderSource`).

    Layouts: ``root/train/<class>/*`` and ``root/test/<class>/*`` (two labeled splits),
    ``root/<class>/*`` (one labeled train split) or ``root/*`` (one unlabeled train split).
    Class ``i`` is the ``i``-th class folder name in sorted order. Images become grayscale
    (``C=1``) if all checked images are grayscale, else RGB (``C=3``); images of other sizes are
    resized when read, to ``image_size`` (an int or ``(H, W)``) or else the most common size (with
    a warning). Unreadable files raise a :class:`DataError`, or are skipped with a warning when
    ``skip_bad_files`` is true: at opening for the headers checked then, when read for the others.
        """
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"{root} does not exist; pass a directory of images ({_FOLDER_LAYOUTS})")
    if not root.is_dir():
        hint = " (for a .npy/.npz file use arrays:PATH)" if root.suffix.lower() in ARRAY_EXTENSIONS else ""
        raise DataError(f"{root} is a file, not a directory; pass the folder that contains the images{hint}")

    names = {d.name.lower(): d for d in _subdirs(root)}
    if "train" in names and set(names) <= set(_SPLIT_DIRS):
        if _images_in(root, recursive=False):
            raise DataError(
                f"{root} has train/ and test/ folders and also loose image files; move the loose images "
                f"into train/ or test/, or remove them"
            )
        split_dirs = {s: names[s] for s in _SPLIT_DIRS if s in names}
    elif "test" in names and set(names) <= set(_SPLIT_DIRS):
        raise DataError(f"{root} has a test/ folder but no train/ folder; add {root / 'train'} with the training images")
    else:
        split_dirs = {"train": root}

    scanned = {split: _scan_split(folder) for split, folder in split_dirs.items()}
    if not any(files for files, _ in scanned.values()):
        raise DataError(
            f"no image files found in {root}; accepted extensions (any case): {_ACCEPTED_IMAGES}. "
            f"Accepted layouts: {_FOLDER_LAYOUTS}"
        )
    if not scanned["train"][0]:
        raise DataError(f"no image files found in {split_dirs['train']}; accepted extensions: {_ACCEPTED_IMAGES}")
    if "test" in scanned and not scanned["test"][0]:
        warnings.warn(f"{split_dirs['test']} holds no image files; using {root} without a test split", stacklevel=2)
        del scanned["test"]
    if "test" in scanned and (scanned["train"][1] is None) != (scanned["test"][1] is None):
        labeled, flat = ("train", "test") if scanned["test"][1] is None else ("test", "train")
        raise DataError(
            f"{split_dirs[labeled]} has class folders but {split_dirs[flat]} holds loose images; "
            f"use class folders in both, or loose images in both"
        )

    # Check every split's headers first: channel count and image size are chosen over all of them.
    kept_files: dict[str, list[Path]] = {}
    labels: dict[str, list[str] | None] = {}
    sizes: Counter = Counter()
    modes: set[str] = set()
    for split, (files, classes) in scanned.items():
        kept, split_sizes, split_modes = _check_headers(files, skip_bad_files, split_dirs[split])
        sizes.update(split_sizes)
        modes |= split_modes
        kept_files[split] = [files[i] for i in kept]
        labels[split] = None if classes is None else [classes[i] for i in kept]
    if not kept_files["train"]:
        raise DataError(f"no readable image files found in {split_dirs['train']}; accepted extensions: {_ACCEPTED_IMAGES}")
    if "test" in kept_files and not kept_files["test"]:
        warnings.warn(f"no readable images in {split_dirs['test']}; using {root} without a test split", stacklevel=2)
        kept_files.pop("test")
        labels.pop("test")
    total = sum(len(f) for f in kept_files.values())
    size = _image_size(image_size, sizes, root, total)
    channels = 1 if modes <= (_GRAY_MODES | _WIDE_MODES) else 3
    wide = bool(modes & _WIDE_MODES)

    class_names: list[str] | None = None
    if labels["train"] is not None:
        class_names = sorted(set(labels["train"]))
        unknown = sorted(set(labels.get("test") or []) - set(class_names))
        if unknown:
            raise DataError(
                f"{split_dirs['test']} has class folder(s) {', '.join(unknown)} that {split_dirs['train']} lacks; "
                f"train and test must use the same classes (add training images for them or remove them from test)"
            )

    index = {name: i for i, name in enumerate(class_names or [])}
    sources: dict[str, ImageFolderSource] = {}
    for split, files in kept_files.items():
        names_of = labels[split]
        y = None if names_of is None else torch.tensor([index[n] for n in names_of], dtype=torch.int64)
        sources[split] = ImageFolderSource(
            files, y, str(root), None if class_names is None else list(class_names), channels, size, wide,
        )
    return DatasetSplits(train=sources["train"], test=sources.get("test"))


# ----------------------------------------------------------------------------------------------
# .npy / .npz arrays
# ----------------------------------------------------------------------------------------------


def _prepare_x(x: np.ndarray, where: str) -> tuple[torch.Tensor, str]:
    """Validate samples; returns ``[N, C, H, W]`` (image) or ``[N, D]`` (vector) and the modality.

    uint8 images stay uint8; a memory-mapped uint8 or float32 array stays a memory map (numpy);
    anything else becomes a float32 tensor in memory (integer images scaled to ``[0, 1]``).
    """
    if x.dtype.kind not in "biuf":
        raise DataError(f"{where} has dtype {x.dtype}; samples must be a numeric array (float or integer)")
    if x.ndim not in (2, 3, 4):
        raise DataError(
            f"{where} has shape {tuple(x.shape)}; accepted shapes are [N, C, H, W] or [N, H, W] (images) "
            f"and [N, D] (feature vectors)"
        )
    if x.shape[0] == 0:
        raise DataError(f"{where} holds no samples (shape {tuple(x.shape)})")
    modality = "vector" if x.ndim == 2 else "image"
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim == 4 and x.shape[1] > 4 and x.shape[3] <= 4:
        raise DataError(
            f"{where} has shape {tuple(x.shape)}, which looks like channels-last [N, H, W, C]; images must be "
            f"[N, C, H, W]: save x.transpose(0, 3, 1, 2) instead"
        )

    if modality == "image" and x.dtype == np.uint8:
        # uint8 images stay uint8 (and a memory map stays mapped): the image modality divides
        # by 255 on the device.
        return (x if isinstance(x, np.memmap) else torch.from_numpy(np.ascontiguousarray(x))), modality
    if isinstance(x, np.memmap) and x.dtype == np.float32:
        _check_finite_in_chunks(x, where)
        _warn_out_of_range(x, modality, where)
        return x, modality
    if modality == "image" and x.dtype.kind in "iu":
        if x.dtype == np.uint16:
            scale = 65535.0
        elif x.min() >= 0 and x.max() <= 255:
            scale = 255.0
        else:
            raise DataError(
                f"{where} holds integer images with values in [{x.min()}, {x.max()}]; integer images must be "
                f"uint8 (0..255) or uint16; otherwise save them as float32 in [0, 1]"
            )
        out = x.astype(np.float32) / np.float32(scale)
    else:
        out = x.astype(np.float32)
    _check_finite_in_chunks(out, where)
    _warn_out_of_range(out if x.dtype.kind == "f" else None, modality, where)
    return torch.from_numpy(np.ascontiguousarray(out)), modality


def _check_finite_in_chunks(x: np.ndarray, where: str, chunk: int = 4096) -> None:
    """NaN/inf anywhere is an error naming the first bad sample; read in chunks (memory maps stay small)."""
    for start in range(0, x.shape[0], chunk):
        part = np.asarray(x[start:start + chunk], dtype=np.float32).reshape(min(chunk, x.shape[0] - start), -1)
        finite = np.isfinite(part).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite) + start
            raise DataError(
                f"{where} has NaN or infinite values (or values too large for float32), the first at sample "
                f"index {int(bad[0])}; remove or impute those samples"
            )


def _warn_out_of_range(x: np.ndarray | None, modality: str, where: str) -> None:
    if modality != "image" or x is None:
        return
    low, high = float(x.min()), float(x.max())
    if low < 0.0 or high > 1.0:
        warnings.warn(
            f"{where}: float images have values in [{low:.3g}, {high:.3g}], outside [0, 1]; "
            f"the image views expect [0, 1] (divide 0..255 images by 255)",
            stacklevel=4,
        )


def _prepare_y(y: np.ndarray, n: int, where: str, x_where: str) -> np.ndarray:
    """Validate labels: ``[N]`` integer-valued; returns int64 ``[N]`` (not yet remapped)."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{where} has shape {tuple(y.shape)}; labels must be one integer per sample, shape [N]")
    if len(y) != n:
        raise DataError(f"{where} has {len(y)} labels but {x_where} has {n} samples; they must match")
    if y.dtype.kind in "biu":
        return y.astype(np.int64)
    if y.dtype.kind == "f":
        ok = np.isfinite(y)
        ok[ok] = y[ok] == np.round(y[ok])
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            raise DataError(
                f"{where} is not integer-valued (sample {i} has label {y[i]!r}); labels must be class indices "
                f"or integer class ids"
            )
        return y.astype(np.int64)
    raise DataError(
        f"{where} has dtype {y.dtype}; labels must be integers (map class names to integers first, "
        f"e.g. with np.unique(y, return_inverse=True))"
    )


def _open_arrays(path: Path, object_error: str | None = None, expected: str | None = _ARRAY_FORMS) -> dict[str, np.ndarray]:
    """Every array in the file by key; a plain ``.npy`` array comes back under the key ``""``.

    Never unpickles. ``object_error``: the whole message for a file of Python objects (default: a
    hint appended to the generic one); ``expected``: what the generic message says the file should hold.
    """
    try:
        # A plain .npy is memory-mapped: rows are read when a batch asks for them.
        loaded = np.load(path, allow_pickle=False, mmap_mode="r" if path.suffix.lower() == ".npy" else None)
        if isinstance(loaded, np.ndarray):
            return {"": loaded}
        with loaded as npz:
            return {key: npz[key] for key in npz.files}
    except MemoryError:
        raise
    except Exception as err:
        reason = str(err).strip() or type(err).__name__
        pickled = "allow_pickle" in reason or "Python objects" in reason
        if pickled and object_error is not None:
            raise DataError(f"{path} {object_error}") from err
        hint = " (save plain numeric arrays, not Python objects)" if pickled else ""
        tail = f"; expected {expected}" if expected else ""
        raise DataError(f"{path} is not a readable {path.suffix.lower()} file ({reason}){hint}{tail}") from err


def load_arrays(path: str | os.PathLike[str]) -> DatasetSplits:
    """Load samples (and labels) from a ``.npy`` or ``.npz`` file.

    Samples ``[N, C, H, W]`` or ``[N, H, W]`` are images (uint8 scaled by 1/255, returned as
    ``[N, C, H, W]`` float32); ``[N, D]`` are feature vectors (float32, unchanged). Labels ``[N]``
    are remapped to ``0..K-1`` (``class_names`` keeps the original values as strings).
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{p} does not exist; pass {_ARRAY_FORMS}")
    if p.is_dir():
        raise DataError(f"{p} is a directory; pass a .npy/.npz file here, or use folder:PATH for a folder of images")
    if p.suffix.lower() not in ARRAY_EXTENSIONS:
        raise DataError(f"{p} is not a .npy or .npz file; pass {_ARRAY_FORMS}")

    arrays = _open_arrays(p)
    keys = sorted(arrays)
    if "" in arrays:  # a plain .npy: samples only
        parts: dict[str, tuple[str, str | None]] = {"train": ("", None)}
    elif "x" in arrays:
        if {"x_train", "x_test"} & set(keys):
            raise DataError(f"{p} has both 'x' and 'x_train'/'x_test'; keep one form ({_ARRAY_FORMS})")
        parts = {"train": ("x", "y" if "y" in arrays else None)}
    elif "x_train" in arrays:
        parts = {"train": ("x_train", "y_train" if "y_train" in arrays else None)}
        if "x_test" in arrays:
            parts["test"] = ("x_test", "y_test" if "y_test" in arrays else None)
        elif "y_test" in arrays:
            raise DataError(f"{p} has 'y_test' but no 'x_test'; add the test samples or drop 'y_test'")
    else:
        found = ", ".join(repr(k) for k in keys) if keys else "none"
        raise DataError(f"{p} has no samples under the expected keys (keys found: {found}); expected {_ARRAY_FORMS}")

    def where(key: str) -> str:
        return str(p) if key == "" else f"{p} (key {key!r})"

    xs: dict[str, Any] = {}
    ys: dict[str, np.ndarray | None] = {}
    modality = "vector"
    for split, (x_key, y_key) in parts.items():
        xs[split], modality = _prepare_x(arrays[x_key], where(x_key))
        ys[split] = None if y_key is None else _prepare_y(arrays[y_key], xs[split].shape[0], where(y_key), where(x_key))
    if "test" in xs:
        if xs["test"].shape[1:] != xs["train"].shape[1:]:
            raise DataError(
                f"{p}: 'x_train' samples have shape {tuple(arrays['x_train'].shape[1:])} but 'x_test' samples have "
                f"{tuple(arrays['x_test'].shape[1:])}; they must match"
            )
        if (ys["train"] is None) != (ys["test"] is None):
            have, lack = ("y_train", "y_test") if ys["test"] is None else ("y_test", "y_train")
            raise DataError(f"{p} has {have!r} but no {lack!r}; give labels for both splits or for neither")

    class_names: list[str] | None = None
    y_out: dict[str, torch.Tensor | None] = {split: None for split in xs}
    if ys["train"] is not None:
        classes = np.unique(ys["train"])
        class_names = [str(int(c)) for c in classes]
        if ys.get("test") is not None:
            unknown = np.setdiff1d(np.unique(ys["test"]), classes)
            if len(unknown):
                raise DataError(
                    f"{p}: 'y_test' has label(s) {', '.join(str(int(v)) for v in unknown[:10])} that never occur in "
                    f"'y_train'; train and test must use the same classes"
                )
        for split, y in ys.items():
            assert y is not None
            y_out[split] = torch.from_numpy(np.searchsorted(classes, y).astype(np.int64))

    made = {
        split: ArrayDataset(x=xs[split], y=y_out[split], name=str(p), modality=modality,
                            class_names=None if class_names is None else list(class_names))
        for split in xs
    }
    return DatasetSplits(train=made["train"], test=made.get("test"))
