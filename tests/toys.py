"""Small synthetic data sets shared by the tests."""

from __future__ import annotations

import numpy as np


def blobs(n_per_class: int, num_classes: int, dim: int, sep: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian classes: unit-variance noise around centres at distance ``sep`` from the origin, shuffled."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_classes, dim))
    centers *= sep / np.linalg.norm(centers, axis=1, keepdims=True)
    y = np.repeat(np.arange(num_classes), n_per_class)
    x = centers[y] + rng.normal(size=(y.size, dim))
    perm = rng.permutation(y.size)
    return x[perm].astype(np.float32), y[perm]
