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
        layers: list[nn.Module] = [nn.Flatten()]
        in_dim = math.prod(input_shape)
        for width in config.hidden_dims:
            layers.append(nn.Linear(in_dim, width))
            if config.batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.ReLU(inplace=True))
            in_dim = width
        self.net = nn.Sequential(*layers)
        self.embed_dim = in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
