"""FT-Transformer: a transformer over table columns, one token per column, with the token interface.

Gorishniy, Rubachev, Khrulkov, Babenko 2021, "Revisiting Deep Learning Models for Tabular Data",
NeurIPS 2021, arXiv 2106.11959, sec. 3.3. The *feature tokenizer* turns column ``j`` of a row into
a token ``T_j = b_j + x_j * W_j`` for a numeric column and ``T_j = b_j + E_j[x_j]`` for a
categorical one (a lookup in the column's own embedding table), an optional [CLS] token is added,
and a stack of pre-norm transformer blocks mixes the columns; the prediction reads the [CLS]
output. The per-column bias ``b_j`` is the column's identity, so here it is the token backbone's
``position_embedding``: column ``j`` sits at position ``j``, and a token hidden in place
(``encode(mask=...)``) becomes the method's mask token plus ``b_j``, which tells the network which
column to fill in. Masks from ``masking/`` are drawn over the ``F`` columns.

Input: the table modality's standardised rows ``[N, F]`` (numeric columns standardised, a missing
value at 0; categorical columns as category indices ``0 .. K-1``, ``K`` for missing or unknown).
``cardinalities`` (per column: K, or 0 for numeric) come from the data's schema when the run is
resolved; each categorical table has ``K + 1`` rows, the last for "missing". A missing numeric value
reads as the column's mean (its token is ``b_j`` alone): the standardisation has already replaced
it, so the backbone cannot tell it from an observed mean.

Differences from the paper, for small CPU runs and for reuse of :mod:`selfsup.backbones.tokens`:
the blocks are this project's pre-norm ViT blocks (GELU MLP instead of ReGLU, the first block keeps
its first LayerNorm, no attention/FFN dropout); width 64, 3 blocks of 4 heads by default (the
paper: 192, 3, 8); the [CLS] token is put before the columns instead of after them (attention has
no order, so only its name changes). Weights of the tokenizer are initialised as the paper's
(uniform in ``±1/sqrt(dim)``), the blocks as ViT/MAE.

MAE and SimMIM reconstruct ``patchify(x)``, one value per column: the standardised value of a
numeric column, NaN for a categorical column. A category index is a label, not a quantity (its
squared error to "index 2" says nothing about which category is nearer), and regressing it would
teach an order the data does not have; the masked losses leave NaN values out, so masked
reconstruction on tables is numeric-only: categorical columns are hidden from the encoder like
the others, but only the numeric columns are scored. Predicting a hidden category would need a
per-column classifier (cross-entropy over its ``K + 1`` slots, as VIME's feature estimator);
latent-prediction methods (I-JEPA, T-JEPA, data2vec 2.0) need no target values and use every column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch
import torch.nn as nn

from selfsup.backbones.base import register_backbone
from selfsup.backbones.table import ColumnSplit
from selfsup.backbones.tokens import TokenBackbone, Tokens, TransformerBlock, cls_or_mean, init_transformer_weights
from selfsup.config import NonNegativeInt, OneOf, PositiveFloat, PositiveInt, Range
from selfsup.errors import ConfigError, DataError


@dataclass
class FTTransformerConfig:
    """Attributes:
    dim, depth, num_heads, mlp_ratio: the transformer (``dim`` divisible by ``num_heads``).
    cls_token: add a learned [CLS] token (its output is ``Tokens.cls``; T-JEPA uses it as its
        regularisation token).
    pool: "cls" (the paper's prediction reads the [CLS] output; needs ``cls_token``) or "mean"
        over the column tokens (what the masked and predictive methods declare).
    drop_path: stochastic depth rate of the last block, rising linearly from 0 in the first.
    cardinalities: per column, its number of categories (0 = numeric); from the data (leave unset).
    """

    dim: PositiveInt = 64
    depth: PositiveInt = 3
    num_heads: PositiveInt = 4
    mlp_ratio: PositiveFloat = 2.0
    cls_token: bool = True
    pool: Annotated[str, OneOf("cls", "mean")] = "cls"
    drop_path: Annotated[float, Range(ge=0, lt=1)] = 0.0
    cardinalities: tuple[NonNegativeInt, ...] = ()

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by num_heads ({self.num_heads})")
        if self.pool == "cls" and not self.cls_token:
            raise ValueError("pool='cls' needs cls_token=true")


@register_backbone("ft_transformer")
class FTTransformer(TokenBackbone):
    """``x [N, F] -> [N, dim]``; tokens ``[N, F, dim]``, one per column (see the module docstring)."""

    Config = FTTransformerConfig
    modality: ClassVar[str] = "table"

    def __init__(self, input_shape: tuple[int, ...], config: FTTransformerConfig) -> None:
        super().__init__()
        if len(input_shape) != 1:
            raise ConfigError(
                f"backbone 'ft_transformer' takes table rows [F]; got samples of shape {tuple(input_shape)}. "
                "Use vit_tiny for images and patch_transformer for series."
            )
        num_columns = int(input_shape[0])
        sizes = tuple(int(k) for k in config.cardinalities) or (0,) * num_columns
        if len(sizes) != num_columns:
            raise ConfigError(
                f"backbone 'ft_transformer' has {len(sizes)} cardinalities for {num_columns} columns; leave "
                "backbone.cardinalities unset to take them from the data"
            )
        self.config = config
        self.num_columns = self.sequence_length = num_columns
        self.embed_dim = D = config.dim
        self.columns = ColumnSplit(sizes, D)  # numeric values and the categorical columns' embeddings
        numeric = self.columns.num_numeric
        self.numeric_weight = nn.Parameter(torch.empty(numeric, D)) if numeric else None  # W_j
        self.pos_embed = nn.Parameter(torch.empty(num_columns, D))  # b_j: the column's identity
        # Tokens come out of ColumnSplit numeric columns first; this puts them back in column order.
        order = torch.cat([self.columns.numeric_index, self.columns.categorical_index])
        self.register_buffer("column_order", torch.argsort(order), persistent=False)
        self.register_buffer("categorical", torch.tensor(sizes) > 0, persistent=False)
        self.cls_token = nn.Parameter(torch.empty(1, 1, D)) if config.cls_token else None
        rates = torch.linspace(0, config.drop_path, config.depth).tolist()
        self.blocks = nn.ModuleList(TransformerBlock(D, config.num_heads, config.mlp_ratio, rate) for rate in rates)
        self.norm = nn.LayerNorm(D)
        self._init_weights()

    def _init_weights(self) -> None:
        self.apply(init_transformer_weights)
        # The paper initialises every tokenizer parameter as nn.Linear's (uniform, +-1/sqrt(dim)).
        bound = 1.0 / math.sqrt(self.embed_dim)
        tokenizer = [self.numeric_weight, self.pos_embed, self.cls_token]
        if self.columns.embedding is not None:
            tokenizer.append(self.columns.embedding.weight)
        for param in tokenizer:
            if param is not None:
                nn.init.uniform_(param, -bound, bound)

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.num_columns:
            raise DataError(
                f"backbone 'ft_transformer' was built for table rows [N, {self.num_columns}]; got a batch of "
                f"shape {tuple(x.shape)}. Build it for the table's columns."
            )

    def tokenize(self, x: torch.Tensor) -> Tokens:
        """``x [N, F]`` (standardised) -> ``Tokens(x [N, F, dim], positions = arange(F))``: column ``j``'s
        value token ``x_j * W_j`` (numeric) or ``E_j[x_j]`` (categorical), plus ``b_j``."""
        self._check(x)
        numeric, embedded = self.columns(x)  # [N, F_num], [N, F_cat, D] or None
        parts = [] if self.numeric_weight is None else [numeric.unsqueeze(-1) * self.numeric_weight]  # [N, F_num, D]
        if embedded is not None:
            parts.append(embedded.to(self.pos_embed.dtype))
        values = torch.cat(parts, dim=1)  # numeric columns first, then categorical ones
        tokens = values[:, self.column_order] + self.pos_embed.to(values.dtype)  # [N, F, D], column order
        N, L = tokens.shape[:2]
        return Tokens(tokens, torch.arange(L, device=x.device).expand(N, L))

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """``x [N, F]`` -> ``[N, F, 1]``: a numeric column's standardised value, NaN for a categorical
        column (left out of MAE's and SimMIM's losses: a category index is not a value to regress)."""
        self._check(x)
        return torch.where(self.categorical, torch.full_like(x, float("nan")), x).unsqueeze(-1)

    def position_embedding(self, positions: torch.Tensor) -> torch.Tensor:
        return self.pos_embed[positions]

    def prefix_tokens(self, batch_size: int) -> torch.Tensor | None:
        return None if self.cls_token is None else self.cls_token.expand(batch_size, -1, -1)

    def pool(self, tokens: Tokens) -> torch.Tensor:
        """``[N, dim]``: the [CLS] output (``pool="cls"``) or the mean over the column tokens."""
        return cls_or_mean(tokens, self.config.pool)


__all__ = ["FTTransformer", "FTTransformerConfig"]
