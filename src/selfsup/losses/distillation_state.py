"""State of distillation methods, kept in buffers so that checkpoints save and restore it.

- :class:`DINOCenter`: the teacher's running centre and the centring + sharpening of its outputs
  (DINO, Caron et al. 2021, arXiv 2104.14294).
- :class:`PredictorCorrelation` and :func:`directpred_predictor`: the running correlation of the
  predictor's inputs and the linear predictor set from its eigendecomposition (DirectPred, Tian,
  Chen, Ganguli 2021, arXiv 2102.06810).

Both reduce over every rank when running distributed, so all ranks hold the same state.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn

from selfsup.core.distributed import world_size


def _all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of ``x`` over ranks (``x`` itself when not distributed)."""
    if world_size() == 1:
        return x
    x = x.clone()
    dist.all_reduce(x)
    return x / world_size()


class DINOCenter(nn.Module):
    """Centring and sharpening of the teacher's outputs (DINO, arXiv 2104.14294, sec. 3.1, eq. 4).

    The teacher's probabilities are ``softmax((g_t(x) - c) / tau_t)``. Centring (subtracting
    ``c``, a running mean of the teacher's logits) keeps one prototype from dominating; sharpening
    (a low ``tau_t``) keeps the output from becoming uniform. Alone, each leads to a different
    collapse; together they balance. The centre follows ``c <- m c + (1 - m) mean_batch g_t(x)``
    over the global batch.

    Args:
        dim: number of prototypes ``K``.
        momentum: ``m``, the centre's momentum (0.9 in the paper).
    """

    def __init__(self, dim: int, momentum: float = 0.9) -> None:
        super().__init__()
        if dim < 1 or not 0.0 <= momentum <= 1.0:
            raise ValueError(f"DINOCenter needs dim >= 1 and momentum in [0, 1]; got dim={dim}, momentum={momentum}")
        self.momentum = momentum
        self.register_buffer("center", torch.zeros(dim))

    @torch.no_grad()
    def forward(self, teacher_logits: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
        """Centred, sharpened teacher probabilities ``[N, K]`` (no gradient) of logits ``[N, K]``."""
        return torch.softmax((teacher_logits.to(self.center.dtype) - self.center) / temperature, dim=-1)

    @torch.no_grad()
    def update(self, teacher_logits: torch.Tensor) -> None:
        """Move the centre towards the mean of ``teacher_logits [M, K]`` over every rank's batch."""
        batch_mean = _all_reduce_mean(teacher_logits.detach().to(self.center.dtype).mean(dim=0))
        self.center.mul_(self.momentum).add_(batch_mean, alpha=1.0 - self.momentum)


def directpred_predictor(correlation: torch.Tensor, eps: float) -> torch.Tensor:
    """DirectPred's linear predictor ``W_p = U diag(p) U^T`` from a correlation ``F = U diag(s) U^T``.

    Tian, Chen, Ganguli 2021, arXiv 2102.06810, eq. (18): ``p_j = sqrt(s_j) / max_j' sqrt(s_j')
    + eps``, i.e. ``sqrt(s_j / max s) + eps``; ``eps`` boosts the weak eigen-directions so that
    they keep learning. Negative eigenvalues (round-off of a positive semi-definite ``F``) count
    as 0. An all-zero ``F`` gives ``eps * I``.

    Args:
        correlation: symmetric ``[D, D]``.
        eps: the added constant (0.1 in the paper).

    Returns:
        ``[D, D]``, symmetric, in the dtype of ``correlation``.
    """
    eigenvalues, eigenvectors = torch.linalg.eigh(correlation)  # ascending, U orthonormal
    eigenvalues = eigenvalues.clamp(min=0)
    largest = eigenvalues.max().clamp(min=torch.finfo(correlation.dtype).tiny)
    p = torch.sqrt(eigenvalues / largest) + eps
    return eigenvectors @ torch.diag(p) @ eigenvectors.T


class PredictorCorrelation(nn.Module):
    """Running correlation ``F = rho F + (1 - rho) E_B[f f^T]`` of the predictor's inputs (DirectPred).

    Tian, Chen, Ganguli 2021, arXiv 2102.06810, eq. (19). ``F`` starts at 0; since the
    predictor of eq. (18) does not depend on the scale of ``F``, this is equivalent to starting
    from the first batch's correlation up to a weight ``(1 - rho) rho^t`` on that batch.
    The batch expectation is taken over every rank's batch.

    Args:
        dim: dimension ``D`` of the predictor's inputs.
        rho: the running average's memory (0.3 in the paper).
    """

    def __init__(self, dim: int, rho: float = 0.3) -> None:
        super().__init__()
        if dim < 1 or not 0.0 <= rho < 1.0:
            raise ValueError(f"PredictorCorrelation needs dim >= 1 and rho in [0, 1); got dim={dim}, rho={rho}")
        self.rho = rho
        self.register_buffer("correlation", torch.zeros(dim, dim))

    @torch.no_grad()
    def update(self, features: torch.Tensor) -> None:
        """Fold in the batch ``features [n, D]`` (detached): ``E_B[f f^T] = f^T f / n``."""
        f = features.detach().to(self.correlation.dtype)
        batch = _all_reduce_mean(f.T @ f / f.shape[0])
        self.correlation.mul_(self.rho).add_(batch, alpha=1.0 - self.rho)

    def predictor(self, eps: float) -> torch.Tensor:
        """The predictor weight ``[D, D]`` of eq. (18) for the current ``F``."""
        return directpred_predictor(self.correlation, eps)
