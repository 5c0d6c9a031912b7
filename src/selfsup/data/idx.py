"""IDX files (the MNIST format) and the built-in ``mnist`` / ``fashion_mnist`` datasets.

IDX is the format Y. LeCun, C. Cortes and C. J. C. Burges describe on the MNIST page
(http://yann.lecun.com/exdb/mnist/, "File formats for the MNIST database"): two zero bytes, a
type byte (``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32,
``0x0E`` float64), a byte with the number of dimensions, one big-endian uint32 size per
dimension, then the values in C order, big-endian. Fashion-MNIST (H. Xiao, K. Rasul, R. Vollgraf,
"Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning Algorithms",
arXiv:1708.07747, 2017) uses the same files and names as MNIST.

Nothing here downloads anything: the built-ins read installed files (Debian ships Fashion-MNIST
as ``dataset-fashion-mnist``, into ``/usr/share/datasets/fashion-mnist``) or a folder given by an
environment variable, and ``idx:DIR`` reads any folder of MNIST-format files. Both use the
official split (60,000 train / 10,000 test), not a resplit.

Images stay ``uint8`` ``[N, 1, H, W]`` (0..255): the image modality converts them to float on the
device, which keeps 60,000 images at 47 MB instead of 188 MB in memory.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from selfsup.data.base import ArrayDataset, DatasetSplits
from selfsup.data.builtin import DATASETS
from selfsup.errors import ConfigError, DataError

#: IDX type byte -> big-endian numpy dtype.
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

FASHION_MNIST_CLASSES: list[str] = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
MNIST_CLASSES: list[str] = [str(d) for d in range(10)]

#: Where the built-ins look, in order, when their environment variable is not set.
FASHION_MNIST_DIRS: tuple[str, ...] = (
    "/usr/share/datasets/fashion-mnist",  # Debian: apt-get install dataset-fashion-mnist
    "/usr/local/share/datasets/fashion-mnist",
    "~/.local/share/datasets/fashion-mnist",
)
MNIST_DIRS: tuple[str, ...] = (
    "/usr/share/datasets/mnist",
    "/usr/local/share/datasets/mnist",
    "~/.local/share/datasets/mnist",
)
FASHION_MNIST_ENV = "SELFSUP_FASHION_MNIST_DIR"
MNIST_ENV = "SELFSUP_MNIST_DIR"

_FILE_NAMES = (
    "train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz], optionally "
    "t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]"
)
_GZIP_MAGIC = b"\x1f\x8b"


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# ----------------------------------------------------------------------------------------------
# One IDX file
# ----------------------------------------------------------------------------------------------


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file, plain or gzip-compressed (detected by its first bytes, not its name).

    Returns a native-byte-order, writable array of the file's dtype and shape. Every problem
    (missing or unreadable file, corrupt gzip stream, wrong magic, unknown type byte, fewer or
    more data bytes than the header promises) raises a :class:`DataError` naming the file.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{p} does not exist; pass an IDX file (MNIST format, e.g. train-images-idx3-ubyte.gz)")
    if p.is_dir():
        raise DataError(f"{p} is a directory; pass one IDX file here, or use idx:DIR for a folder of MNIST-format files")
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise DataError(f"{p} cannot be read ({_one_line(err.strerror or err)}); check its permissions") from err

    where = str(p)
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(
                f"{p} is a corrupt or truncated gzip file ({_one_line(err)}); copy or reinstall it"
            ) from err
        where = f"{p} (after gunzip)"

    if len(raw) < 4:
        raise DataError(f"{where} is only {len(raw)} bytes, too short for an IDX header (4 bytes); the file is truncated or not an IDX file")
    if raw[0] != 0 or raw[1] != 0:
        raise DataError(
            f"{where} is not an IDX file: it starts with 0x{raw[:4].hex()}, an IDX file starts with two zero bytes "
            f"(then a type byte and a dimension count); pass an MNIST-format file, plain or gzip-compressed"
        )
    code, ndim = raw[2], raw[3]
    if code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02X} {d.name}" for c, d in IDX_TYPES.items())
        raise DataError(f"{where} has unknown IDX type byte 0x{code:02X} (known: {known}); the file is corrupt or not an IDX file")
    if ndim == 0:
        raise DataError(f"{where} has an IDX header with 0 dimensions; an IDX dataset needs at least one (samples)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"{where} is truncated: its header promises {ndim} dimension sizes ({header} header bytes) but the file "
            f"has {len(raw)} bytes; copy or reinstall it"
        )
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[code]
    count = 1
    for s in shape:
        count *= s
    expected = count * dtype.itemsize
    have = len(raw) - header
    if have < expected:
        raise DataError(
            f"{where} is truncated: its header promises shape {shape} of {dtype.name} ({expected} data bytes) but only "
            f"{have} follow; copy or reinstall it"
        )
    if have > expected:
        raise DataError(
            f"{where} has {have - expected} bytes after the data its header describes (shape {shape} of {dtype.name}, "
            f"{expected} bytes); the header and the data disagree, so the file is corrupt or not an IDX file"
        )
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=header)
    return data.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


# ----------------------------------------------------------------------------------------------
# A folder of MNIST-format files
# ----------------------------------------------------------------------------------------------


def _candidates(prefix: str, kind: str, idx: str) -> list[str]:
    """File names accepted for one file, uncompressed first (faster), e.g. train-images-idx3-ubyte."""
    stems = (f"{prefix}-{kind}-{idx}-ubyte", f"{prefix}-{kind}.{idx}-ubyte")
    return list(stems) + [s + ".gz" for s in stems]


def _find(directory: Path, prefix: str, kind: str, idx: str) -> Path | None:
    for name in _candidates(prefix, kind, idx):
        path = directory / name
        if path.is_file():
            return path
    return None


def _read_images(path: Path) -> np.ndarray:
    x = read_idx(path)
    if x.ndim != 3:
        raise DataError(
            f"{path} holds an array of shape {x.shape}; images must be 3-D [N, H, W] (an idx3 file); "
            f"check that the images and labels files are not swapped"
        )
    if x.dtype != np.uint8:
        raise DataError(
            f"{path} holds {x.dtype} values; images must be unsigned bytes (IDX type 0x08, 0..255); "
            f"for other image arrays save a .npy file and use arrays:PATH"
        )
    if x.shape[0] == 0:
        raise DataError(f"{path} holds no images (shape {x.shape}); pass a file with at least one image")
    return x


def _read_labels(path: Path, images: Path, n: int) -> np.ndarray:
    y = read_idx(path)
    if y.ndim != 1:
        raise DataError(
            f"{path} holds an array of shape {y.shape}; labels must be 1-D [N] (an idx1 file); "
            f"check that the images and labels files are not swapped"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path} holds {y.dtype} values; labels must be integers (IDX type 0x08, 0x09, 0x0B or 0x0C)")
    if len(y) != n:
        raise DataError(
            f"{path} has {len(y)} labels but {images} has {n} images; they must match (one label per image), "
            f"so check that both files come from the same split and are complete"
        )
    if len(y) and int(y.min()) < 0:
        raise DataError(f"{path} has a negative label ({int(y.min())}); labels must be class indices 0..K-1")
    return y.astype(np.int64)


def load_idx_folder(
    directory: str | os.PathLike[str], name: str | None = None, class_names: list[str] | None = None,
) -> DatasetSplits:
    """Load a folder of MNIST-format IDX files into train (and, when present, test) splits.

    The folder holds ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte``, optionally
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``; each may be gzip-compressed
    (``.gz``) and may use ``.`` instead of the last ``-`` (``train-images.idx3-ubyte``). Labels
    are optional (``y=None`` without them). Images become ``uint8`` ``[N, 1, H, W]``, labels
    ``int64`` ``[N]``; ``class_names`` defaults to ``"0"``..``"K-1"`` for the largest label.
    """
    root = Path(directory).expanduser()
    if not root.exists():
        raise DataError(f"{root} does not exist; pass a folder holding {_FILE_NAMES}")
    if not root.is_dir():
        raise DataError(f"{root} is a file, not a folder; pass the folder that holds {_FILE_NAMES}")
    label = name if name is not None else str(directory)

    train_images = _find(root, "train", "images", "idx3")
    if train_images is None:
        present = sorted(p.name for p in root.iterdir() if "idx" in p.name.lower())
        seen = f" (IDX-like files there: {', '.join(present)})" if present else ""
        raise DataError(
            f"{root} has no training images: looked for {', '.join(_candidates('train', 'images', 'idx3'))}{seen}; "
            f"put the files there under the MNIST names ({_FILE_NAMES})"
        )
    x_train = _read_images(train_images)
    train_labels = _find(root, "train", "labels", "idx1")
    y_train = None if train_labels is None else _read_labels(train_labels, train_images, len(x_train))

    test_images = _find(root, "t10k", "images", "idx3")
    test_labels = _find(root, "t10k", "labels", "idx1")
    x_test = y_test = None
    if test_images is None and test_labels is not None:
        raise DataError(
            f"{test_labels} has test labels but {root} has no t10k-images-idx3-ubyte[.gz]; add the test images or remove the labels file"
        )
    if test_images is not None:
        x_test = _read_images(test_images)
        if x_test.shape[1:] != x_train.shape[1:]:
            raise DataError(
                f"{test_images} holds {x_test.shape[1]}x{x_test.shape[2]} images but {train_images} holds "
                f"{x_train.shape[1]}x{x_train.shape[2]}; train and test images must have the same size"
            )
        if test_labels is not None:
            y_test = _read_labels(test_labels, test_images, len(x_test))

    labels = [y for y in (y_train, y_test) if y is not None and len(y)]
    if class_names is not None:
        top = max((int(y.max()) for y in labels), default=-1)
        if top >= len(class_names):
            raise DataError(f"{root} has label {top} but only {len(class_names)} class names are known; the labels files are corrupt")
        names: list[str] | None = list(class_names)
    elif labels:
        names = [str(i) for i in range(max(int(y.max()) for y in labels) + 1)]
    else:
        names = None

    def make(x: np.ndarray, y: np.ndarray | None) -> ArrayDataset:
        return ArrayDataset(
            x=torch.from_numpy(x).unsqueeze(1),
            y=None if y is None else torch.from_numpy(y),
            name=label, modality="image", class_names=None if names is None else list(names),
        )

    return DatasetSplits(train=make(x_train, y_train), test=None if x_test is None else make(x_test, y_test))


def parse_idx_spec(rest: str) -> DatasetSplits:
    """Load the dataset spec ``idx:DIR``; ``rest`` is the text after ``idx:``."""
    text = rest.strip()
    if not text:
        raise ConfigError(f"dataset spec 'idx:' has no folder after 'idx:'; write idx:DIR with a folder holding {_FILE_NAMES}")
    path = Path(text).expanduser()
    if path.is_file():
        raise DataError(f"{path} is a file; idx:DIR takes the folder that holds it ({path.parent}) and the other MNIST-format files")
    return load_idx_folder(path, name=text)


# ----------------------------------------------------------------------------------------------
# Built-in datasets read from installed files
# ----------------------------------------------------------------------------------------------


def _installed(env: str, dirs: tuple[str, ...], dataset: str, install: str) -> Path:
    """The folder that holds ``dataset``'s files: ``$env`` when set, else the first of ``dirs`` with them."""
    override = os.environ.get(env, "").strip()
    if override:
        path = Path(override).expanduser()
        if not path.is_dir() or _find(path, "train", "images", "idx3") is None:
            raise DataError(
                f"{env}={override} does not hold the {dataset} files ({_FILE_NAMES}); point {env} at the folder "
                f"that holds them, or unset it to use {dirs[0]}"
            )
        return path
    for d in dirs:
        path = Path(d).expanduser()
        if path.is_dir() and _find(path, "train", "images", "idx3") is not None:
            return path
    raise DataError(
        f"{dataset} is not installed (looked in {', '.join(dirs)}); {install}, or set {env} to a folder holding "
        f"{_FILE_NAMES}, or pass --data idx:DIR (nothing is downloaded)"
    )


