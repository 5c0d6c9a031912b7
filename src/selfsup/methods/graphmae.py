"""GraphMAE: masked graph autoencoder that rebuilds masked nodes' features.

Hou, Liu, Cen, Dong, Yang, Wang, Tang 2022, "GraphMAE: Self-Supervised Masked Graph
Autoencoders", KDD 2022, arXiv 2205.10803. A fraction ``mask_rate`` of the nodes get their input
features replaced by a learned ``[MASK]`` token (a small ``replace_rate`` share of them get another
node's features instead, and are still scored); the GNN encoder embeds the graph; a linear map
(no bias) takes the embeddings to the decoder, where the masked nodes' rows are zeroed again
(``[DMASK]``: the decoder must rebuild them from their neighbours); a one-layer GAT decoder with
a linear output rebuilds the input features, and the loss is the scaled cosine error
``(1 - cos)^gamma`` averaged over the masked nodes
(:func:`~selfsup.losses.graph.scaled_cosine_error`).

Node level, the masked nodes are drawn among the batch's sample nodes (``center``; all nodes when
the batch is the whole graph, as in the paper); graph level, among every node of the batch's
graphs. The targets are the standardised features the encoder sees.

The paper's node-level encoder is a GAT, so ``--backbone auto`` gives ``gat`` at node level (where
the modality's default is ``gcn``) and ``gin`` at graph level (the paper's graph-level encoder).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, NamedTuple

import torch
import torch.nn as nn

from selfsup.backbones.base import create_backbone
from selfsup.config import Range
from selfsup.data.graph_batch import GraphBatch
from selfsup.losses.graph import scaled_cosine_error
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput, register_method
from selfsup.views import Views


class NodeMask(NamedTuple):
    """Which nodes GraphMAE masks, all int64 indices into the graph's nodes.

    ``masked [M]``: every masked node (scored); ``token [M - R]``: those given the ``[MASK]``
    token; ``replaced [R]``: those given another node's features, ``sources [R]`` (any node).
    """

    masked: torch.Tensor
    token: torch.Tensor
    replaced: torch.Tensor
    sources: torch.Tensor


def mask_nodes(
    candidates: torch.Tensor, num_nodes: int, mask_rate: float, replace_rate: float, generator: torch.Generator | None = None
) -> NodeMask:
    """GraphMAE's mask: ``int(mask_rate * len(candidates))`` of the ``candidates`` (at least one),
    ``int(replace_rate * M)`` of those replaced by random nodes' features, the rest by the token."""
    device = candidates.device
    M = max(1, int(mask_rate * candidates.numel()))
    masked = candidates[torch.randperm(candidates.numel(), generator=generator, device=device)[:M]]
    R = int(replace_rate * M)
    order = torch.randperm(M, generator=generator, device=device)
    sources = torch.randint(0, num_nodes, (R,), generator=generator, device=device)
    return NodeMask(masked, masked[order[R:]], masked[order[:R]], sources)


@dataclass
class GraphMAEConfig:
    """Attributes:
    mask_rate: share of the nodes masked (0.5 on Cora and CiteSeer, 0.75 on PubMed).
    replace_rate: share of the masked nodes given a random node's features instead of the token
        (0.05 on Cora, 0.1 on CiteSeer, 0 on PubMed).
    gamma: the scaled cosine error's exponent (3 on Cora and PubMed, 1 on CiteSeer).
    The encoder is the run's backbone; the decoder is one GAT layer (one head) with a linear output.
    """

    mask_rate: Annotated[float, Range(gt=0, lt=1)] = 0.5
    replace_rate: Annotated[float, Range(ge=0, lt=1)] = 0.05
    gamma: Annotated[float, Range(ge=1)] = 3.0


@register_method("graphmae")
class GraphMAE(Method):
    Config = GraphMAEConfig
    paper = "Hou et al. 2022, arXiv 2205.10803"
    modalities = frozenset({"graph"})
    requires = frozenset({"nodes"})  # every node's row: the decoder rebuilds nodes
    can_collapse_completely = False  # a constant encoding cannot rebuild the masked nodes' features
    num_global_views = 1  # the graph itself: masking is the only corruption
    default_views = "graph"
    backbone_choices = {"gcn": "gat"}  # the paper's node-level encoder; gin at graph level is its choice too
    # The paper's Cora run: lr 1e-3, weight decay 2e-4, 1,500 full-graph steps (max_steps: the same
    # number of optimiser steps whatever the batch), cosine decay without warm-up; no edge dropping.
    run_defaults = {
        "train": {"lr": 1e-3, "weight_decay": 2e-4, "warmup_epochs": 0, "epochs": 1500, "max_steps": 1500},
        "views": {"params": {"edge_drop": [0.0], "feature_mask": [0.0]}},
    }

    def __init__(self, encoder: Encoder, config: GraphMAEConfig) -> None:
        super().__init__(encoder, config)
        D, F = encoder.embed_dim, int(encoder.input_shape[0])
        self.mask_token = nn.Parameter(torch.zeros(1, F))  # [MASK], learned, in the standardised input space
        self.encoder_to_decoder = nn.Linear(D, D, bias=False)
        self.decoder = create_backbone("gat", (D,), hidden_dim=F, num_layers=1, heads=1, last_activation=False)

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        g: GraphBatch = self.encoder.standardize(views.global_views[0])  # the features the loss rebuilds
        c = self.config
        candidates = g.center if g.center is not None else torch.arange(g.num_nodes, device=g.device)
        mask = mask_nodes(candidates, g.num_nodes, c.mask_rate, c.replace_rate, ctx.generator_on(g.device))
        x = g.x.clone()
        x[mask.replaced] = g.x[mask.sources]
        x[mask.token] = self.mask_token.to(x.dtype).expand(mask.token.numel(), -1)
        h = self.encoder.backbone.forward_nodes(g.replace(x=x))  # [n, D]
        rep = self.encoder_to_decoder(h).index_fill(0, mask.masked, 0.0)  # [DMASK]: masked rows zeroed again
        reconstruction = self.decoder.forward_nodes(g.replace(x=rep))  # [n, F]
        loss = scaled_cosine_error(reconstruction, g.x, mask.masked, c.gamma)
        return StepOutput(loss, {}, self.encoder.backbone.pool(g, h).detach())
