"""NNCLR: nearest-neighbour contrastive learning.

Dwibedi, Aytar, Tompson, Sermanet, Zisserman 2021, "With a Little Help from My Friends:
Nearest-Neighbor Contrastive Learning of Visual Representations", arXiv 2104.14548. Like SimCLR,
but the positive of a view is the nearest neighbour of its projection in a support set (a queue
of past projections), which brings in other samples of the same kind as positives. The other
view goes through a predictor; the loss is the InfoNCE of eq. (2) between neighbours and
predictions, symmetrised over the two views. The support set receives the first view's
projections after each step; it is a buffer, so it is saved in checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from selfsup.config import PositiveFloat, PositiveInt
from selfsup.heads import mlp_head
from selfsup.losses.memory import FeatureQueue
from selfsup.losses.moco import nearest_neighbour, nnclr_loss
from selfsup.methods.base import register_method
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput
from selfsup.core.distributed import gather_with_grad
from selfsup.views import Views


@dataclass
class NNCLRConfig:
    temperature: PositiveFloat = 0.1  # the paper's 0.1
    support_size: PositiveInt = 1024  # 98304 on ImageNet; below the train-set size here, so stale copies of a sample are few
    proj_hidden_dim: PositiveInt = 1024  # 3-layer projector with BN; 2048 in the paper
    proj_dim: PositiveInt = 256  # the paper's 256
    pred_hidden_dim: PositiveInt = 1024  # 2-layer predictor; 4096 in the paper


@register_method("nnclr")
class NNCLR(Method):
    Config = NNCLRConfig
    paper = "Dwibedi et al. 2021, arXiv 2104.14548"

    def __init__(self, encoder: Encoder, config: NNCLRConfig) -> None:
        super().__init__(encoder, config)
        self.projector = mlp_head(
            encoder.embed_dim, config.proj_hidden_dim, config.proj_dim, num_layers=3, last_batch_norm=True
        )
        self.predictor = mlp_head(config.proj_dim, config.pred_hidden_dim, config.proj_dim, num_layers=2)
        self.support = FeatureQueue(config.support_size, config.proj_dim)

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        x1, x2 = views.global_views
        N = x1.shape[0]
        h = self.encoder(torch.cat([x1, x2]))  # [2N, D]
        z = self.projector(h)  # [2N, P]
        p = self.predictor(z)  # [2N, P]
        z1, z2 = gather_with_grad(z[:N].detach()), gather_with_grad(z[N:].detach())
        p1, p2 = gather_with_grad(p[:N]), gather_with_grad(p[N:])
        # Slots not written yet hold random vectors: never pick them. On the very first step the
        # support set is empty and each projection is its own neighbour (SimCLR's positive).
        valid = torch.arange(self.support.size, device=z.device) < self.support.filled
        has_support = self.support.filled > 0
        nn1 = torch.where(has_support, nearest_neighbour(z1, self.support.queue, valid), z1)
        nn2 = torch.where(has_support, nearest_neighbour(z2, self.support.queue, valid), z2)
        loss = 0.5 * (nnclr_loss(nn1, p2, self.config.temperature) + nnclr_loss(nn2, p1, self.config.temperature))
        self.support.push(z1)  # the first view's projections, from every rank
        return StepOutput(loss, {}, h[:N].detach())
