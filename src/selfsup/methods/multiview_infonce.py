"""MV-InfoNCE: contrastive learning with M > 2 views in one term per instance.

Koromilas, Georgiou, Bouritsas, Giannakopoulos, Nicolaou, Panagakis 2025, "A Principled
Framework for Multi-View Contrastive Learning", arXiv 2507.06979. SimCLR's architecture with
``num_views`` augmented views per sample; instead of averaging pairwise InfoNCE losses over the
view pairs, each instance gets one term whose numerator holds every pair of its views and whose
denominator holds every view's similarities to the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch

from selfsup.config import PositiveFloat, PositiveInt, Range
from selfsup.heads import mlp_head
from selfsup.losses.contrastive import multiview_info_nce
from selfsup.methods.base import register_method
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput
from selfsup.core.distributed import gather_with_grad
from selfsup.views import Views


@dataclass
class MultiViewInfoNCEConfig:
    num_views: Annotated[int, Range(ge=2)] = 4  # views per sample (the paper studies 2 to 8 or more)
    temperature: PositiveFloat = 0.5  # the authors' CIFAR value (0.1 on ImageNet)
    proj_hidden_dim: PositiveInt = 512  # SimCLR's projector, scaled down as in simclr.py
    proj_dim: PositiveInt = 128


@register_method("multiview_infonce")
class MultiViewInfoNCE(Method):
    Config = MultiViewInfoNCEConfig
    paper = "Koromilas et al. 2025, arXiv 2507.06979"

    def __init__(self, encoder: Encoder, config: MultiViewInfoNCEConfig) -> None:
        if config.num_views < 2:
            raise ValueError(f"multiview_infonce needs num_views >= 2; got {config.num_views}")
        super().__init__(encoder, config)
        self.projector = mlp_head(encoder.embed_dim, config.proj_hidden_dim, config.proj_dim, num_layers=2)

    @property
    def num_global_views(self) -> int:  # type: ignore[override]  # the trainer reads it on the instance
        return self.config.num_views

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        xs = views.global_views
        V, N = len(xs), xs[0].shape[0]
        h = self.encoder(torch.cat(xs))  # all views in one pass: [V * N, D]
        z = self.projector(h).reshape(V, N, -1)
        zs = torch.stack([gather_with_grad(z[v]) for v in range(V)])  # [V, global N, P]
        loss = multiview_info_nce(zs, self.config.temperature)
        return StepOutput(loss, {}, h[:N].detach())
