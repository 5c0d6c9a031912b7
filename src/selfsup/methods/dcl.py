"""DCL: SimCLR with the decoupled contrastive loss.

Yeh, Hong, Hsu, Liu, Chen, LeCun 2022, "Decoupled Contrastive Learning", arXiv 2110.06848.
SimCLR's architecture (encoder + 2-layer projector, in-batch negatives from both views) with
the positive pair taken out of InfoNCE's denominator, which removes the negative-positive
coupling that weakens InfoNCE's gradient with small batches. DCLW (``dclw.py``) adds a weight
on the positive term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from selfsup.config import PositiveFloat, PositiveInt
from selfsup.heads import mlp_head
from selfsup.losses.contrastive import dcl_loss
from selfsup.methods.base import register_method
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput
from selfsup.core.distributed import gather_with_grad
from selfsup.views import Views


@dataclass
class DCLConfig:
    temperature: PositiveFloat = 0.1  # the paper's value; on digits 0.1, 0.2 and 0.5 all learn
    proj_hidden_dim: PositiveInt = 512  # SimCLR's projector, scaled down as in simclr.py
    proj_dim: PositiveInt = 128


@register_method("dcl")
class DCL(Method):
    Config = DCLConfig
    paper = "Yeh et al. 2022, arXiv 2110.06848"

    def __init__(self, encoder: Encoder, config: DCLConfig) -> None:
        super().__init__(encoder, config)
        self.projector = mlp_head(encoder.embed_dim, config.proj_hidden_dim, config.proj_dim, num_layers=2)

    def loss(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """The loss on the gathered projections ``[N, P]`` of the two views."""
        return dcl_loss(z1, z2, self.config.temperature)

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        x1, x2 = views.global_views
        N = x1.shape[0]
        h = self.encoder(torch.cat([x1, x2]))  # both views in one pass: [2N, D]
        z = self.projector(h)
        z1, z2 = gather_with_grad(z[:N]), gather_with_grad(z[N:])  # negatives from the global batch
        return StepOutput(self.loss(z1, z2), {}, h[:N].detach())
