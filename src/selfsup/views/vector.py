"""Views of feature vectors (tabular data): random feature corruption plus Gaussian noise.

Corruption replaces a random subset of each sample's features with the same features of another
random sample of the batch, drawing from the empirical marginals as in SCARF (Bahri, Jiang, Tay,
Metzler 2022, "SCARF: Self-Supervised Contrastive Learning using Random Feature Corruption",
arXiv 2106.15147), batched here within the current batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch

from selfsup.config import NonNegativeFloat, Range
from selfsup.views.base import Views, register_views


@dataclass
class VectorViewsConfig:
    # Fraction of features replaced per sample (SCARF's default); at 1 a view would keep nothing of its sample.
    corruption_rate: Annotated[float, Range(ge=0, lt=1)] = 0.6
    noise_std: NonNegativeFloat = 0.0


@register_views("vector")
class VectorViews:
    """``batch: [N, D]`` -> views ``[N, D]`` with per-sample corrupted features."""

    Config = VectorViewsConfig

    def __init__(self, config: VectorViewsConfig) -> None:
        self.config = config

    def view(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        N, D = x.shape
        corrupt = torch.rand(N, D, generator=g, device=x.device) < self.config.corruption_rate
        donors = torch.randint(0, N, (N, D), generator=g, device=x.device)
        replacement = torch.gather(x, 0, donors)  # feature j of a random sample, per entry
        out = torch.where(corrupt, replacement, x)
        if self.config.noise_std > 0:
            out = out + self.config.noise_std * torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
        return out

    def __call__(
        self, batch: torch.Tensor, generator: torch.Generator, num_views: int = 2, num_local_views: int = 0
    ) -> Views:
        """``num_local_views`` further views of the same kind (vectors have no crop scale)."""
        if batch.ndim != 2 or batch.shape[0] == 0:
            raise ValueError(f"vector views take non-empty [N, D] batches; got shape {tuple(batch.shape)}")
        return Views(
            [self.view(batch, generator) for _ in range(num_views)],
            [self.view(batch, generator) for _ in range(num_local_views)],
        )
