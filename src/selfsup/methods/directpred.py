"""DirectPred: BYOL with a linear predictor set from the statistics of its inputs, not trained.

Tian, Chen, Ganguli 2021, "Understanding self-supervised Learning Dynamics without Contrastive
Pairs", arXiv 2102.06810, sec. 5. The setting is BYOL's (online encoder and projector, an EMA
target, the symmetrised normalised-MSE loss), but the predictor is one linear layer ``W_p`` that
receives no gradient: a running correlation ``F = rho F + (1 - rho) E[f f^T]`` of its inputs (the
online projections, eq. 19) is eigendecomposed, ``F = U diag(s) U^T``, and ``W_p = U diag(p) U^T``
with ``p_j = sqrt(s_j / max s) + eps`` (eq. 18), every ``update_every`` steps. The theory shows a
trained linear predictor's eigenspace aligns with ``F``'s; DirectPred sets it there directly.

The predictor starts as the identity (the predictor of an isotropic ``F``); ``F`` is folded in at
each training step and ``W_p`` recomputed after the optimiser step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import torch
import torch.nn as nn

from selfsup.config import Fraction, NonNegativeFloat, PositiveInt, Range
from selfsup.heads import mlp_head
from selfsup.losses.distillation import normalized_mse
from selfsup.losses.distillation_state import PredictorCorrelation
from selfsup.methods.base import register_method
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput, split_decay
from selfsup.core.schedules import cosine_momentum
from selfsup.core.teacher import EMATeacher
from selfsup.views import Views


@dataclass
class DirectPredConfig:
    proj_hidden_dim: PositiveInt = 1024  # BYOL's projector; 4096 in the paper on ImageNet
    proj_dim: PositiveInt = 128  # 256 in the paper on ImageNet; F and W_p are proj_dim x proj_dim
    # Memory of the running correlation F (eq. 19), as in the paper; at 1, F would never see a batch.
    rho: Annotated[float, Range(ge=0, lt=1)] = 0.3
    eps: NonNegativeFloat = 0.1  # added to every p_j (eq. 18): keeps weak directions learning; the paper's value
    update_every: PositiveInt = 1  # recompute W_p every this many steps (the paper's freq; 1 on STL-10/ImageNet)
    base_momentum: Fraction = 0.99  # EMA target; 0.996 in the paper for long runs, lower for short ones
    final_momentum: Fraction = 1.0


@register_method("directpred")
class DirectPred(Method):
    Config = DirectPredConfig
    paper = "Tian, Chen, Ganguli 2021, arXiv 2102.06810"

    def __init__(self, encoder: Encoder, config: DirectPredConfig) -> None:
        super().__init__(encoder, config)
        if config.update_every < 1:
            raise ValueError(f"update_every must be >= 1; got {config.update_every}")
        self.projector = mlp_head(encoder.embed_dim, config.proj_hidden_dim, config.proj_dim, num_layers=2)
        # Linear, no bias, set directly: never trained, so it takes no gradient.
        self.predictor = nn.Linear(config.proj_dim, config.proj_dim, bias=False)
        with torch.no_grad():
            self.predictor.weight.copy_(torch.eye(config.proj_dim))
        self.predictor.weight.requires_grad_(False)
        self.correlation = PredictorCorrelation(config.proj_dim, config.rho)
        self.teacher = EMATeacher(nn.Sequential(self.encoder, self.projector))
        self.momentum = config.base_momentum

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        x1, x2 = views.global_views
        N = x1.shape[0]
        x = torch.cat([x1, x2])
        h = self.encoder(x)  # [2N, D]
        z = self.projector(h)  # online projections, the predictor's inputs [2N, P]
        p = self.predictor(z)  # [2N, P]; gradients flow through W_p to z, not into W_p
        target = self.teacher(x)  # [2N, P], no gradient
        loss = normalized_mse(p[:N], target[N:]) + normalized_mse(p[N:], target[:N])
        self.correlation.update(z.detach())  # both views, as in the paper's code
        return StepOutput(loss, {"momentum": self.momentum}, h[:N].detach())

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        # W_p is set from F, never by the optimiser (weight decay or momentum would move it too).
        fixed = {id(p) for p in self.predictor.parameters()}
        params = [p for p in self.parameters() if p.requires_grad and id(p) not in fixed]
        return split_decay(params, weight_decay)

    @torch.no_grad()
    def on_step_end(self, ctx: StepContext) -> None:
        if (ctx.step + 1) % self.config.update_every == 0:
            weight = self.correlation.predictor(self.config.eps)
            self.predictor.weight.copy_(weight.to(self.predictor.weight.dtype))
        self.momentum = cosine_momentum(ctx.step + 1, ctx.total_steps, self.config.base_momentum, self.config.final_momentum)
        self.teacher.update(nn.Sequential(self.encoder, self.projector), self.momentum)
