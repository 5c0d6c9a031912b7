"""GRACE: node-level contrastive learning between two corrupted views of a graph.

Zhu, Xu, Yu, Liu, Wu, Wang 2020, "Deep Graph Contrastive Representation Learning", arXiv
2006.04131. Two views of the graph (the ``graph`` views: edges removed and feature columns
masked, each view with its own rates) go through the GNN encoder; a 2-layer projection head with
an ELU maps each node's embedding to the space of the loss; each node's embedding in one view
must pick out the same node's in the other view against every other node of both views
(inter-view and intra-view negatives), at temperature tau, symmetrised over the two views
(:func:`~selfsup.losses.graph.grace_loss`).

The paper scores every node of the graph at every step. Here the loss covers the batch's sample
nodes (``GraphBatch.center``: the whole graph when the batch is every node), while message passing
sees the whole graph (or the batch's k-hop subgraph): an ``N x N`` similarity for a batch of ``N``
nodes, the subsampling the paper's code offers for large graphs. At graph level the samples are
graphs (each pooled by the backbone) and the same loss contrasts them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from selfsup.config import PositiveFloat, PositiveInt
from selfsup.core.distributed import gather_with_grad
from selfsup.losses.graph import grace_loss
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput, register_method
from selfsup.views import Views


@dataclass
class GRACEConfig:
    """Attributes:
    temperature: tau (the paper's code: 0.4 on Cora, 0.9 on CiteSeer, 0.7 on PubMed and DBLP).
    proj_hidden_dim / proj_dim: the projection head, Linear -> ELU -> Linear (128 and 128 on Cora;
    the code maps back to the encoder's width).
    The views' rates are the ``graph`` views' (``--set views.edge_drop=[0.2,0.4]``).
    """

    temperature: PositiveFloat = 0.4
    proj_hidden_dim: PositiveInt = 128
    proj_dim: PositiveInt = 128


@register_method("grace")
class GRACE(Method):
    Config = GRACEConfig
    paper = "Zhu et al. 2020, arXiv 2006.04131"
    modalities = frozenset({"graph"})
    # The paper's Cora run: Adam at a constant lr of 5e-4, weight decay 1e-5, 200 full-graph steps
    # (max_steps: the same number of optimiser steps whatever the batch; epochs no shorter). The
    # views' defaults are its Cora rates (edges 0.2 / 0.4, features 0.3 / 0.4).
    run_defaults = {
        "train": {
            "lr": 5e-4, "weight_decay": 1e-5, "warmup_epochs": 0, "min_lr_ratio": 1.0, "epochs": 200, "max_steps": 200,
        },
    }

    def __init__(self, encoder: Encoder, config: GRACEConfig) -> None:
        super().__init__(encoder, config)
        self.projector = nn.Sequential(
            nn.Linear(encoder.embed_dim, config.proj_hidden_dim), nn.ELU(), nn.Linear(config.proj_hidden_dim, config.proj_dim),
        )

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        g1, g2 = views.global_views[:2]
        N = g1.shape[0]
        h = self.encoder(torch.cat([g1, g2]))  # both views in one message-passing pass: [2N, D] sample rows
        z = self.projector(h)
        z1, z2 = gather_with_grad(z[:N]), gather_with_grad(z[N:])
        loss = grace_loss(z1, z2, self.config.temperature)
        return StepOutput(loss, {}, h[:N].detach())
