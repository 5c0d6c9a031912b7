"""The view contract (Views, the generator protocol) and the views registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch

from selfsup.config import build_dataclass
from selfsup.data.modalities import get_modality
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

def create_views(name: str, modality: str, params: dict[str, Any] | None = None) -> ViewGenerator:
    """Build the view generator ``name`` (``"auto"``: the default of ``modality``)."""
    if name == "auto":
        name = get_modality(modality).default_views
    factory = VIEWS.get(name)
    config = build_dataclass(factory.Config, params or {}, where=f"views {name!r}")
    return factory(config)


def list_views() -> list[str]:
    return VIEWS.names()
