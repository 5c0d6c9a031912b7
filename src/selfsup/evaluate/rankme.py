"""RankMe: the effective rank of an embedding matrix, a label-free proxy for representation quality.

Garrido, Balestriero, Najman & LeCun 2023, "RankMe: Assessing the Downstream Performance of
Pretrained Self-Supervised Representations by Their Rank" (ICML 2023, arXiv 2210.02885), which
applies the effective rank of Roy & Vetterli 2007 to the (uncentred) embedding matrix. A collapsed
encoder scores near 1; the maximum is ``min(N, D)``.
"""

from __future__ import annotations

import numpy as np
import torch

from selfsup.errors import ConfigError, DataError
from selfsup.evaluate.common import ArrayLike


def _as_float64_matrix(embeddings: ArrayLike) -> np.ndarray:
    if isinstance(embeddings, torch.Tensor):
        arr = embeddings.detach().cpu().to(torch.float64).numpy()
    else:
        arr = np.asarray(embeddings)
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(arr):
            raise DataError(f"embeddings must be a real numeric array of shape [N, D], got dtype {arr.dtype}")
        arr = arr.astype(np.float64, copy=False)
    if arr.ndim != 2:
        raise DataError(f"embeddings must be a 2-D array of shape [N, D], got shape {arr.shape}")
    if arr.size == 0:
        raise DataError(f"embeddings is empty (shape {arr.shape})")
    if not np.isfinite(arr).all():
        raise DataError("embeddings contains NaN or infinite values; RankMe is undefined for them")
    return arr


def singular_values(embeddings: ArrayLike) -> np.ndarray:
    """Singular values of the uncentred embedding matrix, in float64.

    Args:
        embeddings: ``[N, D]`` numpy array or torch tensor (any device; gradients are ignored).

    Returns:
        ``[min(N, D)]`` float64 array, descending.

    Raises:
        DataError: if ``embeddings`` is not a finite 2-D numeric array.
    """
    arr = _as_float64_matrix(embeddings)
    return np.linalg.svd(arr, compute_uv=False)


def rankme(embeddings: ArrayLike, eps: float = 1e-7) -> float:
    """RankMe of Garrido et al. 2023 (arXiv 2210.02885), computed in float64.

    With ``σ`` the singular values of the uncentred ``[N, D]`` matrix (as in the paper),
    ``p_k = σ_k / ||σ||_1 + eps`` and ``RankMe = exp(-Σ_k p_k log p_k)``. It lies in about
    ``[1, min(N, D)]``: ``r`` equal non-zero singular values give ``≈ r``. An all-zero matrix gives ``≈ 1``.

    Args:
        embeddings: ``[N, D]`` numpy array or torch tensor.
        eps: the paper's small constant that keeps ``log p_k`` finite.

    Returns:
        RankMe as a Python float.
    """
    if not eps >= 0:
        raise ConfigError(f"eps must be non-negative, got {eps}")
    sigma = singular_values(embeddings)
    total = sigma.sum()
    p = (sigma / total if total > 0 else np.zeros_like(sigma)) + eps
    return float(np.exp(-np.sum(p * np.log(p))))
