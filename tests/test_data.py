"""Tests of selfsup.data: built-in datasets, image folders and .npy/.npz files (all written in tmp_path)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from selfsup.data.modalities import get_modality
from PIL import Image

from selfsup.data import DATASETS, ArrayDataset, DatasetSplits, list_datasets, load_dataset
from selfsup.data.files import load_arrays, load_image_folder
from selfsup.errors import ConfigError, DataError


def write_png(path: Path, size: tuple[int, int] = (6, 5), mode: str = "L", value: int = 128) -> Path:
    """Write a small image of ``size`` = (width, height) filled with ``value``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    color: int | tuple[int, int, int] = value if mode == "L" else (value, 0, 255 - value)
    Image.new(mode, size, color).save(path)
    return path


# ----------------------------------------------------------------------------------------------
# Built-in datasets
# ----------------------------------------------------------------------------------------------


def test_digits_shapes_range_and_split() -> None:
    data = load_dataset("digits")
    assert isinstance(data, DatasetSplits) and data.test is not None
    train, test = data.train, data.test
    assert train.x.shape == (1347, 1, 8, 8) and test.x.shape == (450, 1, 8, 8)
    assert train.x.dtype == torch.float32 and train.y is not None and train.y.dtype == torch.int64
    assert float(train.x.min()) == 0.0 and float(train.x.max()) == 1.0
    assert train.modality == "image" and train.class_names == [str(i) for i in range(10)]
    assert train.num_classes == 10 and test.num_classes == 10
    # stratified: every class in both splits, in roughly the same proportion
    counts = torch.bincount(test.y, minlength=10)
    assert int(counts.min()) >= 43 and int(counts.max()) <= 46
    # no sample shared between train and test (digits has no exact duplicates across the split)
    train_rows = {row.numpy().tobytes() for row in train.x.flatten(1)}
    assert not any(row.numpy().tobytes() in train_rows for row in test.x.flatten(1))
    # deterministic
    again = load_dataset("Digits")
    assert torch.equal(again.train.x, train.x) and torch.equal(again.test.y, test.y)


@pytest.mark.parametrize(("name", "dim", "n_train", "n_test", "classes"), [
    ("wine", 13, 133, 45, 3), ("breast_cancer", 30, 426, 143, 2),
])
def test_tabular_builtins_are_standardised(name: str, dim: int, n_train: int, n_test: int, classes: int) -> None:
    data = load_dataset(name)
    assert data.test is not None and data.train.modality == "vector"
    assert data.train.x.shape == (n_train, dim) and data.test.x.shape == (n_test, dim)
    assert data.train.x.dtype == torch.float32 and len(data.train.class_names or []) == classes
    assert torch.allclose(data.train.x.mean(0), torch.zeros(dim), atol=1e-5)
    assert torch.allclose(data.train.x.std(0, unbiased=False), torch.ones(dim), atol=1e-4)


def test_list_datasets_and_registry() -> None:
    assert {"digits", "wine", "breast_cancer"} <= set(list_datasets())
    assert "digits" in DATASETS


def test_unknown_name_suggests_digits() -> None:
    with pytest.raises(ConfigError) as info:
        load_dataset("digts")
    message = str(info.value)
    assert "Did you mean 'digits'?" in message and "wine" in message and ".npy/.npz" in message


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "data.npz"
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(str(missing))
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nowhere'}")
    with pytest.raises(DataError, match="does not exist"):
        load_arrays(missing)


# ----------------------------------------------------------------------------------------------
# Image folders
# ----------------------------------------------------------------------------------------------


def test_folder_train_test_layout(tmp_path: Path) -> None:
    for split, n in (("train", 3), ("test", 2)):
        for cls, value in (("cat", 0), ("dog", 255)):
            for i in range(n):
                write_png(tmp_path / split / cls / f"{i}.png", value=value)
    data = load_dataset(str(tmp_path))
    assert data.test is not None
    assert data.train.x.shape == (6, 1, 5, 6) and data.test.x.shape == (4, 1, 5, 6)
    assert data.train.class_names == ["cat", "dog"] == data.test.class_names
    assert data.train.y.tolist() == [0, 0, 0, 1, 1, 1] and data.test.y.tolist() == [0, 0, 1, 1]
    # Image files stay uint8 until the device (the image modality divides by 255 there).
    assert data.train.x.dtype == torch.uint8
    assert int(data.train.x[0].max()) == 0 and int(data.train.x[-1].min()) == 255


