"""Barlow Twins: make the cross-correlation of two views' embeddings the identity.

Zbontar, Jing, Misra, LeCun, Deny 2021, "Barlow Twins: Self-Supervised Learning via Redundancy
Reduction", arXiv 2103.03230. 3-layer projector; loss on the batch-standardised projections of the
global batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from selfsup.config import NonNegativeFloat, PositiveInt
from selfsup.heads import mlp_head
from selfsup.losses import barlow_twins_loss
from selfsup.methods.base import register_method
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput
from selfsup.core.distributed import gather_with_grad
from selfsup.views import Views


@dataclass
class BarlowTwinsConfig:
    lambda_offdiag: NonNegativeFloat = 5.1e-3  # 0: the invariance term alone (the paper's ablation)
    proj_hidden_dim: PositiveInt = 1024  # 8192 in the paper on ImageNet
    proj_dim: PositiveInt = 1024


@register_method("barlow_twins")
class BarlowTwins(Method):
    Config = BarlowTwinsConfig
    paper = "Zbontar et al. 2021, arXiv 2103.03230"

    def __init__(self, encoder: Encoder, config: BarlowTwinsConfig) -> None:
        super().__init__(encoder, config)
        self.projector = mlp_head(encoder.embed_dim, config.proj_hidden_dim, config.proj_dim, num_layers=3)

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        x1, x2 = views.global_views
        N = x1.shape[0]
        h = self.encoder(torch.cat([x1, x2]))
        z = self.projector(h)
        z1, z2 = gather_with_grad(z[:N]), gather_with_grad(z[N:])
        loss = barlow_twins_loss(z1, z2, self.config.lambda_offdiag)
        return StepOutput(loss, {}, h[:N].detach())
