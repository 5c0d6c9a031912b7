"""MoCo v2: momentum contrast with a queue of negative keys.

He, Fan, Wu, Xie, Girshick 2020, "Momentum Contrast for Unsupervised Visual Representation
Learning", arXiv 1911.05722, with the v2 changes of Chen, Fan, Girshick, He 2020, "Improved
Baselines with Momentum Contrastive Learning", arXiv 2003.04297 (2-layer MLP projector,
temperature 0.2, stronger augmentation, cosine learning rate).

A query encoder (backbone + projector) is trained by InfoNCE: each query must pick out its key,
the momentum (EMA) encoder's projection of another view of the same sample, among a queue of keys
from past batches. After the step the batch's keys (gathered from every rank) enter the queue,
the oldest leave. The queue is a buffer, so it is saved in checkpoints.

Departures from the papers: the loss is symmetrised over the two views (``ctr(q1, k2) +
ctr(q2, k1)``, averaged, as in MoCo v3 and solo-learn's MoCo v2+), and both views' keys are
pushed. Shuffle-BN is not used: it exists to stop batch-norm statistics from telling the current
batch's keys from the queue's when keys are computed per GPU; here both views go through the
encoder in one pass with BN over the whole batch of one process, as in the small-data
re-implementations (solo-learn).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from selfsup.config import Fraction, PositiveFloat, PositiveInt
from selfsup.heads import mlp_head
from selfsup.losses.memory import FeatureQueue
from selfsup.losses.moco import moco_loss
from selfsup.methods.base import register_method
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput
from selfsup.core.distributed import gather_with_grad
from selfsup.core.teacher import EMATeacher
from selfsup.views import Views


@dataclass
class MoCoV2Config:
    temperature: PositiveFloat = 0.2  # MoCo v2 (0.07 in MoCo v1)
    queue_size: PositiveInt = 4096  # negatives; 65536 on ImageNet, a few times a small train set here
    momentum: Fraction = 0.99  # key-encoder EMA; 0.999 on ImageNet (~5000 steps/epoch), 0.99 for short runs
    proj_hidden_dim: PositiveInt = 512  # 2-layer MLP head (fc-ReLU-fc, no BN); 2048 in the paper
    proj_dim: PositiveInt = 128  # the paper's 128


@register_method("moco_v2")
class MoCoV2(Method):
    Config = MoCoV2Config
    paper = "He et al. 2020, arXiv 1911.05722; Chen et al. 2020, arXiv 2003.04297"

    def __init__(self, encoder: Encoder, config: MoCoV2Config) -> None:
        super().__init__(encoder, config)
        self.projector = mlp_head(
            encoder.embed_dim, config.proj_hidden_dim, config.proj_dim, num_layers=2, batch_norm=False
        )
        self.key_encoder = EMATeacher(nn.Sequential(self.encoder, self.projector))
        self.queue = FeatureQueue(config.queue_size, config.proj_dim)

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        x1, x2 = views.global_views
        N = x1.shape[0]
        x = torch.cat([x1, x2])
        h = self.encoder(x)  # [2N, D]
        q = self.projector(h)  # queries [2N, P]
        k = self.key_encoder(x)  # keys [2N, P], no gradient
        negatives = self.queue.features  # a copy: the push below must not touch what backward reads
        # Each view's query against the other view's key. Each query's loss involves only its own
        # key and the queue, so the local mean is exact: DDP's gradient average gives the global one.
        loss = 0.5 * (
            moco_loss(q[:N], k[N:], negatives, self.config.temperature)
            + moco_loss(q[N:], k[:N], negatives, self.config.temperature)
        )
        with torch.no_grad():
            # Every rank's keys, so the queues stay identical; gathered per view, so the queue
            # holds them in the order one process with the global batch would write them.
            self.queue.push(torch.cat([gather_with_grad(k[:N]), gather_with_grad(k[N:])]))
        return StepOutput(loss, {}, h[:N].detach())

    def on_step_end(self, ctx: StepContext) -> None:
        self.key_encoder.update(nn.Sequential(self.encoder, self.projector), self.config.momentum)
