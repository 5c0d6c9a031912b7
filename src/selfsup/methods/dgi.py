"""DGI: Deep Graph Infomax, local-global mutual information between nodes and their graph.

Velickovic, Fedus, Hamilton, Lio, Bengio, Hjelm 2019, "Deep Graph Infomax", ICLR 2019, arXiv
1809.10341. The encoder embeds every node of the graph (``h``) and of a corrupted copy whose node
features are shuffled among the nodes (a row permutation, the structure kept: ``h~``). The
readout summarises the real graph, ``s = sigmoid(mean_i h_i)``; a bilinear discriminator
``D(h, s) = sigmoid(h^T W s + b)`` learns to tell real pairs ``(h_i, s)`` from corrupted ones
``(h~_i, s)``, with binary cross-entropy (:func:`~selfsup.losses.graph.dgi_loss`).

- Node level: the summary is of the whole graph the batch holds (the graph, or the k-hop
  subgraph of the batch's nodes), and the scored pairs are the batch's sample nodes (``center``;
  every node when the batch is the whole graph, as in the paper).
- Graph level: one summary per graph; every node is scored against its own graph's summary and
  the corruption shuffles features within each graph (InfoGraph-style pairs of node and graph,
  Sun et al. 2020, arXiv 1908.01000, but with DGI's corruption and BCE rather than InfoGraph's
  negatives from other graphs and its Jensen-Shannon estimator).

DGI uses no augmentation: the method asks for one view and its run defaults make that view the
graph unchanged (the ``graph`` views at rates 0). The corruption is drawn in the method from the
run's seeded generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from selfsup.data.graph_batch import GraphBatch
from selfsup.losses.graph import dgi_loss, dgi_summary
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput, register_method
from selfsup.views import Views


def shuffle_within_graphs(node_graph: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random permutation of the nodes that keeps each node in its graph: DGI's corruption.

    Args:
        node_graph: ``[n]`` int64, the graph of each node.
        generator: the draw's generator (the same state gives the same permutation).

    Returns:
        ``perm [n]``: node ``i`` of the corrupted graph takes the features of node ``perm[i]``,
        and ``node_graph[perm] == node_graph``.
    """
    n = node_graph.numel()
    # Nodes grouped by graph in their own order, and grouped by graph in a random order: the k-th
    # slots of the two orders lie in the same graph, so pairing them shuffles within each graph.
    by_graph = torch.argsort(node_graph, stable=True)
    noise = torch.rand(n, generator=generator, device=node_graph.device, dtype=torch.float64)
    shuffled = torch.argsort(node_graph.to(torch.float64) + noise)  # graph ids are integers, noise in [0, 1)
    perm = torch.empty_like(by_graph)
    perm[by_graph] = shuffled
    return perm


def corrupt(g: GraphBatch, generator: torch.Generator | None = None) -> GraphBatch:
    """``g`` with its node features shuffled within each graph (edges unchanged)."""
    return g.replace(x=g.x[shuffle_within_graphs(g.node_graph, generator)])


@dataclass
class DGIConfig:
    """DGI has no knob of its own: the encoder is the run's backbone (the paper's transductive
    encoder is one GCN layer of 512 with a PReLU: ``--backbone gcn --set backbone.num_layers=1
    backbone.hidden_dim=512``)."""


@register_method("dgi")
class DGI(Method):
    Config = DGIConfig
    paper = "Velickovic et al. 2019, arXiv 1809.10341"
    modalities = frozenset({"graph"})
    requires = frozenset({"nodes"})  # every node's row: the readout and the discriminator use them
    num_global_views = 1  # the graph itself; the corruption is the method's
    default_views = "graph"
    # The paper's transductive runs: Adam at a constant lr of 1e-3, no weight decay (it stops early
    # on the training loss, patience 20, which is not done here); the view is the graph unchanged.
    run_defaults = {
        "train": {"lr": 1e-3, "weight_decay": 0.0, "warmup_epochs": 0, "min_lr_ratio": 1.0},
        "views": {"params": {"edge_drop": [0.0], "feature_mask": [0.0]}},
    }

    def __init__(self, encoder: Encoder, config: DGIConfig) -> None:
        super().__init__(encoder, config)
        D = encoder.embed_dim
        self.discriminator = nn.Bilinear(D, D, 1)  # D(h, s) = h^T W s + b (the sigmoid is in the loss)
        nn.init.xavier_uniform_(self.discriminator.weight)
        nn.init.zeros_(self.discriminator.bias)

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        g = views.global_views[0]
        h = self.encoder.forward_nodes(g)  # [n, D] every node of the real graph
        h_corrupted = self.encoder.forward_nodes(corrupt(g, ctx.generator_on(g.device)))  # [n, D]
        summary = dgi_summary(h, g.node_graph, g.num_graphs)  # [G, D]
        # Node level: the batch's sample nodes; graph level: every node, each with its own graph.
        scored = g.center if g.center is not None else torch.arange(g.num_nodes, device=h.device)
        loss = dgi_loss(
            h[scored], h_corrupted[scored], summary[g.node_graph[scored]],
            self.discriminator.weight[0], self.discriminator.bias[0],
        )
        return StepOutput(loss, {}, self.encoder.backbone.pool(g, h).detach())
