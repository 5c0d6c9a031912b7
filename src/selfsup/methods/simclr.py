"""SimCLR: contrastive learning with in-batch negatives.

Chen, Kornblith, Norouzi, Hinton 2020, "A Simple Framework for Contrastive Learning of Visual
Representations", arXiv 2002.05709. Two views per sample, a 2-layer MLP projector, NT-Xent loss
over the 2N projections (every other embedding in the global batch is a negative).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from selfsup.config import PositiveFloat, PositiveInt
from selfsup.heads import mlp_head
from selfsup.losses import info_nce
from selfsup.methods.base import register_method
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput
from selfsup.core.distributed import gather_with_grad
from selfsup.views import Views


@dataclass
class SimCLRConfig:
    temperature: PositiveFloat = 0.5  # the paper's CIFAR-10 value; 0.1 for large batches on ImageNet
    proj_hidden_dim: PositiveInt = 512
    proj_dim: PositiveInt = 128


@register_method("simclr")
class SimCLR(Method):
    Config = SimCLRConfig
    paper = "Chen et al. 2020, arXiv 2002.05709"

    def __init__(self, encoder: Encoder, config: SimCLRConfig) -> None:
        super().__init__(encoder, config)
        self.projector = mlp_head(encoder.embed_dim, config.proj_hidden_dim, config.proj_dim, num_layers=2)

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        x1, x2 = views.global_views
        N = x1.shape[0]
        h = self.encoder(torch.cat([x1, x2]))  # both views in one pass: [2N, D]
        z = self.projector(h)
        z1, z2 = gather_with_grad(z[:N]), gather_with_grad(z[N:])
        loss = info_nce(z1, z2, self.config.temperature)
        return StepOutput(loss, {}, h[:N].detach())
