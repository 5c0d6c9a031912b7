"""Information-maximisation losses: decorrelate embedding dimensions instead of using negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _off_diagonal(matrix: torch.Tensor) -> torch.Tensor:
    """The off-diagonal entries of a square ``[D, D]`` matrix, flattened to ``[D * (D - 1)]``."""
    D = matrix.shape[0]
    return matrix.flatten()[:-1].view(D - 1, D + 1)[:, 1:].flatten()


def barlow_twins_loss(
    z1: torch.Tensor, z2: torch.Tensor, lambda_offdiag: float = 5.1e-3, eps: float = 1e-5
) -> torch.Tensor:
    """Barlow Twins redundancy-reduction loss.

    Zbontar, Jing, Misra, LeCun, Deny 2021, "Barlow Twins: Self-Supervised Learning via Redundancy
    Reduction", arXiv 2103.03230, eq. (1)-(2). Each embedding dimension is standardised over the
    batch (mean 0, std 1, biased std as in batch norm); ``C = z1n^T z2n / N`` is the
    cross-correlation matrix; the loss pulls its diagonal to 1 (invariance) and its off-diagonal to
    0 (redundancy reduction): ``sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2``.

    Args:
        z1, z2: projections of the two views ``[N, D]``.
        lambda_offdiag: weight of the off-diagonal term (the paper's 0.0051).
        eps: added to the variance before the square root.

    Returns:
        scalar loss.
    """
    N, D = z1.shape
    z1n = F.batch_norm(z1, None, None, training=True, eps=eps)  # per-dimension standardisation
    z2n = F.batch_norm(z2, None, None, training=True, eps=eps)
    c = z1n.T @ z2n / N  # [D, D]
    on_diag = (1.0 - torch.diagonal(c)).pow(2).sum()
    off_diag = _off_diagonal(c).pow(2).sum()
    return on_diag + lambda_offdiag * off_diag


def vicreg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    invariance_weight: float = 25.0,
    variance_weight: float = 25.0,
    covariance_weight: float = 1.0,
    eps: float = 1e-4,
) -> torch.Tensor:
    """VICReg: variance-invariance-covariance regularisation.

    Bardes, Ponce, LeCun 2022, "VICReg", arXiv 2105.04906, eq. (1)-(6), default weights
    lambda = mu = 25, nu = 1. Terms, for projections ``Z, Z'`` ``[N, D]``:

    - invariance ``s = mean((Z - Z')^2)`` over samples and dimensions;
    - variance ``v(Z) = mean_j relu(1 - sqrt(Var(Z_j) + eps))`` (unbiased variance), a hinge that
      keeps every dimension's std at least 1 (prevents complete collapse);
    - covariance ``c(Z) = sum_{i != j} Cov(Z)_ij^2 / D`` (decorrelates dimensions).

    As in the authors' released code (the weights were tuned with it), the two branches'
    variance terms are averaged and their covariance terms summed.

    Returns:
        scalar loss.
    """
    N, D = z1.shape
    invariance = F.mse_loss(z1, z2)

    def variance(z: torch.Tensor) -> torch.Tensor:
        std = torch.sqrt(z.var(dim=0) + eps)
        return F.relu(1.0 - std).mean()

    def covariance(z: torch.Tensor) -> torch.Tensor:
        zc = z - z.mean(dim=0)
        cov = zc.T @ zc / (N - 1)  # [D, D]
        return _off_diagonal(cov).pow(2).sum() / D

    var_term = 0.5 * (variance(z1) + variance(z2))
    cov_term = covariance(z1) + covariance(z2)
    return invariance_weight * invariance + variance_weight * var_term + covariance_weight * cov_term
