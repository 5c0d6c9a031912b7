"""Multi-view generation, batched on the device where the batch lives.

Contract: a view generator is called as ``views(batch, generator, num_views) -> Views`` with a
batch ``[N, ...]`` and a ``torch.Generator`` on the batch's device. Every random parameter is drawn
per sample (one crop per image, not one per batch), so one call costs a handful of batched kernels
whatever N is, and the same generator state gives the same views.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch

from selfsup.registry import Registry


@dataclass
class Views:
    """The views of one batch.

    Attributes:
        global_views: ``num_views`` tensors, each ``[N, ...]``; row i of each is a view of sample i.
        local_views: small crops for multi-crop methods (empty when unused).
    """

    global_views: list[torch.Tensor]
    local_views: list[torch.Tensor] = field(default_factory=list)


class ViewGenerator(Protocol):
    def __call__(self, batch: torch.Tensor, generator: torch.Generator, num_views: int) -> Views: ...


VIEWS: Registry[Callable[..., ViewGenerator]] = Registry("views")
register_views = VIEWS.register

DEFAULT_VIEWS = {"image": "image", "vector": "vector"}


def create_views(name: str, modality: str, params: dict[str, Any] | None = None) -> ViewGenerator:
    """Build the view generator ``name`` (``"auto"``: the default for ``modality``)."""
    from selfsup.config import build_dataclass

    if name == "auto":
        name = DEFAULT_VIEWS.get(modality, modality)
    factory = VIEWS.get(name)
    config = build_dataclass(factory.Config, params or {}, where=f"views {name!r}")
    return factory(config)


def list_views() -> list[str]:
    return VIEWS.names()


from selfsup.views import image, vector  # noqa: E402,F401  (registers the generators)

__all__ = ["Views", "ViewGenerator", "VIEWS", "register_views", "create_views", "list_views"]
