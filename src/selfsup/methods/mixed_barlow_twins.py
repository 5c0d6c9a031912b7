"""Mixed Barlow Twins: Barlow Twins plus a mixup regulariser on the cross-correlations.

Bandara, De Melo, Patel 2023, "Guarding Barlow Twins Against Overfitting with Mixed Samples",
arXiv 2312.02151. Barlow Twins alone lets samples interact only through the batch statistics and
can overfit (memorise) on small data with a wide projector. A third view mixes the two views of
different images, ``x_m = mix * x1 + (1 - mix) * x2[perm]`` with ``mix ~ Beta(alpha, alpha)``;
its cross-correlations with both views must match what a linear embedding would give (see
:func:`~selfsup.losses.infomax.mixup_cross_correlation_loss`). The objective is
``L_BT + lambda_reg * lambda_offdiag * L_reg``.

Small departures from the authors' small-data code, for consistency with ``barlow_twins`` here:
projections are standardised with the biased batch std (theirs: unbiased, after an L2
normalisation of each projection).

Distributed: the projections are gathered (``gather_with_grad``); every rank draws the same
``mix`` and the same in-rank permutation (a generator seeded by the step count), and the global
permutation maps each rank's rows to the partners in that rank's slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from selfsup.config import NonNegativeFloat, PositiveFloat, PositiveInt
from selfsup.heads import mlp_head
from selfsup.losses.infomax import barlow_twins_loss, mixup_cross_correlation_loss
from selfsup.methods.base import register_method
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput
from selfsup.core.distributed import gather_with_grad, world_size
from selfsup.views import Views


def global_permutation(perm: torch.Tensor, world: int) -> torch.Tensor:
    """The in-rank permutation ``perm [n]`` applied by every one of ``world`` ranks, as a
    permutation of the gathered batch ``[world * n]``: rank r's row i was mixed with rank r's row
    ``perm[i]``, which sits at ``r * n + perm[i]`` after the gather."""
    n = perm.shape[0]
    offsets = torch.arange(world, device=perm.device).repeat_interleave(n) * n
    return perm.repeat(world) + offsets


@dataclass
class MixedBarlowTwinsConfig:
    lambda_offdiag: NonNegativeFloat = 0.0078125  # lambda_BT: the paper's 1/128 with a 1024-d projector on CIFAR / STL-10
    lambda_reg: NonNegativeFloat = 4.0  # the paper's CIFAR value (2 on STL-10, 1 on ImageNet, d = 8192); times lambda_BT
    mixup_alpha: PositiveFloat = 1.0  # Beta(alpha, alpha) for the mixing coefficient; 1 (uniform) in the paper
    proj_hidden_dim: PositiveInt = 512  # the authors' small-data projector: 2 layers, 512 hidden (8192-8192-8192 on ImageNet)
    proj_dim: PositiveInt = 1024  # d, as in the paper's small-data runs


@register_method("mixed_barlow_twins")
class MixedBarlowTwins(Method):
    Config = MixedBarlowTwinsConfig
    paper = "Bandara et al. 2023, arXiv 2312.02151"
    # The mixed view is a weighted sum of input tensors: samples held as tensors only (not graphs).
    modalities = frozenset({"image", "vector", "timeseries", "table"})

    def __init__(self, encoder: Encoder, config: MixedBarlowTwinsConfig) -> None:
        super().__init__(encoder, config)
        self.projector = mlp_head(encoder.embed_dim, config.proj_hidden_dim, config.proj_dim, num_layers=2)
        # Seeded from torch's seed (the runner seeds every rank alike) plus the step count below.
        self._seed = torch.initial_seed() % (2**62)
        self._draws = 0

    def _draw(self, n: int, device: torch.device) -> tuple[float, torch.Tensor]:
        """The mixing coefficient and an in-batch permutation, identical on every rank."""
        seed = self._seed + self._draws
        self._draws += 1
        mix = float(np.random.default_rng(seed).beta(self.config.mixup_alpha, self.config.mixup_alpha))
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
        return mix, torch.randperm(n, generator=generator, device=device)  # on the device: no host sync

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        x1, x2 = views.global_views
        N = x1.shape[0]
        mix, perm = self._draw(N, x1.device)
        x_mixed = mix * x1 + (1 - mix) * x2[perm]
        h = self.encoder(torch.cat([x1, x2]))
        z = self.projector(h)
        z_mixed = self.projector(self.encoder(x_mixed))  # own pass: batch-norm statistics of the mixed batch
        z1, z2, zm = gather_with_grad(z[:N]), gather_with_grad(z[N:]), gather_with_grad(z_mixed)
        c = self.config
        bt = barlow_twins_loss(z1, z2, c.lambda_offdiag)
        reg = mixup_cross_correlation_loss(z1, z2, zm, global_permutation(perm, world_size()), mix)
        loss = bt + c.lambda_reg * c.lambda_offdiag * reg
        return StepOutput(loss, {"loss_bt": bt.detach(), "loss_reg": reg.detach(), "mix": mix}, h[:N].detach())
