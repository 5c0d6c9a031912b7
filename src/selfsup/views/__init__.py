"""Multi-view generation, batched on the device where the batch lives.

Contract: a view generator is called as ``views(batch, generator, num_views, num_local_views) ->
Views`` with a batch ``[N, ...]`` and a ``torch.Generator`` on the batch's device. Multi-crop
methods (DINO, SwAV) ask for ``num_local_views`` extra small views; generators without a notion of
scale return further views of the usual kind. Every random parameter is drawn
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
        local_views: small crops for multi-crop methods (empty when unused); each ``[N, ...]``,
            possibly at a lower resolution than the global views.
        labels: the batch's labels ``[N]``, given only to methods that declare
            ``requires_labels`` (supervised by design, e.g. SupCon); ``None`` otherwise.
        extras: what a view generator knows that a method may need, by name (e.g. TS2Vec's
            crop overlap, MAE's masks); empty for plain views.
    """

    global_views: list[torch.Tensor]
    local_views: list[torch.Tensor] = field(default_factory=list)
    labels: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def all_views(self) -> list[torch.Tensor]:
        return [*self.global_views, *self.local_views]


class ViewGenerator(Protocol):
    def __call__(
        self, batch: torch.Tensor, generator: torch.Generator, num_views: int, num_local_views: int = 0
    ) -> Views: ...


VIEWS: Registry[Callable[..., ViewGenerator]] = Registry("views")
register_views = VIEWS.register

DEFAULT_VIEWS = {"image": "image", "vector": "vector", "timeseries": "timeseries"}


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


from selfsup.views import image, timeseries, vector  # noqa: E402,F401  (registers the generators)

__all__ = ["Views", "ViewGenerator", "VIEWS", "register_views", "create_views", "list_views"]
