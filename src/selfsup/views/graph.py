"""Views of graphs (:class:`~selfsup.data.graph_batch.GraphBatch`): edge dropping and feature masking.

The two corruptions of GRACE (Zhu et al. 2020, arXiv 2006.04131), also BGRL's (Thakoor et al.
2022, arXiv 2102.06514): each view removes every edge with probability ``edge_drop`` and zeroes
each feature column with probability ``feature_mask``, with its own rate per view (GRACE draws the
two views with different rates: lists give one rate per view, cycled). Every random choice is made
per graph: a graph-level batch gets one feature mask per graph, and each edge is dropped on its
own. A node-level batch keeps its sample nodes (``center``) and every node; only edges and
feature columns change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch

from selfsup.config import Range
from selfsup.config_checks import check_not_empty
from selfsup.data.graph_batch import GraphBatch
from selfsup.views.base import Views, register_views

Rate = Annotated[float, Range(ge=0, lt=1)]


def drop_edges(g: GraphBatch, p: float, generator: torch.Generator) -> GraphBatch:
    """Each edge removed with probability ``p`` (a directed edge and its reverse on their own, as
    GRACE's code does)."""
    if p == 0 or g.num_edges == 0:
        return g
    keep = torch.rand(g.num_edges, generator=generator, device=g.device) >= p
    weight = None if g.edge_weight is None else g.edge_weight[keep]
    return g.replace(edge_index=g.edge_index[:, keep], edge_weight=weight)


def mask_features(g: GraphBatch, p: float, generator: torch.Generator) -> GraphBatch:
    """Each feature column zeroed with probability ``p``, drawn once per graph (all of a graph's
    nodes lose the same columns)."""
    if p == 0:
        return g
    masked = torch.rand(g.num_graphs, g.x.shape[1], generator=generator, device=g.device) < p
    return g.replace(x=g.x.masked_fill(masked[g.node_graph], 0.0))


@dataclass
class GraphViewsConfig:
    """Per-view rates (GRACE's Cora setting by default: edges 0.2 / 0.4, features 0.3 / 0.4)."""

    edge_drop: tuple[Rate, ...] = (0.2, 0.4)
    feature_mask: tuple[Rate, ...] = (0.3, 0.4)

    def __post_init__(self) -> None:
        for key in ("edge_drop", "feature_mask"):
            value = getattr(self, key)
            setattr(self, key, (value,) if isinstance(value, (int, float)) else tuple(value))
        check_not_empty(self, "edge_drop")
        check_not_empty(self, "feature_mask")


@register_views("graph")
class GraphViews:
    """``GraphBatch -> Views`` of edge-dropped, feature-masked copies (module docstring)."""

    Config = GraphViewsConfig

    def __init__(self, config: GraphViewsConfig) -> None:
        self.config = config

    def view(self, g: GraphBatch, k: int, generator: torch.Generator) -> GraphBatch:
        edge = self.config.edge_drop[k % len(self.config.edge_drop)]
        feature = self.config.feature_mask[k % len(self.config.feature_mask)]
        return mask_features(drop_edges(g, edge, generator), feature, generator)

    def __call__(
        self, batch: GraphBatch, generator: torch.Generator, num_views: int = 2, num_local_views: int = 0
    ) -> Views:
        if not isinstance(batch, GraphBatch):
            raise ValueError(f"graph views take graphs (graph:PATH data), not {type(batch).__name__} samples")
        return Views(
            [self.view(batch, k, generator) for k in range(num_views)],
            [self.view(batch, num_views + k, generator) for k in range(num_local_views)],
        )
