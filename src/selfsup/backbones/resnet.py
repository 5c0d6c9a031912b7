"""ResNets for small images (8x8 to 64x64).

He, Zhang, Ren, Sun 2016, "Deep Residual Learning for Image Recognition", arXiv 1512.03385.
The small-image variant (3x3 stem, no max-pool), as used for CIFAR in SimCLR (arXiv 2002.05709,
appendix B.9), keeps resolution on inputs too small for the ImageNet stem. For large images and
pretrained-architecture zoos, use timm through its adapter (planned), not a copy here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from selfsup.backbones.base import register_backbone
from selfsup.config import PositiveInt
from selfsup.config_checks import check_not_empty
from selfsup.errors import ConfigError


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection. ``[N, C_in, H, W] -> [N, C_out, H/s, W/s]``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


@dataclass
class ResNetConfig:
    """``widths[i]`` channels and ``blocks[i]`` basic blocks in stage i, downsampled by ``strides[i]``."""

    widths: tuple[PositiveInt, ...] = (64, 128, 256, 512)
    blocks: tuple[PositiveInt, ...] = (2, 2, 2, 2)
    strides: tuple[PositiveInt, ...] = (1, 2, 2, 2)

    def __post_init__(self) -> None:
        check_not_empty(self, "widths", "blocks", "strides")
        if not len(self.widths) == len(self.blocks) == len(self.strides):
            raise ValueError(
                f"widths, blocks and strides must have the same length (one per stage); got {list(self.widths)}, "
                f"{list(self.blocks)} and {list(self.strides)}"
            )


class ResNet(nn.Module):
    """Small-image ResNet. ``x: [N, C, H, W] -> [N, widths[-1]]`` (global average pooled).

    ``memory_format``: the layout the convolutions run in. ``forward`` turns its input into it
    (a no-op when it already is), so the activations and their gradients keep it throughout:
    channels-last (NHWC) is what oneDNN's CPU kernels and cuDNN's tensor cores prefer
    (1.26x for resnet18 at 32 px on a Zen 4 CPU, benchmarks/results/throughput.md). The weights
    keep their layout: converting them too bought 1-3% there. Set ``torch.contiguous_format`` on
    an instance for NCHW.
    """

    Config = ResNetConfig
    memory_format: torch.memory_format = torch.channels_last

    def __init__(self, input_shape: tuple[int, ...], config: ResNetConfig) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ConfigError(
                f"resnet backbones take images [C, H, W]; got samples of shape {tuple(input_shape)}. "
                "Use --backbone mlp for vectors."
            )
        if not (len(config.widths) == len(config.blocks) == len(config.strides)):
            raise ConfigError("resnet widths, blocks and strides must have the same length")
        in_channels = input_shape[0]
        stem_width = config.widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        channels = stem_width
        for width, num_blocks, stride in zip(config.widths, config.blocks, config.strides):
            for i in range(num_blocks):
                stages.append(BasicBlock(channels, width, stride if i == 0 else 1))
                channels = width
        self.stages = nn.Sequential(*stages)
        self.embed_dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=self.memory_format)
        features = self.stages(self.stem(x))  # [N, D, h, w]
        return features.mean(dim=(2, 3))


@register_backbone("resnet18")
def resnet18(input_shape: tuple[int, ...], config: ResNetConfig) -> ResNet:
    """ResNet-18 (CIFAR variant): 4 stages of 2 blocks, widths 64-512, embed_dim 512."""
    return ResNet(input_shape, config)


resnet18.Config = ResNetConfig  # type: ignore[attr-defined]


@dataclass
class ResNetTinyConfig(ResNetConfig):
    widths: tuple[PositiveInt, ...] = (32, 64, 128)
    blocks: tuple[PositiveInt, ...] = (1, 1, 1)
    strides: tuple[PositiveInt, ...] = (1, 2, 2)


@register_backbone("resnet_tiny")
def resnet_tiny(input_shape: tuple[int, ...], config: ResNetTinyConfig) -> ResNet:
    """A 3-stage, 1-block-per-stage ResNet (embed_dim 128) for tiny images such as 8x8 digits."""
    return ResNet(input_shape, config)


resnet_tiny.Config = ResNetTinyConfig  # type: ignore[attr-defined]