def test_folder_class_layout_with_upper_case_extensions(tmp_path: Path) -> None:
    write_png(tmp_path / "b" / "x.PNG")
    write_png(tmp_path / "a" / "y.jpg")
    write_png(tmp_path / "a" / "nested" / "z.BMP")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    data = load_dataset(f"folder:{tmp_path}")
    assert data.test is None and data.train.class_names == ["a", "b"]
    assert sorted(data.train.y.tolist()) == [0, 0, 1]
    assert data.train.x.dtype == torch.uint8


def test_folder_flat_layout_is_unlabeled(tmp_path: Path) -> None:
    for i in range(3):
        write_png(tmp_path / f"{i}.png", value=40 * i)
    data = load_image_folder(tmp_path)
    assert data.test is None and data.train.y is None and data.train.class_names is None
    assert data.train.x.shape == (3, 1, 5, 6)
    assert data.train.x[2, 0, 0, 0].item() == 80


def test_folder_mixed_gray_and_rgb_becomes_rgb(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", mode="L", value=51)
    write_png(tmp_path / "b.png", mode="RGB", value=255)
    data = load_image_folder(tmp_path)
    x = data.train.x
    assert x.shape == (2, 3, 5, 6)
    assert torch.equal(x[0], torch.full((3, 5, 6), 51, dtype=torch.uint8))  # gray copied to all three channels
    assert x[1, :, 0, 0].tolist() == [255, 0, 0]


def test_folder_resizes_to_most_common_size_with_one_warning(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", size=(6, 5))
    write_png(tmp_path / "b.png", size=(6, 5))
    write_png(tmp_path / "c.png", size=(12, 10))
    with pytest.warns(UserWarning, match="different sizes") as record:
        data = load_image_folder(tmp_path)
    assert len([w for w in record if "different sizes" in str(w.message)]) == 1
    assert data.train.x.shape == (3, 1, 5, 6)


def test_corrupt_image_names_the_file_and_can_be_skipped(tmp_path: Path) -> None:
    write_png(tmp_path / "cat" / "01.png")
    write_png(tmp_path / "dog" / "01.png")
    (tmp_path / "cat" / "07.png").write_bytes(b"this is not a png at all")
    with pytest.raises(DataError) as info:
        load_dataset(str(tmp_path))
    message = str(info.value)
    assert str(tmp_path / "cat" / "07.png") in message
    assert "not a readable image" in message and "skip_bad_files=True" in message
    with pytest.warns(UserWarning, match="07.png"):
        data = load_dataset(str(tmp_path), skip_bad_files=True)
    assert len(data.train) == 2 and data.train.class_names == ["cat", "dog"]


def test_empty_folder_lists_extensions(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(DataError, match=r"no image files found.*\.png.*\.tiff"):
        load_dataset(str(tmp_path))


def test_folder_errors(tmp_path: Path) -> None:
    file = write_png(tmp_path / "one.png")
    with pytest.raises(DataError, match="is a file, not a directory"):
        load_image_folder(file)
    with pytest.raises(DataError, match="single image"):
        load_dataset(str(file))
    root = tmp_path / "split"
    write_png(root / "train" / "a" / "0.png")
    write_png(root / "test" / "zebra" / "0.png")
    with pytest.raises(DataError, match="zebra"):
        load_image_folder(root)


# ----------------------------------------------------------------------------------------------
# .npy / .npz arrays
# ----------------------------------------------------------------------------------------------


def test_npy_uint8_images_are_scaled_and_channel_added(tmp_path: Path) -> None:
    x = np.full((4, 7, 7), 255, dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    data = load_dataset(str(tmp_path / "x.npy"))
    assert data.train.modality == "image" and data.train.y is None and data.test is None
    # uint8 stays uint8 (and memory-mapped); the image modality scales it by 1/255 on the device.
    assert data.train.x.shape == (4, 1, 7, 7) and int(data.train.x.max()) == 255
    assert float(get_modality("image").to_float(torch.as_tensor(data.train.x)).max()) == 1.0


def test_npz_train_test_vectors(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "tab.npz"
    np.savez(path, x_train=rng.normal(size=(10, 3)), y_train=np.arange(10) % 2,
             x_test=rng.normal(size=(4, 3)), y_test=np.array([0, 1, 1, 0]))
    data = load_dataset(f"arrays:{path}")
    assert data.test is not None and data.train.modality == "vector"
    assert data.train.x.shape == (10, 3) and data.train.x.dtype == torch.float32
    assert data.test.y.tolist() == [0, 1, 1, 0] and data.train.class_names == ["0", "1"]


def test_npz_label_remapping(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((5, 2), dtype=np.float32), y=np.array([10, -3, 7, 10, 7]))
    data = load_arrays(path)
    assert data.train.y.tolist() == [2, 0, 1, 2, 1]
    assert data.train.class_names == ["-3", "7", "10"] and data.train.num_classes == 3
    np.savez(path, x=np.zeros((3, 2)), y=np.array([1.0, 2.0, 1.0]))  # integer-valued floats are fine
    assert load_arrays(path).train.y.tolist() == [0, 1, 0]


def test_npz_nan_names_file_key_and_index(tmp_path: Path) -> None:
    x = np.zeros((6, 4), dtype=np.float32)
    x[3, 1] = np.nan
    x[5, 0] = np.inf
    path = tmp_path / "bad.npz"
    np.savez(path, x=x)
    with pytest.raises(DataError) as info:
        load_arrays(path)
    message = str(info.value)
    assert str(path) in message and "'x'" in message and "sample index 3" in message


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4, 5, 6)])
def test_bad_rank(tmp_path: Path, shape: tuple[int, ...]) -> None:
    np.save(tmp_path / "x.npy", np.zeros(shape, dtype=np.float32))
    with pytest.raises(DataError, match=r"accepted shapes are \[N, C, H, W\]"):
        load_arrays(tmp_path / "x.npy")


def test_npz_label_errors(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((4, 2)), y=np.array([0, 1, 0]))
    with pytest.raises(DataError, match="3 labels but .* 4 samples"):
        load_arrays(path)
    np.savez(path, x=np.zeros((3, 2)), y=np.array([0.0, 0.5, 1.0]))
    with pytest.raises(DataError, match="not integer-valued"):
        load_arrays(path)
    np.savez(path, x_train=np.zeros((3, 2)), y_train=np.array([0, 1, 0]), x_test=np.zeros((2, 2)), y_test=np.array([0, 5]))
    with pytest.raises(DataError, match="never occur"):
        load_arrays(path)


def test_npz_missing_keys_and_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, features=np.zeros((3, 2)), labels=np.zeros(3))
    with pytest.raises(DataError, match="keys found: 'features', 'labels'"):
        load_arrays(path)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"garbage, not a zip file")
    with pytest.raises(DataError, match="not a readable .npz file"):
        load_dataset(str(broken))


def test_array_dataset_contract() -> None:
    ds = ArrayDataset(torch.zeros(3, 1, 2, 2), torch.tensor([0, 2, 1]), "t", "image")
    assert len(ds) == 3 and ds.sample_shape == (1, 2, 2) and ds.num_classes == 3


def test_no_warnings_for_clean_folder(tmp_path: Path) -> None:
    write_png(tmp_path / "a" / "0.png")
    write_png(tmp_path / "b" / "0.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_image_folder(tmp_path)


def test_train_subset_is_fixed_and_leaves_the_test_split_whole() -> None:
    from selfsup.data import load_dataset

    full = load_dataset("digits")
    first, again = (load_dataset("digits", options={"train_subset": 200}) for _ in range(2))
    assert len(first.train) == 200 and len(first.test) == len(full.test)
    assert torch.equal(first.train.labels, again.train.labels)
    assert torch.equal(first.train.indices, again.train.indices)
    assert len(set(first.train.labels.tolist())) == 10  # a random draw, not the first 200 in file order
    assert len(load_dataset("digits", options={"train_subset": 10**6}).train) == len(full.train)
