"""NT-Xent-AM: SimCLR with an additive margin on the positive pair.

Lepage, Dehak 2024, "Additive Margin in Contrastive Self-Supervised Frameworks to Learn
Discriminative Speaker Representations", arXiv 2404.14913. SimCLR's architecture and symmetric
NT-Xent over the 2N views, with the positive logit ``(cos - margin) / tau`` (AM-Softmax /
CosFace applied to the positive pair): the positive must beat every negative by ``margin`` in
cosine similarity, which tightens the clusters of same-instance views.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch

from selfsup.config import PositiveFloat, PositiveInt, Range
from selfsup.heads import mlp_head
from selfsup.losses.contrastive import ntxent_am_loss
from selfsup.methods.base import register_method
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput
from selfsup.core.distributed import gather_with_grad
from selfsup.views import Views


@dataclass
class NTXentAMConfig:
    temperature: PositiveFloat = 0.2  # 1 / the authors' logit scale 5; their scale 30 (0.033) learns less on digits
    # Additive margin m on the positive cosine (the authors sweep 0.1-0.5; 0 is SimCLR's NT-Xent).
    # Cosines differ by at most 2, so a margin of 2 or more could never be met.
    margin: Annotated[float, Range(ge=0, lt=2)] = 0.1
    proj_hidden_dim: PositiveInt = 512  # SimCLR's projector, scaled down as in simclr.py
    proj_dim: PositiveInt = 128


@register_method("ntxent_am")
class NTXentAM(Method):
    Config = NTXentAMConfig
    paper = "Lepage & Dehak 2024, arXiv 2404.14913"

    def __init__(self, encoder: Encoder, config: NTXentAMConfig) -> None:
        super().__init__(encoder, config)
        self.projector = mlp_head(encoder.embed_dim, config.proj_hidden_dim, config.proj_dim, num_layers=2)

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        x1, x2 = views.global_views
        N = x1.shape[0]
        h = self.encoder(torch.cat([x1, x2]))  # both views in one pass: [2N, D]
        z = self.projector(h)
        z1, z2 = gather_with_grad(z[:N]), gather_with_grad(z[N:])
        loss = ntxent_am_loss(z1, z2, self.config.temperature, self.config.margin)
        return StepOutput(loss, {}, h[:N].detach())
