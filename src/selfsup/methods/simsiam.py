"""SimSiam: a Siamese network with a predictor and a stop-gradient, no negatives, no momentum.

Chen & He 2021, "Exploring Simple Siamese Representation Learning", arXiv 2011.10566. Both views
go through the same encoder and a 3-layer projector whose output is batch-normalised; a 2-layer
bottleneck predictor maps one view's projection to the other's. The loss is the symmetrised
negative cosine ``D(p1, stopgrad(z2)) / 2 + D(p2, stopgrad(z1)) / 2`` (eq. 4): the stop-gradient,
not a momentum encoder, is what prevents collapse (sec. 4.1).

Deviation: the paper keeps the predictor's learning rate fixed while the rest follows a cosine
decay (sec. 4.2: slightly better). The shared scheduler decays every group alike and a constant
``lr_scale`` cannot undo a decay, so here the predictor's learning rate decays too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from selfsup.config import PositiveInt
from selfsup.heads import mlp_head
from selfsup.losses.distillation import negative_cosine
from selfsup.methods.base import register_method
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput
from selfsup.views import Views


@dataclass
class SimSiamConfig:
    proj_hidden_dim: PositiveInt = 512  # 2048 in the paper (ResNet-50 on ImageNet)
    proj_dim: PositiveInt = 512  # 2048 in the paper; the projector's output is batch-normalised
    pred_hidden_dim: PositiveInt = 128  # the bottleneck: proj_dim / 4, as in the paper (512 for 2048)
    # False reproduces the paper's ablation (sec. 4.1, fig. 2): without the stop-gradient the
    # representation collapses to a constant within a few epochs. For experiments and tests only.
    stop_gradient: bool = True


@register_method("simsiam")
class SimSiam(Method):
    Config = SimSiamConfig
    paper = "Chen & He 2021, arXiv 2011.10566"

    def __init__(self, encoder: Encoder, config: SimSiamConfig) -> None:
        super().__init__(encoder, config)
        # 3 layers, BN after every layer including the output (the output BN has no affine).
        self.projector = mlp_head(
            encoder.embed_dim, config.proj_hidden_dim, config.proj_dim, num_layers=3, last_batch_norm=True
        )
        # Bottleneck predictor: BN + ReLU on the hidden layer, none on the output.
        self.predictor = mlp_head(config.proj_dim, config.pred_hidden_dim, config.proj_dim, num_layers=2)

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        x1, x2 = views.global_views
        N = x1.shape[0]
        h = self.encoder(torch.cat([x1, x2]))  # [2N, D]
        z = self.projector(h)  # [2N, P]
        p = self.predictor(z)  # [2N, P]
        target = z.detach() if self.config.stop_gradient else z  # stop-gradient on the targets (eq. 3)
        z1, z2 = target[:N], target[N:]
        loss = negative_cosine(p[:N], z2) / 2 + negative_cosine(p[N:], z1) / 2
        # The per-dimension std of the normalised projection: about 1/sqrt(P) when healthy, 0 at collapse.
        z_std = torch.nn.functional.normalize(z1.detach(), dim=1).std(dim=0).mean()
        return StepOutput(loss, {"z_std": z_std}, h[:N].detach())
