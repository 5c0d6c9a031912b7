"""Encoders, registered by name.

Contract: a backbone is an ``nn.Module`` with an ``embed_dim`` attribute whose ``forward(x)``
returns pooled features ``[N, embed_dim]``. Build one with ``create_backbone(name, input_shape,
**kwargs)``; ``input_shape`` is the shape of one sample (``(C, H, W)`` for images, ``(D,)`` for
vectors) and each backbone takes from it what it needs.
"""

from __future__ import annotations

from typing import Any, Callable

import torch.nn as nn

from selfsup.registry import Registry

BACKBONES: Registry[Callable[..., nn.Module]] = Registry("backbone")
register_backbone = BACKBONES.register


def create_backbone(name: str, input_shape: tuple[int, ...], **kwargs: Any) -> nn.Module:
    """Build the backbone registered as ``name`` for samples of shape ``input_shape``."""
    from selfsup.config import build_dataclass  # local import: config imports registries

    factory = BACKBONES.get(name)
    config_class = getattr(factory, "Config", None)
    if config_class is not None:
        config = build_dataclass(config_class, kwargs, where=f"backbone {name!r}")
        return factory(input_shape, config)
    return factory(input_shape, **kwargs)


# The backbone a run uses when it says "auto", by the data's modality.
DEFAULT_BACKBONES = {"image": "resnet_tiny", "vector": "mlp", "timeseries": "ts2vec_encoder"}


def default_backbone(modality: str) -> str:
    return DEFAULT_BACKBONES.get(modality, "mlp")


def list_backbones() -> list[str]:
    return BACKBONES.names()


# Importing the modules registers their backbones.
from selfsup.backbones import mlp, resnet, timeseries  # noqa: E402,F401

__all__ = ["BACKBONES", "DEFAULT_BACKBONES", "register_backbone", "create_backbone", "default_backbone", "list_backbones"]
