"""Multi-view generation, batched on the device where the batch lives.

Contract: a view generator is called as ``views(batch, generator, num_views, num_local_views) ->
Views`` with a batch ``[N, ...]`` and a ``torch.Generator`` on the batch's device. Multi-crop
methods (DINO, SwAV) ask for ``num_local_views`` extra small views; generators without a notion of
scale return further views of the usual kind. Every random parameter is drawn
per sample (one crop per image, not one per batch), so one call costs a handful of batched kernels
whatever N is, and the same generator state gives the same views.
"""

from __future__ import annotations

from selfsup.views import graph, image, masked, table, timeseries, vector  # noqa: F401  (importing registers the generators)
from selfsup.views.base import VIEWS, ViewGenerator, Views, create_views, list_views, register_views

__all__ = ["Views", "ViewGenerator", "VIEWS", "register_views", "create_views", "list_views"]
