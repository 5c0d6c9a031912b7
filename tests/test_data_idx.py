"""Tests of selfsup.data.idx: IDX files (MNIST format), idx:DIR folders and the fashion_mnist / mnist built-ins."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from selfsup.data.builtin import DATASETS
from selfsup.data.idx import (
    FASHION_MNIST_CLASSES, IDX_TYPES, fashion_mnist, load_idx_folder, mnist, parse_idx_spec, read_idx,
)
from selfsup.errors import ConfigError, DataError

CODES = {np.dtype(d.str.replace(">", "").replace("|", "")).name: c for c, d in IDX_TYPES.items()}


def idx_bytes(arr: np.ndarray, code: int | None = None) -> bytes:
    """Encode ``arr`` as IDX: two zero bytes, type byte, ndim, big-endian sizes, big-endian data."""
    arr = np.asarray(arr)
    code = CODES[arr.dtype.name] if code is None else code
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, arr: np.ndarray | bytes, gz: bool | None = None) -> Path:
    """Write an IDX file (gzip-compressed when ``gz``, default: when the name ends with .gz)."""
    data = arr if isinstance(arr, bytes) else idx_bytes(arr)
    if gz if gz is not None else path.name.endswith(".gz"):
        data = gzip.compress(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def fake_mnist(root: Path, n_train: int = 12, n_test: int | None = 5, h: int = 4, w: int = 3, gz: bool = True,
               labels: bool = True, dot: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Write a tiny MNIST-format folder; returns the train images and labels written."""
    rng = np.random.default_rng(0)
    ext = ".gz" if gz else ""
    sep = "." if dot else "-"
    x = rng.integers(0, 256, size=(n_train, h, w), dtype=np.uint8)
    y = (np.arange(n_train) % 3).astype(np.uint8)
    write_idx(root / f"train-images{sep}idx3-ubyte{ext}", x)
    if labels:
        write_idx(root / f"train-labels{sep}idx1-ubyte{ext}", y)
    if n_test is not None:
        write_idx(root / f"t10k-images{sep}idx3-ubyte{ext}", rng.integers(0, 256, size=(n_test, h, w), dtype=np.uint8))
        if labels:
            write_idx(root / f"t10k-labels{sep}idx1-ubyte{ext}", (np.arange(n_test) % 3).astype(np.uint8))
    return x, y


# ----------------------------------------------------------------------------------------------
# read_idx
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype,shape", [
    ("uint8", (7, 3, 2)), ("int8", (5,)), ("int16", (2, 3)), ("int32", (4, 1, 2, 3)),
    ("float32", (3, 4)), ("float64", (6,)),
])
def test_read_idx_round_trip(tmp_path: Path, gz: bool, dtype: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None:
        arr = rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype)
    else:
        arr = rng.standard_normal(shape).astype(dtype)
    path = write_idx(tmp_path / "data.idx", arr, gz=gz)  # the name never says .gz: detected by magic bytes
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.shape == shape
    np.testing.assert_array_equal(out, arr)
    assert out.flags.writeable


def test_read_idx_plain_file_named_gz_and_empty_dimension(tmp_path: Path) -> None:
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "x.gz", arr, gz=False)), arr)
    empty = read_idx(write_idx(tmp_path / "e", np.zeros((0, 4), dtype=np.int32)))
    assert empty.shape == (0, 4) and empty.dtype == np.int32


def test_read_idx_big_endian_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "be"
    path.write_bytes(bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE]))
    np.testing.assert_array_equal(read_idx(path), np.array([0x0102, -2], dtype=np.int16))


def _good(n: int = 4) -> bytes:
    return idx_bytes(np.arange(n, dtype=np.uint8))


