"""Losses of distillation (teacher-student) methods."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalized_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between L2-normalised vectors, ``2 - 2 cos(p, z)`` per sample (BYOL).

    Grill et al. 2020, "Bootstrap Your Own Latent", arXiv 2006.07733, eq. (2). The target is
    used as given: callers pass a target without gradient (EMA teacher output).

    Args:
        prediction: online predictions ``[N, D]``.
        target: target projections ``[N, D]``.

    Returns:
        scalar, the mean over the N samples, in ``[0, 4]``.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"shapes differ: {tuple(prediction.shape)} vs {tuple(target.shape)}")
    cosine = F.cosine_similarity(prediction, target, dim=-1)  # [N]
    return (2.0 - 2.0 * cosine).mean()
