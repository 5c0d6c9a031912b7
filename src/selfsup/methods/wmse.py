"""W-MSE: pull positives together after whitening the batch, so nothing can collapse.

Ermolov, Siarohin, Sangineto, Sebe 2021, "Whitening for Self-Supervised Representation Learning",
arXiv 2007.06346. ``num_views`` positives per image (W-MSE 2 or W-MSE 4), a 2-layer projector
to a small embedding (64 on CIFAR), each view's embeddings whitened per sub-batch of
``whitening_size`` samples (Cholesky), then the MSE between the normalised whitened embeddings of
every pair of positives. Whitening scatters the batch over the sphere, which does the job that
negatives do in contrastive losses.

Distributed: the projections are gathered (``gather_with_grad``) so the sub-batches are slices of
the global batch; the slicing permutation comes from a generator seeded by the step count, so
every rank draws the same one and computes the same loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch

from selfsup.config import NonNegativeFloat, PositiveInt, Range
from selfsup.heads import mlp_head
from selfsup.losses.infomax import wmse_loss
from selfsup.methods.base import register_method
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput
from selfsup.core.distributed import gather_with_grad
from selfsup.views import Views


@dataclass
class WMSEConfig:
    num_views: Annotated[int, Range(ge=2)] = 2  # positives per image: 2 (W-MSE 2) or 4 (W-MSE 4, the paper's best)
    proj_hidden_dim: PositiveInt = 1024  # as in the paper (2 layers, BatchNorm in the hidden layer)
    proj_dim: PositiveInt = 64  # the paper's CIFAR embedding; 128 on STL-10 / Tiny ImageNet
    # Sub-batch whitened together; must exceed proj_dim unless whitening_eps > 0 (the paper: 2 x proj_dim).
    whitening_size: Annotated[int, Range(ge=2)] = 128
    whitening_iters: PositiveInt = 1  # random slicings averaged per step (the paper: 1, or 4 for W-MSE 2 on STL-10)
    whitening_eps: NonNegativeFloat = 1e-4  # covariance shrinkage (the authors' default); keeps tiny sub-batches defined

    def __post_init__(self) -> None:
        if self.whitening_eps == 0 and self.whitening_size <= self.proj_dim:
            raise ValueError(
                f"whitening_size must exceed proj_dim ({self.proj_dim}) when whitening_eps is 0 (a sub-batch's "
                f"covariance is singular otherwise); got {self.whitening_size}"
            )


@register_method("wmse")
class WMSE(Method):
    Config = WMSEConfig
    paper = "Ermolov et al. 2021, arXiv 2007.06346"

    def __init__(self, encoder: Encoder, config: WMSEConfig) -> None:
        super().__init__(encoder, config)
        if config.num_views < 2:
            raise ValueError(f"W-MSE needs num_views >= 2 positives per image; got {config.num_views}")
        self.projector = mlp_head(encoder.embed_dim, config.proj_hidden_dim, config.proj_dim, num_layers=2)
        # Seeded from torch's seed (the runner seeds every rank alike) plus the step count below.
        self._seed = torch.initial_seed() % (2**62)
        self._draws = 0

    @property
    def num_global_views(self) -> int:  # type: ignore[override]  (the trainer reads it on the instance)
        return self.config.num_views

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        xs = views.global_views
        N = xs[0].shape[0]
        h = self.encoder(torch.cat(xs))  # all positives in one pass: [V * N, D]
        z = self.projector(h)
        projections = [gather_with_grad(part) for part in z.split(N)]
        generator = torch.Generator(device=z.device)
        generator.manual_seed(self._seed + self._draws)
        self._draws += 1
        c = self.config
        loss = wmse_loss(projections, c.whitening_size, c.whitening_iters, c.whitening_eps, generator)
        return StepOutput(loss, {}, h[:N].detach())
