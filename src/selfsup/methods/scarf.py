"""SCARF: contrastive learning on tables with random feature corruption.

Bahri, Jiang, Tay, Metzler 2022, "SCARF: Self-Supervised Contrastive Learning using Random
Feature Corruption", ICLR 2022, arXiv 2106.15147. For each row ``x`` of a batch a corrupted copy
``x~`` replaces a random ``floor(c F)`` of its columns (corruption rate ``c = 0.6``) with draws
from those columns' empirical marginals (the ``scarf`` views). The clean row and its corrupted
copy go through the encoder ``f`` and a pre-training head ``g`` (2 ReLU layers of 256); InfoNCE
pulls ``g(f(x_i))`` towards ``g(f(x~_i))`` and away from the other rows' corrupted copies
(:func:`~selfsup.losses.tabular.scarf_loss`), at temperature 1 as in the paper.

As in the paper, the anchor is the uncorrupted row and only the corrupted copies are candidates
(one direction). Differences: the marginals are those of the batch, not of the whole training
set; the encoder is the run's backbone (``table_mlp``: 3 layers of 256 with BatchNorm and
per-column categorical embeddings; the paper's is a 4-layer ReLU MLP on one-hot categories).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from selfsup.config import PositiveFloat, PositiveInt
from selfsup.core.distributed import gather_with_grad
from selfsup.heads import mlp_head
from selfsup.losses.tabular import scarf_loss
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput, register_method
from selfsup.views import Views


@dataclass
class ScarfConfig:
    """Attributes:
    temperature: InfoNCE's tau (1.0 in the paper; its ablation finds SCARF insensitive to it).
    head_hidden_dim / head_dim: the pre-training head, 2 ReLU layers (256 and 256 in the paper).
    The corruption rate is the views' (``--set views.corruption_rate=0.6``).
    """

    temperature: PositiveFloat = 1.0
    head_hidden_dim: PositiveInt = 256
    head_dim: PositiveInt = 256


@register_method("scarf")
class Scarf(Method):
    Config = ScarfConfig
    paper = "Bahri et al. 2022, arXiv 2106.15147"
    modalities = frozenset({"table", "vector"})
    default_views = "scarf"  # [clean row, corrupted copy]
    # The paper's pre-training: batch 128, Adam at lr 1e-3.
    run_defaults = {"train": {"batch_size": 128, "lr": 1e-3}}

    def __init__(self, encoder: Encoder, config: ScarfConfig) -> None:
        super().__init__(encoder, config)
        # The paper's head g: ReLU layers without normalisation.
        self.head = mlp_head(encoder.embed_dim, config.head_hidden_dim, config.head_dim, num_layers=2, batch_norm=False)

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        x, corrupted = views.global_views[:2]  # view 0: the row itself (the anchor)
        N = x.shape[0]
        h = self.encoder(torch.cat([x, corrupted]))  # [2N, D]
        z = self.head(h)
        anchor, positive = gather_with_grad(z[:N]), gather_with_grad(z[N:])
        loss = scarf_loss(anchor, positive, self.config.temperature)
        return StepOutput(loss, {}, h[:N].detach())
