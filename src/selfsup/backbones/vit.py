"""Vision Transformers for small images (8x8 to 64x64), with the token interface.

Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words: Transformers for Image Recognition at
Scale", ICLR 2021, arXiv 2010.11929: the image is cut into ``patch_size`` squares, each embedded
linearly, position embeddings added, and a stack of pre-norm transformer blocks mixes them. As MAE
(He et al. 2022, arXiv 2111.06377): fixed 2-D sin-cos position embeddings, optional CLS token,
global average pooling by default, truncated-normal init. Small patches (4 px on 28 px images =
49 tokens; 2 px on 8 px digits = 16 tokens) keep enough tokens for masking.

- ``vit_tiny``: width 128, 4 blocks, 4 heads; trains on a CPU.
- ``vit_small``: width 192, 6 blocks, 3 heads (DeiT-Ti's width at half its depth).

Names are relative to this project's small images, not the ImageNet models of the same names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn as nn

from selfsup.backbones.base import register_backbone
from selfsup.backbones.tokens import (
    TokenBackbone,
    Tokens,
    TransformerBlock,
    cls_or_mean,
    init_transformer_weights,
    sincos_2d,
)
from selfsup.config import OneOf, PositiveFloat, PositiveInt, Range
from selfsup.errors import ConfigError, DataError


@dataclass
class ViTConfig:
    """Attributes:
    patch_size: side of the square patches in pixels; must divide the image's height and width.
    embed_dim, depth, num_heads, mlp_ratio: the transformer (``embed_dim`` divisible by 4 for the
        2-D sin-cos embeddings and by ``num_heads``).
    cls_token: add a learned CLS token (its output is ``Tokens.cls``).
    pool: "mean" over the patch tokens, or "cls" (needs ``cls_token``).
    drop_path: stochastic depth rate of the last block, rising linearly from 0 in the first.
    """

    patch_size: PositiveInt = 4
    embed_dim: PositiveInt = 192
    depth: PositiveInt = 6
    num_heads: PositiveInt = 3
    mlp_ratio: PositiveFloat = 4.0
    cls_token: bool = False
    pool: Annotated[str, OneOf("mean", "cls")] = "mean"
    drop_path: Annotated[float, Range(ge=0, lt=1)] = 0.0

    def __post_init__(self) -> None:
        if self.embed_dim % 4 or self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim ({self.embed_dim}) must be divisible by 4 (2-D sin-cos position embeddings) "
                f"and by num_heads ({self.num_heads})"
            )
        if self.pool == "cls" and not self.cls_token:
            raise ValueError("pool='cls' needs cls_token=true")


class VisionTransformer(TokenBackbone):
    """ViT over ``[N, C, H, W]`` images (standardised by the caller).

    ``tokenize``: ``L = (H / p) * (W / p)`` patch tokens, row-major; ``encode``/``forward_intermediates``
    as :class:`TokenBackbone`; ``forward`` -> ``[N, embed_dim]``.
    """

    Config = ViTConfig

    def __init__(self, input_shape: tuple[int, ...], config: ViTConfig, name: str = "vit") -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ConfigError(
                f"backbone {name!r} takes images [C, H, W]; got samples of shape {tuple(input_shape)}. "
                "Use mlp for vectors and patch_transformer for series [C, T]."
            )
        C, H, W = (int(s) for s in input_shape)
        p = config.patch_size
        if H % p or W % p:
            common = math.gcd(H, W)
            sizes = [d for d in range(2, common + 1) if common % d == 0] or [1]
            closest = min(sizes, key=lambda d: (abs(d - p), d))
            raise ConfigError(
                f"backbone {name!r}: images of shape {(C, H, W)} cannot be cut into {p}x{p} patches "
                f"({H}x{W} is not a multiple of {p}); use a patch_size that divides both {H} and {W}: "
                f"{', '.join(map(str, sizes))} (e.g. --set backbone.patch_size={closest})"
            )
        self.name = name
        self.config = config
        self.input_shape = (C, H, W)
        self.grid = (H // p, W // p)
        self.sequence_length = self.grid[0] * self.grid[1]
        self.embed_dim = D = config.embed_dim
        self.patch_embed = nn.Conv2d(C, D, kernel_size=p, stride=p)  # a linear map of each patch
        self.register_buffer("pos_embed", sincos_2d(*self.grid, D), persistent=False)  # [L, D], fixed
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D)) if config.cls_token else None
        rates = torch.linspace(0, config.drop_path, config.depth).tolist()
        self.blocks = nn.ModuleList(
            TransformerBlock(D, config.num_heads, config.mlp_ratio, rate) for rate in rates
        )
        self.norm = nn.LayerNorm(D)
        self._init_weights()

    def _init_weights(self) -> None:
        self.apply(init_transformer_weights)
        # MAE initialises the patch projection with Xavier-uniform on its flattened weight: with
        # truncated-normal 0.02 the patch content (fan-in 4 for 2x2 gray patches) is ~50x smaller
        # than the sin-cos position embeddings, every sample's tokens look alike and the pooled
        # features start collapsed (RankMe ~1 on digits).
        nn.init.xavier_uniform_(self.patch_embed.weight.view(self.patch_embed.weight.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise DataError(
                f"backbone {self.name!r} was built for images [N, {', '.join(map(str, self.input_shape))}]; "
                f"got a batch of shape {tuple(x.shape)}. Build it for the data's image shape."
            )

    def tokenize(self, x: torch.Tensor) -> Tokens:
        """``x [N, C, H, W]`` -> ``Tokens(x [N, L, D], positions [N, L], padding=None)``."""
        self._check(x)
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # [N, L, D], row-major
        N, L, _ = tokens.shape
        positions = torch.arange(L, device=x.device).expand(N, L)
        return Tokens(tokens + self.pos_embed.to(tokens.dtype), positions)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """``x [N, C, H, W]`` -> pixels ``[N, L, p * p * C]``, each patch row by row, channels last (MAE)."""
        self._check(x)
        N, C = x.shape[:2]
        (h, w), p = self.grid, self.config.patch_size
        patches = x.reshape(N, C, h, p, w, p).permute(0, 2, 4, 3, 5, 1)  # [N, h, w, p, p, C]
        return patches.reshape(N, h * w, p * p * C)

    def position_embedding(self, positions: torch.Tensor) -> torch.Tensor:
        return self.pos_embed[positions]

    def prefix_tokens(self, batch_size: int) -> torch.Tensor | None:
        # The CLS token has no position embedding (MAE gives it a zero one).
        return None if self.cls_token is None else self.cls_token.expand(batch_size, -1, -1)

    def pool(self, tokens: Tokens) -> torch.Tensor:
        """``[N, D]``: the CLS output (``pool="cls"``) or the mean over the non-padding patch tokens."""
        return cls_or_mean(tokens, self.config.pool)


@dataclass
class ViTTinyConfig(ViTConfig):
    embed_dim: PositiveInt = 128
    depth: PositiveInt = 4
    num_heads: PositiveInt = 4


@register_backbone("vit_tiny")
def vit_tiny(input_shape: tuple[int, ...], config: ViTTinyConfig) -> VisionTransformer:
    """ViT of width 128, 4 blocks of 4 heads, 4 px patches: small enough to train on a CPU."""
    return VisionTransformer(input_shape, config, name="vit_tiny")


vit_tiny.Config = ViTTinyConfig  # type: ignore[attr-defined]


@register_backbone("vit_small")
def vit_small(input_shape: tuple[int, ...], config: ViTConfig) -> VisionTransformer:
    """ViT of width 192, 6 blocks of 3 heads, 4 px patches."""
    return VisionTransformer(input_shape, config, name="vit_small")


vit_small.Config = ViTConfig  # type: ignore[attr-defined]


__all__ = ["VisionTransformer", "ViTConfig", "ViTTinyConfig"]
