"""SupCon: supervised contrastive learning.

Khosla, Teterwak, Wang, Sarna, Tian, Isola, Maschinot, Liu, Krishnan 2020, "Supervised
Contrastive Learning", arXiv 2004.11362. SimCLR's architecture, but supervised by design: every
other view of a sample with the same label is a positive (loss L^sup_out, eq. 2), so views of
one class are pulled together and the other classes pushed away. The trainer fills
``views.labels`` because the method declares ``requires = {"labels"}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from selfsup.config import PositiveFloat, PositiveInt
from selfsup.heads import mlp_head
from selfsup.losses.contrastive import supcon_loss
from selfsup.methods.base import register_method
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput
from selfsup.core.distributed import gather_with_grad, world_size
from selfsup.views import Views


@dataclass
class SupConConfig:
    temperature: PositiveFloat = 0.1  # the paper's value
    proj_hidden_dim: PositiveInt = 512  # SimCLR's projector, scaled down as in simclr.py
    proj_dim: PositiveInt = 128


@register_method("supcon")
class SupCon(Method):
    Config = SupConConfig
    paper = "Khosla et al. 2020, arXiv 2004.11362"
    requires = frozenset({"labels"})

    def __init__(self, encoder: Encoder, config: SupConConfig) -> None:
        super().__init__(encoder, config)
        self.projector = mlp_head(encoder.embed_dim, config.proj_hidden_dim, config.proj_dim, num_layers=2)

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        if views.labels is None:
            raise ValueError("supcon is supervised by design and needs views.labels (the batch's classes)")
        xs = views.global_views
        V, N = len(xs), xs[0].shape[0]
        h = self.encoder(torch.cat(xs))  # all views in one pass: [V * N, D]
        z = self.projector(h).reshape(V, N, -1)
        zs = torch.stack([gather_with_grad(z[v]) for v in range(V)])  # [V, global N, P]
        labels = gather_labels(views.labels.to(z.device))  # aligned with the gathered rows
        loss = supcon_loss(zs, labels, self.config.temperature)
        return StepOutput(loss, {}, h[:N].detach())


def gather_labels(labels: torch.Tensor) -> torch.Tensor:
    """Every rank's labels ``[n]`` concatenated in rank order -> ``[W * n]`` (no gradient).

    The same order as :func:`gather_with_grad`, so row k of the gathered embeddings has label k.
    """
    if world_size() == 1:
        return labels
    import torch.distributed as dist

    parts = [torch.empty_like(labels) for _ in range(world_size())]
    dist.all_gather(parts, labels.contiguous())
    return torch.cat(parts)
