"""Built-in datasets: real data that ships inside scikit-learn, so nothing is downloaded.

Each entry of :data:`DATASETS` is a function ``() -> DatasetSplits``. All of them use the same
fixed, stratified 75% / 25% train / test split (``random_state=0``), so results are comparable
between runs and machines.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from selfsup.data.base import ArrayDataset, DatasetSplits
from selfsup.registry import Registry

DATASETS: Registry[Callable[[], DatasetSplits]] = Registry("dataset")

TEST_FRACTION = 0.25
SPLIT_SEED = 0


def stratified_split(y: np.ndarray, test_fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split of ``range(len(y))``; returns sorted ``(train_idx, test_idx)``."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    train_idx, test_idx = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=y)
    return np.sort(train_idx), np.sort(test_idx)


def _splits(
    x: np.ndarray, y: np.ndarray, name: str, modality: str, class_names: list[str],
    transform: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
) -> DatasetSplits:
    train_idx, test_idx = stratified_split(y)
    x_train, x_test = x[train_idx], x[test_idx]
    if transform is not None:
        x_train, x_test = transform(x_train, x_test)

    def make(xs: np.ndarray, idx: np.ndarray) -> ArrayDataset:
        return ArrayDataset(
            x=torch.from_numpy(np.ascontiguousarray(xs, dtype=np.float32)),
            y=torch.from_numpy(y[idx].astype(np.int64)),
            name=name, modality=modality, class_names=list(class_names),
        )

    return DatasetSplits(train=make(x_train, train_idx), test=make(x_test, test_idx))


def standardize(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale ``[N, D]`` features to zero mean / unit variance using the train split's statistics."""
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (x_train - mean) / std, (x_test - mean) / std


@DATASETS.register("digits")
def digits() -> DatasetSplits:
    """Handwritten digits, 1797 images ``[N, 1, 8, 8]`` in ``[0, 1]``, 10 classes (1347 train / 450 test)."""
    from sklearn.datasets import load_digits

    bunch: Any = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    return _splits(x, y, "digits", "image", [str(c) for c in range(10)])


@DATASETS.register("wine")
def wine() -> DatasetSplits:
    """Wine recognition, 178 samples ``[N, 13]`` (standardised), 3 classes (133 train / 45 test)."""
    from sklearn.datasets import load_wine

    bunch: Any = load_wine()
    return _splits(bunch.data.astype(np.float64), bunch.target.astype(np.int64), "wine", "vector",
                   [str(n) for n in bunch.target_names], transform=standardize)


@DATASETS.register("breast_cancer")
def breast_cancer() -> DatasetSplits:
    """Breast cancer Wisconsin, 569 samples ``[N, 30]`` (standardised), 2 classes (426 train / 143 test)."""
    from sklearn.datasets import load_breast_cancer

    bunch: Any = load_breast_cancer()
    return _splits(bunch.data.astype(np.float64), bunch.target.astype(np.int64), "breast_cancer", "vector",
                   [str(n) for n in bunch.target_names], transform=standardize)
