"""Graphs: samples are the nodes of one graph (node level) or small graphs (graph level), held in a
:class:`~selfsup.data.graph_batch.GraphBatch`.

- **Scaling**: node features are divided by their largest absolute value on the training data
  (scikit-learn's ``MaxAbsScaler``), not centred. Graph features are mostly sparse counts or
  binary indicators (bags of words, one-hot atom types), which this leaves as they are, zeros
  kept zeros, while a feature on another scale (a node's age in days) comes to ``[-1, 1]``.
  Centring would make a bag of words dense and give rare words the largest values.
- **Raw-input baseline**: a node's own scaled features (node level); the mean of a graph's
  node features (graph level).
- **Defaults**: the ``graph`` views (edge dropping and feature masking, GRACE's); the ``gcn``
  backbone on node-level data (GRACE, BGRL and DGI use GCN layers) and ``gin`` on graph-level data
  (Xu et al. 2019, arXiv 1810.00826, the graph-level papers' encoder).
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

from selfsup.data.graph_batch import GraphBatch, sample_rows
from selfsup.data.modalities import Modality, register_modality, unit_if_constant


@register_modality("graph")
class GraphModality(Modality):
    default_views = "graph"
    default_backbone = "gcn"
    traceable = False  # a GraphBatch is several tensors: graph encoders export as safetensors

    def __init__(self, info: dict[str, Any] | None = None) -> None:
        super().__init__(info)
        if info is not None and info.get("level") == "graph":
            self.default_backbone = "gin"

    def sample_shape_of(self, x: GraphBatch) -> tuple[int, ...]:  # type: ignore[override]
        """A sample's shape is its nodes' feature count ``(F,)``."""
        return tuple(int(s) for s in x.x.shape[1:]) if isinstance(x, GraphBatch) else tuple(int(s) for s in x.shape[1:])

    def to_float(self, x: GraphBatch) -> GraphBatch:  # type: ignore[override]
        return x.float()

    def statistics(self, batches: Iterable[GraphBatch]) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        """``(0, max |x|)`` per feature over the samples' nodes (node level: the sample nodes only,
        each counted once per batch; graph level: every node). A column that is 0 on every node read
        gets scale 1 (scikit-learn's ``MaxAbsScaler`` does the same): the statistics read at most
        10,000 samples, and a rare word on a node outside them must not be multiplied by a million."""
        top = None
        for g in batches:
            x = g.x if g.center is None else g.x[g.center]
            m = x.float().abs().amax(dim=0) if x.shape[0] else torch.zeros(x.shape[1])
            top = m if top is None else torch.maximum(top, m)
        if top is None:
            raise ValueError("no samples to compute input statistics from")
        return torch.zeros_like(top), unit_if_constant(top)

    def standardize(self, x: GraphBatch, mean: torch.Tensor, std: torch.Tensor) -> GraphBatch:  # type: ignore[override]
        return x.replace(x=(x.x - mean) / std)

    def raw_features(self, x: GraphBatch, standardized: GraphBatch) -> torch.Tensor:  # type: ignore[override]
        return sample_rows(standardized, standardized.x, "mean")

    def tree_features(self, x: GraphBatch) -> tuple[torch.Tensor, list[bool] | None]:  # type: ignore[override]
        """The raw baseline's rows, unscaled (trees need no scaling)."""
        return self.raw_features(x, x), None
