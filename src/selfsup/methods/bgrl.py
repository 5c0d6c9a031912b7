"""BGRL: bootstrapped graph latents (BYOL for graphs).

Thakoor, Tallec, Azar, Azabou, Dyer, Munos, Velickovic, Valko 2022, "Large-Scale Representation
Learning on Graphs via Bootstrapping", ICLR 2022, arXiv 2102.06514. Two views of the graph (the
``graph`` views: edge dropping and feature masking, a rate per view); the online encoder's node
embeddings go through a predictor (one hidden layer of 512 with a PReLU) that predicts the other
view's embeddings made by the target encoder, an exponential moving average of the online one
(momentum from 0.99 to 1 on a cosine schedule). The loss is the symmetric cosine loss
(:func:`~selfsup.losses.graph.bgrl_loss`): no negatives, so the cost is linear in the nodes. The
target gets no gradient. As in the paper there is no projector: the predictor acts on the
encoder's output.

Node level, the loss covers the batch's sample nodes (all of them when the batch is the whole
graph, as in the paper); at graph level the samples are the pooled graphs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from selfsup.config import Fraction, PositiveInt
from selfsup.core.schedules import cosine_momentum
from selfsup.core.teacher import EMATeacher
from selfsup.losses.graph import bgrl_loss
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput, register_method
from selfsup.views import Views


@dataclass
class BGRLConfig:
    """Attributes:
    pred_hidden_dim: the predictor's hidden layer (512 in the paper's transductive runs).
    base_momentum / final_momentum: the target's EMA momentum, cosine from 0.99 to 1 (1 freezes
    the target at its initialisation, 0 copies the online encoder).
    The encoder is the run's backbone: the paper's is a GCN with BatchNorm and PReLU after each
    layer (``--backbone gcn --set backbone.norm=batch``).
    """

    pred_hidden_dim: PositiveInt = 512
    base_momentum: Fraction = 0.99
    final_momentum: Fraction = 1.0


@register_method("bgrl")
class BGRL(Method):
    Config = BGRLConfig
    paper = "Thakoor et al. 2022, arXiv 2102.06514"
    modalities = frozenset({"graph"})
    # The paper's WikiCS run: AdamW at lr 5e-4, weight decay 1e-5, 10,000 full-graph steps (max_steps:
    # the same number of optimiser steps whatever the batch), views edges 0.2 / 0.3, features 0.2 / 0.1.
    run_defaults = {
        "train": {"lr": 5e-4, "weight_decay": 1e-5, "epochs": 10000, "max_steps": 10000},
        "views": {"params": {"edge_drop": [0.2, 0.3], "feature_mask": [0.2, 0.1]}},
    }

    def __init__(self, encoder: Encoder, config: BGRLConfig) -> None:
        super().__init__(encoder, config)
        D = encoder.embed_dim
        # The reference code's predictor: Linear -> PReLU (one slope) -> Linear, no normalisation.
        self.predictor = nn.Sequential(nn.Linear(D, config.pred_hidden_dim), nn.PReLU(1), nn.Linear(config.pred_hidden_dim, D))
        self.teacher = EMATeacher(self.encoder)
        self.momentum = config.base_momentum

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        g1, g2 = views.global_views[:2]
        N = g1.shape[0]
        both = torch.cat([g1, g2])  # one pass over the disjoint union of the two views
        h = self.encoder(both)  # online embeddings [2N, D]
        q = self.predictor(h)  # [2N, D]
        y = self.teacher(both)  # target embeddings [2N, D], no gradient
        loss = bgrl_loss(q[:N], q[N:], y[:N], y[N:])
        return StepOutput(loss, {"momentum": self.momentum}, h[:N].detach())

    def on_step_end(self, ctx: StepContext) -> None:
        # A function of the step alone, so a resumed run continues the schedule.
        self.momentum = cosine_momentum(ctx.step + 1, ctx.total_steps, self.config.base_momentum, self.config.final_momentum)
        self.teacher.update(self.encoder, self.momentum)
