"""BYOL: bootstrap your own latent.

Grill et al. 2020, "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning",
arXiv 2006.07733. An online network (encoder, projector, predictor) predicts the projection of
the other view made by a target network, the EMA of the online encoder and projector. The loss is
the symmetrised normalised MSE; the target gets no gradient; its momentum rises from
``base_momentum`` to 1 on a cosine schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from selfsup.config import Fraction, PositiveInt
from selfsup.heads import mlp_head
from selfsup.losses import normalized_mse
from selfsup.methods.base import register_method
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput
from selfsup.core.schedules import cosine_momentum
from selfsup.core.teacher import EMATeacher
from selfsup.views import Views


@dataclass
class BYOLConfig:
    proj_hidden_dim: PositiveInt = 1024  # the paper uses 4096 / 256 on ImageNet
    proj_dim: PositiveInt = 128
    pred_hidden_dim: PositiveInt = 1024
    # 1 freezes the target at its initialisation (the paper's tau = 1 ablation), 0 copies the online net.
    base_momentum: Fraction = 0.99  # 0.996 in the paper for 1000 ImageNet epochs; lower for short runs
    final_momentum: Fraction = 1.0


@register_method("byol")
class BYOL(Method):
    Config = BYOLConfig
    paper = "Grill et al. 2020, arXiv 2006.07733"

    def __init__(self, encoder: Encoder, config: BYOLConfig) -> None:
        super().__init__(encoder, config)
        self.projector = mlp_head(encoder.embed_dim, config.proj_hidden_dim, config.proj_dim, num_layers=2)
        self.predictor = mlp_head(config.proj_dim, config.pred_hidden_dim, config.proj_dim, num_layers=2)
        self.teacher = EMATeacher(nn.Sequential(self.encoder, self.projector))
        self.momentum = config.base_momentum

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        x1, x2 = views.global_views
        N = x1.shape[0]
        x = torch.cat([x1, x2])
        h = self.encoder(x)  # [2N, D]
        p = self.predictor(self.projector(h))  # online predictions [2N, P]
        target = self.teacher(x)  # [2N, P], no gradient
        # Each view's prediction targets the other view's teacher projection.
        loss = normalized_mse(p[:N], target[N:]) + normalized_mse(p[N:], target[:N])
        return StepOutput(loss, {"momentum": self.momentum}, h[:N].detach())

    def on_step_end(self, ctx: StepContext) -> None:
        # The momentum is a function of the step alone, so a resumed run continues the schedule.
        self.momentum = cosine_momentum(ctx.step + 1, ctx.total_steps, self.config.base_momentum, self.config.final_momentum)
        self.teacher.update(nn.Sequential(self.encoder, self.projector), self.momentum)
