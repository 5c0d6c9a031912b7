"""MoCo v3: momentum contrast without a queue, with a predictor on the query branch.

Chen, Xie, He 2021, "An Empirical Study of Training Self-Supervised Vision Transformers",
arXiv 2104.02057. The query branch (backbone, 3-layer projector, 2-layer predictor) predicts the
momentum encoder's projection of the other view; the negatives are the other keys of the
(gathered) batch, so no queue is kept. The loss is ``ctr(q1, k2) + ctr(q2, k1)`` with ``ctr``
the InfoNCE scaled by ``2 tau``; the momentum encoder (EMA of backbone + projector) has its
momentum raised from ``base_momentum`` to 1 on a cosine schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from selfsup.config import Fraction, PositiveFloat, PositiveInt
from selfsup.heads import mlp_head
from selfsup.losses.moco import moco_v3_loss
from selfsup.methods.base import register_method
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput
from selfsup.core.distributed import gather_with_grad
from selfsup.core.schedules import cosine_momentum
from selfsup.core.teacher import EMATeacher
from selfsup.views import Views


@dataclass
class MoCoV3Config:
    temperature: PositiveFloat = 0.2  # the paper's ViT value; the authors' ResNet-50 recipe uses 1.0
    base_momentum: Fraction = 0.99  # the paper's 0.99, raised to final_momentum on a cosine schedule
    final_momentum: Fraction = 1.0
    proj_hidden_dim: PositiveInt = 1024  # 3-layer projector with BN (last BN without affine); 4096 in the paper
    proj_dim: PositiveInt = 256  # the paper's 256
    pred_hidden_dim: PositiveInt = 1024  # 2-layer predictor with BN; 4096 in the paper


@register_method("moco_v3")
class MoCoV3(Method):
    Config = MoCoV3Config
    paper = "Chen, Xie, He 2021, arXiv 2104.02057"

    def __init__(self, encoder: Encoder, config: MoCoV3Config) -> None:
        super().__init__(encoder, config)
        self.projector = mlp_head(
            encoder.embed_dim, config.proj_hidden_dim, config.proj_dim, num_layers=3, last_batch_norm=True
        )
        self.predictor = mlp_head(config.proj_dim, config.pred_hidden_dim, config.proj_dim, num_layers=2)
        self.momentum_encoder = EMATeacher(nn.Sequential(self.encoder, self.projector))
        self.momentum = config.base_momentum

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        x1, x2 = views.global_views
        N = x1.shape[0]
        x = torch.cat([x1, x2])
        h = self.encoder(x)  # [2N, D]
        q = self.predictor(self.projector(h))  # queries [2N, P]
        k = self.momentum_encoder(x)  # keys [2N, P], no gradient
        q1, q2 = gather_with_grad(q[:N]), gather_with_grad(q[N:])
        k1, k2 = gather_with_grad(k[:N]), gather_with_grad(k[N:])  # the global batch's keys
        tau = self.config.temperature
        loss = moco_v3_loss(q1, k2, tau) + moco_v3_loss(q2, k1, tau)
        return StepOutput(loss, {"momentum": self.momentum}, h[:N].detach())

    def on_step_end(self, ctx: StepContext) -> None:
        # A function of the step alone, so a resumed run continues the schedule.
        self.momentum = cosine_momentum(ctx.step + 1, ctx.total_steps, self.config.base_momentum, self.config.final_momentum)
        self.momentum_encoder.update(nn.Sequential(self.encoder, self.projector), self.momentum)
