"""An MLP for tables: numeric columns as they are, each categorical column through its own
embedding, then ``Linear -> BatchNorm -> ReLU`` blocks.

Input: the table modality's standardised samples ``[N, F]`` (numeric columns standardised, a
missing value at 0; categorical columns as category indices, ``K`` for missing or unknown).
``cardinalities`` (per column: its number of categories, 0 for numeric) is filled from the
data's schema when the run is resolved. The encoder of SCARF (Bahri et al. 2022, arXiv
2106.15147) is such an MLP (4 layers of 256 there); categorical embeddings as in Gorishniy et
al. 2021 ("Revisiting Deep Learning Models for Tabular Data", arXiv 2106.11959).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from selfsup.backbones.base import register_backbone
from selfsup.backbones.mlp import mlp_blocks
from selfsup.config import NonNegativeInt, PositiveInt
from selfsup.config_checks import check_not_empty
from selfsup.errors import ConfigError


class ColumnSplit(nn.Module):
    """Splits standardised table samples into numeric values ``[N, F_num]`` and the categorical
    columns' embeddings ``[N, F_cat, category_dim]`` (one table per column, ``K + 1`` rows: the
    last is "missing")."""

    def __init__(self, cardinalities: tuple[int, ...], category_dim: int) -> None:
        super().__init__()
        sizes = torch.tensor(cardinalities, dtype=torch.int64)
        categorical = sizes > 0
        self.register_buffer("numeric_index", torch.nonzero(~categorical).flatten(), persistent=False)
        self.register_buffer("categorical_index", torch.nonzero(categorical).flatten(), persistent=False)
        rows = sizes[categorical] + 1
        offsets = torch.cumsum(rows, 0) - rows
        self.register_buffer("offsets", offsets, persistent=False)
        self.register_buffer("sizes", sizes[categorical], persistent=False)
        self.num_numeric = int((~categorical).sum())
        self.num_categorical = int(categorical.sum())
        self.embedding = nn.Embedding(int(rows.sum()), category_dim) if self.num_categorical else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        numeric = x.index_select(1, self.numeric_index)
        if self.embedding is None:
            return numeric, None
        codes = x.index_select(1, self.categorical_index).round().long()
        codes = torch.minimum(codes.clamp(min=0), self.sizes)  # anything out of range is "missing"
        return numeric, self.embedding(codes + self.offsets)


@dataclass
class TableMLPConfig:
    """``hidden_dims``: the hidden widths, the last is ``embed_dim``; ``category_dim``: the width
    of each categorical column's embedding; ``cardinalities``: from the data (leave unset)."""

    hidden_dims: tuple[PositiveInt, ...] = (256, 256, 256)
    batch_norm: bool = True
    category_dim: PositiveInt = 8
    cardinalities: tuple[NonNegativeInt, ...] = ()

    def __post_init__(self) -> None:
        check_not_empty(self, "hidden_dims")


@register_backbone("table_mlp")
class TableMLP(nn.Module):
    """``x [N, F] -> [N, hidden_dims[-1]]`` (see the module docstring)."""

    Config = TableMLPConfig

    def __init__(self, input_shape: tuple[int, ...], config: TableMLPConfig) -> None:
        super().__init__()
        if len(input_shape) != 1:
            raise ConfigError(f"backbone 'table_mlp' takes table rows [F]; got samples of shape {tuple(input_shape)}")
        num_features = input_shape[0]
        sizes = tuple(config.cardinalities) or (0,) * num_features
        if len(sizes) != num_features:
            raise ConfigError(
                f"backbone 'table_mlp' has {len(sizes)} cardinalities for {num_features} columns; leave "
                "backbone.cardinalities unset to take them from the data"
            )
        self.columns = ColumnSplit(sizes, config.category_dim)
        in_dim = self.columns.num_numeric + self.columns.num_categorical * config.category_dim
        blocks, self.embed_dim = mlp_blocks(in_dim, config.hidden_dims, config.batch_norm)
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        numeric, embedded = self.columns(x)
        features = numeric if embedded is None else torch.cat([numeric, embedded.flatten(1)], dim=1)
        return self.net(features)
