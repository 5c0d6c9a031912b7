"""Feature vectors ``[N, D]``: one mean and std per feature; the raw baseline is the vector itself,
and gradient-boosted trees on it run beside the probes (``eval.trees: auto``)."""

from __future__ import annotations

from selfsup.data.modalities import Modality, register_modality


@register_modality("vector")
class VectorModality(Modality):
    default_views = "vector"
    default_backbone = "mlp"
    stat_dims = (0,)
    tree_baseline = True
