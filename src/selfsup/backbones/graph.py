"""Graph neural network encoders on PyTorch Geometric's layers: ``gcn``, ``gat``, ``gin``.

Each takes a :class:`~selfsup.data.graph_batch.GraphBatch` and returns one row per sample: the
sample nodes' rows (node level) or each graph's nodes pooled (graph level). They provide
``"nodes"``: ``forward_nodes(g) -> [n, D]``, every node's row, for the methods whose loss is on
nodes (GraphMAE's reconstruction, DGI's local-global pairs).

- ``gcn``: Kipf & Welling 2017, arXiv 1609.02907 (``GCNConv``: symmetric normalisation, self-loops
  added; takes a view's edge weights). GRACE, BGRL and DGI encode with it.
- ``gat``: Velickovic et al. 2018, arXiv 1710.10903 (``GATConv``, heads concatenated in the
  hidden layers, averaged in the last). GraphMAE's node-level encoder.
- ``gin``: Xu et al. 2019, arXiv 1810.00826 (``GINConv`` with a 2-layer MLP, BatchNorm; the
  graph-level papers' encoder; sum pooling of every layer concatenated, ``jumping: cat``, as in
  GIN's readout and InfoGraph / GraphCL).

The layers are PyG's (the ``[graph]`` extra), not rewritten: without it, building one of these
backbones is a one-line error that says what to install.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn as nn

from selfsup.backbones.base import register_backbone
from selfsup.config import OneOf, PositiveInt, Range
from selfsup.data.graph_batch import GraphBatch, sample_rows
from selfsup.errors import ConfigError

try:
    from torch_geometric.nn import GATConv, GCNConv, GINConv
except ImportError as _error:  # the [graph] extra is optional; only building a GNN needs it
    _MISSING: str | None = f"graph backbones need PyTorch Geometric ({_error}); install it with pip install 'selfsup[graph]'"
else:
    _MISSING = None


@dataclass
class GNNConfig:
    """Shared by the three GNNs.

    ``hidden_dim``: each layer's width (GAT: all heads together); ``num_layers``: message-passing
    layers; ``activation``: after each layer; ``norm``: BatchNorm or LayerNorm after each layer
    (``none``: the GCN and GAT papers); ``dropout``: on each layer's input during training;
    ``pool``: graph level, how nodes are pooled; ``jumping``: the node row is the last layer's
    (``last``) or every layer's concatenated (``cat``: embed_dim = layers x hidden_dim); ``heads``:
    GAT's attention heads; ``residual``: add each hidden layer's input back (same widths only);
    ``last_activation``: false leaves the last layer's output linear (no norm, no activation), as
    a decoder that rebuilds features needs (GraphMAE's).
    """

    hidden_dim: PositiveInt = 256
    num_layers: PositiveInt = 2
    activation: Annotated[str, OneOf("prelu", "relu", "elu")] = "prelu"
    norm: Annotated[str, OneOf("none", "batch", "layer")] = "none"
    dropout: Annotated[float, Range(ge=0, lt=1)] = 0.0
    pool: Annotated[str, OneOf("mean", "sum", "max")] = "mean"
    jumping: Annotated[str, OneOf("last", "cat")] = "last"
    heads: PositiveInt = 4
    residual: bool = False
    last_activation: bool = True


class GNN(nn.Module):
    """Message-passing layers -> node rows -> one row per sample (module docstring)."""

    provides = frozenset({"nodes"})
    kind = "gcn"

    def __init__(self, input_shape: tuple[int, ...], config: GNNConfig) -> None:
        super().__init__()
        if _MISSING is not None:
            raise ConfigError(_MISSING)
        if len(input_shape) != 1:
            raise ConfigError(f"backbone {self.kind!r} takes graphs with node features [n, F]; got samples of shape {input_shape}")
        self.config = config
        width = config.hidden_dim
        if self.kind == "gat" and width % config.heads:
            raise ConfigError(f"backbone 'gat': hidden_dim {width} must be a multiple of heads {config.heads}")
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.acts = nn.ModuleList()
        in_dim = int(input_shape[0])
        for layer in range(config.num_layers):
            last = layer == config.num_layers - 1
            self.convs.append(self._conv(in_dim, width, last=last))
            if last and not config.last_activation:  # a linear output: no norm, no activation
                self.norms.append(nn.Identity())
                self.acts.append(nn.Identity())
                continue
            self.norms.append(
                nn.BatchNorm1d(width) if config.norm == "batch" else nn.LayerNorm(width) if config.norm == "layer"
                else nn.Identity()
            )
            self.acts.append(
                nn.PReLU(width) if config.activation == "prelu" else nn.ELU() if config.activation == "elu" else nn.ReLU()
            )
            in_dim = width
        self.embed_dim = width * (config.num_layers if config.jumping == "cat" else 1)

    def _conv(self, in_dim: int, out_dim: int, last: bool) -> nn.Module:
        if self.kind == "gcn":
            return GCNConv(in_dim, out_dim)
        if self.kind == "gat":
            heads = self.config.heads
            if last:  # the GAT paper averages the last layer's heads
                return GATConv(in_dim, out_dim, heads=heads, concat=False)
            return GATConv(in_dim, out_dim // heads, heads=heads)
        mlp = nn.Sequential(nn.Linear(in_dim, out_dim), nn.BatchNorm1d(out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim))
        return GINConv(mlp, train_eps=False)

    def forward_nodes(self, g: GraphBatch) -> torch.Tensor:
        """Every node's row ``[n, embed_dim]``."""
        if not isinstance(g, GraphBatch):
            raise ConfigError(f"backbone {self.kind!r} takes graphs (graph:PATH data), not {type(g).__name__} samples")
        h, outs = g.x, []
        for conv, norm, act in zip(self.convs, self.norms, self.acts):
            if self.config.dropout:
                h = nn.functional.dropout(h, self.config.dropout, self.training)
            if self.kind == "gcn" and g.edge_weight is not None:
                out = conv(h, g.edge_index, g.edge_weight)
            else:
                out = conv(h, g.edge_index)
            out = act(norm(out))
            if self.config.residual and out.shape == h.shape:
                out = out + h
            h = out
            outs.append(h)
        return torch.cat(outs, dim=1) if self.config.jumping == "cat" else h

    def forward(self, g: GraphBatch) -> torch.Tensor:
        return self.pool(g, self.forward_nodes(g))

    def pool(self, g: GraphBatch, h: torch.Tensor) -> torch.Tensor:
        """Node rows -> one row per sample: the sample nodes (node level) or each graph pooled."""
        return sample_rows(g, h, self.config.pool)


@register_backbone("gcn")
class GCN(GNN):
    """Graph convolutional network (Kipf & Welling 2017, arXiv 1609.02907) on PyG's ``GCNConv``."""

    Config = GNNConfig
    kind = "gcn"


@register_backbone("gat")
class GAT(GNN):
    """Graph attention network (Velickovic et al. 2018, arXiv 1710.10903) on PyG's ``GATConv``."""

    Config = GNNConfig
    kind = "gat"


@dataclass
class GINConfig(GNNConfig):
    """GIN's defaults: 3 layers of 128, ReLU, BatchNorm inside each MLP, sum pooling of every layer."""

    hidden_dim: PositiveInt = 128
    num_layers: PositiveInt = 3
    activation: Annotated[str, OneOf("prelu", "relu", "elu")] = "relu"
    pool: Annotated[str, OneOf("mean", "sum", "max")] = "sum"
    jumping: Annotated[str, OneOf("last", "cat")] = "cat"


@register_backbone("gin")
class GIN(GNN):
    """Graph isomorphism network (Xu et al. 2019, arXiv 1810.00826) on PyG's ``GINConv``."""

    Config = GINConfig
    kind = "gin"
