"""VICReg: variance-invariance-covariance regularisation.

Bardes, Ponce, LeCun 2022, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", arXiv 2105.04906. 3-layer expander; loss on the global batch with the
paper's weights (25, 25, 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from selfsup.config import NonNegativeFloat, PositiveInt
from selfsup.heads import mlp_head
from selfsup.losses import vicreg_loss
from selfsup.methods.base import register_method
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput
from selfsup.core.distributed import gather_with_grad
from selfsup.views import Views


@dataclass
class VICRegConfig:
    # Each term can be switched off (0; the paper's ablations), not all three.
    invariance_weight: NonNegativeFloat = 25.0
    variance_weight: NonNegativeFloat = 25.0
    covariance_weight: NonNegativeFloat = 1.0
    proj_hidden_dim: PositiveInt = 1024  # 8192 in the paper on ImageNet
    proj_dim: PositiveInt = 1024

    def __post_init__(self) -> None:
        if self.invariance_weight == self.variance_weight == self.covariance_weight == 0:
            raise ValueError(
                "invariance_weight, variance_weight and covariance_weight are all 0, so the loss would be 0; "
                "give at least one a weight > 0"
            )


@register_method("vicreg")
class VICReg(Method):
    Config = VICRegConfig
    paper = "Bardes et al. 2022, arXiv 2105.04906"

    def __init__(self, encoder: Encoder, config: VICRegConfig) -> None:
        super().__init__(encoder, config)
        self.projector = mlp_head(encoder.embed_dim, config.proj_hidden_dim, config.proj_dim, num_layers=3)

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        x1, x2 = views.global_views
        N = x1.shape[0]
        h = self.encoder(torch.cat([x1, x2]))
        z = self.projector(h)
        z1, z2 = gather_with_grad(z[:N]), gather_with_grad(z[N:])
        c = self.config
        loss = vicreg_loss(z1, z2, c.invariance_weight, c.variance_weight, c.covariance_weight)
        return StepOutput(loss, {}, h[:N].detach())