@DATASETS.register("fashion_mnist")
def fashion_mnist() -> DatasetSplits:
    """Fashion-MNIST (Xiao et al. 2017), 28x28 grey clothes, 10 classes, 60,000 train / 10,000 test, ``uint8``.

    Read from ``$SELFSUP_FASHION_MNIST_DIR`` or :data:`FASHION_MNIST_DIRS`
    (``apt-get install dataset-fashion-mnist`` on Debian/Ubuntu).
    """
    root = _installed(FASHION_MNIST_ENV, FASHION_MNIST_DIRS, "Fashion-MNIST",
                      "install it with `apt-get install dataset-fashion-mnist`")
    return load_idx_folder(root, name="fashion_mnist", class_names=FASHION_MNIST_CLASSES)


@DATASETS.register("mnist")
def mnist() -> DatasetSplits:
    """MNIST handwritten digits (LeCun et al.), 28x28, 10 classes, 60,000 train / 10,000 test, ``uint8``.

    Read from ``$SELFSUP_MNIST_DIR`` or :data:`MNIST_DIRS`; no Debian package ships MNIST, so copy
    the four files from http://yann.lecun.com/exdb/mnist/ (or a torchvision ``MNIST/raw`` folder) there.
    """
    root = _installed(MNIST_ENV, MNIST_DIRS, "MNIST",
                      "copy the four MNIST files (train-images-idx3-ubyte.gz, ...) into /usr/share/datasets/mnist")
    return load_idx_folder(root, name="mnist", class_names=MNIST_CLASSES)


__all__ = [
    "read_idx", "load_idx_folder", "parse_idx_spec", "fashion_mnist", "mnist",
    "FASHION_MNIST_CLASSES", "MNIST_CLASSES", "FASHION_MNIST_DIRS", "MNIST_DIRS", "IDX_TYPES",
]
