"""Multi-layer perceptron encoder for vectors (tabular features) or flattened small inputs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from selfsup.backbones.base import register_backbone
from selfsup.config import PositiveInt
from selfsup.config_checks import check_not_empty
from selfsup.errors import ConfigError


def mlp_blocks(in_dim: int, widths: tuple[int, ...], batch_norm: bool) -> tuple[list[nn.Module], int]:
    """``Linear -> BatchNorm (optional) -> ReLU`` per width; returns the layers and the output width."""
    layers: list[nn.Module] = []
    for width in widths:
        layers.append(nn.Linear(in_dim, width))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(nn.ReLU(inplace=True))
        in_dim = width
    return layers, in_dim


@dataclass
class MLPConfig:
    """``hidden_dims``: widths of the hidden layers; the last one is ``embed_dim``."""

    hidden_dims: tuple[PositiveInt, ...] = (512, 512)
    batch_norm: bool = True

    def __post_init__(self) -> None:
        check_not_empty(self, "hidden_dims")


@register_backbone("mlp")
class MLP(nn.Module):
    """Flatten, then ``Linear -> BatchNorm -> ReLU`` blocks. ``x: [N, *input_shape] -> [N, D]``."""

    Config = MLPConfig

    def __init__(self, input_shape: tuple[int, ...], config: MLPConfig) -> None:
        super().__init__()
        if not config.hidden_dims:
            raise ConfigError("backbone 'mlp' needs at least one hidden dim (hidden_dims=[512])")
        blocks, self.embed_dim = mlp_blocks(math.prod(input_shape), config.hidden_dims, config.batch_norm)
        self.net = nn.Sequential(nn.Flatten(), *blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