@pytest.mark.parametrize("content,gz,words", [
    (b"\x01\x00\x08\x01" + _good()[4:], False, "not an IDX file"),
    (b"PK\x03\x04rest-of-a-zip", False, "not an IDX file"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", False, "unknown IDX type byte 0x07"),
    (b"\x00\x00\x08", False, "too short"),
    (b"", False, "too short"),
    (b"\x00\x00\x08\x02\x00\x00\x00\x02", False, "truncated"),  # header cut inside the sizes
    (_good()[:-1], False, "truncated"),
    (_good() + b"\x00\x00", False, "2 bytes after the data"),
    (_good()[:-1], True, "truncated"),
    (b"\x00\x00\x08\x00", False, "0 dimensions"),
])
def test_read_idx_errors(tmp_path: Path, content: bytes, gz: bool, words: str) -> None:
    path = tmp_path / "bad-file-idx1-ubyte"
    path.write_bytes(gzip.compress(content) if gz else content)
    with pytest.raises(DataError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message and words in message and "\n" not in message


@pytest.mark.parametrize("damage", ["cut", "crc", "garbage"])
def test_read_idx_corrupt_gzip(tmp_path: Path, damage: str) -> None:
    data = bytearray(gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32))))
    if damage == "cut":
        data = data[: len(data) // 2]
    elif damage == "crc":
        data[-8] ^= 0xFF
    else:
        data[12:40] = b"\xff" * 28
    path = tmp_path / "broken.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="gzip") as info:
        read_idx(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_read_idx_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nope")
    with pytest.raises(DataError, match="is a directory"):
        read_idx(tmp_path)


# ----------------------------------------------------------------------------------------------
# load_idx_folder / parse_idx_spec
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz,dot", [(True, False), (False, False), (True, True), (False, True)])
def test_load_idx_folder_shapes(tmp_path: Path, gz: bool, dot: bool) -> None:
    x, y = fake_mnist(tmp_path, gz=gz, dot=dot)
    splits = load_idx_folder(tmp_path)
    train, test = splits.train, splits.test
    assert test is not None
    assert train.x.shape == (12, 1, 4, 3) and train.x.dtype == torch.uint8
    assert test.x.shape == (5, 1, 4, 3) and test.x.dtype == torch.uint8
    assert train.y is not None and train.y.dtype == torch.int64 and train.y.shape == (12,)
    assert test.y is not None and test.y.dtype == torch.int64 and test.y.shape == (5,)
    np.testing.assert_array_equal(train.x[:, 0].numpy(), x)  # not rescaled: still 0..255
    np.testing.assert_array_equal(train.y.numpy(), y)
    assert train.modality == test.modality == "image"
    assert train.class_names == ["0", "1", "2"] and train.name == str(tmp_path)


def test_load_idx_folder_without_test_or_labels(tmp_path: Path) -> None:
    fake_mnist(tmp_path / "a", n_test=None)
    splits = load_idx_folder(tmp_path / "a", name="tiny", class_names=["a", "b", "c", "d"])
    assert splits.test is None and splits.train.name == "tiny" and splits.train.class_names == ["a", "b", "c", "d"]
    fake_mnist(tmp_path / "b", labels=False)
    splits = load_idx_folder(tmp_path / "b")
    assert splits.train.y is None and splits.test is not None and splits.test.y is None
    assert splits.train.class_names is None and splits.train.x.shape == (12, 1, 4, 3)


def test_load_idx_folder_prefers_plain_file_when_both_exist(tmp_path: Path) -> None:
    fake_mnist(tmp_path, gz=False, n_test=None)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not even gzip")
    assert load_idx_folder(tmp_path).train.x.shape == (12, 1, 4, 3)


def _error(root: Path) -> str:
    with pytest.raises(DataError) as info:
        load_idx_folder(root)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_load_idx_folder_errors(tmp_path: Path) -> None:
    assert "does not exist" in _error(tmp_path / "missing")
    (tmp_path / "file").write_bytes(b"x")
    assert "is a file" in _error(tmp_path / "file")

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "train-labels-idx1-ubyte").write_bytes(b"")
    message = _error(empty)
    assert "train-images-idx3-ubyte" in message and "train-labels-idx1-ubyte" in message  # shows what is there

    count = tmp_path / "count"
    fake_mnist(count, n_test=None)
    write_idx(count / "train-labels-idx1-ubyte.gz", np.zeros(11, dtype=np.uint8))
    message = _error(count)
    assert "train-labels-idx1-ubyte.gz" in message and "11 labels" in message and "12 images" in message

    labels2d = tmp_path / "labels2d"
    fake_mnist(labels2d, n_test=None)
    write_idx(labels2d / "train-labels-idx1-ubyte.gz", np.zeros((12, 2), dtype=np.uint8))
    assert "train-labels-idx1-ubyte.gz" in (m := _error(labels2d)) and "1-D" in m

    images4d = tmp_path / "images4d"
    fake_mnist(images4d, n_test=None)
    write_idx(images4d / "train-images-idx3-ubyte.gz", np.zeros((12, 1, 4, 3), dtype=np.uint8))
    assert "train-images-idx3-ubyte.gz" in (m := _error(images4d)) and "3-D" in m

    floats = tmp_path / "floats"
    fake_mnist(floats, n_test=None)
    write_idx(floats / "train-images-idx3-ubyte.gz", np.zeros((12, 4, 3), dtype=np.float32))
    assert "train-images-idx3-ubyte.gz" in (m := _error(floats)) and "unsigned bytes" in m

    size = tmp_path / "size"
    fake_mnist(size, h=4, w=3)
    write_idx(size / "t10k-images-idx3-ubyte.gz", np.zeros((5, 5, 5), dtype=np.uint8))
    assert "t10k-images-idx3-ubyte.gz" in (m := _error(size)) and "same size" in m

    orphan = tmp_path / "orphan"
    fake_mnist(orphan)
    (orphan / "t10k-images-idx3-ubyte.gz").unlink()
    assert "t10k-labels-idx1-ubyte.gz" in _error(orphan)

    corrupt = tmp_path / "corrupt"
    fake_mnist(corrupt)
    (corrupt / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    assert "t10k-labels-idx1-ubyte.gz" in (m := _error(corrupt)) and "gzip" in m


def test_load_idx_folder_class_names_must_cover_labels(tmp_path: Path) -> None:
    fake_mnist(tmp_path)
    with pytest.raises(DataError, match="label 2"):
        load_idx_folder(tmp_path, class_names=["a", "b"])


def test_parse_idx_spec(tmp_path: Path) -> None:
    fake_mnist(tmp_path)
    splits = parse_idx_spec(f" {tmp_path} ")
    assert splits.train.x.shape == (12, 1, 4, 3) and splits.train.name == str(tmp_path)
    with pytest.raises(ConfigError):
        parse_idx_spec("  ")
    with pytest.raises(DataError, match="is a file"):
        parse_idx_spec(str(tmp_path / "train-images-idx3-ubyte.gz"))
    with pytest.raises(DataError, match="does not exist"):
        parse_idx_spec(str(tmp_path / "nowhere"))


# ----------------------------------------------------------------------------------------------
# Built-ins
# ----------------------------------------------------------------------------------------------


def test_builtins_registered() -> None:
    assert DATASETS.get("fashion_mnist") is fashion_mnist
    assert DATASETS.get("mnist") is mnist


def test_builtins_read_env_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_mnist(tmp_path / "m", n_train=10)
    monkeypatch.setenv("SELFSUP_MNIST_DIR", str(tmp_path / "m"))
    splits = mnist()
    assert splits.train.name == "mnist" and splits.train.class_names == [str(d) for d in range(10)]
    assert splits.train.x.shape == (10, 1, 4, 3) and splits.test is not None

    monkeypatch.setenv("SELFSUP_FASHION_MNIST_DIR", str(tmp_path / "m"))
    assert fashion_mnist().train.class_names == FASHION_MNIST_CLASSES

    monkeypatch.setenv("SELFSUP_FASHION_MNIST_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(DataError, match="SELFSUP_FASHION_MNIST_DIR"):
        fashion_mnist()


def test_builtins_missing_files_say_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import selfsup.data.idx as idx

    monkeypatch.delenv("SELFSUP_FASHION_MNIST_DIR", raising=False)
    monkeypatch.delenv("SELFSUP_MNIST_DIR", raising=False)
    monkeypatch.setattr(idx, "FASHION_MNIST_DIRS", (str(tmp_path / "none"),))
    monkeypatch.setattr(idx, "MNIST_DIRS", (str(tmp_path / "none"),))
    with pytest.raises(DataError) as info:
        fashion_mnist()
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message and "idx:DIR" in message and "\n" not in message
    with pytest.raises(DataError) as info:
        mnist()
    assert "SELFSUP_MNIST_DIR" in str(info.value) and "idx:DIR" in str(info.value)


def test_fashion_mnist_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    monkeypatch.delenv("SELFSUP_FASHION_MNIST_DIR", raising=False)
    splits = DATASETS.get("fashion_mnist")()
    assert splits.test is not None and splits.train.y is not None and splits.test.y is not None
    assert splits.train.x.shape == (60000, 1, 28, 28) and splits.train.x.dtype == torch.uint8
    assert splits.test.x.shape == (10000, 1, 28, 28) and splits.test.x.dtype == torch.uint8
    assert splits.train.y.shape == (60000,) and splits.train.y.dtype == torch.int64
    assert splits.train.num_classes == 10 and splits.train.class_names == FASHION_MNIST_CLASSES
    assert torch.equal(torch.bincount(splits.test.y), torch.full((10,), 1000))
