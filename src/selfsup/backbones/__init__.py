"""Encoders, registered by name.

Contract: a backbone is an ``nn.Module`` with an ``embed_dim`` attribute whose ``forward(x)``
returns pooled features ``[N, embed_dim]``. Build one with ``create_backbone(name, input_shape,
**kwargs)``; ``input_shape`` is the shape of one sample (``(C, H, W)`` for images, ``(D,)`` for
vectors) and each backbone takes from it what it needs.
"""

from __future__ import annotations

from selfsup.backbones import ft_transformer, graph, mlp, resnet, table, timeseries, vit  # noqa: F401  (importing registers the backbones)
from selfsup.backbones.base import BACKBONES, create_backbone, list_backbones, register_backbone

__all__ = ["BACKBONES", "register_backbone", "create_backbone", "list_backbones"]
