"""SwAV: predict the cluster assignment of one view from another, with balanced online clustering.

Caron, Misra, Mairal, Goyal, Bojanowski, Joulin 2020, "Unsupervised Learning of Visual Features by
Contrasting Cluster Assignments", arXiv 2006.09882. Every crop goes through the encoder and a
2-layer projector to a unit vector ``z``; its scores against ``K`` unit-norm prototypes ``C``
(a linear layer without bias, renormalised before every step) are ``z^T C``. The codes of the two
global crops come from the Sinkhorn-Knopp algorithm (balanced: every prototype gets an equal
share of the batch; no gradient), and each is predicted by the softmax (the paper's temperature
0.1; 0.2 here, see the config) of every other crop, global and local (multi-crop: 2 global +
``num_local_crops`` small ones).

Schedules are fractions of training because a method does not know the steps per epoch: the
paper's 1-epoch prototype freeze in a 100-epoch run is ``freeze_prototypes = 0.01``.

The optional queue (off by default; the paper adds one of 3840 embeddings for batches of 256 or
less, from epoch 15) keeps recent embeddings of the global crops; their scores join the batch's
for Sinkhorn, and only the batch's rows are kept, so small batches still get balanced codes.

Distributed: the embeddings are gathered (``gather_with_grad``) and every rank computes the loss
on the global batch, so Sinkhorn's sums run over the global batch; the queue then holds global
embeddings, identical on every rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn as nn
import torch.nn.functional as F

from selfsup.config import Fraction, NonNegativeInt, PositiveFloat, PositiveInt, Range
from selfsup.heads import mlp_head
from selfsup.losses.clustering import sinkhorn_knopp, swav_loss
from selfsup.losses.memory import FeatureQueue
from selfsup.methods.base import register_method
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput
from selfsup.core.distributed import gather_with_grad
from selfsup.views import Views


@dataclass
class SwAVConfig:
    num_local_crops: NonNegativeInt = 2  # small crops per image; the paper's best is 6 (2 x 224 px + 6 x 96 px)
    proj_hidden_dim: PositiveInt = 1024  # 2048 in the paper
    proj_dim: PositiveInt = 128  # as in the paper
    num_prototypes: Annotated[int, Range(ge=2)] = 100  # K; 3000 on ImageNet, about 10x the number of classes for small data
    temperature: PositiveFloat = 0.2  # of the prediction softmax; 0.1 in the paper, which on digits cut RankMe from 46 to 12
    sinkhorn_epsilon: PositiveFloat = 0.05  # entropy weight of the codes, as in the paper
    sinkhorn_iterations: PositiveInt = 3  # as in the paper
    freeze_prototypes: Fraction = 0.01  # fraction of training with the prototypes frozen (the paper: 1st epoch)
    queue_size: NonNegativeInt = 0  # embeddings kept per global crop for Sinkhorn; 0: off (the paper: 3840 for small batches)
    queue_start: Fraction = 0.15  # fraction of training before the queue is used (the paper: epoch 15 of 100)


@register_method("swav")
class SwAV(Method):
    Config = SwAVConfig
    paper = "Caron et al. 2020, arXiv 2006.09882"

    def __init__(self, encoder: Encoder, config: SwAVConfig) -> None:
        super().__init__(encoder, config)
        self.projector = mlp_head(encoder.embed_dim, config.proj_hidden_dim, config.proj_dim, num_layers=2)
        self.prototypes = nn.Linear(config.proj_dim, config.num_prototypes, bias=False)
        self._normalize_prototypes()
        self.queues = nn.ModuleList(
            [FeatureQueue(config.queue_size, config.proj_dim) for _ in range(self.num_global_views)]
            if config.queue_size > 0
            else []
        )
        self._use_queue = False  # set once training passed queue_start and the queues are full
        self._pending: list[torch.Tensor] = []  # this step's global embeddings, pushed after the step

    @property
    def num_local_views(self) -> int:
        return self.config.num_local_crops

    @torch.no_grad()
    def _normalize_prototypes(self) -> None:
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    @torch.no_grad()
    def _codes(self, scores: torch.Tensor, view: int) -> torch.Tensor:
        """Sinkhorn codes of one global view ``[B, K]``, with the queue's scores when it is on."""
        c = self.config
        if self._use_queue:
            queued = self.prototypes(self.queues[view].queue.to(scores.dtype))  # current prototypes
            codes = sinkhorn_knopp(torch.cat([queued, scores]), c.sinkhorn_epsilon, c.sinkhorn_iterations)
            return codes[-scores.shape[0] :]  # keep the batch's rows
        return sinkhorn_knopp(scores, c.sinkhorn_epsilon, c.sinkhorn_iterations)

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        self._normalize_prototypes()  # unit prototypes before the forward, as in the paper
        N = views.global_views[0].shape[0]
        h = self.encoder(torch.cat(views.global_views))  # global crops in one pass: [2N, D]
        groups = [h]
        if views.local_views:  # local crops share a (smaller) resolution: one more pass
            groups.append(self.encoder(torch.cat(views.local_views)))
        z = F.normalize(self.projector(torch.cat(groups)), dim=1)  # [(2 + L) N, P]
        # Gathered per view, so Sinkhorn's marginals are over the global batch.
        embeddings = [gather_with_grad(part) for part in z.split(N)]
        scores = [self.prototypes(e) for e in embeddings]  # [B, K] per view
        codes = [self._codes(scores[v].detach(), v) for v in range(self.num_global_views)]
        loss = swav_loss(scores, codes, self.config.temperature)
        if self.queues:
            self._pending = [e.detach() for e in embeddings[: self.num_global_views]]
        return StepOutput(loss, {}, h[:N].detach())

    def before_optimizer_step(self, ctx: StepContext) -> None:
        if ctx.step < self.config.freeze_prototypes * ctx.total_steps:
            # No gradient at all (not a zero one): the optimiser skips it, no decay, no momentum.
            self.prototypes.weight.grad = None

    @torch.no_grad()
    def on_step_end(self, ctx: StepContext) -> None:
        if not self.queues or not self._pending:
            return
        for queue, embedding in zip(self.queues, self._pending):
            queue.push(embedding)
        self._pending = []
        if not self._use_queue and ctx.step + 1 >= self.config.queue_start * ctx.total_steps:
            # One host read per step only until the queues are full; never again after that.
            self._use_queue = bool(self.queues[0].filled >= self.config.queue_size)
