"""The backbone registry (below every backbone module, so none imports the package)."""

from __future__ import annotations

from typing import Any, Callable

import torch.nn as nn

from selfsup.config import build_dataclass
from selfsup.registry import Registry

BACKBONES: Registry[Callable[..., nn.Module]] = Registry("backbone")
register_backbone = BACKBONES.register


def create_backbone(name: str, input_shape: tuple[int, ...], **kwargs: Any) -> nn.Module:
    """Build the backbone registered as ``name`` for samples of shape ``input_shape``."""
    factory = BACKBONES.get(name)
    config_class = getattr(factory, "Config", None)
    if config_class is not None:
        config = build_dataclass(config_class, kwargs, where=f"backbone {name!r}")
        return factory(input_shape, config)
    return factory(input_shape, **kwargs)




def list_backbones() -> list[str]:
    return BACKBONES.names()
